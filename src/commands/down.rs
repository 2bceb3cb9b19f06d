//! `down`: every resource of the stack, children first, what a parent's deletion
//! removes with it skipped (see `graph::teardown`); the state file last.
//!
//! Only what is the stack's goes: each resource is read before its delete and must
//! carry the stack's tag (or, for a domain, hang off a pool that does). A stale state
//! file (a restored backup, another runner's copy) may name a resource that is someone
//! else's now: it is kept and reported so. What the state does not record (a run
//! killed between a create and its state write) is found by name and tag.

use std::time::Instant;

use super::{context, emit, open, sorted, Open, Run, Session};
use crate::cli::{Format, StackArgs};
use crate::config::{self, FileConfig, Target};
use crate::errors::{exit, Error, Result};
use crate::graph::{self, Node};
use crate::report::{self, Action, Done, RunReport};
use crate::resources::{
    domain, function, log_group, not_ours, rest_api, role, secret, user_pool, Ctx, Removal,
};
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
fn tell(
    ctx: &Ctx<'_>,
    kind: &'static str,
    id: &str,
    name: Option<&str>,
    what: &Removal,
    t: Instant,
) {
    let (action, reason) = match what {
        Removal::Deleted => (Action::Deleted, None),
        Removal::Absent => (Action::Absent, None),
        Removal::Kept(why) => (Action::Kept, Some(why.clone())),
    };
    let done = Done {
        kind,
        id: id.to_string(),
        name: name.map(str::to_string),
        action,
        changes: Vec::new(),
        reason,
        elapsed: t.elapsed(),
    };
    if ctx.show {
        report::resource_line(&done, false);
    }
    ctx.done.lock().expect("done").push(done);
}

fn removal(gone: bool) -> Removal {
    if gone {
        Removal::Deleted
    } else {
        Removal::Absent
    }
}

/// What went with `parent` (or, when it was kept, stays with it), as the state file
/// knew it: reported, and forgotten.
async fn cascaded(ctx: &Ctx<'_>, recorded: &StateFile, parent: &Node, what: Removal) -> Result<()> {
    let t = Instant::now();
    let what = match what {
        Removal::Kept(_) => Removal::Kept(format!(
            "part of {} {}, which is not this stack's",
            parent.kind(),
            recorded.get(parent.kind()).unwrap_or_default()
        )),
        other => other,
    };
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
            tell(ctx, kind, &id, name, &what, t);
            ctx.rec.remove(key).await?;
        }
    }
    Ok(())
}

