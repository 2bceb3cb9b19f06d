//! Unit tests, with `aws-smithy-mocks`, of creates whose answers are lost or throttled,
//! and of the request shapes AWS documents (the emulator accepts more).

use aws_sdk_apigateway::operation::create_rest_api::CreateRestApiOutput;
use aws_sdk_apigateway::operation::get_authorizers::GetAuthorizersOutput;
use aws_sdk_apigateway::operation::get_rest_apis::GetRestApisOutput;
use aws_sdk_apigateway::operation::update_authorizer::UpdateAuthorizerOutput;
use aws_sdk_apigateway::types::{Authorizer, AuthorizerType, Op, RestApi};
use aws_smithy_mocks::mock;

use super::mocked::{fixture, json_error};
use super::{authorizer, rest_api, Handle};
use crate::report::Action;

fn our_api() -> RestApi {
    RestApi::builder()
        .id("api1")
        .name("s-api")
        .root_resource_id("root1")
        .tags("provision:stack", "s")
        .endpoint_configuration(
            aws_sdk_apigateway::types::EndpointConfiguration::builder()
                .types(aws_sdk_apigateway::types::EndpointType::Regional)
                .build(),
        )
        .build()
}

#[tokio::test]
async fn a_create_whose_answer_is_lost_is_looked_up_and_adopted_not_sent_again() {
    // The run's read finds nothing; the create is done but answered with a 500; the
    // lookup finds the API it made.
    let list = mock!(aws_sdk_apigateway::Client::get_rest_apis)
        .sequence()
        .output(|| GetRestApisOutput::builder().build())
        .output(|| GetRestApisOutput::builder().items(our_api()).build())
        .build();
    let create = mock!(aws_sdk_apigateway::Client::create_rest_api)
        .sequence()
        .http_status(500, json_error("InternalFailure", "answer lost"))
        .output(|| CreateRestApiOutput::builder().id("duplicate").build())
        .build();
    let f = fixture(vec![
        ("apigateway", list.clone()),
        ("apigateway", create.clone()),
    ])
    .await;
    let ctx = f.ctx();
    let api = rest_api::ensure(&ctx).await.expect("adopted");
    assert_eq!(api.handle.id, "api1");
    assert_eq!(api.root_id.as_deref(), Some("root1"));
    assert_eq!(create.num_calls(), 1, "the create was not sent again");
    assert_eq!(list.num_calls(), 2, "one read, one lookup");
    assert_eq!(ctx.done.lock().unwrap()[0].action, Action::Created);
    assert_eq!(f.rec.get(rest_api::KIND).as_deref(), Some("api1"));
}

#[tokio::test]
async fn a_throttled_create_is_sent_again_without_a_lookup() {
    let list = mock!(aws_sdk_apigateway::Client::get_rest_apis)
        .then_output(|| GetRestApisOutput::builder().build());
    let create = mock!(aws_sdk_apigateway::Client::create_rest_api)
        .sequence()
        .http_status(
            429,
            json_error("TooManyRequestsException", "Too Many Requests"),
        )
        .output(|| CreateRestApiOutput::builder().id("api1").build())
        .build();
    let f = fixture(vec![
        ("apigateway", list.clone()),
        ("apigateway", create.clone()),
    ])
    .await;
    let api = rest_api::ensure(&f.ctx()).await.expect("created");
    assert_eq!(api.handle.id, "api1");
    assert_eq!(create.num_calls(), 2);
    assert_eq!(list.num_calls(), 1, "nothing was done: no lookup");
}

#[tokio::test]
async fn a_create_still_in_doubt_after_every_attempt_fails_naming_the_resource() {
    let list = mock!(aws_sdk_apigateway::Client::get_rest_apis)
        .then_output(|| GetRestApisOutput::builder().build());
    let create = mock!(aws_sdk_apigateway::Client::create_rest_api)
        .sequence()
        .http_status(503, json_error("ServiceUnavailableException", "down"))
        .times(6)
        .build();
    let f = fixture(vec![
        ("apigateway", list.clone()),
        ("apigateway", create.clone()),
    ])
    .await;
    let err = rest_api::ensure(&f.ctx()).await.expect_err("gives up");
    assert_eq!(create.num_calls(), 6);
    // Looked up before each re-send and after the last.
    assert_eq!(list.num_calls(), 1 + 6);
    assert!(err.to_string().contains("creating REST API s-api"), "{err}");
}

