//! The HTTP API's `$default` stage, auto-deployed: every change to a route or the
//! authorizer is live without a deployment of provision's (unlike the REST front's
//! `prod`, see `stage`). Its URL has no stage in its path.

use std::time::Instant;

use super::{create_once, Create, Ctx, Handle, STACK_TAG};
use crate::aws::SdkResultExt;
use crate::errors::Result;
use crate::plan::{decide, Decision, HttpStageSettings};

pub const KIND: &str = "http_stage";
pub const STAGE: &str = "$default";

async fn observe(ctx: &Ctx<'_>, api_id: &str) -> Result<Option<HttpStageSettings>> {
    match ctx
        .aws
        .apigw2
        .get_stage()
        .api_id(api_id)
        .stage_name(STAGE)
        .send()
        .await
        .sdk()
    {
        Ok(s) => Ok(Some(HttpStageSettings {
            auto_deploy: s.auto_deploy().unwrap_or(false),
        })),
        Err(e) if e.is_not_found() => Ok(None),
        Err(e) => Err(e.fail(
            format!("reading stage {STAGE} of HTTP API {api_id}"),
            "GetStage",
        )),
    }
}

/// The run's first read of the stage (see `read_once`).
pub(super) async fn first_observe(
    ctx: &Ctx<'_>,
    api_id: &str,
) -> Result<Option<HttpStageSettings>> {
    super::read_once(ctx, format!("GetStage v2 {api_id}"), observe(ctx, api_id)).await
}

pub async fn ensure(ctx: &Ctx<'_>, api: &Handle) -> Result<()> {
    let started = Instant::now();
    let recorded = ctx.rec.get(KIND).is_some();
    let want = HttpStageSettings { auto_deploy: true };
    let observed = if api.fresh {
        None
    } else {
        first_observe(ctx, &api.id).await?
    };
    let decision = decide(&want, observed.as_ref());
    if ctx.apply {
        match &decision {
            Decision::Create => {
                create_once(
                    Create::new(
                        format!("creating stage {STAGE} of HTTP API {}", api.id),
                        "CreateStage",
                    ),
                    || async {
                        ctx.aws
                            .once
                            .apigw2
                            .create_stage()
                            .api_id(&api.id)
                            .stage_name(STAGE)
                            .auto_deploy(true)
                            .tags(STACK_TAG, ctx.tag_value())
                            .send()
                            .await
                            .sdk()
                    },
                    || async { Ok(observe(ctx, &api.id).await?.map(|_| ())) },
                )
                .await?;
            }
            Decision::Update(_) => {
                ctx.aws
                    .apigw2
                    .update_stage()
                    .api_id(&api.id)
                    .stage_name(STAGE)
                    .auto_deploy(true)
                    .send()
                    .await
                    .sdk()
                    .map_err(|e| {
                        e.fail(
                            format!("updating stage {STAGE} of HTTP API {}", api.id),
                            "UpdateStage",
                        )
                    })?;
            }
            Decision::Unchanged => {}
        }
        ctx.rec.set(KIND, STAGE).await?;
    }
    ctx.finish(KIND, STAGE, &decision, recorded, started);
    Ok(())
}
