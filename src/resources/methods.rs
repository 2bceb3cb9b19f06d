//! `ANY /` and `ANY /{proxy+}`: guarded by the authorizer with the stack's scopes,
//! integrated with the function (AWS_PROXY).

use std::time::Instant;

use aws_sdk_apigateway::types::{Integration, IntegrationType, Method};

use super::{Ctx, Handle, NEW};
use crate::aws::SdkResultExt;
use crate::errors::Result;
use crate::plan::{decide, Decision, MethodSettings};

pub const KIND: &str = "method";
pub const HTTP_METHOD: &str = "ANY";
pub const ROOT: &str = "/";
pub const PROXY: &str = "/{proxy+}";
const PROXY_PART: &str = "{proxy+}";
const AUTH_TYPE: &str = "COGNITO_USER_POOLS";

pub fn desired(ctx: &Ctx<'_>, authorizer_id: &str, function_arn: &str) -> MethodSettings {
    MethodSettings {
        authorization_type: AUTH_TYPE.into(),
        authorizer_id: authorizer_id.into(),
        scopes: ctx.desired.scope_strings(),
        integration_type: IntegrationType::AwsProxy.as_str().into(),
        integration_method: "POST".into(),
        integration_uri: format!(
            "arn:{}:apigateway:{}:lambda:path/2015-03-31/functions/{function_arn}/invocations",
            ctx.partition, ctx.region
        ),
    }
}

