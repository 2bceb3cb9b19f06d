//! `down`: every resource of the stack, children first, what a parent's deletion
//! removes with it skipped (see `graph::teardown`); the state file last.

use std::time::Instant;

use super::{context, emit, open, sorted, Open, Run, Session};
use crate::cli::{Format, StackArgs};
use crate::config::{self, FileConfig, Target};
use crate::errors::{exit, Error, Result};
use crate::graph::{self, Node};
use crate::report::{self, Action, Done, RunReport};
use crate::resources::{domain, function, log_group, rest_api, role, secret, user_pool, Ctx};
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
    let g = graph::teardown();
    let interrupted = match graph::run(&g, target.concurrency, |i, _: Vec<(Node, ())>| {
        remove(&ctx, &g.nodes[i], &recorded)
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

/// One line of the report.
fn tell(ctx: &Ctx<'_>, kind: &'static str, id: &str, name: Option<&str>, gone: bool, t: Instant) {
    let done = Done {
        kind,
        id: id.to_string(),
        name: name.map(str::to_string),
        action: if gone {
            Action::Deleted
        } else {
            Action::Absent
        },
        changes: Vec::new(),
        elapsed: t.elapsed(),
    };
    if ctx.show {
        report::resource_line(&done, false);
    }
    ctx.done.lock().expect("done").push(done);
}

/// What went with `parent`, as the state file knew it: reported, and forgotten.
async fn cascaded(ctx: &Ctx<'_>, recorded: &StateFile, parent: &Node, gone: bool) -> Result<()> {
    let t = Instant::now();
    for kind in graph::cascades(parent) {
        for (key, value) in &recorded.resources {
            let Some(rest) = key.strip_prefix(kind) else {
                continue;
            };
            if !(rest.is_empty() || rest.starts_with(' ')) {
                continue;
            }
            let rest = rest.trim_start();
            let (id, name) = match *kind {
                // `method GET /`, or `method /` as files before verbs had it.
                "method" if rest.starts_with('/') => (format!("ANY {rest}"), None),
                "method" => (rest.to_string(), None),
                "app_client" if rest.is_empty() => {
                    (value.clone(), Some(crate::consumers::DEFAULT_CLIENT))
                }
                "app_client" => (value.clone(), Some(rest)),
                _ => (value.clone(), None),
            };
            tell(ctx, kind, &id, name, gone, t);
            ctx.rec.remove(key).await?;
        }
    }
    Ok(())
}

async fn remove(ctx: &Ctx<'_>, node: &Node, recorded: &StateFile) -> Result<()> {
    let t = Instant::now();
    match node {
        // A recorded id was made (or adopted) through the exactly-once path, so it is the
        // only one: deleted as it is, with no search. Without one, or when it is gone
        // already (a later one's id may have been lost by a killed run), every API and
        // pool of the stack's name and tag goes, duplicates included.
        Node::Api => {
            let _activity = ctx.show.then(|| report::activity("deleting rest_api"));
            let by_id = match recorded.get(rest_api::KIND) {
                Some(id) => rest_api::delete(ctx, id).await?.then_some(id),
                None => None,
            };
            let gone_any = match by_id {
                Some(id) => {
                    tell(ctx, rest_api::KIND, id, None, true, t);
                    true
                }
                None => apis_by_search(ctx, recorded, t).await?,
            };
            cascaded(ctx, recorded, node, gone_any).await?;
            ctx.rec.remove(rest_api::KIND).await?;
        }
        Node::OtherSecrets => {
            let _activity = ctx.show.then(|| report::activity("deleting secrets"));
            if recorded.resources.is_empty() {
                secret::sweep(ctx, true).await?;
            } else {
                secrets_recorded(ctx, recorded).await?;
            }
        }
        Node::Pool => {
            let _activity = ctx
                .show
                .then(|| report::activity("deleting user_pool_domain and user_pool"));
            let by_id = match recorded.get(user_pool::KIND) {
                Some(id) => pool_by_id(ctx, recorded, id, t).await?,
                None => false,
            };
            let gone_any = by_id || pools_by_search(ctx, recorded, t).await?;
            cascaded(ctx, recorded, node, gone_any).await?;
            for key in [user_pool::KIND, domain::KIND] {
                ctx.rec.remove(key).await?;
            }
        }
        Node::Function => {
            let _activity = ctx
                .show
                .then(|| report::activity("deleting lambda_function"));
            let gone = if recorded.get(function::KIND).is_some() {
                if recorded.get(role::KIND) != Some(ctx.role_name().as_str()) {
                    // Which role is this region's may depend on the function's role:
                    // read it while the function is there (see `role::delete`).
                    function::observed(ctx).await?;
                }
                function::delete_recorded(ctx).await?
            } else {
                // Refuses a function that is not this stack's, its permission included.
                function::delete(ctx).await?
            };
            tell(ctx, function::KIND, &ctx.function_name(), None, gone, t);
            let packages = function::delete_artifacts(ctx).await?;
            if packages > 0 {
                report::info(&format!("deleted {packages} uploaded handler package(s)"));
            }
            let permission = crate::resources::permission::KIND;
            if recorded.get(permission).is_none() {
                // Without a state file: the permission went with the function.
                tell(
                    ctx,
                    permission,
                    crate::resources::permission::STATEMENT_ID,
                    None,
                    gone,
                    t,
                );
            }
            cascaded(ctx, recorded, node, gone).await?;
            ctx.rec.remove(function::KIND).await?;
        }
        Node::LogGroup => {
            let _activity = ctx.show.then(|| report::activity("deleting log_group"));
            let gone = log_group::delete(ctx).await?;
            let name = log_group::name(&ctx.function_name());
            tell(ctx, log_group::KIND, &name, None, gone, t);
            ctx.rec.remove(log_group::KIND).await?;
        }
        Node::Role => {
            let _activity = ctx.show.then(|| report::activity("deleting iam_role"));
            let (name, gone) = role::delete(ctx).await?;
            tell(ctx, role::KIND, &name, None, gone, t);
            ctx.rec.remove(role::KIND).await?;
        }
        other => unreachable!("{other:?} is not deleted by itself"),
    }
    Ok(())
}

/// Every API of the stack's name and tag (duplicates too, so none is left behind).
async fn apis_by_search(ctx: &Ctx<'_>, recorded: &StateFile, t: Instant) -> Result<bool> {
    let apis = rest_api::find_all(ctx).await?;
    let mut gone_any = false;
    for api in &apis {
        let gone = rest_api::delete(ctx, &api.id).await?;
        gone_any |= gone;
        tell(ctx, rest_api::KIND, &api.id, None, gone, t);
    }
    if apis.is_empty() {
        let id = recorded
            .get(rest_api::KIND)
            .map(str::to_string)
            .unwrap_or_else(|| ctx.api_name());
        tell(ctx, rest_api::KIND, &id, None, false, t);
    }
    Ok(gone_any)
}

/// Every pool of the stack's name and tag (duplicates too), each after its domain.
async fn pools_by_search(ctx: &Ctx<'_>, recorded: &StateFile, t: Instant) -> Result<bool> {
    let pools = user_pool::find_all(ctx).await?;
    if pools.is_empty() {
        if let Some(d) = recorded.get(domain::KIND) {
            tell(ctx, domain::KIND, d, None, false, t);
        }
        let id = recorded
            .get(user_pool::KIND)
            .map(str::to_string)
            .unwrap_or_else(|| ctx.pool_name());
        tell(ctx, user_pool::KIND, &id, None, false, t);
    }
    let mut gone_any = false;
    for pool in &pools {
        // AWS deletes a pool only once its domain is gone.
        if let Some(prefix) = &pool.domain {
            let t = Instant::now();
            let gone = domain::delete(ctx, &pool.id, prefix).await?;
            tell(ctx, domain::KIND, prefix, None, gone, t);
        }
        let gone = user_pool::delete(ctx, &pool.id).await?;
        gone_any |= gone;
        tell(ctx, user_pool::KIND, &pool.id, None, gone, t);
    }
    Ok(gone_any)
}

/// The recorded pool, after its recorded domain; false (nothing reported) when the
/// pool was gone already. The pool is read only when AWS refuses: a domain the state
/// does not know (a run stopped between making it and recording it) keeps the pool, a
/// domain already gone is refused.
async fn pool_by_id(ctx: &Ctx<'_>, recorded: &StateFile, id: &str, t: Instant) -> Result<bool> {
    let mut domain_gone = None;
    if let Some(prefix) = recorded.get(domain::KIND) {
        let gone = match domain::delete(ctx, id, prefix).await {
            Ok(gone) => gone,
            Err(e) => match user_pool::domain_of(ctx, id).await? {
                Some(Some(d)) if d == prefix => return Err(e),
                _ => false,
            },
        };
        domain_gone = Some((prefix, gone));
    }
    let gone = match user_pool::delete(ctx, id).await {
        Ok(gone) => gone,
        Err(e) => {
            let Some(Some(prefix)) = user_pool::domain_of(ctx, id).await? else {
                return Err(e);
            };
            let td = Instant::now();
            let gone = domain::delete(ctx, id, &prefix).await?;
            tell(ctx, domain::KIND, &prefix, None, gone, td);
            user_pool::delete(ctx, id).await?
        }
    };
    if !gone {
        return Ok(false);
    }
    if let Some((prefix, gone)) = domain_gone {
        tell(ctx, domain::KIND, prefix, None, gone, t);
    }
    tell(ctx, user_pool::KIND, id, None, true, t);
    Ok(true)
}

/// The secrets the state records, by name: no listing.
async fn secrets_recorded(ctx: &Ctx<'_>, recorded: &StateFile) -> Result<()> {
    let prefix = format!("{} ", secret::KIND);
    for (key, name) in &recorded.resources {
        let Some(client) = key.strip_prefix(&prefix) else {
            continue;
        };
        let t = Instant::now();
        let gone = secret::delete(ctx, name).await?;
        tell(ctx, secret::KIND, name, Some(client), gone, t);
        ctx.rec.remove(key).await?;
    }
    Ok(())
}
