//! The SDK layer: one configuration (region, endpoint, retries, timeouts), one client per
//! service, and a counter of every request sent (retries included), by operation.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_config::{BehaviorVersion, SdkConfig};
use aws_smithy_runtime_api::box_error::BoxError;
use aws_smithy_runtime_api::client::interceptors::context::{
    BeforeDeserializationInterceptorContextRef, BeforeTransmitInterceptorContextRef,
    FinalizerInterceptorContextRef, InterceptorContext,
};
use aws_smithy_runtime_api::client::interceptors::{Intercept, SharedInterceptor};
use aws_smithy_runtime_api::client::orchestrator::{HttpResponse, Metadata};
use aws_smithy_runtime_api::client::result::SdkError;
use aws_smithy_runtime_api::client::retries::classifiers::{
    ClassifyRetry, RetryAction, RetryClassifierPriority,
};
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;
use aws_smithy_types::config_bag::ConfigBag;
use aws_smithy_types::error::metadata::ProvideErrorMetadata;
use aws_types::region::Region;

use crate::errors::{AwsFailure, Error, Result};
use crate::report;

/// Counts the requests sent to AWS, by `service:Operation`. Shared by all clients.
#[derive(Debug, Clone, Default)]
pub struct CallLog {
    inner: Arc<CallLogInner>,
}

#[derive(Debug, Default)]
struct CallLogInner {
    count: AtomicUsize,
    ops: Mutex<Vec<String>>,
    trace: Mutex<Trace>,
}

/// When each request went out and came back, and which graph node sent it, with the
/// graph that ran: what the benchmark needs to find the longest chain of requests
/// that had to wait for one another (PROVISION_TRACE).
#[derive(Debug, Default)]
struct Trace {
    requests: Vec<Traced>,
    /// Each node's label and parents (indices), as `graph::run` ran them.
    graph: Vec<(String, Vec<usize>)>,
}

#[derive(Debug)]
struct Traced {
    op: String,
    node: Option<usize>,
    start: Duration,
    end: Option<Duration>,
}

tokio::task_local! {
    /// The graph node whose step is running (see `in_node`).
    static NODE: usize;
}

/// Runs `step` as the work of graph node `node`: its requests are traced as that node's.
pub async fn in_node<T>(node: usize, step: impl std::future::Future<Output = T>) -> T {
    NODE.scope(node, step).await
}

/// Time since the process started (see `main`): the trace's clock.
pub fn since_start() -> Duration {
    static START: std::sync::OnceLock<std::time::Instant> = std::sync::OnceLock::new();
    START.get_or_init(std::time::Instant::now).elapsed()
}

/// The trace index of an attempt, kept in its config bag from send to answer.
#[derive(Debug, Clone)]
struct Attempt(usize);

impl aws_smithy_types::config_bag::Storable for Attempt {
    type Storer = aws_smithy_types::config_bag::StoreReplace<Self>;
}

static CALLS: std::sync::OnceLock<CallLog> = std::sync::OnceLock::new();

impl CallLog {
    /// The process's log: one command per process, so its count is the command's.
    pub fn global() -> &'static CallLog {
        CALLS.get_or_init(CallLog::default)
    }

    pub fn count(&self) -> usize {
        self.inner.count.load(Ordering::Relaxed)
    }
    /// Every request sent, as `service:Operation`, in order.
    pub fn operations(&self) -> Vec<String> {
        self.inner.ops.lock().expect("call log").clone()
    }
    fn record(&self, op: String) -> usize {
        self.inner.count.fetch_add(1, Ordering::Relaxed);
        report::trace(&format!("aws request {op}"));
        self.inner.ops.lock().expect("call log").push(op.clone());
        let mut trace = self.inner.trace.lock().expect("trace");
        trace.requests.push(Traced {
            op,
            node: NODE.try_with(|n| *n).ok(),
            start: since_start(),
            end: None,
        });
        trace.requests.len() - 1
    }

    fn answered(&self, attempt: usize) {
        if let Some(r) = self
            .inner
            .trace
            .lock()
            .expect("trace")
            .requests
            .get_mut(attempt)
        {
            r.end = Some(since_start());
        }
    }

    /// The graph the command runs: node labels and their parents.
    pub fn set_graph(&self, nodes: Vec<(String, Vec<usize>)>) {
        self.inner.trace.lock().expect("trace").graph = nodes;
    }

    /// `{"graph": [{"node", "parents"}], "requests": [{"op", "node", "start_ms", "end_ms"}]}`;
    /// `node` is an index into `graph`, null for requests outside it (the account check,
    /// state on S3).
    pub fn trace_json(&self) -> serde_json::Value {
        let trace = self.inner.trace.lock().expect("trace");
        let ms = |d: Duration| d.as_secs_f64() * 1000.0;
        serde_json::json!({
            "graph": trace.graph.iter().map(|(label, parents)| {
                serde_json::json!({"node": label, "parents": parents})
            }).collect::<Vec<_>>(),
            "requests": trace.requests.iter().map(|r| serde_json::json!({
                "op": r.op,
                "node": r.node,
                "start_ms": ms(r.start),
                "end_ms": r.end.map(ms),
            })).collect::<Vec<_>>(),
        })
    }
}

