//! The HTTP API (API Gateway v2), the cheaper front door (`front = "http"`).

use std::collections::HashMap;
use std::time::Instant;

use aws_sdk_apigatewayv2::types::{Api, ProtocolType};

use super::{check_owner, create_once, shown, Create, Ctx, Handle, Made, NEW, STACK_TAG};
use crate::aws::SdkResultExt;
use crate::errors::{Error, Result};
use crate::plan::{decide, Decision, HttpApiSettings};

pub const KIND: &str = "http_api";

#[derive(Debug, Clone)]
pub struct Found {
    pub id: String,
    pub name: String,
    pub tags: HashMap<String, String>,
    pub settings: HttpApiSettings,
}

fn found(api: &Api) -> Found {
    Found {
        id: api.api_id().unwrap_or_default().to_string(),
        name: api.name().unwrap_or_default().to_string(),
        tags: api.tags().cloned().unwrap_or_default(),
        settings: HttpApiSettings {
            protocol: api
                .protocol_type()
                .map(|p| p.as_str().to_string())
                .unwrap_or_default(),
        },
    }
}

/// The API at `id` whatever its name; None when there is none.
pub async fn by_id(ctx: &Ctx<'_>, id: &str) -> Result<Option<Found>> {
    match ctx.aws.apigw2.get_api().api_id(id).send().await.sdk() {
        Ok(out) => Ok(Some(Found {
            id: id.to_string(),
            name: out.name().unwrap_or_default().to_string(),
            tags: out.tags().cloned().unwrap_or_default(),
            settings: HttpApiSettings {
                protocol: out
                    .protocol_type()
                    .map(|p| p.as_str().to_string())
                    .unwrap_or_default(),
            },
        })),
        Err(e) if e.is_not_found() => Ok(None),
        Err(e) => Err(e.fail(format!("reading HTTP API {id}"), "GetApi")),
    }
}

/// The API: by the recorded id (when it still has the stack's name), else by name.
pub async fn find(ctx: &Ctx<'_>) -> Result<Option<Found>> {
    if let Some(id) = ctx.rec.get(KIND) {
        let read = first_get(ctx, &id).await?;
        if let Some(f) = read.filter(|f| f.name == ctx.api_name()) {
            return Ok(Some(f));
        }
    }
    find_by_name(ctx).await
}

/// The run's first read of an API (see `read_once`).
pub(super) async fn first_get(ctx: &Ctx<'_>, id: &str) -> Result<Option<Found>> {
    super::read_once(ctx, format!("GetApi {id}"), by_id(ctx, id)).await
}

async fn find_by_name(ctx: &Ctx<'_>) -> Result<Option<Found>> {
    let all = named(ctx).await?;
    for api in &all {
        check_owner(
            Some(&api.tags),
            ctx.stack,
            &format!("HTTP API {} ({})", api.name, api.id),
        )?;
    }
    super::the_one(all, "HTTP APIs", &ctx.api_name(), |a| &a.id)
}

/// Every HTTP API of the account and region, tags included (GetApis carries them).
/// The SDK has no paginator for it: the pages are followed by `next_token` (v2 documents
/// no largest page size, so none is asked for; the same for routes and integrations).
pub async fn list_all(aws: &crate::aws::Aws, doing: &str) -> Result<Vec<Api>> {
    super::every_page(|token| async move {
        let out = crate::quota::send("GetApis", doing, || async {
            aws.apigw2
                .get_apis()
                .set_next_token(token.clone())
                .send()
                .await
                .sdk()
        })
        .await
        .map_err(|e| e.fail(doing, "GetApis"))?;
        Ok((out.items.unwrap_or_default(), out.next_token))
    })
    .await
}

/// Every HTTP API named for this stack, whoever's it is (`down` deletes those tagged
/// for the stack, duplicates included, and keeps the others).
pub async fn named(ctx: &Ctx<'_>) -> Result<Vec<Found>> {
    let name = ctx.api_name();
    Ok(list_all(ctx.aws, &format!("looking for HTTP API {name}"))
        .await?
        .iter()
        .filter(|a| a.name() == Some(name.as_str()))
        .map(found)
        .collect())
}

