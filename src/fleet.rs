//! Every stack of a region: from the state location (`<stack>.json`) and from the
//! `provision:stack` tag on the kinds every stack has (Lambda functions, user pools,
//! REST or HTTP APIs, IAM roles) — so a stack whose state file is gone (a cancelled CI job, a
//! deleted runner) is still found. A resource with a stack-like name but without our
//! tag is someone else's and never listed.

use std::collections::BTreeMap;

use futures_util::stream::{self, StreamExt, TryStreamExt};

use crate::aws::{Aws, SdkResultExt};
use crate::errors::Result;
use crate::resources::role_region::REGION_TAG;
use crate::resources::{http_api, rest_api, user_pool, STACK_TAG};
use crate::store::{self, Location};

/// Reads of one kind sent at the same time (one per candidate resource).
const AT_ONCE: usize = 8;

/// One stack as `list` shows it.
#[derive(Debug, Clone, PartialEq)]
pub struct Stack {
    pub stack: String,
    pub in_state: bool,
    /// Tagged resources of the four kinds found in the region.
    pub tagged: usize,
    pub locked: bool,
    /// The earliest creation time among its tagged resources (unix seconds).
    pub created: Option<i64>,
}

/// A tagged resource: whose it is and when it was made (when AWS says).
#[derive(Debug, Clone)]
struct Tagged {
    stack: String,
    created: Option<i64>,
    /// A role made before roles were per region: its stack's in whichever region the
    /// stack otherwise is.
    legacy_role: bool,
}

/// Every stack of the region, sorted by name.
pub async fn stacks(aws: &Aws, region: &str, location: &Location) -> Result<Vec<Stack>> {
    let (in_state, apis, http, pools, functions, roles) = tokio::try_join!(
        store::stacks_in(location, &aws.s3, region),
        rest_apis(aws),
        http_apis(aws),
        user_pools(aws),
        functions(aws),
        roles(aws, region),
    )?;
    let mut by_name: BTreeMap<String, Stack> = BTreeMap::new();
    for name in in_state {
        by_name.insert(
            name.clone(),
            Stack {
                stack: name,
                in_state: true,
                tagged: 0,
                locked: false,
                created: None,
            },
        );
    }
    let all = apis.into_iter().chain(http).chain(pools).chain(functions);
    let (legacy, regional): (Vec<Tagged>, Vec<Tagged>) =
        roles.into_iter().partition(|r| r.legacy_role);
    for t in all.chain(regional) {
        count(&mut by_name, t);
    }
    for t in legacy {
        if by_name.contains_key(&t.stack) {
            count(&mut by_name, t);
        }
    }
    let mut out: Vec<Stack> = by_name.into_values().collect();
    let locks = stream::iter(
        out.iter()
            .map(|s| store::is_locked(location, &aws.s3, region, &s.stack)),
    )
    .buffered(AT_ONCE)
    .try_collect::<Vec<bool>>()
    .await?;
    for (s, locked) in out.iter_mut().zip(locks) {
        s.locked = locked;
    }
    Ok(out)
}

fn count(by_name: &mut BTreeMap<String, Stack>, t: Tagged) {
    let s = by_name.entry(t.stack.clone()).or_insert_with(|| Stack {
        stack: t.stack.clone(),
        in_state: false,
        tagged: 0,
        locked: false,
        created: None,
    });
    s.tagged += 1;
    s.created = match (s.created, t.created) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    };
}

/// A candidate whose tags the caller may not read: a policy scoped to provision's
/// stacks (docs/iam-policy.json) cannot read other teams' resources, which are not
/// ours to list anyway.
fn unreadable(what: &str) -> Option<Tagged> {
    crate::report::info(&format!("{what}: not allowed to read its tags; not listed"));
    None
}

fn valid_stack(tag: Option<&String>) -> Option<String> {
    tag.filter(|v| crate::config::validate_stack(v).is_ok())
        .cloned()
}

