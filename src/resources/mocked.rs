//! The mocked AWS of the resource unit tests (`aws-smithy-mocks`): a run's context over
//! clients whose answers are rules, and AWS's error and function shapes.

use std::time::Duration;

use aws_credential_types::Credentials;
use aws_sdk_lambda::operation::get_function::GetFunctionOutput;
use aws_sdk_lambda::types::{FunctionConfiguration, LastUpdateStatus, State};
use aws_smithy_mocks::{create_mock_http_client, MockResponseInterceptor, Rule, RuleMode};
use aws_smithy_runtime_api::client::interceptors::SharedInterceptor;

use super::Ctx;
use crate::aws::Aws;
use crate::config::{Arch, Desired, Scope};
use crate::package::{self, Package};
use crate::state::{Recorder, StateFile};

pub(super) struct Fixture {
    pub(super) aws: Aws,
    desired: Desired,
    pub(super) rec: Recorder,
    package: Package,
    _dir: tempfile::TempDir,
}

/// Mocked clients: `rules` per service (as the counter names them: "lambda", ...).
pub(super) async fn fixture(rules: Vec<(&'static str, Rule)>) -> Fixture {
    let sdk = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .region(aws_config::Region::new("us-east-1"))
        .credentials_provider(Credentials::new("AKIDTEST", "secret", None, None, "tests"))
        .http_client(create_mock_http_client())
        .retry_config(
            aws_config::retry::RetryConfig::standard()
                .with_max_attempts(3)
                .with_initial_backoff(Duration::from_millis(1)),
        )
        .load()
        .await;
    let extra = |service: &'static str| {
        let mut interceptor = MockResponseInterceptor::new().rule_mode(RuleMode::MatchAny);
        for (s, rule) in &rules {
            if *s == service {
                interceptor = interceptor.with_rule(rule);
            }
        }
        vec![SharedInterceptor::new(interceptor)]
    };
    let aws = Aws::from_sdk(&sdk, &extra);
    let dir = tempfile::tempdir().unwrap();
    Fixture {
        aws,
        desired: Desired {
            domain_prefix: None,
            scopes: vec![Scope::parse("users/read").unwrap()],
            handler: "bootstrap".into(),
            handler_given: true,
            memory_mb: 128,
            timeout_s: 10,
            architecture: Arch::X86_64,
            token_validity_min: 60,
            log_retention_days: 30,
            clients: crate::consumers::resolve_clients(
                &[],
                &[],
                &[Scope::parse("users/read").unwrap()],
            )
            .unwrap(),
            methods: crate::consumers::resolve_methods(
                None,
                &[Scope::parse("users/read").unwrap()],
            )
            .unwrap(),
            front: Default::default(),
        },
        rec: Recorder::new(
            crate::store::Sink::File(dir.path().join("s.json")),
            StateFile::new("s", "us-east-1", None),
        ),
        package: Package::new(
            Err("not inspected".into()),
            package::zip_bootstrap(b"binary"),
        ),
        _dir: dir,
    }
}

impl Fixture {
    /// A run's context; the function's log group is taken as made (these tests drive
    /// resource steps one by one, not the graph that makes it first).
    pub(super) fn ctx(&self) -> Ctx<'_> {
        let ctx = Ctx {
            aws: &self.aws,
            stack: "s",
            region: "us-east-1",
            account: "123456789012",
            partition: "aws",
            desired: &self.desired,
            domain_prefix: "s-prefix",
            package: Some(&self.package),
            rec: &self.rec,
            apply: true,
            show: false,
            concurrent: true,
            done: Default::default(),
            function: Default::default(),
            api_surface: Default::default(),
            log_group_made: Default::default(),
            reads: Default::default(),
            token_url: "https://s-prefix.auth.us-east-1.amazoncognito.com/oauth2/token".into(),
            artifacts: None,
        };
        ctx.log_group_made.set(true);
        ctx
    }
}

pub(super) fn json_error(code: &str, message: &str) -> Option<String> {
    Some(format!(r#"{{"__type":"{code}","message":"{message}"}}"#))
}

pub(super) fn function_state(
    state: State,
    update: Option<LastUpdateStatus>,
    memory: i32,
) -> GetFunctionOutput {
    GetFunctionOutput::builder()
        .configuration(
            FunctionConfiguration::builder()
                .function_arn("arn:aws:lambda:us-east-1:123456789012:function:s-handler")
                .state(state)
                .set_last_update_status(update)
                // The fixture's package: the code is unchanged.
                .code_sha256(
                    Package::new(Err(String::new()), package::zip_bootstrap(b"binary"))
                        .code_sha256(),
                )
                .memory_size(memory)
                .timeout(10)
                .runtime(aws_sdk_lambda::types::Runtime::from("provided.al2023"))
                .handler("bootstrap")
                .role("arn:aws:iam::123456789012:role/s-handler")
                .architectures(aws_sdk_lambda::types::Architecture::X8664)
                .build(),
        )
        .tags("provision:stack", "s")
        .build()
}
