//! The Lambda function: `provided.al2023`, the handler zip as `bootstrap`.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use aws_sdk_lambda::primitives::Blob;
use aws_sdk_lambda::types::{Architecture, FunctionCode, Runtime};

use super::{
    check_owner, create_once, not_ours, retry_while, Create, Ctx, Handle, Made, Removal, NEW,
    STACK_TAG,
};
use crate::aws::{SdkFailure, SdkResultExt};
use crate::errors::{Error, Result};
use crate::plan::{decide, Decision, FunctionSettings};

pub use super::function_code::delete_artifacts;
use super::function_code::{code, Code};
pub use super::function_ready::{wait_ready, wait_settled};

pub const KIND: &str = "lambda_function";
pub const RUNTIME: &str = "provided.al2023";
pub const HANDLER: &str = "bootstrap";

/// How long to keep retrying while a new role cannot be assumed yet (IAM propagation).
const ROLE_PROPAGATION_BUDGET: Duration = Duration::from_secs(90);

pub struct Found {
    pub arn: String,
    /// Active, and no update in progress: safe to change or to attach a permission to.
    pub ready: bool,
    pub tags: HashMap<String, String>,
    pub settings: FunctionSettings,
}

/// The function as this run first read it: read once, shared by everything that
/// needs it before it changes (the role wants its role ARN, `ensure` and `delete` all
/// of it).
pub async fn observed<'c>(ctx: &'c Ctx<'_>) -> Result<Option<&'c Found>> {
    Ok(ctx.function.get_or_try_init(|| find(ctx)).await?.as_ref())
}

/// GetFunction, now.
pub async fn find(ctx: &Ctx<'_>) -> Result<Option<Found>> {
    let name = ctx.function_name();
    match ctx
        .aws
        .lambda
        .get_function()
        .function_name(&name)
        .send()
        .await
        .sdk()
    {
        Ok(out) => {
            let Some(c) = out.configuration() else {
                return Ok(None);
            };
            use aws_sdk_lambda::types::{LastUpdateStatus, State};
            let ready = matches!(c.state(), None | Some(State::Active))
                && !matches!(c.last_update_status(), Some(LastUpdateStatus::InProgress));
            Ok(Some(Found {
                ready,
                arn: c.function_arn().unwrap_or_default().to_string(),
                tags: out.tags().cloned().unwrap_or_default(),
                settings: FunctionSettings {
                    code_sha256: c.code_sha256().unwrap_or_default().to_string(),
                    memory_mb: c.memory_size().unwrap_or_default(),
                    timeout_s: c.timeout().unwrap_or_default(),
                    runtime: c
                        .runtime()
                        .map(|r| r.as_str().to_string())
                        .unwrap_or_default(),
                    handler: c.handler().unwrap_or_default().to_string(),
                    role_arn: c.role().unwrap_or_default().to_string(),
                    architecture: c
                        .architectures()
                        .first()
                        .map(|a| a.as_str().to_string())
                        .unwrap_or_else(|| "x86_64".into()),
                },
            }))
        }
        Err(e) if e.is_not_found() => Ok(None),
        Err(e) => Err(e.fail(format!("reading Lambda function {name}"), "GetFunction")),
    }
}

fn desired(ctx: &Ctx<'_>, role: &Handle, observed: Option<&FunctionSettings>) -> FunctionSettings {
    FunctionSettings {
        // Without a package (status without a handler build) the code is not compared.
        code_sha256: match (ctx.package, observed) {
            (Some(p), _) => p.code_sha256().to_string(),
            (None, Some(o)) => o.code_sha256.clone(),
            (None, None) => String::new(),
        },
        memory_mb: ctx.desired.memory_mb,
        timeout_s: ctx.desired.timeout_s,
        runtime: RUNTIME.into(),
        handler: HANDLER.into(),
        role_arn: role.arn.clone(),
        architecture: ctx.desired.architecture.as_str().into(),
    }
}

fn architecture(ctx: &Ctx<'_>) -> Architecture {
    Architecture::from(ctx.desired.architecture.as_str())
}

