//! The API's methods: for each configured HTTP method (by default `ANY`), one on `/` and
//! one on `/{proxy+}`, each guarded by the authorizer with that method's scopes and
//! integrated with the function (AWS_PROXY). Any other method on the API is not
//! provision's to grant: API Gateway prefers an explicit method over `ANY`, so a
//! `GET /` without the authorizer would open the API. Such a method is `extra`, and
//! `sweep` deletes it.

use std::time::Instant;

use aws_sdk_apigateway::types::{Integration, IntegrationType, Method};

use super::rest_api::Api;
use super::{create_once, Create, Ctx, Handle, Made, NEW};
use crate::aws::SdkResultExt;
use crate::consumers::MethodSpec;
use crate::errors::Result;
use crate::plan::{decide, Decision, MethodSettings};

pub const KIND: &str = "method";
pub const ROOT: &str = "/";
pub const PROXY: &str = "/{proxy+}";
const PROXY_PART: &str = "{proxy+}";
const AUTH_TYPE: &str = "COGNITO_USER_POOLS";

pub fn desired(
    ctx: &Ctx<'_>,
    spec: &MethodSpec,
    authorizer_id: &str,
    function_arn: &str,
) -> MethodSettings {
    MethodSettings {
        authorization_type: AUTH_TYPE.into(),
        authorizer_id: authorizer_id.into(),
        scopes: spec.scopes.iter().map(|s| s.to_string()).collect(),
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

/// A method that exists on the API.
#[derive(Debug, Clone)]
pub struct Existing {
    pub resource_id: String,
    pub path: String,
    pub verb: String,
    pub settings: MethodSettings,
}

/// What the API has: the ids of `/` and `/{proxy+}`, and every method on any path.
#[derive(Debug, Clone, Default)]
pub struct Surface {
    pub root_id: Option<String>,
    pub proxy_id: Option<String>,
    pub methods: Vec<Existing>,
}

impl Surface {
    fn method(&self, verb: &str, path: &str) -> Option<&Existing> {
        self.methods
            .iter()
            .find(|m| m.verb == verb && m.path == path)
    }
}

/// GetResources with the methods embedded (one request per 500 resources), and each
/// integration GetResources leaves out.
async fn read(ctx: &Ctx<'_>, api_id: &str) -> Result<Surface> {
    read_methods(ctx, api_id, true).await
}

/// `read`; without `integrations`, only which methods exist (their integrations left
/// unread): what a lookup after a lost answer needs, in one request.
async fn read_methods(ctx: &Ctx<'_>, api_id: &str, integrations: bool) -> Result<Surface> {
    let what = format!("reading the resources of REST API {api_id}");
    let out = crate::quota::send("GetResources", &what, || async {
        ctx.aws
            .apigw
            .get_resources()
            .rest_api_id(api_id)
            .limit(500)
            .embed("methods")
            .send()
            .await
            .sdk()
    })
    .await
    .map_err(|e| {
        e.fail(
            format!("reading the resources of REST API {api_id}"),
            "GetResources",
        )
    })?;
    let mut surface = Surface::default();
    for r in out.items() {
        let id = r.id().unwrap_or_default().to_string();
        let path = r.path().unwrap_or_default().to_string();
        match path.as_str() {
            ROOT => surface.root_id = Some(id.clone()),
            PROXY => surface.proxy_id = Some(id.clone()),
            _ => {}
        }
        let mut verbs: Vec<(&String, &Method)> = r
            .resource_methods()
            .map(|m| m.iter().collect())
            .unwrap_or_default();
        verbs.sort_by_key(|(v, _)| v.as_str());
        for (verb, m) in verbs {
            // GetResources may leave out the integration; ask for it then.
            let integration = if integrations && m.method_integration().is_none() {
                integration(ctx, api_id, &id, verb, &path).await?
            } else {
                None
            };
            surface.methods.push(Existing {
                resource_id: id.clone(),
                path: path.clone(),
                verb: verb.clone(),
                settings: observed(m, integration.as_ref()),
            });
        }
    }
    surface
        .methods
        .sort_by(|a, b| (&a.path, &a.verb).cmp(&(&b.path, &b.verb)));
    Ok(surface)
}

async fn integration(
    ctx: &Ctx<'_>,
    api_id: &str,
    resource_id: &str,
    verb: &str,
    path: &str,
) -> Result<Option<Integration>> {
    match ctx
        .aws
        .apigw
        .get_integration()
        .rest_api_id(api_id)
        .resource_id(resource_id)
        .http_method(verb)
        .send()
        .await
        .sdk()
    {
        Ok(i) => Ok(Some(
            Integration::builder()
                .set_type(i.r#type().cloned())
                .set_http_method(i.http_method().map(str::to_string))
                .set_uri(i.uri().map(str::to_string))
                .build(),
        )),
        Err(e) if e.is_not_found() => Ok(None),
        Err(e) => Err(e.fail(
            format!("reading the integration of {verb} {path}"),
            "GetIntegration",
        )),
    }
}

/// The run's first GetResources of an API (see `read_once`).
pub(super) async fn first_read(ctx: &Ctx<'_>, api_id: &str) -> Result<Surface> {
    super::read_once(ctx, format!("GetResources {api_id}"), read(ctx, api_id)).await
}

/// The run's one read of the API (shared by every method and the sweep). A new API has
/// nothing but its root: no read.
pub async fn surface<'c>(ctx: &'c Ctx<'_>, api: &Api) -> Result<&'c Surface> {
    ctx.api_surface
        .get_or_try_init(|| async {
            if api.handle.fresh {
                Ok(Surface {
                    root_id: api.root_id.clone(),
                    ..Surface::default()
                })
            } else {
                first_read(ctx, &api.handle.id).await
            }
        })
        .await
}

/// The id of `/` (from the API, else read).
pub async fn root_id(ctx: &Ctx<'_>, api: &Api) -> Result<String> {
    match &surface(ctx, api).await?.root_id {
        Some(id) => Ok(id.clone()),
        // Only reachable if CreateRestApi did not report the root: look it up.
        None if ctx.apply => Ok(read(ctx, &api.handle.id).await?.root_id.unwrap_or_default()),
        None => Ok(NEW.to_string()),
    }
}

/// The `/{proxy+}` resource: its id, made if missing.
pub async fn ensure_proxy_path(ctx: &Ctx<'_>, api: &Api) -> Result<String> {
    if let Some(id) = &surface(ctx, api).await?.proxy_id {
        return Ok(id.clone());
    }
    if !ctx.apply {
        return Ok(NEW.to_string());
    }
    let root = root_id(ctx, api).await?;
    let api_id = &api.handle.id;
    let made = create_once(
        Create::api_gateway(
            format!("creating resource {PROXY} of REST API {api_id}"),
            "CreateResource",
        ),
        || async {
            ctx.aws
                .once
                .apigw
                .create_resource()
                .rest_api_id(api_id)
                .parent_id(&root)
                .path_part(PROXY_PART)
                .send()
                .await
                .sdk()
        },
        || async { Ok(read(ctx, api_id).await?.proxy_id) },
    )
    .await?;
    Ok(match made {
        Made::New(out) => out.id().unwrap_or_default().to_string(),
        Made::Found(id) => id,
    })
}

fn state_key(verb: &str, path: &str) -> String {
    format!("{KIND} {verb} {path}")
}

/// One method on one path: create, replace, or leave. Returns its desired settings
/// (for the stage's definition hash).
pub async fn ensure(
    ctx: &Ctx<'_>,
    api: &Api,
    resource_id: &str,
    path: &'static str,
    spec: &MethodSpec,
    authorizer: &Handle,
    function: &Handle,
) -> Result<MethodSettings> {
    let started = Instant::now();
    let verb = spec.verb.as_str();
    let key = state_key(verb, path);
    // Before methods had verbs, the state file knew `ANY` by its path alone.
    let legacy_key = format!("{KIND} {path}");
    let recorded =
        ctx.rec.get(&key).is_some() || (verb == "ANY" && ctx.rec.get(&legacy_key).is_some());
    let want = desired(ctx, spec, &authorizer.id, &function.arn);
    let current = surface(ctx, api)
        .await?
        .method(verb, path)
        .map(|m| m.settings.clone());
    let decision = decide(&want, current.as_ref());
    if ctx.apply {
        if decision != Decision::Unchanged {
            if matches!(decision, Decision::Update(_)) {
                delete_method(ctx, &api.handle.id, resource_id, verb, path).await?;
            }
            put(ctx, &api.handle.id, resource_id, verb, path, &want).await?;
        }
        ctx.rec.set(&key, resource_id).await?;
        ctx.rec.remove(&legacy_key).await?;
    }
    ctx.finish(
        KIND,
        &format!("{verb} {path}"),
        &decision,
        recorded,
        started,
    );
    Ok(want)
}

/// Deletes every method on the API that the configuration does not list.
pub async fn sweep(ctx: &Ctx<'_>, api: &Api) -> Result<()> {
    let surface = surface(ctx, api).await?;
    for m in &surface.methods {
        let wanted = matches!(m.path.as_str(), ROOT | PROXY)
            && ctx.desired.methods.iter().any(|d| d.verb == m.verb);
        if wanted {
            continue;
        }
        let started = Instant::now();
        if ctx.apply {
            delete_method(ctx, &api.handle.id, &m.resource_id, &m.verb, &m.path).await?;
            ctx.rec.remove(&state_key(&m.verb, &m.path)).await?;
        }
        ctx.finish_extra(KIND, &format!("{} {}", m.verb, m.path), None, started);
    }
    Ok(())
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
    verb: &str,
    path: &str,
    want: &MethodSettings,
) -> Result<()> {
    create_once(
        Create::new(
            format!("creating method {verb} {path} of REST API {api_id}"),
            "PutMethod",
        ),
        || async {
            ctx.aws
                .once
                .apigw
                .put_method()
                .rest_api_id(api_id)
                .resource_id(resource_id)
                .http_method(verb)
                .authorization_type(&want.authorization_type)
                .authorizer_id(&want.authorizer_id)
                .set_authorization_scopes(Some(want.scopes.clone()))
                .send()
                .await
                .sdk()
        },
        // The method is there: our lost attempt made it (it was absent or deleted).
        || async {
            let now = read_methods(ctx, api_id, false).await?;
            Ok(now.method(verb, path).map(|_| ()))
        },
    )
    .await?;
    // PutIntegration replaces what is there: the SDK's retries are safe for it.
    ctx.aws
        .apigw
        .put_integration()
        .rest_api_id(api_id)
        .resource_id(resource_id)
        .http_method(verb)
        .r#type(IntegrationType::AwsProxy)
        .integration_http_method(&want.integration_method)
        .uri(&want.integration_uri)
        .send()
        .await
        .sdk()
        .map_err(|e| {
            e.fail(
                format!("integrating {verb} {path} of REST API {api_id} with the function"),
                "PutIntegration",
            )
        })?;
    Ok(())
}
