//! The S3 lease lock of a stack: who holds it, taking it (over an expired one), its
//! renewal, which the run's fence follows (see `fence`), and its release.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_sdk_s3::primitives::ByteStream;
use serde::{Deserialize, Serialize};

use super::s3::{conflict, not_found, precondition_failed, S3Store};
use super::LockOpts;
use crate::aws::SdkResultExt;
use crate::errors::{Error, Result};
use crate::fence;
use crate::report;

/// Who holds a lock: the lock object's body.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Holder {
    pub id: String,
    pub pid: u32,
    pub host: String,
    pub user: String,
    pub started: String,
    pub lease_seconds: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ci: Option<String>,
    /// How many times the holder renewed it: each renewal writes a new body, so the
    /// lock's ETag moves and a taker's `If-Match` loses to a live renewal.
    #[serde(default)]
    pub renewals: u64,
}

impl std::fmt::Display for Holder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "pid {} on {} (user {}, since {}",
            self.pid, self.host, self.user, self.started
        )?;
        if let Some(ci) = &self.ci {
            write!(f, ", {ci}")?;
        }
        write!(f, ")")
    }
}

impl Holder {
    fn me(lease: Duration) -> Holder {
        use sha2::{Digest, Sha256};
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        let seed = format!("{}/{}/{:?}", std::process::id(), now.as_nanos(), now);
        let env = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
        let ci = match (env("GITHUB_REPOSITORY"), env("GITHUB_RUN_ID")) {
            (Some(repo), Some(run)) => Some(format!("GitHub Actions run {run} of {repo}")),
            _ => env("CI_JOB_URL").map(|u| format!("CI job {u}")),
        };
        Holder {
            id: hex::encode(&Sha256::digest(seed.as_bytes())[..8]),
            pid: std::process::id(),
            host: std::fs::read_to_string("/proc/sys/kernel/hostname")
                .map(|h| h.trim().to_string())
                .unwrap_or_else(|_| "unknown host".into()),
            user: env("USER").unwrap_or_else(|| "unknown user".into()),
            started: crate::report::utc_timestamp(now.as_secs()),
            lease_seconds: lease.as_secs(),
            ci,
            renewals: 0,
        }
    }
}

/// A lock object as read: its holder, ETag and age by S3's clock.
pub(super) struct Seen {
    holder: Option<Holder>,
    etag: String,
    age: Option<Duration>,
}

/// What a conditional PUT of the lock came to.
enum Put {
    Done(String),
    /// 412: the lock is not (or no longer) at the ETag this run assumed.
    Refused,
    /// 409: another conditional write on the key was in progress; try again.
    Conflict,
    /// 404 on an `If-Match`: the lock is gone.
    Gone,
}

impl S3Store {
    /// The lock object, if there is one.
    pub(super) async fn see_lock(&self) -> Result<Option<Seen>> {
        match self
            .client()
            .get_object()
            .bucket(&self.bucket)
            .key(&self.lock_key)
            .send()
            .await
            .sdk()
        {
            Ok(out) => {
                let date = crate::aws::last_s3_date();
                let age = match (date, out.last_modified()) {
                    (Some(now), Some(modified)) => {
                        let secs = (now.secs() - modified.secs()).max(0) as u64;
                        Some(Duration::from_secs(secs))
                    }
                    _ => None,
                };
                let etag = out.e_tag().unwrap_or_default().to_string();
                let bytes = out
                    .body
                    .collect()
                    .await
                    .map(|b| b.into_bytes())
                    .unwrap_or_default();
                Ok(Some(Seen {
                    holder: serde_json::from_slice(&bytes).ok(),
                    etag,
                    age,
                }))
            }
            Err(e) if not_found(&e) => Ok(None),
            Err(e) => Err(e.fail(format!("reading lock {}", self.lock_url()), "GetObject")),
        }
    }

