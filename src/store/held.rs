//! A held S3 lease lock: its renewal in the background, which the run's fence follows
//! (see `fence`), and its release.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::holder::{Holder, Put};
use super::s3::{not_found, precondition_failed, S3Store};
use crate::aws::SdkResultExt;
use crate::fence;
use crate::report;

/// A held S3 lock, renewed in the background every third of its lease; the run's fence
/// (see `fence`) follows its renewals.
pub struct LeaseLock {
    store: S3Store,
    etag: Arc<Mutex<String>>,
    renewal: tokio::task::JoinHandle<()>,
    fence: Arc<fence::Lease>,
}

/// How soon a failed renewal is tried again (while the lease allows).
const RENEW_AGAIN: Duration = Duration::from_millis(250);

impl LeaseLock {
    pub(super) fn start(
        store: S3Store,
        me: Holder,
        etag: String,
        lease: Duration,
        sent: Instant,
    ) -> LeaseLock {
        let etag = Arc::new(Mutex::new(etag));
        let fence = Arc::new(fence::hold(&store.lock_url(), lease, sent));
        let renewal = {
            let (store, etag, fence) = (store.clone(), etag.clone(), fence.clone());
            tokio::spawn(async move { renew(store, me, etag, lease, fence).await })
        };
        LeaseLock {
            store,
            etag,
            renewal,
            fence,
        }
    }

    /// Deletes the lock (only if it is still ours).
    pub async fn release(self) {
        self.renewal.abort();
        let etag = self.etag.lock().expect("etag").clone();
        let result = self
            .store
            .client()
            .delete_object()
            .bucket(&self.store.bucket)
            .key(&self.store.lock_key)
            .if_match(etag)
            .send()
            .await
            .sdk();
        match result {
            Ok(_) => {}
            Err(e) if not_found(&e) || precondition_failed(&e) => {}
            Err(e) => report::warn(&format!(
                "could not remove the lock {} ({}); it expires by itself when its lease runs out",
                self.store.lock_url(),
                e.message
            )),
        }
        self.fence.release();
    }
}

