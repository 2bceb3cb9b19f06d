//! The Lambda permission that lets this API (and only this API) invoke the function.

use std::time::Instant;

use serde_json::Value;

use super::{Ctx, Handle};
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

/// Our statement in the function's policy, if there is one.
async fn find(ctx: &Ctx<'_>) -> Result<Option<PermissionSettings>> {
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
        Err(e) if e.is_not_found() => return Ok(None),
        Err(e) => {
            return Err(e.fail(
                format!("reading the policy of Lambda function {name}"),
                "GetPolicy",
            ))
        }
    };
    Ok(statement_in(&policy))
}

/// Parses a resource policy and extracts our statement.
pub fn statement_in(policy: &str) -> Option<PermissionSettings> {
    let doc: Value = serde_json::from_str(policy).ok()?;
    let statements = match doc.get("Statement")? {
        Value::Array(a) => a.clone(),
        single => vec![single.clone()],
    };
    let s = statements
        .into_iter()
        .find(|s| s.get("Sid").and_then(Value::as_str) == Some(STATEMENT_ID))?;
    let principal = match s.get("Principal") {
        Some(Value::String(p)) => p.clone(),
        Some(p) => p
            .get("Service")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string(),
        None => String::new(),
    };
    let source_arn = s
        .pointer("/Condition/ArnLike/AWS:SourceArn")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    Some(PermissionSettings {
        principal,
        action: s
            .get("Action")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string(),
        source_arn,
    })
}

pub async fn ensure(ctx: &Ctx<'_>, function: &Handle, api: &Handle) -> Result<()> {
    let started = Instant::now();
    let recorded = ctx.rec.get(KIND).is_some();
    let want = PermissionSettings {
        principal: PRINCIPAL.into(),
        action: ACTION.into(),
        source_arn: source_arn(ctx, &api.id),
    };
    let observed = if function.fresh {
        None
    } else {
        find(ctx).await?
    };
    let decision = decide(&want, observed.as_ref());
    if ctx.apply {
        let name = ctx.function_name();
        if matches!(decision, Decision::Update(_)) {
            remove(ctx).await?;
        }
        if decision != Decision::Unchanged {
            let added = ctx
                .aws
                .lambda
                .add_permission()
                .function_name(&name)
                .statement_id(STATEMENT_ID)
                .action(ACTION)
                .principal(PRINCIPAL)
                .source_arn(&want.source_arn)
                .send()
                .await
                .sdk();
            match added {
                Ok(_) => {}
                // Our own statement already there (an earlier answer was lost): done.
                Err(e) if statement_exists(&e) && observed.is_none() => {}
                Err(e) => {
                    return Err(e.fail(
                        format!("allowing API {} to invoke Lambda function {name}", api.id),
                        "AddPermission",
                    ))
                }
            }
        }
        ctx.rec.set(KIND, STATEMENT_ID)?;
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
    let name = ctx.function_name();
    match ctx
        .aws
        .lambda
        .remove_permission()
        .function_name(&name)
        .statement_id(STATEMENT_ID)
        .send()
        .await
        .sdk()
    {
        Ok(_) => Ok(true),
        Err(e) if e.is_not_found() => Ok(false),
        Err(e) => Err(e.fail(
            format!("removing the API's permission from Lambda function {name}"),
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
        let s = statement_in(policy).unwrap();
        assert_eq!(s.principal, "apigateway.amazonaws.com");
        assert_eq!(s.action, "lambda:InvokeFunction");
        assert_eq!(s.source_arn, "arn:aws:execute-api:us-east-1:1:abc/*");
        assert!(statement_in(r#"{"Statement":[]}"#).is_none());
        assert!(statement_in("").is_none());
    }
}
