//! The app clients, one per calling service: a generated secret, the
//! `client_credentials` flow only, the client's scopes. Cognito names them
//! `<stack>-<name>`; a client of the stack's pool in that name space that the
//! configuration no longer lists is deleted (`sweep`), and no other is ever touched.
//!
//! Cognito returns the client secret in DescribeUserPoolClient; it is dropped at once
//! here and never stored, logged or printed. Only `token`, `credentials` and a
//! published secret read it.

use std::time::Instant;

use aws_sdk_cognitoidentityprovider::types::{
    OAuthFlowType, TimeUnitsType, TokenValidityUnitsType, UserPoolClientType,
};

use super::{client_secrets, create_once, shown, Create, Ctx, Handle, Made, NEW};
use crate::aws::SdkResultExt;
use crate::consumers::{ClientSpec, DEFAULT_CLIENT};
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

/// The run's first read of a client (see `read_once`).
pub(super) async fn first_describe(
    ctx: &Ctx<'_>,
    pool_id: &str,
    client_id: &str,
) -> Result<Option<ClientSettings>> {
    let key = format!("DescribeUserPoolClient {pool_id} {client_id}");
    super::read_once(ctx, key, describe(ctx, pool_id, client_id)).await
}

/// The run's first listing of the pool's clients (see `read_once`).
pub(super) async fn first_list(ctx: &Ctx<'_>, pool_id: &str) -> Result<Vec<(String, String)>> {
    super::read_once(
        ctx,
        format!("ListUserPoolClients {pool_id}"),
        list(ctx, pool_id),
    )
    .await
}

/// The client's id by name, among the pool's clients.
async fn find_by_name(ctx: &Ctx<'_>, pool_id: &str, name: &str) -> Result<Option<String>> {
    let mut ids = ids_by_name(ctx, pool_id, name).await?;
    if ids.len() > 1 {
        return Err(Error::usage(format!(
            "found {} app clients named {name} in pool {pool_id} ({}); delete the extra ones, then run again",
            ids.len(),
            ids.join(", ")
        )));
    }
    Ok(ids.pop())
}

/// The ids of the pool's clients named `name` (Cognito accepts duplicates).
async fn ids_by_name(ctx: &Ctx<'_>, pool_id: &str, name: &str) -> Result<Vec<String>> {
    Ok(list(ctx, pool_id)
        .await?
        .into_iter()
        .filter(|(_, n)| n == name)
        .map(|(id, _)| id)
        .collect())
}

/// Every client of the pool: (id, name).
async fn list(ctx: &Ctx<'_>, pool_id: &str) -> Result<Vec<(String, String)>> {
    let mut token: Option<String> = None;
    let mut clients = Vec::new();
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
                    format!("listing the app clients of pool {pool_id}"),
                    "ListUserPoolClients",
                )
            })?;
        clients.extend(out.user_pool_clients().iter().filter_map(|c| {
            Some((
                c.client_id()?.to_string(),
                c.client_name().unwrap_or_default().to_string(),
            ))
        }));
        token = out
            .next_token()
            .filter(|t| !t.is_empty())
            .map(str::to_string);
        if token.is_none() {
            break;
        }
    }
    Ok(clients)
}

/// Where the state file keeps a client's id: the default client where it always was.
pub fn state_key(name: &str) -> String {
    if name == DEFAULT_CLIENT {
        KIND.to_string()
    } else {
        format!("{KIND} {name}")
    }
}

/// The client of a pool: by the recorded id, else by name. (id, settings).
pub async fn find(
    ctx: &Ctx<'_>,
    pool_id: &str,
    spec: &ClientSpec,
) -> Result<Option<(String, ClientSettings)>> {
    if let Some(id) = ctx.rec.get(&state_key(&spec.name)) {
        if let Some(s) = first_describe(ctx, pool_id, &id).await? {
            return Ok(Some((id, s)));
        }
    }
    match find_by_name(ctx, pool_id, &ctx.client_name(&spec.name)).await? {
        Some(id) => Ok(describe(ctx, pool_id, &id).await?.map(|s| (id, s))),
        None => Ok(None),
    }
}

fn desired(ctx: &Ctx<'_>, spec: &ClientSpec) -> ClientSettings {
    ClientSettings {
        has_secret: true,
        flows: vec![OAuthFlowType::ClientCredentials.as_str().to_string()],
        scopes: spec.scope_strings(),
        oauth_enabled: true,
        access_token_validity_min: ctx.desired.token_validity_min,
    }
}

/// A client as `ensure` left it.
#[derive(Debug, Clone)]
pub struct Client {
    pub handle: Handle,
    /// The secret of a client created in this run, as CreateUserPoolClient returned
    /// it (so a published secret needs no second read). Never stored or printed.
    pub new_secret: Option<Secret>,
}

