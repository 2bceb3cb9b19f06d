//! The REST API (API Gateway v1), regional.

use std::collections::HashMap;
use std::time::Instant;

use aws_sdk_apigateway::types::{EndpointConfiguration, EndpointType, RestApi};

use super::{check_owner, create_once, shown, Create, Ctx, Handle, Made, NEW, STACK_TAG};
use crate::aws::SdkResultExt;
use crate::errors::{Error, Result};
use crate::plan::{decide, ApiSettings, Decision};

pub const KIND: &str = "rest_api";

#[derive(Debug, Clone)]
pub struct Found {
    pub id: String,
    pub tags: HashMap<String, String>,
    pub root_id: Option<String>,
    pub settings: ApiSettings,
}

fn settings(types: &[EndpointType]) -> ApiSettings {
    let mut endpoint_types: Vec<String> = types.iter().map(|t| t.as_str().to_string()).collect();
    endpoint_types.sort();
    ApiSettings { endpoint_types }
}

async fn get(ctx: &Ctx<'_>, id: &str) -> Result<Option<Found>> {
    match ctx
        .aws
        .apigw
        .get_rest_api()
        .rest_api_id(id)
        .send()
        .await
        .sdk()
    {
        Ok(out) if out.name() == Some(ctx.api_name().as_str()) => Ok(Some(Found {
            id: id.to_string(),
            tags: out.tags().cloned().unwrap_or_default(),
            root_id: out.root_resource_id().map(str::to_string),
            settings: settings(
                out.endpoint_configuration()
                    .map(|c| c.types())
                    .unwrap_or_default(),
            ),
        })),
        Ok(_) => Ok(None),
        Err(e) if e.is_not_found() => Ok(None),
        Err(e) => Err(e.fail(format!("reading REST API {id}"), "GetRestApi")),
    }
}

/// The API at `id` whatever its name: (name, tags); None when there is none.
pub async fn owner_of(
    ctx: &Ctx<'_>,
    id: &str,
) -> Result<Option<(String, HashMap<String, String>)>> {
    match ctx
        .aws
        .apigw
        .get_rest_api()
        .rest_api_id(id)
        .send()
        .await
        .sdk()
    {
        Ok(out) => Ok(Some((
            out.name().unwrap_or_default().to_string(),
            out.tags().cloned().unwrap_or_default(),
        ))),
        Err(e) if e.is_not_found() => Ok(None),
        Err(e) => Err(e.fail(format!("reading REST API {id}"), "GetRestApi")),
    }
}

/// The API: by the recorded id, else by name (checking its tag).
pub async fn find(ctx: &Ctx<'_>) -> Result<Option<Found>> {
    if let Some(id) = ctx.rec.get(KIND) {
        if let Some(found) = first_get(ctx, &id).await? {
            return Ok(Some(found));
        }
    }
    find_by_name(ctx).await
}

/// The run's first read of an API (see `read_once`).
pub(super) async fn first_get(ctx: &Ctx<'_>, id: &str) -> Result<Option<Found>> {
    super::read_once(ctx, format!("GetRestApi {id}"), get(ctx, id)).await
}

/// The one API named for this stack (an error when there are several).
async fn find_by_name(ctx: &Ctx<'_>) -> Result<Option<Found>> {
    super::the_one(find_all(ctx).await?, "REST APIs", &ctx.api_name(), |a| {
        &a.id
    })
}

/// Every REST API of the account and region, tags included: one request per 500
/// (refusals for rate waited out, see `quota`). The stack's lookup and `list` both read it.
pub async fn list_all(aws: &crate::aws::Aws, doing: &str) -> Result<Vec<RestApi>> {
    let mut position: Option<String> = None;
    let mut all = Vec::new();
    loop {
        let out = crate::quota::send("GetRestApis", doing, || async {
            aws.apigw
                .get_rest_apis()
                .limit(500)
                .set_position(position.clone())
                .send()
                .await
                .sdk()
        })
        .await
        .map_err(|e| e.fail(doing, "GetRestApis"))?;
        position = out.position().filter(|p| !p.is_empty()).map(str::to_string);
        all.extend(out.items.unwrap_or_default());
        if position.is_none() {
            return Ok(all);
        }
    }
}

