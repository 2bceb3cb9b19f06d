//! The handler's IAM role: trusted by Lambda, allowed to write its own log group only
//! (see `role_policy`). Which role is a region's stack's: see `role_region`.
//!
//! What the role may do is part of its desired state: the trust policy (compared as a
//! document), the permissions boundary, the logs policy (compared as a document), no
//! attached policy and no other inline policy. Anything more is drift. A role made
//! before (with AWS's basic execution policy attached) is moved over by the next `up`:
//! boundary and logs policy first, then the old policy detached, so the handler can
//! write its logs throughout.

use std::time::Instant;

use aws_sdk_iam::types::Tag;

pub use super::role_names::{regional_name, KIND, REGION_TAG};
pub use super::role_policy::Role;
use super::role_policy::{boundary_arn, put_logs_policy, read_logs_policy, LOGS_POLICY};
use super::role_region::{check_ours, claim, find, function_role, locate};
use super::{create_once, not_ours, Create, Ctx, Handle, Made, Removal, NEW, STACK_TAG};
use crate::aws::{SdkFailure, SdkResultExt};
use crate::errors::{Error, Result};
use crate::plan::{decide, Decision, RoleSettings};
use crate::policy_doc::normalized;
use crate::report;

const TRUST_POLICY: &str = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"Service":"lambda.amazonaws.com"},"Action":"sts:AssumeRole"}]}"#;

fn desired(ctx: &Ctx<'_>) -> RoleSettings {
    RoleSettings {
        trust_policy: normalized(TRUST_POLICY),
        policies: Vec::new(),
        inline_policies: vec![LOGS_POLICY.to_string()],
        logs_policy: normalized(&super::role_policy::logs_policy(ctx)),
        boundary: boundary_arn(ctx.partition),
    }
}

async fn attached_policies(ctx: &Ctx<'_>, name: &str) -> Result<Vec<String>> {
    let out = ctx
        .aws
        .iam
        .list_attached_role_policies()
        .role_name(name)
        .send()
        .await
        .sdk()
        .map_err(|e| {
            e.fail(
                format!("reading policies of IAM role {name}"),
                "ListAttachedRolePolicies",
            )
        })?;
    let mut arns: Vec<String> = out
        .attached_policies()
        .iter()
        .filter_map(|p| p.policy_arn().map(str::to_string))
        .collect();
    arns.sort();
    Ok(arns)
}

/// A role's inline policies' names, and the document of provision's own.
type Inline = (Vec<String>, serde_json::Value);

/// Both read at the same time: a no-op `up` waits for one round trip, not two.
async fn inline_policies_and_ours(ctx: &Ctx<'_>, name: &str) -> Result<Inline> {
    let (names, ours) = ctx
        .both(inline_policies(ctx, name), read_logs_policy(ctx, name))
        .await;
    Ok((names?, ours?))
}

async fn inline_policies(ctx: &Ctx<'_>, name: &str) -> Result<Vec<String>> {
    let out = ctx
        .aws
        .iam
        .list_role_policies()
        .role_name(name)
        .send()
        .await
        .sdk()
        .map_err(|e| {
            e.fail(
                format!("reading inline policies of IAM role {name}"),
                "ListRolePolicies",
            )
        })?;
    let mut names = out.policy_names().to_vec();
    names.sort();
    Ok(names)
}

/// The run's first reads of the role's attached and inline policies (see `read_once`).
pub(super) fn first_policies<'c>(
    ctx: &'c Ctx<'_>,
    name: &'c str,
) -> (
    impl std::future::Future<Output = Result<Vec<String>>> + 'c,
    impl std::future::Future<Output = Result<Inline>> + 'c,
) {
    (
        super::read_once(
            ctx,
            format!("ListAttachedRolePolicies {name}"),
            attached_policies(ctx, name),
        ),
        super::read_once(
            ctx,
            format!("ListRolePolicies {name}"),
            inline_policies_and_ours(ctx, name),
        ),
    )
}

