//! Cancellation as CI systems do it. GitHub Actions sends SIGINT, SIGTERM 7.5 s later
//! and SIGKILL 2.5 s after that; Kubernetes and GitLab send SIGTERM and wait a grace
//! period. So:
//!
//! - The first signal (`requested`): nothing new starts, every wait (readiness,
//!   propagation, quota, deletion, retry sleeps: see `sleep`) ends at once, and the
//!   requests in flight get `GRACE` to finish; then what is known is recorded, the
//!   lock released, the report printed, exit 130.
//! - A second signal (`abandoned`): the requests in flight are dropped at once, but
//!   the state is still recorded and the lock still released, within `HARD_STOP`.
//!   Only if that cannot be done in time does the process end without it (the lock's
//!   lease then frees the stack), as it would on SIGKILL.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::OnceLock;
use std::time::Duration;

use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::Notify;

use crate::errors::Error;
use crate::report;

/// How long the requests in flight may take to finish after the first signal: well
/// inside GitHub's 7.5 s before SIGTERM, so the run is recorded and its lock released
/// before the second signal comes at all.
pub const GRACE: Duration = Duration::from_secs(5);

/// After a second signal, the most the record and the lock's release may take before
/// the process ends without them (GitHub's SIGKILL follows 2.5 s later).
pub const HARD_STOP: Duration = Duration::from_millis(900);

static REQUESTED: AtomicBool = AtomicBool::new(false);
static ABANDONED: AtomicBool = AtomicBool::new(false);

fn first() -> &'static Notify {
    static NOTIFY: OnceLock<Notify> = OnceLock::new();
    NOTIFY.get_or_init(Notify::new)
}

fn second() -> &'static Notify {
    static NOTIFY: OnceLock<Notify> = OnceLock::new();
    NOTIFY.get_or_init(Notify::new)
}

/// Whether the run was asked to stop.
pub fn requested() -> bool {
    REQUESTED.load(Ordering::SeqCst) || on_this_thread()
}

#[cfg(test)]
thread_local! {
    /// Unit tests run side by side in one process: a test's "signal" is its own.
    static ON_THIS_THREAD: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

#[cfg(test)]
fn on_this_thread() -> bool {
    ON_THIS_THREAD.with(std::cell::Cell::get)
}

#[cfg(not(test))]
fn on_this_thread() -> bool {
    false
}

/// A first signal for the calling thread only (a unit test on a current-thread runtime).
#[cfg(test)]
pub(crate) fn raise_on_this_thread() {
    ON_THIS_THREAD.with(|s| s.set(true));
    first().notify_waiters();
}

/// Whether the run was asked twice: requests in flight are not waited for.
pub fn abandoned() -> bool {
    ABANDONED.load(Ordering::SeqCst)
}

/// Resolves once the run is asked to stop.
pub async fn wait() {
    loop {
        let notified = first().notified();
        if requested() {
            return;
        }
        // Woken for another thread's test signal (see `raise_on_this_thread`): wait on.
        notified.await;
    }
}

/// Resolves once the run is asked to stop a second time.
pub async fn wait_abandoned() {
    let notified = second().notified();
    if abandoned() {
        return;
    }
    notified.await;
}

/// Sleeps for `d` unless the run is asked to stop first: every wait between requests
/// (polls, retries, backoff) goes through here, so a signal ends it at once.
pub async fn sleep(d: Duration) -> Result<(), Error> {
    tokio::select! {
        () = tokio::time::sleep(d) => Ok(()),
        () = wait() => Err(Error::Interrupted),
    }
}

/// Marks the run as asked to stop, once or twice (as the signal handler does).
fn signalled() {
    if REQUESTED.swap(true, Ordering::SeqCst) {
        ABANDONED.store(true, Ordering::SeqCst);
        second().notify_waiters();
    }
    first().notify_waiters();
}

/// Listens for SIGINT and SIGTERM on `runtime` for the rest of the process.
pub fn install(runtime: &tokio::runtime::Runtime) {
    let _guard = runtime.enter();
    let (Ok(mut int), Ok(mut term)) = (
        signal(SignalKind::interrupt()),
        signal(SignalKind::terminate()),
    ) else {
        report::warn("cannot listen for Ctrl-C; an interrupt stops the run at once");
        return;
    };
    runtime.spawn(async move {
        loop {
            tokio::select! {
                _ = int.recv() => {}
                _ = term.recv() => {}
            }
            if requested() {
                if abandoned() {
                    continue;
                }
                signalled();
                report::warn("interrupted again: abandoning the requests in flight; recording what is known and releasing the lock");
                // A thread, not a task: it must fire even if the runtime is stuck.
                std::thread::spawn(|| {
                    std::thread::sleep(HARD_STOP);
                    report::clear();
                    eprintln!("could not record and release in time: stopping now; the lock expires with its lease; `provision up` or `provision down` picks up from here");
                    std::process::exit(crate::errors::exit::INTERRUPTED);
                });
            } else {
                signalled();
                report::warn(&format!(
                    "interrupted: starting nothing new, letting the requests in flight finish (at most {} s; a second signal abandons them)",
                    GRACE.as_secs()
                ));
            }
        }
    });
}
