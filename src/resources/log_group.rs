//! The function's CloudWatch log group, `/aws/lambda/<stack>-handler`: made by `up`
//! before anything may invoke the function (so Lambda writes into a group that is tagged and expires, not
//! one it makes itself that is kept, and billed, forever), with the configured
//! retention; adopted when Lambda made it first; deleted by `down` only when tagged
//! for the stack.

use std::collections::HashMap;
use std::time::Instant;

use super::{check_owner, create_once, not_ours, Create, Ctx, Made, Removal, NEW, STACK_TAG};
use crate::aws::SdkResultExt;
use crate::errors::Result;
use crate::plan::{decide, Decision, LogGroupSettings};

pub const KIND: &str = "log_group";

/// Where Lambda writes the function's logs.
pub fn name(function: &str) -> String {
    format!("/aws/lambda/{function}")
}

#[derive(Debug, Clone)]
pub struct Found {
    pub arn: String,
    pub retention_days: i32,
    pub tags: HashMap<String, String>,
}

/// The group, with its tags when `read_tags` (else none are read: a recorded group was
/// tagged when provision made or adopted it); None when there is none.
pub async fn find(ctx: &Ctx<'_>, read_tags: bool) -> Result<Option<Found>> {
    let name = name(&ctx.function_name());
    let out = ctx
        .aws
        .logs
        .describe_log_groups()
        .log_group_name_prefix(&name)
        .send()
        .await
        .sdk()
        .map_err(|e| e.fail(format!("reading log group {name}"), "DescribeLogGroups"))?;
    let Some(group) = out
        .log_groups()
        .iter()
        .find(|g| g.log_group_name() == Some(name.as_str()))
    else {
        return Ok(None);
    };
    // DescribeLogGroups' `arn` ends in `:*`; the tagging API wants it without.
    let arn = group
        .log_group_arn()
        .map(str::to_string)
        .or_else(|| group.arn().map(|a| a.trim_end_matches(":*").to_string()))
        .unwrap_or_default();
    let tags = if read_tags {
        ctx.aws
            .logs
            .list_tags_for_resource()
            .resource_arn(&arn)
            .send()
            .await
            .sdk()
            .map_err(|e| {
                e.fail(
                    format!("reading the tags of log group {name}"),
                    "ListTagsForResource",
                )
            })?
            .tags()
            .cloned()
            .unwrap_or_default()
    } else {
        HashMap::from([(STACK_TAG.to_string(), ctx.stack.to_string())])
    };
    Ok(Some(Found {
        arn,
        // None: never expires.
        retention_days: group.retention_in_days().unwrap_or(0),
        tags,
    }))
}

/// The run's first read of the recorded group (see `read_once`).
pub(super) async fn first_find(ctx: &Ctx<'_>) -> Result<Option<Found>> {
    super::read_once(ctx, "DescribeLogGroups".into(), find(ctx, false)).await
}

/// Lambda makes the group on the first invocation if it is missing, untagged: that
/// one is our function's, and adopted. One tagged for another stack is not ours.
fn check_ours(ctx: &Ctx<'_>, found: &Found, name: &str) -> Result<()> {
    if found.tags.contains_key(STACK_TAG) {
        check_owner(Some(&found.tags), ctx.stack, &format!("log group {name}"))?;
    }
    Ok(())
}

pub async fn ensure(ctx: &Ctx<'_>) -> Result<()> {
    let started = Instant::now();
    let name = name(&ctx.function_name());
    let recorded = ctx.rec.get(KIND).is_some();
    let found = if recorded {
        first_find(ctx).await?
    } else {
        find(ctx, true).await?
    };
    if let Some(f) = &found {
        check_ours(ctx, f, &name)?;
    }
    let observed = found.as_ref().map(|f| LogGroupSettings {
        retention_days: f.retention_days,
        tagged: f.tags.get(STACK_TAG).map(String::as_str) == Some(ctx.stack),
    });
    // Tagged when made. A group Lambda made first (untagged, with our function's name)
    // is adopted as it is, not tagged: the caller's policy allows tagging only what
    // already carries the stack's tag, so that a role able to run `up` cannot claim
    // another team's resources by tagging them. It stays the stack's through its
    // name and the stack's function.
    let want = LogGroupSettings {
        retention_days: ctx.desired.log_retention_days,
        tagged: observed.as_ref().is_none_or(|o| o.tagged),
    };
    let decision = decide(&want, observed.as_ref());
    if found.is_some() {
        ctx.log_group_made.set(true);
    }
    if ctx.apply && decision != Decision::Unchanged {
        if found.is_none() {
            create(ctx, &name).await?;
            // The function may be made now; the retention follows.
            ctx.log_group_made.set(true);
        }
        let retention_differs = match &decision {
            Decision::Update(fields) => fields.contains(&"retention_days"),
            _ => want.retention_days != 0,
        };
        if retention_differs {
            set_retention(ctx, &name, want.retention_days).await?;
        }
    }
    if ctx.apply {
        ctx.rec.set(KIND, &name).await?;
    }
    let id = if found.is_none() && !ctx.apply {
        NEW
    } else {
        &name
    };
    ctx.finish(KIND, &super::shown(id, &name), &decision, recorded, started);
    Ok(())
}

