//! One module per resource kind: find (or adopt), create, update, delete.
//!
//! A resource module knows AWS and the plan, not the CLI or the output format: it
//! reads what exists, asks `plan` what to do, does it (unless this is a dry run),
//! records the result through the state `Recorder`, and reports a `Done`.

pub mod app_client;
pub mod authorizer;
pub mod client_secrets;
pub mod domain;
pub mod function;
mod function_code;
mod function_ready;
pub mod http_api;
pub mod http_stage;
pub mod integration;
pub mod jwt_authorizer;
pub mod log_group;
pub mod methods;
mod once;
mod owner;
pub mod permission;
mod prefetch;
pub mod resource_server;
pub mod rest_api;
pub mod retire;
pub mod role;
pub mod role_names;
pub mod role_policy;
pub mod role_region;
pub mod route;
pub mod secret;
pub mod stage;
pub mod user_pool;

#[cfg(test)]
mod eventual;
#[cfg(test)]
mod late_deletions;
#[cfg(test)]
mod lost_answers;
#[cfg(test)]
mod mocked;
#[cfg(test)]
mod rotation_answers;

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Instant;

use crate::aws::Aws;
use crate::config::Desired;
use crate::errors::{Error, Result};
use crate::package::Package;
use crate::plan::{self, Decision};
use crate::report::{self, Done};
use crate::state::Recorder;

pub use once::{create_once, delete_api, retry_while, Create, Made};
pub use owner::{check_owner, not_ours, the_one, Removal, STACK_TAG};
pub use prefetch::prefetch;

/// Reads done (or under way) in this run, by key; values of any type.
pub type Reads = Mutex<
    HashMap<
        String,
        std::sync::Arc<tokio::sync::OnceCell<std::sync::Arc<dyn std::any::Any + Send + Sync>>>,
    >,
>;

/// The first read of a resource in a run, once: `prefetch` starts every read whose id
/// the state file knows, all at once, and a step asking for the same `key` gets that
/// answer (waiting for it if it is still under way) instead of a read of its own. Only
/// first looks go through here: a lookup after a write must see AWS now. A failed read
/// is not kept: the step reads again and reports its own error.
pub async fn read_once<T, Fut>(ctx: &Ctx<'_>, key: String, read: Fut) -> Result<T>
where
    T: Clone + Send + Sync + 'static,
    Fut: std::future::Future<Output = Result<T>>,
{
    let cell = ctx
        .reads
        .lock()
        .expect("reads")
        .entry(key)
        .or_default()
        .clone();
    let value = cell
        .get_or_try_init(|| async {
            let v = read.await?;
            Ok::<_, Error>(std::sync::Arc::new(v) as std::sync::Arc<dyn std::any::Any + Send + Sync>)
        })
        .await?;
    Ok(value
        .downcast_ref::<T>()
        .expect("one type of answer per read")
        .clone())
}

/// Every item of a listing whose pages are followed by hand (API Gateway v2's have no
/// paginator): `page(token)` sends one request and gives its items and the next token;
/// an absent or empty token ends it.
pub async fn every_page<T, F, Fut>(mut page: F) -> Result<Vec<T>>
where
    F: FnMut(Option<String>) -> Fut,
    Fut: std::future::Future<Output = Result<(Vec<T>, Option<String>)>>,
{
    let mut all = Vec::new();
    let mut token = None;
    loop {
        let (items, next) = page(token).await?;
        all.extend(items);
        token = next.filter(|t| !t.is_empty());
        if token.is_none() {
            return Ok(all);
        }
    }
}

/// Placeholder id of a resource a dry run would create.
pub const NEW: &str = "(new)";

/// The id to show: a resource that does not exist yet is shown by its name.
pub fn shown(id: &str, name: &str) -> String {
    if id == NEW {
        name.to_string()
    } else {
        id.to_string()
    }
}

/// Everything a resource module needs for one run.
pub struct Ctx<'a> {
    pub aws: &'a Aws,
    pub stack: &'a str,
    pub region: &'a str,
    pub account: &'a str,
    pub partition: &'static str,
    pub desired: &'a Desired,
    /// The domain prefix, resolved (given or derived).
    pub domain_prefix: &'a str,
    /// The handler package; `status` can run without one (then code is not compared).
    pub package: Option<&'a Package>,
    pub rec: &'a Recorder,
    /// false: read and plan only (dry run, status).
    pub apply: bool,
    /// Show a line per resource as it is done.
    pub show: bool,
    /// false: every step one after another (`--max-concurrency 1`), the baseline.
    pub concurrent: bool,
    pub done: Mutex<Vec<Done>>,
    /// The run's one read of the function (the role needs it too; see `function::observed`).
    pub function: tokio::sync::OnceCell<Option<function::Found>>,
    /// The run's one read of the API's resources and methods (see `methods::surface`).
    pub api_surface: tokio::sync::OnceCell<methods::Surface>,
    /// The log group exists: the function is created only then (so Lambda never makes
    /// an untagged group of its own), without waiting for the group's retention.
    pub log_group_made: Signal,
    /// The run's first read of each resource, by what it reads (see `read_once`).
    pub reads: Reads,
    /// The stack's token endpoint (what a published secret tells its readers).
    pub token_url: String,
    /// With state on S3: (bucket, key prefix) for handler packages too big to send in
    /// the request (`PREFIX/artifacts/<stack>/`).
    pub artifacts: Option<(String, String)>,
}

