//! The app client: a generated secret, the `client_credentials` flow only, the stack's scopes.
//!
//! Cognito returns the client secret in DescribeUserPoolClient; it is dropped at once
//! here and never stored, logged or printed. Only `token` reads it, to ask for a token.

use std::time::Instant;

use aws_sdk_cognitoidentityprovider::types::{
    OAuthFlowType, TimeUnitsType, TokenValidityUnitsType, UserPoolClientType,
};

use super::{create_once, shown, Create, Ctx, Handle, Made, NEW};
use crate::aws::SdkResultExt;
use crate::errors::{Error, Result};
use crate::plan::{decide, ClientSettings, Decision};

pub const KIND: &str = "app_client";

fn settings_of(c: &UserPoolClientType) -> ClientSettings {
    let mut flows: Vec<String> = c
        .allowed_o_auth_flows()
        .iter()
        .map(|f| f.as_str().to_string())
        .collect();
    flows.sort();
    let mut scopes: Vec<String> = c.allowed_o_auth_scopes().to_vec();
    scopes.sort();
    // Cognito's default unit for access tokens is hours, and default validity 1 hour.
    let unit = c
        .token_validity_units()
        .and_then(|u| u.access_token())
        .cloned()
        .unwrap_or(TimeUnitsType::Hours);
    let value = c.access_token_validity().unwrap_or(match unit {
        TimeUnitsType::Minutes => 60,
        TimeUnitsType::Seconds => 3600,
        _ => 1,
    });
    let minutes = match unit {
        TimeUnitsType::Seconds => value / 60,
        TimeUnitsType::Minutes => value,
        TimeUnitsType::Hours => value * 60,
        TimeUnitsType::Days => value * 1440,
        _ => value,
    };
    ClientSettings {
        has_secret: c.client_secret().is_some_and(|s| !s.is_empty()),
        flows,
        scopes,
        oauth_enabled: c.allowed_o_auth_flows_user_pool_client().unwrap_or(false),
        access_token_validity_min: minutes,
    }
}

async fn describe(ctx: &Ctx<'_>, pool_id: &str, client_id: &str) -> Result<Option<ClientSettings>> {
    match ctx
        .aws
        .cognito
        .describe_user_pool_client()
        .user_pool_id(pool_id)
        .client_id(client_id)
        .send()
        .await
        .sdk()
    {
        Ok(out) => Ok(out.user_pool_client().map(settings_of)),
        Err(e) if e.is_not_found() => Ok(None),
        Err(e) => Err(e.fail(
            format!("reading app client {client_id}"),
            "DescribeUserPoolClient",
        )),
    }
}

/// The client's id by name, among the pool's clients.
async fn find_by_name(ctx: &Ctx<'_>, pool_id: &str) -> Result<Option<String>> {
    let name = ctx.client_name();
    let mut ids = ids_by_name(ctx, pool_id).await?;
    if ids.len() > 1 {
        return Err(Error::usage(format!(
            "found {} app clients named {name} in pool {pool_id} ({}); delete the extra ones, then run again",
            ids.len(),
            ids.join(", ")
        )));
    }
    Ok(ids.pop())
}

/// The ids of the pool's clients named for this stack (Cognito accepts duplicates).
async fn ids_by_name(ctx: &Ctx<'_>, pool_id: &str) -> Result<Vec<String>> {
    let name = ctx.client_name();
    let mut token: Option<String> = None;
    let mut ids = Vec::new();
    loop {
        let out = ctx
            .aws
            .cognito
            .list_user_pool_clients()
            .user_pool_id(pool_id)
            .max_results(60)
            .set_next_token(token.clone())
            .send()
            .await
            .sdk()
            .map_err(|e| {
                e.fail(
                    format!("looking for app client {name}"),
                    "ListUserPoolClients",
                )
            })?;
        ids.extend(
            out.user_pool_clients()
                .iter()
                .filter(|c| c.client_name() == Some(name.as_str()))
                .filter_map(|c| c.client_id().map(str::to_string)),
        );
        token = out
            .next_token()
            .filter(|t| !t.is_empty())
            .map(str::to_string);
        if token.is_none() {
            break;
        }
    }
    Ok(ids)
}

/// The client of a pool: by the recorded id, else by name. (id, settings).
pub async fn find(ctx: &Ctx<'_>, pool_id: &str) -> Result<Option<(String, ClientSettings)>> {
    if let Some(id) = ctx.rec.get(KIND) {
        if let Some(s) = describe(ctx, pool_id, &id).await? {
            return Ok(Some((id, s)));
        }
    }
    match find_by_name(ctx, pool_id).await? {
        Some(id) => Ok(describe(ctx, pool_id, &id).await?.map(|s| (id, s))),
        None => Ok(None),
    }
}

fn desired(ctx: &Ctx<'_>) -> ClientSettings {
    ClientSettings {
        has_secret: true,
        flows: vec![OAuthFlowType::ClientCredentials.as_str().to_string()],
        scopes: ctx.desired.scope_strings(),
        oauth_enabled: true,
        access_token_validity_min: ctx.desired.token_validity_min,
    }
}

