//! State on S3, shared by a team and its CI runners: `PREFIX/<region>/<stack>.json` and
//! the lock `PREFIX/<region>/<stack>.lock`, as Terraform's S3 backend with
//! `use_lockfile` — S3 is the engine, no other service. The bucket may live in any
//! region: S3 answers a request signed for another with 301 and `x-amz-bucket-region`,
//! and the store then talks to it there.
//!
//! - Every write of the state is conditional: the first with `If-None-Match: *`, each
//!   later one with `If-Match` on the ETag this run last read or wrote. A 412 means
//!   another run changed it — unless the object is exactly what this run sent (a PUT
//!   whose answer was lost and that the SDK sent again): then it is this run's own.
//! - The lock is created with `If-None-Match: *` and names its holder with a random id;
//!   a 412 on a lock that carries this run's id is this run's own earlier PUT. The
//!   holder renews it every third of its lease with a body that changes each time (so
//!   its ETag moves), deletes it with `If-Match` at the end, and is fenced (see
//!   `fence`) when a renewal is late or finds the lock gone or changed. A lock not
//!   renewed for longer than its lease has expired, judged by S3's clock (the object's
//!   Last-Modified against the Date of S3's own answer), never the local one; it is
//!   taken over with a conditional write on its ETag (of two takers, one wins).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_sdk_s3::primitives::ByteStream;
use aws_smithy_runtime_api::client::result::SdkError;
use serde::{Deserialize, Serialize};

use super::LockOpts;
use crate::aws::{SdkFailure, SdkResultExt};
use crate::errors::{Error, Result};
use crate::fence;
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
    /// For the bucket's own region once `check_bucket` found it.
    client: Arc<Mutex<aws_sdk_s3::Client>>,
    bucket: String,
    region: String,
    key: String,
    lock_key: String,
    /// Where the older layout kept them: `PREFIX/<stack>.json`, `.lock`.
    legacy_key: String,
    legacy_lock_key: String,
    /// The ETag of the state object as this run last read or wrote it.
    etag: Arc<Mutex<Option<String>>>,
    /// The bucket's region, when it is not the run's.
    home: Arc<Mutex<Option<String>>>,
    /// This run holds the stack's lock.
    locked: Arc<AtomicBool>,
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

