//! Rotating a consumer's secret without a new client id: two live secrets while callers
//! switch, Secrets Manager following (AWSCURRENT new, AWSPREVIOUS old), `--finish`
//! retiring the old one, `status` counting and ageing them, a lost answer to Add
//! leaving no secret nobody has, and no secret in the state, the logs or the output.
//!
//! The emulator lacks the three rotation operations: the test proxy emulates them and
//! the token endpoint's view of them (see tests/common/rotation.rs). Every command here
//! goes through that proxy.

mod common;

use std::path::Path;

use serde_json::Value;

use common::proxy::{Lose, Proxy};
use common::{secrets_client, Harness, Run};

const SECRET_NAME: &str = "provision/it-stack/billing";

const CONFIG: &str = r#"scopes = ["users/read"]

[[client]]
name = "billing"
secret = true
readers = ["arn:aws:iam::000000000000:role/billing-service"]

[[client]]
name = "plain"
"#;

/// Asks the token endpoint through the proxy, as a calling service would.
async fn token_status(proxy: &Proxy, id: &str, secret: &str) -> (u16, String) {
    let r = reqwest::Client::new()
        .post(format!("{}/oauth2/token", proxy.url))
        .basic_auth(id, Some(secret))
        .form(&[
            ("grant_type", "client_credentials"),
            ("scope", "users/read"),
        ])
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.text().await.unwrap_or_default())
}

/// The `client_secret` and `client_id` of one stage of the published secret.
async fn published(sm: &aws_sdk_secretsmanager::Client, stage: &str) -> (String, String) {
    let out = sm
        .get_secret_value()
        .secret_id(SECRET_NAME)
        .version_stage(stage)
        .send()
        .await
        .unwrap_or_else(|e| panic!("reading {SECRET_NAME} {stage}: {e:?}"));
    let v: Value = serde_json::from_str(out.secret_string().unwrap()).unwrap();
    (
        v["client_secret"].as_str().unwrap().to_string(),
        v["client_id"].as_str().unwrap().to_string(),
    )
}

fn json_via(h: &Harness, proxy: &Proxy, args: &[&str], code: i32) -> (Run, Value) {
    let mut all = vec!["-o", "json"];
    all.extend_from_slice(args);
    let r = h.run_via(proxy, &all);
    assert_eq!(r.code, code, "provision {args:?}:\n{}", r.describe());
    let v = if r.stdout.trim().is_empty() {
        Value::Null
    } else {
        r.json()
    };
    (r, v)
}

/// Every file under `dir`, as text.
fn files_text(dir: &Path) -> String {
    let mut all = String::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let p = entry.path();
        if p.is_dir() {
            all.push_str(&files_text(&p));
        } else {
            all.push_str(&String::from_utf8_lossy(
                &std::fs::read(&p).unwrap_or_default(),
            ));
        }
    }
    all
}

fn app_client<'a>(status: &'a Value, name: &str) -> &'a Value {
    status["resources"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["kind"] == "app_client" && r["name"] == name)
        .unwrap_or_else(|| panic!("no app_client {name} in {status}"))
}

/// A stack of CONFIG stood up through a proxy: billing's client id and its published
/// secret, before any rotation.
struct Stood {
    h: Harness,
    proxy: Proxy,
    sm: aws_sdk_secretsmanager::Client,
    /// `up`'s JSON report.
    up: serde_json::Value,
    id: String,
    old: String,
}

async fn stood_up() -> Stood {
    let h = Harness::new();
    let proxy = Proxy::start(&h.url);
    let sm = secrets_client(&h.url);
    std::fs::write(h.dir.path().join("provision.toml"), CONFIG).unwrap();
    let (_, up) = json_via(&h, &proxy, &["up"], 0);
    let id = up["outputs"]["clients"]["billing"]
        .as_str()
        .unwrap()
        .to_string();
    let (old, _) = published(&sm, "AWSCURRENT").await;
    Stood {
        h,
        proxy,
        sm,
        up,
        id,
        old,
    }
}

