//! Waiting for the Lambda function to be ready: Active, and no update in progress.

use std::time::{Duration, Instant};

use super::Ctx;
use crate::aws::SdkResultExt;
use crate::errors::{Error, Result};
use crate::report;

/// How long to wait for the function to become Active or finish an update.
const READY_BUDGET: Duration = Duration::from_secs(300);

/// Waits until the function is Active and no update is in progress. Polls often at
/// first, then less. Right after a change the function is known not to be ready, so
/// the first look waits too.
pub async fn wait_ready(ctx: &Ctx<'_>) -> Result<()> {
    wait(ctx, false).await
}

/// `wait_ready` right after a create or update.
pub async fn wait_settled(ctx: &Ctx<'_>) -> Result<()> {
    wait(ctx, true).await
}

async fn wait(ctx: &Ctx<'_>, just_changed: bool) -> Result<()> {
    use aws_sdk_lambda::types::{LastUpdateStatus, State};
    let name = ctx.function_name();
    report::info(&format!("waiting for Lambda function {name} to be ready"));
    let started = Instant::now();
    // A change takes from half a second (MiniStack: 0.5 s) to several (AWS) to settle,
    // and everything else is usually done by then: look every 50 ms for the first
    // second, so a quick one is noticed within 50 ms, then back off to 5 s. (20 reads
    // a second, well within GetFunction's quota of 100 per second and account.)
    let mut delay = Duration::from_millis(50);
    if just_changed {
        crate::interrupt::sleep(delay).await?;
    }
    loop {
        let out = ctx
            .aws
            .lambda
            .get_function()
            .function_name(&name)
            .send()
            .await
            .sdk()
            .map_err(|e| e.fail(format!("waiting for Lambda function {name}"), "GetFunction"))?;
        let c = out.configuration();
        let state = c.and_then(|c| c.state());
        let update = c.and_then(|c| c.last_update_status());
        let reason = c
            .and_then(|c| c.state_reason().or(c.last_update_status_reason()))
            .unwrap_or("no reason given");
        if matches!(state, Some(State::Failed)) || matches!(update, Some(LastUpdateStatus::Failed))
        {
            return Err(waiter_error(
                &name,
                "to become ready",
                format!("it failed: {reason}"),
            ));
        }
        if matches!(state, None | Some(State::Active))
            && !matches!(update, Some(LastUpdateStatus::InProgress))
        {
            return Ok(());
        }
        if started.elapsed() + delay > READY_BUDGET {
            return Err(waiter_error(
                &name,
                "to become ready",
                "still not Active after 5 minutes",
            ));
        }
        crate::interrupt::sleep(delay).await?;
        if started.elapsed() >= Duration::from_secs(1) {
            delay = (delay * 2).min(Duration::from_secs(5));
        }
    }
}

fn waiter_error(name: &str, what: &str, e: impl std::fmt::Display) -> Error {
    Error::Aws(crate::errors::AwsFailure {
        doing: format!("waiting for Lambda function {name} {what}"),
        operation: "GetFunction",
        code: None,
        message: e.to_string(),
        hint: Some(
            "look at the function in the Lambda console; run `provision up` again to retry".into(),
        ),
    })
}
