//! Ctrl-C and SIGTERM (a CI cancel) during `up`, `down` and `prune`: the run stops cleanly with
//! exit 130, says how to go on, releases the lock, and a rerun finishes the job; a
//! second signal stops it at once, and the rerun still converges.

mod common;

use std::process::{Output, Stdio};
use std::time::{Duration, Instant};

use common::proxy::Proxy;
use common::Harness;

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
        // SAFETY: kill(2) on our own child's pid.
        assert_eq!(unsafe { libc::kill(child.id() as i32, signal) }, 0);
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
        if h.state_file().exists() {
            let state: serde_json::Value =
                serde_json::from_str(&std::fs::read_to_string(h.state_file()).unwrap())
                    .expect("the state file is valid JSON");
            assert_eq!(state["stack"], h.stack.as_str());
        }
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
    let (out, took) = interrupt(&h, &proxy, &["up"], 6, libc::SIGINT, 2);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(130), "{stderr}");
    assert!(stderr.contains("stopping at once"), "{stderr}");
    assert!(
        took < Duration::from_secs(5),
        "the second signal ended it at once, not after the grace period ({took:?})"
    );
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
