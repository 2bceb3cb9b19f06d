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
    FinalizerInterceptorContextRef,
};
use aws_smithy_runtime_api::client::interceptors::{Intercept, SharedInterceptor};
use aws_smithy_runtime_api::client::orchestrator::Metadata;
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;
use aws_smithy_types::config_bag::ConfigBag;
use aws_smithy_types::date_time::Format;
use aws_smithy_types::DateTime;
use aws_types::region::Region;

use crate::errors::{Error, Result};
use crate::report;

mod classify;
mod failure;
mod wire;

use classify::{HonourRetryAfter, QuotaIsFinal};
pub use failure::{SdkFailure, SdkResultExt};

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
        context: &BeforeTransmitInterceptorContextRef<'_>,
        _components: &RuntimeComponents,
        cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        let op = cfg
            .load::<Metadata>()
            .map(|m| m.name().to_string())
            .unwrap_or_else(|| "unknown".into());
        // Every attempt, retries too: a run that lost its lease sends no write at all.
        if fenced(self.service, &op, context.request().uri()) {
            if let Err(why) = crate::fence::check() {
                return Err(format!("{}: {why}", crate::fence::FENCED).into());
            }
        }
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

/// Whether a request is a write the fence guards (see `fence`), decided by its
/// operation's name: reads pass, as do the lock's own requests (its renewal is what
/// keeps the lease; its release only ever deletes our own lock, by ETag).
fn fenced(service: &str, op: &str, uri: &str) -> bool {
    const READS: [&str; 6] = ["Get", "List", "Describe", "Head", "Filter", "Lookup"];
    if READS.iter().any(|r| op.starts_with(r)) {
        return false;
    }
    let path = uri.split('?').next().unwrap_or(uri);
    !(service == "s3" && path.ends_with(".lock"))
}

/// S3's clock, as its last answer's `Date` header gave it: a lease lock's age is judged
/// by S3's time, never the local one (see `store::s3`).
static S3_DATE: Mutex<Option<String>> = Mutex::new(None);

pub fn last_s3_date() -> Option<DateTime> {
    S3_DATE
        .lock()
        .expect("s3 date")
        .as_deref()
        .and_then(|d| DateTime::from_str(d, Format::HttpDate).ok())
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

/// The clients of the services the stack (and its state on S3) uses.
#[derive(Clone, Debug)]
pub struct Aws {
    pub iam: aws_sdk_iam::Client,
    pub lambda: aws_sdk_lambda::Client,
    pub cognito: aws_sdk_cognitoidentityprovider::Client,
    pub apigw: aws_sdk_apigateway::Client,
    /// API Gateway v2: the HTTP API front door.
    pub apigw2: aws_sdk_apigatewayv2::Client,
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
    pub apigw2: aws_sdk_apigatewayv2::Client,
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
            crate::names::validate_region(&r)?;
            Ok(r)
        }
        None if local => Ok(crate::names::LOCAL_DEFAULT_REGION.to_string()),
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
        if let Some(client) = wire::client() {
            loader = loader.http_client(client);
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
            apigw2: client!(aws_sdk_apigatewayv2, "apigateway"),
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
                apigw2: client!(
                    aws_sdk_apigatewayv2,
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