fn observed(method: &Method, integration: Option<&Integration>) -> MethodSettings {
    let mut scopes = method.authorization_scopes().to_vec();
    scopes.sort();
    let integration = integration.or(method.method_integration());
    MethodSettings {
        authorization_type: method.authorization_type().unwrap_or_default().into(),
        authorizer_id: method.authorizer_id().unwrap_or_default().into(),
        scopes,
        integration_type: integration
            .and_then(|i| i.r#type())
            .map(|t| t.as_str().to_string())
            .unwrap_or_default(),
        integration_method: integration
            .and_then(|i| i.http_method())
            .unwrap_or_default()
            .into(),
        integration_uri: integration.and_then(|i| i.uri()).unwrap_or_default().into(),
    }
}

/// What exists under one path: the resource's id and its ANY method.
#[derive(Default)]
struct PathState {
    resource_id: Option<String>,
    method: Option<MethodSettings>,
}

async fn read(ctx: &Ctx<'_>, api_id: &str) -> Result<(PathState, PathState)> {
    let out = ctx
        .aws
        .apigw
        .get_resources()
        .rest_api_id(api_id)
        .limit(500)
        .embed("methods")
        .send()
        .await
        .sdk()
        .map_err(|e| {
            e.fail(
                format!("reading the resources of REST API {api_id}"),
                "GetResources",
            )
        })?;
    let mut root = PathState::default();
    let mut proxy = PathState::default();
    for r in out.items() {
        let slot = match r.path() {
            Some(ROOT) => &mut root,
            Some(PROXY) => &mut proxy,
            _ => continue,
        };
        let id = r.id().unwrap_or_default().to_string();
        if let Some(m) = r.resource_methods().and_then(|m| m.get(HTTP_METHOD)) {
            // GetResources may leave out the integration; ask for it then.
            let integration = if m.method_integration().is_none() {
                match ctx
                    .aws
                    .apigw
                    .get_integration()
                    .rest_api_id(api_id)
                    .resource_id(&id)
                    .http_method(HTTP_METHOD)
                    .send()
                    .await
                    .sdk()
                {
                    Ok(i) => Some(
                        Integration::builder()
                            .set_type(i.r#type().cloned())
                            .set_http_method(i.http_method().map(str::to_string))
                            .set_uri(i.uri().map(str::to_string))
                            .build(),
                    ),
                    Err(e) if e.is_not_found() => None,
                    Err(e) => {
                        return Err(e.fail(
                            format!("reading the integration of ANY {}", r.path().unwrap_or("")),
                            "GetIntegration",
                        ))
                    }
                }
            } else {
                None
            };
            slot.method = Some(observed(m, integration.as_ref()));
        }
        slot.resource_id = Some(id);
    }
    Ok((root, proxy))
}

/// Ensures both methods; returns the desired settings of each (for the definition hash).
pub async fn ensure(
    ctx: &Ctx<'_>,
    api: &Handle,
    root_id: Option<&str>,
    authorizer: &Handle,
    function: &Handle,
) -> Result<Vec<(&'static str, MethodSettings)>> {
    let started = Instant::now();
    let want = desired(ctx, &authorizer.id, &function.arn);
    let (mut root, proxy) = if api.fresh {
        (
            PathState {
                resource_id: root_id.map(str::to_string),
                method: None,
            },
            PathState::default(),
        )
    } else {
        read(ctx, &api.id).await?
    };
    if root.resource_id.is_none() && ctx.apply {
        // Only reachable if CreateRestApi did not report the root: look it up.
        root = read(ctx, &api.id).await?.0;
    }
    // `/` and `/{proxy+}` do not depend on each other: both at once.
    let root_id = root.resource_id.clone().unwrap_or_default();
    let (r, p) = ctx
        .both(
            converge_path(ctx, api, ROOT, root, &root_id, &want, started),
            converge_path(ctx, api, PROXY, proxy, &root_id, &want, started),
        )
        .await;
    r?;
    p?;
    Ok(vec![(ROOT, want.clone()), (PROXY, want)])
}

/// One path's ANY method: create (with the `{proxy+}` resource if missing), replace, or leave.
async fn converge_path(
    ctx: &Ctx<'_>,
    api: &Handle,
    path: &'static str,
    mut slot: PathState,
    root_id: &str,
    want: &MethodSettings,
    started: Instant,
) -> Result<()> {
    let key = format!("{KIND} {path}");
    let recorded = ctx.rec.get(&key).is_some();
    let decision = decide(want, slot.method.as_ref());
    if ctx.apply && decision != Decision::Unchanged {
        let resource_id = match &slot.resource_id {
            Some(id) => id.clone(),
            // Only `/{proxy+}` can be missing: `/` comes with the API.
            None => create_proxy_resource(ctx, &api.id, root_id).await?,
        };
        if matches!(decision, Decision::Update(_)) {
            delete_method(ctx, &api.id, &resource_id, path).await?;
        }
        put(ctx, &api.id, &resource_id, path, want).await?;
        slot.resource_id = Some(resource_id);
    }
    if ctx.apply {
        ctx.rec
            .set(&key, slot.resource_id.as_deref().unwrap_or(NEW))?;
    }
    ctx.finish(
        KIND,
        &format!("{HTTP_METHOD} {path}"),
        &decision,
        recorded,
        started,
    );
    Ok(())
}

async fn create_proxy_resource(ctx: &Ctx<'_>, api_id: &str, root_id: &str) -> Result<String> {
    let out = ctx
        .aws
        .apigw
        .create_resource()
        .rest_api_id(api_id)
        .parent_id(root_id)
        .path_part(PROXY_PART)
        .send()
        .await
        .sdk()
        .map_err(|e| {
            e.fail(
                format!("creating resource {PROXY} of REST API {api_id}"),
                "CreateResource",
            )
        })?;
    Ok(out.id().unwrap_or_default().to_string())
}

async fn delete_method(ctx: &Ctx<'_>, api_id: &str, resource_id: &str, path: &str) -> Result<()> {
    match ctx
        .aws
        .apigw
        .delete_method()
        .rest_api_id(api_id)
        .resource_id(resource_id)
        .http_method(HTTP_METHOD)
        .send()
        .await
        .sdk()
    {
        Ok(_) => Ok(()),
        Err(e) if e.is_not_found() => Ok(()),
        Err(e) => Err(e.fail(
            format!("replacing method ANY {path} of REST API {api_id}"),
            "DeleteMethod",
        )),
    }
}

async fn put(
    ctx: &Ctx<'_>,
    api_id: &str,
    resource_id: &str,
    path: &str,
    want: &MethodSettings,
) -> Result<()> {
    ctx.aws
        .apigw
        .put_method()
        .rest_api_id(api_id)
        .resource_id(resource_id)
        .http_method(HTTP_METHOD)
        .authorization_type(&want.authorization_type)
        .authorizer_id(&want.authorizer_id)
        .set_authorization_scopes(Some(want.scopes.clone()))
        .send()
        .await
        .sdk()
        .map_err(|e| {
            e.fail(
                format!("creating method ANY {path} of REST API {api_id}"),
                "PutMethod",
            )
        })?;
    ctx.aws
        .apigw
        .put_integration()
        .rest_api_id(api_id)
        .resource_id(resource_id)
        .http_method(HTTP_METHOD)
        .r#type(IntegrationType::AwsProxy)
        .integration_http_method(&want.integration_method)
        .uri(&want.integration_uri)
        .send()
        .await
        .sdk()
        .map_err(|e| {
            e.fail(
                format!("integrating ANY {path} of REST API {api_id} with the function"),
                "PutIntegration",
            )
        })?;
    Ok(())
}
