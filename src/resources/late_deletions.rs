//! Unit tests, with `aws-smithy-mocks` and AWS's own error texts, of what AWS deletes
//! late and the emulator at once: a force-deleted secret's name (CreateSecret meanwhile:
//! `InvalidRequestException` "... already scheduled for deletion."), and a deleted
//! Cognito domain's prefix (still described, held by the deleted pool). Also: a signal
//! ends these waits and the function's readiness wait at once. Paused tokio time: the
//! waits take no real time, and what is checked is what was sent, not how fast.

use std::time::Duration;

use aws_sdk_cognitoidentityprovider::operation::describe_user_pool_domain::DescribeUserPoolDomainOutput;
use aws_sdk_cognitoidentityprovider::types::{DomainDescriptionType, DomainStatusType};
use aws_sdk_lambda::types::State;
use aws_sdk_secretsmanager::operation::create_secret::CreateSecretOutput;
use aws_smithy_mocks::{mock, Rule};

use super::mocked::{fixture, function_state, json_error};
use super::{domain, function, secret};
use crate::errors::Error;

const SCHEDULED: &str =
    "You can't create this secret because a secret with this name is already scheduled for deletion.";

fn domain_held_by(pool: &str, status: Option<DomainStatusType>) -> DescribeUserPoolDomainOutput {
    DescribeUserPoolDomainOutput::builder()
        .domain_description(
            DomainDescriptionType::builder()
                .user_pool_id(pool)
                .aws_account_id("123456789012")
                .domain("s-prefix")
                .set_status(status)
                .build(),
        )
        .build()
}

fn domain_free() -> DescribeUserPoolDomainOutput {
    DescribeUserPoolDomainOutput::builder()
        .domain_description(DomainDescriptionType::builder().build())
        .build()
}

fn pool_gone() -> Rule {
    mock!(aws_sdk_cognitoidentityprovider::Client::describe_user_pool).then_http_response(|| {
        aws_smithy_runtime_api::http::Response::new(
            400.try_into().unwrap(),
            aws_smithy_types::body::SdkBody::from(
                json_error("ResourceNotFoundException", "User pool does not exist.").unwrap(),
            ),
        )
    })
}

#[tokio::test(start_paused = true)]
async fn a_secret_name_still_scheduled_for_deletion_is_waited_for() {
    let create = mock!(aws_sdk_secretsmanager::Client::create_secret)
        .sequence()
        .http_status(400, json_error("InvalidRequestException", SCHEDULED))
        .times(3)
        .output(|| CreateSecretOutput::builder().name("provision/s/a").build())
        .build();
    let f = fixture(vec![("secretsmanager", create.clone())]).await;
    secret::create(&f.ctx(), "provision/s/a", "{}")
        .await
        .expect("made once the name is free");
    assert_eq!(create.num_calls(), 4, "three refusals, then the create");
}

#[tokio::test(start_paused = true)]
async fn a_secret_name_never_freed_is_an_error_in_the_end() {
    let create = mock!(aws_sdk_secretsmanager::Client::create_secret).then_http_response(|| {
        aws_smithy_runtime_api::http::Response::new(
            400.try_into().unwrap(),
            aws_smithy_types::body::SdkBody::from(
                json_error("InvalidRequestException", SCHEDULED).unwrap(),
            ),
        )
    });
    let f = fixture(vec![("secretsmanager", create.clone())]).await;
    let err = secret::create(&f.ctx(), "provision/s/a", "{}")
        .await
        .expect_err("bounded");
    assert!(err.to_string().contains("scheduled for deletion"), "{err}");
    assert_eq!(create.num_calls(), 11, "as many attempts as the bound");
}

#[tokio::test(start_paused = true)]
async fn a_domain_prefix_released_late_is_waited_for() {
    let describe = mock!(aws_sdk_cognitoidentityprovider::Client::describe_user_pool_domain)
        .sequence()
        // The pool is deleted; its domain still holds the prefix, then DELETING.
        .output(|| domain_held_by("us-east-1_Gone", Some(DomainStatusType::Active)))
        .output(|| domain_held_by("us-east-1_Gone", Some(DomainStatusType::Deleting)))
        .output(domain_free)
        .build();
    let pools = pool_gone();
    let f = fixture(vec![
        ("cognito-idp", describe.clone()),
        ("cognito-idp", pools.clone()),
    ])
    .await;
    domain::preflight(&f.ctx(), None)
        .await
        .expect("free once released");
    assert_eq!(describe.num_calls(), 3);
    assert_eq!(pools.num_calls(), 1, "DELETING needs no look at the pool");
}

#[tokio::test(start_paused = true)]
async fn a_domain_prefix_never_released_is_an_error_in_the_end() {
    let describe = mock!(aws_sdk_cognitoidentityprovider::Client::describe_user_pool_domain)
        .then_output(|| domain_held_by("us-east-1_Gone", Some(DomainStatusType::Deleting)));
    let f = fixture(vec![("cognito-idp", describe.clone())]).await;
    let err = domain::preflight(&f.ctx(), None)
        .await
        .expect_err("bounded");
    assert!(err.to_string().contains("after 3 minutes"), "{err}");
    assert!(describe.num_calls() > 2, "it waited");
}

#[tokio::test(start_paused = true)]
async fn a_signal_ends_the_wait_for_a_released_prefix() {
    let describe = mock!(aws_sdk_cognitoidentityprovider::Client::describe_user_pool_domain)
        .then_output(|| domain_held_by("us-east-1_Gone", Some(DomainStatusType::Deleting)));
    let f = fixture(vec![("cognito-idp", describe.clone())]).await;
    let ctx = f.ctx();
    let (waited, ()) = tokio::join!(domain::preflight(&ctx, None), async {
        tokio::time::sleep(Duration::from_secs(5)).await;
        crate::interrupt::raise_on_this_thread();
    });
    assert!(matches!(waited, Err(Error::Interrupted)), "{waited:?}");
    let reads = describe.num_calls();
    assert!((2..=4).contains(&reads), "stopped at the signal: {reads}");
}

#[tokio::test(start_paused = true)]
async fn a_signal_ends_the_wait_for_the_function_to_be_ready() {
    let get = mock!(aws_sdk_lambda::Client::get_function)
        .then_output(|| function_state(State::Pending, None, 128));
    let f = fixture(vec![("lambda", get.clone())]).await;
    let ctx = f.ctx();
    let (waited, ()) = tokio::join!(function::wait_ready(&ctx), async {
        tokio::time::sleep(Duration::from_secs(3)).await;
        crate::interrupt::raise_on_this_thread();
    });
    // Without the signal it would poll on for 5 minutes and fail "not Active".
    assert!(matches!(waited, Err(Error::Interrupted)), "{waited:?}");
}
