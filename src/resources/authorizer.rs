//! The COGNITO_USER_POOLS authorizer: tokens of the stack's pool, from `Authorization`.

use std::time::Instant;

use aws_sdk_apigateway::types::{AuthorizerType, Op, PatchOperation};

use super::{create_once, shown, Create, Ctx, Handle, Made, NEW};
use crate::aws::SdkResultExt;
use crate::errors::Result;
use crate::plan::{decide, AuthorizerSettings, Decision};

pub const KIND: &str = "authorizer";
pub const IDENTITY_SOURCE: &str = "method.request.header.Authorization";

pub fn desired(pool_arn: &str) -> AuthorizerSettings {
    AuthorizerSettings {
        kind: AuthorizerType::CognitoUserPools.as_str().to_string(),
        provider_arns: vec![pool_arn.to_string()],
        identity_source: IDENTITY_SOURCE.to_string(),
    }
}

async fn find(ctx: &Ctx<'_>, api_id: &str) -> Result<Option<(String, AuthorizerSettings)>> {
    let name = ctx.authorizer_name();
    let out = ctx
        .aws
        .apigw
        .get_authorizers()
        .rest_api_id(api_id)
        .limit(500)
        .send()
        .await
        .sdk()
        .map_err(|e| {
            e.fail(
                format!("reading the authorizers of REST API {api_id}"),
                "GetAuthorizers",
            )
        })?;
    Ok(out
        .items()
        .iter()
        .find(|a| a.name() == Some(name.as_str()))
        .map(|a| {
            let mut provider_arns = a.provider_arns().to_vec();
            provider_arns.sort();
            (
                a.id().unwrap_or_default().to_string(),
                AuthorizerSettings {
                    kind: a
                        .r#type()
                        .map(|t| t.as_str().to_string())
                        .unwrap_or_default(),
                    provider_arns,
                    identity_source: a.identity_source().unwrap_or_default().to_string(),
                },
            )
        }))
}

/// The run's first read of the API's authorizers (see `read_once`).
pub(super) async fn first_find(
    ctx: &Ctx<'_>,
    api_id: &str,
) -> Result<Option<(String, AuthorizerSettings)>> {
    super::read_once(ctx, format!("GetAuthorizers {api_id}"), find(ctx, api_id)).await
}

pub async fn ensure(ctx: &Ctx<'_>, api: &Handle, pool: &Handle) -> Result<Handle> {
    let started = Instant::now();
    let recorded_id = ctx.rec.get(KIND);
    let want = desired(&pool.arn);
    let found = if api.fresh {
        None
    } else {
        first_find(ctx, &api.id).await?
    };
    let recorded = recorded_id.is_some() && found.as_ref().map(|f| &f.0) == recorded_id.as_ref();
    let decision = decide(&want, found.as_ref().map(|f| &f.1));
    let mut id = found
        .as_ref()
        .map(|f| f.0.clone())
        .unwrap_or_else(|| NEW.to_string());
    if ctx.apply {
        let name = ctx.authorizer_name();
        match &decision {
            Decision::Create => {
                let made = create_once(
                    Create::new(format!("creating authorizer {name}"), "CreateAuthorizer"),
                    || async {
                        ctx.aws
                            .once
                            .apigw
                            .create_authorizer()
                            .rest_api_id(&api.id)
                            .name(&name)
                            .r#type(AuthorizerType::CognitoUserPools)
                            .provider_arns(&pool.arn)
                            .identity_source(IDENTITY_SOURCE)
                            .send()
                            .await
                            .sdk()
                    },
                    || async { Ok(find(ctx, &api.id).await?.map(|(id, _)| id)) },
                )
                .await?;
                id = match made {
                    Made::New(out) => out.id().unwrap_or_default().to_string(),
                    Made::Found(found) => found,
                };
            }
            Decision::Update(_) => {
                let observed = &found.as_ref().expect("update implies found").1;
                let ops = patch_operations(observed, &want);
                ctx.aws
                    .apigw
                    .update_authorizer()
                    .rest_api_id(&api.id)
                    .authorizer_id(&id)
                    .set_patch_operations(Some(ops))
                    .send()
                    .await
                    .sdk()
                    .map_err(|e| {
                        e.fail(format!("updating authorizer {name}"), "UpdateAuthorizer")
                    })?;
            }
            Decision::Unchanged => {}
        }
        ctx.rec.set(KIND, &id).await?;
    }
    ctx.finish(
        KIND,
        &shown(&id, &ctx.authorizer_name()),
        &decision,
        recorded,
        started,
    );
    Ok(Handle::new(id.clone(), id, found.is_none()))
}

/// The patch that takes an authorizer from `observed` to `want`, in the form AWS
/// documents for `providerARNs` (the ARN as the value of `/providerARNs`), adding the
/// new pool before removing the old one: the list may never be empty.
fn patch_operations(
    observed: &AuthorizerSettings,
    want: &AuthorizerSettings,
) -> Vec<PatchOperation> {
    let mut ops = Vec::new();
    for arn in want
        .provider_arns
        .iter()
        .filter(|a| !observed.provider_arns.contains(a))
    {
        ops.push(patch(Op::Add, "/providerARNs", Some(arn)));
    }
    for arn in observed
        .provider_arns
        .iter()
        .filter(|a| !want.provider_arns.contains(a))
    {
        ops.push(patch(Op::Remove, "/providerARNs", Some(arn)));
    }
    if observed.identity_source != want.identity_source {
        ops.push(patch(Op::Replace, "/identitySource", Some(IDENTITY_SOURCE)));
    }
    if observed.kind != want.kind {
        ops.push(patch(Op::Replace, "/type", Some(&want.kind)));
    }
    ops
}

fn patch(op: Op, path: &str, value: Option<&str>) -> PatchOperation {
    PatchOperation::builder()
        .op(op)
        .path(path)
        .set_value(value.map(str::to_string))
        .build()
}
