//! Unit tests, with `aws-smithy-mocks` and AWS's real error shapes, of what AWS does and
//! the emulator does not: IAM propagation delays, functions settling, a domain prefix
//! owned by someone else, API Gateway conflicts and throttling, quotas, and lost answers.

use std::time::Duration;

use aws_sdk_apigateway::operation::create_deployment::CreateDeploymentOutput;
use aws_sdk_apigateway::operation::get_rest_apis::GetRestApisOutput;
use aws_sdk_cognitoidentityprovider::operation::describe_user_pool_domain::DescribeUserPoolDomainOutput;
use aws_sdk_cognitoidentityprovider::types::DomainDescriptionType;
use aws_sdk_lambda::operation::add_permission::AddPermissionOutput;
use aws_sdk_lambda::operation::create_function::CreateFunctionOutput;
use aws_sdk_lambda::operation::get_policy::GetPolicyOutput;
use aws_sdk_lambda::operation::update_function_configuration::UpdateFunctionConfigurationOutput;
use aws_sdk_lambda::types::{LastUpdateStatus, State};
use aws_smithy_mocks::mock;

use super::mocked::{fixture, function_state, json_error};
use super::{domain, function, permission, rest_api, stage, Handle};
use crate::report::Action;

fn role() -> super::role::Role {
    super::role::Role {
        handle: Handle::new(
            "s-handler",
            "arn:aws:iam::123456789012:role/s-handler",
            true,
        ),
        pending: Vec::new(),
    }
}

#[tokio::test]
async fn create_function_retries_while_the_new_role_cannot_be_assumed_then_waits_for_active() {
    let get = mock!(aws_sdk_lambda::Client::get_function)
        .sequence()
        .http_status(
            404,
            json_error("ResourceNotFoundException", "Function not found"),
        )
        .output(|| function_state(State::Pending, None, 128))
        .output(|| function_state(State::Active, None, 128))
        .build();
    let create = mock!(aws_sdk_lambda::Client::create_function)
        .sequence()
        .http_status(
            400,
            json_error(
                "InvalidParameterValueException",
                "The role defined for the function cannot be assumed by Lambda.",
            ),
        )
        .times(3)
        .output(|| {
            CreateFunctionOutput::builder()
                .function_arn("arn:aws:lambda:us-east-1:123456789012:function:s-handler")
                .state(State::Pending)
                .build()
        })
        .build();
    let f = fixture(vec![("lambda", get.clone()), ("lambda", create.clone())]).await;
    let ctx = f.ctx();
    let function = function::ensure(&ctx, async { Ok(role()) })
        .await
        .expect("created after retries");
    assert!(function.settling);
    function::wait_settled(&ctx).await.expect("becomes Active");
    let handle = function.handle;
    assert_eq!(create.num_calls(), 4, "3 refusals, then success");
    assert_eq!(get.num_calls(), 3, "not found, Pending, Active");
    assert!(handle.arn.ends_with(":function:s-handler"));
    assert!(handle.fresh);
    let done = ctx.done.lock().unwrap();
    assert_eq!(done[0].action, Action::Created);
}

#[tokio::test]
async fn other_create_function_errors_are_not_retried() {
    let get = mock!(aws_sdk_lambda::Client::get_function).then_http_response(|| {
        aws_smithy_runtime_api::http::Response::new(
            404.try_into().unwrap(),
            aws_smithy_types::body::SdkBody::from(
                json_error("ResourceNotFoundException", "nope").unwrap(),
            ),
        )
    });
    let create = mock!(aws_sdk_lambda::Client::create_function)
        .sequence()
        .http_status(
            400,
            json_error(
                "InvalidParameterValueException",
                "Unzipped size must be smaller than 262144000 bytes",
            ),
        )
        .build();
    let f = fixture(vec![("lambda", get), ("lambda", create.clone())]).await;
    let err = function::ensure(&f.ctx(), async { Ok(role()) })
        .await
        .expect_err("fails");
    assert_eq!(create.num_calls(), 1);
    assert!(
        err.to_string()
            .contains("creating Lambda function s-handler"),
        "{err}"
    );
    assert!(err.to_string().contains("Unzipped size"), "{err}");
}

