//! The commands, one file each: each reads the configuration, prepares what it needs
//! before any AWS call (validation, the handler package, the state file, the lock),
//! then runs the stack's graph (see `graph`) or reads the state file.

mod converge;
mod down;
mod down_kinds;
mod list;
mod logs;
mod prune;
mod prune_check;
mod read;
mod rotate;
mod show_graph;
mod state_cmds;
mod status;
mod up;

pub use down::down;
pub use list::list;
pub use logs::logs;
pub use prune::{prune, Selection};
pub use read::{credentials, invoke, outputs, token};
pub use rotate::{rotate, RotatePlan};
pub use show_graph::graph;
pub use state_cmds::{init_state, unlock};
pub use status::status;
pub use up::up;

use std::sync::Mutex;

use crate::aws::{self, Aws};
use crate::cli::Format;
use crate::client;
use crate::config::{self, Desired, Target};
use crate::errors::{Error, Result};
use crate::package;
use crate::report::{self, Done};
use crate::resources::Ctx;
use crate::state::{self, Recorder, StateFile};
use crate::store::{self, Location, Lock, Store};

/// Everything a command that talks to AWS sets up first.
struct Session {
    aws: Aws,
    /// Known when the command asked STS (those that change or compare the stack).
    account: String,
    region: String,
    store: Store,
    lock: Option<Lock>,
    existing: Option<StateFile>,
}

impl Session {
    /// The state to start from: the store's, or a new one for this stack and region.
    fn state(&self, target: &Target) -> StateFile {
        self.existing.clone().unwrap_or_else(|| {
            StateFile::new(&target.stack, &self.region, target.endpoint_url.as_deref())
        })
    }

    /// Releases the lock (an S3 lock is deleted; a local one unlocked).
    async fn release(&mut self) {
        if let Some(lock) = self.lock.take() {
            lock.release().await;
        }
    }
}

/// What `open` does besides reading the state.
#[derive(Clone, Copy)]
struct Open {
    /// Take the stack's lock (`up`, `down`); reads take none.
    lock: bool,
    /// Ask STS for the account (and check the state is for it).
    account: bool,
}

/// Resolves the region, connects, takes the lock if asked, reads and checks the state.
/// Everything that can fail on bad input fails here, before any write; on an error
/// after the lock was taken, the lock is released.
async fn open(target: &Target, how: Open) -> Result<Session> {
    // A local state file pins the region unless one is named (read again under the lock).
    let pinned = store::pinned_region(&target.state, &target.stack)?;
    let region = match (&target.region, pinned) {
        (Some(r), _) => r.clone(),
        (None, Some(r)) => r,
        (None, None) => aws::resolve_region(None, target.is_local()).await?,
    };
    config::check_partition(&region, target.is_local())?;
    let mut aws = Aws::connect(&region, target.endpoint_url.as_deref()).await;
    let store = Store::open(&target.state, &region, &target.stack, &aws.s3);
    store.check().await?;
    // The state bucket may live in another region: S3 requests go there.
    if let Some(s3) = store.s3_client() {
        aws.s3 = s3;
    }
    let lock = if how.lock {
        Some(store.lock(target.lock).await?)
    } else {
        None
    };
    let mut session = Session {
        aws,
        account: String::new(),
        region,
        store,
        lock,
        existing: None,
    };
    match checked(&mut session, target, how).await {
        Ok(()) => Ok(session),
        Err(e) => {
            session.release().await;
            Err(e)
        }
    }
}

async fn checked(session: &mut Session, target: &Target, how: Open) -> Result<()> {
    let name = session.store.name();
    session.existing = session.store.load().await?;
    if let Some(s) = &session.existing {
        state::check_matches(s, &name, &target.stack, &session.region)?;
    }
    if how.account {
        session.account = session.aws.account().await?;
        if let Some(s) = &session.existing {
            state::check_account(s, &name, &session.account)?;
        }
        report::info(&format!(
            "account {}, region {}",
            session.account, session.region
        ));
    }
    Ok(())
}

fn resolve_prefix(desired: &Desired, account: &str, region: &str, stack: &str) -> Result<String> {
    match &desired.domain_prefix {
        Some(p) => Ok(p.clone()),
        None => {
            let p = config::derived_domain_prefix(account, region, stack);
            config::validate_domain_prefix(&p, "derived domain prefix").map_err(|e| {
                Error::usage(format!(
                    "{e} (derived from the stack name); pass --domain-prefix"
                ))
            })?;
            Ok(p)
        }
    }
}

/// What a run over the stack needs besides the session.
struct Run<'a> {
    desired: &'a Desired,
    prefix: &'a str,
    package: Option<&'a package::Package>,
    apply: bool,
    show: bool,
}

fn context<'a>(
    session: &'a Session,
    target: &'a Target,
    rec: &'a Recorder,
    run: Run<'a>,
) -> Ctx<'a> {
    Ctx {
        aws: &session.aws,
        stack: &target.stack,
        region: &session.region,
        account: &session.account,
        partition: aws::partition(&session.region),
        desired: run.desired,
        domain_prefix: run.prefix,
        package: run.package,
        rec,
        apply: run.apply,
        show: run.show,
        concurrent: target.concurrency > 1,
        done: Mutex::new(Vec::new()),
        function: Default::default(),
        api_surface: Default::default(),
        log_group_made: Default::default(),
        reads: Default::default(),
        token_url: client::token_url(target.endpoint_url.as_deref(), run.prefix, &session.region),
        artifacts: match &target.state {
            Location::S3 { bucket, prefix } => Some((
                bucket.clone(),
                store::s3::key(
                    prefix,
                    &format!("{}/artifacts/{}/", session.region, target.stack),
                ),
            )),
            Location::Dir(_) => None,
        },
    }
}

