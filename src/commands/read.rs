//! The commands that use a stack that is up: `outputs` (the state file only), `token`,
//! `invoke` and `credentials` (the client's secret, read from Cognito when needed).

use serde_json::json;

use super::{open, Open, Session};
use crate::cli::{Format, InvokeArgs};
use crate::client;
use crate::config::Target;
use crate::errors::{exit, Error, Result};
use crate::report;
use crate::resources::{app_client, client_secrets};
use crate::state::Outputs;

/// The state of a stack that is up, for the commands that only read it (no lock).
async fn recorded_outputs(target: &Target) -> Result<(Session, Outputs)> {
    let session = open(
        target,
        Open {
            lock: false,
            account: false,
        },
    )
    .await?;
    let name = session.store.name();
    let state = session.existing.as_ref().ok_or_else(|| {
        Error::usage(format!(
            "no state {name}: the stack `{}` is not up there; run `provision up` first (or pass --state-dir)",
            target.stack
        ))
    })?;
    let outputs = state.outputs.clone().ok_or_else(|| {
        Error::usage(format!(
            "state {name}: no outputs yet (the last `up` did not finish); run `provision up`"
        ))
    })?;
    Ok((session, outputs))
}

pub async fn outputs(target: &Target, format: Format) -> Result<i32> {
    let (_, outputs) = recorded_outputs(target).await?;
    match format {
        Format::Json => report::emit_json(&json!(outputs)),
        Format::Human => report::emit_text(&report::outputs_human(&outputs)),
    }
    Ok(exit::OK)
}

/// The id of a client by its configured name (default: the first). State files written
/// before clients had names know only the one client.
pub(super) fn client_id(outputs: &Outputs, name: Option<&str>) -> Result<String> {
    let Some(n) = name else {
        return Ok(outputs.client_id.clone());
    };
    if let Some(id) = outputs.clients.get(n) {
        return Ok(id.clone());
    }
    if outputs.clients.is_empty() && n == crate::consumers::DEFAULT_CLIENT {
        return Ok(outputs.client_id.clone());
    }
    let known: Vec<&str> = outputs.clients.keys().map(String::as_str).collect();
    Err(Error::usage(format!(
        "client `{n}`: the stack has no such client (it has: {}); clients are configured with [[client]] in provision.toml or --client on `up`",
        if known.is_empty() {
            crate::consumers::DEFAULT_CLIENT.to_string()
        } else {
            known.join(", ")
        }
    )))
}

/// The client's credentials: its id, its secret and the scopes it may ask for.
async fn client_credentials(
    session: &Session,
    outputs: &Outputs,
    name: Option<&str>,
) -> Result<(String, app_client::Credentials)> {
    let id = client_id(outputs, name)?;
    let credentials = app_client::credentials(&session.aws, &outputs.user_pool_id, &id).await?;
    Ok((id, credentials))
}

async fn fresh_token(
    target: &Target,
    session: &Session,
    outputs: &Outputs,
    name: Option<&str>,
) -> Result<client::Token> {
    let (id, credentials) = client_credentials(session, outputs, name).await?;
    client::token(
        &outputs.token_url,
        &id,
        &credentials.secret.0,
        &credentials.scopes,
        !target.is_local(),
    )
    .await
}

pub async fn token(target: &Target, client: Option<&str>, format: Format) -> Result<i32> {
    let (session, outputs) = recorded_outputs(target).await?;
    let token = fresh_token(target, &session, &outputs, client).await?;
    match format {
        Format::Json => report::emit_json(&json!(token)),
        Format::Human => report::emit_text(&token.access_token),
    }
    Ok(exit::OK)
}

pub async fn invoke(target: &Target, args: &InvokeArgs, format: Format) -> Result<i32> {
    if !args.path.starts_with('/') {
        return Err(Error::usage(format!(
            "path `{}`: must start with /",
            args.path
        )));
    }
    let (session, outputs) = recorded_outputs(target).await?;
    let token = if args.no_token {
        None
    } else {
        Some(
            fresh_token(target, &session, &outputs, args.client.as_deref())
                .await?
                .access_token,
        )
    };
    let url = client::join(&outputs.api_url, &args.path);
    report::info(&format!("{} {url}", args.method.to_ascii_uppercase()));
    let reply = client::call(&url, &args.method, token.as_deref(), args.data.as_deref()).await?;
    match format {
        Format::Json => {
            let body = serde_json::from_str::<serde_json::Value>(&reply.body)
                .unwrap_or_else(|_| json!(reply.body));
            report::emit_json(&json!({"status": reply.status, "body": body}));
        }
        Format::Human => report::emit_text(&format!("HTTP {}\n{}", reply.status, reply.body)),
    }
    Ok(if (200..300).contains(&reply.status) {
        exit::OK
    } else {
        exit::FAILURE
    })
}

/// Prints a client secret (as only `rotate --show-secret` also does): on explicit request, to stdout only;
/// nothing is written anywhere.
///
/// It prints what DescribeUserPoolClient returns as the secret. Once a client has two
/// (after `rotate`), AWS does not document which one that is; the one `rotate` added was
/// returned once, to `rotate`. So with two live secrets it says so on stderr, and
/// `active_secrets` tells a script.
pub async fn credentials(target: &Target, client: Option<&str>, format: Format) -> Result<i32> {
    let (session, outputs) = recorded_outputs(target).await?;
    let id = client_id(&outputs, client)?;
    let live = match client_secrets::list_sdk(&session.aws, &outputs.user_pool_id, &id).await {
        Ok(s) => Some(s.len()),
        // The emulator lacks the operation (AWS has it): the count is unknown.
        Err(e) if target.is_local() && client_secrets::unimplemented(&e) => None,
        Err(e) => {
            return Err(e.fail(
                format!("listing the secrets of app client {id}"),
                "ListUserPoolClientSecrets",
            ))
        }
    };
    let (id, credentials) = client_credentials(&session, &outputs, client).await?;
    if live.is_some_and(|n| n > 1) {
        report::warn(&format!(
            "app client {id} has {} live secrets (a rotation is not finished): client_secret is the one DescribeUserPoolClient returns, which AWS does not document for two secrets; the secret `provision rotate` added was returned once, to rotate, and is where rotate delivered it (Secrets Manager AWSCURRENT, or its --show-secret output). Both work until `provision rotate --finish`",
            live.unwrap_or_default()
        ));
    }
    let scope = credentials.scopes.join(" ");
    match format {
        Format::Json => report::emit_json(&json!({
            "client_id": id,
            "client_secret": credentials.secret.0,
            "token_url": outputs.token_url,
            "scope": scope,
            "active_secrets": live,
        })),
        Format::Human => report::emit_text(&format!(
            "client_id      {id}\nclient_secret  {}\ntoken_url      {}\nscope          {scope}\n",
            credentials.secret.0, outputs.token_url
        )),
    }
    Ok(exit::OK)
}
