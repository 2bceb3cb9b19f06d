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

/// Denies every request to the bucket that does not use TLS.
fn tls_only(bucket: &str, partition: &str) -> String {
    json!({
        "Version": "2012-10-17",
        "Statement": [{
            "Sid": "ProvisionStateTlsOnly",
            "Effect": "Deny",
            "Principal": "*",
            "Action": "s3:*",
            "Resource": [
                format!("arn:{partition}:s3:::{bucket}"),
                format!("arn:{partition}:s3:::{bucket}/*"),
            ],
            "Condition": {"Bool": {"aws:SecureTransport": "false"}},
        }],
    })
    .to_string()
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
    let s3 = &aws.s3;
    let fail = |op: &'static str| {
        let bucket = bucket.clone();
        move |e: crate::aws::SdkFailure| e.fail(format!("setting up state bucket {bucket}"), op)
    };
    let exists = match s3.head_bucket().bucket(&bucket).send().await.sdk() {
        Ok(_) => true,
        Err(e) if e.status == Some(404) || e.is("NotFound") || e.is("NoSuchBucket") => false,
        Err(e) => return Err(fail("HeadBucket")(e)),
    };
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
    s3.put_bucket_versioning()
        .bucket(&bucket)
        .versioning_configuration(
            VersioningConfiguration::builder()
                .status(BucketVersioningStatus::Enabled)
                .build(),
        )
        .send()
        .await
        .sdk()
        .map_err(fail("PutBucketVersioning"))?;
    s3.put_bucket_encryption()
        .bucket(&bucket)
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
    s3.put_public_access_block()
        .bucket(&bucket)
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
    s3.put_bucket_policy()
        .bucket(&bucket)
        .policy(tls_only(&bucket, aws::partition(&region)))
        .send()
        .await
        .sdk()
        .map_err(fail("PutBucketPolicy"))?;
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
            "state_dir": url,
        })),
        Format::Human => report::emit_text(&format!(
            "State bucket {bucket} {} in {region}: versioning on, encrypted by default (SSE-S3), public access blocked, TLS only.\nUse it with --state-dir {url} (or PROVISION_STATE_DIR={url}).\n",
            if created { "created" } else { "ready" }
        )),
    }
    Ok(exit::OK)
}

pub async fn unlock(target: &Target, args: &UnlockArgs, format: Format) -> Result<i32> {
    let name = target.state.lock_name(&target.stack);
    let (removed, message) = match &target.state {
        Location::Dir(dir) => {
            let local = store::file::FileStore::new(dir, &target.stack);
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
            let region = aws::resolve_region(target.region.as_deref(), target.is_local()).await?;
            let aws = Aws::connect(&region, target.endpoint_url.as_deref()).await;
            let Store::S3(s3) = Store::open(&target.state, &target.stack, &aws.s3) else {
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
