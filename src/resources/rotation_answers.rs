//! Unit tests, with `aws-smithy-mocks`, of the client-secret answers the emulator never
//! gives (it lacks the three operations): a third secret refused, the last secret
//! refused, throttling, a lost answer to Add, and a rotated client whose description
//! shows no secret.

use aws_sdk_cognitoidentityprovider::operation::add_user_pool_client_secret::AddUserPoolClientSecretOutput;
use aws_sdk_cognitoidentityprovider::operation::delete_user_pool_client_secret::DeleteUserPoolClientSecretOutput;
use aws_sdk_cognitoidentityprovider::operation::list_user_pool_client_secrets::ListUserPoolClientSecretsOutput;
use aws_sdk_cognitoidentityprovider::types::ClientSecretDescriptorType;
use aws_smithy_mocks::mock;
use aws_smithy_types::DateTime;

use super::client_secrets::*;
use super::mocked::{fixture, json_error};
use crate::errors::Result;

fn descriptor(id: &str, secs: i64, value: Option<&str>) -> ClientSecretDescriptorType {
    let mut b = ClientSecretDescriptorType::builder()
        .client_secret_id(id)
        .client_secret_create_date(DateTime::from_secs(secs));
    if let Some(v) = value {
        b = b.client_secret_value(v);
    }
    b.build()
}

fn original() -> Info {
    Info {
        id: "c1--100".into(),
        created: Some(DateTime::from_secs(100)),
    }
}

#[tokio::test]
async fn a_third_secret_is_refused_as_bad_input_saying_finish_first() {
    let add = mock!(aws_sdk_cognitoidentityprovider::Client::add_user_pool_client_secret)
        .then_http_response(|| {
            aws_smithy_runtime_api::http::Response::new(
                aws_smithy_runtime_api::http::StatusCode::try_from(400).unwrap(),
                aws_smithy_types::body::SdkBody::from(
                    json_error(
                        "LimitExceededException",
                        "Client secret limit exceeded for this client",
                    )
                    .unwrap(),
                ),
            )
        });
    let f = fixture(vec![("cognito-idp", add.clone())]).await;
    let err = add_to(&f).await.unwrap_err();
    assert_eq!(err.exit_code(), 2, "{err}");
    assert!(err.to_string().contains("--finish"), "{err}");
    assert_eq!(add.num_calls(), 1, "a quota is not sent again");
}

async fn add_to(f: &super::mocked::Fixture) -> Result<Added> {
    add(f.ctx().aws, "pool", "c1", &[original()]).await
}

#[tokio::test]
async fn a_lost_answer_deletes_the_secret_nobody_received_then_adds_again() {
    let add = mock!(aws_sdk_cognitoidentityprovider::Client::add_user_pool_client_secret)
        .sequence()
        .http_status(500, json_error("InternalErrorException", "answer lost"))
        .output(|| {
            AddUserPoolClientSecretOutput::builder()
                .client_secret_descriptor(descriptor("c1--300", 300, Some("new-value")))
                .build()
        })
        .build();
    let list = mock!(aws_sdk_cognitoidentityprovider::Client::list_user_pool_client_secrets)
        .then_output(|| {
            ListUserPoolClientSecretsOutput::builder()
                .client_secrets(descriptor("c1--100", 100, None))
                .client_secrets(descriptor("c1--200", 200, None))
                .build()
        });
    let del = mock!(aws_sdk_cognitoidentityprovider::Client::delete_user_pool_client_secret)
        .match_requests(|r| r.client_secret_id() == Some("c1--200"))
        .then_output(|| DeleteUserPoolClientSecretOutput::builder().build());
    let f = fixture(vec![
        ("cognito-idp", add.clone()),
        ("cognito-idp", list.clone()),
        ("cognito-idp", del.clone()),
    ])
    .await;
    let added = add_to(&f).await.expect("added on the second attempt");
    assert_eq!(added.info.id, "c1--300");
    assert_eq!(added.value.0, "new-value");
    assert_eq!(add.num_calls(), 2);
    assert_eq!(list.num_calls(), 1, "one listing after the unanswered add");
    assert_eq!(del.num_calls(), 1, "the orphan (not the original) deleted");
}