fn not_found(e: &SdkFailure) -> bool {
    e.is("NoSuchKey") || e.status == Some(404)
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
    pub fn new(
        client: aws_sdk_s3::Client,
        bucket: &str,
        prefix: &str,
        region: &str,
        stack: &str,
    ) -> S3Store {
        let here = key(prefix, region);
        S3Store {
            client: Arc::new(Mutex::new(client)),
            bucket: bucket.to_string(),
            region: region.to_string(),
            key: key(&here, &format!("{stack}.json")),
            lock_key: key(&here, &format!("{stack}.lock")),
            legacy_key: key(prefix, &format!("{stack}.json")),
            legacy_lock_key: key(prefix, &format!("{stack}.lock")),
            etag: Arc::new(Mutex::new(None)),
            home: Arc::new(Mutex::new(None)),
            locked: Arc::new(AtomicBool::new(false)),
        }
    }

    pub fn client(&self) -> aws_sdk_s3::Client {
        self.client.lock().expect("client").clone()
    }

    pub fn region(&self) -> &str {
        &self.region
    }

    /// The bucket's region as found by `check_bucket` (the run's when it said nothing).
    pub fn bucket_region(&self) -> Option<String> {
        self.home.lock().expect("home").clone()
    }

    pub fn holds_lock(&self) -> bool {
        self.locked.load(Ordering::SeqCst)
    }

    pub fn state_url(&self) -> String {
        format!("s3://{}/{}", self.bucket, self.key)
    }

    fn lock_url(&self) -> String {
        format!("s3://{}/{}", self.bucket, self.lock_key)
    }

    pub fn legacy_url(&self) -> String {
        format!("s3://{}/{}", self.bucket, self.legacy_key)
    }

    /// The bucket must exist and be reachable: a missing one is bad input (exit 2). One
    /// in another region answers 301 naming its region: from then on the store's client
    /// is one for that region (one more request, only then).
    pub async fn check_bucket(&self) -> Result<()> {
        let first = self
            .client()
            .head_bucket()
            .bucket(&self.bucket)
            .send()
            .await;
        let moved = match &first {
            Err(SdkError::ServiceError(se)) if se.raw().status().as_u16() == 301 => se
                .raw()
                .headers()
                .get("x-amz-bucket-region")
                .map(str::to_string),
            _ => None,
        };
        let answer = match moved {
            Some(home) => {
                let client = self.client();
                let conf = client
                    .config()
                    .to_builder()
                    .region(aws_types::region::Region::new(home.clone()))
                    .build();
                *self.client.lock().expect("client") = aws_sdk_s3::Client::from_conf(conf);
                *self.home.lock().expect("home") = Some(home);
                self.client()
                    .head_bucket()
                    .bucket(&self.bucket)
                    .send()
                    .await
                    .sdk()
            }
            None => {
                if first.is_ok() {
                    *self.home.lock().expect("home") = Some(self.region.clone());
                }
                first.sdk()
            }
        };
        match answer {
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

    /// An object's text and ETag; None when there is none.
    async fn get(&self, key: &str) -> Result<Option<(String, Option<String>)>> {
        let url = format!("s3://{}/{key}", self.bucket);
        match self
            .client()
            .get_object()
            .bucket(&self.bucket)
            .key(key)
            .send()
            .await
            .sdk()
        {
            Ok(out) => {
                let etag = out.e_tag().map(str::to_string);
                let bytes = out
                    .body
                    .collect()
                    .await
                    .map_err(|e| Error::Http(format!("reading {url}: {e}")))?;
                Ok(Some((
                    String::from_utf8_lossy(&bytes.into_bytes()).into_owned(),
                    etag,
                )))
            }
            Err(e) if not_found(&e) => Ok(None),
            Err(e) => Err(e.fail(format!("reading {url}"), "GetObject")),
        }
    }

    /// The state object's text (its ETag remembered); None when there is none.
    pub async fn read(&self) -> Result<Option<String>> {
        let got = self.get(&self.key).await?;
        *self.etag.lock().expect("etag") = got.as_ref().and_then(|(_, e)| e.clone());
        Ok(got.map(|(text, _)| text))
    }

    /// The older layout's state object: its text and ETag.
    pub async fn read_legacy(&self) -> Result<Option<(String, Option<String>)>> {
        self.get(&self.legacy_key).await
    }

    /// Moves an older-layout state here (under this run's lock): written at the new key,
    /// then deleted at the old one if it is still the version read. Refused while an
    /// older provision holds the old lock.
    pub async fn move_legacy(&self, bytes: Vec<u8>, version: Option<String>) -> Result<()> {
        let old_lock = S3Store {
            lock_key: self.legacy_lock_key.clone(),
            ..self.clone()
        };
        if let Some(seen) = old_lock.see_lock().await? {
            if seen.live(super::DEFAULT_LEASE) {
                return Err(Error::Locked(format!(
                    "the state {} is in the older layout and {} holds its old lock {}; let that run finish, then run again (the state then moves to {})",
                    self.legacy_url(),
                    seen.holder_name(),
                    old_lock.lock_url(),
                    self.state_url()
                )));
            }
        }
        self.write(bytes).await?;
        let mut delete = self
            .client()
            .delete_object()
            .bucket(&self.bucket)
            .key(&self.legacy_key);
        if let Some(v) = version {
            delete = delete.if_match(v);
        }
        match delete.send().await.sdk() {
            Ok(_) => Ok(()),
            Err(e) if not_found(&e) || precondition_failed(&e) => Ok(()),
            Err(e) => Err(e.fail(format!("deleting {}", self.legacy_url()), "DeleteObject")),
        }
    }

    /// Writes the state only over the version this run knows (or where there is none).
    pub async fn write(&self, bytes: Vec<u8>) -> Result<()> {
        let mut conflicts = 0;
        loop {
            let known = self.etag.lock().expect("etag").clone();
            let mut put = self
                .client()
                .put_object()
                .bucket(&self.bucket)
                .key(&self.key)
                .content_type("application/json")
                .body(ByteStream::from(bytes.clone()));
            put = match &known {
                Some(etag) => put.if_match(etag),
                None => put.if_none_match("*"),
            };
            match put.send().await.sdk() {
                Ok(out) => {
                    *self.etag.lock().expect("etag") = out.e_tag().map(str::to_string);
                    return Ok(());
                }
                Err(e) if conflict(&e) && conflicts < 5 => {
                    conflicts += 1;
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                Err(e) if precondition_failed(&e) || conflict(&e) => {
                    return self.own_write_or_changed(&bytes).await
                }
                Err(e) => return Err(e.fail(format!("writing {}", self.state_url()), "PutObject")),
            }
        }
    }

    /// A 412 on the state: this run's own earlier PUT (its answer lost, the SDK sent it
    /// again) when the object holds exactly what was sent; else another run's write.
    async fn own_write_or_changed(&self, sent: &[u8]) -> Result<()> {
        match self.get(&self.key).await? {
            Some((text, etag)) if text.as_bytes() == sent => {
                report::trace(&format!(
                    "{}: the 412 met this run's own write (its answer was lost)",
                    self.state_url()
                ));
                *self.etag.lock().expect("etag") = etag;
                Ok(())
            }
            _ => Err(self.changed_under_us()),
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
            .client()
            .delete_object()
            .bucket(&self.bucket)
            .key(&self.key)
            .if_match(etag)
            .send()
            .await
            .sdk()
        {
            Ok(_) => Ok(()),
            Err(e) if not_found(&e) => Ok(()),
            Err(e) if precondition_failed(&e) => Err(self.changed_under_us()),
            Err(e) => Err(e.fail(format!("deleting {}", self.state_url()), "DeleteObject")),
        }
    }

    /// The lock object, if there is one.
    async fn see_lock(&self) -> Result<Option<Seen>> {
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
                    super::pause_or_interrupt(Duration::from_secs(1)).await?;
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

    fn holder_name(&self) -> String {
        self.holder
            .as_ref()
            .map(|h| h.to_string())
            .unwrap_or_else(|| "an unreadable lock".into())
    }

    /// Its lease has not run out by S3's clock (an unknown age counts as live).
    fn live(&self, default: Duration) -> bool {
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
                if crate::names::validate_stack(stack).is_ok() {
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