pub async fn ensure(ctx: &Ctx<'_>) -> Result<Role> {
    let (name, found) = locate(ctx, function_role(ctx)).await?;
    let started = Instant::now();
    let recorded = ctx.rec.get(KIND).as_deref() == Some(name.as_str());
    let want = desired(ctx);
    let observed = match &found {
        Some(f) => {
            let (attached, inline) = first_policies(ctx, &name);
            let (attached, inline) = ctx.both(attached, inline).await;
            let (inline_policies, logs_policy) = inline?;
            Some(RoleSettings {
                trust_policy: f.trust_policy.clone(),
                policies: attached?,
                inline_policies,
                logs_policy,
                boundary: f.boundary.clone(),
            })
        }
        None => None,
    };
    let decision = decide(&want, observed.as_ref());
    let arn = match &found {
        Some(f) => f.arn.clone(),
        None => format!("arn:{}:iam::{}:role/{name}", ctx.partition, ctx.account),
    };
    if ctx.apply {
        match &decision {
            Decision::Create => {
                let arn = create(ctx, &name).await?;
                ctx.rec.set(KIND, &name).await?;
                ctx.finish(KIND, &name, &decision, recorded, started);
                return Ok(Role {
                    handle: Handle::new(name, arn, true),
                    pending: want.inline_policies,
                });
            }
            Decision::Update(_) => {
                let observed = observed.as_ref().expect("update implies observed");
                repair(ctx, &name, &want, observed).await?;
            }
            Decision::Unchanged => {}
        }
        let found = found.as_ref().expect("not Create");
        if found.region().is_none() {
            claim(ctx, &name).await?;
        }
        ctx.rec.set(KIND, &name).await?;
    }
    let fresh = found.is_none();
    let id = if fresh && !ctx.apply {
        NEW.to_string()
    } else {
        name.clone()
    };
    ctx.finish(KIND, &name, &decision, recorded, started);
    Ok(Role {
        handle: Handle::new(id, arn, fresh),
        pending: Vec::new(),
    })
}

async fn create(ctx: &Ctx<'_>, name: &str) -> Result<String> {
    let tag = |k: &str, v: &str| {
        Tag::builder()
            .key(k)
            .value(v)
            .build()
            .expect("tag has key and value")
    };
    let made = create_once(
        Create::new(format!("creating IAM role {name}"), "CreateRole"),
        || async {
            ctx.aws
                .once
                .iam
                .create_role()
                .role_name(name)
                .assume_role_policy_document(TRUST_POLICY)
                .description(format!(
                    "Lambda execution role of provision stack {} in {}",
                    ctx.stack, ctx.region
                ))
                .permissions_boundary(boundary_arn(ctx.partition))
                .tags(tag(STACK_TAG, ctx.tag_value()))
                .tags(tag(REGION_TAG, ctx.region))
                .send()
                .await
                .sdk()
        },
        || async {
            let found = find(ctx, name).await?;
            if let Some(f) = &found {
                check_ours(ctx, f)?;
            }
            Ok(found)
        },
    )
    .await?;
    Ok(match made {
        Made::New(out) => out
            .role()
            .map(|r| r.arn().to_string())
            .unwrap_or_else(|| format!("arn:{}:iam::{}:role/{name}", ctx.partition, ctx.account)),
        Made::Found(f) => f.arn,
    })
}

/// Takes the role back to exactly what provision grants. What it may do is only ever
/// narrowed on the way: the boundary and the logs policy go on before anything comes
/// off (a role of an older version keeps writing its logs through the switch).
async fn repair(
    ctx: &Ctx<'_>,
    name: &str,
    want: &RoleSettings,
    observed: &RoleSettings,
) -> Result<()> {
    if observed.trust_policy != want.trust_policy {
        ctx.aws
            .iam
            .update_assume_role_policy()
            .role_name(name)
            .policy_document(TRUST_POLICY)
            .send()
            .await
            .sdk()
            .map_err(|e| {
                e.fail(
                    format!("repairing the trust policy of IAM role {name}"),
                    "UpdateAssumeRolePolicy",
                )
            })?;
    }
    if observed.boundary != want.boundary {
        ctx.aws
            .iam
            .put_role_permissions_boundary()
            .role_name(name)
            .permissions_boundary(&want.boundary)
            .send()
            .await
            .sdk()
            .map_err(|e| {
                e.fail(
                    format!("setting the permissions boundary of IAM role {name}"),
                    "PutRolePermissionsBoundary",
                )
            })?;
    }
    if observed.logs_policy != want.logs_policy {
        put_logs_policy(ctx, name).await?;
    }
    for p in &observed.policies {
        detach(ctx, name, p).await?;
    }
    for p in observed
        .inline_policies
        .iter()
        .filter(|p| p.as_str() != LOGS_POLICY)
    {
        delete_inline(ctx, name, p).await?;
    }
    Ok(())
}

