//! Which IAM role is a stack's in a region. IAM is global but a stack is regional, so
//! each region's stack has a role of its own, `<stack>-handler-<region>`, tagged with
//! the stack and the region. A role named `<stack>-handler` (made before this rule)
//! stays the stack's in the region whose function uses it: `up` claims it for that
//! region with the region tag, and no other region adopts or deletes it.

use std::collections::HashMap;

use aws_sdk_iam::types::Tag;
use serde_json::Value;

use super::role_names::KIND;
pub use super::role_names::{legacy_name, name_in_arn, REGION_TAG};
use super::{check_owner, Ctx};
use crate::aws::SdkResultExt;
use crate::errors::{Error, Result};
use crate::policy_doc::{normalized, percent_decode};
use crate::report;

#[derive(Debug, Clone)]
pub struct Found {
    pub name: String,
    pub arn: String,
    pub tags: HashMap<String, String>,
    pub trust_policy: Value,
    /// Its permissions boundary's ARN ("" when it has none).
    pub boundary: String,
}

impl Found {
    pub fn region(&self) -> Option<&str> {
        self.tags.get(REGION_TAG).map(String::as_str)
    }
}

/// GetRole by name; None when there is none.
pub async fn find(ctx: &Ctx<'_>, name: &str) -> Result<Option<Found>> {
    match ctx.aws.iam.get_role().role_name(name).send().await.sdk() {
        Ok(out) => Ok(out.role().map(|role| Found {
            name: name.to_string(),
            arn: role.arn().to_string(),
            tags: role
                .tags()
                .iter()
                .map(|t| (t.key().to_string(), t.value().to_string()))
                .collect(),
            trust_policy: normalized(
                &role
                    .assume_role_policy_document()
                    .map(percent_decode)
                    .unwrap_or_default(),
            ),
            boundary: role
                .permissions_boundary()
                .and_then(|b| b.permissions_boundary_arn())
                .unwrap_or_default()
                .to_string(),
        })),
        Err(e) if e.is_not_found() => Ok(None),
        Err(e) => Err(e.fail(format!("reading IAM role {name}"), "GetRole")),
    }
}

/// The run's first GetRole of `name` (see `read_once`).
pub(super) async fn first_find(ctx: &Ctx<'_>, name: &str) -> Result<Option<Found>> {
    super::read_once(ctx, format!("GetRole {name}"), find(ctx, name)).await
}

/// Refuses a role that is another stack's or another region's.
pub(super) fn check_ours(ctx: &Ctx<'_>, found: &Found) -> Result<()> {
    check_owner(
        Some(&found.tags),
        ctx.stack,
        &format!("IAM role {}", found.name),
    )?;
    match found.region() {
        Some(r) if r != ctx.region => Err(Error::usage(format!(
            "IAM role {} belongs to stack `{}` in region {r} (tag {REGION_TAG}={r}), not in {}; provision will not share a role across regions",
            found.name, ctx.stack, ctx.region
        ))),
        _ => Ok(()),
    }
}

/// Which role is the stack's in this region, and what it is: the recorded one, else the
/// region's own name, else a legacy role that this region's function uses and no other
/// region has claimed. `function_role` gives the role ARN the function has, if it
/// exists; it is read while the role is (a new stack waits for neither).
pub async fn locate(
    ctx: &Ctx<'_>,
    function_role: impl std::future::Future<Output = Result<Option<String>>>,
) -> Result<(String, Option<Found>)> {
    let regional = ctx.role_name();
    let legacy = legacy_name(ctx.stack);
    let recorded = ctx.rec.get(KIND);
    let guess = recorded.clone().unwrap_or_else(|| regional.clone());
    let (found, function_role) = ctx.both(first_find(ctx, &guess), function_role).await;
    let found = found?;
    if guess == regional {
        if let Some(f) = &found {
            check_ours(ctx, f)?;
            return Ok((regional, found));
        }
        let function_role = function_role?;
        if recorded.is_some() || function_role.as_deref().and_then(name_in_arn) != Some(&legacy) {
            return Ok((regional, None));
        }
        return Ok(match claimable_legacy(ctx, find(ctx, &legacy).await?)? {
            Some(f) => (legacy, Some(f)),
            None => (regional, None),
        });
    }
    // A recorded legacy role (or another recorded name).
    match claimable_legacy(ctx, found)? {
        Some(f) => Ok((guess, Some(f))),
        None => {
            let found = find(ctx, &regional).await?;
            if let Some(f) = &found {
                check_ours(ctx, f)?;
            }
            Ok((regional, found))
        }
    }
}

/// The role ARN of the stack's function, from the run's one read of it.
pub async fn function_role(ctx: &Ctx<'_>) -> Result<Option<String>> {
    Ok(super::function::observed(ctx)
        .await?
        .map(|f| f.settings.role_arn.clone()))
}

/// A legacy role is this region's unless another region claimed it.
fn claimable_legacy(ctx: &Ctx<'_>, found: Option<Found>) -> Result<Option<Found>> {
    let Some(f) = found else { return Ok(None) };
    check_owner(Some(&f.tags), ctx.stack, &format!("IAM role {}", f.name))?;
    Ok(match f.region() {
        Some(r) if r != ctx.region => None,
        _ => Some(f),
    })
}

/// Tags a legacy role with this region, so no other region adopts or deletes it.
pub(super) async fn claim(ctx: &Ctx<'_>, name: &str) -> Result<()> {
    report::info(&format!(
        "IAM role {name} (made before roles were per region) is this region's: tagging it {REGION_TAG}={}",
        ctx.region
    ));
    ctx.aws
        .iam
        .tag_role()
        .role_name(name)
        .tags(
            Tag::builder()
                .key(REGION_TAG)
                .value(ctx.region)
                .build()
                .expect("tag has key and value"),
        )
        .send()
        .await
        .sdk()
        .map_err(|e| e.fail(format!("tagging IAM role {name}"), "TagRole"))?;
    Ok(())
}
