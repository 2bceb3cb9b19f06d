//! `ANY /` and `ANY /{proxy+}`: guarded by the authorizer with the stack's scopes,
//! integrated with the function (AWS_PROXY). Any other method on the API is not
//! provision's to grant: API Gateway prefers an explicit method over `ANY`, so a `GET /`
//! without the authorizer would open the API. Such a method is `extra`, and `up`
//! deletes it.

use std::time::Instant;

use aws_sdk_apigateway::types::{Integration, IntegrationType, Method};

use super::{create_once, Create, Ctx, Handle, Made, NEW};
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

/// A method on the API that is not ours: (resource id, path, HTTP method).
type Extra = (String, String, String);

async fn read(ctx: &Ctx<'_>, api_id: &str) -> Result<(PathState, PathState, Vec<Extra>)> {
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
    let mut extras = Vec::new();
    for r in out.items() {
        let id = r.id().unwrap_or_default().to_string();
        let path = r.path().unwrap_or_default();
        for verb in r.resource_methods().into_iter().flat_map(|m| m.keys()) {
            if verb != HTTP_METHOD || !matches!(path, ROOT | PROXY) {
                extras.push((id.clone(), path.to_string(), verb.clone()));
            }
        }
        let slot = match path {
            ROOT => &mut root,
            PROXY => &mut proxy,
            _ => continue,
        };
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
    extras.sort_by(|a, b| (&a.1, &a.2).cmp(&(&b.1, &b.2)));
    Ok((root, proxy, extras))
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
    let (mut root, proxy, extras) = if api.fresh {
        (
            PathState {
                resource_id: root_id.map(str::to_string),
                method: None,
            },
            PathState::default(),
            Vec::new(),
        )
    } else {
        read(ctx, &api.id).await?
    };
    if root.resource_id.is_none() && ctx.apply {
        // Only reachable if CreateRestApi did not report the root: look it up.
        root = read(ctx, &api.id).await?.0;
    }
    for (resource_id, path, verb) in &extras {
        let started = Instant::now();
        if ctx.apply {
            delete_method(ctx, &api.id, resource_id, verb, path).await?;
        }
        ctx.finish_extra(KIND, &format!("{verb} {path}"), started);
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
            delete_method(ctx, &api.id, &resource_id, HTTP_METHOD, path).await?;
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
    let made = create_once(
        Create::new(
            format!("creating resource {PROXY} of REST API {api_id}"),
            "CreateResource",
        ),
        || async {
            ctx.aws
                .once
                .apigw
                .create_resource()
                .rest_api_id(api_id)
                .parent_id(root_id)
                .path_part(PROXY_PART)
                .send()
                .await
                .sdk()
        },
        || async { Ok(read(ctx, api_id).await?.1.resource_id) },
    )
    .await?;
    Ok(match made {
        Made::New(out) => out.id().unwrap_or_default().to_string(),
        Made::Found(id) => id,
    })
}

async fn delete_method(
    ctx: &Ctx<'_>,
    api_id: &str,
    resource_id: &str,
    verb: &str,
    path: &str,
) -> Result<()> {
    match ctx
        .aws
        .apigw
        .delete_method()
        .rest_api_id(api_id)
        .resource_id(resource_id)
        .http_method(verb)
        .send()
        .await
        .sdk()
    {
        Ok(_) => Ok(()),
        Err(e) if e.is_not_found() => Ok(()),
        Err(e) => Err(e.fail(
            format!("deleting method {verb} {path} of REST API {api_id}"),
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
    create_once(
        Create::new(
            format!("creating method ANY {path} of REST API {api_id}"),
            "PutMethod",
        ),
        || async {
            ctx.aws
                .once
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
        },
        // The method is there: our lost attempt made it (it was absent or deleted).
        || async {
            let (root, proxy, _) = read(ctx, api_id).await?;
            let slot = if path == ROOT { root } else { proxy };
            Ok(slot.method.map(|_| ()))
        },
    )
    .await?;
    // PutIntegration replaces what is there: the SDK's retries are safe for it.
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