/// Will the handler run on Lambda? An error for AWS; a warning for the local emulator,
/// which runs it as a host process whatever it was built for.
fn check_handler(target: &Target, desired: &Desired, package: &package::Package) -> Result<()> {
    let problems = match &package.binary {
        Ok(info) => crate::elf::lambda_problems(info, desired.architecture),
        Err(why) => vec![why.clone()],
    };
    if problems.is_empty() {
        return Ok(());
    }
    let arch_flag = match desired.architecture {
        config::Arch::X86_64 => "",
        config::Arch::Arm64 => " --arm64",
    };
    let message = format!(
        "handler binary {}: {}; build it for Lambda with `cargo lambda build --release{arch_flag} -p handler` (or scripts/build-lambda {})",
        desired.handler.display(),
        problems.join("; "),
        desired.architecture
    );
    if target.is_local() {
        report::info(&format!("{message} (fine for the local emulator)"));
        Ok(())
    } else {
        Err(Error::usage(message))
    }
}

/// The order resources are listed in: the graph's kinds, parents first; several of a
/// kind in the configuration's order, those it no longer lists last.
const ORDER: [&str; 19] = [
    "iam_role",
    "log_group",
    "lambda_function",
    "user_pool",
    "user_pool_domain",
    "resource_server",
    "app_client",
    "secret",
    "rest_api",
    "authorizer",
    "method",
    "http_api",
    "jwt_authorizer",
    "integration",
    "route",
    "lambda_permission",
    "stage",
    "http_stage",
    "api_resource",
];

fn sorted(mut done: Vec<Done>, desired: &Desired) -> Vec<Done> {
    let within = |d: &Done| -> usize {
        if let Some(name) = &d.name {
            return desired
                .clients
                .iter()
                .position(|c| &c.name == name)
                .unwrap_or(usize::MAX);
        }
        if d.kind == "method" || d.kind == "route" {
            let (verb, path) = d.id.split_once(' ').unwrap_or(("", ""));
            let path_rank = usize::from(path != crate::resources::methods::ROOT);
            return desired
                .methods
                .iter()
                .position(|m| m.verb == verb)
                .map(|i| 2 * i + path_rank)
                .unwrap_or(usize::MAX);
        }
        0
    };
    done.sort_by_key(|d| {
        (
            ORDER
                .iter()
                .position(|k| *k == d.kind)
                .unwrap_or(ORDER.len()),
            within(d),
        )
    });
    done
}

fn emit(format: Format, run: &report::RunReport<'_>) {
    match format {
        Format::Json => report::emit_json(&run.json()),
        Format::Human => report::emit_text(&run.human()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Arch, Scope};

    fn target(endpoint: Option<&str>) -> Target {
        Target {
            stack: "s".into(),
            region: Some("eu-west-1".into()),
            endpoint_url: endpoint.map(str::to_string),
            state: Location::Dir("state".into()),
            concurrency: 8,
            lock: store::LockOpts {
                lease: store::DEFAULT_LEASE,
                wait: std::time::Duration::ZERO,
            },
        }
    }

    fn desired(arch: Arch) -> Desired {
        let scopes = vec![Scope::parse("users/read").unwrap()];
        Desired {
            domain_prefix: None,
            scopes: scopes.clone(),
            handler: "target/debug/handler".into(),
            handler_given: true,
            memory_mb: 128,
            timeout_s: 10,
            architecture: arch,
            token_validity_min: 60,
            log_retention_days: 30,
            clients: crate::consumers::resolve_clients(&[], &[], &scopes).unwrap(),
            methods: crate::consumers::resolve_methods(None, &scopes).unwrap(),
            front: Default::default(),
        }
    }

    fn package(binary: Vec<u8>) -> package::Package {
        package::Package::new(crate::elf::inspect(&binary), Vec::new())
    }

    #[test]
    fn a_handler_lambda_cannot_run_stops_an_aws_deploy_but_not_a_local_one() {
        let x86_new_glibc = package(crate::elf::tests::fixture(62, &["GLIBC_2.39"]));
        let err = check_handler(&target(None), &desired(Arch::X86_64), &x86_new_glibc).unwrap_err();
        assert_eq!(err.exit_code(), 2);
        assert!(
            err.to_string().contains("GLIBC_2.39")
                && err.to_string().contains("cargo lambda build"),
            "{err}"
        );
        check_handler(
            &target(Some("http://127.0.0.1:4566")),
            &desired(Arch::X86_64),
            &x86_new_glibc,
        )
        .expect("only a warning locally");

        let x86 = package(crate::elf::tests::fixture(62, &["GLIBC_2.17"]));
        check_handler(&target(None), &desired(Arch::X86_64), &x86).expect("runs on Lambda");
        let err = check_handler(&target(None), &desired(Arch::Arm64), &x86).unwrap_err();
        assert!(err.to_string().contains("--arm64"), "{err}");

        let script = package(b"#!/bin/sh\n".to_vec());
        let err = check_handler(&target(None), &desired(Arch::X86_64), &script).unwrap_err();
        assert!(err.to_string().contains("not an ELF"), "{err}");
    }
}
