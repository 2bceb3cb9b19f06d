//! State on S3, shared by a team and its CI runners: `PREFIX/<stack>.json` and the lock
//! `PREFIX/<stack>.lock`, as Terraform's S3 backend with `use_lockfile` — S3 is the
//! engine, no other service.
//!
//! - Every write of the state is conditional: the first with `If-None-Match: *`, each
//!   later one with `If-Match` on the ETag this run last read or wrote. A 412 means
//!   another run changed it: the run stops (exit 4) and nothing is overwritten.
//! - The lock is created with `If-None-Match: *` and names its holder; the holder renews
//!   it every third of its lease and deletes it with `If-Match` at the end. A lock not
//!   renewed for longer than its lease has expired, judged by S3's clock (the object's
//!   Last-Modified against the Date of S3's own answer), never the local one; it is
//!   taken over with a conditional write on its ETag (of two takers, one wins).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use aws_sdk_s3::primitives::ByteStream;
use aws_smithy_types::date_time::Format;
use aws_smithy_types::DateTime;
use serde::{Deserialize, Serialize};

use super::LockOpts;
use crate::aws::{SdkFailure, SdkResultExt};
use crate::errors::{Error, Result};
use crate::report;

/// An object key under a prefix.
pub fn key(prefix: &str, file: &str) -> String {
    if prefix.is_empty() {
        file.to_string()
    } else {
        format!("{prefix}/{file}")
    }
}

#[derive(Clone)]
pub struct S3Store {
    client: aws_sdk_s3::Client,
    bucket: String,
    key: String,
    lock_key: String,
    /// The ETag of the state object as this run last read or wrote it.
    etag: Arc<Mutex<Option<String>>>,
}

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
        }
    }
}

/// A lock object as read: its holder, ETag and age by S3's clock.
struct Seen {
    holder: Option<Holder>,
    etag: String,
    age: Option<Duration>,
}

fn precondition_failed(e: &SdkFailure) -> bool {
    e.status == Some(412) || e.is("PreconditionFailed")
}

/// A concurrent conditional write on the same key: try again.
fn conflict(e: &SdkFailure) -> bool {
    e.status == Some(409) || e.is("ConditionalRequestConflict")
}

impl S3Store {
    pub fn new(client: aws_sdk_s3::Client, bucket: &str, prefix: &str, stack: &str) -> S3Store {
        S3Store {
            client,
            bucket: bucket.to_string(),
            key: key(prefix, &format!("{stack}.json")),
            lock_key: key(prefix, &format!("{stack}.lock")),
            etag: Arc::new(Mutex::new(None)),
        }
    }

    pub fn state_url(&self) -> String {
        format!("s3://{}/{}", self.bucket, self.key)
    }

    fn lock_url(&self) -> String {
        format!("s3://{}/{}", self.bucket, self.lock_key)
    }

    /// The bucket must exist and be reachable: a missing one is bad input (exit 2).
    pub async fn check_bucket(&self) -> Result<()> {
        match self
            .client
            .head_bucket()
            .bucket(&self.bucket)
            .send()
            .await
            .sdk()
        {
            Ok(_) => Ok(()),
            Err(e) if e.status == Some(404) || e.is("NotFound") || e.is("NoSuchBucket") => {
                Err(Error::usage(format!(
                    "state bucket `{}` does not exist (or is in another account); create it with `provision init-state s3://{}`",
                    self.bucket, self.bucket
                )))
            }
            Err(e) => Err(e.fail(format!("reaching state bucket {}", self.bucket), "HeadBucket")),
        }
    }

    /// The state object's text (its ETag remembered); None when there is none.
    pub async fn read(&self) -> Result<Option<String>> {
        match self
            .client
            .get_object()
            .bucket(&self.bucket)
            .key(&self.key)
            .send()
            .await
            .sdk()
        {
            Ok(out) => {
                *self.etag.lock().expect("etag") = out.e_tag().map(str::to_string);
                let bytes = out
                    .body
                    .collect()
                    .await
                    .map_err(|e| Error::Http(format!("reading {}: {e}", self.state_url())))?;
                Ok(Some(
                    String::from_utf8_lossy(&bytes.into_bytes()).into_owned(),
                ))
            }
            Err(e) if e.is("NoSuchKey") || e.status == Some(404) => {
                *self.etag.lock().expect("etag") = None;
                Ok(None)
            }
            Err(e) => Err(e.fail(format!("reading {}", self.state_url()), "GetObject")),
        }
    }

