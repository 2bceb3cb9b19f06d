//! The HTTP API front door (`front = "http"`): the whole lifecycle with two clients of
//! different scopes, checked with real tokens from the emulator's token endpoint and
//! real calls to the API's URL; a no-op `up` that writes nothing; drift on a route's
//! scopes; a client added to the audience; lost create answers; adoption without
//! state; an interrupted `up`. Switching fronts: tests/front_switch.rs.

mod common;
#[path = "front/helpers.rs"]
mod helpers;

use common::{actions, Harness};
use helpers::*;

#[tokio::test]
async fn an_http_front_lives_answers_by_scope_keeps_still_repairs_drift_and_goes() {
    let mut h = Harness::new();
    // Every run through one proxy (the outputs hold the endpoint), so the no-op's
    // writes are counted where they would reach AWS.
    let proxy = common::proxy::Proxy::start(&h.url);
    h.url = proxy.url.clone();
    let sdk = h.aws().await;
    let stack = h.stack.clone();
    write_config(&h, TWO);

    let up = h.json(&["up"]);
    assert_eq!(up["front"], "http", "{up}");
    assert_eq!(up["outputs"]["front"], "http", "{up}");
    let acts = actions(&up);
    assert!(acts.iter().all(|(_, _, a)| a == "created"), "{acts:?}");
    let k = kinds(&up);
    for kind in ["http_api", "jwt_authorizer", "integration", "http_stage"] {
        assert_eq!(k.iter().filter(|x| *x == kind).count(), 1, "{kind}: {k:?}");
    }
    assert_eq!(k.iter().filter(|x| *x == "route").count(), 4, "{k:?}");
    for kind in ["rest_api", "authorizer", "method", "stage"] {
        assert!(
            !k.iter().any(|x| x == kind),
            "{kind} on an HTTP front: {k:?}"
        );
    }
    assert!(sdk.apis().await.is_empty(), "no REST API");
    let apis = sdk.http_apis().await;
    assert_eq!(apis.len(), 1, "{apis:?}");
    let (api_id, api_name) = apis[0].clone();
    assert_eq!(api_name, format!("{stack}-api"));
    let url = up["outputs"]["api_url"].as_str().unwrap().to_string();
    assert_eq!(
        url,
        format!("{}/_aws/execute-api/{api_id}/$default/", h.url),
        "{up}"
    );
    assert_eq!(
        source_arn(&sdk, &stack).await,
        format!("arn:aws:execute-api:us-east-1:000000000000:{api_id}/*"),
        "the permission names this API only"
    );

    // Independently: the routes mirror [methods], each JWT-authorized with its scopes.
    let got = routes(&sdk, &api_id).await;
    let keys: Vec<&str> = got.iter().map(|r| r.0.as_str()).collect();
    assert_eq!(keys, ["GET /", "GET /{proxy+}", "POST /", "POST /{proxy+}"]);
    for (key, _, scopes, auth) in &got {
        assert_eq!(auth, "JWT", "{key}");
        let want = if key.starts_with("GET") {
            "users/read"
        } else {
            "users/write"
        };
        assert_eq!(scopes, &[want.to_string()], "{key}");
    }

    // Real tokens, real calls: 200 with the route's scope, 403 without, 401 without a
    // valid token.
    let (reader, writer) = (token(&h, "reader"), token(&h, "writer"));
    let bearer = |t: &str| format!("Bearer {t}");
    assert_eq!(
        call(&url, "GET", "/items", Some(&bearer(&reader))).await,
        200
    );
    assert_eq!(
        call(&url, "POST", "/items", Some(&bearer(&reader))).await,
        403
    );
    assert_eq!(
        call(&url, "GET", "/items", Some(&bearer(&writer))).await,
        403
    );
    assert_eq!(
        call(&url, "POST", "/items", Some(&bearer(&writer))).await,
        200
    );
    assert_eq!(call(&url, "GET", "/", Some(&bearer(&reader))).await, 200);
    assert_eq!(call(&url, "GET", "/items", None).await, 401);
    assert_eq!(
        call(&url, "GET", "/items", Some("Bearer not.a.token")).await,
        401
    );
    // `invoke` goes the same way (the greeting through payload 2.0).
    let inv = h.json(&["invoke", "--client", "reader", "--path", "/items"]);
    assert_eq!(inv["status"], 200, "{inv}");
    assert_eq!(
        inv["body"]["message"], "Hello Authenticated Client!",
        "{inv}"
    );
    assert_eq!(
        inv["body"]["client_id"], up["outputs"]["clients"]["reader"],
        "{inv}"
    );
    assert_eq!(inv["body"]["scope"], "users/read", "{inv}");

    // A second `up` changes nothing: no write reaches AWS.
    let again = h.run_observed(&proxy, &["-o", "json", "up"]);
    assert_eq!(again.code, 0, "{}", again.describe());
    assert!(
        again.writes().is_empty(),
        "no-op up sent writes: {:?}",
        again.writes()
    );
    let report = again.json();
    assert!(
        actions(&report).iter().all(|(_, _, a)| a == "unchanged"),
        "{report}"
    );
    // Each read of the HTTP API, once: the steps share them (and with the state file's
    // ids they are all sent at once, before the steps ask).
    for op in [
        "GetApi",
        "GetAuthorizers",
        "GetIntegrations",
        "GetRoutes",
        "GetStage",
    ] {
        let n = again
            .calls
            .iter()
            .filter(|c| c.split(':').nth(1) == Some(op))
            .count();
        assert_eq!(n, 1, "{op} sent {n} times: {:?}", again.calls);
    }
    assert_eq!(report["outputs"], up["outputs"]);
    let status = h.json(&["status"]);
    assert_eq!(status["in_sync"], true, "{status}");
    assert_eq!(status["front"], "http", "{status}");
    // Figures for the record (the bench measures time): requests per command.
    println!(
        "http front: fresh up {} requests, no-op up {} requests",
        up["api_calls"], report["api_calls"]
    );

    // Drift: someone widens GET /{proxy+} to any token (no authorizer) and another
    // route's scopes change. status says so (exit 3), up puts both back.
    let (_, get_proxy, _, _) = got.iter().find(|r| r.0 == "GET /{proxy+}").unwrap();
    let (_, post_root, _, _) = got.iter().find(|r| r.0 == "POST /").unwrap();
    sdk.apigw2
        .update_route()
        .api_id(&api_id)
        .route_id(get_proxy)
        .authorization_type(aws_sdk_apigatewayv2::types::AuthorizationType::None)
        .send()
        .await
        .unwrap();
    sdk.apigw2
        .update_route()
        .api_id(&api_id)
        .route_id(post_root)
        .authorization_scopes("users/read")
        .send()
        .await
        .unwrap();
    let drift = h.json_code(&["status"], 3);
    assert_eq!(drift["in_sync"], false, "{drift}");
    let drifted: Vec<(String, Vec<String>)> = drift["resources"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["state"] == "drifted")
        .map(|r| {
            (
                r["id"].as_str().unwrap().to_string(),
                r["fields"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|f| f.as_str().unwrap().to_string())
                    .collect(),
            )
        })
        .collect();
    assert!(
        drifted.contains(&("POST /".to_string(), vec!["scopes".to_string()])),
        "{drift}"
    );
    assert!(
        drifted.iter().any(|(id, fields)| id == "GET /{proxy+}"
            && fields.contains(&"authorization_type".to_string())),
        "{drift}"
    );
    let repair = h.json(&["up"]);
    let updated: Vec<String> = actions(&repair)
        .into_iter()
        .filter(|(_, _, a)| a == "updated")
        .map(|(_, id, _)| id)
        .collect();
    assert_eq!(updated, ["GET /{proxy+}", "POST /"], "{repair}");
    assert_eq!(routes(&sdk, &api_id).await, got, "routes as they were");
    assert_eq!(call(&url, "GET", "/items", None).await, 401, "closed again");
    let status = h.json(&["status"]);
    assert_eq!(status["in_sync"], true, "{status}");

    // A route nobody configured is `extra` (privilege drift), and up deletes it.
    sdk.apigw2
        .create_route()
        .api_id(&api_id)
        .route_key("GET /admin")
        .send()
        .await
        .unwrap();
    let extra = h.json_code(&["status"], 3);
    assert!(
        extra["resources"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["kind"] == "route" && r["id"] == "GET /admin" && r["state"] == "extra"),
        "{extra}"
    );
    h.ok(&["up"]);
    assert!(
        !routes(&sdk, &api_id)
            .await
            .iter()
            .any(|r| r.0 == "GET /admin"),
        "the extra route is gone"
    );

    // A third client: the authorizer's audience grows, and its token is let in.
    write_config(
        &h,
        &format!("{TWO}\n[[client]]\nname = \"auditor\"\nscopes = [\"users/read\"]\n"),
    );
    let grown = h.json(&["up"]);
    let changed: Vec<(String, String, String)> = actions(&grown)
        .into_iter()
        .filter(|(_, _, a)| a != "unchanged")
        .collect();
    assert!(
        changed
            .iter()
            .any(|(k, _, a)| k == "jwt_authorizer" && a == "updated"),
        "{changed:?}"
    );
    let auditor = token(&h, "auditor");
    assert_eq!(
        call(&url, "GET", "/items", Some(&bearer(&auditor))).await,
        200
    );
    assert_eq!(
        call(&url, "GET", "/items", Some(&bearer(&reader))).await,
        200
    );

    // down leaves nothing.
    let down = h.json(&["down"]);
    println!("http front: down {} requests", down["api_calls"]);
    assert!(
        actions(&down).iter().all(|(_, _, a)| a == "deleted"),
        "{down}"
    );
    sdk.assert_empty().await;
    assert!(!h.state_file().exists(), "state file left after down");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_create_answer_on_the_http_front_never_duplicates_a_resource() {
    use common::proxy::Lose;
    let h = Harness::new();
    let proxy = common::proxy::Proxy::start(&h.url);
    let sdk = h.aws().await;
    // API Gateway accepts duplicate API names, authorizers, integrations and routes
    // (a second route of a key is refused: its lookup is tested all the same).
    const CREATES: &[&str] = &[
        "CreateApi",
        "CreateAuthorizer",
        "CreateIntegration",
        "CreateRoute",
        "CreateStage",
        "AddPermission",
    ];
    for how in [Lose::ServerError, Lose::Drop] {
        h.reset();
        write_config(&h, TWO);
        proxy.clear_lost();
        proxy.lose_answers(CREATES, how);
        let up = h.run_via(&proxy, &["-o", "json", "up"]);
        assert_eq!(
            up.code,
            0,
            "up with lost answers ({how:?}), lost: {:?}\n{}",
            proxy.lost_answers(),
            up.describe()
        );
        let lost = proxy.lost_answers();
        let mut lost_ops: Vec<&str> = lost.iter().map(|(op, _)| op.as_str()).collect();
        lost_ops.sort();
        let mut want = CREATES.to_vec();
        want.sort();
        assert_eq!(
            lost_ops, want,
            "every create lost its answer once ({how:?})"
        );
        for (op, status) in &lost {
            assert!(
                status.contains(" 20"),
                "the emulator did {op} before its answer was lost ({how:?}): {status}"
            );
        }
        proxy.lose_answers(&[], how);
        let (apis, authorizers, integrations, keys) = http_counts(&sdk).await;
        assert_eq!(
            (apis, authorizers, integrations),
            (1, 1, 1),
            "one of each ({how:?})"
        );
        assert_eq!(
            keys,
            ["GET /", "GET /{proxy+}", "POST /", "POST /{proxy+}"],
            "{how:?}"
        );
        let status = h.run_via(&proxy, &["status"]);
        assert_eq!(status.code, 0, "in sync ({how:?}):\n{}", status.describe());
        let url = up.json()["outputs"]["api_url"]
            .as_str()
            .unwrap()
            .to_string();
        let reader = h.run_via(&proxy, &["-o", "json", "token", "--client", "reader"]);
        let reader = reader.json()["access_token"].as_str().unwrap().to_string();
        // The URL holds the proxy's endpoint: the call goes through it, as up did.
        assert_eq!(
            call(&url, "GET", "/x", Some(&format!("Bearer {reader}"))).await,
            200,
            "{how:?}"
        );
    }
}

/// No state file: `up` finds the HTTP API by its name and tag (GetApis carries tags)
/// and adopts it and everything on it; `down` finds it the same way.
#[tokio::test]
async fn an_http_front_is_adopted_and_taken_down_without_state() {
    let h = Harness::new();
    let sdk = h.aws().await;
    write_config(&h, TWO);
    h.ok(&["up"]);
    let (api_id, _) = sdk.http_apis().await.remove(0);
    std::fs::remove_file(h.state_file()).unwrap();
    let plan = h.json(&["up", "--dry-run"]);
    let acts = actions(&plan);
    assert!(
        acts.contains(&("http_api".into(), api_id.clone(), "adopted".into())),
        "{acts:?}"
    );
    assert!(
        acts.iter().all(|(_, _, a)| a == "adopted"),
        "nothing to make: {acts:?}"
    );
    let up = h.json(&["up"]);
    assert!(actions(&up).iter().all(|(_, _, a)| a == "adopted"), "{up}");
    assert_eq!(sdk.http_apis().await.len(), 1);
    std::fs::remove_file(h.state_file()).unwrap();
    let down = h.json(&["down"]);
    assert!(
        actions(&down)
            .iter()
            .any(|(k, id, a)| k == "http_api" && *id == api_id && a == "deleted"),
        "{down}"
    );
    sdk.assert_empty().await;

    // Someone else's API of the stack's name is neither adopted nor deleted.
    let foreign = sdk
        .apigw2
        .create_api()
        .name(format!("{}-api", h.stack))
        .protocol_type(aws_sdk_apigatewayv2::types::ProtocolType::Http)
        .tags("provision:stack", "someone-else")
        .send()
        .await
        .unwrap();
    let refused = h.run(&["up"]);
    assert_eq!(refused.code, 2, "{}", refused.describe());
    assert!(
        refused.stderr.contains("someone-else"),
        "{}",
        refused.describe()
    );
    let down = h.json(&["down"]);
    assert!(
        actions(&down)
            .iter()
            .any(|(k, _, a)| k == "http_api" && a == "kept"),
        "{down}"
    );
    assert_eq!(
        sdk.http_apis().await,
        [(
            foreign.api_id().unwrap().to_string(),
            format!("{}-api", h.stack)
        )]
    );
}

/// A first signal in the middle of an HTTP front's `up`: what was made is recorded,
/// the run ends with 130, and the next `up` finishes without a duplicate.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_interrupted_http_up_is_finished_by_the_next() {
    let h = Harness::new();
    let proxy = common::proxy::Proxy::start(&h.url);
    let sdk = h.aws().await;
    write_config(&h, TWO);
    proxy.hold_operation("CreateRoute");
    let child = h
        .command_via(&proxy)
        .args(["-o", "json", "up"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    assert!(
        proxy.wait_held(std::time::Duration::from_secs(60)),
        "up reached CreateRoute"
    );
    common::signal(child.id(), libc::SIGINT);
    // The request in flight gets its answer: the step finishes within the grace.
    std::thread::sleep(std::time::Duration::from_millis(200));
    proxy.release();
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(130), "{stderr}");
    let state = std::fs::read_to_string(h.state_file()).unwrap();
    let (api_id, _) = sdk.http_apis().await.remove(0);
    assert!(state.contains(&api_id), "the HTTP API is recorded: {state}");
    let again = h.json(&["up"]);
    assert!(
        actions(&again)
            .iter()
            .any(|(k, _, a)| k == "http_stage" && a == "created"),
        "the stage (after every route) was not started; now it is made: {again}"
    );
    let (apis, authorizers, integrations, keys) = http_counts(&sdk).await;
    assert_eq!((apis, authorizers, integrations), (1, 1, 1));
    assert_eq!(keys, ["GET /", "GET /{proxy+}", "POST /", "POST /{proxy+}"]);
    let status = h.json(&["status"]);
    assert_eq!(status["in_sync"], true, "{status}");
}

/// `list` counts a stack's HTTP API among its tagged resources (found without a state
/// file too); `prune` takes an HTTP-front stack down like any other.
#[tokio::test]
async fn list_and_prune_see_an_http_front() {
    let h = Harness::new();
    let sdk = h.aws().await;
    write_config(&h, TWO);
    h.ok(&["up"]);
    std::fs::remove_file(h.state_file()).unwrap();
    let list = h.json(&["list"]);
    let ours = list["stacks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["stack"] == h.stack.as_str())
        .unwrap_or_else(|| panic!("{list}"))
        .clone();
    // Function, pool, role and the HTTP API.
    assert_eq!(ours["tagged"], 4, "{list}");
    assert_eq!(ours["in_state"], false, "{list}");
    let pruned = h.json(&["prune", "--match", &h.stack]);
    assert!(pruned.to_string().contains(&h.stack), "{pruned}");
    sdk.assert_empty().await;
}
