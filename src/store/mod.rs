//! Where a stack's state lives, and how one run at a time is ensured: a local directory
//! (`<dir>/<region>/<stack>.json` written atomically, a `flock`ed `<stack>.lock` beside
//! it) or S3 (`s3://BUCKET/PREFIX/<region>/`: `<stack>.json` written with conditional
//! writes, and a lease lock `<stack>.lock` that a dead holder cannot wedge). One location
//! serves every region. A command opens the store once; resource modules only ever see
//! the `Recorder`, never which store it is.
//!
//! The older layout (`<location>/<stack>.json`, no region) is still read: a state there
//! whose recorded region is the run's is moved to the new place by the next run that
//! takes the lock. An older provision may still be running on it, holding the old lock
//! (`<location>/<stack>.lock`), which it alone knows: while that lock is live the move
//! waits (exit 4, naming its holder), so the two never work on one stack at once. Once
//! moved, an older provision finds no state at the old place and finds the stack by its
//! tags, as without a state: upgrade the runners sharing a location together.

pub mod file;
pub mod held;
mod holder;
pub mod lease;
pub mod s3;
mod sink;

pub use sink::{Behind, Sink};

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::errors::{Error, Result};
use crate::state::{self, StateFile};

/// The default lease of an S3 lock, and its bounds.
pub const DEFAULT_LEASE: Duration = Duration::from_secs(60);
pub const LEASE_RANGE: std::ops::RangeInclusive<u64> = 5..=3600;

/// Where the state is: `--state-dir DIR` or `--state-dir s3://BUCKET[/PREFIX]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Location {
    Dir(PathBuf),
    S3 { bucket: String, prefix: String },
}

impl Location {
    pub fn parse(raw: &Path) -> Result<Location> {
        let text = raw.to_string_lossy();
        let Some(rest) = text.strip_prefix("s3://") else {
            return Ok(Location::Dir(raw.to_path_buf()));
        };
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        validate_bucket(bucket).map_err(|why| {
            Error::usage(format!(
                "state location `{text}`: {why}; write it as s3://BUCKET[/PREFIX]"
            ))
        })?;
        Ok(Location::S3 {
            bucket: bucket.to_string(),
            prefix: prefix.trim_matches('/').to_string(),
        })
    }

    /// The lock's address, for messages: a path or an s3:// URL.
    pub fn lock_name(&self, region: &str, stack: &str) -> String {
        self.name(&format!("{region}/{stack}.lock"))
    }

    fn name(&self, file: &str) -> String {
        match self {
            Location::Dir(d) => d.join(file).display().to_string(),
            Location::S3 { bucket, prefix } => {
                format!("s3://{bucket}/{}", s3::key(prefix, file))
            }
        }
    }
}

/// S3's rules for bucket names (general purpose buckets):
/// https://docs.aws.amazon.com/AmazonS3/latest/userguide/bucketnamingrules.html
fn validate_bucket(bucket: &str) -> std::result::Result<(), String> {
    if bucket.is_empty() {
        return Err("no bucket".into());
    }
    let ok_chars = bucket
        .chars()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '.' || c == '-');
    let edges = |c: Option<char>| c.is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
    let ip_like = bucket.split('.').count() == 4
        && bucket
            .split('.')
            .all(|p| !p.is_empty() && p.chars().all(|c| c.is_ascii_digit()));
    if !(3..=63).contains(&bucket.len()) {
        Err(format!("bucket name `{bucket}` must be 3 to 63 characters"))
    } else if !ok_chars {
        Err(format!(
            "bucket name `{bucket}` may hold only a-z, 0-9, . and -"
        ))
    } else if !edges(bucket.chars().next()) || !edges(bucket.chars().last()) {
        Err(format!(
            "bucket name `{bucket}` must start and end with a letter or digit"
        ))
    } else if bucket.contains("..") || ip_like {
        Err(format!(
            "bucket name `{bucket}` must not hold `..` or look like an IP address"
        ))
    } else {
        Ok(())
    }
}

/// How long a run holds and waits for the lock.
#[derive(Debug, Clone, Copy)]
pub struct LockOpts {
    /// An S3 lock not renewed for this long has expired (local locks die with their process).
    pub lease: Duration,
    /// How long to wait for a held lock before exit 4 (0: not at all).
    pub wait: Duration,
}

/// The state store of one stack in one region.
pub enum Store {
    Dir(file::FileStore),
    S3(s3::S3Store),
}

/// A held lock. `release` it at the end (after an error too); a local lock also goes
/// when the process dies, an S3 one when its lease runs out.
pub enum Lock {
    File(file::FileLock),
    S3(held::LeaseLock),
}

