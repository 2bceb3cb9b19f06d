//! The HTTP API's routes: for each configured HTTP method (by default `ANY`), one on
//! `/` and one on `/{proxy+}` (as the REST front's methods), each JWT-authorized with
//! that method's scopes and targeting the integration. Any other route is not
//! provision's to grant (API Gateway prefers `GET /x` over `ANY /{proxy+}`, so a route
//! without the authorizer would open part of the API): it is `extra`, and `sweep`
//! deletes it.

use std::time::Instant;

use aws_sdk_apigatewayv2::types::{AuthorizationType, Route};

use super::{create_once, Create, Ctx, Handle, Made};
use crate::aws::SdkResultExt;
use crate::consumers::MethodSpec;
use crate::errors::Result;
use crate::plan::{decide, Decision, RouteSettings};

pub const KIND: &str = "route";

/// A route that exists on the API.
#[derive(Debug, Clone)]
pub struct Existing {
    pub id: String,
    /// `VERB /path`.
    pub key: String,
    pub settings: RouteSettings,
}

pub fn route_key(verb: &str, path: &str) -> String {
    format!("{verb} {path}")
}

pub fn target(integration_id: &str) -> String {
    format!("integrations/{integration_id}")
}

pub fn desired(spec: &MethodSpec, authorizer_id: &str, integration_id: &str) -> RouteSettings {
    let mut scopes: Vec<String> = spec.scopes.iter().map(|s| s.to_string()).collect();
    scopes.sort();
    RouteSettings {
        authorization_type: AuthorizationType::Jwt.as_str().to_string(),
        authorizer_id: authorizer_id.to_string(),
        scopes,
        target: target(integration_id),
    }
}

fn observed(r: &Route) -> RouteSettings {
    let mut scopes = r.authorization_scopes().to_vec();
    scopes.sort();
    RouteSettings {
        authorization_type: r
            .authorization_type()
            .map(|t| t.as_str().to_string())
            .unwrap_or_else(|| AuthorizationType::None.as_str().to_string()),
        authorizer_id: r.authorizer_id().unwrap_or_default().to_string(),
        scopes,
        target: r.target().unwrap_or_default().to_string(),
    }
}

/// Every route of the API (GetRoutes has no paginator: `next_token` is followed).
async fn read(ctx: &Ctx<'_>, api_id: &str) -> Result<Vec<Existing>> {
    let mut all = super::every_page(|token| async move {
        let out = ctx
            .aws
            .apigw2
            .get_routes()
            .api_id(api_id)
            .set_next_token(token)
            .send()
            .await
            .sdk()
            .map_err(|e| {
                e.fail(
                    format!("reading the routes of HTTP API {api_id}"),
                    "GetRoutes",
                )
            })?;
        let items = out
            .items()
            .iter()
            .map(|r| Existing {
                id: r.route_id().unwrap_or_default().to_string(),
                key: r.route_key().unwrap_or_default().to_string(),
                settings: observed(r),
            })
            .collect();
        Ok((items, out.next_token))
    })
    .await?;
    all.sort_by(|a, b| a.key.cmp(&b.key));
    Ok(all)
}

/// The run's one read of the routes (shared by every route and the sweep). A new API
/// has none: no read.
async fn routes(ctx: &Ctx<'_>, api: &Handle) -> Result<Vec<Existing>> {
    if api.fresh {
        return Ok(Vec::new());
    }
    first_read(ctx, &api.id).await
}

/// The run's first read of the API's routes (see `read_once`).
pub(super) async fn first_read(ctx: &Ctx<'_>, api_id: &str) -> Result<Vec<Existing>> {
    super::read_once(ctx, format!("GetRoutes {api_id}"), read(ctx, api_id)).await
}

fn state_key(key: &str) -> String {
    format!("{KIND} {key}")
}

/// One route: create, update in place, or leave. Returns its id.
pub async fn ensure(
    ctx: &Ctx<'_>,
    api: &Handle,
    path: &str,
    spec: &MethodSpec,
    authorizer: &Handle,
    integration: &Handle,
) -> Result<String> {
    let started = Instant::now();
    let key = route_key(&spec.verb, path);
    let recorded = ctx.rec.get(&state_key(&key)).is_some();
    let want = desired(spec, &authorizer.id, &integration.id);
    let current = routes(ctx, api).await?.into_iter().find(|r| r.key == key);
    let decision = decide(&want, current.as_ref().map(|r| &r.settings));
    let mut id = current.as_ref().map(|r| r.id.clone()).unwrap_or_default();
    if ctx.apply {
        match &decision {
            Decision::Create => {
                let made = create_once(
                    Create::new(
                        format!("creating route {key} of HTTP API {}", api.id),
                        "CreateRoute",
                    ),
                    || async {
                        ctx.aws
                            .once
                            .apigw2
                            .create_route()
                            .api_id(&api.id)
                            .route_key(&key)
                            .authorization_type(AuthorizationType::Jwt)
                            .authorizer_id(&want.authorizer_id)
                            .set_authorization_scopes(Some(want.scopes.clone()))
                            .target(&want.target)
                            .send()
                            .await
                            .sdk()
                    },
                    // A route of this key is there: our lost attempt made it (it was
                    // absent). Its settings are checked by the next run.
                    || async {
                        let now = read(ctx, &api.id).await?;
                        Ok(now.into_iter().find(|r| r.key == key).map(|r| r.id))
                    },
                )
                .await?;
                id = match made {
                    Made::New(out) => out.route_id().unwrap_or_default().to_string(),
                    Made::Found(found) => found,
                };
            }
            Decision::Update(_) => {
                // Every field at once: UpdateRoute sets what it is given, so a route
                // that lost its authorizer gets it back with its scopes.
                ctx.aws
                    .apigw2
                    .update_route()
                    .api_id(&api.id)
                    .route_id(&id)
                    .authorization_type(AuthorizationType::Jwt)
                    .authorizer_id(&want.authorizer_id)
                    .set_authorization_scopes(Some(want.scopes.clone()))
                    .target(&want.target)
                    .send()
                    .await
                    .sdk()
                    .map_err(|e| {
                        e.fail(
                            format!("updating route {key} of HTTP API {}", api.id),
                            "UpdateRoute",
                        )
                    })?;
            }
            Decision::Unchanged => {}
        }
        ctx.rec.set(&state_key(&key), &id).await?;
    }
    ctx.finish(KIND, &key, &decision, recorded, started);
    Ok(id)
}

/// Deletes every route the configuration does not list.
pub async fn sweep(ctx: &Ctx<'_>, api: &Handle) -> Result<()> {
    let wanted: Vec<String> = ctx
        .desired
        .methods
        .iter()
        .flat_map(|m| [super::methods::ROOT, super::methods::PROXY].map(|p| route_key(&m.verb, p)))
        .collect();
    for r in routes(ctx, api).await? {
        if wanted.contains(&r.key) {
            continue;
        }
        let started = Instant::now();
        if ctx.apply {
            match ctx
                .aws
                .apigw2
                .delete_route()
                .api_id(&api.id)
                .route_id(&r.id)
                .send()
                .await
                .sdk()
            {
                Ok(_) => {}
                Err(e) if e.is_not_found() => {}
                Err(e) => {
                    return Err(e.fail(
                        format!("deleting route {} of HTTP API {}", r.key, api.id),
                        "DeleteRoute",
                    ))
                }
            }
            ctx.rec.remove(&state_key(&r.key)).await?;
        }
        ctx.finish_extra(KIND, &r.key, None, started);
    }
    Ok(())
}