async fn create(ctx: &Ctx<'_>, name: &str) -> Result<String> {
    let made = create_once(
        Create::new(format!("creating log group {name}"), "CreateLogGroup"),
        || async {
            ctx.aws
                .once
                .logs
                .create_log_group()
                .log_group_name(name)
                .tags(STACK_TAG, ctx.tag_value())
                .send()
                .await
                .sdk()
        },
        || async {
            let found = find(ctx, true).await?;
            if let Some(f) = &found {
                check_ours(ctx, f, name)?;
            }
            Ok(found.map(|f| f.arn))
        },
    )
    .await?;
    Ok(match made {
        // CreateLogGroup answers nothing: the ARN is known from the name.
        Made::New(_) => format!(
            "arn:{}:logs:{}:{}:log-group:{name}",
            ctx.partition, ctx.region, ctx.account
        ),
        Made::Found(arn) => arn,
    })
}

/// `days` 0: never expire.
async fn set_retention(ctx: &Ctx<'_>, name: &str, days: i32) -> Result<()> {
    if days == 0 {
        ctx.aws
            .logs
            .delete_retention_policy()
            .log_group_name(name)
            .send()
            .await
            .sdk()
            .map(|_| ())
            .map_err(|e| {
                e.fail(
                    format!("removing the retention of log group {name}"),
                    "DeleteRetentionPolicy",
                )
            })
    } else {
        ctx.aws
            .logs
            .put_retention_policy()
            .log_group_name(name)
            .retention_in_days(days)
            .send()
            .await
            .sdk()
            .map(|_| ())
            .map_err(|e| {
                e.fail(
                    format!("setting the retention of log group {name} to {days} days"),
                    "PutRetentionPolicy",
                )
            })
    }
}

/// Deletes the group (after the function: an invocation would make it again) when it
/// is tagged for this stack: a group of the same name that is not (someone else's, or
/// one Lambda made for a function that is not ours) is left. One read, by the ARN the
/// name gives, instead of a listing.
/// Deletes the function's log group when it is the stack's: tagged so, or untagged
/// while `function_ours` (this run deleted the stack's own, tagged function, and
/// Lambda writes to the group named after it: an untagged one is the group Lambda made
/// for it, or one `up` adopted as it was, which the caller's policy may not tag). An
/// untagged group without our function beside it is someone else's.
pub async fn delete(ctx: &Ctx<'_>, function_ours: bool) -> Result<Removal> {
    let name = name(&ctx.function_name());
    let arn = format!(
        "arn:{}:logs:{}:{}:log-group:{name}",
        ctx.partition, ctx.region, ctx.account
    );
    let tags = match ctx
        .aws
        .logs
        .list_tags_for_resource()
        .resource_arn(&arn)
        .send()
        .await
        .sdk()
    {
        Ok(out) => out.tags().cloned().unwrap_or_default(),
        Err(e) if e.is_not_found() => return Ok(Removal::Absent),
        Err(e) => {
            return Err(e.fail(
                format!("reading the tags of log group {name}"),
                "ListTagsForResource",
            ))
        }
    };
    let untagged = !tags.contains_key(STACK_TAG);
    if let Some(why) = not_ours(Some(&tags), ctx.stack, &format!("log group {name}")) {
        if !(untagged && function_ours) {
            return Ok(Removal::Kept(why));
        }
    }
    match ctx
        .aws
        .logs
        .delete_log_group()
        .log_group_name(&name)
        .send()
        .await
        .sdk()
    {
        Ok(_) => Ok(Removal::Deleted),
        Err(e) if e.is_not_found() => Ok(Removal::Absent),
        Err(e) => Err(e.fail(format!("deleting log group {name}"), "DeleteLogGroup")),
    }
}