#[tokio::test]
async fn a_new_pool_is_put_on_the_authorizer_as_aws_documents_adding_before_removing() {
    let old = "arn:aws:cognito-idp:us-east-1:123456789012:userpool/us-east-1_old";
    let new = "arn:aws:cognito-idp:us-east-1:123456789012:userpool/us-east-1_new";
    let get = mock!(aws_sdk_apigateway::Client::get_authorizers).then_output(move || {
        GetAuthorizersOutput::builder()
            .items(
                Authorizer::builder()
                    .id("auth1")
                    .name("s-authorizer")
                    .r#type(AuthorizerType::CognitoUserPools)
                    .provider_arns(old)
                    .identity_source(authorizer::IDENTITY_SOURCE)
                    .build(),
            )
            .build()
    });
    let update = mock!(aws_sdk_apigateway::Client::update_authorizer)
        .match_requests(move |r| {
            let ops: Vec<(Op, &str, Option<&str>)> = r
                .patch_operations()
                .iter()
                .map(|p| (p.op().unwrap().clone(), p.path().unwrap(), p.value()))
                .collect();
            ops == [
                (Op::Add, "/providerARNs", Some(new)),
                (Op::Remove, "/providerARNs", Some(old)),
            ]
        })
        .then_output(|| UpdateAuthorizerOutput::builder().id("auth1").build());
    let f = fixture(vec![("apigateway", get), ("apigateway", update.clone())]).await;
    let ctx = f.ctx();
    let api = Handle::new("api1", "api1", false);
    let pool = Handle::new("us-east-1_new", new, false);
    authorizer::ensure(&ctx, &api, &pool)
        .await
        .expect("the patch has the documented shape");
    assert_eq!(update.num_calls(), 1);
}

#[tokio::test]
async fn a_role_with_policies_someone_else_attached_is_emptied_then_deleted() {
    use aws_sdk_iam::operation::delete_role::{DeleteRoleError, DeleteRoleOutput};
    use aws_sdk_iam::operation::delete_role_policy::DeleteRolePolicyOutput;
    use aws_sdk_iam::operation::detach_role_policy::DetachRolePolicyOutput;
    use aws_sdk_iam::operation::get_role::GetRoleOutput;
    use aws_sdk_iam::operation::list_attached_role_policies::ListAttachedRolePoliciesOutput;
    use aws_sdk_iam::operation::list_role_policies::ListRolePoliciesOutput;
    use aws_sdk_iam::types::{error::DeleteConflictException, Role, Tag};

    let function = mock!(aws_sdk_lambda::Client::get_function).then_http_response(|| {
        aws_smithy_runtime_api::http::Response::new(
            aws_smithy_runtime_api::http::StatusCode::try_from(404).unwrap(),
            aws_smithy_types::body::SdkBody::from(
                r#"{"__type":"ResourceNotFoundException","message":"no such function"}"#,
            ),
        )
    });
    let tag = |k: &str, v: &str| Tag::builder().key(k).value(v).build().unwrap();
    let role = mock!(aws_sdk_iam::Client::get_role).then_output(move || {
        GetRoleOutput::builder()
            .role(
                Role::builder()
                    .role_name("s-handler-us-east-1")
                    .arn("arn:aws:iam::123456789012:role/s-handler-us-east-1")
                    .path("/")
                    .role_id("r1")
                    .create_date(aws_smithy_types::DateTime::from_secs(0))
                    .tags(tag("provision:stack", "s"))
                    .tags(tag("provision:region", "us-east-1"))
                    .build()
                    .unwrap(),
            )
            .build()
    });
    let detach = mock!(aws_sdk_iam::Client::detach_role_policy)
        .then_output(|| DetachRolePolicyOutput::builder().build());
    let delete = mock!(aws_sdk_iam::Client::delete_role)
        .sequence()
        .error(|| {
            DeleteRoleError::DeleteConflictException(
                DeleteConflictException::builder()
                    .message("Cannot delete entity, must delete policies first.")
                    .meta(
                        aws_sdk_iam::error::ErrorMetadata::builder()
                            .code("DeleteConflict")
                            .message("Cannot delete entity, must delete policies first.")
                            .build(),
                    )
                    .build(),
            )
        })
        .output(|| DeleteRoleOutput::builder().build())
        .build();
    let attached = mock!(aws_sdk_iam::Client::list_attached_role_policies).then_output(|| {
        ListAttachedRolePoliciesOutput::builder()
            .attached_policies(
                aws_sdk_iam::types::AttachedPolicy::builder()
                    .policy_arn("arn:aws:iam::aws:policy/AdministratorAccess")
                    .build(),
            )
            .build()
    });
    let inline = mock!(aws_sdk_iam::Client::list_role_policies).then_output(|| {
        ListRolePoliciesOutput::builder()
            .policy_names("backdoor")
            .is_truncated(false)
            .build()
            .unwrap()
    });
    let delete_inline = mock!(aws_sdk_iam::Client::delete_role_policy)
        .then_output(|| DeleteRolePolicyOutput::builder().build());
    let f = fixture(vec![
        ("lambda", function),
        ("iam", role),
        ("iam", detach.clone()),
        ("iam", delete.clone()),
        ("iam", attached),
        ("iam", inline.clone()),
        ("iam", delete_inline.clone()),
    ])
    .await;
    let (name, gone) = super::role::delete(&f.ctx()).await.expect("deleted");
    assert_eq!(
        (name.as_str(), gone),
        ("s-handler-us-east-1", super::Removal::Deleted)
    );
    assert_eq!(detach.num_calls(), 1, "the policy someone attached");
    assert_eq!(delete.num_calls(), 2, "refused, then done");
    assert_eq!(inline.num_calls(), 1);
    assert_eq!(
        delete_inline.num_calls(),
        2,
        "provision's logs policy before the first DeleteRole, then the one someone put"
    );
}