/// Sees each attempt just before it goes on the wire, so retries count too.
#[derive(Debug)]
struct Counter {
    service: &'static str,
    log: CallLog,
}

impl Intercept for Counter {
    fn name(&self) -> &'static str {
        "provision-call-counter"
    }

    fn read_before_transmit(
        &self,
        _context: &BeforeTransmitInterceptorContextRef<'_>,
        _components: &RuntimeComponents,
        cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        let op = cfg
            .load::<Metadata>()
            .map(|m| m.name().to_string())
            .unwrap_or_else(|| "unknown".into());
        let attempt = self.log.record(format!("{}:{op}", self.service));
        cfg.interceptor_state().store_put(Attempt(attempt));
        Ok(())
    }

    fn read_after_attempt(
        &self,
        _context: &FinalizerInterceptorContextRef<'_>,
        _components: &RuntimeComponents,
        cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        if let Some(Attempt(i)) = cfg.load::<Attempt>() {
            self.log.answered(*i);
        }
        Ok(())
    }
}

/// S3's clock, as its last answer's `Date` header gave it: a lease lock's age is judged
/// by S3's time, never the local one (see `store::s3`).
static S3_DATE: Mutex<Option<String>> = Mutex::new(None);

pub fn last_s3_date() -> Option<aws_smithy_types::DateTime> {
    S3_DATE
        .lock()
        .expect("s3 date")
        .as_deref()
        .and_then(crate::store::s3::http_date)
}

#[derive(Debug)]
struct S3Clock;

impl Intercept for S3Clock {
    fn name(&self) -> &'static str {
        "provision-s3-clock"
    }

    fn read_after_transmit(
        &self,
        context: &BeforeDeserializationInterceptorContextRef<'_>,
        _components: &RuntimeComponents,
        _cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        if let Some(date) = context.response().headers().get("date") {
            *S3_DATE.lock().expect("s3 date") = Some(date.to_string());
        }
        Ok(())
    }
}

/// A quota error (`LimitExceededException` that is not about request rate) will not go
/// away by retrying: report it at once instead of backing off. The SDK's standard
/// classifier counts the code as throttling, and `RetryForbidden` overrides it.
#[derive(Debug)]
struct QuotaIsFinal;

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
struct HonourRetryAfter;

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

pub fn is_quota_error(error_type_header: &str, body: &str) -> bool {
    let limit = error_type_header.starts_with("LimitExceededException")
        || body.contains("LimitExceededException");
    limit && !body.to_ascii_lowercase().contains("rate")
}

/// The clients of the services the stack (and its state on S3) uses.
#[derive(Clone, Debug)]
pub struct Aws {
    pub iam: aws_sdk_iam::Client,
    pub lambda: aws_sdk_lambda::Client,
    pub cognito: aws_sdk_cognitoidentityprovider::Client,
    pub apigw: aws_sdk_apigateway::Client,
    pub secrets: aws_sdk_secretsmanager::Client,
    pub logs: aws_sdk_cloudwatchlogs::Client,
    /// For state on S3 (never for the stack's resources).
    pub s3: aws_sdk_s3::Client,
    pub sts: aws_sdk_sts::Client,
    /// The same services without the SDK's own retries: for creates, which must not be
    /// re-sent blindly when an answer is lost (see `resources::create_once`).
    pub once: Once,
    pub calls: CallLog,
}