/// A client secret in memory: never shown by `{:?}`.
#[derive(Clone)]
pub struct Secret(pub String);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(..)")
    }
}

pub async fn ensure(ctx: &Ctx<'_>, pool: &Handle, spec: &ClientSpec) -> Result<Client> {
    let started = Instant::now();
    let key = state_key(&spec.name);
    let name = ctx.client_name(&spec.name);
    let recorded_id = ctx.rec.get(&key);
    let want = desired(ctx, spec);
    let found = if pool.fresh {
        None
    } else {
        find(ctx, &pool.id, spec).await?
    };
    let recorded = recorded_id.is_some() && found.as_ref().map(|f| &f.0) == recorded_id.as_ref();
    let mut decision = decide(&want, found.as_ref().map(|f| &f.1));
    // DescribeUserPoolClient shows no secret: a client made without one (replaced
    // below), or one whose secrets were rotated (it has them: keep it, and its id).
    if let (Decision::Update(fields), Some((id, _))) = (&mut decision, &found) {
        if fields.contains(&"has_secret") && client_secrets::any(ctx.aws, &pool.id, id).await? {
            fields.retain(|f| *f != "has_secret");
            if fields.is_empty() {
                decision = Decision::Unchanged;
            }
        }
    }
    let validity_units = TokenValidityUnitsType::builder()
        .access_token(TimeUnitsType::Minutes)
        .build();
    let mut id = found
        .as_ref()
        .map(|f| f.0.clone())
        .unwrap_or_else(|| NEW.to_string());
    let mut new_secret = None;
    if ctx.apply {
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
                    Ok(ids_by_name(ctx, &pool.id, &name)
                        .await?
                        .into_iter()
                        .find(|i| *i != known))
                },
            )
            .await?;
            let new_id = match made {
                Made::New(out) => {
                    let client = out.user_pool_client();
                    new_secret = client
                        .and_then(|c| c.client_secret())
                        .map(|s| Secret(s.to_string()));
                    client
                        .and_then(|c| c.client_id())
                        .unwrap_or_default()
                        .to_string()
                }
                Made::Found(id) => id,
            };
            let old = std::mem::replace(&mut id, new_id);
            ctx.rec.set(&key, &id).await?;
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
        ctx.rec.set(&key, &id).await?;
    }
    ctx.finish_named(
        KIND,
        &shown(&id, &name),
        Some(&spec.name),
        &decision,
        recorded,
        started,
    );
    Ok(Client {
        handle: Handle::new(id.clone(), id, found.is_none()),
        new_secret,
    })
}

/// Deletes the clients of the pool in the stack's name space (`<stack>-*`) that the
/// configuration does not list. A fresh pool has none: no read.
pub async fn sweep(ctx: &Ctx<'_>, pool: &Handle) -> Result<()> {
    if pool.fresh {
        return Ok(());
    }
    let prefix = format!("{}-", ctx.stack);
    for (id, cognito_name) in first_list(ctx, &pool.id).await? {
        let Some(name) = cognito_name.strip_prefix(&prefix) else {
            continue;
        };
        if ctx.desired.client(name).is_some() {
            continue;
        }
        let started = Instant::now();
        if ctx.apply {
            delete(ctx, &pool.id, &id).await?;
            ctx.rec.remove(&state_key(name)).await?;
        }
        ctx.finish_extra(KIND, &id, Some(name), started);
    }
    Ok(())
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

/// What a calling service needs besides the token URL: the client's secret and the
/// scopes it may ask for. For `token`, `credentials` and published secrets only; never
/// stored or printed (but by `credentials`, on request).
pub struct Credentials {
    pub secret: Secret,
    pub scopes: Vec<String>,
}

pub async fn credentials(
    aws: &crate::aws::Aws,
    pool_id: &str,
    client_id: &str,
) -> Result<Credentials> {
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
    let client = out.user_pool_client();
    let secret = client
        .and_then(|c| c.client_secret())
        .map(|s| Secret(s.to_string()))
        .ok_or_else(|| {
            Error::Http(format!(
                "DescribeUserPoolClient returns no secret for app client {client_id}: if its secret was rotated (`provision rotate`), Cognito gave the new one only once, to rotate: read it where rotate delivered it (Secrets Manager `provision/<stack>/<client>` AWSCURRENT, or the output of --show-secret); a client made without a secret: run `provision up` to replace it"
            ))
        })?;
    let mut scopes = client
        .map(|c| c.allowed_o_auth_scopes().to_vec())
        .unwrap_or_default();
    scopes.sort();
    Ok(Credentials { secret, scopes })
}
