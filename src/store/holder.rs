//! Who holds a lock (the lock object's body) and what a conditional PUT of it came to:
//! shared by taking a lock (`lease`) and holding it (`held`).

use std::time::Duration;

use serde::{Deserialize, Serialize};

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
    pub(super) fn me(lease: Duration) -> Holder {
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

/// What a conditional PUT of the lock came to.
pub(super) enum Put {
    Done(String),
    /// 412: the lock is not (or no longer) at the ETag this run assumed.
    Refused,
    /// 409: another conditional write on the key was in progress; try again.
    Conflict,
    /// 404 on an `If-Match`: the lock is gone.
    Gone,
}
