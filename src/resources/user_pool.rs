//! The Cognito user pool: for machines, so sign-up is admin-only.

use std::collections::HashMap;
use std::time::Instant;

use aws_sdk_cognitoidentityprovider::types::{AdminCreateUserConfigType, UserPoolDescriptionType};

use super::{check_owner, create_once, shown, Create, Ctx, Handle, Made, NEW, STACK_TAG};
use crate::aws::SdkResultExt;
use crate::errors::Result;
use crate::plan::{decide, Decision, PoolSettings};

pub const KIND: &str = "user_pool";

#[derive(Debug, Clone)]
pub struct Found {
    pub id: String,
    pub name: String,
    pub arn: String,
    pub tags: HashMap<String, String>,
    /// The prefix domain attached to the pool, if any.
    pub domain: Option<String>,
    pub settings: PoolSettings,
}

pub async fn describe(ctx: &Ctx<'_>, id: &str) -> Result<Option<Found>> {
    match ctx
        .aws
        .cognito
        .describe_user_pool()
        .user_pool_id(id)
        .send()
        .await
        .sdk()
    {
        Ok(out) => Ok(out.user_pool().map(|p| Found {
            id: p.id().unwrap_or(id).to_string(),
            name: p.name().unwrap_or_default().to_string(),
            arn: p.arn().unwrap_or_default().to_string(),
            tags: p.user_pool_tags().cloned().unwrap_or_default(),
            domain: p.domain().filter(|d| !d.is_empty()).map(str::to_string),
            settings: PoolSettings {
                admin_only_sign_up: p
                    .admin_create_user_config()
                    .map(|c| c.allow_admin_create_user_only())
                    .unwrap_or(false),
            },
        })),
        Err(e) if e.is_not_found() => Ok(None),
        Err(e) => Err(e.fail(
            format!("reading Cognito user pool {id}"),
            "DescribeUserPool",
        )),
    }
}

/// Whether a pool is this stack's: its name and tag say so.
pub fn is_this_stacks(ctx: &Ctx<'_>, p: &Found) -> bool {
    p.name == ctx.pool_name() && p.tags.get(STACK_TAG).map(String::as_str) == Some(ctx.stack)
}

/// The pool: by the recorded id, else by name (checking its tag).
pub async fn find(ctx: &Ctx<'_>) -> Result<Option<Found>> {
    if let Some(id) = ctx.rec.get(KIND) {
        if let Some(found) = first_describe(ctx, &id).await? {
            return Ok(Some(found));
        }
    }
    find_by_name(ctx).await
}

/// The run's first read of a pool (see `read_once`).
pub(super) async fn first_describe(ctx: &Ctx<'_>, id: &str) -> Result<Option<Found>> {
    super::read_once(ctx, format!("DescribeUserPool {id}"), describe(ctx, id)).await
}

/// The one pool named for this stack (an error when there are several).
async fn find_by_name(ctx: &Ctx<'_>) -> Result<Option<Found>> {
    super::the_one(
        find_all(ctx).await?,
        "Cognito user pools",
        &ctx.pool_name(),
        |p| &p.id,
    )
}

/// Every user pool of the account and region (names and ids; the listing carries no
/// tags): one request per 60. The stack's lookup and `list` both read it.
pub async fn list_all(aws: &crate::aws::Aws, doing: &str) -> Result<Vec<UserPoolDescriptionType>> {
    let mut token: Option<String> = None;
    let mut all = Vec::new();
    loop {
        let out = aws
            .cognito
            .list_user_pools()
            .max_results(60)
            .set_next_token(token.clone())
            .send()
            .await
            .sdk()
            .map_err(|e| e.fail(doing, "ListUserPools"))?;
        token = out
            .next_token()
            .filter(|t| !t.is_empty())
            .map(str::to_string);
        all.extend(out.user_pools.unwrap_or_default());
        if token.is_none() {
            return Ok(all);
        }
    }
}

/// Every pool named for this stack, each checked to be tagged for it. Cognito accepts
/// duplicate names, so there can be more than one (made by an older provision that
/// lost a create answer, or by two runs without a shared lock): `down` deletes them all.
pub async fn find_all(ctx: &Ctx<'_>) -> Result<Vec<Found>> {
    let name = ctx.pool_name();
    let all = named(ctx).await?;
    for found in &all {
        check_owner(
            Some(&found.tags),
            ctx.stack,
            &format!("Cognito user pool {name} ({})", found.id),
        )?;
    }
    Ok(all)
}

