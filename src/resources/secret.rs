//! A client's credentials published to Secrets Manager (`secret = true`), for its
//! calling service to read: `provision/<stack>/<client>`, tagged for the stack, holding
//! `{"client_id", "client_secret", "token_url", "scope"}`, with a resource policy that
//! lets exactly the configured readers call `secretsmanager:GetSecretValue`.
//!
//! The client secret passes through memory only: read from Cognito (or taken from
//! CreateUserPoolClient's answer) and written into the secret; never into the state
//! file, the logs or the output. Comparing reads the secret's value back to check the
//! client id, scope and token URL inside, and drops the rest at once.

use std::time::Instant;

use aws_sdk_secretsmanager::types::{Filter, FilterNameStringType, Tag};
use serde_json::{json, Value};

use super::app_client::{self, Client};
use super::{check_owner, create_once, shown, Create, Ctx, Made, NEW, STACK_TAG};
use crate::aws::SdkResultExt;
use crate::consumers::ClientSpec;
use crate::errors::Result;
use crate::plan::{decide, Decision, SecretSettings};
use crate::policy_doc::normalized;

pub const KIND: &str = "secret";
const POLICY_SID: &str = "ProvisionReaders";

/// The secret's name for a client.
pub fn name(stack: &str, client: &str) -> String {
    format!("provision/{stack}/{client}")
}

fn state_key(client: &str) -> String {
    format!("{KIND} {client}")
}

/// Exactly the readers may read it.
fn policy(readers: &[String]) -> String {
    json!({
        "Version": "2012-10-17",
        "Statement": [{
            "Sid": POLICY_SID,
            "Effect": "Allow",
            "Principal": {"AWS": readers},
            "Action": "secretsmanager:GetSecretValue",
            "Resource": "*",
        }],
    })
    .to_string()
}

/// The secret's tags when it exists: None when it does not.
async fn describe(
    ctx: &Ctx<'_>,
    name: &str,
) -> Result<Option<std::collections::HashMap<String, String>>> {
    match ctx
        .aws
        .secrets
        .describe_secret()
        .secret_id(name)
        .send()
        .await
        .sdk()
    {
        // A secret scheduled for deletion is as good as gone, but its name is taken.
        Ok(out) if out.deleted_date().is_some() => Ok(None),
        Ok(out) => Ok(Some(
            out.tags()
                .iter()
                .filter_map(|t| Some((t.key()?.to_string(), t.value()?.to_string())))
                .collect(),
        )),
        Err(e) if e.is_not_found() => Ok(None),
        Err(e) => Err(e.fail(format!("reading secret {name}"), "DescribeSecret")),
    }
}

/// What the secret holds (but the client secret) and who may read it.
async fn observe(ctx: &Ctx<'_>, name: &str) -> Result<SecretSettings> {
    let (value, policy) = ctx
        .both(
            async {
                ctx.aws
                    .secrets
                    .get_secret_value()
                    .secret_id(name)
                    .send()
                    .await
                    .sdk()
                    .map_err(|e| e.fail(format!("reading secret {name}"), "GetSecretValue"))
            },
            async {
                ctx.aws
                    .secrets
                    .get_resource_policy()
                    .secret_id(name)
                    .send()
                    .await
                    .sdk()
                    .map_err(|e| {
                        e.fail(
                            format!("reading the resource policy of secret {name}"),
                            "GetResourcePolicy",
                        )
                    })
            },
        )
        .await;
    let held: Value = value?
        .secret_string()
        .and_then(|s| serde_json::from_str(s).ok())
        .unwrap_or(Value::Null);
    let field = |k: &str| {
        held.get(k)
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string()
    };
    Ok(SecretSettings {
        client_id: field("client_id"),
        scope: field("scope"),
        token_url: field("token_url"),
        readers: normalized(policy?.resource_policy().unwrap_or_default()),
    })
}

/// The secret's JSON, with the client secret in it: built only to be sent.
fn value(client_id: &str, secret: &app_client::Secret, token_url: &str, scope: &str) -> String {
    json!({
        "client_id": client_id,
        "client_secret": secret.0,
        "token_url": token_url,
        "scope": scope,
    })
    .to_string()
}

/// The Secrets Manager version that publishes the Cognito secret `secret_id`: derived
/// from it, so a rerun can tell whether a rotation's secret was published, and a resent
/// PutSecretValue is the same version (a 64-hex token: within AWS's 32 to 64).
pub fn version_for(secret_id: &str) -> String {
    use sha2::{Digest, Sha256};
    hex::encode(Sha256::digest(secret_id.as_bytes()))
}