async fn remove(ctx: &Ctx<'_>, node: &Node, recorded: &StateFile) -> Result<()> {
    let t = Instant::now();
    match node {
        // A recorded id of ours was made (or adopted) through the exactly-once path, so
        // it is the only one: deleted with no search. Without one, when it is gone
        // already (a later one's id may have been lost by a killed run), or when it is
        // someone else's now, every API and pool of the stack's name and tag goes,
        // duplicates included.
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
            let what = log_group::delete(ctx).await?;
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

/// Whether the resource the state records for `kind` was reported kept.
fn recorded_kept(ctx: &Ctx<'_>, kind: &str) -> bool {
    let Some(id) = ctx.rec.get(kind) else {
        return false;
    };
    ctx.done
        .lock()
        .expect("done")
        .iter()
        .any(|d| d.kind == kind && d.id == id && d.action == Action::Kept)
}

/// The recorded API: true when it was this stack's and is dealt with; false when it is
/// gone or someone else's (then the search runs).
async fn api_by_id(ctx: &Ctx<'_>, recorded: &StateFile, id: &str, t: Instant) -> Result<bool> {
    let Some((name, tags)) = rest_api::owner_of(ctx, id).await? else {
        return Ok(false);
    };
    let what = format!("REST API {id}");
    let why = if name != ctx.api_name() {
        Some(format!(
            "{what} is named {name}, not {}: someone else's now, not deleted",
            ctx.api_name()
        ))
    } else {
        not_ours(Some(&tags), ctx.stack, &what)
    };
    if let Some(why) = why {
        let kept = Removal::Kept(why);
        tell(ctx, rest_api::KIND, id, None, &kept, t);
        cascaded(ctx, recorded, &Node::Api, kept).await?;
        return Ok(false);
    }
    let gone = rest_api::delete(ctx, id).await?;
    tell(ctx, rest_api::KIND, id, None, &removal(gone), t);
    cascaded(ctx, recorded, &Node::Api, removal(gone)).await?;
    Ok(true)
}

/// Every API of the stack's name and tag (duplicates too, so none is left behind);
/// those of the name without the tag are kept.
async fn apis_by_search(ctx: &Ctx<'_>, recorded: &StateFile, t: Instant) -> Result<bool> {
    let apis = rest_api::named(ctx).await?;
    let mut gone_any = false;
    let mut told = false;
    for api in &apis {
        let what = match not_ours(Some(&api.tags), ctx.stack, &format!("REST API {}", api.id)) {
            // Reported already, by id.
            Some(_) if recorded.get(rest_api::KIND) == Some(api.id.as_str()) => continue,
            Some(why) => Removal::Kept(why),
            None => removal(rest_api::delete(ctx, &api.id).await?),
        };
        gone_any |= what == Removal::Deleted;
        told = true;
        tell(ctx, rest_api::KIND, &api.id, None, &what, t);
    }
    if !told && !recorded_kept(ctx, rest_api::KIND) {
        let id = recorded
            .get(rest_api::KIND)
            .map(str::to_string)
            .unwrap_or_else(|| ctx.api_name());
        tell(ctx, rest_api::KIND, &id, None, &Removal::Absent, t);
    }
    Ok(gone_any)
}

/// Deletes a pool of ours, its domain first (AWS deletes a pool only once its domain
/// is gone; the domain is the pool's, so the pool's tag is its owner check).
async fn pool_and_domain(ctx: &Ctx<'_>, pool: &user_pool::Found, t: Instant) -> Result<bool> {
    if let Some(prefix) = &pool.domain {
        let td = Instant::now();
        let gone = domain::delete(ctx, &pool.id, prefix).await?;
        tell(ctx, domain::KIND, prefix, None, &removal(gone), td);
    }
    let gone = user_pool::delete(ctx, &pool.id).await?;
    tell(ctx, user_pool::KIND, &pool.id, None, &removal(gone), t);
    Ok(gone)
}

fn pool_not_ours(ctx: &Ctx<'_>, pool: &user_pool::Found) -> Option<String> {
    let what = format!("Cognito user pool {}", pool.id);
    if pool.name != ctx.pool_name() {
        return Some(format!(
            "{what} is named {}, not {}: someone else's now, not deleted",
            pool.name,
            ctx.pool_name()
        ));
    }
    not_ours(Some(&pool.tags), ctx.stack, &what)
}

/// The recorded pool (one read: its tags and its domain): true when it was this
/// stack's and is dealt with; false when it is gone or someone else's.
async fn pool_by_id(ctx: &Ctx<'_>, recorded: &StateFile, id: &str, t: Instant) -> Result<bool> {
    let Some(pool) = user_pool::describe(ctx, id).await? else {
        return Ok(false);
    };
    if let Some(why) = pool_not_ours(ctx, &pool) {
        let kept = Removal::Kept(why);
        if let Some(d) = recorded.get(domain::KIND) {
            tell(ctx, domain::KIND, d, None, &kept, t);
        }
        tell(ctx, user_pool::KIND, id, None, &kept, t);
        cascaded(ctx, recorded, &Node::Pool, kept).await?;
        return Ok(false);
    }
    if let (Some(d), None) = (recorded.get(domain::KIND), &pool.domain) {
        tell(ctx, domain::KIND, d, None, &Removal::Absent, t);
    }
    let gone = pool_and_domain(ctx, &pool, t).await?;
    cascaded(ctx, recorded, &Node::Pool, removal(gone)).await?;
    Ok(true)
}

/// Every pool of the stack's name and tag (duplicates too), each after its domain;
/// those of the name without the tag are kept.
async fn pools_by_search(ctx: &Ctx<'_>, recorded: &StateFile, t: Instant) -> Result<bool> {
    let pools = user_pool::named(ctx).await?;
    let mut gone_any = false;
    let mut told = false;
    for pool in &pools {
        if recorded.get(user_pool::KIND) == Some(pool.id.as_str()) {
            // Reported already, by id.
            continue;
        }
        told = true;
        match pool_not_ours(ctx, pool) {
            Some(why) => tell(ctx, user_pool::KIND, &pool.id, None, &Removal::Kept(why), t),
            None => gone_any |= pool_and_domain(ctx, pool, t).await?,
        }
    }
    if !told && !recorded_kept(ctx, user_pool::KIND) {
        if let Some(d) = recorded.get(domain::KIND) {
            tell(ctx, domain::KIND, d, None, &Removal::Absent, t);
        }
        let id = recorded
            .get(user_pool::KIND)
            .map(str::to_string)
            .unwrap_or_else(|| ctx.pool_name());
        tell(ctx, user_pool::KIND, &id, None, &Removal::Absent, t);
    }
    Ok(gone_any)
}

/// Every secret named for the stack (one listing, whether the state records them or
/// not): those tagged for it are deleted, the others kept; recorded ones not there are
/// reported absent.
async fn secrets(ctx: &Ctx<'_>, recorded: &StateFile) -> Result<()> {
    let prefix = format!("{} ", secret::KIND);
    let found = secret::named(ctx).await?;
    for s in &found {
        let t = Instant::now();
        let what = match not_ours(Some(&s.tags), ctx.stack, &format!("secret {}", s.name)) {
            Some(why) => Removal::Kept(why),
            None => removal(secret::delete(ctx, &s.name).await?),
        };
        tell(ctx, secret::KIND, &s.name, Some(&s.client), &what, t);
        ctx.rec.remove(&format!("{prefix}{}", s.client)).await?;
    }
    for (key, name) in &recorded.resources {
        let Some(client) = key.strip_prefix(&prefix) else {
            continue;
        };
        if found.iter().any(|s| &s.name == name) {
            continue;
        }
        tell(
            ctx,
            secret::KIND,
            name,
            Some(client),
            &Removal::Absent,
            Instant::now(),
        );
        ctx.rec.remove(key).await?;
    }
    Ok(())
}