    /// Writes the state only over the version this run knows (or where there is none).
    pub async fn write(&self, bytes: Vec<u8>) -> Result<()> {
        let known = self.etag.lock().expect("etag").clone();
        let mut put = self
            .client
            .put_object()
            .bucket(&self.bucket)
            .key(&self.key)
            .content_type("application/json")
            .body(ByteStream::from(bytes));
        put = match &known {
            Some(etag) => put.if_match(etag),
            None => put.if_none_match("*"),
        };
        match put.send().await.sdk() {
            Ok(out) => {
                *self.etag.lock().expect("etag") = out.e_tag().map(str::to_string);
                Ok(())
            }
            Err(e) if precondition_failed(&e) || conflict(&e) => Err(self.changed_under_us()),
            Err(e) => Err(e.fail(format!("writing {}", self.state_url()), "PutObject")),
        }
    }

    fn changed_under_us(&self) -> Error {
        Error::Locked(format!(
            "{} was changed by another run since this one read it; nothing was overwritten. Run again once that run is done",
            self.state_url()
        ))
    }

    /// Deletes the state object (the version this run knows).
    pub async fn delete(&self) -> Result<()> {
        let known = self.etag.lock().expect("etag").clone();
        let Some(etag) = known else {
            return Ok(());
        };
        match self
            .client
            .delete_object()
            .bucket(&self.bucket)
            .key(&self.key)
            .if_match(etag)
            .send()
            .await
            .sdk()
        {
            Ok(_) => Ok(()),
            Err(e) if e.is("NoSuchKey") || e.status == Some(404) => Ok(()),
            Err(e) if precondition_failed(&e) => Err(self.changed_under_us()),
            Err(e) => Err(e.fail(format!("deleting {}", self.state_url()), "DeleteObject")),
        }
    }

    /// The lock object, if there is one.
    async fn see_lock(&self) -> Result<Option<Seen>> {
        match self
            .client
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
            Err(e) if e.is("NoSuchKey") || e.status == Some(404) => Ok(None),
            Err(e) => Err(e.fail(format!("reading lock {}", self.lock_url()), "GetObject")),
        }
    }

    /// Puts the lock object: new (`over` None) or over the ETag seen. The new ETag, or
    /// None when someone else got there first.
    async fn put_lock(&self, body: &str, over: Option<&str>) -> Result<Option<String>> {
        let mut put = self
            .client
            .put_object()
            .bucket(&self.bucket)
            .key(&self.lock_key)
            .content_type("application/json")
            .body(ByteStream::from(body.as_bytes().to_vec()));
        put = match over {
            Some(etag) => put.if_match(etag),
            None => put.if_none_match("*"),
        };
        match put.send().await.sdk() {
            Ok(out) => Ok(Some(out.e_tag().unwrap_or_default().to_string())),
            Err(e) if precondition_failed(&e) || conflict(&e) => Ok(None),
            Err(e) => Err(e.fail(format!("writing lock {}", self.lock_url()), "PutObject")),
        }
    }

    /// Takes the stack's lock: at once if free; over an expired one (with a warning
    /// naming its dead holder); else waiting up to `opts.wait`, then exit 4.
    pub async fn lock(&self, opts: LockOpts) -> Result<LeaseLock> {
        let me = Holder::me(opts.lease);
        let body = serde_json::to_string(&me).expect("holder serializes");
        let started = std::time::Instant::now();
        loop {
            if let Some(etag) = self.put_lock(&body, None).await? {
                return Ok(LeaseLock::start(self.clone(), body, etag, opts.lease));
            }
            let Some(seen) = self.see_lock().await? else {
                continue; // released in between
            };
            let lease = seen
                .holder
                .as_ref()
                .map(|h| Duration::from_secs(h.lease_seconds))
                .unwrap_or(opts.lease);
            let holder = seen
                .holder
                .as_ref()
                .map(|h| h.to_string())
                .unwrap_or_else(|| "an unreadable lock".into());
            match seen.age {
                Some(age) if age > lease => {
                    if let Some(etag) = self.put_lock(&body, Some(&seen.etag)).await? {
                        report::warn(&format!(
                            "took over the lock of {holder}: not renewed for {}s, longer than its lease of {}s (that run died or was cut off)",
                            age.as_secs(),
                            lease.as_secs()
                        ));
                        return Ok(LeaseLock::start(self.clone(), body, etag, opts.lease));
                    }
                    // Another run took it over first: look again.
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
                    report::info(&format!(
                        "waiting for the lock held by {holder} (lease runs out in {left}s)"
                    ));
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            }
        }
    }

    /// Whether a live run holds the lock: there is one and its lease has not run out
    /// by S3's clock (when the age is unknown, it is taken as live).
    pub async fn is_locked(&self) -> Result<bool> {
        Ok(match self.see_lock().await? {
            None => false,
            Some(seen) => {
                let lease = seen
                    .holder
                    .as_ref()
                    .map(|h| Duration::from_secs(h.lease_seconds))
                    .unwrap_or(super::DEFAULT_LEASE);
                seen.age.is_none_or(|age| age <= lease)
            }
        })
    }

    /// `provision unlock`: removes an expired lock (a live one too with `force`).
    /// The holder it removed, or the live holder it left (`Err`), or None.
    pub async fn unlock(&self, force: bool) -> Result<Option<std::result::Result<String, String>>> {
        let Some(seen) = self.see_lock().await? else {
            return Ok(None);
        };
        let holder = seen
            .holder
            .as_ref()
            .map(|h| h.to_string())
            .unwrap_or_else(|| "an unreadable lock".into());
        let expired = match (&seen.age, &seen.holder) {
            (Some(age), Some(h)) => age.as_secs() > h.lease_seconds,
            (Some(_), None) => true,
            _ => false,
        };
        if !expired && !force {
            return Ok(Some(Err(holder)));
        }
        match self
            .client
            .delete_object()
            .bucket(&self.bucket)
            .key(&self.lock_key)
            .if_match(&seen.etag)
            .send()
            .await
            .sdk()
        {
            Ok(_) => Ok(Some(Ok(holder))),
            Err(e) if e.is("NoSuchKey") || e.status == Some(404) => Ok(None),
            Err(e) if precondition_failed(&e) => Err(Error::Locked(format!(
                "the lock {} changed while it was being removed (its holder renewed it, or another run took it): look again",
                self.lock_url()
            ))),
            Err(e) => Err(e.fail(format!("deleting lock {}", self.lock_url()), "DeleteObject")),
        }
    }
}