pub async fn ensure(ctx: &Ctx<'_>) -> Result<Handle> {
    let started = Instant::now();
    let name = ctx.api_name();
    let recorded = ctx.rec.get(KIND).is_some();
    let found = find(ctx).await?;
    if let Some(f) = &found {
        check_owner(
            Some(&f.tags),
            ctx.stack,
            &format!("HTTP API {name} ({})", f.id),
        )?;
    }
    let want = HttpApiSettings {
        protocol: ProtocolType::Http.as_str().to_string(),
    };
    let decision = decide(&want, found.as_ref().map(|f| &f.settings));
    let id = match (&decision, &found) {
        (Decision::Create, _) if ctx.apply => {
            let made = create_once(
                Create::api_gateway(format!("creating HTTP API {name}"), "CreateApi"),
                || async {
                    ctx.aws
                        .once
                        .apigw2
                        .create_api()
                        .name(&name)
                        .protocol_type(ProtocolType::Http)
                        .description(format!("API of provision stack {}", ctx.stack))
                        .tags(STACK_TAG, ctx.tag_value())
                        .send()
                        .await
                        .sdk()
                },
                || find_by_name(ctx),
            )
            .await?;
            match made {
                Made::New(out) => out.api_id().unwrap_or_default().to_string(),
                Made::Found(f) => f.id,
            }
        }
        (Decision::Create, _) => NEW.to_string(),
        (Decision::Update(_), Some(f)) => {
            return Err(Error::usage(format!(
                "API {} named {name} is a {} API, not HTTP; provision does not change an API's protocol: delete it and run `up` again",
                f.id, f.settings.protocol
            )));
        }
        (_, Some(f)) => f.id.clone(),
        (_, None) => unreachable!("only Create has nothing observed"),
    };
    if ctx.apply {
        ctx.rec.set(KIND, &id).await?;
    }
    ctx.finish(KIND, &shown(&id, &name), &decision, recorded, started);
    Ok(Handle::new(id.clone(), id, found.is_none()))
}

/// Deletes one HTTP API (its routes, integrations, authorizers and stages go with it);
/// false when it was not there. Sent again when the answer is lost; "not found" after
/// a lost answer means our earlier attempt did it.
pub async fn delete(ctx: &Ctx<'_>, id: &str) -> Result<bool> {
    let what = format!("deleting HTTP API {id} of stack {}", ctx.stack);
    super::delete_api(&what, "DeleteApi", || async {
        ctx.aws
            .once
            .apigw2
            .delete_api()
            .api_id(id)
            .send()
            .await
            .sdk()
            .map(|_| ())
    })
    .await
}

/// The base URL of the `$default` stage, ending in `/` (no stage in the path on AWS;
/// the emulator serves it under `/_aws/execute-api/<id>/$default/`).
pub fn url(endpoint_url: Option<&str>, api_id: &str, region: &str) -> String {
    match endpoint_url {
        Some(e) => format!(
            "{}/_aws/execute-api/{api_id}/{}/",
            e.trim_end_matches('/'),
            super::http_stage::STAGE
        ),
        None => format!("https://{api_id}.execute-api.{region}.amazonaws.com/"),
    }
}

#[cfg(test)]
mod tests {
    use aws_sdk_apigatewayv2::operation::get_apis::GetApisOutput;
    use aws_smithy_mocks::mock;

    use super::super::mocked::fixture;
    use super::*;

    fn api(id: &str, name: &str, stack: &str) -> Api {
        Api::builder()
            .api_id(id)
            .name(name)
            .protocol_type(ProtocolType::Http)
            .route_selection_expression("${request.method} ${request.path}")
            .tags(STACK_TAG, stack)
            .build()
    }

    /// AWS pages GetApis (the emulator does not): every page is read, by `next_token`,
    /// and the stack's API on the second page is found.
    #[tokio::test]
    async fn every_page_of_get_apis_is_read() {
        let first = mock!(aws_sdk_apigatewayv2::Client::get_apis)
            .match_requests(|r| r.next_token().is_none())
            .then_output(|| {
                GetApisOutput::builder()
                    .items(api("a1", "other-api", "other"))
                    .next_token("page-2")
                    .build()
            });
        let second = mock!(aws_sdk_apigatewayv2::Client::get_apis)
            .match_requests(|r| r.next_token() == Some("page-2"))
            .then_output(|| {
                GetApisOutput::builder()
                    .items(api("b2", "s-api", "s"))
                    .build()
            });
        let f = fixture(vec![("apigateway", first), ("apigateway", second)]).await;
        let ctx = f.ctx();
        let all = list_all(ctx.aws, "test").await.unwrap();
        assert_eq!(all.len(), 2);
        let found = find(&ctx)
            .await
            .unwrap()
            .expect("the stack's API, on page 2");
        assert_eq!(found.id, "b2");
        assert_eq!(found.settings.protocol, "HTTP");
    }
}