/// A one-time "done" (or "failed") one step gives others that wait for part of it.
#[derive(Debug)]
pub struct Signal(tokio::sync::watch::Sender<Option<bool>>);

impl Default for Signal {
    fn default() -> Self {
        Signal(tokio::sync::watch::channel(None).0)
    }
}

impl Signal {
    /// Says how it went, unless it was said already.
    pub fn set(&self, ok: bool) {
        self.0.send_if_modified(|v| {
            let unset = v.is_none();
            if unset {
                *v = Some(ok);
            }
            unset
        });
    }

    /// Waits until it is said; false when it failed. An interrupt ends the wait.
    pub async fn wait(&self) -> Result<bool> {
        let mut rx = self.0.subscribe();
        tokio::select! {
            said = rx.wait_for(Option::is_some) => Ok(said.map(|v| *v == Some(true)).unwrap_or(false)),
            () = crate::interrupt::wait() => Err(Error::Interrupted),
        }
    }
}

/// A resource that exists (or, in a dry run, would).
#[derive(Debug, Clone)]
pub struct Handle {
    pub id: String,
    pub arn: String,
    /// Created in this run (or would be): nothing hangs off it yet, so its children
    /// need no read to know they are absent.
    pub fresh: bool,
}

impl Handle {
    pub fn new(id: impl Into<String>, arn: impl Into<String>, fresh: bool) -> Self {
        Handle {
            id: id.into(),
            arn: arn.into(),
            fresh,
        }
    }
}

impl Ctx<'_> {
    /// Both futures, at the same time unless concurrency is off.
    pub async fn both<A, B>(
        &self,
        a: impl std::future::Future<Output = A>,
        b: impl std::future::Future<Output = B>,
    ) -> (A, B) {
        if self.concurrent {
            tokio::join!(a, b)
        } else {
            let a = a.await;
            (a, b.await)
        }
    }

    /// Runs one step with a spinner (on a terminal) saying what is in flight.
    pub async fn track<T>(&self, label: &str, step: impl std::future::Future<Output = T>) -> T {
        let _activity = self.show.then(|| report::activity(label));
        step.await
    }

    /// The role name of a stack made now (see `role` for roles made before).
    pub fn role_name(&self) -> String {
        role::regional_name(self.stack, self.region)
    }
    pub fn function_name(&self) -> String {
        format!("{}-handler", self.stack)
    }
    pub fn pool_name(&self) -> String {
        format!("{}-pool", self.stack)
    }
    /// The Cognito name of a configured client.
    pub fn client_name(&self, name: &str) -> String {
        format!("{}-{name}", self.stack)
    }
    pub fn api_name(&self) -> String {
        format!("{}-api", self.stack)
    }
    pub fn authorizer_name(&self) -> String {
        format!("{}-authorizer", self.stack)
    }

    /// Records what was decided and done for one resource, and shows it.
    pub fn finish(
        &self,
        kind: &'static str,
        id: &str,
        decision: &Decision,
        recorded: bool,
        started: Instant,
    ) {
        self.finish_named(kind, id, None, decision, recorded, started)
    }

    /// `finish` for a resource of a kind the stack has several of, by configured name.
    pub fn finish_named(
        &self,
        kind: &'static str,
        id: &str,
        name: Option<&str>,
        decision: &Decision,
        recorded: bool,
        started: Instant,
    ) {
        let done = Done {
            kind,
            id: id.to_string(),
            name: name.map(str::to_string),
            action: plan::action(decision, recorded),
            changes: plan::changes(decision),
            reason: None,
            elapsed: started.elapsed(),
        };
        if self.show {
            report::resource_line(&done, !self.apply);
        }
        self.done.lock().expect("done").push(done);
    }

    /// Records a resource that was (or, in a dry run, would be) deleted because it is
    /// not part of the stack's desired state.
    pub fn finish_extra(&self, kind: &'static str, id: &str, name: Option<&str>, started: Instant) {
        let done = Done {
            kind,
            id: id.to_string(),
            name: name.map(str::to_string),
            action: report::Action::Deleted,
            changes: Vec::new(),
            reason: None,
            elapsed: started.elapsed(),
        };
        if self.show {
            report::resource_line(&done, !self.apply);
        }
        self.done.lock().expect("done").push(done);
    }

    pub fn tag_value(&self) -> &str {
        self.stack
    }
}

#[cfg(test)]
mod signal_tests {
    use super::Signal;

    #[tokio::test]
    async fn a_signal_is_said_once_and_heard_by_whoever_waits() {
        let s = Signal::default();
        let (heard, ()) = tokio::join!(s.wait(), async {
            tokio::task::yield_now().await;
            s.set(false);
            // Said already: a later "done" does not turn a failure into success.
            s.set(true);
        });
        assert!(!heard.unwrap());
        assert!(!s.wait().await.unwrap(), "a late waiter hears the same");
    }
}