impl Lock {
    pub async fn release(self) {
        match self {
            Lock::File(l) => drop(l),
            Lock::S3(l) => l.release().await,
        }
    }
}

/// Says that the run waits for a held lock: once by default (a CI log shows why the
/// job stands still), then at each look with -v.
fn say_waiting(told: &mut bool, holder: &str, wait: Duration) {
    let line = format!("waiting for the lock held by {holder}");
    if *told {
        crate::report::info(&line);
    } else {
        crate::report::warn(&format!(
            "{line}; waiting up to {}s (--lock-wait)",
            wait.as_secs()
        ));
        *told = true;
    }
}

impl Store {
    pub fn open(
        location: &Location,
        region: &str,
        stack: &str,
        s3_client: &aws_sdk_s3::Client,
    ) -> Store {
        match location {
            Location::Dir(dir) => Store::Dir(file::FileStore::new(dir, region, stack)),
            Location::S3 { bucket, prefix } => Store::S3(s3::S3Store::new(
                s3_client.clone(),
                bucket,
                prefix,
                region,
                stack,
            )),
        }
    }

    pub fn name(&self) -> String {
        match self {
            Store::Dir(f) => f.path().display().to_string(),
            Store::S3(s) => s.state_url(),
        }
    }

    /// The store is there: for S3, the bucket (exit 2 naming it when it is not), found
    /// in whichever region it lives.
    pub async fn check(&self) -> Result<()> {
        match self {
            Store::Dir(_) => Ok(()),
            Store::S3(s) => s.check_bucket().await,
        }
    }

    /// The S3 client for the state bucket's region (after `check`): the one to use for
    /// anything else kept in that bucket.
    pub fn s3_client(&self) -> Option<aws_sdk_s3::Client> {
        match self {
            Store::Dir(_) => None,
            Store::S3(s) => Some(s.client()),
        }
    }

    /// The state bucket's region, once `check` found it.
    pub fn bucket_region(&self) -> Option<String> {
        match self {
            Store::Dir(_) => None,
            Store::S3(s) => s.bucket_region(),
        }
    }

    pub async fn lock(&self, opts: LockOpts) -> Result<Lock> {
        match self {
            Store::Dir(f) => Ok(Lock::File(f.lock(opts.wait).await?)),
            Store::S3(s) => Ok(Lock::S3(s.lock(opts).await?)),
        }
    }

    /// The state, if there is one; anything unusable is an error (exit 2). A state in
    /// the older layout for this region is read too, and moved when this run holds the
    /// lock (see the module's comment).
    pub async fn load(&self) -> Result<Option<StateFile>> {
        let name = self.name();
        let text = match self {
            Store::Dir(f) => f.read()?,
            Store::S3(s) => s.read().await?,
        };
        if let Some(t) = text {
            return state::parse(&t, &name).map(Some);
        }
        let (old_name, old) = match self {
            Store::Dir(f) => (f.legacy_path().display().to_string(), f.read_legacy()?),
            Store::S3(s) => (s.legacy_url(), s.read_legacy().await?),
        };
        let Some((text, old_version)) = old else {
            return Ok(None);
        };
        let found = state::parse(&text, &old_name)?;
        let region = match self {
            Store::Dir(f) => f.region(),
            Store::S3(s) => s.region(),
        };
        if found.region != region {
            // Another region's, in the older layout: not this run's to read or move.
            return Ok(None);
        }
        let locked = match self {
            Store::Dir(f) => f.holds_lock(),
            Store::S3(s) => s.holds_lock(),
        };
        if locked {
            match self {
                Store::Dir(f) => f.move_legacy(text.as_bytes())?,
                Store::S3(s) => s.move_legacy(text.into_bytes(), old_version).await?,
            }
            crate::report::info(&format!("moved the state {old_name} to {name}"));
        }
        Ok(Some(found))
    }

    /// Where the `Recorder` writes.
    pub fn sink(&self) -> Sink {
        match self {
            Store::Dir(f) => Sink::File(f.path().to_path_buf()),
            Store::S3(s) => Sink::S3(Behind::start(s.clone())),
        }
    }
}

/// The region a local state directory pins for `stack` when none is named: the one
/// region it has a state for (`<dir>/<region>/<stack>.json`), else the region recorded
/// in an older-layout `<dir>/<stack>.json`. None when there is none, or several.
pub fn pinned_region(location: &Location, stack: &str) -> Result<Option<String>> {
    let Location::Dir(dir) = location else {
        return Ok(None);
    };
    let regions = file::regions_with(dir, stack)?;
    match regions.as_slice() {
        [one] => return Ok(Some(one.clone())),
        [] => {}
        _ => return Ok(None),
    }
    let legacy = file::FileStore::new(dir, "", stack);
    match legacy.read_legacy()? {
        Some((text, _)) => Ok(Some(
            state::parse(&text, &legacy.legacy_path().display().to_string())?.region,
        )),
        None => Ok(None),
    }
}

