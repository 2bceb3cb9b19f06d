//! The user pool's prefix domain, which serves the hosted token endpoint.

use std::time::{Duration, Instant};

use aws_sdk_cognitoidentityprovider::types::DomainStatusType;

use super::{create_once, user_pool, Create, Ctx, Handle};
use crate::aws::{SdkFailure, SdkResultExt};
use crate::errors::{AwsFailure, Error, Result};
use crate::plan::{decide, Decision, DomainSettings};
use crate::report;

pub const KIND: &str = "user_pool_domain";

const ACTIVE_BUDGET: Duration = Duration::from_secs(300);

/// Who has the prefix: None when it is free.
async fn owner(ctx: &Ctx<'_>, prefix: &str) -> Result<Option<(String, Option<DomainStatusType>)>> {
    Ok(holder(ctx, prefix).await?.map(|h| (h.pool, h.status)))
}

/// The domain holding a prefix.
struct Holder {
    pool: String,
    status: Option<DomainStatusType>,
    /// The account of the domain (prefixes are unique across all accounts).
    account: Option<String>,
}

async fn holder(ctx: &Ctx<'_>, prefix: &str) -> Result<Option<Holder>> {
    let out = ctx
        .aws
        .cognito
        .describe_user_pool_domain()
        .domain(prefix)
        .send()
        .await
        .sdk()
        .map_err(|e| {
            e.fail(
                format!("checking Cognito domain prefix {prefix}"),
                "DescribeUserPoolDomain",
            )
        })?;
    Ok(out.domain_description().and_then(|d| {
        d.user_pool_id()
            .filter(|id| !id.is_empty())
            .map(|id| Holder {
                pool: id.to_string(),
                status: d.status().cloned(),
                account: d.aws_account_id().map(str::to_string),
            })
    }))
}

fn taken(prefix: &str, by: &str) -> Error {
    Error::usage(format!(
        "domain prefix `{prefix}` is already used by another user pool ({by}); prefixes are unique per region across all AWS accounts: choose another with --domain-prefix"
    ))
}

/// How long a prefix being released (its pool deleted, or the domain DELETING) is
/// waited for: AWS releases a deleted domain's prefix some time after the delete.
const RELEASE_BUDGET: Duration = Duration::from_secs(180);

/// Before anything is created: the prefix must be free or already ours (the
/// recorded pool, or, without a state file, a pool tagged for this stack). A prefix
/// still held by a domain being deleted (`up` right after `down`) is waited for.
pub async fn preflight(ctx: &Ctx<'_>, our_pool: Option<&str>) -> Result<()> {
    let prefix = ctx.domain_prefix;
    // tokio's clock: the same as the system's in a run, and pausable in tests.
    let started = tokio::time::Instant::now();
    let mut delay = Duration::from_secs(1);
    loop {
        let Holder {
            pool,
            status,
            account,
        } = match holder(ctx, prefix).await? {
            None => return Ok(()),
            Some(h) if Some(h.pool.as_str()) == our_pool => return Ok(()),
            Some(h) => h,
        };
        // Another account's domain is simply someone else's.
        let this_account = account.as_deref().is_none_or(|a| a == ctx.account);
        let releasing = if !this_account {
            false
        } else if matches!(status, Some(DomainStatusType::Deleting)) {
            true
        } else {
            match user_pool::describe(ctx, &pool).await? {
                // Our account's pool is gone: its domain goes with it, a while later.
                None => true,
                Some(p) if our_pool.is_none() && user_pool::is_this_stacks(ctx, &p) => {
                    return Ok(())
                }
                Some(_) => false,
            }
        };
        if !releasing {
            return Err(taken(prefix, &pool));
        }
        if started.elapsed() + delay > RELEASE_BUDGET {
            return Err(domain_failure(
                prefix,
                "still held by a deleted domain after 3 minutes (AWS releases a deleted domain's prefix some time after the delete)",
            ));
        }
        report::progress(&format!(
            "  waiting: domain prefix {prefix} is still being released by a deleted domain (pool {pool}); AWS frees it some time after the delete"
        ));
        crate::interrupt::sleep(delay).await?;
        delay = (delay * 2).min(Duration::from_secs(10));
    }
}

