//! Ctrl-C and SIGTERM (a CI cancel) during `up`, `down` and `prune`: the run stops cleanly with
//! exit 130, says how to go on, records what it did, releases the lock (S3's too), and a
//! rerun finishes the job; GitHub's cancel schedule ends the run on its first signal
//! even with a request that never answers; a second signal abandons the requests in
//! flight but still records and releases. Outcomes only, no timings.

mod common;

use std::process::{Child, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use common::proxy::Proxy;
use common::Harness;

/// Every resource the report lists as there (made, adopted, changed or unchanged) is
/// in the state's `resources`, by its id (or, for methods, in its key).
fn assert_records(state: &Value, report: &Value) {
    let recorded = state["resources"]
        .as_object()
        .expect("resources in the state");
    for r in report["resources"].as_array().unwrap() {
        if r["action"] == "deleted" || r["action"] == "absent" {
            continue;
        }
        let (kind, id) = (r["kind"].as_str().unwrap(), r["id"].as_str().unwrap());
        assert!(
            recorded
                .iter()
                .any(|(k, v)| k.starts_with(kind) && (v == id || k.ends_with(id))),
            "{kind} {id} is reported but not recorded: {state}"
        );
    }
}

/// Runs `args` through a slow proxy and sends `signal` `times` once `after` requests
/// have gone out. Returns the process's output and how long it took after the signal.
fn interrupt(
    h: &Harness,
    proxy: &Proxy,
    args: &[&str],
    after: usize,
    signal: i32,
    times: usize,
) -> (Output, Duration) {
    proxy.set_latency(Duration::from_millis(150));
    proxy.reset_count();
    let child = h
        .command_via(proxy)
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while proxy.count() < after {
        assert!(
            Instant::now() < deadline,
            "{args:?} never sent {after} requests"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    let signalled = Instant::now();
    for _ in 0..times {
        common::signal(child.id(), signal);
        std::thread::sleep(Duration::from_millis(50));
    }
    let out = child.wait_with_output().unwrap();
    proxy.set_latency(Duration::ZERO);
    (out, signalled.elapsed())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ctrl_c_during_up_stops_cleanly_and_a_rerun_finishes() {
    let h = Harness::new();
    let proxy = Proxy::start(&h.url);
    // Early (reads), in the middle (creates in flight), late (the API being built).
    for after in [3, 8, 16] {
        h.reset();
        let (out, took) = interrupt(&h, &proxy, &["-o", "json", "up"], after, libc::SIGINT, 1);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(
            out.status.code(),
            Some(130),
            "after {after} requests: {stderr}"
        );
        assert!(stderr.contains("run `provision up` again"), "{stderr}");
        let report: serde_json::Value =
            serde_json::from_slice(&out.stdout).expect("still one JSON object");
        assert_eq!(report["interrupted"], true, "{report}");
        assert!(
            report["resources"].as_array().unwrap().len() < 13,
            "it stopped before the end: {report}"
        );
        let state: Value =
            serde_json::from_str(&std::fs::read_to_string(h.state_file()).expect("a state"))
                .expect("the state file is valid JSON");
        assert_eq!(state["stack"], h.stack.as_str());
        assert_records(&state, &report);
        println!(
            "up interrupted after {after} requests: exit 130 {} ms after the signal, {} resources done",
            took.as_millis(),
            report["resources"].as_array().unwrap().len()
        );
        // The lock is free at once and the state kept: a rerun finishes, no duplicate.
        let rerun = h.run(&["up"]);
        assert_eq!(rerun.code, 0, "{}", rerun.describe());
        h.assert_one_stack().await;
    }
    h.ok(&["down"]);
    h.aws().await.assert_empty().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_during_down_stops_cleanly_and_a_rerun_leaves_nothing() {
    let h = Harness::new();
    let proxy = Proxy::start(&h.url);
    h.ok(&["up"]);
    let (out, took) = interrupt(&h, &proxy, &["down"], 4, libc::SIGTERM, 1);
    println!(
        "down interrupted after 4 requests: exit 130 {} ms after SIGTERM",
        took.as_millis()
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(130), "{stderr}");
    assert!(stderr.contains("run `provision down` again"), "{stderr}");
    assert!(
        h.state_file().exists(),
        "the state file stays for the rerun"
    );
    let rerun = h.run(&["down"]);
    assert_eq!(rerun.code, 0, "{}", rerun.describe());
    h.aws().await.assert_empty().await;
    assert!(!h.state_file().exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_ctrl_c_stops_at_once_and_the_run_stays_crash_safe() {
    let h = Harness::new();
    let proxy = Proxy::start(&h.url);
    // Late enough that something is made (and so must be recorded).
    let (out, _) = interrupt(&h, &proxy, &["-o", "json", "up"], 24, libc::SIGINT, 2);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(130), "{stderr}");
    assert!(
        stderr.contains("abandoning the requests in flight"),
        "{stderr}"
    );
    assert!(
        !stderr.contains("could not record and release in time"),
        "recorded and released, not cut off by the last-resort stop: {stderr}"
    );
    let report: Value = serde_json::from_slice(&out.stdout).expect("the report");
    assert_eq!(report["interrupted"], true, "{report}");
    assert!(
        !report["resources"].as_array().unwrap().is_empty(),
        "{report}"
    );
    let state: Value =
        serde_json::from_str(&std::fs::read_to_string(h.state_file()).expect("a state")).unwrap();
    assert_records(&state, &report);
    let rerun = h.run(&["up"]);
    assert_eq!(rerun.code, 0, "{}", rerun.describe());
    h.assert_one_stack().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_during_prune_stops_cleanly_and_a_rerun_finishes() {
    let h = Harness::new();
    let proxy = Proxy::start(&h.url);
    for stack in ["ia-1", "ia-2"] {
        h.ok(&["-s", stack, "up"]);
    }
    // After the listing (about ten reads), while the stacks are being taken down.
    let (out, took) = interrupt(
        &h,
        &proxy,
        &["-o", "json", "prune", "--match", "ia-*"],
        16,
        libc::SIGTERM,
        1,
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(130), "{stderr}");
    let report: serde_json::Value =
        serde_json::from_slice(&out.stdout).expect("still one JSON object");
    let results: Vec<&str> = report["stacks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["result"].as_str().unwrap())
        .collect();
    assert!(
        results.contains(&"failed"),
        "a stack cut short says so: {report}"
    );
    println!(
        "prune interrupted after 16 requests: exit 130 {} ms after SIGTERM ({results:?})",
        took.as_millis()
    );
    // The locks are free and what is gone recorded: a rerun takes down the rest.
    let rerun = h.run(&["-o", "json", "prune", "--match", "ia-*"]);
    assert_eq!(rerun.code, 0, "{}", rerun.describe());
    h.aws().await.assert_empty().await;
    assert!(h.json(&["list"])["stacks"].as_array().unwrap().is_empty());
}

/// GitHub Actions' cancel: SIGINT, then SIGTERM 7.5 s later and SIGKILL 2.5 s after
/// that, each only if the run is still going. Returns the output and the signals sent.
fn cancel_like_github(child: Child) -> (Output, Vec<i32>) {
    let pid = child.id();
    let mut child = child;
    let mut sent = Vec::new();
    for (signal, then_wait) in [
        (libc::SIGINT, Duration::from_millis(7500)),
        (libc::SIGTERM, Duration::from_millis(2500)),
        (libc::SIGKILL, Duration::ZERO),
    ] {
        common::signal(pid, signal);
        sent.push(signal);
        let until = Instant::now() + then_wait;
        while Instant::now() < until {
            if child.try_wait().unwrap().is_some() {
                return (child.wait_with_output().unwrap(), sent);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    (child.wait_with_output().unwrap(), sent)
}

/// A harness whose state is on S3 (the emulator's), the bucket made.
fn on_s3(bucket: &str) -> Harness {
    let mut h = Harness::new();
    let location = format!("s3://{bucket}/ci");
    let made = h.run(&["init-state", &location]);
    assert_eq!(made.code, 0, "{}", made.describe());
    h.state_location = Some(location);
    h
}

/// The S3 objects of the stack: (state JSON if any, whether a lock object exists).
async fn s3_state(h: &Harness, bucket: &str) -> (Option<Value>, bool) {
    let s3 = common::s3_client(&h.url);
    let out = s3.list_objects_v2().bucket(bucket).send().await.unwrap();
    let keys: Vec<String> = out
        .contents()
        .iter()
        .filter_map(|o| o.key().map(str::to_string))
        .collect();
    let locked = keys
        .iter()
        .any(|k| k.ends_with(&format!("/{}.lock", h.stack)));
    let Some(key) = keys
        .iter()
        .find(|k| k.ends_with(&format!("/{}.json", h.stack)))
    else {
        return (None, locked);
    };
    let body = s3
        .get_object()
        .bucket(bucket)
        .key(key)
        .send()
        .await
        .unwrap();
    let bytes = body.body.collect().await.unwrap().into_bytes();
    (Some(serde_json::from_slice(&bytes).unwrap()), locked)
}

/// Starts `up` through `proxy` with the answer of CreateFunction held (a request in
/// flight that never ends) and waits until it is held.
fn up_stuck_in_create_function(h: &Harness, proxy: &Proxy) -> Child {
    proxy.hold_operation("CreateFunction");
    let child = h
        .command_via(proxy)
        .args(["-o", "json", "up"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    assert!(
        proxy.wait_held(Duration::from_secs(60)),
        "up reached CreateFunction"
    );
    child
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancelled_as_github_does_with_a_request_that_never_answers_it_ends_on_the_first_signal() {
    let bucket = "cancel-github";
    let h = on_s3(bucket);
    let proxy = Proxy::start(&h.url);
    let child = up_stuck_in_create_function(&h, &proxy);
    let signalled = Instant::now();
    let (out, sent) = cancel_like_github(child);
    // A figure for the record, not a test: the schedule above is what is checked.
    println!(
        "GitHub cancel, a request that never answers: exit {:?} {} ms after SIGINT",
        out.status.code(),
        signalled.elapsed().as_millis()
    );
    proxy.release();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(130), "not killed: {stderr}");
    assert_eq!(
        sent,
        [libc::SIGINT],
        "it ended on the first signal, before GitHub's SIGTERM: {stderr}"
    );
    assert!(stderr.contains("did not finish within 5 s"), "{stderr}");
    let report: Value = serde_json::from_slice(&out.stdout).expect("the report");
    assert_eq!(report["interrupted"], true, "{report}");
    let (state, locked) = s3_state(&h, bucket).await;
    assert!(!locked, "the S3 lock is released, not left for its lease");
    assert_records(&state.expect("the state is on S3"), &report);
    // The function made while its answer was held is found, not made twice.
    let rerun = h.run(&["up"]);
    assert_eq!(rerun.code, 0, "{}", rerun.describe());
    h.assert_one_stack().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_signal_during_a_request_that_never_answers_still_records_and_releases() {
    let bucket = "cancel-twice";
    let h = on_s3(bucket);
    let proxy = Proxy::start(&h.url);
    let child = up_stuck_in_create_function(&h, &proxy);
    let pid = child.id();
    common::signal(pid, libc::SIGINT);
    std::thread::sleep(Duration::from_millis(300));
    let second = Instant::now();
    common::signal(pid, libc::SIGTERM);
    let out = child.wait_with_output().unwrap();
    // A figure for the record, not a test.
    println!(
        "second signal during a request that never answers: exit {:?} {} ms after it",
        out.status.code(),
        second.elapsed().as_millis()
    );
    proxy.release();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(130), "{stderr}");
    assert!(
        stderr.contains("abandoning the requests in flight"),
        "{stderr}"
    );
    assert!(
        !stderr.contains("could not record and release in time"),
        "{stderr}"
    );
    let report: Value = serde_json::from_slice(&out.stdout).expect("the report");
    assert_eq!(report["interrupted"], true, "{report}");
    let (state, locked) = s3_state(&h, bucket).await;
    assert!(!locked, "the S3 lock is released");
    assert_records(&state.expect("the state is on S3"), &report);
    let rerun = h.run(&["up"]);
    assert_eq!(rerun.code, 0, "{}", rerun.describe());
    h.assert_one_stack().await;
}