/// The version staged `AWSCURRENT` (without reading any value).
pub async fn current_version(aws: &crate::aws::Aws, name: &str) -> Result<Option<String>> {
    let out = aws
        .secrets
        .describe_secret()
        .secret_id(name)
        .send()
        .await
        .sdk()
        .map_err(|e| e.fail(format!("reading secret {name}"), "DescribeSecret"))?;
    Ok(out.version_ids_to_stages().and_then(|m| {
        m.iter()
            .find(|(_, stages)| stages.iter().any(|s| s == "AWSCURRENT"))
            .map(|(v, _)| v.clone())
    }))
}

/// Stores a rotated client secret (Cognito's `secret_id`) as the published secret's new
/// version: PutSecretValue without stages moves `AWSCURRENT` to it and `AWSPREVIOUS` to
/// the version before, so a reader that fails with the new one can fall back to the old.
pub async fn put_rotated(
    aws: &crate::aws::Aws,
    name: &str,
    client_id: &str,
    secret_id: &str,
    secret: &app_client::Secret,
    token_url: &str,
    scope: &str,
) -> Result<()> {
    aws.secrets
        .put_secret_value()
        .secret_id(name)
        .client_request_token(version_for(secret_id))
        .secret_string(value(client_id, secret, token_url, scope))
        .send()
        .await
        .sdk()
        .map(drop)
        .map_err(|e| {
            let mut err = e.fail(
                format!("storing the new secret in {name}"),
                "PutSecretValue",
            );
            if let crate::errors::Error::Aws(f) = &mut err {
                if f.code.as_deref() == Some("ResourceNotFoundException") {
                    f.hint =
                        Some("the published secret is missing: run `provision up` first".into());
                }
            }
            err
        })
}

pub async fn ensure(
    ctx: &Ctx<'_>,
    pool_id: &str,
    client: &Client,
    spec: &ClientSpec,
) -> Result<()> {
    let started = Instant::now();
    let name = name(ctx.stack, &spec.name);
    let key = state_key(&spec.name);
    let recorded = ctx.rec.get(&key).is_some();
    let want = SecretSettings {
        client_id: client.handle.id.clone(),
        scope: spec.scope_strings().join(" "),
        token_url: ctx.token_url.clone(),
        readers: normalized(&policy(&spec.readers)),
    };
    let observed = match describe(ctx, &name).await? {
        Some(tags) => {
            check_owner(Some(&tags), ctx.stack, &format!("secret {name}"))?;
            Some(observe(ctx, &name).await?)
        }
        None => None,
    };
    let decision = decide(&want, observed.as_ref());
    if ctx.apply && decision != Decision::Unchanged {
        let value_differs = match &decision {
            Decision::Update(fields) => fields.iter().any(|f| *f != "readers"),
            _ => true,
        };
        if value_differs {
            let secret = match &client.new_secret {
                Some(s) => s.clone(),
                None => {
                    app_client::credentials(ctx.aws, pool_id, &client.handle.id)
                        .await?
                        .secret
                }
            };
            let json = value(&want.client_id, &secret, &want.token_url, &want.scope);
            if decision == Decision::Create {
                create(ctx, &name, &json).await?;
            } else {
                ctx.aws
                    .secrets
                    .put_secret_value()
                    .secret_id(&name)
                    .secret_string(json)
                    .send()
                    .await
                    .sdk()
                    .map_err(|e| e.fail(format!("updating secret {name}"), "PutSecretValue"))?;
            }
        }
        let readers_differ = match &decision {
            Decision::Update(fields) => fields.contains(&"readers"),
            _ => true,
        };
        if readers_differ {
            ctx.aws
                .secrets
                .put_resource_policy()
                .secret_id(&name)
                .resource_policy(policy(&spec.readers))
                .block_public_policy(true)
                .send()
                .await
                .sdk()
                .map_err(|e| {
                    e.fail(
                        format!("letting the readers of secret {name} read it"),
                        "PutResourcePolicy",
                    )
                })?;
        }
    }
    if ctx.apply {
        ctx.rec.set(&key, &name).await?;
    }
    let id = if observed.is_none() && !ctx.apply {
        NEW
    } else {
        &name
    };
    ctx.finish_named(
        KIND,
        &shown(id, &name),
        Some(&spec.name),
        &decision,
        recorded,
        started,
    );
    Ok(())
}

/// Secrets Manager frees the name of a secret deleted without recovery a few seconds
/// after the delete, not at once (the emulator frees it at once): `up` right after
/// `down` meets this and waits it out.
pub(super) fn name_still_taken(e: &crate::aws::SdkFailure) -> bool {
    e.is("InvalidRequestException") && e.message.contains("scheduled for deletion")
}

/// Attempts while the name is being freed: about a minute with `create_once`'s backoff
/// (0.2 s doubling to 10 s), where AWS takes seconds.
const NAME_FREED_ATTEMPTS: u32 = 11;

