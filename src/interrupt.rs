//! Ctrl-C, or SIGTERM (what a CI system sends when a job is cancelled), during `up` or
//! `down`: the first signal stops the run cleanly — nothing new starts, the requests
//! in flight finish (for `GRACE` at most), what was done is recorded, the lock is
//! released, and the command says how to go on and exits 130. A second signal ends
//! the process at once; the run stays crash-safe (the state file is written after
//! each resource).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::OnceLock;
use std::time::Duration;

use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::Notify;

use crate::report;

/// How long the requests in flight may take to finish after the first signal.
pub const GRACE: Duration = Duration::from_secs(10);

static REQUESTED: AtomicBool = AtomicBool::new(false);

fn notify() -> &'static Notify {
    static NOTIFY: OnceLock<Notify> = OnceLock::new();
    NOTIFY.get_or_init(Notify::new)
}

/// Whether the run was asked to stop.
pub fn requested() -> bool {
    REQUESTED.load(Ordering::SeqCst)
}

/// Resolves once the run is asked to stop.
pub async fn wait() {
    let notified = notify().notified();
    if requested() {
        return;
    }
    notified.await;
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
            if REQUESTED.swap(true, Ordering::SeqCst) {
                report::clear();
                eprintln!("interrupted again: stopping at once; `provision up` or `provision down` picks up from here");
                std::process::exit(crate::errors::exit::INTERRUPTED);
            }
            report::warn("interrupted: starting nothing new, letting the requests in flight finish (Ctrl-C again stops at once)");
            notify().notify_waiters();
        }
    });
}
