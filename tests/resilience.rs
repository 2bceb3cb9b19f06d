//! Crashes, throttling and concurrent runs, on the emulator through a test proxy.

mod common;

use std::process::Stdio;
use std::time::Duration;

use common::proxy::{Faults, Proxy};
use common::Harness;

/// Runs `args` through the proxy, holding the answer of request `k`, and SIGKILLs the
/// process once the emulator has done that request. Returns whether the kill happened
/// (false: the run needed fewer than `k` requests and finished by itself).
fn kill_at(h: &Harness, proxy: &Proxy, args: &[&str], k: usize) -> bool {
    proxy.hold_at(k);
    let mut child = h
        .command_via(proxy)
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut killed = false;
    loop {
        if proxy.wait_held(Duration::from_millis(50)) {
            child.kill().unwrap(); // SIGKILL
            killed = true;
            break;
        }
        if child.try_wait().unwrap().is_some() {
            break;
        }
    }
    child.wait().unwrap();
    proxy.release();
    killed
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_at_any_request_of_up_a_rerun_converges_and_down_leaves_nothing() {
    let h = Harness::new();
    let proxy = Proxy::start(&h.url);
    let full = h.run_via(&proxy, &["up"]);
    assert_eq!(full.code, 0, "{}", full.describe());
    let total = full.calls.len();
    let mut points = 0;
    for k in 1..=total {
        h.reset();
        if !kill_at(&h, &proxy, &["up"], k) {
            continue;
        }
        points += 1;
        let rerun = h.run(&["-o", "json", "up"]);
        assert_eq!(
            rerun.code,
            0,
            "rerun after a kill at request {k}:\n{}",
            rerun.describe()
        );
        h.assert_one_stack().await;
        assert_eq!(
            h.run(&["status"]).code,
            0,
            "in sync after the rerun (kill at {k})"
        );
        h.ok(&["down"]);
        h.aws().await.assert_empty().await;
        assert!(!h.state_file().exists());
    }
    println!("up interrupted at {points} of {total} requests; every rerun converged");
    assert!(
        points + 3 >= total,
        "only {points} of {total} interruption points reached"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_at_any_request_of_down_a_rerun_leaves_nothing() {
    let h = Harness::new();
    let proxy = Proxy::start(&h.url);
    h.ok(&["up"]);
    let full = h.run_via(&proxy, &["down"]);
    assert_eq!(full.code, 0, "{}", full.describe());
    let total = full.calls.len();
    // `down` with a state file sends the same requests every time (deletes by the
    // recorded ids, no polls), so every one of them must be reached: none skipped.
    for k in 1..=total {
        h.reset();
        h.ok(&["up"]);
        assert!(
            kill_at(&h, &proxy, &["down"], k),
            "down finished before its request {k} of {total}"
        );
        let rerun = h.run(&["down"]);
        assert_eq!(
            rerun.code,
            0,
            "down after a kill at request {k}:\n{}",
            rerun.describe()
        );
        h.aws().await.assert_empty().await;
        assert!(!h.state_file().exists(), "state file left (kill at {k})");
    }
    println!("down interrupted at each of its {total} requests; every rerun finished");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn throttling_and_server_errors_are_retried_until_up_status_and_down_converge() {
    let h = Harness::new();
    let proxy = Proxy::start(&h.url);
    for seed in [7u64, 1234] {
        h.reset();
        proxy.set_faults(Faults {
            rate: 0.3,
            seed,
            always: None,
        });
        let before = proxy.faults_sent();
        proxy.reset_count();
        let up = h.run_via(&proxy, &["-o", "json", "up"]);
        let reached = proxy.count();
        assert_eq!(
            up.code,
            0,
            "up under faults (seed {seed}):\n{}",
            up.describe()
        );
        // Counted at the proxy, not by the binary: every request sent, the ones
        // answered with an injected fault (and then retried) included.
        assert_eq!(
            up.json()["api_calls"].as_u64().unwrap() as usize,
            reached,
            "api_calls counts retries"
        );
        let status = h.run_via(&proxy, &["status"]);
        assert_eq!(
            status.code,
            0,
            "status under faults:\n{}",
            status.describe()
        );
        proxy.set_faults(Faults::default());
        h.assert_one_stack().await;
        proxy.set_faults(Faults {
            rate: 0.3,
            seed: seed + 1,
            always: None,
        });
        let down = h.run_via(&proxy, &["down"]);
        assert_eq!(down.code, 0, "down under faults:\n{}", down.describe());
        let injected = proxy.faults_sent() - before;
        proxy.set_faults(Faults::default());
        h.aws().await.assert_empty().await;
        println!(
            "seed {seed}: {injected} faults injected (30% of requests); up {} calls",
            up.calls.len()
        );
        assert!(injected >= 5, "the proxy injected only {injected} faults");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exhausted_retries_give_a_clear_error_naming_the_resource() {
    let h = Harness::new();
    let proxy = Proxy::start(&h.url);
    proxy.set_faults(Faults {
        rate: 0.0,
        seed: 3,
        always: Some("cognito-idp".into()),
    });
    let up = h.run_via(&proxy, &["up"]);
    assert_eq!(up.code, 1, "{}", up.describe());
    let error = up
        .stderr
        .lines()
        .find(|l| l.starts_with("error:"))
        .expect("an error line");
    assert!(error.contains("Cognito"), "names the resource: {error}");
    // Bounded: the first Cognito request was tried a fixed number of times, then given up.
    let first = up
        .calls
        .iter()
        .find(|c| c.starts_with("cognito-idp:"))
        .unwrap()
        .clone();
    let attempts = up.calls.iter().filter(|c| **c == first).count();
    assert_eq!(attempts, 6, "{first} attempts: {:?}", up.calls);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_run_exits_4_naming_the_holder_and_a_dead_holder_blocks_nothing() {
    let h = Harness::new();
    let proxy = Proxy::start(&h.url);
    proxy.hold_at(2);
    let mut first = h
        .command_via(&proxy)
        .args(["up"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    assert!(
        proxy.wait_held(Duration::from_secs(30)),
        "first run reached AWS"
    );
    // Through a proxy of its own, so "sent nothing" is what reached AWS.
    let observer = Proxy::start(&h.url);
    let second = h.run_observed(&observer, &["up"]);
    assert_eq!(second.code, 4, "{}", second.describe());
    assert!(
        second.stderr.contains(&format!("pid {}", first.id())),
        "names the holder: {}",
        second.stderr
    );
    assert!(
        second.calls.is_empty(),
        "the second run sent nothing: {:?}",
        second.calls
    );
    let down = h.run(&["down"]);
    assert_eq!(down.code, 4, "down is locked out too");
    proxy.release();
    let status = first.wait().unwrap();
    assert!(status.success(), "the first run finishes");

    // A holder killed with SIGKILL leaves no lock behind.
    h.reset();
    assert!(kill_at(&h, &proxy, &["up"], 3));
    let after = h.run(&["up"]);
    assert_eq!(after.code, 0, "{}", after.describe());
}

#[tokio::test]
async fn the_client_secret_never_reaches_the_state_file_logs_or_output() {
    let h = Harness::new();
    let sdk = h.aws().await;
    let runs = [
        h.ok(&["-vv", "up"]),
        h.ok(&["-vv", "-o", "json", "up"]),
        h.ok(&["-vv", "status"]),
        h.ok(&["-vv", "outputs"]),
        h.ok(&["-vv", "token"]),
        h.ok(&["-vv", "-o", "json", "token"]),
        h.ok(&["-vv", "invoke"]),
        h.ok(&["-vv", "-o", "json", "invoke"]),
    ];
    let seen: String = runs
        .iter()
        .map(|r| format!("{}{}", r.stdout, r.stderr))
        .collect();
    let pools = sdk.pools().await;
    let clients = sdk.clients(&pools[0].0).await;
    let client = sdk
        .cognito
        .describe_user_pool_client()
        .user_pool_id(&pools[0].0)
        .client_id(&clients[0].0)
        .send()
        .await
        .unwrap();
    let secret = client
        .user_pool_client()
        .unwrap()
        .client_secret()
        .unwrap()
        .to_string();
    assert!(secret.len() >= 20, "a real secret to look for");
    assert!(seen.contains("aws request"), "-vv logged the requests");
    assert!(!seen.contains(&secret), "the client secret was printed");
    use std::os::unix::fs::PermissionsExt;
    for file in [
        "state/us-east-1/it-stack.json",
        "state/us-east-1/it-stack.lock",
    ] {
        let path = h.dir.path().join(file);
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(!text.contains(&secret), "the client secret is in {file}");
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "{file} mode");
    }
    let down = h.ok(&["-vv", "down"]);
    assert!(!down.stdout.contains(&secret) && !down.stderr.contains(&secret));
}
