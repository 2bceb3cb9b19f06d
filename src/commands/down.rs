//! `down`: every resource of the stack, children first, what a parent's deletion
//! removes with it skipped (see `graph::teardown`); the state file last.
//!
//! Only what is the stack's goes: each resource is read before its delete and must
//! carry the stack's tag (or, for a domain, hang off a pool that does). A stale state
//! file (a restored backup, another runner's copy) may name a resource that is someone
//! else's now: it is kept and reported so. What the state does not record (a run
//! killed between a create and its state write) is found by name and tag.

use std::time::Instant;

use super::down_kinds::{
    api_by_id, apis_by_search, cascaded, http_apis, pool_by_id, pools_by_search, recorded_kept,
    removal, secrets, tell,
};
use super::{context, emit, open, sorted, Open, Run, Session};
use crate::cli::{Format, StackArgs};
use crate::config::{self, FileConfig, Target};
use crate::errors::{exit, Error, Result};
use crate::graph::{self, Node};
use crate::report::{self, Done, RunReport};
use crate::resources::{domain, function, log_group, rest_api, role, user_pool, Ctx, Removal};
use crate::state::{Recorder, StateFile};
use crate::store::Sink;

pub async fn down(target: &Target, format: Format) -> Result<i32> {
    let started = Instant::now();
    let mut session = open(
        target,
        Open {
            lock: true,
            account: true,
        },
    )
    .await?;
    let result = take_down(&session, target, true).await;
    session.release().await;
    let gone = result?;
    emit(
        format,
        &RunReport {
            command: "down",
            stack: &target.stack,
            region: &session.region,
            resources: &gone.done,
            front: None,
            outputs: None,
            api_calls: session.aws.calls.count(),
            elapsed: started.elapsed(),
            dry_run: false,
            interrupted: gone.interrupted,
        },
    );
    Ok(if gone.interrupted {
        exit::INTERRUPTED
    } else {
        exit::OK
    })
}

/// What `take_down` did: each resource, and whether a signal stopped it first.
pub(super) struct Gone {
    pub done: Vec<Done>,
    pub interrupted: bool,
}

/// Deletes everything of the stack, then its state. `show`: a line per resource (off
/// when `prune` takes down several stacks at once).
pub(super) async fn take_down(session: &Session, target: &Target, show: bool) -> Result<Gone> {
    let recorded = session.state(target);
    // Without a state there is nothing to keep current (nor to delete at the end).
    let sink = if session.existing.is_some() {
        session.store.sink()
    } else {
        Sink::None
    };
    let rec = Recorder::new(sink, recorded.clone());
    // The stack as configured does not matter: everything of it goes, whatever the
    // configuration says now (no client publishes a secret, so all secrets go too).
    let desired = config::resolve_desired(&StackArgs::default(), &FileConfig::default())?;
    let ctx = context(
        session,
        target,
        &rec,
        Run {
            desired: &desired,
            prefix: "",
            package: None,
            apply: true,
            show,
        },
    );
    if show {
        report::progress(&format!(
            "Taking down stack {} ({} in {}):",
            target.stack, session.account, session.region
        ));
    }
    // An HTTP API the state does not record is looked for without a state file, or
    // when the last `up` built (or was switching to) that front: a REST stack's `down`
    // costs no listing of HTTP APIs.
    let search_http = session.existing.is_none() || recorded.front.as_deref() == Some("http");
    // And a REST API unless the state says the stack is (all) on the HTTP front.
    let search_rest = session.existing.is_none() || recorded.front.as_deref() != Some("http");
    let g = graph::teardown();
    let interrupted = match graph::run(&g, target.concurrency, |i, _: Vec<(Node, ())>| {
        remove(&ctx, &g.nodes[i], &recorded, (search_rest, search_http))
    })
    .await
    {
        Ok(_) => false,
        // What is gone is recorded; the state file stays for the next `down`.
        Err(Error::Interrupted) => {
            rec.flush().await?;
            report::warn(&format!(
                "stopped: what is gone is recorded in {}; run `provision down` again to finish",
                session.store.name()
            ));
            true
        }
        Err(e) => {
            let _ = rec.flush().await;
            return Err(e);
        }
    };
    if !interrupted {
        // Last: the state file, once nothing it names is left.
        rec.delete_file().await?;
    }
    Ok(Gone {
        done: sorted(ctx.done.into_inner().expect("done"), &desired),
        interrupted,
    })
}

