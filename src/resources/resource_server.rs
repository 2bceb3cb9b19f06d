//! The resource server that defines the scopes (`users` with `read` by default).

use std::time::Instant;

use aws_sdk_cognitoidentityprovider::types::ResourceServerScopeType;

use super::{create_once, Create, Ctx, Handle};
use crate::aws::SdkResultExt;
use crate::errors::Result;
use crate::plan::{decide, Decision, ResourceServerSettings};

pub const KIND: &str = "resource_server";

async fn find(
    ctx: &Ctx<'_>,
    pool_id: &str,
    identifier: &str,
) -> Result<Option<ResourceServerSettings>> {
    match ctx
        .aws
        .cognito
        .describe_resource_server()
        .user_pool_id(pool_id)
        .identifier(identifier)
        .send()
        .await
        .sdk()
    {
        Ok(out) => Ok(out.resource_server().map(|rs| {
            let mut scopes: Vec<String> = rs
                .scopes()
                .iter()
                .map(|s| s.scope_name().to_string())
                .collect();
            scopes.sort();
            ResourceServerSettings { scopes }
        })),
        Err(e) if e.is_not_found() => Ok(None),
        Err(e) => Err(e.fail(
            format!("reading resource server {identifier}"),
            "DescribeResourceServer",
        )),
    }
}

/// The run's first read of the resource server (see `read_once`).
pub(super) async fn first_find(
    ctx: &Ctx<'_>,
    pool_id: &str,
    identifier: &str,
) -> Result<Option<ResourceServerSettings>> {
    let key = format!("DescribeResourceServer {pool_id} {identifier}");
    super::read_once(ctx, key, find(ctx, pool_id, identifier)).await
}

pub async fn ensure(ctx: &Ctx<'_>, pool: &Handle) -> Result<()> {
    let started = Instant::now();
    let identifier = ctx.desired.resource_server().to_string();
    let recorded = ctx.rec.get(KIND).as_deref() == Some(identifier.as_str());
    let want = ResourceServerSettings {
        scopes: ctx.desired.scope_names(),
    };
    let observed = if pool.fresh {
        None
    } else {
        first_find(ctx, &pool.id, &identifier).await?
    };
    let decision = decide(&want, observed.as_ref());
    if ctx.apply && decision != Decision::Unchanged {
        let scopes: Vec<ResourceServerScopeType> = want
            .scopes
            .iter()
            .map(|s| {
                ResourceServerScopeType::builder()
                    .scope_name(s)
                    .scope_description(format!("{identifier}/{s}"))
                    .build()
                    .expect("scope has name and description")
            })
            .collect();
        if decision == Decision::Create {
            create_once(
                Create::new(
                    format!("creating resource server {identifier}"),
                    "CreateResourceServer",
                ),
                || async {
                    ctx.aws
                        .once
                        .cognito
                        .create_resource_server()
                        .user_pool_id(&pool.id)
                        .identifier(&identifier)
                        .name(&identifier)
                        .set_scopes(Some(scopes.clone()))
                        .send()
                        .await
                        .sdk()
                },
                // The pool is ours and new: a resource server of this name in it is ours.
                || find(ctx, &pool.id, &identifier),
            )
            .await?;
        } else {
            ctx.aws
                .cognito
                .update_resource_server()
                .user_pool_id(&pool.id)
                .identifier(&identifier)
                .name(&identifier)
                .set_scopes(Some(scopes))
                .send()
                .await
                .sdk()
                .map_err(|e| {
                    e.fail(
                        format!("updating resource server {identifier}"),
                        "UpdateResourceServer",
                    )
                })?;
        }
    }
    if ctx.apply {
        ctx.rec.set(KIND, &identifier).await?;
    }
    ctx.finish(KIND, &identifier, &decision, recorded, started);
    Ok(())
}
