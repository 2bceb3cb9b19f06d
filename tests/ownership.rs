//! `down` deletes only what is the stack's: a stale state file (a restored backup,
//! another runner's copy) naming resources that are someone else's now leaves them;
//! what the state does not record is found by name and tag. `prune` decides under each
//! stack's lock: one re-created while it ran is skipped.

mod common;

use std::process::Stdio;
use std::time::Duration;

use common::proxy::Proxy;
use common::{actions, Harness};

const TAG: &str = "provision:stack";

fn action_of<'a>(acts: &'a [(String, String, String)], kind: &str) -> Vec<&'a str> {
    acts.iter()
        .filter(|(k, _, _)| k == kind)
        .map(|(_, _, a)| a.as_str())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stale_state_naming_someone_elses_role_function_and_log_group_leaves_them() {
    let h = Harness::new();
    h.ok(&["up"]);
    let sdk = h.aws().await;
    let function = format!("{}-handler", h.stack);
    let role = format!("{}-handler-us-east-1", h.stack);
    let group = format!("/aws/lambda/{function}");
    // Someone else's now: the same names, without provision's tag (the state file
    // still names all three, as a restored backup would).
    let arn = sdk
        .lambda
        .get_function()
        .function_name(&function)
        .send()
        .await
        .unwrap()
        .configuration()
        .unwrap()
        .function_arn()
        .unwrap()
        .to_string();
    sdk.lambda
        .untag_resource()
        .resource(&arn)
        .tag_keys(TAG)
        .send()
        .await
        .unwrap();
    sdk.iam
        .untag_role()
        .role_name(&role)
        .tag_keys(TAG)
        .send()
        .await
        .unwrap();
    let groups = sdk
        .logs
        .describe_log_groups()
        .log_group_name_prefix(&group)
        .send()
        .await
        .unwrap();
    let group_arn = groups.log_groups()[0]
        .arn()
        .unwrap()
        .trim_end_matches(":*")
        .to_string();
    sdk.logs
        .untag_resource()
        .resource_arn(&group_arn)
        .tag_keys(TAG)
        .send()
        .await
        .unwrap();

    let down = h.run(&["-o", "json", "down"]);
    assert_eq!(down.code, 0, "kept is not an error: {}", down.describe());
    let report = down.json();
    let acts = actions(&report);
    for kind in ["iam_role", "lambda_function", "log_group"] {
        assert_eq!(action_of(&acts, kind), ["kept"], "{kind}: {report}");
    }
    for r in report["resources"].as_array().unwrap() {
        if r["action"] == "kept" && r["kind"] != "lambda_permission" {
            let why = r["reason"].as_str().unwrap_or_default();
            assert!(why.contains("not tagged"), "a reason for {r}");
        }
    }
    assert!(
        sdk.role_names().await.contains(&role),
        "the role is still there"
    );
    assert!(sdk.function_names().await.contains(&function));
    assert!(sdk.log_groups().await.contains(&group));
    // What was the stack's went.
    assert!(sdk.apis().await.is_empty() && sdk.pools().await.is_empty());
    assert!(
        !h.state_file().exists(),
        "nothing of the stack's is left to record"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_secret_the_state_does_not_record_is_found_and_deleted() {
    let h = Harness::new();
    h.ok(&["up"]);
    let state = std::fs::read_to_string(h.state_file()).unwrap();
    assert!(!state.contains("secret"), "the state records no secret");
    let secrets = common::secrets_client(&h.url);
    // As a run killed between CreateSecret and its state write leaves one.
    let ours = format!("provision/{}/billing", h.stack);
    // Named like the stack's, but not tagged for it: someone else's.
    let theirs = format!("provision/{}/theirs", h.stack);
    for (name, tagged) in [(&ours, true), (&theirs, false)] {
        let mut create = secrets.create_secret().name(name).secret_string("{}");
        if tagged {
            create = create.tags(
                aws_sdk_secretsmanager::types::Tag::builder()
                    .key(TAG)
                    .value(&h.stack)
                    .build(),
            );
        }
        create.send().await.unwrap();
    }
    let report = h.json(&["down"]);
    let acts = actions(&report);
    assert!(
        acts.contains(&("secret".into(), ours.clone(), "deleted".into())),
        "{report}"
    );
    assert!(
        acts.contains(&("secret".into(), theirs.clone(), "kept".into())),
        "{report}"
    );
    let gone = secrets.describe_secret().secret_id(&ours).send().await;
    assert!(
        gone.is_err() || gone.unwrap().deleted_date().is_some(),
        "the unrecorded secret is gone"
    );
    let kept = secrets.describe_secret().secret_id(&theirs).send().await;
    assert!(kept.unwrap().deleted_date().is_none(), "theirs is left");
    h.aws().await.assert_empty().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stack_re_created_while_prune_runs_is_skipped() {
    let h = Harness::new();
    let proxy = Proxy::start(&h.url);
    h.ok(&["-s", "pr-1", "up"]);
    // Setup, not a measurement: the stack must be older than --older-than 10s when
    // prune lists it.
    std::thread::sleep(Duration::from_secs(11));
    // How many requests prune's listing takes (list makes the same ones).
    proxy.reset_count();
    let listed = h.run_via(&proxy, &["-o", "json", "list"]);
    assert_eq!(listed.code, 0, "{}", listed.describe());
    let listing = proxy.count();
    // Hold the listing's last answer: prune has chosen nothing yet, and holds no lock.
    proxy.hold_at(listing);
    let prune = h
        .command_via(&proxy)
        .args([
            "-o",
            "json",
            "prune",
            "--match",
            "pr-*",
            "--older-than",
            "10s",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    assert!(proxy.wait_held(Duration::from_secs(60)), "prune listed");
    // Meanwhile the stack is taken down and made again (not through the proxy).
    h.ok(&["-s", "pr-1", "down"]);
    h.ok(&["-s", "pr-1", "up"]);
    proxy.release();
    let out = prune.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    let stacks = report["stacks"].as_array().unwrap();
    assert_eq!(stacks.len(), 1, "{report}");
    assert_eq!(stacks[0]["result"], "skipped", "{report}");
    assert!(
        stacks[0]["reason"]
            .as_str()
            .unwrap_or_default()
            .contains("re-created"),
        "{report}"
    );
    // The new stack is whole.
    let sdk = h.aws().await;
    assert_eq!(sdk.apis().await.len(), 1);
    assert!(sdk
        .function_names()
        .await
        .contains(&"pr-1-handler".to_string()));
    h.ok(&["-s", "pr-1", "down"]);
}