/// REST APIs carry their tags in the listing.
async fn rest_apis(aws: &Aws) -> Result<Vec<Tagged>> {
    Ok(rest_api::list_all(aws, "listing REST APIs")
        .await?
        .iter()
        .filter_map(|api| {
            valid_stack(api.tags().and_then(|t| t.get(STACK_TAG))).map(|stack| Tagged {
                stack,
                created: api.created_date().map(|d| d.secs()),
                legacy_role: false,
            })
        })
        .collect())
}

/// HTTP APIs (the `http` front) carry their tags in the listing too.
async fn http_apis(aws: &Aws) -> Result<Vec<Tagged>> {
    Ok(http_api::list_all(aws, "listing HTTP APIs")
        .await?
        .iter()
        .filter_map(|api| {
            valid_stack(api.tags().and_then(|t| t.get(STACK_TAG))).map(|stack| Tagged {
                stack,
                created: api.created_date().map(|d| d.secs()),
                legacy_role: false,
            })
        })
        .collect())
}

/// User pools named `*-pool` (ours are `<stack>-pool`), their tags read one by one.
async fn user_pools(aws: &Aws) -> Result<Vec<Tagged>> {
    let candidates: Vec<String> = user_pool::list_all(aws, "listing user pools")
        .await?
        .iter()
        .filter(|p| p.name().is_some_and(|n| n.ends_with("-pool")))
        .filter_map(|p| p.id().map(str::to_string))
        .collect();
    let described = stream::iter(candidates.into_iter().map(|id| async move {
        match aws
            .cognito
            .describe_user_pool()
            .user_pool_id(&id)
            .send()
            .await
            .sdk()
        {
            Ok(out) => Ok(out.user_pool().and_then(|p| {
                valid_stack(p.user_pool_tags().and_then(|t| t.get(STACK_TAG))).map(|stack| Tagged {
                    stack,
                    created: p.creation_date().map(|d| d.secs()),
                    legacy_role: false,
                })
            })),
            // Deleted between the listing and now, or outside what we may read.
            Err(e) if e.is_not_found() => Ok(None),
            Err(e) if e.access_denied() => Ok(unreadable(&format!("user pool {id}"))),
            Err(e) => Err(e.fail(format!("reading user pool {id}"), "DescribeUserPool")),
        }
    }))
    .buffer_unordered(AT_ONCE)
    .try_collect::<Vec<Option<Tagged>>>()
    .await?;
    Ok(described.into_iter().flatten().collect())
}

/// Functions named `*-handler`, their tags read one by one. Lambda tells when a
/// function was last modified, not made: an upper bound of its age, so `prune
/// --older-than` errs on the side of keeping it.
async fn functions(aws: &Aws) -> Result<Vec<Tagged>> {
    let mut marker: Option<String> = None;
    let mut candidates = Vec::new();
    loop {
        let out = aws
            .lambda
            .list_functions()
            .max_items(50)
            .set_marker(marker.clone())
            .send()
            .await
            .sdk()
            .map_err(|e| e.fail("listing Lambda functions", "ListFunctions"))?;
        for f in out.functions() {
            if f.function_name().is_some_and(|n| n.ends_with("-handler")) {
                candidates.push((
                    f.function_name().unwrap_or_default().to_string(),
                    f.last_modified().and_then(lambda_time),
                ));
            }
        }
        marker = out.next_marker().map(str::to_string);
        if marker.is_none() {
            break;
        }
    }
    let tagged = stream::iter(candidates.into_iter().map(|(name, modified)| async move {
        match aws
            .lambda
            .get_function()
            .function_name(&name)
            .send()
            .await
            .sdk()
        {
            Ok(out) => Ok(
                valid_stack(out.tags().and_then(|t| t.get(STACK_TAG))).map(|stack| Tagged {
                    stack,
                    created: modified,
                    legacy_role: false,
                }),
            ),
            Err(e) if e.is_not_found() => Ok(None),
            Err(e) if e.access_denied() => Ok(unreadable(&format!("function {name}"))),
            Err(e) => Err(e.fail(format!("reading function {name}"), "GetFunction")),
        }
    }))
    .buffer_unordered(AT_ONCE)
    .try_collect::<Vec<Option<Tagged>>>()
    .await?;
    Ok(tagged.into_iter().flatten().collect())
}