/// `search`: whether to look for a REST API, an HTTP API the state does not record.
async fn remove(
    ctx: &Ctx<'_>,
    node: &Node,
    recorded: &StateFile,
    (search_rest, search_http): (bool, bool),
) -> Result<()> {
    let t = Instant::now();
    match node {
        // A recorded id of ours was made (or adopted) through the exactly-once path, so
        // it is the only one: deleted with no search. Without one, when it is gone
        // already (a later one's id may have been lost by a killed run), or when it is
        // someone else's now, every API and pool of the stack's name and tag goes,
        // duplicates included.
        Node::Api if recorded.get(rest_api::KIND).is_none() && !search_rest => {}
        Node::Api => {
            let _activity = ctx.show.then(|| report::activity("deleting rest_api"));
            let by_id = match recorded.get(rest_api::KIND) {
                Some(id) => api_by_id(ctx, recorded, id, t).await?,
                None => false,
            };
            if !by_id {
                let gone_any = apis_by_search(ctx, recorded, t).await?;
                if !recorded_kept(ctx, rest_api::KIND) {
                    cascaded(ctx, recorded, node, removal(gone_any)).await?;
                }
            }
            ctx.rec.remove(rest_api::KIND).await?;
        }
        Node::HttpApi => {
            let _activity = ctx.show.then(|| report::activity("deleting http_api"));
            http_apis(ctx, recorded, search_http).await?;
        }
        Node::OtherSecrets => {
            let _activity = ctx.show.then(|| report::activity("deleting secrets"));
            secrets(ctx, recorded).await?;
        }
        Node::Pool => {
            let _activity = ctx
                .show
                .then(|| report::activity("deleting user_pool_domain and user_pool"));
            let by_id = match recorded.get(user_pool::KIND) {
                Some(id) => pool_by_id(ctx, recorded, id, t).await?,
                None => false,
            };
            if !by_id {
                let gone_any = pools_by_search(ctx, recorded, t).await?;
                if !recorded_kept(ctx, user_pool::KIND) {
                    cascaded(ctx, recorded, node, removal(gone_any)).await?;
                }
            }
            for key in [user_pool::KIND, domain::KIND] {
                ctx.rec.remove(key).await?;
            }
        }
        Node::Function => {
            let _activity = ctx
                .show
                .then(|| report::activity("deleting lambda_function"));
            let what = function::delete(ctx).await?;
            tell(ctx, function::KIND, &ctx.function_name(), None, &what, t);
            let packages = function::delete_artifacts(ctx).await?;
            if packages > 0 {
                report::info(&format!("deleted {packages} uploaded handler package(s)"));
            }
            let permission = crate::resources::permission::KIND;
            if recorded.get(permission).is_none() && what == Removal::Deleted {
                // Without a state file: the permission went with the function.
                tell(
                    ctx,
                    permission,
                    crate::resources::permission::STATEMENT_ID,
                    None,
                    &what,
                    t,
                );
            }
            cascaded(ctx, recorded, node, what).await?;
            ctx.rec.remove(function::KIND).await?;
        }
        Node::LogGroup => {
            let _activity = ctx.show.then(|| report::activity("deleting log_group"));
            // The function goes first (the teardown graph's edge): whether it was ours.
            let function_ours =
                ctx.done.lock().expect("done").iter().any(|d| {
                    d.kind == function::KIND && d.action == crate::report::Action::Deleted
                });
            let what = log_group::delete(ctx, function_ours).await?;
            let name = log_group::name(&ctx.function_name());
            tell(ctx, log_group::KIND, &name, None, &what, t);
            ctx.rec.remove(log_group::KIND).await?;
        }
        Node::Role => {
            let _activity = ctx.show.then(|| report::activity("deleting iam_role"));
            let (name, what) = role::delete(ctx).await?;
            tell(ctx, role::KIND, &name, None, &what, t);
            ctx.rec.remove(role::KIND).await?;
        }
        other => unreachable!("{other:?} is not deleted by itself"),
    }
    Ok(())
}
