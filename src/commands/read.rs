//! The commands that use a stack that is up: `outputs` (the state file only), `token`,
//! `invoke` and `credentials` (the client's secret, read from Cognito when needed).

use serde_json::json;

use crate::aws::Aws;
use crate::cli::{Format, InvokeArgs};
use crate::client;
use crate::config::Target;
use crate::errors::{exit, Error, Result};
use crate::report;
use crate::resources::app_client;
use crate::state::{self, Outputs, StateFile};

/// The state file of a stack that is up, for the commands that only read it.
fn recorded_outputs(target: &Target) -> Result<(StateFile, Outputs)> {
    let path = target.state_path();
    let state = state::load(&path)?.ok_or_else(|| {
        Error::usage(format!(
            "no state file {}: the stack `{}` is not up here; run `provision up` first (or pass --state-dir)",
            path.display(),
            target.stack
        ))
    })?;
    let region = target
        .region
        .clone()
        .unwrap_or_else(|| state.region.clone());
    state::check_matches(&state, &path, &target.stack, &region)?;
    let outputs = state.outputs.clone().ok_or_else(|| {
        Error::usage(format!(
            "state file {}: no outputs yet (the last `up` did not finish); run `provision up`",
            path.display()
        ))
    })?;
    Ok((state, outputs))
}

pub fn outputs(target: &Target, format: Format) -> Result<i32> {
    let (_, outputs) = recorded_outputs(target)?;
    match format {
        Format::Json => report::emit_json(&json!(outputs)),
        Format::Human => report::emit_text(&report::outputs_human(&outputs)),
    }
    Ok(exit::OK)
}

/// The id of a client by its configured name (default: the first). State files written
/// before clients had names know only the one client.
fn client_id(outputs: &Outputs, name: Option<&str>) -> Result<String> {
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
    target: &Target,
    state: &StateFile,
    outputs: &Outputs,
    name: Option<&str>,
) -> Result<(String, app_client::Credentials)> {
    let id = client_id(outputs, name)?;
    let aws = Aws::connect(&state.region, target.endpoint_url.as_deref()).await;
    let credentials = app_client::credentials(&aws, &outputs.user_pool_id, &id).await?;
    Ok((id, credentials))
}

async fn fresh_token(
    target: &Target,
    state: &StateFile,
    outputs: &Outputs,
    name: Option<&str>,
) -> Result<client::Token> {
    let (id, credentials) = client_credentials(target, state, outputs, name).await?;
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
    let (state, outputs) = recorded_outputs(target)?;
    let token = fresh_token(target, &state, &outputs, client).await?;
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
    let (state, outputs) = recorded_outputs(target)?;
    let token = if args.no_token {
        None
    } else {
        Some(
            fresh_token(target, &state, &outputs, args.client.as_deref())
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

/// The one command that prints a client secret: on explicit request, to stdout only;
/// nothing is written anywhere.
pub async fn credentials(target: &Target, client: Option<&str>, format: Format) -> Result<i32> {
    let (state, outputs) = recorded_outputs(target)?;
    let (id, credentials) = client_credentials(target, &state, &outputs, client).await?;
    let scope = credentials.scopes.join(" ");
    match format {
        Format::Json => report::emit_json(&json!({
            "client_id": id,
            "client_secret": credentials.secret.0,
            "token_url": outputs.token_url,
            "scope": scope,
        })),
        Format::Human => report::emit_text(&format!(
            "client_id      {id}\nclient_secret  {}\ntoken_url      {}\nscope          {scope}\n",
            credentials.secret.0, outputs.token_url
        )),
    }
    Ok(exit::OK)
}