/// Lambda's `2024-05-01T12:00:00.000+0000` as unix seconds.
pub(crate) fn lambda_time(text: &str) -> Option<i64> {
    let rfc3339 = match text.strip_suffix("+0000") {
        Some(t) => format!("{t}Z"),
        None => text.to_string(),
    };
    aws_smithy_types::DateTime::from_str(&rfc3339, aws_smithy_types::date_time::Format::DateTime)
        .ok()
        .map(|d| d.secs())
}

/// IAM roles are global: a role is this region's when tagged for it; a role made
/// before roles were per region (`<stack>-handler`, no region tag) counts where its
/// stack otherwise is.
async fn roles(aws: &Aws, region: &str) -> Result<Vec<Tagged>> {
    let mut marker: Option<String> = None;
    let mut candidates = Vec::new();
    loop {
        let out = aws
            .iam
            .list_roles()
            .set_marker(marker.clone())
            .send()
            .await
            .sdk()
            .map_err(|e| e.fail("listing IAM roles", "ListRoles"))?;
        for r in out.roles() {
            let name = r.role_name();
            if name.ends_with("-handler") || name.ends_with(&format!("-handler-{region}")) {
                candidates.push((name.to_string(), r.create_date().secs()));
            }
        }
        marker = out
            .marker()
            .filter(|_| out.is_truncated())
            .map(str::to_string);
        if marker.is_none() {
            break;
        }
    }
    let tagged = stream::iter(candidates.into_iter().map(|(name, created)| async move {
        match aws.iam.get_role().role_name(&name).send().await.sdk() {
            Ok(out) => {
                let tags: BTreeMap<&str, &str> = out
                    .role()
                    .map(|r| r.tags().iter().map(|t| (t.key(), t.value())).collect())
                    .unwrap_or_default();
                let Some(stack) = valid_stack(tags.get(STACK_TAG).map(|s| s.to_string()).as_ref())
                else {
                    return Ok(None);
                };
                let legacy = match tags.get(REGION_TAG) {
                    Some(r) if *r == region => false,
                    Some(_) => return Ok(None),
                    None if name == format!("{stack}-handler") => true,
                    None => return Ok(None),
                };
                Ok(Some(Tagged {
                    stack,
                    created: Some(created),
                    legacy_role: legacy,
                }))
            }
            Err(e) if e.is_not_found() => Ok(None),
            Err(e) if e.access_denied() => Ok(unreadable(&format!("IAM role {name}"))),
            Err(e) => Err(e.fail(format!("reading IAM role {name}"), "GetRole")),
        }
    }))
    .buffer_unordered(AT_ONCE)
    .try_collect::<Vec<Option<Tagged>>>()
    .await?;
    Ok(tagged.into_iter().flatten().collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lambda_times_are_read() {
        assert_eq!(lambda_time("1970-01-01T00:01:00.000+0000"), Some(60));
        assert_eq!(lambda_time("2024-05-01T12:00:00Z"), Some(1_714_564_800));
        assert_eq!(lambda_time("yesterday"), None);
    }

    #[test]
    fn a_stack_is_as_old_as_its_oldest_tagged_resource() {
        let mut by_name = BTreeMap::new();
        for created in [Some(300), None, Some(100), Some(200)] {
            count(
                &mut by_name,
                Tagged {
                    stack: "a".into(),
                    created,
                    legacy_role: false,
                },
            );
        }
        let a = &by_name["a"];
        assert_eq!((a.tagged, a.created, a.in_state), (4, Some(100), false));
    }
}