/// Every API named for this stack, each checked to be tagged for it (API Gateway
/// accepts duplicate names).
pub async fn find_all(ctx: &Ctx<'_>) -> Result<Vec<Found>> {
    let name = ctx.api_name();
    let all = named(ctx).await?;
    for api in &all {
        check_owner(
            Some(&api.tags),
            ctx.stack,
            &format!("REST API {name} ({})", api.id),
        )?;
    }
    Ok(all)
}

/// Every API named for this stack, whoever's it is (`down` deletes those tagged for
/// the stack, duplicates included, and keeps the others).
pub async fn named(ctx: &Ctx<'_>) -> Result<Vec<Found>> {
    let name = ctx.api_name();
    let mut ours = Vec::new();
    for api in list_all(ctx.aws, &format!("looking for REST API {name}"))
        .await?
        .iter()
        .filter(|a| a.name() == Some(name.as_str()))
    {
        let id = api.id().unwrap_or_default().to_string();
        ours.push(Found {
            id,
            tags: api.tags().cloned().unwrap_or_default(),
            root_id: api.root_resource_id().map(str::to_string),
            settings: settings(
                api.endpoint_configuration()
                    .map(|c| c.types())
                    .unwrap_or_default(),
            ),
        });
    }
    Ok(ours)
}

#[derive(Debug, Clone)]
pub struct Api {
    pub handle: Handle,
    /// The id of `/`, when known without a read.
    pub root_id: Option<String>,
}

pub async fn ensure(ctx: &Ctx<'_>) -> Result<Api> {
    let started = Instant::now();
    let name = ctx.api_name();
    let recorded = ctx.rec.get(KIND).is_some();
    let found = find(ctx).await?;
    if let Some(f) = &found {
        check_owner(
            Some(&f.tags),
            ctx.stack,
            &format!("REST API {name} ({})", f.id),
        )?;
    }
    let want = ApiSettings {
        endpoint_types: vec![EndpointType::Regional.as_str().to_string()],
    };
    let decision = decide(&want, found.as_ref().map(|f| &f.settings));
    let (id, root_id) = match (&decision, &found) {
        (Decision::Create, _) if ctx.apply => {
            let made = create_once(
                Create::api_gateway(format!("creating REST API {name}"), "CreateRestApi"),
                || async {
                    ctx.aws
                        .once
                        .apigw
                        .create_rest_api()
                        .name(&name)
                        .description(format!("API of provision stack {}", ctx.stack))
                        .endpoint_configuration(
                            EndpointConfiguration::builder()
                                .types(EndpointType::Regional)
                                .build(),
                        )
                        .tags(STACK_TAG, ctx.tag_value())
                        .send()
                        .await
                        .sdk()
                },
                || find_by_name(ctx),
            )
            .await?;
            match made {
                Made::New(out) => (
                    out.id().unwrap_or_default().to_string(),
                    out.root_resource_id().map(str::to_string),
                ),
                Made::Found(f) => (f.id, f.root_id),
            }
        }
        (Decision::Create, _) => (NEW.to_string(), None),
        (Decision::Update(_), Some(f)) if ctx.apply => {
            return Err(Error::usage(format!(
                "REST API {} is not REGIONAL ({}); provision does not change an API's endpoint type: delete it (`provision down`) and run `up` again",
                f.id,
                f.settings.endpoint_types.join(", ")
            )));
        }
        (_, Some(f)) => (f.id.clone(), f.root_id.clone()),
        (_, None) => unreachable!("only Create has nothing observed"),
    };
    if ctx.apply {
        ctx.rec.set(KIND, &id).await?;
    }
    ctx.finish(KIND, &shown(&id, &name), &decision, recorded, started);
    Ok(Api {
        handle: Handle::new(id.clone(), id, found.is_none()),
        root_id,
    })
}

/// Deletes one API. `DeleteRestApi` is API Gateway's scarcest operation (one per 30 s
/// per account): paced and, when other processes use the quota up, waited for (see
/// `quota`). Sent again (it is idempotent) when the answer is lost or a deployment is
/// in progress; "not found" after a lost answer means our earlier attempt did it.
pub async fn delete(ctx: &Ctx<'_>, id: &str) -> Result<bool> {
    let what = format!("deleting REST API {id} of stack {}", ctx.stack);
    super::delete_api(&what, "DeleteRestApi", || async {
        ctx.aws
            .once
            .apigw
            .delete_rest_api()
            .rest_api_id(id)
            .send()
            .await
            .sdk()
            .map(|_| ())
    })
    .await
}
