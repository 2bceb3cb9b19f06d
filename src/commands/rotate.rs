//! `rotate`: give an app client a second secret and deliver it, without a new client
//! id; `rotate --finish`: delete every secret but the newest.
//!
//! The order of operations leaves no moment without a working secret: the new secret
//! is added while the old one stays live (Cognito accepts either), then published
//! (Secrets Manager's `AWSCURRENT`; the old value stays readable as `AWSPREVIOUS`);
//! only `--finish`, run later, deletes the old one.
//!
//! A secret's value is returned once, by AddUserPoolClientSecret. A secret nobody
//! received must not stay (it would be the "newest" `--finish` keeps): an unanswered
//! Add is settled in `client_secrets::add`; a run stopped between adding and
//! delivering leaves a marker in the state (`rotating <client>`: the ids live before);
//! the next `rotate` settles it first: a secret added since is kept if Secrets Manager's
//! `AWSCURRENT` is its version (the version id is derived from the Cognito secret id, so
//! this needs no value), else deleted.

use serde_json::{json, Value};

use super::read::client_id;
use super::{open, Open, Session};
use crate::cli::{Format, RotateArgs};
use crate::config::{Desired, Target};
use crate::consumers::ClientSpec;
use crate::errors::{exit, Error, Result};
use crate::interrupt;
use crate::report;
use crate::resources::app_client::Secret;
use crate::resources::{client_secrets, secret};
use crate::state::{Outputs, Recorder};

/// What to do, decided before any AWS call.
pub struct RotatePlan {
    clients: Vec<ClientSpec>,
    all: bool,
    finish: bool,
    show_secret: bool,
}

impl RotatePlan {
    /// Which clients (an unknown one is bad input), and whether each new secret can be
    /// delivered (published, or `--show-secret`).
    pub fn new(args: &RotateArgs, desired: &Desired) -> Result<RotatePlan> {
        let clients: Vec<ClientSpec> = match &args.client {
            Some(name) => vec![desired.client(name).cloned().ok_or_else(|| {
                let known: Vec<&str> = desired.clients.iter().map(|c| c.name.as_str()).collect();
                Error::usage(format!(
                    "client `{name}`: the configuration has no such client (it has: {}); clients are configured with [[client]] in provision.toml",
                    known.join(", ")
                ))
            })?],
            None => desired.clients.clone(),
        };
        if !args.finish && !args.show_secret {
            if let Some(c) = clients.iter().find(|c| !c.secret) {
                return Err(Error::usage(format!(
                    "client `{}` is not published to Secrets Manager (secret = true), so its new secret could be delivered nowhere; pass --show-secret to print it (Cognito returns it once, now, and never again), or set secret = true and run `provision up` first",
                    c.name
                )));
            }
        }
        Ok(RotatePlan {
            clients,
            all: args.all,
            finish: args.finish,
            show_secret: args.show_secret,
        })
    }
}

pub async fn rotate(target: &Target, plan: &RotatePlan, format: Format) -> Result<i32> {
    let mut session = open(
        target,
        Open {
            lock: true,
            account: true,
        },
    )
    .await?;
    let result = run(&session, target, plan, format).await;
    session.release().await;
    result
}

/// The state key of a rotation under way: the ids of the secrets live before it.
fn pending_key(client: &str) -> String {
    format!("rotating {client}")
}

/// One client to rotate or finish: its id and its live secrets, oldest first.
struct Target1<'a> {
    spec: &'a ClientSpec,
    id: String,
    secrets: Vec<client_secrets::Info>,
}

