//! One module per resource kind: find (or adopt), create, update, delete.
//!
//! A resource module knows AWS and the plan, not the CLI or the output format: it
//! reads what exists, asks `plan` what to do, does it (unless this is a dry run),
//! records the result through the state `Recorder`, and reports a `Done`.

pub mod app_client;
pub mod authorizer;
pub mod client_secrets;
pub mod domain;
pub mod function;
pub mod http_api;
pub mod http_stage;
pub mod integration;
pub mod jwt_authorizer;
pub mod log_group;
pub mod methods;
pub mod permission;
mod prefetch;
pub mod resource_server;
pub mod rest_api;
pub mod retire;
pub mod role;
pub mod role_names;
pub mod role_policy;
pub mod role_region;
pub mod route;
pub mod secret;
pub mod stage;
pub mod user_pool;

#[cfg(test)]
mod eventual;
#[cfg(test)]
mod late_deletions;
#[cfg(test)]
mod lost_answers;
#[cfg(test)]
mod mocked;
#[cfg(test)]
mod rotation_answers;

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::aws::{Aws, SdkFailure};
use crate::config::Desired;
use crate::errors::{Error, Result};
use crate::package::Package;
use crate::plan::{self, Decision};
use crate::report::{self, Done};
use crate::state::Recorder;

pub use prefetch::prefetch;

/// Reads done (or under way) in this run, by key; values of any type.
pub type Reads = Mutex<
    HashMap<
        String,
        std::sync::Arc<tokio::sync::OnceCell<std::sync::Arc<dyn std::any::Any + Send + Sync>>>,
    >,
>;

/// The first read of a resource in a run, once: `prefetch` starts every read whose id
/// the state file knows, all at once, and a step asking for the same `key` gets that
/// answer (waiting for it if it is still under way) instead of a read of its own. Only
/// first looks go through here: a lookup after a write must see AWS now. A failed read
/// is not kept: the step reads again and reports its own error.
pub async fn read_once<T, Fut>(ctx: &Ctx<'_>, key: String, read: Fut) -> Result<T>
where
    T: Clone + Send + Sync + 'static,
    Fut: std::future::Future<Output = Result<T>>,
{
    let cell = ctx
        .reads
        .lock()
        .expect("reads")
        .entry(key)
        .or_default()
        .clone();
    let value = cell
        .get_or_try_init(|| async {
            let v = read.await?;
            Ok::<_, Error>(std::sync::Arc::new(v) as std::sync::Arc<dyn std::any::Any + Send + Sync>)
        })
        .await?;
    Ok(value
        .downcast_ref::<T>()
        .expect("one type of answer per read")
        .clone())
}

/// The tag that marks a resource as belonging to a stack.
pub const STACK_TAG: &str = "provision:stack";

/// Placeholder id of a resource a dry run would create.
pub const NEW: &str = "(new)";

/// The id to show: a resource that does not exist yet is shown by its name.
pub fn shown(id: &str, name: &str) -> String {
    if id == NEW {
        name.to_string()
    } else {
        id.to_string()
    }
}

/// Everything a resource module needs for one run.
pub struct Ctx<'a> {
    pub aws: &'a Aws,
    pub stack: &'a str,
    pub region: &'a str,
    pub account: &'a str,
    pub partition: &'static str,
    pub desired: &'a Desired,
    /// The domain prefix, resolved (given or derived).
    pub domain_prefix: &'a str,
    /// The handler package; `status` can run without one (then code is not compared).
    pub package: Option<&'a Package>,
    pub rec: &'a Recorder,
    /// false: read and plan only (dry run, status).
    pub apply: bool,
    /// Show a line per resource as it is done.
    pub show: bool,
    /// false: every step one after another (`--max-concurrency 1`), the baseline.
    pub concurrent: bool,
    pub done: Mutex<Vec<Done>>,
    /// The run's one read of the function (the role needs it too; see `function::observed`).
    pub function: tokio::sync::OnceCell<Option<function::Found>>,
    /// The run's one read of the API's resources and methods (see `methods::surface`).
    pub api_surface: tokio::sync::OnceCell<methods::Surface>,
    /// The log group exists: the function is created only then (so Lambda never makes
    /// an untagged group of its own), without waiting for the group's retention.
    pub log_group_made: Signal,
    /// The run's first read of each resource, by what it reads (see `read_once`).
    pub reads: Reads,
    /// The stack's token endpoint (what a published secret tells its readers).
    pub token_url: String,
    /// With state on S3: (bucket, key prefix) for handler packages too big to send in
    /// the request (`PREFIX/artifacts/<stack>/`).
    pub artifacts: Option<(String, String)>,
}