/// Every pool named for this stack, whoever's it is (`down` deletes those tagged for
/// the stack and keeps the others).
pub async fn named(ctx: &Ctx<'_>) -> Result<Vec<Found>> {
    let name = ctx.pool_name();
    let ids: Vec<String> = list_all(ctx.aws, &format!("looking for Cognito user pool {name}"))
        .await?
        .iter()
        .filter(|p| p.name() == Some(name.as_str()))
        .filter_map(|p| p.id().map(str::to_string))
        .collect();
    let mut ours = Vec::new();
    for id in ids {
        if let Some(found) = describe(ctx, &id).await? {
            ours.push(found);
        }
    }
    Ok(ours)
}

#[derive(Debug, Clone)]
pub struct Pool {
    pub handle: Handle,
    pub domain: Option<String>,
}

pub async fn ensure(ctx: &Ctx<'_>) -> Result<Pool> {
    let started = Instant::now();
    let name = ctx.pool_name();
    let recorded = ctx.rec.get(KIND).is_some();
    let found = find(ctx).await?;
    if let Some(f) = &found {
        check_owner(
            Some(&f.tags),
            ctx.stack,
            &format!("Cognito user pool {name} ({})", f.id),
        )?;
    }
    let want = PoolSettings {
        admin_only_sign_up: true,
    };
    let decision = decide(&want, found.as_ref().map(|f| &f.settings));
    let admin_only = AdminCreateUserConfigType::builder()
        .allow_admin_create_user_only(true)
        .build();
    let (id, arn) = match (&decision, &found) {
        (Decision::Create, _) if ctx.apply => {
            let made = create_once(
                Create::new(
                    format!("creating Cognito user pool {name}"),
                    "CreateUserPool",
                ),
                || async {
                    ctx.aws
                        .once
                        .cognito
                        .create_user_pool()
                        .pool_name(&name)
                        .admin_create_user_config(admin_only.clone())
                        .user_pool_tags(STACK_TAG, ctx.tag_value())
                        .send()
                        .await
                        .sdk()
                },
                || find_by_name(ctx),
            )
            .await?;
            match made {
                Made::New(out) => {
                    let pool = out.user_pool();
                    let id = pool.and_then(|p| p.id()).unwrap_or_default().to_string();
                    let arn = pool.and_then(|p| p.arn()).unwrap_or_default().to_string();
                    (id, arn)
                }
                Made::Found(f) => (f.id, f.arn),
            }
        }
        (Decision::Create, _) => (NEW.to_string(), NEW.to_string()),
        (Decision::Update(_), Some(f)) if ctx.apply => {
            ctx.aws
                .cognito
                .update_user_pool()
                .user_pool_id(&f.id)
                .admin_create_user_config(admin_only)
                .user_pool_tags(STACK_TAG, ctx.tag_value())
                .send()
                .await
                .sdk()
                .map_err(|e| {
                    e.fail(
                        format!("updating Cognito user pool {}", f.id),
                        "UpdateUserPool",
                    )
                })?;
            (f.id.clone(), f.arn.clone())
        }
        (_, Some(f)) => (f.id.clone(), f.arn.clone()),
        (_, None) => unreachable!("only Create has nothing observed"),
    };
    if ctx.apply {
        ctx.rec.set(KIND, &id).await?;
    }
    ctx.finish(KIND, &shown(&id, &name), &decision, recorded, started);
    Ok(Pool {
        handle: Handle::new(id, arn, found.is_none()),
        domain: found.and_then(|f| f.domain),
    })
}

/// Deletes a pool found by `find` (its domain must be gone first, as AWS requires).
pub async fn delete(ctx: &Ctx<'_>, id: &str) -> Result<bool> {
    match ctx
        .aws
        .cognito
        .delete_user_pool()
        .user_pool_id(id)
        .send()
        .await
        .sdk()
    {
        Ok(_) => Ok(true),
        Err(e) if e.is_not_found() => Ok(false),
        Err(e) => Err(e.fail(format!("deleting Cognito user pool {id}"), "DeleteUserPool")),
    }
}
