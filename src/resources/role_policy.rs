//! What the handler's role may do: write its own function's log group, nothing else.
//!
//! Its one permission is an inline policy allowing `logs:CreateLogStream` and
//! `logs:PutLogEvents` on `/aws/lambda/<function>` (`up` makes that group itself, so the
//! role needs no `logs:CreateLogGroup`). Its permissions boundary is AWS's own
//! `AWSLambdaBasicExecutionRole`, which no account can edit: whatever inline policy a
//! role of this tool carries, it can never do more than basic execution. That is what
//! lets the caller's policy grant `iam:PutRolePolicy` on the stack's roles safely (the
//! grant is conditioned on that boundary). A leaf: `role` and `function` use it.

use serde_json::Value;

use super::{Ctx, Handle};
use crate::aws::SdkResultExt;
use crate::errors::Result;
use crate::policy_doc::{normalized, percent_decode};

/// The name of the one inline policy the role carries.
pub const LOGS_POLICY: &str = "provision-handler-logs";

/// The role's permissions boundary: AWS managed, so out of reach of the caller.
pub fn boundary_arn(partition: &str) -> String {
    format!("arn:{partition}:iam::aws:policy/service-role/AWSLambdaBasicExecutionRole")
}

/// The inline policy's document. Both actions are authorized on the log stream
/// (`log-group:<group>:log-stream:<stream>`), which `<group>:*` covers; the colon
/// after the group's name keeps `/aws/lambda/<function>-other` out of it.
pub fn logs_policy(ctx: &Ctx<'_>) -> String {
    let resource = format!(
        "arn:{}:logs:{}:{}:log-group:/aws/lambda/{}:*",
        ctx.partition,
        ctx.region,
        ctx.account,
        ctx.function_name()
    );
    serde_json::json!({
        "Version": "2012-10-17",
        "Statement": [{
            "Effect": "Allow",
            "Action": ["logs:CreateLogStream", "logs:PutLogEvents"],
            "Resource": resource,
        }]
    })
    .to_string()
}

/// The role as `ensure` left it.
#[derive(Debug, Clone)]
pub struct Role {
    pub handle: Handle,
    /// Inline policies a new role still needs: put by `put_pending` while the function
    /// is created, which does not need them (they matter when it runs).
    pub pending: Vec<String>,
}

/// Puts what a new role still needs (see `Role::pending`).
pub async fn put_pending(ctx: &Ctx<'_>, role: &Role) -> Result<()> {
    for policy in &role.pending {
        if policy == LOGS_POLICY {
            put_logs_policy(ctx, &role.handle.id).await?;
        }
    }
    Ok(())
}

pub async fn put_logs_policy(ctx: &Ctx<'_>, role: &str) -> Result<()> {
    ctx.aws
        .iam
        .put_role_policy()
        .role_name(role)
        .policy_name(LOGS_POLICY)
        .policy_document(logs_policy(ctx))
        .send()
        .await
        .sdk()
        .map_err(|e| {
            e.fail(
                format!("putting inline policy {LOGS_POLICY} on IAM role {role}"),
                "PutRolePolicy",
            )
        })?;
    Ok(())
}

/// The document of the role's `LOGS_POLICY`, normalized; Null when it has none.
pub async fn read_logs_policy(ctx: &Ctx<'_>, role: &str) -> Result<Value> {
    match ctx
        .aws
        .iam
        .get_role_policy()
        .role_name(role)
        .policy_name(LOGS_POLICY)
        .send()
        .await
        .sdk()
    {
        Ok(out) => Ok(normalized(&percent_decode(out.policy_document()))),
        Err(e) if e.is_not_found() => Ok(Value::Null),
        Err(e) => Err(e.fail(
            format!("reading inline policy {LOGS_POLICY} of IAM role {role}"),
            "GetRolePolicy",
        )),
    }
}