/// The function as `ensure` left it.
#[derive(Debug, Clone)]
pub struct Function {
    pub handle: Handle,
    /// Created or updated just now: call `wait_ready` before relying on it.
    pub settling: bool,
}

/// Ensures the function. Its read runs while `role` (the role's own ensure) is under
/// way: the two do not depend on each other until the function needs the role's ARN.
/// A new or updated function is not waited for here (see `wait_ready`), so that the
/// API can be built while it settles.
pub async fn ensure(
    ctx: &Ctx<'_>,
    role: impl std::future::Future<Output = Result<super::role_policy::Role>>,
) -> Result<Function> {
    let name = ctx.function_name();
    let recorded = ctx.rec.get(KIND).is_some();
    let (role, found) = ctx.both(role, observed(ctx)).await;
    let (role, found) = (role?, found?);
    let started = Instant::now();
    if let Some(f) = &found {
        check_owner(Some(&f.tags), ctx.stack, &format!("Lambda function {name}"))?;
    }
    let want = desired(ctx, &role.handle, found.map(|f| &f.settings));
    let decision = decide(&want, found.map(|f| &f.settings));
    let mut arn = found.map(|f| f.arn.clone()).unwrap_or_else(|| {
        format!(
            "arn:{}:lambda:{}:{}:function:{name}",
            ctx.partition, ctx.region, ctx.account
        )
    });
    if ctx.apply {
        let package = ctx
            .package
            .ok_or_else(|| Error::usage("handler package: none was built"))?;
        if decision != Decision::Create {
            super::role_policy::put_pending(ctx, &role).await?;
        }
        // An earlier run may have been stopped while the function was still settling.
        if found.is_some_and(|f| !f.ready) {
            wait_ready(ctx).await?;
        }
        match &decision {
            Decision::Create => {
                let (attached, created) = ctx
                    .both(super::role_policy::put_pending(ctx, &role), async {
                        create(ctx, &name, &want, &code(ctx, package).await?).await
                    })
                    .await;
                if let Ok(created) = &created {
                    arn = created.clone();
                    ctx.rec.set(KIND, &name).await?;
                }
                attached?;
                created?;
            }
            Decision::Update(fields) => {
                if fields
                    .iter()
                    .any(|f| FunctionSettings::CODE_FIELDS.contains(f))
                {
                    let update = ctx.aws.lambda.update_function_code().function_name(&name);
                    let update = match code(ctx, package).await? {
                        Code::Inline(zip) => update.zip_file(Blob::new(zip)),
                        Code::S3 { bucket, key } => update.s3_bucket(bucket).s3_key(key),
                    };
                    update
                        .architectures(architecture(ctx))
                        .send()
                        .await
                        .sdk()
                        .map_err(|e| {
                            e.fail(
                                format!("updating the code of Lambda function {name}"),
                                "UpdateFunctionCode",
                            )
                        })?;
                }
                if fields
                    .iter()
                    .any(|f| !FunctionSettings::CODE_FIELDS.contains(f))
                {
                    if fields
                        .iter()
                        .any(|f| FunctionSettings::CODE_FIELDS.contains(f))
                    {
                        // One update at a time: the code's must finish first.
                        wait_settled(ctx).await?;
                    }
                    ctx.aws
                        .lambda
                        .update_function_configuration()
                        .function_name(&name)
                        .memory_size(want.memory_mb)
                        .timeout(want.timeout_s)
                        .runtime(Runtime::from(RUNTIME))
                        .handler(HANDLER)
                        .role(&want.role_arn)
                        .send()
                        .await
                        .sdk()
                        .map_err(|e| {
                            e.fail(
                                format!("updating the configuration of Lambda function {name}"),
                                "UpdateFunctionConfiguration",
                            )
                        })?;
                }
                ctx.rec.set(KIND, &name).await?;
            }
            Decision::Unchanged => ctx.rec.set(KIND, &name).await?,
        }
    }
    let fresh = found.is_none();
    ctx.finish(KIND, &name, &decision, recorded, started);
    let id = if fresh && !ctx.apply {
        NEW.to_string()
    } else {
        name
    };
    Ok(Function {
        handle: Handle::new(id, arn, fresh),
        settling: ctx.apply && decision != Decision::Unchanged,
    })
}

