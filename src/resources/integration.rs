//! The HTTP API's one integration: the function, AWS_PROXY, payload format 2.0. Every
//! route targets it. Integrations have no name: ours is the one the state records,
//! else the one that invokes the stack's function.

use std::time::Instant;

use aws_sdk_apigatewayv2::types::{Integration, IntegrationType};

use super::{create_once, Create, Ctx, Handle, Made, NEW};
use crate::aws::SdkResultExt;
use crate::errors::Result;
use crate::plan::{decide, Decision, IntegrationSettings};

pub const KIND: &str = "integration";
pub const PAYLOAD_FORMAT: &str = "2.0";

pub fn desired(function_arn: &str) -> IntegrationSettings {
    IntegrationSettings {
        integration_type: IntegrationType::AwsProxy.as_str().to_string(),
        uri: function_arn.to_string(),
        payload_format_version: PAYLOAD_FORMAT.to_string(),
    }
}

fn observed(i: &Integration) -> IntegrationSettings {
    IntegrationSettings {
        integration_type: i
            .integration_type()
            .map(|t| t.as_str().to_string())
            .unwrap_or_default(),
        uri: i.integration_uri().unwrap_or_default().to_string(),
        payload_format_version: i.payload_format_version().unwrap_or_default().to_string(),
    }
}

/// Every integration of the API: (id, settings).
async fn read(ctx: &Ctx<'_>, api_id: &str) -> Result<Vec<(String, IntegrationSettings)>> {
    super::every_page(|token| async move {
        let out = ctx
            .aws
            .apigw2
            .get_integrations()
            .api_id(api_id)
            .set_next_token(token)
            .send()
            .await
            .sdk()
            .map_err(|e| {
                e.fail(
                    format!("reading the integrations of HTTP API {api_id}"),
                    "GetIntegrations",
                )
            })?;
        let items = out
            .items()
            .iter()
            .map(|i| {
                (
                    i.integration_id().unwrap_or_default().to_string(),
                    observed(i),
                )
            })
            .collect();
        Ok((items, out.next_token))
    })
    .await
}

/// The run's first read of the API's integrations (see `read_once`).
pub(super) async fn first_read(
    ctx: &Ctx<'_>,
    api_id: &str,
) -> Result<Vec<(String, IntegrationSettings)>> {
    super::read_once(ctx, format!("GetIntegrations {api_id}"), read(ctx, api_id)).await
}

/// Ours among `all`: the recorded one, else one that invokes the function.
fn ours(
    all: Vec<(String, IntegrationSettings)>,
    recorded: Option<&str>,
    function_arn: &str,
) -> Option<(String, IntegrationSettings)> {
    let mut all = all;
    if let Some(at) = recorded.and_then(|r| all.iter().position(|(id, _)| id == r)) {
        return Some(all.swap_remove(at));
    }
    all.into_iter().find(|(_, s)| s.uri == function_arn)
}

pub async fn ensure(ctx: &Ctx<'_>, api: &Handle, function: &Handle) -> Result<Handle> {
    let started = Instant::now();
    let recorded_id = ctx.rec.get(KIND);
    let want = desired(&function.arn);
    let found = if api.fresh {
        None
    } else {
        let all = first_read(ctx, &api.id).await?;
        ours(all, recorded_id.as_deref(), &function.arn)
    };
    let recorded = recorded_id.is_some() && found.as_ref().map(|f| &f.0) == recorded_id.as_ref();
    let decision = decide(&want, found.as_ref().map(|f| &f.1));
    let mut id = found
        .as_ref()
        .map(|f| f.0.clone())
        .unwrap_or_else(|| NEW.to_string());
    if ctx.apply {
        match &decision {
            Decision::Create => {
                let made = create_once(
                    Create::new(
                        format!("integrating HTTP API {} with the function", api.id),
                        "CreateIntegration",
                    ),
                    || async {
                        ctx.aws
                            .once
                            .apigw2
                            .create_integration()
                            .api_id(&api.id)
                            .integration_type(IntegrationType::AwsProxy)
                            .integration_uri(&want.uri)
                            .payload_format_version(PAYLOAD_FORMAT)
                            .send()
                            .await
                            .sdk()
                    },
                    // One that invokes the function: our lost attempt made it.
                    || async {
                        Ok(ours(read(ctx, &api.id).await?, None, &function.arn).map(|(id, _)| id))
                    },
                )
                .await?;
                id = match made {
                    Made::New(out) => out.integration_id().unwrap_or_default().to_string(),
                    Made::Found(found) => found,
                };
            }
            Decision::Update(_) => {
                ctx.aws
                    .apigw2
                    .update_integration()
                    .api_id(&api.id)
                    .integration_id(&id)
                    .integration_type(IntegrationType::AwsProxy)
                    .integration_uri(&want.uri)
                    .payload_format_version(PAYLOAD_FORMAT)
                    .send()
                    .await
                    .sdk()
                    .map_err(|e| {
                        e.fail(
                            format!("updating integration {id} of HTTP API {}", api.id),
                            "UpdateIntegration",
                        )
                    })?;
            }
            Decision::Unchanged => {}
        }
        ctx.rec.set(KIND, &id).await?;
    }
    // A new one has no id yet: shown by what it invokes.
    ctx.finish(
        KIND,
        &super::shown(&id, &ctx.function_name()),
        &decision,
        recorded,
        started,
    );
    Ok(Handle::new(id.clone(), id, found.is_none()))
}
