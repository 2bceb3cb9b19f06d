//! What `down` deletes by id or by name and tag, with the owner check before each
//! delete (the REST APIs, the pools and their domains, the secrets), and how each
//! resource is reported.

use std::time::Instant;

use crate::errors::Result;
use crate::graph::{self, Node};
use crate::report::{self, Action, Done};
use crate::resources::{domain, http_api, not_ours, rest_api, secret, user_pool, Ctx, Removal};
use crate::state::StateFile;

/// One line of the report.
pub(super) fn tell(
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

pub(super) fn removal(gone: bool) -> Removal {
    if gone {
        Removal::Deleted
    } else {
        Removal::Absent
    }
}

/// What went with `parent` (or, when it was kept, stays with it), as the state file
/// knew it: reported, and forgotten.
pub(super) async fn cascaded(
    ctx: &Ctx<'_>,
    recorded: &StateFile,
    parent: &Node,
    what: Removal,
) -> Result<()> {
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
                "method" | "route" => (rest.to_string(), None),
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

/// Whether the resource the state records for `kind` was reported kept.
pub(super) fn recorded_kept(ctx: &Ctx<'_>, kind: &str) -> bool {
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
pub(super) async fn api_by_id(
    ctx: &Ctx<'_>,
    recorded: &StateFile,
    id: &str,
    t: Instant,
) -> Result<bool> {
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
pub(super) async fn apis_by_search(
    ctx: &Ctx<'_>,
    recorded: &StateFile,
    t: Instant,
) -> Result<bool> {
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
pub(super) async fn pool_by_id(
    ctx: &Ctx<'_>,
    recorded: &StateFile,
    id: &str,
    t: Instant,
) -> Result<bool> {
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
pub(super) async fn pools_by_search(
    ctx: &Ctx<'_>,
    recorded: &StateFile,
    t: Instant,
) -> Result<bool> {
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
pub(super) async fn secrets(ctx: &Ctx<'_>, recorded: &StateFile) -> Result<()> {
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

/// The HTTP API: by the recorded id, else (`search`: the state does not rule it out)
/// every HTTP API of the stack's name and tag, duplicates included.
pub(super) async fn http_apis(ctx: &Ctx<'_>, recorded: &StateFile, search: bool) -> Result<()> {
    let t = Instant::now();
    let node = Node::HttpApi;
    let mut dealt = false;
    if let Some(id) = recorded.get(http_api::KIND) {
        if let Some(api) = http_api::by_id(ctx, id).await? {
            let what = format!("HTTP API {id}");
            let why = if api.name != ctx.api_name() {
                Some(format!(
                    "{what} is named {}, not {}: someone else's now, not deleted",
                    api.name,
                    ctx.api_name()
                ))
            } else {
                not_ours(Some(&api.tags), ctx.stack, &what)
            };
            let what = match why {
                Some(why) => Removal::Kept(why),
                None => {
                    dealt = true;
                    removal(http_api::delete(ctx, id).await?)
                }
            };
            tell(ctx, http_api::KIND, id, None, &what, t);
            cascaded(ctx, recorded, &node, what).await?;
        }
    }
    if !dealt && (search || recorded.get(http_api::KIND).is_some()) {
        let mut gone_any = false;
        let mut told = false;
        for api in http_api::named(ctx).await? {
            let what = match not_ours(Some(&api.tags), ctx.stack, &format!("HTTP API {}", api.id)) {
                Some(_) if recorded.get(http_api::KIND) == Some(api.id.as_str()) => continue,
                Some(why) => Removal::Kept(why),
                None => removal(http_api::delete(ctx, &api.id).await?),
            };
            gone_any |= what == Removal::Deleted;
            told = true;
            tell(ctx, http_api::KIND, &api.id, None, &what, t);
        }
        if !recorded_kept(ctx, http_api::KIND) {
            if !told && recorded.get(http_api::KIND).is_some() {
                let id = recorded.get(http_api::KIND).unwrap_or_default();
                tell(ctx, http_api::KIND, id, None, &Removal::Absent, t);
            }
            cascaded(ctx, recorded, &node, removal(gone_any)).await?;
        }
    }
    ctx.rec.remove(http_api::KIND).await
}