async fn detach(ctx: &Ctx<'_>, name: &str, policy: &str) -> Result<()> {
    match ctx
        .aws
        .iam
        .detach_role_policy()
        .role_name(name)
        .policy_arn(policy)
        .send()
        .await
        .sdk()
    {
        Ok(_) => Ok(()),
        Err(e) if e.is_not_found() => Ok(()),
        Err(e) => Err(e.fail(
            format!("detaching {policy} from IAM role {name}"),
            "DetachRolePolicy",
        )),
    }
}

async fn delete_inline(ctx: &Ctx<'_>, name: &str, policy: &str) -> Result<()> {
    match ctx
        .aws
        .iam
        .delete_role_policy()
        .role_name(name)
        .policy_name(policy)
        .send()
        .await
        .sdk()
    {
        Ok(_) => Ok(()),
        Err(e) if e.is_not_found() => Ok(()),
        Err(e) => Err(e.fail(
            format!("deleting inline policy {policy} of IAM role {name}"),
            "DeleteRolePolicy",
        )),
    }
}

/// Deletes the stack's role in this region (its policies first); returns its name and
/// what was done. A role that is not tagged for this stack and region (a stale state
/// file may name one that is someone else's now) is kept. A legacy role no region has
/// claimed may serve this stack in another region too: it is left, and said so.
pub async fn delete(ctx: &Ctx<'_>) -> Result<(String, Removal)> {
    let regional = ctx.role_name();
    // A recorded role of this region's own name: one read, for the owner check.
    let (name, found) = if ctx.rec.get(KIND).as_deref() == Some(regional.as_str()) {
        (regional.clone(), find(ctx, &regional).await?)
    } else {
        match locate(ctx, function_role(ctx)).await {
            Ok(located) => located,
            // `locate` refuses a role that is another's by its tags: kept.
            Err(Error::Usage(why)) => return Ok((regional, Removal::Kept(why))),
            Err(e) => return Err(e),
        }
    };
    let Some(found) = found else {
        return Ok((name, Removal::Absent));
    };
    if let Some(why) = not_ours(Some(&found.tags), ctx.stack, &format!("IAM role {name}")) {
        return Ok((name, Removal::Kept(why)));
    }
    match found.region() {
        Some(r) if r != ctx.region => {
            let why = format!(
                "IAM role {name} is stack `{}`'s in region {r} (tag {REGION_TAG}={r}): not deleted",
                ctx.stack
            );
            return Ok((name, Removal::Kept(why)));
        }
        Some(_) => {}
        None => {
            let why = format!(
                "left IAM role {name}: it was made by an older provision and carries no {REGION_TAG} tag, so it may serve stack `{}` in another region too. Once no region uses it, delete it (aws iam delete-role --role-name {name}, after detaching its policies); `provision up` in a region claims it for that region",
                ctx.stack
            );
            report::warn(&why);
            return Ok((name, Removal::Kept(why)));
        }
    }
    let (name, gone) = delete_attached(ctx, &name).await?;
    Ok((
        name,
        if gone {
            Removal::Deleted
        } else {
            Removal::Absent
        },
    ))
}

/// Deletes a role of ours; false when it was already gone.
async fn delete_attached(ctx: &Ctx<'_>, name: &str) -> Result<(String, bool)> {
    let name = name.to_string();
    // IAM deletes a role only once no policy is attached to it or inside it. provision
    // put its logs policy and nothing else: delete that and the role, and list what
    // else is there (a role of an older version: the basic execution policy) only if
    // IAM says something is.
    delete_inline(ctx, &name, LOGS_POLICY).await?;
    match delete_role(ctx, &name).await {
        Err(e) if e.is("DeleteConflict") => {
            let (attached, inline) = ctx
                .both(attached_policies(ctx, &name), inline_policies(ctx, &name))
                .await;
            for p in &attached? {
                detach(ctx, &name, p).await?;
            }
            for p in &inline? {
                delete_inline(ctx, &name, p).await?;
            }
            delete_role(ctx, &name).await
        }
        other => other,
    }
    .map(|gone| (name.clone(), gone))
    .map_err(|e| e.fail(format!("deleting IAM role {name}"), "DeleteRole"))
}

/// DeleteRole; false when it was already gone.
async fn delete_role(ctx: &Ctx<'_>, name: &str) -> std::result::Result<bool, SdkFailure> {
    match ctx.aws.iam.delete_role().role_name(name).send().await.sdk() {
        Ok(_) => Ok(true),
        Err(e) if e.is_not_found() => Ok(false),
        Err(e) => Err(e),
    }
}