pub async fn ensure(ctx: &Ctx<'_>, pool: &Handle, current: Option<&str>) -> Result<()> {
    let started = Instant::now();
    let prefix = ctx.domain_prefix;
    let recorded = ctx.rec.get(KIND).is_some();
    let want = DomainSettings {
        prefix: prefix.to_string(),
    };
    let observed = current.map(|p| DomainSettings {
        prefix: p.to_string(),
    });
    let decision = decide(&want, observed.as_ref());
    if ctx.apply {
        if let (Decision::Update(_), Some(old)) = (&decision, current) {
            // A pool has at most one prefix domain, so the old one must go first.
            report::progress(&format!(
                "  note: replacing domain prefix {old} with {prefix}: a pool can have only one prefix domain, so the old one is deleted first (the token URL changes)"
            ));
            delete(ctx, &pool.id, old).await?;
        }
        if decision != Decision::Unchanged {
            create(ctx, &pool.id).await?;
            ctx.rec.set(KIND, prefix).await?;
            wait_active(ctx, &pool.id).await?;
        }
        ctx.rec.set(KIND, prefix).await?;
    }
    ctx.finish(KIND, prefix, &decision, recorded, started);
    Ok(())
}

async fn create(ctx: &Ctx<'_>, pool_id: &str) -> Result<()> {
    let prefix = ctx.domain_prefix;
    create_once(
        Create {
            exists: already_exists,
            ..Create::new(
                format!("creating Cognito domain {prefix}"),
                "CreateUserPoolDomain",
            )
        },
        || async {
            ctx.aws
                .once
                .cognito
                .create_user_pool_domain()
                .domain(prefix)
                .user_pool_id(pool_id)
                .send()
                .await
                .sdk()
        },
        || async {
            match owner(ctx, prefix).await? {
                // An earlier attempt of ours went through after all.
                Some((owner, _)) if owner == pool_id => Ok(Some(())),
                Some((owner, _)) => Err(taken(prefix, &owner)),
                None => Ok(None),
            }
        },
    )
    .await?;
    Ok(())
}

fn already_exists(e: &SdkFailure) -> bool {
    e.is("InvalidParameterException") && e.message.to_lowercase().contains("already")
}

async fn wait_active(ctx: &Ctx<'_>, pool_id: &str) -> Result<()> {
    let prefix = ctx.domain_prefix;
    let started = Instant::now();
    let mut delay = Duration::from_secs(1);
    loop {
        match owner(ctx, prefix).await? {
            Some((owner, status)) if owner == pool_id => {
                if matches!(status, None | Some(DomainStatusType::Active)) {
                    return Ok(());
                }
                if matches!(status, Some(DomainStatusType::Failed)) {
                    return Err(domain_failure(prefix, "Cognito reports the domain FAILED"));
                }
            }
            _ => {}
        }
        if started.elapsed() + delay > ACTIVE_BUDGET {
            return Err(domain_failure(prefix, "not ACTIVE after 5 minutes"));
        }
        report::info(&format!("waiting for Cognito domain {prefix} to be ACTIVE"));
        crate::interrupt::sleep(delay).await?;
        delay = (delay * 2).min(Duration::from_secs(10));
    }
}

fn domain_failure(prefix: &str, message: &str) -> Error {
    Error::Aws(AwsFailure {
        doing: format!("waiting for Cognito domain {prefix}"),
        operation: "DescribeUserPoolDomain",
        code: None,
        message: message.into(),
        hint: Some("run `provision up` again; if it persists, try another --domain-prefix".into()),
    })
}

pub async fn delete(ctx: &Ctx<'_>, pool_id: &str, prefix: &str) -> Result<bool> {
    match ctx
        .aws
        .cognito
        .delete_user_pool_domain()
        .domain(prefix)
        .user_pool_id(pool_id)
        .send()
        .await
        .sdk()
    {
        Ok(_) => Ok(true),
        Err(e) if e.is_not_found() => Ok(false),
        Err(e) => Err(e.fail(
            format!("deleting Cognito domain {prefix}"),
            "DeleteUserPoolDomain",
        )),
    }
}
