//! The function's code on its way to Lambda: in the request, or through the state
//! bucket when the package is over the direct-upload limit; and those uploads' removal.

use super::Ctx;
use crate::aws::SdkResultExt;
use crate::errors::{Error, Result};
use crate::package::Package;
use crate::report;

/// How the code reaches Lambda: in the request, or — over the 50 MB direct-upload
/// limit, with state on S3 — through the state bucket first.
pub(super) enum Code {
    Inline(Vec<u8>),
    S3 { bucket: String, key: String },
}

pub(super) async fn code(ctx: &Ctx<'_>, package: &Package) -> Result<Code> {
    if !package.needs_s3() {
        return Ok(Code::Inline(package.zip().to_vec()));
    }
    let Some((bucket, prefix)) = &ctx.artifacts else {
        // `package::build` refuses this without S3 state; kept as a second line.
        return Err(Error::usage(format!(
            "handler package: {} bytes, over Lambda's 50 MB direct upload, and no S3 state to upload it through",
            package.zip().len()
        )));
    };
    // Named by content: the same package is the same object.
    let key = format!("{prefix}{}.zip", package.sha256_hex());
    report::info(&format!(
        "uploading the handler package ({} MB) to s3://{bucket}/{key}",
        package.zip().len() >> 20
    ));
    ctx.aws
        .s3
        .put_object()
        .bucket(bucket)
        .key(&key)
        .body(aws_sdk_s3::primitives::ByteStream::from(
            package.zip().to_vec(),
        ))
        .send()
        .await
        .sdk()
        .map_err(|e| {
            e.fail(
                format!("uploading the handler package to s3://{bucket}/{key}"),
                "PutObject",
            )
        })?;
    Ok(Code::S3 {
        bucket: bucket.clone(),
        key,
    })
}

/// Deletes the packages uploaded for this stack (with `down`).
pub async fn delete_artifacts(ctx: &Ctx<'_>) -> Result<usize> {
    let Some((bucket, prefix)) = &ctx.artifacts else {
        return Ok(0);
    };
    let listed = ctx
        .aws
        .s3
        .list_objects_v2()
        .bucket(bucket)
        .prefix(prefix)
        .send()
        .await
        .sdk()
        .map_err(|e| e.fail(format!("listing s3://{bucket}/{prefix}"), "ListObjectsV2"))?;
    let mut deleted = 0;
    for key in listed.contents().iter().filter_map(|o| o.key()) {
        ctx.aws
            .s3
            .delete_object()
            .bucket(bucket)
            .key(key)
            .send()
            .await
            .sdk()
            .map_err(|e| e.fail(format!("deleting s3://{bucket}/{key}"), "DeleteObject"))?;
        deleted += 1;
    }
    Ok(deleted)
}