/// Clients that send each request exactly once.
#[derive(Clone, Debug)]
pub struct Once {
    pub iam: aws_sdk_iam::Client,
    pub lambda: aws_sdk_lambda::Client,
    pub cognito: aws_sdk_cognitoidentityprovider::Client,
    pub apigw: aws_sdk_apigateway::Client,
    pub secrets: aws_sdk_secretsmanager::Client,
    pub logs: aws_sdk_cloudwatchlogs::Client,
}

/// Resolves the region: the one given, else the SDK's chain (env, profile), else
/// us-east-1 when an endpoint URL is set.
pub async fn resolve_region(given: Option<&str>, local: bool) -> Result<String> {
    if let Some(r) = given {
        return Ok(r.to_string());
    }
    let chain = aws_config::meta::region::RegionProviderChain::default_provider();
    match chain.region().await {
        Some(r) => {
            let r = r.to_string();
            crate::config::validate_region(&r)?;
            Ok(r)
        }
        None if local => Ok(crate::config::LOCAL_DEFAULT_REGION.to_string()),
        None => Err(Error::usage(
            "region: none configured; pass --region, set AWS_REGION, or set it in the profile or provision.toml",
        )),
    }
}

impl Aws {
    pub async fn connect(region: &str, endpoint_url: Option<&str>) -> Aws {
        let mut loader = aws_config::defaults(BehaviorVersion::latest())
            .region(Region::new(region.to_string()))
            .retry_config(
                RetryConfig::standard()
                    .with_max_attempts(6)
                    .with_initial_backoff(Duration::from_millis(200))
                    .with_max_backoff(Duration::from_secs(10)),
            )
            .timeout_config(
                TimeoutConfig::builder()
                    .connect_timeout(Duration::from_secs(5))
                    .operation_attempt_timeout(Duration::from_secs(60))
                    .build(),
            );
        if let Some(url) = endpoint_url {
            loader = loader.endpoint_url(url);
        }
        let sdk = loader.load().await;
        Aws::from_sdk(&sdk, &|_| Vec::new())
    }

    /// Clients from one SDK configuration, each with the request counter, the quota
    /// classifier and any `extra` interceptors for its service (tests add mocks here).
    pub fn from_sdk(
        sdk: &SdkConfig,
        extra: &dyn Fn(&'static str) -> Vec<SharedInterceptor>,
    ) -> Aws {
        let calls = CallLog::global().clone();
        macro_rules! client {
            ($krate:ident, $service:literal) => {
                client!($krate, $service, sdk.retry_config().cloned())
            };
            ($krate:ident, $service:literal, $retry:expr) => {{
                let mut builder = $krate::config::Builder::from(sdk)
                    .retry_classifier(HonourRetryAfter)
                    .retry_classifier(QuotaIsFinal)
                    .interceptor(Counter {
                        service: $service,
                        log: calls.clone(),
                    });
                builder.set_retry_config($retry);
                for interceptor in extra($service) {
                    builder.push_interceptor(interceptor);
                }
                $krate::Client::from_conf(builder.build())
            }};
        }
        Aws {
            iam: client!(aws_sdk_iam, "iam"),
            lambda: client!(aws_sdk_lambda, "lambda"),
            cognito: client!(aws_sdk_cognitoidentityprovider, "cognito-idp"),
            apigw: client!(aws_sdk_apigateway, "apigateway"),
            secrets: client!(aws_sdk_secretsmanager, "secretsmanager"),
            logs: client!(aws_sdk_cloudwatchlogs, "logs"),
            s3: {
                // An emulator answers on one host: bucket in the path, not the host name.
                let mut builder = aws_sdk_s3::config::Builder::from(sdk)
                    .force_path_style(sdk.endpoint_url().is_some())
                    .interceptor(Counter {
                        service: "s3",
                        log: calls.clone(),
                    })
                    .interceptor(S3Clock);
                for interceptor in extra("s3") {
                    builder.push_interceptor(interceptor);
                }
                aws_sdk_s3::Client::from_conf(builder.build())
            },
            sts: client!(aws_sdk_sts, "sts"),
            once: Once {
                iam: client!(aws_sdk_iam, "iam", Some(RetryConfig::disabled())),
                lambda: client!(aws_sdk_lambda, "lambda", Some(RetryConfig::disabled())),
                cognito: client!(
                    aws_sdk_cognitoidentityprovider,
                    "cognito-idp",
                    Some(RetryConfig::disabled())
                ),
                apigw: client!(
                    aws_sdk_apigateway,
                    "apigateway",
                    Some(RetryConfig::disabled())
                ),
                secrets: client!(
                    aws_sdk_secretsmanager,
                    "secretsmanager",
                    Some(RetryConfig::disabled())
                ),
                logs: client!(
                    aws_sdk_cloudwatchlogs,
                    "logs",
                    Some(RetryConfig::disabled())
                ),
            },
            calls,
        }
    }

    /// The account the credentials belong to.
    pub async fn account(&self) -> Result<String> {
        let out = self
            .sts
            .get_caller_identity()
            .send()
            .await
            .sdk()
            .map_err(|e| e.fail("checking the AWS credentials", "GetCallerIdentity"))?;
        out.account()
            .map(str::to_string)
            .ok_or_else(|| Error::Http("STS GetCallerIdentity returned no account".into()))
    }
}

/// The ARN partition of a region.
pub fn partition(region: &str) -> &'static str {
    if region.starts_with("cn-") {
        "aws-cn"
    } else if region.starts_with("us-gov-") {
        "aws-us-gov"
    } else {
        "aws"
    }
}

