//! API Gateway's control-plane quotas, which are account-wide and cannot be raised, and
//! how provision lives within them: it paces the scarce operations itself (one process
//! never exceeds them), and when other processes of the same account use them up too
//! (a CI matrix, `prune` next to `up`), it waits out the `429 TooManyRequestsException`
//! for as long as the quota needs, honouring `Retry-After`, and says what it waits for.
//!
//! The figures: "API Gateway quotas for creating, deploying and managing an API",
//! https://docs.aws.amazon.com/apigateway/latest/developerguide/limits.html

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::aws::SdkFailure;
use crate::report;

/// One operation's quota: `requests` per `per`, at most `burst` at once.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Quota {
    pub operation: &'static str,
    pub requests: u32,
    pub per: Duration,
    pub burst: u32,
}

const fn quota(operation: &'static str, requests: u32, per_secs: u64, burst: u32) -> Quota {
    Quota {
        operation,
        requests,
        per: Duration::from_secs(per_secs),
        burst,
    }
}

/// The operations with a quota of their own (AWS's page lists more; these are the
/// ones provision sends).
pub const API_GATEWAY: &[Quota] = &[
    quota("CreateRestApi", 1, 3, 1),
    quota("CreateDeployment", 1, 5, 1),
    quota("DeleteRestApi", 1, 30, 1),
    quota("CreateResource", 5, 1, 5),
    quota("DeleteResource", 5, 1, 5),
    quota("GetResources", 5, 2, 5),
];

/// Every other control-plane operation of API Gateway (the SDK's retries cover it).
/// API Gateway v2 (the HTTP API front: CreateApi, CreateRoute, DeleteApi, ...) has no
/// per-operation row on AWS's quotas page: all of it shares this account-wide bucket
/// (10 per second, burst 40), so no v2 operation is scarce enough for a row above.
pub const API_GATEWAY_OTHER: Quota = quota("*", 10, 1, 40);

/// How long a request refused for a quota is retried before provision gives up. The
/// scarcest quota (one `DeleteRestApi` per 30 s) shared by ten processes still fits.
pub const BUDGET: Duration = Duration::from_secs(10 * 60);

/// Paced a little slower than the quota itself (a tenth of the interval, at most a
/// second), so that network jitter between two of our requests never makes AWS see
/// them closer together than allowed.
fn margin(interval: Duration) -> Duration {
    (interval / 10).min(Duration::from_secs(1))
}

impl Quota {
    /// The time between two requests at the quota's rate.
    pub fn interval(&self) -> Duration {
        self.per / self.requests
    }

    /// The time between two requests as provision paces them (see `margin`).
    pub fn paced(&self) -> Duration {
        self.interval() + margin(self.interval())
    }

    /// "1 per 30 s": as a person would say it.
    pub fn rate(&self) -> String {
        format!("{} per {} s", self.requests, self.per.as_secs())
    }
}

/// The quota of an API Gateway operation.
pub fn api_gateway(operation: &str) -> &'static Quota {
    API_GATEWAY
        .iter()
        .find(|q| q.operation == operation)
        .unwrap_or(&API_GATEWAY_OTHER)
}

/// Is this one of the operations with a quota of its own (worth pacing)?
pub fn is_scarce(operation: &str) -> bool {
    API_GATEWAY.iter().any(|q| q.operation == operation)
}

/// A token bucket that hands out reservations in order: a request that must wait
/// holds its place, so waiting requests go one per interval, never in a herd.
#[derive(Debug)]
struct Bucket {
    tokens: f64,
    updated: Instant,
}

impl Bucket {
    fn reserve(&mut self, q: &Quota, now: Instant) -> Duration {
        let interval = q.paced();
        let refilled =
            now.saturating_duration_since(self.updated).as_secs_f64() / interval.as_secs_f64();
        self.tokens = (self.tokens + refilled).min(f64::from(q.burst));
        self.updated = now;
        self.tokens -= 1.0;
        if self.tokens >= 0.0 {
            Duration::ZERO
        } else {
            interval.mul_f64(-self.tokens)
        }
    }
}

static BUCKETS: Mutex<Option<HashMap<&'static str, Bucket>>> = Mutex::new(None);

/// How long this process must wait before sending `q`'s operation (and takes its turn).
fn reserve(q: &'static Quota, now: Instant) -> Duration {
    let mut all = BUCKETS.lock().expect("quota buckets");
    all.get_or_insert_with(HashMap::new)
        .entry(q.operation)
        .or_insert(Bucket {
            tokens: f64::from(q.burst),
            updated: now,
        })
        .reserve(q, now)
}