/// The stacks with a state in `location` for `region` (`<region>/<stack>.json`, and
/// older-layout states recording that region). A state that cannot be read is passed
/// over with a warning: `list` is for finding stacks.
pub async fn stacks_in(
    location: &Location,
    s3_client: &aws_sdk_s3::Client,
    region: &str,
) -> Result<Vec<String>> {
    let (names, legacy) = match location {
        Location::Dir(dir) => (file::stacks_in(&dir.join(region))?, file::stacks_in(dir)?),
        Location::S3 { bucket, prefix } => (
            s3::stacks_in(s3_client, bucket, &s3::key(prefix, region)).await?,
            s3::stacks_in(s3_client, bucket, prefix).await?,
        ),
    };
    // An older-layout state names its region inside: read it to know.
    let reads = legacy
        .into_iter()
        .filter(|stack| !names.contains(stack))
        .map(|stack| async move {
            let store = Store::open(location, region, &stack, s3_client);
            match store.load().await {
                Ok(Some(_)) => Ok(Some(stack)),
                Ok(None) => Ok(None),
                Err(Error::State { path, message }) => {
                    crate::report::warn(&format!("state file {path}: {message}; not listed"));
                    Ok(None)
                }
                Err(e) => Err(e),
            }
        });
    use futures_util::stream::{self, StreamExt, TryStreamExt};
    let found: Vec<Option<String>> = stream::iter(reads).buffered(8).try_collect().await?;
    let mut all: Vec<String> = names
        .into_iter()
        .chain(found.into_iter().flatten())
        .collect();
    all.sort();
    Ok(all)
}

/// A package over Lambda's direct upload goes through the state bucket, and Lambda
/// takes code from S3 only in its own region: with the bucket elsewhere, exit 2 before
/// anything is written, saying so.
pub async fn check_package_route(
    location: &Location,
    region: &str,
    stack: &str,
    s3_client: &aws_sdk_s3::Client,
) -> Result<()> {
    let store = Store::open(location, region, stack, s3_client);
    store.check().await?;
    match (store.bucket_region(), location) {
        (Some(home), Location::S3 { bucket, .. }) if home != region => Err(Error::usage(format!(
            "handler package: over Lambda's 50 MB direct upload, so it must go through the state bucket `{bucket}`, but that bucket is in {home} and Lambda takes code from S3 only in its own region ({region}); shrink the package, or keep the state in a bucket of {region}"
        ))),
        _ => Ok(()),
    }
}

/// Whether a live run holds the stack's lock (a local `flock`, or an S3 lease that has
/// not run out). Takes nothing.
pub async fn is_locked(
    location: &Location,
    s3_client: &aws_sdk_s3::Client,
    region: &str,
    stack: &str,
) -> Result<bool> {
    match Store::open(location, region, stack, s3_client) {
        Store::Dir(f) => f.is_locked(),
        Store::S3(s) => s.is_locked().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_locations_parse_and_name_their_objects() {
        assert_eq!(
            Location::parse(Path::new("state")).unwrap(),
            Location::Dir("state".into())
        );
        let s3 = Location::parse(Path::new("s3://team-state/ci/stacks/")).unwrap();
        assert_eq!(
            s3,
            Location::S3 {
                bucket: "team-state".into(),
                prefix: "ci/stacks".into()
            }
        );
        assert_eq!(
            s3.lock_name("eu-west-1", "m2m"),
            "s3://team-state/ci/stacks/eu-west-1/m2m.lock"
        );
        assert_eq!(
            Location::parse(Path::new("s3://b-1.x"))
                .unwrap()
                .lock_name("us-east-1", "m2m"),
            "s3://b-1.x/us-east-1/m2m.lock"
        );
        assert_eq!(
            Location::parse(Path::new("st"))
                .unwrap()
                .lock_name("us-east-1", "m2m"),
            "st/us-east-1/m2m.lock"
        );
        for (bad, says) in [
            ("s3://", "no bucket"),
            ("s3:///prefix", "no bucket"),
            ("s3://ab", "3 to 63"),
            ("s3://Team-State", "a-z"),
            ("s3://-team", "start and end"),
            ("s3://a..b", "`..`"),
            ("s3://192.168.1.1", "IP address"),
            ("s3://under_score", "a-z"),
        ] {
            let err = Location::parse(Path::new(bad)).unwrap_err();
            assert_eq!(err.exit_code(), 2);
            assert!(err.to_string().contains(says), "{bad}: {err}");
        }
    }
}
