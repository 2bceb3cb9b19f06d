//! `status`: the stack's graph walked as a dry run, each resource judged ok, drifted,
//! missing or extra; and each app client's secrets counted and aged (`--max-secret-age`
//! makes an older one drift, so CI can enforce a rotation period).

use futures_util::stream::{self, StreamExt};
use serde_json::json;

use super::converge::converge;
use super::{context, open, resolve_prefix, sorted, Open, Run};
use crate::cli::Format;
use crate::config::{Desired, Target};
use crate::errors::{exit, Result};
use crate::package;
use crate::plan::{self, Health};
use crate::report::{self, Done};
use crate::resources::{app_client, client_secrets, user_pool};
use crate::state::Recorder;
use crate::store::Sink;

pub async fn status(
    target: &Target,
    desired: &Desired,
    max_secret_age: Option<u64>,
    format: Format,
) -> Result<i32> {
    let package = match package::build(
        &desired.handler,
        desired.handler_given,
        desired.architecture,
        matches!(target.state, crate::store::Location::S3 { .. }),
    ) {
        Ok(p) => Some(p),
        Err(e) if !desired.handler_given => {
            report::info(&format!("{e}; the function's code is not compared"));
            None
        }
        Err(e) => return Err(e),
    };
    let session = open(
        target,
        Open {
            lock: false,
            account: true,
        },
    )
    .await?;
    let prefix = resolve_prefix(desired, &session.account, &session.region, &target.stack)?;
    let rec = Recorder::new(Sink::None, session.state(target));
    let ctx = context(
        &session,
        target,
        &rec,
        Run {
            desired,
            prefix: &prefix,
            package: package.as_ref(),
            apply: false,
            // status prints its own table, not the plan's lines.
            show: false,
        },
    );
    Box::pin(converge(&ctx, target.concurrency)).await?;
    let done = sorted(ctx.done.into_inner().expect("done"), desired);
    let mut health: Vec<_> = done
        .into_iter()
        .map(|d| {
            let h = plan::health(d.action, &d.changes);
            (d, h)
        })
        .collect();
    let secrets = secret_ages(target, &session.aws, &mut health, max_secret_age).await?;
    let too_old = secrets
        .iter()
        .any(|s| s.as_ref().is_some_and(|a| a.too_old));
    let in_sync = health.iter().all(|(_, h)| *h == Health::Ok);
    match format {
        Format::Json => report::emit_json(&json!({
            "stack": target.stack,
            "front": desired.front.as_str(),
            "in_sync": in_sync,
            "resources": health.iter().zip(&secrets).map(|((d, h), ages)| {
                let mut v = json!({"kind": d.kind, "id": d.id, "state": h});
                if let Some(a) = ages {
                    v["secrets"] = json!(a.count);
                    v["oldest_secret_days"] = json!(a.oldest_days);
                }
                if let Some(name) = &d.name {
                    v["name"] = json!(name);
                }
                if !d.changes.is_empty() {
                    v["fields"] = json!(d.changes);
                }
                v
            }).collect::<Vec<_>>(),
            "api_calls": session.aws.calls.count(),
        })),
        Format::Human => {
            let mut out = String::new();
            for ((d, h), ages) in health.iter().zip(&secrets) {
                let state = match h {
                    Health::Ok => "ok",
                    Health::Drifted => "drifted",
                    Health::Missing => "missing",
                    Health::Extra => "extra",
                };
                out.push_str(&format!("  {state:<8} {:<18} {}", d.kind, d.id));
                if let Some(name) = &d.name {
                    out.push_str(&format!(" ({name})"));
                }
                if !d.changes.is_empty() {
                    out.push_str(&format!("  [{}]", d.changes.join(", ")));
                }
                if let Some(a) = ages {
                    out.push_str(&format!("  secrets: {}", a.count));
                    if let Some(days) = a.oldest_days {
                        out.push_str(&format!(", oldest {days} days"));
                    }
                }
                out.push('\n');
            }
            out.push_str(if in_sync {
                "In sync.\n"
            } else {
                "Not in sync: `provision up` repairs it.\n"
            });
            if too_old {
                out.push_str("A client secret is older than the maximum age (secret_age): `provision rotate --client NAME`, then `--finish` once its callers use the new one.\n");
            }
            report::emit_text(&out);
        }
    }
    Ok(if in_sync { exit::OK } else { exit::DRIFT })
}

/// A client's secrets as `status` reports them.
struct Ages {
    count: usize,
    oldest_days: Option<u64>,
    too_old: bool,
}

/// Per resource (in `health`'s order): for each app client that exists, its secrets'
/// count and the age of the oldest; an app client with one older than `max_age` days
/// becomes drifted (field `secret_age`). One ListUserPoolClientSecrets per client, sent
/// together (at most `--max-concurrency` at once): a stack of 50 clients waits for one
/// round trip, not 50.
async fn secret_ages(
    target: &Target,
    aws: &crate::aws::Aws,
    health: &mut [(Done, Health)],
    max_age: Option<u64>,
) -> Result<Vec<Option<Ages>>> {
    let pool = health
        .iter()
        .find(|(d, h)| d.kind == user_pool::KIND && *h != Health::Missing)
        .map(|(d, _)| d.id.clone());
    // An extra client (ours by name, not configured) is `up`'s to delete: its secrets
    // are nobody's to rotate, and it may have none to list.
    let counted: Vec<Option<String>> = health
        .iter()
        .map(|(d, h)| {
            let client =
                d.kind == app_client::KIND && !matches!(*h, Health::Missing | Health::Extra);
            (client && pool.is_some()).then(|| d.id.clone())
        })
        .collect();
    let listed: Vec<_> = stream::iter(counted.iter().map(|id| {
        let pool = pool.as_deref();
        async move {
            match (id, pool) {
                (Some(id), Some(pool)) => Some(client_secrets::list_sdk(aws, pool, id).await),
                _ => None,
            }
        }
    }))
    .buffered(target.concurrency.max(1))
    .collect()
    .await;
    let mut ages = Vec::with_capacity(health.len());
    let now = std::time::SystemTime::now();
    for ((d, h), listed) in health.iter_mut().zip(listed) {
        let Some(listed) = listed else {
            ages.push(None);
            continue;
        };
        let secrets = match listed {
            Ok(s) => s,
            // MiniStack (1.5.33) lacks the operation; AWS has it. Locally only, say so
            // and report no secrets rather than fail the whole status.
            Err(e)
                if target.is_local()
                    && (e.is("InvalidAction") || e.is("UnknownOperationException")) =>
            {
                report::info(&format!(
                    "the endpoint does not implement ListUserPoolClientSecrets ({}): client secrets not counted",
                    e.code.as_deref().unwrap_or("")
                ));
                ages.push(None);
                continue;
            }
            // Cognito's answer for a client made without a secret: nothing to count.
            Err(e) if e.is("ResourceNotFoundException") => Vec::new(),
            Err(e) => {
                return Err(e.fail(
                    format!("listing the secrets of app client {}", d.id),
                    "ListUserPoolClientSecrets",
                ))
            }
        };
        let oldest_days = secrets
            .first()
            .and_then(|s| client_secrets::age_days(s.created, now));
        let too_old = matches!((oldest_days, max_age), (Some(days), Some(max)) if days > max);
        if too_old {
            d.changes.push("secret_age".into());
            if *h == Health::Ok {
                *h = Health::Drifted;
            }
        }
        ages.push(Some(Ages {
            count: secrets.len(),
            oldest_days,
            too_old,
        }));
    }
    Ok(ages)
}
