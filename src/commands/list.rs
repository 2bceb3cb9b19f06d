//! `list`: every stack of the region (see `fleet`).

use std::time::Instant;

use serde_json::json;

use crate::aws::{self, Aws};
use crate::cli::Format;
use crate::config::{self, Target};
use crate::errors::Result;
use crate::fleet::{self, Stack};
use crate::report;
use crate::store::Store;

/// The region and clients for a command over all stacks (no stack's state pins it).
pub(super) async fn connect(target: &Target) -> Result<(Aws, String)> {
    let region = aws::resolve_region(target.region.as_deref(), target.is_local()).await?;
    config::check_partition(&region, target.is_local())?;
    let mut aws = Aws::connect(&region, target.endpoint_url.as_deref()).await;
    // For S3 state: the bucket must be there (exit 2 naming it), in whichever region.
    let store = Store::open(&target.state, &region, &target.stack, &aws.s3);
    store.check().await?;
    if let Some(s3) = store.s3_client() {
        aws.s3 = s3;
    }
    Ok((aws, region))
}

pub async fn list(target: &Target, format: Format) -> Result<i32> {
    let started = Instant::now();
    let (aws, region) = connect(target).await?;
    let stacks = {
        let _activity = report::activity("looking for stacks");
        fleet::stacks(&aws, &region, &target.state).await?
    };
    match format {
        Format::Json => report::emit_json(&json!({
            "region": region,
            "stacks": stacks.iter().map(stack_json).collect::<Vec<_>>(),
            "api_calls": aws.calls.count(),
        })),
        Format::Human => report::emit_text(&format!(
            "{}{} stack(s) in {region} ({} AWS requests, {:.1} s)\n",
            table(&stacks),
            stacks.len(),
            aws.calls.count(),
            started.elapsed().as_secs_f64()
        )),
    }
    Ok(crate::errors::exit::OK)
}

pub(super) fn created(s: &Stack) -> Option<String> {
    s.created
        .map(|secs| report::utc_timestamp(secs.max(0) as u64))
}

fn stack_json(s: &Stack) -> serde_json::Value {
    json!({
        "stack": s.stack,
        "in_state": s.in_state,
        "tagged": s.tagged,
        "locked": s.locked,
        "created": created(s),
    })
}

fn table(stacks: &[Stack]) -> String {
    if stacks.is_empty() {
        return String::new();
    }
    let width = stacks
        .iter()
        .map(|s| s.stack.len())
        .max()
        .unwrap_or(5)
        .max(5);
    let mut out = format!(
        "{:width$}  {:8}  {:6}  {:6}  CREATED\n",
        "STACK", "IN STATE", "TAGGED", "LOCKED"
    );
    let yes = |b: bool| if b { "yes" } else { "no" };
    for s in stacks {
        out.push_str(&format!(
            "{:width$}  {:8}  {:<6}  {:6}  {}\n",
            s.stack,
            yes(s.in_state),
            s.tagged,
            yes(s.locked),
            created(s).unwrap_or_else(|| "unknown".into())
        ));
    }
    out
}