async fn run(session: &Session, target: &Target, plan: &RotatePlan, format: Format) -> Result<i32> {
    let name = session.store.name();
    let outputs = session
        .existing
        .as_ref()
        .and_then(|s| s.outputs.clone())
        .ok_or_else(|| {
            Error::usage(format!(
                "state {name}: the stack `{}` is not up there (no outputs); run `provision up` first",
                target.stack
            ))
        })?;
    let aws = &session.aws;
    let pool = &outputs.user_pool_id;
    let rec = Recorder::new(session.store.sink(), session.state(target));
    // Reads (and the repair of a run stopped mid-way) before any rotation.
    let mut todo = Vec::new();
    for spec in &plan.clients {
        let id = client_id(&outputs, Some(&spec.name))?;
        let mut secrets = client_secrets::list(aws, pool, &id).await?;
        if let Some(before) = rec.get(&pending_key(&spec.name)) {
            let names = (outputs.stack.as_str(), pool.as_str(), id.as_str());
            settle(session, &rec, spec, names, &before, &mut secrets).await?;
        }
        if !plan.finish && secrets.len() >= 2 {
            return Err(Error::usage(format!(
                "client `{}` ({id}) has two live secrets already (Cognito keeps at most two): finish the last rotation first with `provision rotate --client {} --finish`",
                spec.name, spec.name
            )));
        }
        todo.push(Target1 { spec, id, secrets });
    }
    let mut results = Vec::new();
    let mut failed = None;
    for t in todo {
        if interrupt::requested() {
            break;
        }
        let done = if plan.finish {
            finish(session, pool, &t).await
        } else {
            add(session, &rec, &outputs, plan, &t).await
        };
        match done {
            Ok(v) => results.push(v),
            Err(e) => {
                failed = Some(e);
                break;
            }
        }
    }
    let flushed = rec.flush().await;
    let interrupted = failed.is_none() && results.len() < plan.clients.len();
    // What was done is printed even when a later client failed: a new secret shown
    // with --show-secret exists nowhere else.
    if !results.is_empty() || failed.is_none() {
        emit(format, target, plan, &results, interrupted);
    }
    if let Some(e) = failed {
        return Err(e);
    }
    flushed?;
    if interrupted {
        report::warn(
            "stopped before every client was done; run the same command again for the rest",
        );
        return Ok(exit::INTERRUPTED);
    }
    Ok(exit::OK)
}

/// A run stopped after adding a secret (`before`: the ids live until then). A secret
/// added since is kept if it was published (`AWSCURRENT` is its version: callers may
/// already use it), else deleted: nobody has its value.
async fn settle(
    session: &Session,
    rec: &Recorder,
    spec: &ClientSpec,
    (stack, pool, id): (&str, &str, &str),
    before: &str,
    secrets: &mut Vec<client_secrets::Info>,
) -> Result<()> {
    let aws = &session.aws;
    let before: Vec<&str> = before.split(' ').collect();
    let published = if spec.secret {
        secret::current_version(aws, &secret::name(stack, &spec.name)).await?
    } else {
        None
    };
    let mut kept = Vec::new();
    for s in secrets.drain(..) {
        let added_since = !before.contains(&s.id.as_str());
        if added_since && published.as_deref() != Some(secret::version_for(&s.id).as_str()) {
            report::warn(&format!(
                "client {}: secret {} was added by a run stopped before it delivered it; deleting it again",
                spec.name, s.id
            ));
            client_secrets::delete(aws, pool, id, &s.id).await?;
        } else {
            kept.push(s);
        }
    }
    *secrets = kept;
    rec.remove(&pending_key(&spec.name)).await
}

fn created(info: &client_secrets::Info) -> Value {
    info.created
        .and_then(|d| d.fmt(aws_smithy_types::date_time::Format::DateTime).ok())
        .map(Value::from)
        .unwrap_or(Value::Null)
}

