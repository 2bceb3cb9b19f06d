//! The HTTP API's JWT authorizer: Cognito access tokens of the stack's pool, from
//! `Authorization`, for any of the stack's app clients.

use std::time::Instant;

use aws_sdk_apigatewayv2::types::{AuthorizerType, JwtConfiguration};

use super::{create_once, shown, Create, Ctx, Handle, Made, NEW};
use crate::aws::SdkResultExt;
use crate::errors::Result;
use crate::plan::{decide, Decision, JwtSettings};

pub const KIND: &str = "jwt_authorizer";
pub const IDENTITY_SOURCE: &str = "$request.header.Authorization";

/// The `iss` Cognito puts in the pool's tokens (MiniStack too).
pub fn issuer(region: &str, pool_id: &str) -> String {
    format!("https://cognito-idp.{region}.amazonaws.com/{pool_id}")
}

pub fn desired(region: &str, pool_id: &str, client_ids: &[String]) -> JwtSettings {
    let mut audience = client_ids.to_vec();
    audience.sort();
    audience.dedup();
    JwtSettings {
        kind: AuthorizerType::Jwt.as_str().to_string(),
        identity_source: vec![IDENTITY_SOURCE.to_string()],
        issuer: issuer(region, pool_id),
        audience,
    }
}

/// One page: an HTTP API has at most 10 authorizers (a hard limit), fewer than a page.
async fn find(ctx: &Ctx<'_>, api_id: &str) -> Result<Option<(String, JwtSettings)>> {
    let name = ctx.authorizer_name();
    let out = ctx
        .aws
        .apigw2
        .get_authorizers()
        .api_id(api_id)
        .send()
        .await
        .sdk()
        .map_err(|e| {
            e.fail(
                format!("reading the authorizers of HTTP API {api_id}"),
                "GetAuthorizers",
            )
        })?;
    Ok(out
        .items()
        .iter()
        .find(|a| a.name() == Some(name.as_str()))
        .map(|a| {
            let jwt = a.jwt_configuration();
            let mut audience = jwt.map(|j| j.audience().to_vec()).unwrap_or_default();
            audience.sort();
            (
                a.authorizer_id().unwrap_or_default().to_string(),
                JwtSettings {
                    kind: a
                        .authorizer_type()
                        .map(|t| t.as_str().to_string())
                        .unwrap_or_default(),
                    identity_source: a.identity_source().to_vec(),
                    issuer: jwt.and_then(|j| j.issuer()).unwrap_or_default().to_string(),
                    audience,
                },
            )
        }))
}

/// The run's first read of the API's authorizers (see `read_once`).
pub(super) async fn first_find(
    ctx: &Ctx<'_>,
    api_id: &str,
) -> Result<Option<(String, JwtSettings)>> {
    let key = format!("GetAuthorizers v2 {api_id}");
    super::read_once(ctx, key, find(ctx, api_id)).await
}

fn jwt(want: &JwtSettings) -> JwtConfiguration {
    JwtConfiguration::builder()
        .issuer(&want.issuer)
        .set_audience(Some(want.audience.clone()))
        .build()
}

/// `client_ids`: every app client of the stack (the audience).
pub async fn ensure(
    ctx: &Ctx<'_>,
    api: &Handle,
    pool: &Handle,
    client_ids: &[String],
) -> Result<Handle> {
    let started = Instant::now();
    let recorded_id = ctx.rec.get(KIND);
    let want = desired(ctx.region, &pool.id, client_ids);
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
    let name = ctx.authorizer_name();
    if ctx.apply {
        match &decision {
            Decision::Create => {
                let made = create_once(
                    Create::new(
                        format!("creating JWT authorizer {name}"),
                        "CreateAuthorizer",
                    ),
                    || async {
                        ctx.aws
                            .once
                            .apigw2
                            .create_authorizer()
                            .api_id(&api.id)
                            .name(&name)
                            .authorizer_type(AuthorizerType::Jwt)
                            .identity_source(IDENTITY_SOURCE)
                            .jwt_configuration(jwt(&want))
                            .send()
                            .await
                            .sdk()
                    },
                    || async { Ok(find(ctx, &api.id).await?.map(|(id, _)| id)) },
                )
                .await?;
                id = match made {
                    Made::New(out) => out.authorizer_id().unwrap_or_default().to_string(),
                    Made::Found(found) => found,
                };
            }
            Decision::Update(_) => {
                // The JWT configuration goes whole, issuer and audience together: an
                // update with only one of them replaces the other with nothing
                // (MiniStack; AWS merges, so sending both is right for both).
                ctx.aws
                    .apigw2
                    .update_authorizer()
                    .api_id(&api.id)
                    .authorizer_id(&id)
                    .authorizer_type(AuthorizerType::Jwt)
                    .identity_source(IDENTITY_SOURCE)
                    .jwt_configuration(jwt(&want))
                    .send()
                    .await
                    .sdk()
                    .map_err(|e| {
                        e.fail(
                            format!("updating JWT authorizer {name} of HTTP API {}", api.id),
                            "UpdateAuthorizer",
                        )
                    })?;
            }
            Decision::Unchanged => {}
        }
        ctx.rec.set(KIND, &id).await?;
    }
    ctx.finish(KIND, &shown(&id, &name), &decision, recorded, started);
    Ok(Handle::new(id.clone(), id, found.is_none()))
}
