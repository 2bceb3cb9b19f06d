//! `prune`'s second look, under the stack's lock: the stack was chosen from a listing
//! that may be minutes old (DeleteRestApi is paced 31 s apart), and someone may have
//! taken it down and made it again since. Its age is read again, for this stack only:
//! the REST APIs (one listing carries their tags and creation dates), the pools of its
//! name (a listing, then each one's tags), its function and its role by name.

use aws_sdk_iam::types::Tag;

use crate::aws::{Aws, SdkResultExt};
use crate::errors::Result;
use crate::resources::{rest_api, role, user_pool, STACK_TAG};

/// The earliest creation time (unix seconds) among the stack's tagged resources now;
/// None when none is there or none says.
pub(super) async fn created_now(aws: &Aws, region: &str, stack: &str) -> Result<Option<i64>> {
    let (apis, pools, function, role) = tokio::try_join!(
        apis(aws, stack),
        pools(aws, stack),
        function(aws, stack),
        role(aws, region, stack),
    )?;
    Ok(apis
        .into_iter()
        .chain(pools)
        .chain(function)
        .chain(role)
        .min())
}

fn ours(tag: Option<&str>, stack: &str) -> bool {
    tag == Some(stack)
}

async fn apis(aws: &Aws, stack: &str) -> Result<Vec<i64>> {
    let name = format!("{stack}-api");
    Ok(
        rest_api::list_all(aws, &format!("looking for REST API {name}"))
            .await?
            .iter()
            .filter(|a| a.name() == Some(name.as_str()))
            .filter(|a| {
                ours(
                    a.tags().and_then(|t| t.get(STACK_TAG)).map(String::as_str),
                    stack,
                )
            })
            .filter_map(|a| a.created_date().map(|d| d.secs()))
            .collect(),
    )
}

async fn pools(aws: &Aws, stack: &str) -> Result<Vec<i64>> {
    let name = format!("{stack}-pool");
    let ids: Vec<String> = user_pool::list_all(aws, &format!("looking for user pool {name}"))
        .await?
        .iter()
        .filter(|p| p.name() == Some(name.as_str()))
        .filter_map(|p| p.id().map(str::to_string))
        .collect();
    let mut created = Vec::new();
    for id in ids {
        let out = match aws
            .cognito
            .describe_user_pool()
            .user_pool_id(&id)
            .send()
            .await
            .sdk()
        {
            Ok(out) => out,
            Err(e) if e.is_not_found() => continue,
            Err(e) => return Err(e.fail(format!("reading user pool {id}"), "DescribeUserPool")),
        };
        if let Some(p) = out.user_pool() {
            let tag = p.user_pool_tags().and_then(|t| t.get(STACK_TAG));
            if ours(tag.map(String::as_str), stack) {
                created.extend(p.creation_date().map(|d| d.secs()));
            }
        }
    }
    Ok(created)
}

/// Lambda tells when the function was last changed, not made: an upper bound of its
/// age, so a re-created stack is never taken for an old one.
async fn function(aws: &Aws, stack: &str) -> Result<Option<i64>> {
    let name = format!("{stack}-handler");
    match aws
        .lambda
        .get_function()
        .function_name(&name)
        .send()
        .await
        .sdk()
    {
        Ok(out) => {
            let tag = out.tags().and_then(|t| t.get(STACK_TAG));
            Ok(ours(tag.map(String::as_str), stack)
                .then(|| {
                    out.configuration()
                        .and_then(|c| c.last_modified())
                        .and_then(crate::fleet::lambda_time)
                })
                .flatten())
        }
        Err(e) if e.is_not_found() => Ok(None),
        Err(e) => Err(e.fail(format!("reading function {name}"), "GetFunction")),
    }
}

async fn role(aws: &Aws, region: &str, stack: &str) -> Result<Option<i64>> {
    let name = role::regional_name(stack, region);
    match aws.iam.get_role().role_name(&name).send().await.sdk() {
        Ok(out) => Ok(out.role().and_then(|r| {
            let tag = r
                .tags()
                .iter()
                .find(|t| t.key() == STACK_TAG)
                .map(Tag::value);
            ours(tag, stack).then(|| r.create_date().secs())
        })),
        Err(e) if e.is_not_found() => Ok(None),
        Err(e) => Err(e.fail(format!("reading IAM role {name}"), "GetRole")),
    }
}