/// Renews the lock every third of its lease, each time with a new body; a failed
/// renewal is tried again while the lease lasts. Stops, and fences the run, when the
/// lock is gone or another run's, or when the lease ran out unrenewed.
async fn renew(
    store: S3Store,
    mut me: Holder,
    etag: Arc<Mutex<String>>,
    lease: Duration,
    fence: Arc<fence::Lease>,
) {
    let mut pause = lease / 3;
    loop {
        tokio::time::sleep(pause).await;
        if fence::check().is_err() {
            return; // too late: the fence is down for good
        }
        me.renewals += 1;
        let body = serde_json::to_string(&me).expect("holder serializes");
        let current = etag.lock().expect("etag").clone();
        let sent = Instant::now();
        let lost = match store.put_lock(&body, Some(&current), Some(lease)).await {
            Ok(Put::Done(new)) => {
                *etag.lock().expect("etag") = new;
                fence.renewed(sent);
                pause = lease / 3;
                continue;
            }
            Ok(Put::Conflict) => {
                report::trace("renewing the lock: S3 answered 409 (a write in progress); again");
                pause = RENEW_AGAIN;
                continue;
            }
            Err(e) => {
                report::warn(&format!("renewing the lock: {e}; trying again"));
                pause = RENEW_AGAIN;
                continue;
            }
            Ok(Put::Gone) => format!(
                "lost the lock {}: it is gone (another run took it over and released it, or it was removed with `unlock --force`)",
                store.lock_url()
            ),
            Ok(Put::Refused) => match store.see_lock().await {
                // This run's own renewal, its answer lost and the PUT sent again.
                Ok(Some(seen))
                    if seen.holder.as_ref().is_some_and(|h| h.id == me.id) =>
                {
                    *etag.lock().expect("etag") = seen.etag;
                    fence.renewed(sent);
                    pause = lease / 3;
                    continue;
                }
                Ok(Some(seen)) => format!(
                    "lost the lock {} to {}",
                    store.lock_url(),
                    seen.holder_name()
                ),
                Ok(None) => format!("lost the lock {}: it is gone", store.lock_url()),
                Err(_) => format!(
                    "lost the lock {}: it changed under this run",
                    store.lock_url()
                ),
            },
        };
        report::warn(&format!(
            "{lost}; this run sends nothing more and leaves the state as it is"
        ));
        fence.lost(lost);
        return;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::LockOpts;
    use aws_sdk_s3::operation::delete_object::DeleteObjectOutput;
    use aws_sdk_s3::operation::get_object::GetObjectOutput;
    use aws_sdk_s3::operation::put_object::PutObjectOutput;
    use aws_smithy_mocks::{create_mock_http_client, mock, MockResponseInterceptor, RuleMode};
    use aws_smithy_runtime_api::client::interceptors::SharedInterceptor;

    async fn store(rules: Vec<aws_smithy_mocks::Rule>) -> S3Store {
        let sdk = aws_config::defaults(aws_config::BehaviorVersion::latest())
            .region(aws_config::Region::new("us-east-1"))
            .credentials_provider(aws_sdk_s3::config::Credentials::new(
                "AKIDTEST", "secret", None, None, "tests",
            ))
            .http_client(create_mock_http_client())
            .load()
            .await;
        let extra = |service: &'static str| {
            let mut interceptor = MockResponseInterceptor::new().rule_mode(RuleMode::Sequential);
            if service == "s3" {
                for rule in &rules {
                    interceptor = interceptor.with_rule(rule);
                }
            }
            vec![SharedInterceptor::new(interceptor)]
        };
        let aws = crate::aws::Aws::from_sdk(&sdk, &extra);
        S3Store::new(aws.s3, "b", "ci", "us-east-1", "s")
    }

    fn put_ok(etag: &'static str) -> aws_smithy_mocks::Rule {
        mock!(aws_sdk_s3::Client::put_object)
            .then_output(move || PutObjectOutput::builder().e_tag(etag).build())
    }

    fn s3_error(status: u16, code: &str) -> aws_smithy_runtime_api::http::Response {
        aws_smithy_runtime_api::http::Response::new(
            status.try_into().unwrap(),
            aws_smithy_types::body::SdkBody::from(format!(
                "<Error><Code>{code}</Code><Message>injected</Message></Error>"
            )),
        )
    }

    // S3 answers 409 ConditionalRequestConflict when another conditional write on the
    // key is in progress (the emulator never does): a renewal tries again, not a loss.
    // The guard serializes tests on different threads (each has its own runtime).
    #[allow(clippy::await_holding_lock)]
    #[tokio::test(start_paused = true)]
    async fn a_renewal_answered_409_is_tried_again_and_its_body_changes() {
        let _turn = fence::SERIAL.lock().unwrap_or_else(|p| p.into_inner());
        fence::reset_for_test();
        let conflict = mock!(aws_sdk_s3::Client::put_object)
            .then_http_response(|| s3_error(409, "ConditionalRequestConflict"));
        let lease = Duration::from_secs(6);
        let bodies = Arc::new(Mutex::new(Vec::<String>::new()));
        let seen = bodies.clone();
        let renewed = mock!(aws_sdk_s3::Client::put_object)
            .match_requests(move |r| {
                let body = r.body().bytes().unwrap_or_default();
                seen.lock()
                    .unwrap()
                    .push(String::from_utf8_lossy(body).into_owned());
                true
            })
            .then_output(|| PutObjectOutput::builder().e_tag("\"e3\"").build());
        let delete = mock!(aws_sdk_s3::Client::delete_object)
            .match_requests(|r| r.if_match() == Some("\"e3\""))
            .then_output(|| DeleteObjectOutput::builder().build());
        let s = store(vec![
            put_ok("\"e1\""),
            conflict.clone(),
            renewed.clone(),
            delete.clone(),
        ])
        .await;
        let lock = s
            .lock(LockOpts {
                lease,
                wait: Duration::ZERO,
            })
            .await
            .unwrap();
        // The first renewal is due at 2 s: 409, then again 250 ms later: done.
        tokio::time::sleep(Duration::from_millis(2600)).await;
        assert_eq!(conflict.num_calls(), 1);
        assert_eq!(renewed.num_calls(), 1);
        assert!(fence::check().is_ok(), "not a loss: {:?}", fence::check());
        assert!(!lock.renewal.is_finished(), "still renewing");
        assert!(
            // The attempt that met the 409 carried renewal 1: each attempt a new body.
            bodies.lock().unwrap()[0].contains(r#""renewals":2"#),
            "{:?}",
            bodies.lock().unwrap()
        );
        lock.release().await;
        assert_eq!(delete.num_calls(), 1, "released at the renewed ETag");
        fence::reset_for_test();
    }

    // A renewal that finds the lock someone else's (412, and another id on it) fences
    // the run for good.
    #[allow(clippy::await_holding_lock)]
    #[tokio::test(start_paused = true)]
    async fn a_renewal_that_finds_another_holder_fences_the_run() {
        let _turn = fence::SERIAL.lock().unwrap_or_else(|p| p.into_inner());
        fence::reset_for_test();
        let refused = mock!(aws_sdk_s3::Client::put_object)
            .then_http_response(|| s3_error(412, "PreconditionFailed"));
        let other = mock!(aws_sdk_s3::Client::get_object).then_output(|| {
            GetObjectOutput::builder()
                .e_tag("\"x\"")
                .body(aws_sdk_s3::primitives::ByteStream::from_static(
                    br#"{"id":"other","pid":42,"host":"h","user":"u","started":"t","lease_seconds":6}"#,
                ))
                .build()
        });
        let s = store(vec![put_ok("\"e1\""), refused, other]).await;
        let lock = s
            .lock(LockOpts {
                lease: Duration::from_secs(6),
                wait: Duration::ZERO,
            })
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(2100)).await;
        let why = fence::check().expect_err("fenced");
        assert!(
            why.contains("lost the lock") && why.contains("pid 42"),
            "{why}"
        );
        assert!(lock.renewal.is_finished(), "renewal stopped");
        lock.renewal.abort();
        fence::reset_for_test();
    }
}