/// Adds the client's second secret and delivers it.
async fn add(
    session: &Session,
    rec: &Recorder,
    outputs: &Outputs,
    plan: &RotatePlan,
    t: &Target1<'_>,
) -> Result<Value> {
    let aws = &session.aws;
    let pool = &outputs.user_pool_id;
    let key = pending_key(&t.spec.name);
    let before: Vec<&str> = t.secrets.iter().map(|s| s.id.as_str()).collect();
    rec.set(&key, &before.join(" ")).await?;
    // The marker must be in the store before Add (an S3 write may trail the run).
    rec.flush().await?;
    let added = client_secrets::add(aws, pool, &t.id, &t.secrets).await?;
    let published = if t.spec.secret {
        let name = secret::name(&outputs.stack, &t.spec.name);
        let scope = t.spec.scope_strings().join(" ");
        if let Err(e) = secret::put_rotated(
            aws,
            &name,
            &t.id,
            &added.info.id,
            &Secret(added.value.0.clone()),
            &outputs.token_url,
            &scope,
        )
        .await
        {
            report::warn(&format!(
                "client {}: the new secret {} could not be published; deleting it again (the old one stays as it was)",
                t.spec.name, added.info.id
            ));
            client_secrets::delete(aws, pool, &t.id, &added.info.id).await?;
            rec.remove(&key).await?;
            return Err(e);
        }
        Some(name)
    } else {
        None
    };
    rec.remove(&key).await?;
    let mut v = json!({
        "client": t.spec.name,
        "client_id": t.id,
        "secret_id": added.info.id,
        "created": created(&added.info),
        "active_secrets": t.secrets.len() + 1,
    });
    if let Some(name) = published {
        v["secrets_manager"] = json!(name);
    }
    if plan.show_secret {
        v["client_secret"] = json!(reveal(&added.value));
    }
    Ok(v)
}

/// The secret's value, for the one place that prints it (`--show-secret`).
fn reveal(v: &client_secrets::Value) -> &str {
    &v.0
}

/// Deletes every secret but the newest; one secret: nothing to do.
async fn finish(session: &Session, pool: &str, t: &Target1<'_>) -> Result<Value> {
    let Some((newest, older)) = t.secrets.split_last() else {
        return Err(Error::Http(format!(
            "app client {} ({}): Cognito lists no secret for it; run `provision up` to repair it",
            t.spec.name, t.id
        )));
    };
    if older.is_empty() {
        report::info(&format!(
            "client {}: one secret ({}), nothing to finish",
            t.spec.name, newest.id
        ));
    }
    let mut deleted = Vec::new();
    for old in older {
        client_secrets::delete(&session.aws, pool, &t.id, &old.id).await?;
        deleted.push(old.id.clone());
    }
    Ok(json!({
        "client": t.spec.name,
        "client_id": t.id,
        "secret_id": newest.id,
        "created": created(newest),
        "active_secrets": 1,
        "deleted": deleted,
    }))
}

fn emit(format: Format, target: &Target, plan: &RotatePlan, results: &[Value], interrupted: bool) {
    match format {
        Format::Json => {
            let mut v = if plan.all {
                json!({"stack": target.stack, "clients": results})
            } else {
                results.first().cloned().unwrap_or_else(|| json!({}))
            };
            if interrupted {
                v["interrupted"] = json!(true);
            }
            report::emit_json(&v);
        }
        Format::Human => {
            let mut out = String::new();
            for r in results {
                let client = r["client"].as_str().unwrap_or_default();
                if plan.finish {
                    out.push_str(&format!(
                        "client {client} ({}): secret {} kept; deleted: {}\n",
                        r["client_id"].as_str().unwrap_or_default(),
                        r["secret_id"].as_str().unwrap_or_default(),
                        r["deleted"]
                            .as_array()
                            .filter(|d| !d.is_empty())
                            .map(|d| d
                                .iter()
                                .filter_map(Value::as_str)
                                .collect::<Vec<_>>()
                                .join(", "))
                            .unwrap_or_else(|| "nothing (one secret)".into())
                    ));
                    continue;
                }
                out.push_str(&format!(
                    "client {client} ({}): new secret {} created {}; {} live\n",
                    r["client_id"].as_str().unwrap_or_default(),
                    r["secret_id"].as_str().unwrap_or_default(),
                    r["created"].as_str().unwrap_or("?"),
                    r["active_secrets"],
                ));
                if let Some(name) = r["secrets_manager"].as_str() {
                    out.push_str(&format!(
                        "  published: {name} AWSCURRENT holds the new secret, AWSPREVIOUS the old one\n"
                    ));
                }
                if let Some(s) = r["client_secret"].as_str() {
                    out.push_str(&format!(
                        "  client_secret  {s}\n  (shown once: Cognito never returns it again)\n"
                    ));
                }
                out.push_str(&format!(
                    "  once every caller uses the new secret: provision rotate --client {client} --finish\n"
                ));
            }
            report::emit_text(&out);
        }
    }
}
