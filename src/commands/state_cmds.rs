//! `init-state` (a bucket fit for shared state) and `unlock` (a lock whose holder is gone).

use aws_sdk_s3::types::{
    BucketLocationConstraint, BucketVersioningStatus, CreateBucketConfiguration,
    PublicAccessBlockConfiguration, ServerSideEncryption, ServerSideEncryptionByDefault,
    ServerSideEncryptionConfiguration, ServerSideEncryptionRule, VersioningConfiguration,
};
use serde_json::json;

use crate::aws::{self, Aws, SdkResultExt};
use crate::cli::{Format, InitStateArgs, UnlockArgs};
use crate::config::{self, Target};
use crate::errors::{exit, Error, Result};
use crate::report;
use crate::store::{self, Location, Store};

const TLS_ONLY_SID: &str = "ProvisionStateTlsOnly";

/// The statement that denies every request to the bucket that does not use TLS.
fn tls_only(bucket: &str, partition: &str) -> serde_json::Value {
    json!({
        "Sid": TLS_ONLY_SID,
        "Effect": "Deny",
        "Principal": "*",
        "Action": "s3:*",
        "Resource": [
            format!("arn:{partition}:s3:::{bucket}"),
            format!("arn:{partition}:s3:::{bucket}/*"),
        ],
        "Condition": {"Bool": {"aws:SecureTransport": "false"}},
    })
}

/// The bucket policy with the TLS-only statement added, or None when it has one (ours,
/// or any Deny on `aws:SecureTransport` = false). Every other statement is kept as is.
fn with_tls_only(current: Option<&str>, bucket: &str, partition: &str) -> Result<Option<String>> {
    let Some(text) = current else {
        return Ok(Some(
            json!({"Version": "2012-10-17", "Statement": [tls_only(bucket, partition)]})
                .to_string(),
        ));
    };
    let mut policy: serde_json::Value = serde_json::from_str(text).map_err(|e| {
        Error::usage(format!(
            "state bucket `{bucket}`: its bucket policy is not JSON ({e}); fix it, then run init-state again"
        ))
    })?;
    let statements = match policy.get_mut("Statement") {
        Some(serde_json::Value::Array(list)) => list,
        Some(one) => {
            *one = serde_json::Value::Array(vec![one.take()]);
            one.as_array_mut().expect("just made")
        }
        None => {
            policy["Statement"] = json!([]);
            policy["Statement"].as_array_mut().expect("just made")
        }
    };
    let denies_plain_http = |st: &serde_json::Value| {
        st.get("Sid").and_then(|s| s.as_str()) == Some(TLS_ONLY_SID)
            || (st.get("Effect").and_then(|e| e.as_str()) == Some("Deny")
                && st["Condition"]["Bool"]["aws:SecureTransport"]
                    .as_str()
                    .is_some_and(|v| v.eq_ignore_ascii_case("false")))
    };
    if statements.iter().any(denies_plain_http) {
        return Ok(None);
    }
    statements.push(tls_only(bucket, partition));
    Ok(Some(policy.to_string()))
}

pub async fn init_state(target: &Target, args: &InitStateArgs, format: Format) -> Result<i32> {
    let Location::S3 { bucket, prefix } = Location::parse(&args.location)? else {
        return Err(Error::usage(format!(
            "init-state `{}`: takes s3://BUCKET[/PREFIX]; a local state directory needs no set-up",
            args.location.display()
        )));
    };
    let region = aws::resolve_region(target.region.as_deref(), target.is_local()).await?;
    config::check_partition(&region, target.is_local())?;
    let aws = Aws::connect(&region, target.endpoint_url.as_deref()).await;
    let fail = |op: &'static str| {
        let bucket = bucket.clone();
        move |e: crate::aws::SdkFailure| e.fail(format!("setting up state bucket {bucket}"), op)
    };
    // An existing bucket may live in another region: set it up there.
    let located = store::s3::S3Store::new(aws.s3.clone(), &bucket, &prefix, &region, "-");
    let exists = match located.locate().await {
        Ok(()) => true,
        Err(e) if e.status == Some(404) || e.is("NotFound") || e.is("NoSuchBucket") => false,
        Err(e) => return Err(fail("HeadBucket")(e)),
    };
    let s3 = &located.client();
    let region = located.bucket_region().unwrap_or(region);
    let mut created = false;
    if !exists {
        let mut create = s3.create_bucket().bucket(&bucket);
        // us-east-1 is the one region that takes no location constraint.
        if region != "us-east-1" {
            create = create.create_bucket_configuration(
                CreateBucketConfiguration::builder()
                    .location_constraint(BucketLocationConstraint::from(region.as_str()))
                    .build(),
            );
        }
        match create.send().await.sdk() {
            Ok(_) => created = true,
            Err(e) if e.is("BucketAlreadyOwnedByYou") => {}
            Err(e) if e.is("BucketAlreadyExists") => {
                return Err(Error::usage(format!(
                    "state bucket `{bucket}`: the name is taken by another account (bucket names are global); choose another"
                )))
            }
            Err(e) => return Err(fail("CreateBucket")(e)),
        }
    }
    let changed = settle(s3, &bucket, &region, created).await?;
    let url = if prefix.is_empty() {
        format!("s3://{bucket}")
    } else {
        format!("s3://{bucket}/{prefix}")
    };
    match format {
        Format::Json => report::emit_json(&json!({
            "bucket": bucket,
            "prefix": prefix,
            "region": region,
            "created": created,
            "changed": changed,
            "state_dir": url,
        })),
        Format::Human => report::emit_text(&format!(
            "State bucket {bucket} {} in {region}: versioning on, encrypted by default, public access blocked, TLS only ({}).\nUse it with --state-dir {url} (or PROVISION_STATE_DIR={url}).\n",
            if created { "created" } else { "ready" },
            if changed.is_empty() {
                "nothing changed".to_string()
            } else {
                format!("changed: {}", changed.join("; "))
            }
        )),
    }
    Ok(exit::OK)
}

