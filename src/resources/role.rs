//! The handler's IAM role: trusted by Lambda, with basic execution only.

use std::collections::HashMap;
use std::time::Instant;

use aws_sdk_iam::types::Tag;

use super::{check_owner, Ctx, Handle, NEW, STACK_TAG};
use crate::aws::SdkResultExt;
use crate::errors::Result;
use crate::plan::{decide, Decision, RoleSettings};

pub const KIND: &str = "iam_role";

const TRUST_POLICY: &str = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"Service":"lambda.amazonaws.com"},"Action":"sts:AssumeRole"}]}"#;

pub fn basic_execution_arn(partition: &str) -> String {
    format!("arn:{partition}:iam::aws:policy/service-role/AWSLambdaBasicExecutionRole")
}

fn desired(ctx: &Ctx<'_>) -> RoleSettings {
    RoleSettings {
        trusts_lambda: true,
        policies: vec![basic_execution_arn(ctx.partition)],
    }
}

pub struct Found {
    pub arn: String,
    pub tags: HashMap<String, String>,
    pub trusts_lambda: bool,
}

/// GetRole by name; None when there is none.
pub async fn find(ctx: &Ctx<'_>) -> Result<Option<Found>> {
    let name = ctx.role_name();
    match ctx.aws.iam.get_role().role_name(&name).send().await.sdk() {
        Ok(out) => {
            let Some(role) = out.role() else {
                return Ok(None);
            };
            let trust = role
                .assume_role_policy_document()
                .map(percent_decode)
                .unwrap_or_default();
            Ok(Some(Found {
                arn: role.arn().to_string(),
                tags: role
                    .tags()
                    .iter()
                    .map(|t| (t.key().to_string(), t.value().to_string()))
                    .collect(),
                trusts_lambda: trust.contains("lambda.amazonaws.com"),
            }))
        }
        Err(e) if e.is_not_found() => Ok(None),
        Err(e) => Err(e.fail(format!("reading IAM role {name}"), "GetRole")),
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

/// The role as `ensure` left it.
#[derive(Debug)]
pub struct Role {
    pub handle: Handle,
    /// Policies a new role still needs: attached by `attach_pending` while the function
    /// is created, which does not need them (they matter when it runs).
    pub pending: Vec<String>,
}

pub async fn ensure(ctx: &Ctx<'_>) -> Result<Role> {
    let started = Instant::now();
    let name = ctx.role_name();
    let recorded = ctx.rec.get(KIND).is_some();
    let want = desired(ctx);
    let found = find(ctx).await?;
    let observed = match &found {
        Some(f) => {
            check_owner(Some(&f.tags), ctx.stack, &format!("IAM role {name}"))?;
            Some(RoleSettings {
                trusts_lambda: f.trusts_lambda,
                policies: attached_policies(ctx, &name).await?,
            })
        }
        None => None,
    };
    let decision = decide(&want, observed.as_ref());
    let arn = match (&decision, &found) {
        (_, Some(f)) => f.arn.clone(),
        (_, None) => format!("arn:{}:iam::{}:role/{name}", ctx.partition, ctx.account),
    };
    if ctx.apply {
        match &decision {
            Decision::Create => {
                let tag = Tag::builder()
                    .key(STACK_TAG)
                    .value(ctx.tag_value())
                    .build()
                    .expect("tag has key and value");
                let out = ctx
                    .aws
                    .iam
                    .create_role()
                    .role_name(&name)
                    .assume_role_policy_document(TRUST_POLICY)
                    .description(format!(
                        "Lambda execution role of provision stack {}",
                        ctx.stack
                    ))
                    .tags(tag)
                    .send()
                    .await
                    .sdk()
                    .map_err(|e| e.fail(format!("creating IAM role {name}"), "CreateRole"))?;
                ctx.rec.set(KIND, &name)?;
                let arn = out.role().map(|r| r.arn().to_string()).unwrap_or(arn);
                ctx.finish(KIND, &name, &decision, recorded, started);
                return Ok(Role {
                    handle: Handle::new(name, arn, true),
                    pending: want.policies,
                });
            }
            Decision::Update(_) => {
                let observed = observed.as_ref().expect("update implies observed");
                if !observed.trusts_lambda {
                    ctx.aws
                        .iam
                        .update_assume_role_policy()
                        .role_name(&name)
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
                for p in want
                    .policies
                    .iter()
                    .filter(|p| !observed.policies.contains(p))
                {
                    attach(ctx, &name, p).await?;
                }
                for p in observed
                    .policies
                    .iter()
                    .filter(|p| !want.policies.contains(p))
                {
                    detach(ctx, &name, p).await?;
                }
            }
            Decision::Unchanged => {}
        }
        ctx.rec.set(KIND, &name)?;
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

/// Attaches what a new role still needs (see `Role::pending`).
pub async fn attach_pending(ctx: &Ctx<'_>, role: &Role) -> Result<()> {
    for policy in &role.pending {
        attach(ctx, &role.handle.id, policy).await?;
    }
    Ok(())
}

async fn attach(ctx: &Ctx<'_>, name: &str, policy: &str) -> Result<()> {
    ctx.aws
        .iam
        .attach_role_policy()
        .role_name(name)
        .policy_arn(policy)
        .send()
        .await
        .sdk()
        .map_err(|e| {
            e.fail(
                format!("attaching {policy} to IAM role {name}"),
                "AttachRolePolicy",
            )
        })?;
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

/// Deletes the role (detaching its policies first). Returns false when it was already gone.
pub async fn delete(ctx: &Ctx<'_>) -> Result<bool> {
    let name = ctx.role_name();
    let Some(found) = find(ctx).await? else {
        return Ok(false);
    };
    check_owner(Some(&found.tags), ctx.stack, &format!("IAM role {name}"))?;
    for p in &attached_policies(ctx, &name).await? {
        detach(ctx, &name, p).await?;
    }
    match ctx
        .aws
        .iam
        .delete_role()
        .role_name(&name)
        .send()
        .await
        .sdk()
    {
        Ok(_) => Ok(true),
        Err(e) if e.is_not_found() => Ok(false),
        Err(e) => Err(e.fail(format!("deleting IAM role {name}"), "DeleteRole")),
    }
}

/// IAM returns policy documents URL-encoded.
fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            if let Ok(b) = u8::from_str_radix(&s[i + 1..i + 3], 16) {
                out.push(b);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::percent_decode;

    #[test]
    fn decodes_iam_policy_documents() {
        assert_eq!(
            percent_decode("%7B%22Service%22%3A%22lambda.amazonaws.com%22%7D"),
            r#"{"Service":"lambda.amazonaws.com"}"#
        );
        assert_eq!(percent_decode(r#"{"a":1}"#), r#"{"a":1}"#);
        assert_eq!(percent_decode("100%"), "100%");
    }
}