/// A held S3 lock, renewed in the background every third of its lease.
pub struct LeaseLock {
    store: S3Store,
    etag: Arc<Mutex<String>>,
    renewal: tokio::task::JoinHandle<()>,
}

impl LeaseLock {
    fn start(store: S3Store, body: String, etag: String, lease: Duration) -> LeaseLock {
        let etag = Arc::new(Mutex::new(etag));
        let renewal = {
            let (store, etag) = (store.clone(), etag.clone());
            tokio::spawn(async move {
                loop {
                    tokio::time::sleep(lease / 3).await;
                    let current = etag.lock().expect("etag").clone();
                    match store.put_lock(&body, Some(&current)).await {
                        Ok(Some(new)) => *etag.lock().expect("etag") = new,
                        Ok(None) => {
                            report::warn(&format!(
                                "lost the lock {}: another run took it over (this run was not renewing it in time); its state writes are conditional, so nothing it wrote is overwritten",
                                store.lock_url()
                            ));
                            return;
                        }
                        Err(e) => report::warn(&format!("renewing the lock: {e}")),
                    }
                }
            })
        };
        LeaseLock {
            store,
            etag,
            renewal,
        }
    }

    /// Deletes the lock (only if it is still ours).
    pub async fn release(self) {
        self.renewal.abort();
        let etag = self.etag.lock().expect("etag").clone();
        let result = self
            .store
            .client
            .delete_object()
            .bucket(&self.store.bucket)
            .key(&self.store.lock_key)
            .if_match(etag)
            .send()
            .await
            .sdk();
        match result {
            Ok(_) => {}
            Err(e) if e.is("NoSuchKey") || e.status == Some(404) || precondition_failed(&e) => {}
            Err(e) => report::warn(&format!(
                "could not remove the lock {} ({}); it expires by itself when its lease runs out",
                self.store.lock_url(),
                e.message
            )),
        }
    }
}

/// Parses an HTTP `Date` header.
pub fn http_date(value: &str) -> Option<DateTime> {
    DateTime::from_str(value, Format::HttpDate).ok()
}

/// The stacks with a state object directly under `prefix` (`<stack>.json`).
pub async fn stacks_in(
    client: &aws_sdk_s3::Client,
    bucket: &str,
    prefix: &str,
) -> Result<Vec<String>> {
    let under = key(prefix, "");
    let mut token: Option<String> = None;
    let mut names = Vec::new();
    loop {
        let out = client
            .list_objects_v2()
            .bucket(bucket)
            .prefix(&under)
            .delimiter("/")
            .set_continuation_token(token.clone())
            .send()
            .await
            .sdk()
            .map_err(|e| e.fail(format!("listing s3://{bucket}/{under}"), "ListObjectsV2"))?;
        for o in out.contents() {
            let name = o
                .key()
                .unwrap_or_default()
                .strip_prefix(&under)
                .unwrap_or_default();
            if let Some(stack) = name.strip_suffix(".json") {
                if crate::config::validate_stack(stack).is_ok() {
                    names.push(stack.to_string());
                }
            }
        }
        token = out
            .next_continuation_token()
            .filter(|_| out.is_truncated() == Some(true))
            .map(str::to_string);
        if token.is_none() {
            break;
        }
    }
    names.sort();
    Ok(names)
}