/// Turns on what is off and adds what is missing, never removing or weakening a
/// setting the bucket has: each setting is read first. What it changed, in words.
async fn settle(
    s3: &aws_sdk_s3::Client,
    bucket: &str,
    region: &str,
    created: bool,
) -> Result<Vec<String>> {
    let fail = |op: &'static str| {
        move |e: crate::aws::SdkFailure| e.fail(format!("setting up state bucket {bucket}"), op)
    };
    let mut changed = Vec::new();
    if created {
        changed.push("bucket created".to_string());
    }
    let versioning = s3
        .get_bucket_versioning()
        .bucket(bucket)
        .send()
        .await
        .sdk()
        .map_err(fail("GetBucketVersioning"))?;
    if versioning.status() != Some(&BucketVersioningStatus::Enabled) {
        s3.put_bucket_versioning()
            .bucket(bucket)
            .versioning_configuration(
                VersioningConfiguration::builder()
                    .status(BucketVersioningStatus::Enabled)
                    .build(),
            )
            .send()
            .await
            .sdk()
            .map_err(fail("PutBucketVersioning"))?;
        changed.push("versioning turned on".into());
    }
    // Any default encryption is kept (SSE-KMS and DSSE are stronger than ours); only a
    // bucket with none gets SSE-S3.
    let encryption = match s3.get_bucket_encryption().bucket(bucket).send().await.sdk() {
        Ok(out) => out
            .server_side_encryption_configuration()
            .map(|c| !c.rules().is_empty())
            .unwrap_or(false),
        Err(e)
            if e.is("ServerSideEncryptionConfigurationNotFoundError") || e.status == Some(404) =>
        {
            false
        }
        Err(e) => return Err(fail("GetBucketEncryption")(e)),
    };
    if !encryption {
        s3.put_bucket_encryption()
            .bucket(bucket)
            .server_side_encryption_configuration(
                ServerSideEncryptionConfiguration::builder()
                    .rules(
                        ServerSideEncryptionRule::builder()
                            .apply_server_side_encryption_by_default(
                                ServerSideEncryptionByDefault::builder()
                                    .sse_algorithm(ServerSideEncryption::Aes256)
                                    .build()
                                    .expect("algorithm set"),
                            )
                            .build(),
                    )
                    .build()
                    .expect("rules set"),
            )
            .send()
            .await
            .sdk()
            .map_err(fail("PutBucketEncryption"))?;
        changed.push("default encryption (SSE-S3) turned on".into());
    }
    let blocks = match s3
        .get_public_access_block()
        .bucket(bucket)
        .send()
        .await
        .sdk()
    {
        Ok(out) => out.public_access_block_configuration().map(|c| {
            [
                c.block_public_acls(),
                c.ignore_public_acls(),
                c.block_public_policy(),
                c.restrict_public_buckets(),
            ]
            .iter()
            .all(|b| *b == Some(true))
        }),
        Err(e) if e.is("NoSuchPublicAccessBlockConfiguration") || e.status == Some(404) => None,
        Err(e) => return Err(fail("GetPublicAccessBlock")(e)),
    };
    if blocks != Some(true) {
        s3.put_public_access_block()
            .bucket(bucket)
            .public_access_block_configuration(
                PublicAccessBlockConfiguration::builder()
                    .block_public_acls(true)
                    .ignore_public_acls(true)
                    .block_public_policy(true)
                    .restrict_public_buckets(true)
                    .build(),
            )
            .send()
            .await
            .sdk()
            .map_err(fail("PutPublicAccessBlock"))?;
        changed.push("all four public access blocks turned on".into());
    }
    let policy = match s3.get_bucket_policy().bucket(bucket).send().await.sdk() {
        Ok(out) => out.policy().map(str::to_string),
        Err(e) if e.is("NoSuchBucketPolicy") || e.status == Some(404) => None,
        Err(e) => return Err(fail("GetBucketPolicy")(e)),
    };
    if let Some(new) = with_tls_only(policy.as_deref(), bucket, aws::partition(region))? {
        s3.put_bucket_policy()
            .bucket(bucket)
            .policy(new)
            .send()
            .await
            .sdk()
            .map_err(fail("PutBucketPolicy"))?;
        changed.push(if policy.is_some() {
            "TLS-only statement added to the bucket policy (its other statements kept)".into()
        } else {
            "bucket policy set: TLS only".into()
        });
    }
    Ok(changed)
}