    /// Puts the lock object: new (`over` None) or over the ETag seen.
    async fn put_lock(
        &self,
        body: &str,
        over: Option<&str>,
        renewal: Option<Duration>,
    ) -> Result<Put> {
        let mut put = self
            .client()
            .put_object()
            .bucket(&self.bucket)
            .key(&self.lock_key)
            .content_type("application/json")
            .body(ByteStream::from(body.as_bytes().to_vec()));
        put = match over {
            Some(etag) => put.if_match(etag),
            None => put.if_none_match("*"),
        };
        let sent = match renewal {
            // A renewal must end well inside the lease, retries included.
            Some(lease) => {
                put.customize()
                    .config_override(
                        aws_sdk_s3::config::Builder::default()
                            .retry_config(
                                RetryConfig::standard()
                                    .with_max_attempts(3)
                                    .with_initial_backoff(Duration::from_millis(100))
                                    .with_max_backoff(Duration::from_secs(1)),
                            )
                            .timeout_config(
                                TimeoutConfig::builder()
                                    .operation_timeout(lease / 4)
                                    .operation_attempt_timeout(lease / 8)
                                    .build(),
                            ),
                    )
                    .send()
                    .await
            }
            None => put.send().await,
        };
        match sent.sdk() {
            Ok(out) => Ok(Put::Done(out.e_tag().unwrap_or_default().to_string())),
            Err(e) if precondition_failed(&e) => Ok(Put::Refused),
            Err(e) if conflict(&e) => Ok(Put::Conflict),
            Err(e) if over.is_some() && not_found(&e) => Ok(Put::Gone),
            Err(e) => Err(e.fail(format!("writing lock {}", self.lock_url()), "PutObject")),
        }
    }

    /// Takes the stack's lock: at once if free; over an expired one (with a warning
    /// naming its dead holder); else waiting up to `opts.wait` (or until the run is
    /// interrupted), then exit 4.
    pub async fn lock(&self, opts: LockOpts) -> Result<LeaseLock> {
        let me = Holder::me(opts.lease);
        let body = serde_json::to_string(&me).expect("holder serializes");
        let started = Instant::now();
        let mut told = false;
        loop {
            let sent = Instant::now();
            match self.put_lock(&body, None, None).await? {
                Put::Done(etag) => return Ok(self.locked_by(me, etag, opts.lease, sent)),
                Put::Conflict => continue,
                Put::Refused | Put::Gone => {}
            }
            let Some(seen) = self.see_lock().await? else {
                continue; // released in between
            };
            if seen.holder.as_ref().is_some_and(|h| h.id == me.id) {
                // Our own PUT: S3 did it, its answer was lost, the SDK sent it again.
                report::trace(&format!(
                    "{}: the 412 met this run's own lock (its answer was lost)",
                    self.lock_url()
                ));
                return Ok(self.locked_by(me, seen.etag, opts.lease, sent));
            }
            let lease = seen.lease().unwrap_or(opts.lease);
            let holder = seen.holder_name();
            match seen.age {
                Some(age) if age > lease => {
                    let sent = Instant::now();
                    if let Put::Done(etag) = self.put_lock(&body, Some(&seen.etag), None).await? {
                        report::warn(&format!(
                            "took over the lock of {holder}: not renewed for {}s, longer than its lease of {}s (that run died or was cut off)",
                            age.as_secs(),
                            lease.as_secs()
                        ));
                        return Ok(self.locked_by(me, etag, opts.lease, sent));
                    }
                    // Another run took it over first, or our own takeover's answer was
                    // lost: look again (the id tells).
                }
                age => {
                    let left = age
                        .map(|a| lease.saturating_sub(a).as_secs().to_string())
                        .unwrap_or_else(|| "?".into());
                    if started.elapsed() >= opts.wait {
                        return Err(Error::Locked(format!(
                            "stack is locked by {holder} ({}); its lease runs out in {left}s unless that run renews it. Wait for it (--lock-wait SECONDS), or if that run is dead: `provision unlock` once the lease has run out (`--force` before)",
                            self.lock_url()
                        )));
                    }
                    super::say_waiting(
                        &mut told,
                        &format!("{holder} (lease runs out in {left}s)"),
                        opts.wait,
                    );
                    crate::interrupt::sleep(Duration::from_secs(1)).await?;
                }
            }
        }
    }