pub(super) async fn create(ctx: &Ctx<'_>, name: &str, json: &str) -> Result<()> {
    create_once(
        Create {
            busy: name_still_taken,
            attempts: NAME_FREED_ATTEMPTS,
            ..Create::new(format!("creating secret {name}"), "CreateSecret")
        },
        || async {
            let sent = ctx.aws
                .once
                .secrets
                .create_secret()
                .name(name)
                .description(format!(
                    "App client credentials of provision stack {}",
                    ctx.stack
                ))
                .secret_string(json)
                .tags(Tag::builder().key(STACK_TAG).value(ctx.tag_value()).build())
                .send()
                .await
                .sdk();
            if let Err(e) = &sent {
                if name_still_taken(e) {
                    crate::report::progress(&format!(
                        "  waiting: secret {name} was deleted moments ago and Secrets Manager has not freed its name yet (it takes a few seconds)"
                    ));
                }
            }
            sent
        },
        || async {
            let found = describe(ctx, name).await?;
            if let Some(tags) = &found {
                check_owner(Some(tags), ctx.stack, &format!("secret {name}"))?;
            }
            Ok(found.map(|_| ()))
        },
    )
    .await
    .map(|made: Made<_, ()>| drop(made))
}

/// The stack's secrets (named `provision/<stack>/*` and tagged for it): (name, client).
async fn list(ctx: &Ctx<'_>) -> Result<Vec<(String, String)>> {
    Ok(named(ctx)
        .await?
        .into_iter()
        .filter(|s| s.tags.get(STACK_TAG).map(String::as_str) == Some(ctx.stack))
        .map(|s| (s.name, s.client))
        .collect())
}

/// A secret named for the stack, with its tags.
pub struct Named {
    pub name: String,
    pub client: String,
    pub tags: std::collections::HashMap<String, String>,
}

/// Every secret named `provision/<stack>/*`, whoever's it is, but those scheduled for
/// deletion already: `down` deletes those tagged for the stack, recorded or not (a run
/// killed between CreateSecret and its state write leaves one the state never names).
pub async fn named(ctx: &Ctx<'_>) -> Result<Vec<Named>> {
    let prefix = name(ctx.stack, "");
    let mut token: Option<String> = None;
    let mut found = Vec::new();
    loop {
        let out = ctx
            .aws
            .secrets
            .list_secrets()
            .filters(
                Filter::builder()
                    .key(FilterNameStringType::Name)
                    .values(&prefix)
                    .build(),
            )
            .max_results(100)
            .set_next_token(token.clone())
            .send()
            .await
            .sdk()
            .map_err(|e| e.fail(format!("listing secrets {prefix}*"), "ListSecrets"))?;
        for s in out.secret_list() {
            let Some(secret) = s.name() else { continue };
            let Some(client) = secret.strip_prefix(&prefix) else {
                continue;
            };
            if s.deleted_date().is_none() {
                found.push(Named {
                    name: secret.to_string(),
                    client: client.to_string(),
                    tags: s
                        .tags()
                        .iter()
                        .filter_map(|t| Some((t.key()?.to_string(), t.value()?.to_string())))
                        .collect(),
                });
            }
        }
        token = out.next_token().map(str::to_string);
        if token.is_none() {
            break;
        }
    }
    Ok(found)
}

/// Deletes the stack's secrets that no configured client publishes (`down`: all of
/// them). Reads only when there may be some: a secret is configured or recorded, or
/// (`down`, which must leave nothing) there is no state file to tell.
pub async fn sweep(ctx: &Ctx<'_>, down: bool) -> Result<()> {
    let wanted = |client: &str| !down && ctx.desired.client(client).is_some_and(|c| c.secret);
    let may_exist = (!down && ctx.desired.clients.iter().any(|c| c.secret))
        || !ctx.rec.keys(&format!("{KIND} ")).is_empty()
        || (down && ctx.rec.is_empty());
    if !may_exist {
        return Ok(());
    }
    for (secret, client) in list(ctx).await? {
        if wanted(&client) {
            continue;
        }
        let started = Instant::now();
        if ctx.apply {
            delete(ctx, &secret).await?;
            ctx.rec.remove(&state_key(&client)).await?;
        }
        ctx.finish_extra(KIND, &secret, Some(&client), started);
    }
    Ok(())
}

/// Deletes a secret at once (no recovery window): its client is gone or replaced.
pub async fn delete(ctx: &Ctx<'_>, name: &str) -> Result<bool> {
    match ctx
        .aws
        .secrets
        .delete_secret()
        .secret_id(name)
        .force_delete_without_recovery(true)
        .send()
        .await
        .sdk()
    {
        Ok(_) => Ok(true),
        Err(e) if e.is_not_found() => Ok(false),
        Err(e) => Err(e.fail(format!("deleting secret {name}"), "DeleteSecret")),
    }
}