#[tokio::test]
async fn an_update_waits_until_last_update_status_is_successful() {
    let get = mock!(aws_sdk_lambda::Client::get_function)
        .sequence()
        .output(|| function_state(State::Active, Some(LastUpdateStatus::Successful), 256))
        .output(|| function_state(State::Active, Some(LastUpdateStatus::InProgress), 128))
        .output(|| function_state(State::Active, Some(LastUpdateStatus::Successful), 128))
        .build();
    let update = mock!(aws_sdk_lambda::Client::update_function_configuration)
        .then_output(|| UpdateFunctionConfigurationOutput::builder().build());
    let f = fixture(vec![("lambda", get.clone()), ("lambda", update.clone())]).await;
    let mut existing = role();
    existing.handle.fresh = false;
    let ctx = f.ctx();
    let function = function::ensure(&ctx, async { Ok(existing) })
        .await
        .expect("updated");
    assert!(function.settling);
    function::wait_settled(&ctx).await.expect("update finishes");
    assert_eq!(update.num_calls(), 1);
    assert_eq!(get.num_calls(), 3, "read, InProgress, Successful");
    let done = ctx.done.lock().unwrap();
    assert_eq!(done[0].action, Action::Adopted, "not in the state file");
    assert_eq!(done[0].changes, ["memory_mb"]);
}

#[tokio::test]
async fn a_domain_prefix_owned_by_another_pool_stops_before_anything_with_advice() {
    let describe = mock!(aws_sdk_cognitoidentityprovider::Client::describe_user_pool_domain)
        .then_output(|| {
            DescribeUserPoolDomainOutput::builder()
                .domain_description(
                    DomainDescriptionType::builder()
                        .user_pool_id("us-east-1_SomeoneElse")
                        .aws_account_id("999999999999")
                        .domain("s-prefix")
                        .build(),
                )
                .build()
        });
    let describe_pool = mock!(aws_sdk_cognitoidentityprovider::Client::describe_user_pool)
        .then_http_response(|| {
            aws_smithy_runtime_api::http::Response::new(
                400.try_into().unwrap(),
                aws_smithy_types::body::SdkBody::from(
                    json_error("ResourceNotFoundException", "User pool does not exist").unwrap(),
                ),
            )
        });
    let f = fixture(vec![
        ("cognito-idp", describe),
        ("cognito-idp", describe_pool),
    ])
    .await;
    let err = domain::preflight(&f.ctx(), None)
        .await
        .expect_err("refused");
    assert_eq!(err.exit_code(), 2);
    let text = err.to_string();
    assert!(
        text.contains("s-prefix") && text.contains("--domain-prefix"),
        "{text}"
    );
}

#[tokio::test]
async fn create_domain_taken_by_another_account_suggests_another_prefix() {
    let create = mock!(aws_sdk_cognitoidentityprovider::Client::create_user_pool_domain)
        .sequence()
        .http_status(
            400,
            json_error(
                "InvalidParameterException",
                "Domain already associated with another user pool.",
            ),
        )
        .build();
    let describe = mock!(aws_sdk_cognitoidentityprovider::Client::describe_user_pool_domain)
        .then_output(|| {
            DescribeUserPoolDomainOutput::builder()
                .domain_description(
                    DomainDescriptionType::builder()
                        .user_pool_id("us-east-1_Other")
                        .build(),
                )
                .build()
        });
    let f = fixture(vec![("cognito-idp", create), ("cognito-idp", describe)]).await;
    let pool = Handle::new("us-east-1_Mine", "arn:pool", true);
    let err = domain::ensure(&f.ctx(), &pool, None)
        .await
        .expect_err("refused");
    assert!(err.to_string().contains("--domain-prefix"), "{err}");
    assert!(err.to_string().contains("us-east-1_Other"), "{err}");
}

