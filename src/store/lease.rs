//! The S3 lease lock of a stack: who holds it, and taking it (over an expired one).
//! Holding it, renewing it and releasing it: `held`.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_sdk_s3::primitives::ByteStream;

use super::held::LeaseLock;
use super::holder::{Holder, Put};
use super::s3::{conflict, not_found, precondition_failed, S3Store};
use super::LockOpts;
use crate::aws::SdkResultExt;
use crate::errors::{Error, Result};
use crate::report;

/// A lock object as read: its holder, ETag and age by S3's clock.
pub(super) struct Seen {
    pub(super) holder: Option<Holder>,
    pub(super) etag: String,
    age: Option<Duration>,
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
    pub(super) async fn put_lock(
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