async fn create(ctx: &Ctx<'_>, name: &str, want: &FunctionSettings, code: &Code) -> Result<String> {
    let attempt = || {
        ctx.aws
            .once
            .lambda
            .create_function()
            .function_name(name)
            .runtime(Runtime::from(RUNTIME))
            .handler(HANDLER)
            .role(&want.role_arn)
            .code(match code {
                Code::Inline(zip) => FunctionCode::builder()
                    .zip_file(Blob::new(zip.clone()))
                    .build(),
                Code::S3 { bucket, key } => FunctionCode::builder()
                    .s3_bucket(bucket)
                    .s3_key(key)
                    .build(),
            })
            .memory_size(want.memory_mb)
            .timeout(want.timeout_s)
            .architectures(architecture(ctx))
            .description(format!("Handler of provision stack {}", ctx.stack))
            .tags(STACK_TAG, ctx.tag_value())
            .send()
    };
    let doing = format!("creating Lambda function {name}");
    // Its log group first (see `Ctx::log_group_made`); its failure is reported by itself.
    if !ctx.log_group_made.wait().await? {
        return Err(Error::Http(format!(
            "{doing}: not sent, as its log group {} could not be made (see the error about it)",
            super::log_group::name(name)
        )));
    }
    let made = create_once(
        Create::new(doing.clone(), "CreateFunction"),
        || {
            retry_while(
                &doing,
                ROLE_PROPAGATION_BUDGET,
                || async { attempt().await.sdk() },
                role_not_assumable_yet,
            )
        },
        // A name conflict adopts only a function tagged for this stack.
        || async {
            match find(ctx).await? {
                Some(f) => {
                    check_owner(Some(&f.tags), ctx.stack, &format!("Lambda function {name}"))?;
                    Ok(Some(f.arn))
                }
                None => Ok(None),
            }
        },
    )
    .await;
    match made {
        Ok(Made::New(out)) => Ok(out.function_arn().unwrap_or_default().to_string()),
        Ok(Made::Found(arn)) => Ok(arn),
        Err(mut err) => {
            if let Error::Aws(f) = &mut err {
                if f.code.as_deref() == Some("InvalidParameterValueException")
                    && f.message.contains("cannot be assumed")
                {
                    f.hint = Some("the new IAM role was still not usable by Lambda after 90 s; run `provision up` again".into());
                }
            }
            Err(err)
        }
    }
}

/// IAM is eventually consistent: a role just made may not be assumable by Lambda for
/// several seconds, and CreateFunction says so with this error.
pub fn role_not_assumable_yet(e: &SdkFailure) -> bool {
    e.is("InvalidParameterValueException") && e.message.contains("cannot be assumed")
}

/// Deletes the function when it is tagged for this stack (its permission goes with it);
/// one of the same name that is not is kept, whatever the state file says.
pub async fn delete(ctx: &Ctx<'_>) -> Result<Removal> {
    let name = ctx.function_name();
    let Some(found) = observed(ctx).await? else {
        return Ok(Removal::Absent);
    };
    if let Some(why) = not_ours(
        Some(&found.tags),
        ctx.stack,
        &format!("Lambda function {name}"),
    ) {
        return Ok(Removal::Kept(why));
    }
    Ok(if delete_checked(ctx).await? {
        Removal::Deleted
    } else {
        Removal::Absent
    })
}

/// DeleteFunction, once its tag was checked.
async fn delete_checked(ctx: &Ctx<'_>) -> Result<bool> {
    let name = ctx.function_name();
    match ctx
        .aws
        .lambda
        .delete_function()
        .function_name(&name)
        .send()
        .await
        .sdk()
    {
        Ok(_) => Ok(true),
        Err(e) if e.is_not_found() => Ok(false),
        Err(e) => Err(e.fail(format!("deleting Lambda function {name}"), "DeleteFunction")),
    }
}
