//! The Lambda permission that lets this API (and only this API) invoke the function.

use std::time::Instant;

use serde_json::Value;

use super::{create_once, Create, Ctx, Handle};
use crate::aws::SdkResultExt;
use crate::errors::Result;
use crate::plan::{decide, Decision, PermissionSettings};

pub const KIND: &str = "lambda_permission";
/// Fixed statement id, so a rerun finds its own statement.
pub const STATEMENT_ID: &str = "provision-apigateway-invoke";
const PRINCIPAL: &str = "apigateway.amazonaws.com";
const ACTION: &str = "lambda:InvokeFunction";

pub fn source_arn(ctx: &Ctx<'_>, api_id: &str) -> String {
    format!(
        "arn:{}:execute-api:{}:{}:{api_id}/*",
        ctx.partition, ctx.region, ctx.account
    )
}

/// The function's resource policy: our statement (if there is one) and every other's id.
async fn find(ctx: &Ctx<'_>) -> Result<Policy> {
    let name = ctx.function_name();
    let policy = match ctx
        .aws
        .lambda
        .get_policy()
        .function_name(&name)
        .send()
        .await
        .sdk()
    {
        Ok(out) => out.policy().unwrap_or_default().to_string(),
        // AWS answers 404 when the function has no policy (MiniStack: 200, empty).
        Err(e) if e.is_not_found() => return Ok(Policy::default()),
        Err(e) => {
            return Err(e.fail(
                format!("reading the policy of Lambda function {name}"),
                "GetPolicy",
            ))
        }
    };
    Ok(statements_in(&policy))
}

/// What a function's resource policy grants, as provision sees it.
/// The run's first read of the function's policy (see `read_once`).
pub(super) async fn first_find(ctx: &Ctx<'_>) -> Result<Policy> {
    super::read_once(ctx, "GetPolicy".into(), find(ctx)).await
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct Policy {
    /// Our statement, with the ids of the others as its `extra_statements`.
    pub ours: Option<PermissionSettings>,
    /// The ids of every statement but ours, sorted.
    pub others: Vec<String>,
}

/// Parses a resource policy: our statement and the others' ids.
pub fn statements_in(policy: &str) -> Policy {
    let Ok(doc) = serde_json::from_str::<Value>(policy) else {
        return Policy::default();
    };
    let statements = match doc.get("Statement") {
        Some(Value::Array(a)) => a.clone(),
        Some(single) => vec![single.clone()],
        None => Vec::new(),
    };
    let sid = |s: &Value| {
        s.get("Sid")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string()
    };
    let mut others: Vec<String> = statements
        .iter()
        .filter(|s| sid(s) != STATEMENT_ID)
        .map(sid)
        .collect();
    others.sort();
    let ours = statements.iter().find(|s| sid(s) == STATEMENT_ID).map(|s| {
        let principal = match s.get("Principal") {
            Some(Value::String(p)) => p.clone(),
            Some(p) => p
                .get("Service")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string(),
            None => String::new(),
        };
        PermissionSettings {
            principal,
            action: s
                .get("Action")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string(),
            source_arn: s
                .pointer("/Condition/ArnLike/AWS:SourceArn")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string(),
            extra_statements: others.clone(),
        }
    });
    Policy { ours, others }
}

pub async fn ensure(ctx: &Ctx<'_>, function: &Handle, api: &Handle) -> Result<()> {
    let started = Instant::now();
    let recorded = ctx.rec.get(KIND).is_some();
    let want = PermissionSettings {
        principal: PRINCIPAL.into(),
        action: ACTION.into(),
        source_arn: source_arn(ctx, &api.id),
        extra_statements: Vec::new(),
    };
    let policy = if function.fresh {
        Policy::default()
    } else {
        first_find(ctx).await?
    };
    let decision = decide(&want, policy.ours.as_ref());
    if ctx.apply {
        let name = ctx.function_name();
        // Nobody but this API may invoke the function.
        for sid in &policy.others {
            remove_statement(ctx, sid).await?;
        }
        let ours_differs = matches!(&decision, Decision::Update(fields)
            if fields.iter().any(|f| *f != "extra_statements"));
        if ours_differs {
            remove(ctx).await?;
        }
        if decision == Decision::Create || ours_differs {
            create_once(
                Create {
                    // The same code also means "the function is being updated": not now.
                    busy: |e| e.is("ResourceConflictException") && !statement_exists(e),
                    exists: statement_exists,
                    ..Create::new(
                        format!("allowing API {} to invoke Lambda function {name}", api.id),
                        "AddPermission",
                    )
                },
                || async {
                    ctx.aws
                        .once
                        .lambda
                        .add_permission()
                        .function_name(&name)
                        .statement_id(STATEMENT_ID)
                        .action(ACTION)
                        .principal(PRINCIPAL)
                        .source_arn(&want.source_arn)
                        .send()
                        .await
                        .sdk()
                },
                // Our own statement, as we meant it (an earlier answer was lost).
                || async {
                    let ours = find(ctx).await?.ours;
                    Ok(ours
                        .filter(|o| {
                            o.principal == want.principal
                                && o.action == want.action
                                && o.source_arn == want.source_arn
                        })
                        .map(|_| ()))
                },
            )
            .await?;
        }
        ctx.rec.set(KIND, STATEMENT_ID).await?;
    }
    ctx.finish(KIND, STATEMENT_ID, &decision, recorded, started);
    Ok(())
}

/// AddPermission's answer when the statement id is taken. (The same error code also
/// means "the function is busy", which is not done at all.)
pub fn statement_exists(e: &crate::aws::SdkFailure) -> bool {
    e.is("ResourceConflictException") && e.message.contains("already exists")
}

/// Removes our statement; false when it was not there.
pub async fn remove(ctx: &Ctx<'_>) -> Result<bool> {
    remove_statement(ctx, STATEMENT_ID).await
}

async fn remove_statement(ctx: &Ctx<'_>, sid: &str) -> Result<bool> {
    let name = ctx.function_name();
    match ctx
        .aws
        .lambda
        .remove_permission()
        .function_name(&name)
        .statement_id(sid)
        .send()
        .await
        .sdk()
    {
        Ok(_) => Ok(true),
        Err(e) if e.is_not_found() => Ok(false),
        Err(e) => Err(e.fail(
            format!("removing statement {sid} from the policy of Lambda function {name}"),
            "RemovePermission",
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_our_statement_among_others() {
        let policy = r#"{"Version":"2012-10-17","Statement":[
            {"Sid":"other","Effect":"Allow","Principal":"*","Action":"lambda:InvokeFunction"},
            {"Sid":"provision-apigateway-invoke","Effect":"Allow",
             "Principal":{"Service":"apigateway.amazonaws.com"},"Action":"lambda:InvokeFunction",
             "Condition":{"ArnLike":{"AWS:SourceArn":"arn:aws:execute-api:us-east-1:1:abc/*"}}}]}"#;
        let p = statements_in(policy);
        let s = p.ours.unwrap();
        assert_eq!(s.principal, "apigateway.amazonaws.com");
        assert_eq!(s.action, "lambda:InvokeFunction");
        assert_eq!(s.source_arn, "arn:aws:execute-api:us-east-1:1:abc/*");
        assert_eq!(s.extra_statements, ["other"]);
        assert_eq!(p.others, ["other"]);
        assert_eq!(statements_in(r#"{"Statement":[]}"#), Policy::default());
        assert_eq!(statements_in(""), Policy::default());
    }
}
