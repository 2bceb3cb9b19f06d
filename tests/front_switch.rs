//! Switching fronts in place (`rest` <-> `http`): the new API built, the permission
//! moved, the old API deleted, the URL change said; `--dry-run` shows it; a switch killed
//! half-way is finished by the next `up` or by `down`.

mod common;
#[path = "front/helpers.rs"]
mod helpers;

use common::{actions, Harness};
use helpers::*;

/// `up` through `proxy` with `front`, killed (SIGKILL: no chance to tidy up) once the
/// new front's stage is being made: both fronts exist, the old one still recorded.
fn switch_killed_mid_way(h: &Harness, proxy: &common::proxy::Proxy, front: &str, hold: &str) {
    proxy.hold_operation(hold);
    let mut child = h
        .command_via(proxy)
        .args(["-o", "json", "up", "--front", front])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    assert!(
        proxy.wait_held(std::time::Duration::from_secs(60)),
        "up --front {front} reached {hold}"
    );
    common::signal(child.id(), libc::SIGKILL);
    let _ = child.wait();
    proxy.release();
}

fn stderr_of(r: &common::Run) -> String {
    r.stderr.clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fronts_switch_in_place_each_way_and_a_killed_switch_is_finished() {
    let mut h = Harness::new();
    let proxy = common::proxy::Proxy::start(&h.url);
    h.url = proxy.url.clone();
    let sdk = h.aws().await;
    let stack = h.stack.clone();

    let up = h.json(&["up"]);
    assert_eq!(up["front"], "rest", "the default front");
    let rest_url = up["outputs"]["api_url"].as_str().unwrap().to_string();
    let (rest_id, _) = sdk.apis().await.remove(0);
    let client = token(&h, "client");
    let bearer = format!("Bearer {client}");
    assert_eq!(call(&rest_url, "GET", "/items", Some(&bearer)).await, 200);

    // The plan of a switch: the HTTP API made, the REST API deleted, the URL changing.
    // Nothing is written.
    let plan = h.run_observed(
        &proxy,
        &["-o", "json", "up", "--front", "http", "--dry-run"],
    );
    assert_eq!(plan.code, 0, "{}", plan.describe());
    assert!(
        plan.writes().is_empty(),
        "dry run wrote {:?}",
        plan.writes()
    );
    let acts = actions(&plan.json());
    assert!(
        acts.contains(&("http_api".into(), format!("{stack}-api"), "created".into())),
        "{acts:?}"
    );
    assert!(
        acts.contains(&("rest_api".into(), rest_id.clone(), "deleted".into())),
        "{acts:?}"
    );
    assert!(
        stderr_of(&plan).contains("URL would change"),
        "{}",
        plan.describe()
    );
    assert_eq!(sdk.apis().await.len(), 1);
    assert!(sdk.http_apis().await.is_empty());

    // A switch killed half-way: both fronts exist; status calls the old one extra.
    switch_killed_mid_way(&h, &proxy, "http", "CreateStage");
    assert_eq!(sdk.apis().await.len(), 1, "the REST API is still there");
    assert_eq!(sdk.http_apis().await.len(), 1, "the HTTP API is made");
    let half = h.json_code(&["status", "--front", "http"], 3);
    assert!(
        half["resources"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["kind"] == "rest_api"
                && r["id"] == rest_id.as_str()
                && r["state"] == "extra"),
        "{half}"
    );

    // The next `up` finishes it: the HTTP API answers, the REST API is gone, the
    // permission names the new API, the output says the URL changed.
    let done = h.run(&["-o", "json", "up", "--front", "http"]);
    assert_eq!(done.code, 0, "{}", done.describe());
    assert!(
        stderr_of(&done).contains("URL changed"),
        "{}",
        done.describe()
    );
    let report = done.json();
    assert!(
        actions(&report).contains(&("rest_api".into(), rest_id.clone(), "deleted".into())),
        "{report}"
    );
    assert!(sdk.apis().await.is_empty(), "the old REST API is gone");
    let (http_id, _) = sdk.http_apis().await.remove(0);
    let http_url = report["outputs"]["api_url"].as_str().unwrap().to_string();
    assert_ne!(http_url, rest_url);
    assert!(http_url.contains(&http_id), "{http_url}");
    assert_eq!(call(&http_url, "GET", "/items", Some(&bearer)).await, 200);
    assert_eq!(call(&http_url, "GET", "/items", None).await, 401);
    assert_eq!(
        source_arn(&sdk, &stack).await,
        format!("arn:aws:execute-api:us-east-1:000000000000:{http_id}/*")
    );
    let state = std::fs::read_to_string(h.state_file()).unwrap();
    assert!(
        !state.contains(&rest_id),
        "the REST API is forgotten: {state}"
    );

    // And back, in one run: the REST API answers again, the HTTP API is gone.
    let back = h.json(&["up", "--front", "rest"]);
    assert!(
        actions(&back).contains(&("http_api".into(), http_id.clone(), "deleted".into())),
        "{back}"
    );
    assert!(sdk.http_apis().await.is_empty(), "the HTTP API is gone");
    let (rest_id, _) = sdk.apis().await.remove(0);
    let rest_url = back["outputs"]["api_url"].as_str().unwrap().to_string();
    assert_eq!(call(&rest_url, "GET", "/items", Some(&bearer)).await, 200);
    assert_eq!(
        source_arn(&sdk, &stack).await,
        format!("arn:aws:execute-api:us-east-1:000000000000:{rest_id}/*")
    );
    let status = h.json(&["status"]);
    assert_eq!(status["in_sync"], true, "{status}");

    // Killed half-way again; `down` finishes the job: nothing of either front is left.
    switch_killed_mid_way(&h, &proxy, "http", "CreateStage");
    assert_eq!(sdk.http_apis().await.len(), 1);
    let down = h.json(&["down"]);
    let acts = actions(&down);
    for kind in ["rest_api", "http_api"] {
        assert!(
            acts.iter().any(|(k, _, a)| k == kind && a == "deleted"),
            "{kind}: {acts:?}"
        );
    }
    sdk.assert_empty().await;
    assert!(!h.state_file().exists());
}
