//! Many stacks in one account: several `up`s at once and `prune` within API Gateway's
//! account-wide quotas (enforced by the test proxy as AWS documents them), `list` from
//! the state and from the tags, and what `prune` leaves alone (other names, fresh
//! stacks, a stack a live run holds, everything on a dry run).

mod common;

use std::process::Stdio;
use std::time::{Duration, Instant};

use serde_json::Value;

use common::proxy::Proxy;
use common::Harness;

const FLEET: [&str; 5] = ["keep-1", "pr-1", "pr-2", "pr-3", "pr-4"];

/// `args` for stack `stack`, as JSON; insists on exit `code`.
fn json_for(h: &Harness, stack: &str, args: &[&str], code: i32) -> Value {
    let mut all = vec!["-s", stack, "-o", "json"];
    all.extend_from_slice(args);
    let r = h.run(&all);
    assert_eq!(r.code, code, "provision {all:?}:\n{}", r.describe());
    r.json()
}

/// (stack, result) of a `prune` report.
fn results(report: &Value) -> Vec<(String, String)> {
    report["stacks"]
        .as_array()
        .expect("stacks")
        .iter()
        .map(|s| {
            (
                s["stack"].as_str().unwrap().to_string(),
                s["result"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

/// How many of each kind every stack has, as the emulator says (independently of provision).
async fn census(h: &Harness, stack: &str) -> [usize; 5] {
    let sdk = h.aws().await;
    let named = |names: Vec<String>, want: String| names.iter().filter(|n| **n == want).count();
    [
        named(sdk.role_names().await, format!("{stack}-handler-us-east-1")),
        named(sdk.function_names().await, format!("{stack}-handler")),
        named(
            sdk.pools().await.into_iter().map(|p| p.1).collect(),
            format!("{stack}-pool"),
        ),
        named(
            sdk.apis().await.into_iter().map(|a| a.1).collect(),
            format!("{stack}-api"),
        ),
        named(
            sdk.log_groups().await,
            format!("/aws/lambda/{stack}-handler"),
        ),
    ]
}

/// Resources with stack-like names that provision did not make (no tag): never listed.
async fn foreign_resources(h: &Harness) {
    let sdk = h.aws().await;
    sdk.apigw
        .create_rest_api()
        .name("foreign-api")
        .send()
        .await
        .unwrap();
    sdk.cognito
        .create_user_pool()
        .pool_name("foreign-pool")
        .send()
        .await
        .unwrap();
    sdk.iam
        .create_role()
        .role_name("foreign-handler-us-east-1")
        .assume_role_policy_document(
            r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"Service":"lambda.amazonaws.com"},"Action":"sts:AssumeRole"}]}"#,
        )
        .send()
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn five_stacks_up_at_once_then_list_and_prune_within_api_gateways_quotas() {
    let h = Harness::new();
    let proxy = Proxy::start(&h.url);
    proxy.enforce_api_gateway_quotas();

    // Five `up`s of different stacks started together, in one account.
    let started = Instant::now();
    let children: Vec<_> = FLEET
        .iter()
        .map(|stack| {
            h.command_via(&proxy)
                .args(["-s", stack, "-o", "json", "up"])
                .env_remove("PROVISION_CALL_LOG")
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for (stack, child) in FLEET.iter().zip(children) {
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "up of {stack} failed under the quotas:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let refused = proxy.refused();
    eprintln!(
        "five stacks up at once under the quotas: {:.1} s, {} requests answered 429 ({:?})",
        started.elapsed().as_secs_f64(),
        refused.len(),
        refused
    );
    // The quotas were met, not dodged: five processes each send CreateRestApi moments
    // after they start, and the account allows one per 3 s, so at least four were
    // refused; each process paces only itself, so this is the 429 path.
    let refused_creates = refused.iter().filter(|op| *op == "CreateRestApi").count();
    assert!(
        refused_creates >= 4,
        "CreateRestApi refused {refused_creates} times: {refused:?}"
    );
    // The refused creates come back after 3 to 3.75 s (the quota's interval, spread),
    // so the first two APIs are made less than 5 s apart, and so are their deployments
    // (each follows its API by the same short chain): the second one is refused.
    assert!(
        refused.iter().any(|op| op == "CreateDeployment"),
        "no CreateDeployment was refused: {refused:?}"
    );
    // ... and waited out: one of each per stack, each in sync.
    for op in ["CreateRestApi", "CreateDeployment"] {
        assert_eq!(proxy.passed(op).len(), 5, "{op}: one per stack");
    }
    for stack in FLEET {
        assert_eq!(census(&h, stack).await, [1; 5], "one of each for {stack}");
        json_for(&h, stack, &["status"], 0);
    }

    // `list`: all five, also the one whose state file is gone; nothing foreign.
    foreign_resources(&h).await;
    std::fs::remove_file(h.state_dir().join("us-east-1").join("pr-4.json")).unwrap();
    let list = h.json(&["list"]);
    assert_eq!(list["region"], "us-east-1");
    let stacks = list["stacks"].as_array().unwrap();
    let names: Vec<&str> = stacks
        .iter()
        .map(|s| s["stack"].as_str().unwrap())
        .collect();
    assert_eq!(names, FLEET, "{list}");
    for s in stacks {
        assert_eq!(s["tagged"], 4, "function, pool, API, role: {s}");
        assert_eq!(s["in_state"], s["stack"] != "pr-4", "{s}");
        assert_eq!(s["locked"], false, "{s}");
        assert!(
            s["created"].as_str().is_some_and(|c| c.ends_with('Z')),
            "{s}"
        );
    }
    assert!(list["api_calls"].as_u64().unwrap() > 0);

    // A dry run and a prune of stacks older than an hour delete nothing.
    let dry = h.json(&["prune", "--match", "pr-*", "--dry-run"]);
    assert_eq!(
        results(&dry),
        ["pr-1", "pr-2", "pr-3", "pr-4"].map(|s| (s.to_string(), "would delete".to_string())),
    );
    let none = h.json(&["prune", "--match", "pr-*", "--older-than", "1h"]);
    assert_eq!(results(&none), Vec::<(String, String)>::new(), "{none}");
    for stack in FLEET {
        assert_eq!(census(&h, stack).await, [1; 5], "{stack} after dry runs");
    }

    // The prune itself, under the quotas.
    proxy.enforce_api_gateway_quotas();
    let started = Instant::now();
    let r = h.run_via(&proxy, &["-o", "json", "prune", "--match", "pr-*"]);
    assert_eq!(r.code, 0, "{}", r.describe());
    let report = r.json();
    let refused = proxy.refused();
    eprintln!(
        "four-stack prune under the quotas: {:.1} s, {} requests answered 429 ({:?})",
        started.elapsed().as_secs_f64(),
        refused.len(),
        refused
    );
    assert_eq!(
        results(&report),
        ["pr-1", "pr-2", "pr-3", "pr-4"].map(|s| (s.to_string(), "deleted".to_string())),
    );
    // provision paced DeleteRestApi itself: four, none refused (the proxy refuses
    // any that come less than 30 s after the last).
    assert_eq!(
        proxy.passed("DeleteRestApi").len(),
        4,
        "one DeleteRestApi per stack"
    );
    assert!(
        !refused.iter().any(|op| op == "DeleteRestApi"),
        "prune should pace DeleteRestApi, not lean on 429s: {refused:?}"
    );
    for stack in ["pr-1", "pr-2", "pr-3", "pr-4"] {
        assert_eq!(census(&h, stack).await, [0; 5], "{stack} left something");
        assert!(!h
            .state_dir()
            .join("us-east-1")
            .join(format!("{stack}.json"))
            .exists());
    }
    assert_eq!(census(&h, "keep-1").await, [1; 5], "keep-1 untouched");
    json_for(&h, "keep-1", &["status"], 0);
    let names: Vec<String> = h.json(&["list"])["stacks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["stack"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(names, ["keep-1"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn prune_skips_a_stack_a_live_run_holds() {
    let h = Harness::new();
    for stack in ["lk-1", "lk-2"] {
        json_for(&h, stack, &["up"], 0);
    }
    // A live `up` of lk-1, held mid-run (its lock taken) by the proxy.
    let proxy = Proxy::start(&h.url);
    proxy.hold_at(3);
    let mut holder = h
        .command_via(&proxy)
        .args(["-s", "lk-1", "up"])
        .env_remove("PROVISION_CALL_LOG")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    assert!(
        proxy.wait_held(Duration::from_secs(30)),
        "the run got going"
    );

    let list = h.json(&["list"]);
    let locked: Vec<(&str, bool)> = list["stacks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| (s["stack"].as_str().unwrap(), s["locked"].as_bool().unwrap()))
        .collect();
    assert_eq!(locked, [("lk-1", true), ("lk-2", false)]);

    let dry = h.json(&["prune", "--match", "lk-*", "--dry-run"]);
    assert_eq!(
        results(&dry),
        [("lk-1", "skipped"), ("lk-2", "would delete")].map(|(a, b)| (a.into(), b.into()))
    );
    let report = h.json(&["prune", "--match", "lk-*"]);
    assert_eq!(
        results(&report),
        [("lk-1", "skipped"), ("lk-2", "deleted")].map(|(a, b)| (a.into(), b.into()))
    );
    let reason = report["stacks"][0]["reason"].as_str().unwrap();
    assert!(reason.contains("locked by pid"), "{reason}");
    assert_eq!(census(&h, "lk-2").await, [0; 5]);

    proxy.release();
    let status = holder.wait().unwrap();
    assert!(status.success(), "the held run finishes");
    let _ = holder.stderr.take();
    assert_eq!(census(&h, "lk-1").await, [1; 5], "lk-1 untouched by prune");
    json_for(&h, "lk-1", &["status"], 0);
}

#[test]
fn bad_prune_input_is_refused_before_any_aws_call() {
    let h = Harness::new();
    let proxy = Proxy::start(&h.url);
    for (args, says) in [
        (&["prune"][..], "--match"),
        (&["prune", "--match", "pr-[0-9"], "not a valid glob"),
        (&["prune", "--match", ""], "empty"),
        (
            &["prune", "--match", "pr-*", "--older-than", "yesterday"],
            "duration",
        ),
        (
            &["prune", "--match", "pr-*", "--older-than", "24"],
            "duration",
        ),
    ] {
        let r = h.run_observed(&proxy, args);
        assert_eq!(r.code, 2, "{args:?}:\n{}", r.describe());
        assert!(r.stderr.contains(says), "{args:?}:\n{}", r.describe());
        assert!(r.calls.is_empty(), "{args:?} sent {:?}", r.calls);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn list_and_prune_with_state_on_s3() {
    let h = Harness::new();
    let state = "s3://provision-fleet-state/ci";
    let r = h.run(&["init-state", state]);
    assert_eq!(r.code, 0, "{}", r.describe());
    for stack in ["s3-1", "s3-2"] {
        json_for(&h, stack, &["--state-dir", state, "up"], 0);
    }
    let listed = |args: &[&str]| -> Vec<(String, bool, u64)> {
        let mut all = vec!["-o", "json"];
        all.extend_from_slice(args);
        all.push("list");
        let r = h.run(&all);
        assert_eq!(r.code, 0, "{}", r.describe());
        r.json()["stacks"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| {
                (
                    s["stack"].as_str().unwrap().to_string(),
                    s["in_state"].as_bool().unwrap(),
                    s["tagged"].as_u64().unwrap(),
                )
            })
            .collect()
    };
    // From the bucket: both in state. From a (empty) local directory: found by tags.
    assert_eq!(
        listed(&["--state-dir", state]),
        [("s3-1".into(), true, 4), ("s3-2".into(), true, 4)]
    );
    assert_eq!(
        listed(&[]),
        [("s3-1".into(), false, 4), ("s3-2".into(), false, 4)]
    );
    let r = h.run(&[
        "-o",
        "json",
        "--state-dir",
        state,
        "prune",
        "--match",
        "s3-1",
    ]);
    assert_eq!(r.code, 0, "{}", r.describe());
    assert_eq!(results(&r.json()), [("s3-1".into(), "deleted".into())]);
    assert_eq!(census(&h, "s3-1").await, [0; 5]);
    let keys: Vec<String> = common::s3_client(&h.url)
        .list_objects_v2()
        .bucket("provision-fleet-state")
        .send()
        .await
        .unwrap()
        .contents()
        .iter()
        .filter_map(|o| o.key().map(str::to_string))
        .collect();
    assert_eq!(
        keys,
        ["ci/us-east-1/s3-2.json"],
        "s3-1's state and lock are gone"
    );
    assert_eq!(listed(&["--state-dir", state]), [("s3-2".into(), true, 4)]);
}