/// A one-time "done" (or "failed") one step gives others that wait for part of it.
#[derive(Debug)]
pub struct Signal(tokio::sync::watch::Sender<Option<bool>>);

impl Default for Signal {
    fn default() -> Self {
        Signal(tokio::sync::watch::channel(None).0)
    }
}

impl Signal {
    /// Says how it went, unless it was said already.
    pub fn set(&self, ok: bool) {
        self.0.send_if_modified(|v| {
            let unset = v.is_none();
            if unset {
                *v = Some(ok);
            }
            unset
        });
    }

    /// Waits until it is said; false when it failed. An interrupt ends the wait.
    pub async fn wait(&self) -> Result<bool> {
        let mut rx = self.0.subscribe();
        tokio::select! {
            said = rx.wait_for(Option::is_some) => Ok(said.map(|v| *v == Some(true)).unwrap_or(false)),
            () = crate::interrupt::wait() => Err(Error::Interrupted),
        }
    }
}

/// A resource that exists (or, in a dry run, would).
#[derive(Debug, Clone)]
pub struct Handle {
    pub id: String,
    pub arn: String,
    /// Created in this run (or would be): nothing hangs off it yet, so its children
    /// need no read to know they are absent.
    pub fresh: bool,
}

impl Handle {
    pub fn new(id: impl Into<String>, arn: impl Into<String>, fresh: bool) -> Self {
        Handle {
            id: id.into(),
            arn: arn.into(),
            fresh,
        }
    }
}

impl Ctx<'_> {
    /// Both futures, at the same time unless concurrency is off.
    pub async fn both<A, B>(
        &self,
        a: impl std::future::Future<Output = A>,
        b: impl std::future::Future<Output = B>,
    ) -> (A, B) {
        if self.concurrent {
            tokio::join!(a, b)
        } else {
            let a = a.await;
            (a, b.await)
        }
    }

    /// Runs one step with a spinner (on a terminal) saying what is in flight.
    pub async fn track<T>(&self, label: &str, step: impl std::future::Future<Output = T>) -> T {
        let _activity = self.show.then(|| report::activity(label));
        step.await
    }

    /// The role name of a stack made now (see `role` for roles made before).
    pub fn role_name(&self) -> String {
        role::regional_name(self.stack, self.region)
    }
    pub fn function_name(&self) -> String {
        format!("{}-handler", self.stack)
    }
    pub fn pool_name(&self) -> String {
        format!("{}-pool", self.stack)
    }
    /// The Cognito name of a configured client.
    pub fn client_name(&self, name: &str) -> String {
        format!("{}-{name}", self.stack)
    }
    pub fn api_name(&self) -> String {
        format!("{}-api", self.stack)
    }
    pub fn authorizer_name(&self) -> String {
        format!("{}-authorizer", self.stack)
    }

    /// Records what was decided and done for one resource, and shows it.
    pub fn finish(
        &self,
        kind: &'static str,
        id: &str,
        decision: &Decision,
        recorded: bool,
        started: Instant,
    ) {
        self.finish_named(kind, id, None, decision, recorded, started)
    }

    /// `finish` for a resource of a kind the stack has several of, by configured name.
    pub fn finish_named(
        &self,
        kind: &'static str,
        id: &str,
        name: Option<&str>,
        decision: &Decision,
        recorded: bool,
        started: Instant,
    ) {
        let done = Done {
            kind,
            id: id.to_string(),
            name: name.map(str::to_string),
            action: plan::action(decision, recorded),
            changes: plan::changes(decision),
            reason: None,
            elapsed: started.elapsed(),
        };
        if self.show {
            report::resource_line(&done, !self.apply);
        }
        self.done.lock().expect("done").push(done);
    }

    /// Records a resource that was (or, in a dry run, would be) deleted because it is
    /// not part of the stack's desired state.
    pub fn finish_extra(&self, kind: &'static str, id: &str, name: Option<&str>, started: Instant) {
        let done = Done {
            kind,
            id: id.to_string(),
            name: name.map(str::to_string),
            action: report::Action::Deleted,
            changes: Vec::new(),
            reason: None,
            elapsed: started.elapsed(),
        };
        if self.show {
            report::resource_line(&done, !self.apply);
        }
        self.done.lock().expect("done").push(done);
    }

    pub fn tag_value(&self) -> &str {
        self.stack
    }
}