#[tokio::test]
async fn a_throttled_add_is_sent_again_without_a_listing() {
    let add = mock!(aws_sdk_cognitoidentityprovider::Client::add_user_pool_client_secret)
        .sequence()
        .http_status(
            400,
            json_error("TooManyRequestsException", "Too many requests"),
        )
        .output(|| {
            AddUserPoolClientSecretOutput::builder()
                .client_secret_descriptor(descriptor("c1--300", 300, Some("v")))
                .build()
        })
        .build();
    let list = mock!(aws_sdk_cognitoidentityprovider::Client::list_user_pool_client_secrets)
        .then_output(|| ListUserPoolClientSecretsOutput::builder().build());
    let f = fixture(vec![
        ("cognito-idp", add.clone()),
        ("cognito-idp", list.clone()),
    ])
    .await;
    add_to(&f).await.expect("added after the refusal");
    assert_eq!(add.num_calls(), 2);
    assert_eq!(list.num_calls(), 0, "nothing was done: no listing");
}

#[tokio::test]
async fn deleting_the_last_secret_is_refused_with_what_to_do() {
    let del = mock!(aws_sdk_cognitoidentityprovider::Client::delete_user_pool_client_secret)
        .then_http_response(|| {
            aws_smithy_runtime_api::http::Response::new(
                aws_smithy_runtime_api::http::StatusCode::try_from(400).unwrap(),
                aws_smithy_types::body::SdkBody::from(
                    json_error(
                        "InvalidParameterException",
                        "Cannot delete the last client secret",
                    )
                    .unwrap(),
                ),
            )
        });
    let f = fixture(vec![("cognito-idp", del.clone())]).await;
    let err = delete(f.ctx().aws, "pool", "c1", "c1--100")
        .await
        .unwrap_err();
    assert_eq!(err.exit_code(), 2, "{err}");
    assert!(err.to_string().contains("last secret"), "{err}");
}

/// After `rotate --finish` deleted the client's original secret, DescribeUserPoolClient
/// may return no ClientSecret (reported from AWS; see the README). `up` must not take
/// that for a client without a secret and replace it (a new client id).
#[tokio::test]
async fn up_keeps_a_rotated_client_whose_description_shows_no_secret() {
    use aws_sdk_cognitoidentityprovider::operation::create_user_pool_client::CreateUserPoolClientOutput;
    use aws_sdk_cognitoidentityprovider::operation::describe_user_pool_client::DescribeUserPoolClientOutput;
    use aws_sdk_cognitoidentityprovider::operation::list_user_pool_clients::ListUserPoolClientsOutput;
    use aws_sdk_cognitoidentityprovider::types::{
        OAuthFlowType, TimeUnitsType, TokenValidityUnitsType, UserPoolClientDescription,
        UserPoolClientType,
    };

    let clients = mock!(aws_sdk_cognitoidentityprovider::Client::list_user_pool_clients)
        .then_output(|| {
            ListUserPoolClientsOutput::builder()
                .user_pool_clients(
                    UserPoolClientDescription::builder()
                        .client_id("c1")
                        .client_name("s-client")
                        .build(),
                )
                .build()
        });
    let describe = mock!(aws_sdk_cognitoidentityprovider::Client::describe_user_pool_client)
        .then_output(|| {
            DescribeUserPoolClientOutput::builder()
                .user_pool_client(
                    UserPoolClientType::builder()
                        .client_id("c1")
                        .client_name("s-client")
                        .allowed_o_auth_flows(OAuthFlowType::ClientCredentials)
                        .allowed_o_auth_scopes("users/read")
                        .allowed_o_auth_flows_user_pool_client(true)
                        .access_token_validity(60)
                        .token_validity_units(
                            TokenValidityUnitsType::builder()
                                .access_token(TimeUnitsType::Minutes)
                                .build(),
                        )
                        .build(),
                )
                .build()
        });
    let secrets = mock!(aws_sdk_cognitoidentityprovider::Client::list_user_pool_client_secrets)
        .then_output(|| {
            ListUserPoolClientSecretsOutput::builder()
                .client_secrets(descriptor("c1--300", 300, None))
                .build()
        });
    let create = mock!(aws_sdk_cognitoidentityprovider::Client::create_user_pool_client)
        .then_output(|| CreateUserPoolClientOutput::builder().build());
    let f = fixture(vec![
        ("cognito-idp", clients),
        ("cognito-idp", describe),
        ("cognito-idp", secrets.clone()),
        ("cognito-idp", create.clone()),
    ])
    .await;
    let ctx = f.ctx();
    let pool = crate::resources::Handle::new("pool", "pool", false);
    let spec = ctx.desired.clients[0].clone();
    let client = crate::resources::app_client::ensure(&ctx, &pool, &spec)
        .await
        .expect("kept");
    assert_eq!(client.handle.id, "c1", "the same client id");
    assert_eq!(create.num_calls(), 0, "not replaced");
    assert_eq!(secrets.num_calls(), 1, "its secrets were checked");
    // Found by name (the fixture's state records no client): adopted as it is.
    assert_eq!(
        ctx.done.lock().unwrap()[0].action,
        crate::report::Action::Adopted
    );
}
