//! Creates sent exactly once in effect, and retries while AWS settles.

use std::time::{Duration, Instant};

use crate::aws::SdkFailure;
use crate::errors::Result;
use crate::report;

/// What a create that is safe against lost answers produced.
#[derive(Debug)]
pub enum Made<T, F> {
    /// The create went through and its answer arrived.
    New(T),
    /// It exists already: an earlier attempt of ours whose answer was lost, found by
    /// name (and tag, where the kind has one) and adopted.
    Found(F),
}

/// How one create is sent: what it is for the user, and how long to keep trying.
pub struct Create {
    /// What we are doing, e.g. "creating REST API m2m-api-api".
    pub doing: String,
    pub operation: &'static str,
    /// Errors that mean "not now" for this operation beyond throttling (nothing was done).
    pub busy: fn(&SdkFailure) -> bool,
    /// Errors that mean "it exists already".
    pub exists: fn(&SdkFailure) -> bool,
    /// Attempts while busy or in doubt (refusals for rate do not count: they are
    /// waited out for as long as `quota::BUDGET`).
    pub attempts: u32,
    /// An API Gateway operation with a quota of its own: paced (see `quota`).
    pub paced: bool,
}

impl Create {
    pub fn new(doing: impl Into<String>, operation: &'static str) -> Self {
        Create {
            doing: doing.into(),
            operation,
            busy: |_| false,
            exists: SdkFailure::already_exists,
            // As many as the SDK's own retries of every other request.
            attempts: 6,
            paced: false,
        }
    }

    /// An API Gateway create: paced within the account's quota for it.
    pub fn api_gateway(doing: impl Into<String>, operation: &'static str) -> Self {
        Create {
            paced: true,
            ..Create::new(doing, operation)
        }
    }
}

/// Sends a create exactly once in effect. The SDK's blind retry is off for creates
/// (`Aws::once`), because Cognito and API Gateway accept duplicate names: a create
/// whose answer was lost and that is sent again makes a second pool, API, client or
/// authorizer. Instead:
/// - throttled or busy (nothing was done): wait, send again;
/// - in doubt (a 5xx answer, a timeout, a broken connection: it may have been done):
///   `lookup` by name and tag first; found → adopted; else wait and send again;
/// - "already exists": `lookup`; found (and ours: `lookup` checks) → adopted.
pub async fn create_once<T, F, S, SFut, L, LFut>(
    how: Create,
    mut send: S,
    mut lookup: L,
) -> Result<Made<T, F>>
where
    S: FnMut() -> SFut,
    SFut: std::future::Future<Output = std::result::Result<T, SdkFailure>>,
    L: FnMut() -> LFut,
    LFut: std::future::Future<Output = Result<Option<F>>>,
{
    let mut delay = Duration::from_millis(200);
    let mut attempt = 1;
    let mut refusals = crate::quota::Refusals::new();
    loop {
        if how.paced {
            if let Err(stop) = crate::quota::pace(how.operation, &how.doing).await {
                return Err(stop.fail(how.doing, how.operation));
            }
        }
        let e = match send().await {
            Ok(made) => return Ok(Made::New(made)),
            Err(e) => e,
        };
        if e.throttled() {
            // Refused for rate: nothing was done. Wait as long as the quota needs.
            if let Err(stop) = refusals.wait_out(how.operation, &how.doing, e).await {
                return Err(stop.fail(how.doing, how.operation));
            }
            continue;
        }
        let again = (how.busy)(&e);
        if (how.exists)(&e) && !again {
            report::info(&format!(
                "{}: {} says it exists already; looking it up",
                how.doing, how.operation
            ));
            return match lookup().await? {
                Some(found) => Ok(Made::Found(found)),
                None => Err(e.fail(how.doing, how.operation)),
            };
        }
        if e.in_doubt {
            report::info(&format!(
                "{}: {} got no clear answer ({}); looking it up before sending it again",
                how.doing, how.operation, e.message
            ));
            if let Some(found) = lookup().await? {
                return Ok(Made::Found(found));
            }
        } else if !again {
            return Err(e.fail(how.doing, how.operation));
        }
        if attempt >= how.attempts {
            return Err(e.fail(how.doing, how.operation));
        }
        attempt += 1;
        report::info(&format!(
            "{}: {} not done yet, sending it again in {delay:?}",
            how.doing, how.operation
        ));
        crate::interrupt::sleep(jitter(delay)).await?;
        delay = (delay * 2).min(Duration::from_secs(10));
    }
}

/// Deletes an API Gateway API (REST or HTTP) through the quota (`quota::send`),
/// sending it again, for up to two minutes, when its answer is lost or API Gateway
/// answers `ConflictException` (a deployment in progress); the delete is idempotent.
/// False when it was not there; "not found" after a lost answer means our earlier
/// attempt did it.
pub async fn delete_api<F, Fut>(what: &str, operation: &'static str, mut send: F) -> Result<bool>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = std::result::Result<(), SdkFailure>>,
{
    let started = Instant::now();
    let mut sent_before = false;
    let mut delay = Duration::from_millis(500);
    loop {
        match crate::quota::send(operation, what, &mut send).await {
            Ok(()) => return Ok(true),
            Err(e) if e.is_not_found() => return Ok(sent_before),
            Err(e)
                if (e.in_doubt || e.is("ConflictException"))
                    && started.elapsed() < Duration::from_secs(120) =>
            {
                sent_before |= e.in_doubt;
                report::info(&format!(
                    "{what}: {} ({}); sending it again in {delay:?}",
                    e.code.as_deref().unwrap_or("no clear answer"),
                    e.message
                ));
                crate::interrupt::sleep(delay).await?;
                delay = (delay * 2).min(Duration::from_secs(10));
            }
            Err(e) => return Err(e.fail(what, operation)),
        }
    }
}

/// Retries `op` while `retryable` says so, with exponential backoff and jitter,
/// for at most `budget` in total. For eventual consistency the SDK's own retries
/// do not cover (a new IAM role Lambda cannot assume yet, API Gateway conflicts).
pub async fn retry_while<T, F, Fut, E>(
    what: &str,
    budget: Duration,
    mut op: F,
    retryable: impl Fn(&E) -> bool,
) -> std::result::Result<T, E>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = std::result::Result<T, E>>,
    E: Interruptible,
{
    let started = Instant::now();
    let mut delay = Duration::from_millis(250);
    loop {
        match op().await {
            Err(e) if retryable(&e) && started.elapsed() + delay < budget => {
                report::info(&format!("{what}: not ready yet, retrying in {delay:?}"));
                if crate::interrupt::sleep(jitter(delay)).await.is_err() {
                    return Err(E::interrupted());
                }
                delay = (delay * 2).min(Duration::from_secs(5));
            }
            other => return other,
        }
    }
}

/// An error a wait can end with when the run is interrupted.
pub trait Interruptible {
    fn interrupted() -> Self;
}

impl Interruptible for SdkFailure {
    fn interrupted() -> Self {
        SdkFailure::interrupted()
    }
}

/// Full jitter between half and all of `d`.
fn jitter(d: Duration) -> Duration {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|t| t.subsec_nanos())
        .unwrap_or(0);
    let fraction = 0.5 + (nanos % 1000) as f64 / 2000.0;
    d.mul_f64(fraction)
}
