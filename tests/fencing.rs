//! Under real CI: a frozen holder that lost its lease sends nothing more; a lost S3
//! answer is known as the run's own write; one state location (a directory, or a bucket
//! whose home is another region) serves several regions; the older layout is read and
//! moved; `init-state` keeps what a bucket has.

mod common;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::proxy::{is_write, Lose, Proxy};
use common::{Harness, REGION};

const BUCKET: &str = "provision-fencing-state";
const PREFIX: &str = "ci";

fn location() -> String {
    format!("s3://{BUCKET}/{PREFIX}")
}

fn init(h: &Harness) {
    let r = h.run(&["init-state", &location()]);
    assert_eq!(r.code, 0, "{}", r.describe());
}

async fn object(s3: &aws_sdk_s3::Client, key: &str) -> Option<String> {
    common::s3_object(s3, BUCKET, key).await
}

fn key(region: &str, h: &Harness, ext: &str) -> String {
    format!("{PREFIX}/{region}/{}.{ext}", h.stack)
}

/// `provision` from another working directory (another machine: only S3 is shared).
fn elsewhere(h: &Harness, name: &str) -> Command {
    let dir = h.dir.path().join(name);
    std::fs::create_dir_all(&dir).unwrap();
    let mut c = h.command();
    c.current_dir(&dir)
        .env("HOME", &dir)
        .env("PROVISION_STATE_DIR", location())
        .env("PROVISION_CALL_LOG", dir.join("calls.log"));
    c
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frozen_holder_resumed_after_a_takeover_sends_no_write_and_exits_4() {
    let mut h = Harness::new();
    h.state_location = Some(location());
    init(&h);
    let s3 = common::s3_client(&h.url);
    let proxy = Proxy::start(&h.url);
    // In the middle of `up` (its 8th request answered by the emulator, the answer held),
    // the holder is frozen as a suspended runner would be.
    proxy.hold_at(8);
    let mut holder = h.command_via(&proxy);
    holder
        .args(["--lock-lease", "5", "up"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let holder = holder.spawn().unwrap();
    assert!(
        proxy.wait_held(Duration::from_secs(30)),
        "the holder got going"
    );
    common::signal(holder.id(), libc::SIGSTOP);
    proxy.release();
    std::thread::sleep(Duration::from_secs(8));
    // Another runner takes the expired lock over and removes the stack.
    let down = h.run_with(elsewhere(&h, "b"), &["down"]);
    assert_eq!(down.code, 0, "{}", down.describe());
    assert!(
        down.stderr.contains("took over the lock"),
        "{}",
        down.stderr
    );
    assert_eq!(object(&s3, &key(REGION, &h, "json")).await, None);

    let before = proxy.seen().len();
    let resumed = Instant::now();
    common::signal(holder.id(), libc::SIGCONT);
    let out = holder.wait_with_output().unwrap();
    let took = resumed.elapsed();
    let stderr = String::from_utf8_lossy(&out.stderr);
    let after: Vec<String> = proxy.seen()[before..].to_vec();
    let writes: Vec<&String> = after
        .iter()
        .filter(|op| is_write(op) && !op.ends_with(".lock"))
        .collect();
    println!(
        "frozen holder after resume: {} requests, {} writes besides its own lock ({writes:?}), exit after {:.2} s",
        after.len(),
        writes.len(),
        took.as_secs_f64()
    );
    assert_eq!(out.status.code(), Some(4), "{stderr}");
    assert!(stderr.contains("lost the lock"), "{stderr}");
    assert!(
        writes.is_empty(),
        "a run that lost its lease sent writes: {writes:?}"
    );
    // What `down` left stands: no state, no lock of the frozen run, no resource.
    assert_eq!(object(&s3, &key(REGION, &h, "json")).await, None);
    assert_eq!(object(&s3, &key(REGION, &h, "lock")).await, None);
    h.aws().await.assert_empty().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lost_answers_to_the_lock_and_state_puts_are_known_as_the_runs_own() {
    let mut h = Harness::new();
    h.state_location = Some(location());
    init(&h);
    let s3 = common::s3_client(&h.url);
    let proxy = Proxy::start(&h.url);
    let lock_put = format!("PUT /{BUCKET}/{}", key(REGION, &h, "lock"));
    let state_put = format!("PUT /{BUCKET}/{}", key(REGION, &h, "json"));
    for how in [Lose::ServerError, Lose::Drop] {
        // S3 carries out the lock's PUT and the first state PUT; their answers are lost
        // and the SDK sends each again, which then meets the run's own write (412).
        proxy.clear_lost();
        proxy.lose_answers(&[&lock_put, &state_put], how);
        let run = h.run_via(&proxy, &["up"]);
        assert_eq!(run.code, 0, "{how:?}: {}", run.describe());
        assert!(
            proxy.still_to_lose().is_empty(),
            "{how:?}: both answers were lost: {:?} left",
            proxy.still_to_lose()
        );
        let lost = proxy.lost_answers();
        assert!(
            lost.iter().all(|(_, status)| status.contains("200")),
            "{how:?}: S3 had done them: {lost:?}"
        );
        assert!(
            !run.stderr.contains("locked by") && !run.stderr.contains("changed by another run"),
            "{how:?}: {}",
            run.stderr
        );
        assert_eq!(
            object(&s3, &key(REGION, &h, "lock")).await,
            None,
            "lock released"
        );
        let state: serde_json::Value =
            serde_json::from_str(&object(&s3, &key(REGION, &h, "json")).await.unwrap()).unwrap();
        assert!(state["outputs"]["api_url"].is_string(), "{state}");
        h.assert_one_stack().await;
        assert_eq!(h.run(&["down"]).code, 0);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_directory_and_one_bucket_in_another_region_serve_two_regions() {
    let h = Harness::new();
    // The bucket's home is us-east-1; the stacks live in us-east-1 and eu-west-1.
    init(&h);
    let s3 = common::s3_client(&h.url);
    // init-state from another region finds the bucket at home and has nothing to change.
    let again = h.json(&["--region", "eu-west-1", "init-state", &location()]);
    assert_eq!(again["region"], "us-east-1", "{again}");
    assert_eq!(again["changed"], serde_json::json!([]), "{again}");
    let regions = ["us-east-1", "eu-west-1"];
    for (where_, state) in [
        ("dir", h.state_dir().display().to_string()),
        ("s3", location()),
    ] {
        for region in regions {
            let up = h.run(&["--state-dir", &state, "--region", region, "up"]);
            assert_eq!(up.code, 0, "{where_} {region}: {}", up.describe());
        }
        for region in regions {
            let list = h.json(&["--state-dir", &state, "--region", region, "list"]);
            let stacks = list["stacks"].as_array().unwrap();
            assert!(
                stacks
                    .iter()
                    .any(|s| s["stack"] == h.stack.as_str() && s["in_state"] == true),
                "{where_} {region}: {list}"
            );
        }
        match where_ {
            "dir" => {
                for region in regions {
                    let file = h.state_dir().join(region).join(format!("{}.json", h.stack));
                    let text = std::fs::read_to_string(&file).unwrap();
                    let state: serde_json::Value = serde_json::from_str(&text).unwrap();
                    assert_eq!(state["region"], region, "{}", file.display());
                }
            }
            _ => {
                for region in regions {
                    let text = object(&s3, &key(region, &h, "json")).await.unwrap();
                    let state: serde_json::Value = serde_json::from_str(&text).unwrap();
                    assert_eq!(state["region"], region);
                }
            }
        }
        for region in regions {
            let down = h.run(&["--state-dir", &state, "--region", region, "down"]);
            assert_eq!(down.code, 0, "{where_} {region}: {}", down.describe());
        }
        for region in regions {
            common::Sdk::in_region(&h.url, region)
                .await
                .assert_empty()
                .await;
        }
    }
}

#[tokio::test]
async fn a_state_in_the_older_layout_is_read_and_moved_by_the_next_run_that_locks() {
    let h = Harness::new();
    assert_eq!(h.run(&["up"]).code, 0);
    let new = h.state_file();
    let old = h.state_dir().join(format!("{}.json", h.stack));
    std::fs::rename(&new, &old).unwrap();
    // A read finds it and leaves it where it is.
    let status = h.run(&["status"]);
    assert_eq!(status.code, 0, "{}", status.describe());
    assert!(old.exists() && !new.exists());
    // Another region's older-layout state is not this region's.
    let elsewhere = h.run(&["--region", "eu-west-1", "-o", "json", "up", "--dry-run"]);
    assert_eq!(elsewhere.code, 0, "{}", elsewhere.describe());
    assert!(old.exists() && !new.exists());
    // The next `up` reads it (nothing to make again) and moves it.
    let up = h.json(&["up"]);
    assert!(
        common::actions(&up)
            .iter()
            .all(|(_, _, action)| action == "unchanged"),
        "{up}"
    );
    assert!(new.exists() && !old.exists(), "moved");
    h.assert_one_stack().await;
    assert_eq!(h.run(&["down"]).code, 0);
}

#[tokio::test]
async fn init_state_keeps_a_buckets_own_policy_and_stronger_encryption() {
    use aws_sdk_s3::types::{
        ServerSideEncryption, ServerSideEncryptionByDefault, ServerSideEncryptionConfiguration,
        ServerSideEncryptionRule,
    };
    let h = Harness::new();
    let s3 = common::s3_client(&h.url);
    s3.create_bucket().bucket(BUCKET).send().await.unwrap();
    let theirs = serde_json::json!({
        "Version": "2012-10-17",
        "Statement": [{
            "Sid": "TeamReadOnly",
            "Effect": "Allow",
            "Principal": {"AWS": "arn:aws:iam::000000000000:role/team-reader"},
            "Action": "s3:GetObject",
            "Resource": format!("arn:aws:s3:::{BUCKET}/*"),
        }],
    });
    s3.put_bucket_policy()
        .bucket(BUCKET)
        .policy(theirs.to_string())
        .send()
        .await
        .unwrap();
    let kms = ServerSideEncryptionConfiguration::builder()
        .rules(
            ServerSideEncryptionRule::builder()
                .apply_server_side_encryption_by_default(
                    ServerSideEncryptionByDefault::builder()
                        .sse_algorithm(ServerSideEncryption::AwsKms)
                        .kms_master_key_id("alias/team-state")
                        .build()
                        .unwrap(),
                )
                .build(),
        )
        .build()
        .unwrap();
    s3.put_bucket_encryption()
        .bucket(BUCKET)
        .server_side_encryption_configuration(kms)
        .send()
        .await
        .unwrap();

    let first = h.json(&["init-state", &location()]);
    let changed: Vec<String> = first["changed"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap().to_string())
        .collect();
    assert!(
        changed.iter().any(|c| c.contains("versioning"))
            && changed.iter().any(|c| c.contains("public access"))
            && changed
                .iter()
                .any(|c| c.contains("TLS-only statement added")),
        "{first}"
    );
    assert!(!changed.iter().any(|c| c.contains("encryption")), "{first}");
    let policy: serde_json::Value = serde_json::from_str(
        s3.get_bucket_policy()
            .bucket(BUCKET)
            .send()
            .await
            .unwrap()
            .policy()
            .unwrap(),
    )
    .unwrap();
    let sids: Vec<&str> = policy["Statement"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|s| s["Sid"].as_str())
        .collect();
    assert_eq!(sids, ["TeamReadOnly", "ProvisionStateTlsOnly"], "{policy}");
    let enc = s3
        .get_bucket_encryption()
        .bucket(BUCKET)
        .send()
        .await
        .unwrap();
    let rule = enc.server_side_encryption_configuration().unwrap().rules()[0]
        .apply_server_side_encryption_by_default()
        .unwrap()
        .clone();
    assert_eq!(rule.sse_algorithm(), &ServerSideEncryption::AwsKms);
    assert_eq!(rule.kms_master_key_id(), Some("alias/team-state"));
    // Run again: nothing left to change.
    let again = h.json(&["init-state", &location()]);
    assert_eq!(again["changed"], serde_json::json!([]), "{again}");
}
