//! `up`: create what is missing, update what differs, delete what the configuration no
//! longer lists (`--dry-run`: say so, and change nothing).

use std::time::Instant;

use super::converge::converge;
use super::{check_handler, context, emit, open, resolve_prefix, sorted, Open, Run, Session};
use crate::aws;
use crate::cli::Format;
use crate::client;
use crate::config::{Desired, Front, Target};
use crate::errors::{exit, Error, Result};
use crate::package;
use crate::report::{self, RunReport};
use crate::resources::{domain, http_api, stage, user_pool};
use crate::state::{Outputs, Recorder};
use crate::store::{self, Location, Sink};

pub async fn up(target: &Target, desired: &Desired, dry_run: bool, format: Format) -> Result<i32> {
    let started = Instant::now();
    // Fail on a missing handler before touching anything.
    let package = package::build(
        &desired.handler,
        desired.handler_given,
        desired.architecture,
        matches!(target.state, Location::S3 { .. }),
    )?;
    check_handler(target, desired, &package)?;
    if package.needs_s3() {
        let region = aws::resolve_region(target.region.as_deref(), target.is_local()).await?;
        let aws = aws::Aws::connect(&region, target.endpoint_url.as_deref()).await;
        store::check_package_route(&target.state, &region, &target.stack, &aws.s3).await?;
    }
    let mut session = open(
        target,
        Open {
            lock: !dry_run,
            account: true,
        },
    )
    .await?;
    let result = converge_stack(
        &session, target, desired, dry_run, format, &package, started,
    )
    .await;
    session.release().await;
    result
}

async fn converge_stack(
    session: &Session,
    target: &Target,
    desired: &Desired,
    dry_run: bool,
    format: Format,
    package: &package::Package,
    started: Instant,
) -> Result<i32> {
    let prefix = resolve_prefix(desired, &session.account, &session.region, &target.stack)?;
    crate::consumers::check_readers_in_account(&desired.clients, &session.account)?;
    let mut state = session.state(target);
    state.account = Some(session.account.clone());
    let url_before = state.outputs.as_ref().map(|o| o.api_url.clone());
    // Before anything is made: a switch killed before the new API is recorded still
    // tells `down` which front to look for.
    state.front = Some(desired.front.as_str().to_string());
    let sink = if dry_run {
        Sink::None
    } else {
        session.store.sink()
    };
    let rec = Recorder::new(sink, state);
    let ctx = context(
        session,
        target,
        &rec,
        Run {
            desired,
            prefix: &prefix,
            package: Some(package),
            apply: !dry_run,
            show: true,
        },
    );
    // The prefix must be free or ours before anything is created.
    if rec.get(domain::KIND).as_deref() != Some(prefix.as_str()) {
        domain::preflight(&ctx, rec.get(user_pool::KIND).as_deref()).await?;
    }
    let (verb, tail) = if dry_run {
        ("Plan for", ", no changes made")
    } else {
        ("Bringing up", "")
    };
    report::progress(&format!(
        "{verb} stack {} ({} in {}){tail}:",
        target.stack, session.account, session.region
    ));
    let converged = match Box::pin(converge(&ctx, target.concurrency)).await {
        Ok(c) => Some(c),
        // What was done is recorded; the lock goes when this returns.
        Err(Error::Interrupted) => None,
        Err(e) => {
            // Record what was made before the failure; the failure is what to report.
            let _ = rec.flush().await;
            return Err(e);
        }
    };
    let outputs = match converged {
        Some(converged) => {
            let api_url = match desired.front {
                Front::Rest => client::api_url(
                    target.endpoint_url.as_deref(),
                    &converged.api_id,
                    stage::STAGE,
                    &session.region,
                ),
                Front::Http => http_api::url(
                    target.endpoint_url.as_deref(),
                    &converged.api_id,
                    &session.region,
                ),
            };
            if let Some(before) = url_before.filter(|b| *b != api_url) {
                let (verb, tail) = if dry_run {
                    ("would change", "")
                } else {
                    ("changed", "; callers must use the new one")
                };
                report::warn(&format!(
                    "the API's URL {verb} (front {}): {before} -> {api_url}{tail}",
                    desired.front.as_str()
                ));
            }
            let outputs = Outputs {
                api_url,
                front: desired.front.as_str().to_string(),
                token_url: ctx.token_url.clone(),
                client_id: converged
                    .clients
                    .first()
                    .map(|(_, id)| id.clone())
                    .unwrap_or_default(),
                clients: converged.clients.iter().cloned().collect(),
                scope: desired.scope_strings().join(" "),
                user_pool_id: converged.pool_id,
                region: session.region.clone(),
                stack: target.stack.clone(),
            };
            rec.update(|s| s.outputs = Some(outputs.clone())).await?;
            Some(outputs)
        }
        None => None,
    };
    rec.flush().await?;
    let interrupted = outputs.is_none();
    if interrupted {
        report::warn(&format!(
            "stopped: what was done is recorded in {}; run `provision up` again to finish (or `provision down` to remove it)",
            session.store.name()
        ));
    }
    let done = sorted(ctx.done.into_inner().expect("done"), desired);
    emit(
        format,
        &RunReport {
            command: "up",
            stack: &target.stack,
            region: &session.region,
            resources: &done,
            front: Some(desired.front.as_str()),
            outputs: outputs.as_ref().filter(|_| !dry_run),
            api_calls: session.aws.calls.count(),
            elapsed: started.elapsed(),
            dry_run,
            interrupted,
        },
    );
    Ok(if interrupted {
        exit::INTERRUPTED
    } else {
        exit::OK
    })
}