/// An SDK error reduced to what we decide on and report.
#[derive(Debug, Clone)]
pub struct SdkFailure {
    pub code: Option<String>,
    pub message: String,
    /// The HTTP status of AWS's answer, when there was one.
    pub status: Option<u16>,
    /// AWS may have carried the request out: a 5xx answer, a timeout, a connection that
    /// broke. A create in doubt must be looked up before it is sent again.
    pub in_doubt: bool,
    /// The request never got an answer (connection refused, timeout, no credentials...).
    pub transport: bool,
    pub credentials: bool,
    /// How long AWS asked us to wait before sending again (`Retry-After`, in seconds).
    pub retry_after: Option<Duration>,
}

/// Not AWS's answer: the run was interrupted while waiting to send (see `quota`).
const INTERRUPTED: &str = "provision:Interrupted";

impl SdkFailure {
    pub fn interrupted() -> SdkFailure {
        SdkFailure {
            code: Some(INTERRUPTED.into()),
            message: "interrupted before it was sent".into(),
            status: None,
            in_doubt: false,
            transport: false,
            credentials: false,
            retry_after: None,
        }
    }

    pub fn is(&self, code: &str) -> bool {
        self.code.as_deref() == Some(code)
    }

    /// Refused for rate before anything was done: safe to send again after a pause.
    pub fn throttled(&self) -> bool {
        if self.is("LimitExceededException") {
            // A quota, unless it speaks of rate (see `is_quota_error`).
            return self.message.to_ascii_lowercase().contains("rate");
        }
        self.status == Some(429)
            || matches!(
                self.code.as_deref(),
                Some(
                    "Throttling"
                        | "ThrottlingException"
                        | "TooManyRequestsException"
                        | "RequestLimitExceeded"
                        | "ThrottledException"
                )
            )
    }

    /// The resource to be created is there already (perhaps made by our own earlier
    /// attempt whose answer was lost).
    pub fn already_exists(&self) -> bool {
        matches!(
            self.code.as_deref(),
            Some("EntityAlreadyExists" | "ResourceConflictException" | "ConflictException")
        ) || self.message.to_ascii_lowercase().contains("already exist")
    }

    pub fn access_denied(&self) -> bool {
        matches!(
            self.code.as_deref(),
            Some("AccessDenied" | "AccessDeniedException" | "UnauthorizedOperation")
        )
    }

    pub fn is_not_found(&self) -> bool {
        matches!(
            self.code.as_deref(),
            Some("NoSuchEntity" | "ResourceNotFoundException" | "NotFoundException")
        )
    }

