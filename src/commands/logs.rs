//! `logs`: the handler's log events, oldest first, one line each; `--follow` keeps
//! polling for new ones until interrupted.

use std::collections::HashSet;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::json;

use super::{open, Open};
use crate::aws::{Aws, SdkResultExt};
use crate::cli::{Format, LogsArgs};
use crate::config::Target;
use crate::errors::{exit, Error, Result};
use crate::report;
use crate::resources::log_group;

/// How often `--follow` asks for new events.
const FOLLOW_EVERY: Duration = Duration::from_secs(2);

pub async fn logs(target: &Target, args: &LogsArgs, format: Format) -> Result<i32> {
    let since = humantime::parse_duration(&args.since).map_err(|e| {
        Error::usage(format!(
            "--since `{}`: {e}; write a duration such as 90s, 5m, 2h or 1d",
            args.since
        ))
    })?;
    if args.follow && format == Format::Json {
        return Err(Error::usage(
            "--follow prints lines as they come; -o json is for one answer: drop one of them",
        ));
    }
    let session = open(
        target,
        Open {
            lock: false,
            account: false,
        },
    )
    .await?;
    let aws = &session.aws;
    let group = log_group::name(&format!("{}-handler", target.stack));
    let now_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0);
    let mut start = now_ms - since.as_millis() as i64;
    let mut seen = HashSet::new();
    let events = fetch(aws, &group, start, &mut seen).await?;
    match format {
        Format::Json => {
            report::emit_json(&json!({
                "events": events.iter().map(|(t, m)| json!({"timestamp": rfc3339(*t), "message": m})).collect::<Vec<_>>(),
            }));
            return Ok(exit::OK);
        }
        Format::Human => print(&events),
    }
    if let Some((t, _)) = events.last() {
        start = start.max(*t);
    }
    if !args.follow {
        return Ok(exit::OK);
    }
    // Until Ctrl-C, which ends the process as usual.
    loop {
        tokio::time::sleep(FOLLOW_EVERY).await;
        let new = fetch(aws, &group, start, &mut seen).await?;
        print(&new);
        if let Some((t, _)) = new.last() {
            start = *t;
        }
    }
}

fn print(events: &[(i64, String)]) {
    if events.is_empty() {
        return;
    }
    let text: String = events
        .iter()
        .map(|(t, m)| format!("{} {m}\n", rfc3339(*t)))
        .collect();
    report::emit_text(&text);
}

fn rfc3339(ms: i64) -> String {
    let t = UNIX_EPOCH + Duration::from_millis(ms.max(0) as u64);
    humantime::format_rfc3339_millis(t).to_string()
}

/// Every event from `start` on that was not seen yet, oldest first.
async fn fetch(
    aws: &Aws,
    group: &str,
    start: i64,
    seen: &mut HashSet<String>,
) -> Result<Vec<(i64, String)>> {
    let mut events = Vec::new();
    let mut token: Option<String> = None;
    loop {
        let out = aws
            .logs
            .filter_log_events()
            .log_group_name(group)
            .start_time(start)
            .set_next_token(token.clone())
            .send()
            .await
            .sdk()
            .map_err(|e| {
                let missing = e.is_not_found();
                let mut err = e.fail(format!("reading log group {group}"), "FilterLogEvents");
                if let (true, Error::Aws(f)) = (missing, &mut err) {
                    f.hint = Some(
                        "the stack is not up in this region (run `provision up`), or --stack/--region name another"
                            .into(),
                    );
                }
                err
            })?;
        for e in out.events() {
            let id = e.event_id().unwrap_or_default().to_string();
            let key = if id.is_empty() {
                format!("{:?}{:?}", e.timestamp(), e.message())
            } else {
                id
            };
            if seen.insert(key) {
                events.push((
                    e.timestamp().unwrap_or_default(),
                    e.message().unwrap_or_default().trim_end().to_string(),
                ));
            }
        }
        token = out.next_token().map(str::to_string);
        if token.is_none() {
            break;
        }
    }
    events.sort_by_key(|(t, _)| *t);
    Ok(events)
}