    fn locked_by(&self, me: Holder, etag: String, lease: Duration, sent: Instant) -> LeaseLock {
        self.locked.store(true, Ordering::SeqCst);
        LeaseLock::start(self.clone(), me, etag, lease, sent)
    }

    /// Whether a live run holds the lock: there is one and its lease has not run out
    /// by S3's clock (when the age is unknown, it is taken as live).
    pub async fn is_locked(&self) -> Result<bool> {
        Ok(match self.see_lock().await? {
            None => false,
            Some(seen) => seen.live(super::DEFAULT_LEASE),
        })
    }

    /// `provision unlock`: removes an expired lock (a live one too with `force`).
    /// The holder it removed, or the live holder it left (`Err`), or None.
    pub async fn unlock(&self, force: bool) -> Result<Option<std::result::Result<String, String>>> {
        let Some(seen) = self.see_lock().await? else {
            return Ok(None);
        };
        let holder = seen.holder_name();
        let expired = match (&seen.age, &seen.holder) {
            (Some(age), Some(h)) => age.as_secs() > h.lease_seconds,
            (Some(_), None) => true,
            _ => false,
        };
        if !expired && !force {
            return Ok(Some(Err(holder)));
        }
        match self
            .client()
            .delete_object()
            .bucket(&self.bucket)
            .key(&self.lock_key)
            .if_match(&seen.etag)
            .send()
            .await
            .sdk()
        {
            Ok(_) => Ok(Some(Ok(holder))),
            Err(e) if not_found(&e) => Ok(None),
            Err(e) if precondition_failed(&e) => Err(Error::Locked(format!(
                "the lock {} changed while it was being removed (its holder renewed it, or another run took it): look again",
                self.lock_url()
            ))),
            Err(e) => Err(e.fail(format!("deleting lock {}", self.lock_url()), "DeleteObject")),
        }
    }
}

impl Seen {
    fn lease(&self) -> Option<Duration> {
        self.holder
            .as_ref()
            .map(|h| Duration::from_secs(h.lease_seconds))
    }

    pub(super) fn holder_name(&self) -> String {
        self.holder
            .as_ref()
            .map(|h| h.to_string())
            .unwrap_or_else(|| "an unreadable lock".into())
    }

    /// Its lease has not run out by S3's clock (an unknown age counts as live).
    pub(super) fn live(&self, default: Duration) -> bool {
        let lease = self.lease().unwrap_or(default);
        self.age.is_none_or(|age| age <= lease)
    }
}

/// A held S3 lock, renewed in the background every third of its lease; the run's fence
/// (see `fence`) follows its renewals.
pub struct LeaseLock {
    store: S3Store,
    etag: Arc<Mutex<String>>,
    renewal: tokio::task::JoinHandle<()>,
    fence: Arc<fence::Lease>,
}

/// How soon a failed renewal is tried again (while the lease allows).
const RENEW_AGAIN: Duration = Duration::from_millis(250);

impl LeaseLock {
    fn start(
        store: S3Store,
        me: Holder,
        etag: String,
        lease: Duration,
        sent: Instant,
    ) -> LeaseLock {
        let etag = Arc::new(Mutex::new(etag));
        let fence = Arc::new(fence::hold(&store.lock_url(), lease, sent));
        let renewal = {
            let (store, etag, fence) = (store.clone(), etag.clone(), fence.clone());
            tokio::spawn(async move { renew(store, me, etag, lease, fence).await })
        };
        LeaseLock {
            store,
            etag,
            renewal,
            fence,
        }
    }

    /// Deletes the lock (only if it is still ours).
    pub async fn release(self) {
        self.renewal.abort();
        let etag = self.etag.lock().expect("etag").clone();
        let result = self
            .store
            .client()
            .delete_object()
            .bucket(&self.store.bucket)
            .key(&self.store.lock_key)
            .if_match(etag)
            .send()
            .await
            .sdk();
        match result {
            Ok(_) => {}
            Err(e) if not_found(&e) || precondition_failed(&e) => {}
            Err(e) => report::warn(&format!(
                "could not remove the lock {} ({}); it expires by itself when its lease runs out",
                self.store.lock_url(),
                e.message
            )),
        }
        self.fence.release();
    }
}

