//! `status`: the stack's graph walked as a dry run, each resource judged ok, drifted,
//! missing or extra.

use serde_json::json;

use super::converge::converge;
use super::{context, open, resolve_prefix, sorted, Open, Run};
use crate::cli::Format;
use crate::config::{Desired, Target};
use crate::errors::{exit, Result};
use crate::package;
use crate::plan::{self, Health};
use crate::report;
use crate::state::Recorder;
use crate::store::Sink;

pub async fn status(target: &Target, desired: &Desired, format: Format) -> Result<i32> {
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
    let health: Vec<_> = sorted(ctx.done.into_inner().expect("done"), desired)
        .into_iter()
        .map(|d| {
            let h = plan::health(d.action, &d.changes);
            (d, h)
        })
        .collect();
    let in_sync = health.iter().all(|(_, h)| *h == Health::Ok);
    match format {
        Format::Json => report::emit_json(&json!({
            "stack": target.stack,
            "in_sync": in_sync,
            "resources": health.iter().map(|(d, h)| {
                let mut v = json!({"kind": d.kind, "id": d.id, "state": h});
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
            for (d, h) in &health {
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
                out.push('\n');
            }
            out.push_str(if in_sync {
                "In sync.\n"
            } else {
                "Not in sync: `provision up` repairs it.\n"
            });
            report::emit_text(&out);
        }
    }
    Ok(if in_sync { exit::OK } else { exit::DRIFT })
}