#[tokio::test]
async fn a_rotation_keeps_the_client_id_and_leaves_no_moment_without_a_working_secret() {
    let Stood {
        h,
        proxy,
        sm,
        up,
        id,
        old,
    } = stood_up().await;
    let mut runs: Vec<Run> = Vec::new();

    // Rotate: the old secret keeps working while the new one is delivered.
    proxy.reset_count();
    let (r, rotated) = json_via(&h, &proxy, &["rotate", "--client", "billing"], 0);
    let rotate_requests = proxy.count();
    runs.push(r);
    assert_eq!(rotated["client"], "billing", "{rotated}");
    assert_eq!(rotated["client_id"], id.as_str(), "same client id");
    assert_eq!(rotated["active_secrets"], 2);
    assert!(
        rotated["secret_id"]
            .as_str()
            .unwrap()
            .starts_with(&format!("{id}--")),
        "{rotated}"
    );
    assert!(rotated["created"].is_string(), "{rotated}");
    assert!(
        rotated.get("client_secret").is_none(),
        "not without --show-secret"
    );
    let (new, new_id) = published(&sm, "AWSCURRENT").await;
    assert_ne!(new, old, "AWSCURRENT holds the new secret");
    assert_eq!(new_id, id);
    assert_eq!(
        published(&sm, "AWSPREVIOUS").await.0,
        old,
        "AWSPREVIOUS the old"
    );
    assert_eq!(
        token_status(&proxy, &id, &old).await.0,
        200,
        "old still works"
    );
    assert_eq!(token_status(&proxy, &id, &new).await.0, 200, "new works");
    println!("requests per rotate (one published client): {rotate_requests}");

    // A second rotation before finishing is refused, and adds nothing.
    let r = h.run_via(&proxy, &["rotate", "--client", "billing"]);
    assert_eq!(r.code, 2, "{}", r.describe());
    assert!(r.stderr.contains("--finish"), "{}", r.describe());
    assert_eq!(proxy.rotation().live(&id), 2);
    runs.push(r);

    // status counts and ages them; an age limit turns an old one into drift.
    let (r, status) = json_via(&h, &proxy, &["status"], 0);
    runs.push(r);
    let billing = app_client(&status, "billing");
    assert_eq!(billing["secrets"], 2, "{status}");
    assert_eq!(billing["oldest_secret_days"], 0, "{status}");
    assert_eq!(app_client(&status, "plain")["secrets"], 1, "{status}");
    // The emulator's dates are "now": the proxy reports them 40 days older.
    proxy.rotation().report_older_by(40.0);
    let (r, status) = json_via(&h, &proxy, &["status", "--max-secret-age", "30"], 3);
    runs.push(r);
    let billing = app_client(&status, "billing");
    assert_eq!(billing["state"], "drifted", "{status}");
    assert_eq!(billing["oldest_secret_days"], 40, "{status}");
    assert!(
        billing["fields"].to_string().contains("secret_age"),
        "{status}"
    );
    json_via(&h, &proxy, &["status", "--max-secret-age", "45"], 0);
    proxy.rotation().report_older_by(0.0);

    // credentials with two live secrets: prints what DescribeUserPoolClient returns and
    // says so (its output holds a secret by design: kept out of the scan below).
    let creds = h.run_via(
        &proxy,
        &["-o", "json", "credentials", "--client", "billing"],
    );
    assert_eq!(creds.code, 0, "{}", creds.describe());
    assert_eq!(creds.json()["active_secrets"], 2, "{}", creds.describe());
    assert!(
        creds.stderr.contains("2 live secrets"),
        "{}",
        creds.describe()
    );

    // Finish: the old secret is refused from now on; the new one works.
    proxy.reset_count();
    let (r, finished) = json_via(
        &h,
        &proxy,
        &["rotate", "--client", "billing", "--finish"],
        0,
    );
    let finish_requests = proxy.count();
    runs.push(r);
    assert_eq!(finished["active_secrets"], 1, "{finished}");
    assert_eq!(
        finished["secret_id"], rotated["secret_id"],
        "the newest kept"
    );
    assert_eq!(
        finished["deleted"].as_array().unwrap().len(),
        1,
        "{finished}"
    );
    let (code, body) = token_status(&proxy, &id, &old).await;
    assert_eq!(code, 400, "{body}");
    assert!(body.contains("invalid_client"), "{body}");
    assert_eq!(token_status(&proxy, &id, &new).await.0, 200, "new works");
    println!("requests per finish (one client): {finish_requests}");

    // `up` afterwards keeps the client (its description now shows no secret, as the
    // proxy reports AWS doing) and does not touch the published secret.
    let (r, again_up) = json_via(&h, &proxy, &["up"], 0);
    runs.push(r);
    assert_eq!(again_up["outputs"]["clients"]["billing"], id.as_str());
    let billing_actions: Vec<_> = again_up["resources"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["name"] == "billing")
        .map(|r| r["action"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(billing_actions, ["unchanged", "unchanged"], "{again_up}");
    assert_eq!(published(&sm, "AWSCURRENT").await.0, new, "AWSCURRENT kept");

    // Finishing with one secret: nothing to do.
    let (r, again) = json_via(
        &h,
        &proxy,
        &["rotate", "--client", "billing", "--finish"],
        0,
    );
    assert_eq!(again["deleted"].as_array().unwrap().len(), 0, "{again}");
    assert_eq!(proxy.rotation().live(&id), 1, "never the last one");
    runs.push(r);

    // An unpublished client: refused before any request without --show-secret...
    proxy.reset_count();
    let r = h.run_via(&proxy, &["rotate", "--client", "plain"]);
    assert_eq!(r.code, 2, "{}", r.describe());
    assert!(r.stderr.contains("--show-secret"), "{}", r.describe());
    assert_eq!(proxy.count(), 0, "nothing sent, nothing written");
    runs.push(r);
    // ...and with it, the new secret is printed once, and works.
    let (shown_run, shown) = json_via(
        &h,
        &proxy,
        &["rotate", "--client", "plain", "--show-secret"],
        0,
    );
    let plain_id = up["outputs"]["clients"]["plain"].as_str().unwrap();
    let plain_secret = shown["client_secret"].as_str().expect("shown").to_string();
    assert_eq!(token_status(&proxy, plain_id, &plain_secret).await.0, 200);

    // No secret anywhere but where it belongs: not in the state, not in any output
    // (but the one --show-secret asked for), not in the logs.
    let state = files_text(&h.state_dir());
    for s in [&old, &new, &plain_secret] {
        assert!(!state.contains(s.as_str()), "a secret in the state");
        for r in &runs {
            assert!(
                !r.stdout.contains(s.as_str()) && !r.stderr.contains(s.as_str()),
                "a secret in the output of {}",
                r.describe()
            );
        }
    }
    assert!(!shown_run.stderr.contains(&plain_secret), "not in the logs");
    assert!(!shown_run.stdout.contains(&old) && !shown_run.stdout.contains(&new));
}

#[tokio::test]
async fn a_lost_answer_to_add_leaves_no_secret_nobody_has() {
    let Stood {
        h,
        proxy,
        sm,
        id,
        old,
        ..
    } = stood_up().await;

    // The proxy makes the secret, then answers 500: its value never reaches provision.
    proxy.lose_answers(&["AddUserPoolClientSecret"], Lose::ServerError);
    let (r, rotated) = json_via(&h, &proxy, &["rotate", "--client", "billing"], 0);
    assert_eq!(proxy.lost(), ["AddUserPoolClientSecret"]);
    assert!(r.stderr.contains("deleting it again"), "{}", r.describe());
    let handed = proxy.rotation().handed_out();
    assert_eq!(handed.len(), 2, "one lost, one delivered");
    let (new, _) = published(&sm, "AWSCURRENT").await;
    assert_eq!(new, handed[1], "the delivered one is published");
    assert_eq!(
        proxy.rotation().live(&id),
        2,
        "the original and the delivered one"
    );
    assert_eq!(rotated["active_secrets"], 2);
    let (code, body) = token_status(&proxy, &id, &handed[0]).await;
    assert_eq!(code, 400, "the lost one is gone: {body}");
    assert_eq!(token_status(&proxy, &id, &old).await.0, 200);
    assert_eq!(token_status(&proxy, &id, &new).await.0, 200);
    for s in [&old, &new, &handed[0]] {
        assert!(!r.stdout.contains(s.as_str()) && !r.stderr.contains(s.as_str()));
    }
}

/// Runs `rotate --client billing` and SIGKILLs it once the proxy holds the answer of its
/// `k`-th request (done upstream, or by the emulation, but never answered).
fn killed_at(h: &Harness, proxy: &Proxy, k: usize) {
    proxy.hold_at(k);
    let mut child = h
        .command_via(proxy)
        .args(["rotate", "--client", "billing"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    assert!(
        proxy.wait_held(std::time::Duration::from_secs(30)),
        "the run reached request {k}"
    );
    child.kill().unwrap(); // SIGKILL: no chance to clean up
    child.wait().unwrap();
    proxy.release();
}

#[tokio::test]
async fn a_rotation_killed_midway_is_settled_by_the_next_run() {
    let Stood {
        h,
        proxy,
        sm,
        id,
        old,
        ..
    } = stood_up().await;

    // Killed after Add was done (request 3: STS, List, Add), before publishing: the
    // secret it made reached nobody. The next run deletes it, then rotates.
    killed_at(&h, &proxy, 3);
    assert_eq!(
        proxy.rotation().live(&id),
        2,
        "the killed run's secret exists"
    );
    let (r, rotated) = json_via(&h, &proxy, &["rotate", "--client", "billing"], 0);
    assert!(r.stderr.contains("deleting it again"), "{}", r.describe());
    assert_eq!(rotated["active_secrets"], 2);
    let handed = proxy.rotation().handed_out();
    assert_eq!(handed.len(), 2);
    assert_eq!(
        token_status(&proxy, &id, &handed[0]).await.0,
        400,
        "undelivered: gone"
    );
    assert_eq!(published(&sm, "AWSCURRENT").await.0, handed[1]);
    assert_eq!(token_status(&proxy, &id, &old).await.0, 200);
    json_via(
        &h,
        &proxy,
        &["rotate", "--client", "billing", "--finish"],
        0,
    );

    // Killed after publishing (request 4 is PutSecretValue): callers may already use
    // that secret, so the next run keeps it, and refuses a third (finish first).
    killed_at(&h, &proxy, 4);
    let current = published(&sm, "AWSCURRENT").await.0;
    assert_eq!(
        current,
        proxy.rotation().handed_out()[2],
        "published before the kill"
    );
    let r = h.run_via(&proxy, &["rotate", "--client", "billing"]);
    assert_eq!(r.code, 2, "{}", r.describe());
    assert!(!r.stderr.contains("deleting"), "{}", r.describe());
    assert!(r.stderr.contains("--finish"), "{}", r.describe());
    assert_eq!(proxy.rotation().live(&id), 2);
    assert_eq!(
        token_status(&proxy, &id, &current).await.0,
        200,
        "never a window"
    );
}

#[tokio::test]
async fn ctrl_c_finishes_the_client_under_way_and_starts_no_other() {
    let h = Harness::new();
    let proxy = Proxy::start(&h.url);
    std::fs::write(h.dir.path().join("provision.toml"), CONFIG).unwrap();
    let (_, up) = json_via(&h, &proxy, &["up"], 0);
    let billing = up["outputs"]["clients"]["billing"].as_str().unwrap();
    let plain = up["outputs"]["clients"]["plain"].as_str().unwrap();

    // SIGINT while billing's Add is under way (request 4: STS, then both clients'
    // secrets are listed before any write, then billing's Add).
    proxy.hold_at(4);
    let child = h
        .command_via(&proxy)
        .args(["-o", "json", "rotate", "--all", "--show-secret"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    assert!(proxy.wait_held(std::time::Duration::from_secs(30)));
    common::signal(child.id(), libc::SIGINT);
    std::thread::sleep(std::time::Duration::from_millis(200));
    proxy.release();
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(130), "{stderr}");
    let v: Value = serde_json::from_slice(&out.stdout).expect("one JSON object");
    assert_eq!(v["interrupted"], true, "{v}");
    let done = v["clients"].as_array().unwrap();
    assert_eq!(done.len(), 1, "billing delivered, plain not started: {v}");
    assert_eq!(done[0]["client"], "billing");
    assert_eq!(proxy.rotation().live(billing), 2, "billing rotated");
    assert_eq!(
        proxy.rotation().live(plain),
        1,
        "plain listed, never added to"
    );
    // The lock was released and nothing is left half-done: the rest runs now.
    let (_, rest) = json_via(
        &h,
        &proxy,
        &["rotate", "--client", "plain", "--show-secret"],
        0,
    );
    assert_eq!(rest["active_secrets"], 2);
}