/// Renews the lock every third of its lease, each time with a new body; a failed
/// renewal is tried again while the lease lasts. Stops, and fences the run, when the
/// lock is gone or another run's, or when the lease ran out unrenewed.
async fn renew(
    store: S3Store,
    mut me: Holder,
    etag: Arc<Mutex<String>>,
    lease: Duration,
    fence: Arc<fence::Lease>,
) {
    let mut pause = lease / 3;
    loop {
        tokio::time::sleep(pause).await;
        if fence::check().is_err() {
            return; // too late: the fence is down for good
        }
        me.renewals += 1;
        let body = serde_json::to_string(&me).expect("holder serializes");
        let current = etag.lock().expect("etag").clone();
        let sent = Instant::now();
        let lost = match store.put_lock(&body, Some(&current), Some(lease)).await {
            Ok(Put::Done(new)) => {
                *etag.lock().expect("etag") = new;
                fence.renewed(sent);
                pause = lease / 3;
                continue;
            }
            Ok(Put::Conflict) => {
                report::trace("renewing the lock: S3 answered 409 (a write in progress); again");
                pause = RENEW_AGAIN;
                continue;
            }
            Err(e) => {
                report::warn(&format!("renewing the lock: {e}; trying again"));
                pause = RENEW_AGAIN;
                continue;
            }
            Ok(Put::Gone) => format!(
                "lost the lock {}: it is gone (another run took it over and released it, or it was removed with `unlock --force`)",
                store.lock_url()
            ),
            Ok(Put::Refused) => match store.see_lock().await {
                // This run's own renewal, its answer lost and the PUT sent again.
                Ok(Some(seen))
                    if seen.holder.as_ref().is_some_and(|h| h.id == me.id) =>
                {
                    *etag.lock().expect("etag") = seen.etag;
                    fence.renewed(sent);
                    pause = lease / 3;
                    continue;
                }
                Ok(Some(seen)) => format!(
                    "lost the lock {} to {}",
                    store.lock_url(),
                    seen.holder_name()
                ),
                Ok(None) => format!("lost the lock {}: it is gone", store.lock_url()),
                Err(_) => format!(
                    "lost the lock {}: it changed under this run",
                    store.lock_url()
                ),
            },
        };
        report::warn(&format!(
            "{lost}; this run sends nothing more and leaves the state as it is"
        ));
        fence.lost(lost);
        return;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_sdk_s3::operation::delete_object::DeleteObjectOutput;
    use aws_sdk_s3::operation::get_object::GetObjectOutput;
    use aws_sdk_s3::operation::put_object::PutObjectOutput;
    use aws_smithy_mocks::{create_mock_http_client, mock, MockResponseInterceptor, RuleMode};
    use aws_smithy_runtime_api::client::interceptors::SharedInterceptor;

    async fn store(rules: Vec<aws_smithy_mocks::Rule>) -> S3Store {
        let sdk = aws_config::defaults(aws_config::BehaviorVersion::latest())
            .region(aws_config::Region::new("us-east-1"))
            .credentials_provider(aws_sdk_s3::config::Credentials::new(
                "AKIDTEST", "secret", None, None, "tests",
            ))
            .http_client(create_mock_http_client())
            .load()
            .await;
        let extra = |service: &'static str| {
            let mut interceptor = MockResponseInterceptor::new().rule_mode(RuleMode::Sequential);
            if service == "s3" {
                for rule in &rules {
                    interceptor = interceptor.with_rule(rule);
                }
            }
            vec![SharedInterceptor::new(interceptor)]
        };
        let aws = crate::aws::Aws::from_sdk(&sdk, &extra);
        S3Store::new(aws.s3, "b", "ci", "us-east-1", "s")
    }

    fn put_ok(etag: &'static str) -> aws_smithy_mocks::Rule {
        mock!(aws_sdk_s3::Client::put_object)
            .then_output(move || PutObjectOutput::builder().e_tag(etag).build())
    }

    fn s3_error(status: u16, code: &str) -> aws_smithy_runtime_api::http::Response {
        aws_smithy_runtime_api::http::Response::new(
            status.try_into().unwrap(),
            aws_smithy_types::body::SdkBody::from(format!(
                "<Error><Code>{code}</Code><Message>injected</Message></Error>"
            )),
        )
    }

    // S3 answers 409 ConditionalRequestConflict when another conditional write on the
    // key is in progress (the emulator never does): a renewal tries again, not a loss.
    // The guard serializes tests on different threads (each has its own runtime).
    #[allow(clippy::await_holding_lock)]
    #[tokio::test(start_paused = true)]
    async fn a_renewal_answered_409_is_tried_again_and_its_body_changes() {
        let _turn = fence::SERIAL.lock().unwrap_or_else(|p| p.into_inner());
        fence::reset_for_test();
        let conflict = mock!(aws_sdk_s3::Client::put_object)
            .then_http_response(|| s3_error(409, "ConditionalRequestConflict"));
        let lease = Duration::from_secs(6);
        let bodies = Arc::new(Mutex::new(Vec::<String>::new()));
        let seen = bodies.clone();
        let renewed = mock!(aws_sdk_s3::Client::put_object)
            .match_requests(move |r| {
                let body = r.body().bytes().unwrap_or_default();
                seen.lock()
                    .unwrap()
                    .push(String::from_utf8_lossy(body).into_owned());
                true
            })
            .then_output(|| PutObjectOutput::builder().e_tag("\"e3\"").build());
        let delete = mock!(aws_sdk_s3::Client::delete_object)
            .match_requests(|r| r.if_match() == Some("\"e3\""))
            .then_output(|| DeleteObjectOutput::builder().build());
        let s = store(vec![
            put_ok("\"e1\""),
            conflict.clone(),
            renewed.clone(),
            delete.clone(),
        ])
        .await;
        let lock = s
            .lock(LockOpts {
                lease,
                wait: Duration::ZERO,
            })
            .await
            .unwrap();
        // The first renewal is due at 2 s: 409, then again 250 ms later: done.
        tokio::time::sleep(Duration::from_millis(2600)).await;
        assert_eq!(conflict.num_calls(), 1);
        assert_eq!(renewed.num_calls(), 1);
        assert!(fence::check().is_ok(), "not a loss: {:?}", fence::check());
        assert!(!lock.renewal.is_finished(), "still renewing");
        assert!(
            // The attempt that met the 409 carried renewal 1: each attempt a new body.
            bodies.lock().unwrap()[0].contains(r#""renewals":2"#),
            "{:?}",
            bodies.lock().unwrap()
        );
        lock.release().await;
        assert_eq!(delete.num_calls(), 1, "released at the renewed ETag");
        fence::reset_for_test();
    }

    // A renewal that finds the lock someone else's (412, and another id on it) fences
    // the run for good.
    #[allow(clippy::await_holding_lock)]
    #[tokio::test(start_paused = true)]
    async fn a_renewal_that_finds_another_holder_fences_the_run() {
        let _turn = fence::SERIAL.lock().unwrap_or_else(|p| p.into_inner());
        fence::reset_for_test();
        let refused = mock!(aws_sdk_s3::Client::put_object)
            .then_http_response(|| s3_error(412, "PreconditionFailed"));
        let other = mock!(aws_sdk_s3::Client::get_object).then_output(|| {
            GetObjectOutput::builder()
                .e_tag("\"x\"")
                .body(aws_sdk_s3::primitives::ByteStream::from_static(
                    br#"{"id":"other","pid":42,"host":"h","user":"u","started":"t","lease_seconds":6}"#,
                ))
                .build()
        });
        let s = store(vec![put_ok("\"e1\""), refused, other]).await;
        let lock = s
            .lock(LockOpts {
                lease: Duration::from_secs(6),
                wait: Duration::ZERO,
            })
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(2100)).await;
        let why = fence::check().expect_err("fenced");
        assert!(
            why.contains("lost the lock") && why.contains("pid 42"),
            "{why}"
        );
        assert!(lock.renewal.is_finished(), "renewal stopped");
        lock.renewal.abort();
        fence::reset_for_test();
    }
}
