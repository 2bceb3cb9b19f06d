//! Switching fronts in place: once the new front serves and the function's permission
//! names it, the other front's API (the one the state file records) is deleted and
//! forgotten. A switch interrupted before this step leaves both APIs recorded; the next
//! `up` (or `down`) finishes it.

use std::time::Instant;

use super::{http_api, not_ours, rest_api, Ctx};
use crate::config::Front;
use crate::errors::Result;

/// The state keys of a front's resources (its API's children go with it).
fn keys_of(front: Front) -> (&'static str, &'static [&'static str]) {
    match front {
        Front::Rest => (
            rest_api::KIND,
            &[rest_api::KIND, "authorizer", "method", "stage"],
        ),
        Front::Http => (
            http_api::KIND,
            &[
                http_api::KIND,
                "jwt_authorizer",
                "integration",
                "route",
                "http_stage",
            ],
        ),
    }
}

/// Deletes the API of the `old` front, if the state records one.
pub async fn retire(ctx: &Ctx<'_>, old: Front) -> Result<()> {
    let (kind, keys) = keys_of(old);
    let Some(id) = ctx.rec.get(kind) else {
        return Ok(());
    };
    let started = Instant::now();
    let (what, owner) = match old {
        Front::Rest => (
            format!("REST API {id}"),
            rest_api::owner_of(ctx, &id).await?,
        ),
        Front::Http => (
            format!("HTTP API {id}"),
            http_api::by_id(ctx, &id).await?.map(|f| (f.name, f.tags)),
        ),
    };
    let keep = match &owner {
        None => None,
        Some((name, _)) if *name != ctx.api_name() => Some(format!(
            "{what} is named {name}, not {}: someone else's now, not deleted",
            ctx.api_name()
        )),
        Some((_, tags)) => not_ours(Some(tags), ctx.stack, &what),
    };
    if let Some(why) = &keep {
        crate::report::warn(&format!("switching fronts: {why}"));
    }
    if ctx.apply {
        if owner.is_some() && keep.is_none() {
            match old {
                Front::Rest => rest_api::delete(ctx, &id).await?,
                Front::Http => http_api::delete(ctx, &id).await?,
            };
        }
        forget(ctx, keys).await?;
    }
    if owner.is_some() && keep.is_none() {
        ctx.finish_extra(kind, &id, None, started);
    }
    Ok(())
}

/// Removes a front's keys from the state (and, for the REST front, its deployment).
async fn forget(ctx: &Ctx<'_>, kinds: &[&str]) -> Result<()> {
    for kind in kinds {
        for key in ctx.rec.keys(kind) {
            let rest = &key[kind.len()..];
            if rest.is_empty() || rest.starts_with(' ') {
                ctx.rec.remove(&key).await?;
            }
        }
    }
    if kinds.contains(&rest_api::KIND) {
        ctx.rec.update(|s| s.deployed = None).await?;
    }
    Ok(())
}
