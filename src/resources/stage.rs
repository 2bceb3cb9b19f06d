//! Deployment + stage `prod`: redeployed only when the API definition changed.
//!
//! The definition's hash is written into the deployment's description, so a run
//! without a state file can tell as well as one with it whether `prod` is current.

use std::time::Instant;

use super::{create_once, Create, Ctx, Handle, Made};
use crate::aws::SdkResultExt;
use crate::errors::Result;
use crate::plan::{decide, definition_from_description, Decision, StageSettings, DEFINITION_MARK};

pub const KIND: &str = "stage";
pub const STAGE: &str = "prod";

/// A deployment refused because another one of the API is in progress: sent again this
/// many times (backoff up to 10 s each: about two minutes). Refusals for rate are the
/// account's CreateDeployment quota, paced and waited for apart (see `quota`).
const DEPLOY_ATTEMPTS: u32 = 17;

/// The stage's settings and the deployment it serves.
async fn observe(ctx: &Ctx<'_>, api_id: &str) -> Result<Option<(StageSettings, Option<String>)>> {
    let stage = match ctx
        .aws
        .apigw
        .get_stage()
        .rest_api_id(api_id)
        .stage_name(STAGE)
        .send()
        .await
        .sdk()
    {
        Ok(s) => s,
        Err(e) if e.is_not_found() => return Ok(None),
        Err(e) => {
            return Err(e.fail(
                format!("reading stage {STAGE} of REST API {api_id}"),
                "GetStage",
            ))
        }
    };
    let Some(deployment_id) = stage.deployment_id() else {
        return Ok(Some((
            StageSettings {
                definition: String::new(),
            },
            None,
        )));
    };
    // The state file knows which definition this deployment was made from.
    if let Some(d) = ctx
        .rec
        .deployed()
        .filter(|d| d.deployment_id == deployment_id)
    {
        return Ok(Some((
            StageSettings {
                definition: d.definition,
            },
            Some(d.deployment_id),
        )));
    }
    let description = match ctx
        .aws
        .apigw
        .get_deployment()
        .rest_api_id(api_id)
        .deployment_id(deployment_id)
        .send()
        .await
        .sdk()
    {
        Ok(d) => d.description().map(str::to_string),
        Err(e) if e.is_not_found() => None,
        Err(e) => {
            return Err(e.fail(
                format!("reading deployment {deployment_id} of REST API {api_id}"),
                "GetDeployment",
            ))
        }
    };
    Ok(Some((
        StageSettings {
            definition: definition_from_description(description.as_deref()),
        },
        Some(deployment_id.to_string()),
    )))
}

/// The run's first read of the stage (see `read_once`).
pub(super) async fn first_observe(
    ctx: &Ctx<'_>,
    api_id: &str,
) -> Result<Option<(StageSettings, Option<String>)>> {
    super::read_once(ctx, format!("GetStage {api_id}"), observe(ctx, api_id)).await
}

pub async fn ensure(ctx: &Ctx<'_>, api: &Handle, definition: &str) -> Result<()> {
    let started = Instant::now();
    let recorded = ctx.rec.get(KIND).is_some();
    let want = StageSettings {
        definition: definition.to_string(),
    };
    let observed = if api.fresh {
        None
    } else {
        first_observe(ctx, &api.id).await?
    };
    let decision = decide(&want, observed.as_ref().map(|o| &o.0));
    let mut deployment_id = observed.and_then(|o| o.1);
    if ctx.apply && decision != Decision::Unchanged {
        let description = format!("{DEFINITION_MARK}{definition}");
        let made = create_once(
            Create {
                busy: |e| e.is("ConflictException"),
                attempts: DEPLOY_ATTEMPTS,
                ..Create::api_gateway(
                    format!("deploying REST API {} to stage {STAGE}", api.id),
                    "CreateDeployment",
                )
            },
            || async {
                ctx.aws
                    .once
                    .apigw
                    .create_deployment()
                    .rest_api_id(&api.id)
                    .stage_name(STAGE)
                    .description(&description)
                    .send()
                    .await
                    .sdk()
            },
            // The stage serves a deployment of this definition: our lost attempt made it.
            || async {
                Ok(observe(ctx, &api.id)
                    .await?
                    .filter(|(settings, _)| settings.definition == definition)
                    .and_then(|(_, id)| id))
            },
        )
        .await?;
        let out_id = match made {
            Made::New(out) => out.id().map(str::to_string),
            Made::Found(id) => Some(id),
        };
        deployment_id = out_id;
    }
    if ctx.apply {
        ctx.rec.set(KIND, STAGE).await?;
        if let Some(deployment_id) = deployment_id {
            ctx.rec
                .update(|s| {
                    s.deployed = Some(crate::state::Deployed {
                        deployment_id,
                        definition: definition.to_string(),
                    })
                })
                .await?;
        }
    }
    ctx.finish(KIND, STAGE, &decision, recorded, started);
    Ok(())
}