#[tokio::test]
async fn create_deployment_conflicts_and_throttling_are_retried() {
    let deploy = mock!(aws_sdk_apigateway::Client::create_deployment)
        .sequence()
        .http_status(
            409,
            json_error("ConflictException", "Another deployment is in progress"),
        )
        .http_status(
            429,
            json_error("TooManyRequestsException", "Too Many Requests"),
        )
        .http_status(
            409,
            json_error("ConflictException", "Another deployment is in progress"),
        )
        .output(|| CreateDeploymentOutput::builder().id("d1").build())
        .build();
    let f = fixture(vec![("apigateway", deploy.clone())]).await;
    let api = Handle::new("api1", "api1", true);
    let ctx = f.ctx();
    stage::ensure(&ctx, &api, "hash").await.expect("deployed");
    assert_eq!(deploy.num_calls(), 4);
    assert_eq!(ctx.done.lock().unwrap()[0].action, Action::Created);
}

// Paused time: the wait is measured on tokio's clock, which jumps ahead instead of
// sleeping, so this checks how long it waited, not how fast the machine is.
#[tokio::test(start_paused = true)]
async fn a_429_with_retry_after_is_retried_after_as_long_as_it_says() {
    use aws_smithy_runtime_api::http::{Response, StatusCode};
    use aws_smithy_types::body::SdkBody;
    let list = mock!(aws_sdk_apigateway::Client::get_rest_apis)
        .sequence()
        .http_response(|| {
            let mut r = Response::new(
                StatusCode::try_from(429).unwrap(),
                SdkBody::from(r#"{"message":"Too Many Requests"}"#),
            );
            r.headers_mut()
                .insert("x-amzn-ErrorType", "TooManyRequestsException");
            r.headers_mut().insert("Retry-After", "1");
            r
        })
        .output(|| GetRestApisOutput::builder().build())
        .build();
    let f = fixture(vec![("apigateway", list.clone())]).await;
    let started = tokio::time::Instant::now();
    let found = rest_api::find_all(&f.ctx()).await.expect("retried");
    assert!(found.is_empty());
    assert_eq!(list.num_calls(), 2);
    // The fixture's own backoff is 1 ms: only Retry-After makes it wait a second.
    assert!(
        started.elapsed() >= Duration::from_secs(1),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn a_quota_error_is_reported_at_once_not_retried() {
    let list = mock!(aws_sdk_apigateway::Client::get_rest_apis)
        .then_output(|| GetRestApisOutput::builder().build());
    let create = mock!(aws_sdk_apigateway::Client::create_rest_api)
        .sequence()
        .http_status(
            429,
            json_error(
                "LimitExceededException",
                "Maximum number of REST APIs reached for this account",
            ),
        )
        .times(5)
        .build();
    let f = fixture(vec![("apigateway", list), ("apigateway", create.clone())]).await;
    let err = rest_api::ensure(&f.ctx()).await.expect_err("fails");
    assert_eq!(create.num_calls(), 1, "a quota is not retried");
    let text = err.to_string();
    assert!(
        text.contains("creating REST API s-api") && text.contains("LimitExceededException"),
        "{text}"
    );
    assert!(text.contains("quota"), "{text}");

    // The create above goes through a client whose retries are off, so it cannot tell
    // whether `QuotaIsFinal` works: the same answer on a read the SDK retries (3
    // attempts in this fixture) must be sent once too.
    let list = mock!(aws_sdk_apigateway::Client::get_rest_apis)
        .sequence()
        .http_status(
            429,
            json_error(
                "LimitExceededException",
                "Maximum number of REST APIs reached for this account",
            ),
        )
        .times(5)
        .build();
    let f = fixture(vec![("apigateway", list.clone())]).await;
    let err = rest_api::find_all(&f.ctx()).await.expect_err("fails");
    assert_eq!(list.num_calls(), 1, "a quota is not retried: {err}");
}

#[tokio::test]
async fn add_permission_conflict_on_our_own_statement_counts_as_done() {
    let ours = r#"{"Version":"2012-10-17","Statement":[{"Sid":"provision-apigateway-invoke","Effect":"Allow","Principal":{"Service":"apigateway.amazonaws.com"},"Action":"lambda:InvokeFunction","Resource":"arn:fn","Condition":{"ArnLike":{"AWS:SourceArn":"arn:aws:execute-api:us-east-1:123456789012:api1/*"}}}]}"#;
    let not_found = || {
        json_error(
            "ResourceNotFoundException",
            "The resource you requested does not exist.",
        )
    };
    // The run's read finds no policy; after "already exists" the lookup finds our
    // statement; the second run's read finds none again.
    let get_policy = mock!(aws_sdk_lambda::Client::get_policy)
        .sequence()
        .http_status(404, not_found())
        .output(move || GetPolicyOutput::builder().policy(ours).build())
        .http_status(404, not_found())
        .build();
    let add = mock!(aws_sdk_lambda::Client::add_permission)
        .sequence()
        .http_status(
            409,
            json_error(
                "ResourceConflictException",
                "The statement id (provision-apigateway-invoke) provided already exists. Please provide a new statement id, or remove the existing statement.",
            ),
        )
        .http_status(409, json_error("ResourceConflictException", "The operation cannot be performed at this time. The function is currently in the following state: Pending"))
        .output(|| AddPermissionOutput::builder().build())
        .build();
    let f = fixture(vec![("lambda", get_policy), ("lambda", add.clone())]).await;
    let function = Handle::new("s-handler", "arn:fn", false);
    let api = Handle::new("api1", "api1", false);
    let ctx = f.ctx();
    permission::ensure(&ctx, &function, &api)
        .await
        .expect("our statement exists: done");
    assert_eq!(add.num_calls(), 1);
    // A busy function is not "done": the same code, but the statement is sent again.
    permission::ensure(&ctx, &function, &api)
        .await
        .expect("sent again once the function is no longer busy");
    assert_eq!(add.num_calls(), 3);
}

#[tokio::test]
async fn a_new_domain_is_waited_for_until_active() {
    use aws_sdk_cognitoidentityprovider::operation::create_user_pool_domain::CreateUserPoolDomainOutput;
    use aws_sdk_cognitoidentityprovider::types::DomainStatusType;
    let create = mock!(aws_sdk_cognitoidentityprovider::Client::create_user_pool_domain)
        .then_output(|| CreateUserPoolDomainOutput::builder().build());
    let status = |s: DomainStatusType| {
        DescribeUserPoolDomainOutput::builder()
            .domain_description(
                DomainDescriptionType::builder()
                    .user_pool_id("us-east-1_Mine")
                    .status(s)
                    .build(),
            )
            .build()
    };
    let describe = mock!(aws_sdk_cognitoidentityprovider::Client::describe_user_pool_domain)
        .sequence()
        .output(move || status(DomainStatusType::Creating))
        .output(move || status(DomainStatusType::Active))
        .build();
    let f = fixture(vec![
        ("cognito-idp", create),
        ("cognito-idp", describe.clone()),
    ])
    .await;
    let pool = Handle::new("us-east-1_Mine", "arn:pool", true);
    let ctx = f.ctx();
    domain::ensure(&ctx, &pool, None).await.expect("active");
    assert_eq!(describe.num_calls(), 2, "CREATING, then ACTIVE");
    assert_eq!(ctx.done.lock().unwrap()[0].action, Action::Created);
}

#[tokio::test]
async fn credentials_must_name_an_account_before_anything_happens() {
    use aws_sdk_sts::operation::get_caller_identity::GetCallerIdentityOutput;
    let ok = mock!(aws_sdk_sts::Client::get_caller_identity).then_output(|| {
        GetCallerIdentityOutput::builder()
            .account("123456789012")
            .arn("arn:aws:iam::123456789012:user/ci")
            .build()
    });
    let f = fixture(vec![("sts", ok)]).await;
    assert_eq!(f.aws.account().await.unwrap(), "123456789012");

    let rejected = mock!(aws_sdk_sts::Client::get_caller_identity)
        .sequence()
        .http_status(
            403,
            Some(
                "<ErrorResponse><Error><Type>Sender</Type><Code>InvalidClientTokenId</Code><Message>The security token included in the request is invalid.</Message></Error></ErrorResponse>"
                    .into(),
            ),
        )
        .build();
    let f = fixture(vec![("sts", rejected)]).await;
    let err = f.aws.account().await.expect_err("rejected credentials");
    let text = err.to_string();
    assert!(
        text.contains("checking the AWS credentials") && text.contains("InvalidClientTokenId"),
        "{text}"
    );
    assert!(
        text.contains("credentials were rejected"),
        "says what to do: {text}"
    );
}