    /// Converts into the user-facing error, naming what we were doing.
    pub fn fail(self, doing: impl Into<String>, operation: &'static str) -> Error {
        if self.is(INTERRUPTED) {
            return Error::Interrupted;
        }
        let hint = if self.credentials {
            Some("configure AWS credentials (environment, profile, SSO or role); for a local emulator any key works, e.g. AWS_ACCESS_KEY_ID=test AWS_SECRET_ACCESS_KEY=test".to_string())
        } else if self.transport {
            Some("check the network and --endpoint-url (is the emulator running?)".to_string())
        } else {
            match self.code.as_deref() {
                Some("AccessDenied" | "AccessDeniedException" | "UnauthorizedOperation") => Some(
                    "the caller lacks a permission: see docs/iam-policy.json for the policy provision needs".into(),
                ),
                Some(
                    "UnrecognizedClientException"
                    | "InvalidClientTokenId"
                    | "ExpiredToken"
                    | "ExpiredTokenException"
                    | "SignatureDoesNotMatch",
                ) => Some("the credentials were rejected: refresh or fix them".into()),
                Some("LimitExceededException") => Some(
                    "an AWS quota is reached: delete unused resources or ask AWS for a higher limit".into(),
                ),
                _ => None,
            }
        };
        let failure = AwsFailure {
            doing: doing.into(),
            operation,
            code: self.code,
            message: self.message,
            hint,
        };
        if self.credentials {
            // Missing credentials are a set-up problem of the user's, like bad input.
            Error::Usage(failure.to_string())
        } else {
            Error::Aws(failure)
        }
    }
}

/// An error and its causes on one line, without the debug dump.
fn causes(err: &(dyn std::error::Error + 'static)) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut next = Some(err);
    while let Some(e) = next {
        let text = e.to_string();
        if !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
        next = e.source();
    }
    parts.join(": ")
}

/// `.sdk()` on any SDK call's result.
pub trait SdkResultExt<T> {
    fn sdk(self) -> std::result::Result<T, SdkFailure>;
}

impl<T, E> SdkResultExt<T> for std::result::Result<T, SdkError<E, HttpResponse>>
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    fn sdk(self) -> std::result::Result<T, SdkFailure> {
        self.map_err(|err| {
            let chain = causes(&err);
            let credentials = chain.contains("credentials")
                && matches!(
                    err,
                    SdkError::DispatchFailure(_) | SdkError::ConstructionFailure(_)
                );
            match &err {
                SdkError::ServiceError(se) => {
                    let e = se.err();
                    let status = se.raw().status().as_u16();
                    SdkFailure {
                        code: e.code().map(str::to_string),
                        message: e
                            .message()
                            .map(str::to_string)
                            .unwrap_or_else(|| format!("HTTP {status}")),
                        status: Some(status),
                        in_doubt: status >= 500,
                        transport: false,
                        credentials: false,
                        retry_after: se
                            .raw()
                            .headers()
                            .get("retry-after")
                            .and_then(|v| v.trim().parse::<u64>().ok())
                            .map(Duration::from_secs),
                    }
                }
                _ if credentials => SdkFailure {
                    code: None,
                    message: "no AWS credentials found (looked in the environment, the profile files, web identity, the container and instance metadata)".into(),
                    status: None,
                    in_doubt: false,
                    transport: false,
                    credentials,
                    retry_after: None,
                },
                // The request may have reached AWS before the connection failed.
                SdkError::DispatchFailure(_) | SdkError::TimeoutError(_) => SdkFailure {
                    code: None,
                    message: chain,
                    status: None,
                    in_doubt: true,
                    transport: true,
                    credentials,
                    retry_after: None,
                },
                SdkError::ResponseError(r) => SdkFailure {
                    code: None,
                    message: chain.clone(),
                    status: Some(r.raw().status().as_u16()),
                    in_doubt: true,
                    transport: false,
                    credentials,
                    retry_after: None,
                },
                _ => SdkFailure {
                    code: None,
                    message: chain,
                    status: None,
                    in_doubt: false,
                    transport: false,
                    credentials,
                    retry_after: None,
                },
            }
        })
    }
}