/// The one resource named for this stack among `found`, or an error naming them all
/// when a service that accepts duplicate names has several (`down` removes them all).
pub fn the_one<T>(
    mut found: Vec<T>,
    kinds: &str,
    name: &str,
    id: impl Fn(&T) -> &str,
) -> Result<Option<T>> {
    if found.len() > 1 {
        return Err(Error::usage(format!(
            "found {} {kinds} named {name} tagged for this stack ({}); `provision down` removes them all, or delete the extra ones, then run again",
            found.len(),
            found.iter().map(&id).collect::<Vec<_>>().join(", ")
        )));
    }
    Ok(found.pop())
}

/// Refuses to adopt or delete a resource that is not tagged for this stack.
pub fn check_owner(tags: Option<&HashMap<String, String>>, stack: &str, what: &str) -> Result<()> {
    check_owner_value(
        tags.and_then(|t| t.get(STACK_TAG)).map(String::as_str),
        stack,
        what,
    )
}

pub fn check_owner_value(tag: Option<&str>, stack: &str, what: &str) -> Result<()> {
    match tag {
        Some(v) if v == stack => Ok(()),
        Some(other) => Err(Error::usage(format!(
            "{what} exists but belongs to stack `{other}` (tag {STACK_TAG}={other}); provision will not touch it: choose another --stack"
        ))),
        None => Err(Error::usage(format!(
            "{what} exists but is not tagged {STACK_TAG}={stack}: it was not made by provision for this stack, so provision will not adopt or delete it; delete or rename it, or choose another --stack"
        ))),
    }
}

/// What `down` did with one resource.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Removal {
    Deleted,
    /// Not there (gone already, or never made).
    Absent,
    /// There, but not this stack's (any more): left alone, and why.
    Kept(String),
}

/// `down`'s owner check: None when the tags say the resource is this stack's, else why
/// it is left alone (a stale state file may name what is someone else's now).
pub fn not_ours(tags: Option<&HashMap<String, String>>, stack: &str, what: &str) -> Option<String> {
    match tags.and_then(|t| t.get(STACK_TAG)).map(String::as_str) {
        Some(v) if v == stack => None,
        Some(other) => Some(format!(
            "{what} belongs to stack `{other}` (tag {STACK_TAG}={other}): not deleted"
        )),
        None => Some(format!(
            "{what} is not tagged {STACK_TAG}={stack}: someone else's now, not deleted"
        )),
    }
}

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

#[cfg(test)]
mod signal_tests {
    use super::Signal;

    #[tokio::test]
    async fn a_signal_is_said_once_and_heard_by_whoever_waits() {
        let s = Signal::default();
        let (heard, ()) = tokio::join!(s.wait(), async {
            tokio::task::yield_now().await;
            s.set(false);
            // Said already: a later "done" does not turn a failure into success.
            s.set(true);
        });
        assert!(!heard.unwrap());
        assert!(!s.wait().await.unwrap(), "a late waiter hears the same");
    }
}