pub async fn unlock(target: &Target, args: &UnlockArgs, format: Format) -> Result<i32> {
    let pinned = store::pinned_region(&target.state, &target.stack)?;
    let region = match (&target.region, pinned) {
        (Some(r), _) => r.clone(),
        (None, Some(r)) => r,
        (None, None) => aws::resolve_region(None, target.is_local()).await?,
    };
    let name = target.state.lock_name(&region, &target.stack);
    let (removed, message) = match &target.state {
        Location::Dir(dir) => {
            let local = store::file::FileStore::new(dir, &region, &target.stack);
            // A local lock is held only by a live process (the OS drops it with it).
            match local.lock(std::time::Duration::ZERO).await {
                Ok(lock) => {
                    drop(lock);
                    (None, format!("No live lock on {name}."))
                }
                Err(Error::Locked(held)) => {
                    return Err(Error::Locked(format!(
                        "{held}. A local lock is held by a live process and goes when it ends; stop that run (--force cannot take it)"
                    )))
                }
                Err(e) => return Err(e),
            }
        }
        Location::S3 { .. } => {
            let aws = Aws::connect(&region, target.endpoint_url.as_deref()).await;
            let Store::S3(s3) = Store::open(&target.state, &region, &target.stack, &aws.s3) else {
                unreachable!("an s3:// location opens an S3 store")
            };
            s3.check_bucket().await?;
            match s3.unlock(args.force).await? {
                None => (None, format!("No lock on {name}.")),
                Some(Ok(holder)) => (
                    Some(holder.clone()),
                    format!("Removed the lock on {name}, held by {holder}."),
                ),
                Some(Err(holder)) => {
                    return Err(Error::Locked(format!(
                        "the lock on {name} is live: held by {holder}, its lease still runs. Wait for it to finish or expire; --force removes it anyway (only if that run is surely gone)"
                    )))
                }
            }
        }
    };
    match format {
        Format::Json => report::emit_json(&json!({"lock": name, "removed": removed})),
        Format::Human => report::emit_text(&message),
    }
    Ok(exit::OK)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_tls_only_statement_is_added_to_a_policy_and_every_other_kept() {
        let fresh = with_tls_only(None, "b", "aws").unwrap().unwrap();
        assert!(fresh.contains(TLS_ONLY_SID), "{fresh}");
        let theirs = r#"{"Version":"2012-10-17","Statement":{"Sid":"Mine","Effect":"Allow","Principal":"*","Action":"s3:GetObject","Resource":"arn:aws:s3:::b/*"}}"#;
        let merged: serde_json::Value =
            serde_json::from_str(&with_tls_only(Some(theirs), "b", "aws").unwrap().unwrap())
                .unwrap();
        let sids: Vec<&str> = merged["Statement"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["Sid"].as_str().unwrap())
            .collect();
        assert_eq!(sids, ["Mine", TLS_ONLY_SID]);
        // Already there (ours, or any Deny on plain HTTP): nothing to change.
        assert_eq!(with_tls_only(Some(&fresh), "b", "aws").unwrap(), None);
        let their_deny = r#"{"Statement":[{"Sid":"NoHttp","Effect":"Deny","Principal":"*","Action":"s3:*","Resource":"*","Condition":{"Bool":{"aws:SecureTransport":"false"}}}]}"#;
        assert_eq!(with_tls_only(Some(their_deny), "b", "aws").unwrap(), None);
        let bad = with_tls_only(Some("not json"), "b", "aws").unwrap_err();
        assert_eq!(bad.exit_code(), 2);
    }
}
