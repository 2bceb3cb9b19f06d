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
use std::time::Duration;

use aws_sdk_s3::primitives::ByteStream;
use aws_smithy_runtime_api::client::result::SdkError;

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
    /// For the bucket's own region once `check_bucket` found it.
    pub(super) client: Arc<Mutex<aws_sdk_s3::Client>>,
    pub(super) bucket: String,
    pub(super) region: String,
    pub(super) key: String,
    pub(super) lock_key: String,
    /// Where the older layout kept them: `PREFIX/<stack>.json`, `.lock`.
    pub(super) legacy_key: String,
    pub(super) legacy_lock_key: String,
    /// The ETag of the state object as this run last read or wrote it.
    pub(super) etag: Arc<Mutex<Option<String>>>,
    /// The bucket's region, when it is not the run's.
    pub(super) home: Arc<Mutex<Option<String>>>,
    /// This run holds the stack's lock.
    pub(super) locked: Arc<AtomicBool>,
}

pub(super) fn precondition_failed(e: &SdkFailure) -> bool {
    e.status == Some(412) || e.is("PreconditionFailed")
}

/// A concurrent conditional write on the same key: try again.
pub(super) fn conflict(e: &SdkFailure) -> bool {
    e.status == Some(409) || e.is("ConditionalRequestConflict")
}

pub(super) fn not_found(e: &SdkFailure) -> bool {
    e.is("NoSuchKey") || e.status == Some(404)
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

    pub(super) fn lock_url(&self) -> String {
        format!("s3://{}/{}", self.bucket, self.lock_key)
    }

    pub fn legacy_url(&self) -> String {
        format!("s3://{}/{}", self.bucket, self.legacy_key)
    }

    /// The bucket must exist and be reachable: a missing one is bad input (exit 2). One
    /// in another region answers 301 naming its region: from then on the store's client
    /// is one for that region (one more request, only then).
    pub async fn check_bucket(&self) -> Result<()> {
        match self.locate().await {
            Ok(()) => Ok(()),
            Err(e) if e.status == Some(404) || e.is("NotFound") || e.is("NoSuchBucket") => {
                Err(Error::usage(format!(
                    "state bucket `{}` does not exist (or is in another account); create it with `provision init-state s3://{}`",
                    self.bucket, self.bucket
                )))
            }
            Err(e) => Err(e.fail(format!("reaching state bucket {}", self.bucket), "HeadBucket")),
        }
    }

    /// `HeadBucket`, following a 301 to the bucket's own region (see `check_bucket`).
    pub async fn locate(&self) -> std::result::Result<(), SdkFailure> {
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
        answer.map(|_| ())
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
