//! The fence of a run that holds S3 leases: a local deadline, so fencing costs no
//! request. Each held lease has one: its last successful renewal (when that renewal was
//! sent, by the monotonic clock, which keeps counting while the process is stopped)
//! plus the lease, minus a margin for a request in flight and for S3's one-second
//! `Last-Modified`. Before every AWS write and every state write the run asks `check`;
//! past a deadline, or once a renewal found the lock gone or changed, the fence is down
//! for good: nothing more is sent, and the run ends with exit 4.
//!
//! A local state directory needs no fence: its `flock` is the kernel's and cannot be
//! lost while the process lives. Leaves on `std` only: the SDK layer checks it.

use std::sync::Mutex;
use std::time::{Duration, Instant};

struct Held {
    id: u64,
    /// Whose lock, for messages: `s3://bucket/key.lock`.
    lock: String,
    deadline: Instant,
    lease: Duration,
}

#[derive(Default)]
struct Fence {
    held: Vec<Held>,
    /// Why the run lost a lease: set once, never cleared.
    lost: Option<String>,
    next: u64,
}

static FENCE: Mutex<Fence> = Mutex::new(Fence {
    held: Vec::new(),
    lost: None,
    next: 0,
});

/// The margin kept before a lease runs out: a write sent before the deadline must land
/// before a taker can judge the lease over (S3 dates are whole seconds).
pub fn margin(lease: Duration) -> Duration {
    (lease / 5).max(Duration::from_secs(2)).min(lease / 2)
}

/// A lease this run holds; its deadline moves with each renewal.
#[derive(Debug)]
pub struct Lease {
    id: u64,
}

/// Starts fencing on a lease taken by a request sent at `sent`.
pub fn hold(lock: &str, lease: Duration, sent: Instant) -> Lease {
    let mut f = FENCE.lock().expect("fence");
    f.next += 1;
    let id = f.next;
    f.held.push(Held {
        id,
        lock: lock.to_string(),
        deadline: sent + lease - margin(lease),
        lease,
    });
    Lease { id }
}

impl Lease {
    /// A renewal sent at `sent` succeeded.
    pub fn renewed(&self, sent: Instant) {
        let mut f = FENCE.lock().expect("fence");
        if let Some(h) = f.held.iter_mut().find(|h| h.id == self.id) {
            h.deadline = h.deadline.max(sent + h.lease - margin(h.lease));
        }
    }

    /// The lease is known lost (the lock is gone or another run's): the fence goes down.
    pub fn lost(&self, why: String) {
        let mut f = FENCE.lock().expect("fence");
        if f.lost.is_none() {
            f.lost = Some(why);
        }
    }

    /// Released: its lock is deleted, nothing more to fence for it.
    pub fn release(&self) {
        FENCE
            .lock()
            .expect("fence")
            .held
            .retain(|h| h.id != self.id);
    }
}

/// Ok while every lease this run holds is in force; else why not (and from then on the
/// same answer, so a run never writes again once it was fenced).
pub fn check() -> Result<(), String> {
    let mut f = FENCE.lock().expect("fence");
    if let Some(why) = &f.lost {
        return Err(why.clone());
    }
    let now = Instant::now();
    let late = f.held.iter().find(|h| now > h.deadline).map(|h| {
        let since = now.duration_since(h.deadline) + margin(h.lease);
        format!(
            "lost the lock {}: not renewed within its lease of {}s (the last renewal is {:.1}s past it, less a margin of {}s; this process was stopped or cut off from S3), so another run may hold it now",
            h.lock,
            h.lease.as_secs(),
            since.as_secs_f64(),
            margin(h.lease).as_secs()
        )
    });
    if let Some(why) = late {
        f.lost = Some(why.clone());
        return Err(why);
    }
    Ok(())
}

/// What a fenced write says, so the layers above tell it from AWS's own errors.
pub const FENCED: &str = "provision:LostLock";

/// The fence is process-wide: unit tests that use it take turns.
#[cfg(test)]
pub static SERIAL: Mutex<()> = Mutex::new(());

#[cfg(test)]
pub fn reset_for_test() {
    *FENCE.lock().expect("fence") = Fence::default();
}

#[cfg(test)]
mod tests {
    use super::*;

    // One test: the fence is process-wide, and the unit tests share the process.
    #[test]
    fn a_lease_past_its_deadline_fences_for_good_and_renewals_move_it() {
        let _turn = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
        reset_for_test();
        let lease = Duration::from_secs(5);
        assert_eq!(margin(lease), Duration::from_secs(2));
        assert_eq!(margin(Duration::from_secs(60)), Duration::from_secs(12));
        let sent = Instant::now() - Duration::from_secs(2);
        let held = hold("s3://b/s.lock", lease, sent);
        check().expect("2 s into a 5 s lease (3 s usable)");
        // A renewal sent later moves the deadline; an older one never moves it back.
        held.renewed(Instant::now());
        held.renewed(sent - Duration::from_secs(10));
        check().expect("renewed just now");
        // Frozen past the deadline: fenced, and it stays so after a later renewal.
        held.renewed(Instant::now() - Duration::from_secs(4));
        let other = hold(
            "s3://b/t.lock",
            lease,
            Instant::now() - Duration::from_secs(4),
        );
        let why = check().expect_err("a lease past its deadline");
        assert!(why.contains("lost the lock s3://b/t.lock"), "{why}");
        other.renewed(Instant::now());
        assert!(check().is_err(), "fenced for good");
        held.release();
        reset_for_test();
    }
}