pub async fn ensure(ctx: &Ctx<'_>, pool: &Handle) -> Result<Handle> {
    let started = Instant::now();
    let recorded_id = ctx.rec.get(KIND);
    let want = desired(ctx);
    let found = if pool.fresh {
        None
    } else {
        find(ctx, &pool.id).await?
    };
    let recorded = recorded_id.is_some() && found.as_ref().map(|f| &f.0) == recorded_id.as_ref();
    let decision = decide(&want, found.as_ref().map(|f| &f.1));
    let validity_units = TokenValidityUnitsType::builder()
        .access_token(TimeUnitsType::Minutes)
        .build();
    let mut id = found
        .as_ref()
        .map(|f| f.0.clone())
        .unwrap_or_else(|| NEW.to_string());
    if ctx.apply {
        let name = ctx.client_name();
        // A client without a secret cannot get one: replace it.
        let replace = matches!(&decision, Decision::Update(f) if f.contains(&"has_secret"));
        if decision == Decision::Create || replace {
            let known = id.clone();
            let made = create_once(
                Create::new(
                    format!("creating app client {name}"),
                    "CreateUserPoolClient",
                ),
                || async {
                    ctx.aws
                        .once
                        .cognito
                        .create_user_pool_client()
                        .user_pool_id(&pool.id)
                        .client_name(&name)
                        .generate_secret(true)
                        .allowed_o_auth_flows(OAuthFlowType::ClientCredentials)
                        .set_allowed_o_auth_scopes(Some(want.scopes.clone()))
                        .allowed_o_auth_flows_user_pool_client(true)
                        .supported_identity_providers("COGNITO")
                        .access_token_validity(want.access_token_validity_min)
                        .token_validity_units(validity_units.clone())
                        .send()
                        .await
                        .sdk()
                },
                // A client of this name that is not the one being replaced.
                || async {
                    Ok(ids_by_name(ctx, &pool.id)
                        .await?
                        .into_iter()
                        .find(|i| *i != known))
                },
            )
            .await?;
            let new_id = match made {
                Made::New(out) => out
                    .user_pool_client()
                    .and_then(|c| c.client_id())
                    .unwrap_or_default()
                    .to_string(),
                Made::Found(id) => id,
            };
            let old = std::mem::replace(&mut id, new_id);
            ctx.rec.set(KIND, &id)?;
            if replace {
                delete(ctx, &pool.id, &old).await?;
            }
        } else if matches!(decision, Decision::Update(_)) {
            ctx.aws
                .cognito
                .update_user_pool_client()
                .user_pool_id(&pool.id)
                .client_id(&id)
                .client_name(&name)
                .allowed_o_auth_flows(OAuthFlowType::ClientCredentials)
                .set_allowed_o_auth_scopes(Some(want.scopes.clone()))
                .allowed_o_auth_flows_user_pool_client(true)
                .supported_identity_providers("COGNITO")
                .access_token_validity(want.access_token_validity_min)
                .token_validity_units(validity_units)
                .send()
                .await
                .sdk()
                .map_err(|e| e.fail(format!("updating app client {id}"), "UpdateUserPoolClient"))?;
        }
        ctx.rec.set(KIND, &id)?;
    }
    ctx.finish(
        KIND,
        &shown(&id, &ctx.client_name()),
        &decision,
        recorded,
        started,
    );
    Ok(Handle::new(id.clone(), id, found.is_none()))
}

pub async fn delete(ctx: &Ctx<'_>, pool_id: &str, client_id: &str) -> Result<bool> {
    match ctx
        .aws
        .cognito
        .delete_user_pool_client()
        .user_pool_id(pool_id)
        .client_id(client_id)
        .send()
        .await
        .sdk()
    {
        Ok(_) => Ok(true),
        Err(e) if e.is_not_found() => Ok(false),
        Err(e) => Err(e.fail(
            format!("deleting app client {client_id}"),
            "DeleteUserPoolClient",
        )),
    }
}

/// The client secret, for `token` only. Never stored or printed.
pub async fn secret(aws: &crate::aws::Aws, pool_id: &str, client_id: &str) -> Result<String> {
    let out = aws
        .cognito
        .describe_user_pool_client()
        .user_pool_id(pool_id)
        .client_id(client_id)
        .send()
        .await
        .sdk()
        .map_err(|e| {
            let mut err = e.fail(
                format!("reading app client {client_id}"),
                "DescribeUserPoolClient",
            );
            if let Error::Aws(f) = &mut err {
                if f.code.as_deref() == Some("ResourceNotFoundException") {
                    f.hint = Some(
                        "the stack's app client is gone: run `provision up` to repair it".into(),
                    );
                }
            }
            err
        })?;
    out.user_pool_client()
        .and_then(|c| c.client_secret())
        .map(str::to_string)
        .ok_or_else(|| {
            Error::Http(format!(
                "app client {client_id} has no secret: run `provision up` to repair it"
            ))
        })
}