/// Sleeps for `d`, unless the run is interrupted first (then the request waited for is
/// not sent: nothing was done, and the run stops at once instead of after the grace).
async fn wait(d: Duration) -> Result<(), SdkFailure> {
    crate::interrupt::sleep(d)
        .await
        .map_err(|_| SdkFailure::interrupted())
}

/// Waits for this process's turn at a scarce API Gateway operation (no wait for the
/// others), saying so when the wait is long enough to notice.
pub async fn pace(operation: &str, what: &str) -> Result<(), SdkFailure> {
    if !is_scarce(operation) {
        return Ok(());
    }
    let q = api_gateway(operation);
    let wait = reserve(q, tokio::time::Instant::now().into_std());
    if wait >= Duration::from_secs(1) {
        report::progress(&format!(
            "  {what}: waiting {} for API Gateway's {} quota, {} per account",
            seconds(wait),
            q.operation,
            q.rate()
        ));
    }
    if wait.is_zero() {
        Ok(())
    } else {
        self::wait(wait).await
    }
}

/// The refusals for rate one request has met, waited out within `BUDGET` (by
/// `send`, and by `resources::create_once`, which sends on its own).
pub struct Refusals {
    // Tokio's clock (the same as the system's outside tests, which can pause it).
    started: tokio::time::Instant,
    count: u32,
}

impl Refusals {
    pub fn new() -> Refusals {
        Refusals {
            started: tokio::time::Instant::now(),
            count: 0,
        }
    }

    /// Says why, then waits out `refusal`; gives it back when waiting would go past the
    /// budget, or an interrupt ends the wait (like `pace`).
    pub async fn wait_out(
        &mut self,
        operation: &str,
        what: &str,
        refusal: SdkFailure,
    ) -> Result<(), SdkFailure> {
        self.count += 1;
        let pause = backoff(operation, &refusal, self.count);
        if self.started.elapsed() + pause > BUDGET {
            return Err(refusal);
        }
        tell_refused(operation, what, pause);
        wait(pause).await
    }
}

/// How long to wait before sending again a request AWS refused for rate: what
/// `Retry-After` says, at least the quota's interval, growing with each refusal
/// (`refusals` from 1) up to 30 s, and spread so that several processes refused
/// together do not come back together.
pub fn backoff(operation: &str, failure: &SdkFailure, refusals: u32) -> Duration {
    let q = api_gateway(operation);
    let grown = Duration::from_millis(500).saturating_mul(1 << refusals.min(6).saturating_sub(1));
    let floor = if is_scarce(operation) {
        q.interval()
    } else {
        Duration::ZERO
    };
    let base = grown
        .max(floor)
        .max(failure.retry_after.unwrap_or_default())
        .min(Duration::from_secs(30).max(failure.retry_after.unwrap_or_default()));
    base + spread(base / 4)
}

/// Up to `d` more, different for each call (and each process).
fn spread(d: Duration) -> Duration {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|t| t.subsec_nanos())
        .unwrap_or(0)
        ^ std::process::id().wrapping_mul(2_654_435_761);
    d.mul_f64(f64::from(nanos % 1000) / 1000.0)
}

/// Tells the user a request was refused for rate and when it goes again; for API
/// Gateway's scarce operations, which quota it waits for.
fn tell_refused(operation: &str, what: &str, wait: Duration) {
    let msg = if is_scarce(operation) {
        format!(
            "  {what}: waiting {} for API Gateway's {operation} quota, {} per account (AWS answered 429 TooManyRequestsException)",
            seconds(wait),
            api_gateway(operation).rate()
        )
    } else {
        format!(
            "  {what}: AWS refused {operation} for rate; sending it again in {}",
            seconds(wait)
        )
    };
    report::progress(&msg);
}

/// Sends an API Gateway request until it is not refused for rate, pacing it and
/// waiting out refusals for up to `BUDGET`. For requests that are safe to send again
/// (reads, deletes, idempotent puts); creates go through `resources::create_once`.
pub async fn send<T, F, Fut>(
    operation: &'static str,
    what: &str,
    mut op: F,
) -> std::result::Result<T, SdkFailure>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = std::result::Result<T, SdkFailure>>,
{
    let mut refusals = Refusals::new();
    loop {
        pace(operation, what).await?;
        match op().await {
            Err(e) if e.throttled() => refusals.wait_out(operation, what, e).await?,
            other => return other,
        }
    }
}

