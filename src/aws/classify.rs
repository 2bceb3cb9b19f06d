//! How a refused request is retried by the SDK: quota errors never (they do not go
//! away), refusals for rate after as long as `Retry-After` says.

use std::time::Duration;

use aws_smithy_runtime_api::client::interceptors::context::InterceptorContext;
use aws_smithy_runtime_api::client::retries::classifiers::{
    ClassifyRetry, RetryAction, RetryClassifierPriority,
};

/// A quota error (`LimitExceededException` that is not about request rate) will not go
/// away by retrying: report it at once instead of backing off. The SDK's standard
/// classifier counts the code as throttling, and `RetryForbidden` overrides it.
#[derive(Debug)]
pub(super) struct QuotaIsFinal;

impl ClassifyRetry for QuotaIsFinal {
    fn classify_retry(&self, ctx: &InterceptorContext) -> RetryAction {
        let Some(response) = ctx.response() else {
            return RetryAction::NoActionIndicated;
        };
        if response.status().as_u16() < 400 {
            return RetryAction::NoActionIndicated;
        }
        let header = response
            .headers()
            .get("x-amzn-errortype")
            .unwrap_or_default()
            .to_string();
        let body = response
            .body()
            .bytes()
            .map(|b| String::from_utf8_lossy(b).into_owned())
            .unwrap_or_default();
        if is_quota_error(&header, &body) {
            RetryAction::RetryForbidden
        } else {
            RetryAction::NoActionIndicated
        }
    }

    fn name(&self) -> &'static str {
        "provision-quota-is-final"
    }
}

/// A refusal for rate that says when to come back (`Retry-After: SECONDS`, as API
/// Gateway sends with its 429s): the SDK's own retry waits that long (up to its
/// maximum backoff) instead of its usual short backoff. Longer waits, and the minutes
/// a scarce quota needs, are `quota`'s.
#[derive(Debug)]
pub(super) struct HonourRetryAfter;

impl ClassifyRetry for HonourRetryAfter {
    fn classify_retry(&self, ctx: &InterceptorContext) -> RetryAction {
        let Some(response) = ctx.response() else {
            return RetryAction::NoActionIndicated;
        };
        if response.status().as_u16() != 429 {
            return RetryAction::NoActionIndicated;
        }
        match response
            .headers()
            .get("retry-after")
            .and_then(|v| v.trim().parse::<u64>().ok())
        {
            Some(secs) => RetryAction::retryable_error_with_explicit_delay(
                aws_smithy_types::retry::ErrorKind::ThrottlingError,
                Duration::from_secs(secs),
            ),
            None => RetryAction::NoActionIndicated,
        }
    }

    fn name(&self) -> &'static str {
        "provision-honour-retry-after"
    }

    /// After the SDK's own classifiers, which call a 429 throttling without a delay.
    fn priority(&self) -> RetryClassifierPriority {
        RetryClassifierPriority::run_after(RetryClassifierPriority::transient_error_classifier())
    }
}

fn is_quota_error(error_type_header: &str, body: &str) -> bool {
    let limit = error_type_header.starts_with("LimitExceededException")
        || body.contains("LimitExceededException");
    limit && !body.to_ascii_lowercase().contains("rate")
}