fn seconds(d: Duration) -> String {
    if d >= Duration::from_secs(10) {
        format!("{} s", d.as_secs())
    } else {
        format!("{:.1} s", d.as_secs_f64())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused(retry_after: Option<u64>) -> SdkFailure {
        SdkFailure {
            code: Some("TooManyRequestsException".into()),
            message: "Too Many Requests".into(),
            status: Some(429),
            in_doubt: false,
            transport: false,
            credentials: false,
            retry_after: retry_after.map(Duration::from_secs),
        }
    }

    #[test]
    fn the_table_holds_awss_figures() {
        let delete = api_gateway("DeleteRestApi");
        assert_eq!(delete.interval(), Duration::from_secs(30));
        assert_eq!(delete.rate(), "1 per 30 s");
        assert_eq!(
            api_gateway("CreateRestApi").interval(),
            Duration::from_secs(3)
        );
        assert_eq!(
            api_gateway("CreateDeployment").interval(),
            Duration::from_secs(5)
        );
        assert_eq!(
            api_gateway("GetResources").interval(),
            Duration::from_millis(400)
        );
        assert_eq!(api_gateway("PutMethod"), &API_GATEWAY_OTHER);
        assert!(!is_scarce("PutMethod"));
    }

    #[test]
    fn a_bucket_lets_its_burst_through_then_one_per_interval_in_order() {
        let q = api_gateway("CreateResource"); // 5 per s, burst 5
        let t0 = Instant::now();
        let mut b = Bucket {
            tokens: 5.0,
            updated: t0,
        };
        for _ in 0..5 {
            assert_eq!(b.reserve(q, t0), Duration::ZERO);
        }
        let step = q.paced();
        // The 6th and 7th wait one and two intervals: each keeps its place in line.
        assert_eq!(b.reserve(q, t0), step);
        assert_eq!(b.reserve(q, t0), step * 2);
        // Much later, the bucket is full again, but never more than its burst.
        let later = t0 + Duration::from_secs(60);
        for _ in 0..5 {
            assert_eq!(b.reserve(q, later), Duration::ZERO);
        }
        assert!(b.reserve(q, later) > Duration::ZERO);
    }

    #[test]
    fn delete_rest_api_is_paced_slower_than_one_per_30_s() {
        let q = api_gateway("DeleteRestApi");
        let t0 = Instant::now();
        let mut b = Bucket {
            tokens: 1.0,
            updated: t0,
        };
        assert_eq!(b.reserve(q, t0), Duration::ZERO);
        let second = b.reserve(q, t0);
        assert_eq!(second, Duration::from_secs(31));
        assert_eq!(
            api_gateway("CreateRestApi").paced(),
            Duration::from_millis(3300)
        );
    }

    #[tokio::test(start_paused = true)]
    async fn refusals_are_waited_out_for_as_long_as_retry_after_says() {
        let refusals = std::sync::atomic::AtomicU32::new(0);
        let t0 = tokio::time::Instant::now();
        let got = send("PutMethod", "test", || async {
            if refusals.fetch_add(1, std::sync::atomic::Ordering::SeqCst) < 2 {
                Err(refused(Some(45)))
            } else {
                Ok("done")
            }
        })
        .await;
        assert_eq!(got.unwrap(), "done");
        assert_eq!(refusals.into_inner(), 3);
        assert!(
            t0.elapsed() >= Duration::from_secs(90),
            "{:?}",
            t0.elapsed()
        );
    }

    #[tokio::test(start_paused = true)]
    async fn refusals_past_the_budget_are_the_callers_to_report() {
        let t0 = tokio::time::Instant::now();
        let got: std::result::Result<(), SdkFailure> = send("DeleteRestApi", "test", || async {
            Err(refused(Some(120)))
        })
        .await;
        let e = got.unwrap_err();
        assert!(e.throttled());
        // Waited up to the budget (past it by one turn of pacing at most), not much
        // short of it.
        assert!(
            t0.elapsed() <= BUDGET + Duration::from_secs(34),
            "{:?}",
            t0.elapsed()
        );
        assert!(
            t0.elapsed() >= BUDGET - Duration::from_secs(160),
            "{:?}",
            t0.elapsed()
        );
    }

    #[test]
    fn backoff_honours_retry_after_and_the_quota_and_grows() {
        let op = "DeleteRestApi";
        // Never sooner than the quota allows, nor than AWS asks.
        assert!(backoff(op, &refused(None), 1) >= Duration::from_secs(30));
        assert!(backoff(op, &refused(Some(45)), 1) >= Duration::from_secs(45));
        assert!(backoff(op, &refused(Some(45)), 1) <= Duration::from_secs(57));
        // An ordinary operation starts short and grows, capped.
        let first = backoff("PutMethod", &refused(None), 1);
        assert!(first >= Duration::from_millis(500) && first < Duration::from_secs(1));
        let later = backoff("PutMethod", &refused(None), 5);
        assert!(later >= Duration::from_secs(8), "{later:?}");
        assert!(backoff("PutMethod", &refused(None), 50) <= Duration::from_secs(38));
        assert!(backoff("PutMethod", &refused(Some(2)), 1) >= Duration::from_secs(2));
    }
}
