//! `up` as a reconciler: no-op reruns, updates in place, adoption without a state file,
//! drift found by `status` and repaired by `up`, dry runs that change nothing, and
//! resources of other stacks left alone. Every claim is checked with our own SDK reads.

mod common;

use common::proxy::Proxy;
use common::{actions, Harness};
use serde_json::Value;

/// The action of the one resource of `kind` (and id, for methods) in a report.
fn action(report: &Value, kind: &str) -> String {
    let found: Vec<_> = actions(report)
        .into_iter()
        .filter(|(k, id, _)| k == kind || format!("{k} {id}") == kind)
        .collect();
    assert_eq!(found.len(), 1, "one {kind} in {report}");
    found[0].2.clone()
}

fn changes(report: &Value, kind: &str) -> Vec<String> {
    report["resources"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["kind"] == kind)
        .and_then(|r| r["changes"].as_array())
        .map(|c| c.iter().map(|v| v.as_str().unwrap().to_string()).collect())
        .unwrap_or_default()
}

/// Every resource but those named has this action.
fn all_but(report: &Value, except: &[&str], expected: &str) {
    for (kind, id, act) in actions(report) {
        let named =
            except.contains(&kind.as_str()) || except.contains(&format!("{kind} {id}").as_str());
        if !named {
            assert_eq!(act, expected, "{kind} {id} in {report}");
        }
    }
}

#[tokio::test]
async fn second_up_is_a_no_op_with_reads_only() {
    let h = Harness::new();
    // Both through the proxy (the endpoint is part of the outputs), which counts what
    // reaches AWS independently of the binary's own counter.
    let proxy = Proxy::start(&h.url);
    let first = h.run_observed(&proxy, &["-o", "json", "up"]).json();
    let second = h.run_observed(&proxy, &["-o", "json", "up"]);
    assert_eq!(second.code, 0, "{}", second.describe());
    let report = second.json();
    all_but(&report, &[], "unchanged");
    assert_eq!(actions(&report).len(), 13);
    assert_eq!(report["outputs"], first["outputs"]);
    assert!(
        second.writes().is_empty(),
        "no-op up sent writes: {:?}",
        second.writes()
    );
    assert_eq!(
        report["api_calls"].as_u64().unwrap() as usize,
        second.calls.len()
    );
    // The reads the state file allows are sent at once, before the steps ask for them;
    // a step finds its read done, never sends it a second time.
    let mut sorted = second.calls.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(
        sorted.len(),
        second.calls.len(),
        "a read sent twice: {:?}",
        second.calls
    );
    assert!(second.calls.len() <= 16, "{:?}", second.calls);
    let sdk = h.aws().await;
    assert_eq!(sdk.pools().await.len(), 1);
    assert_eq!(sdk.apis().await.len(), 1);
    assert_eq!(sdk.function_names().await.len(), 1);
    assert_eq!(sdk.role_names().await.len(), 1);
    println!(
        "no-op up: {} AWS calls: {:?}",
        second.calls.len(),
        second.calls
    );
}

#[tokio::test]
async fn memory_timeout_and_code_are_updated_in_place() {
    let h = Harness::new();
    let sdk = h.aws().await;
    let name = format!("{}-handler", h.stack);
    h.json(&["up"]);
    let before = sdk
        .lambda
        .get_function()
        .function_name(&name)
        .send()
        .await
        .unwrap();
    let before = before.configuration().unwrap().clone();

    let r = h.json(&["up", "--memory", "256", "--timeout", "20"]);
    assert_eq!(action(&r, "lambda_function"), "updated");
    assert_eq!(changes(&r, "lambda_function"), ["memory_mb", "timeout_s"]);
    all_but(&r, &["lambda_function"], "unchanged");
    let after = sdk
        .lambda
        .get_function()
        .function_name(&name)
        .send()
        .await
        .unwrap();
    let after = after.configuration().unwrap();
    assert_eq!(after.memory_size(), Some(256));
    assert_eq!(after.timeout(), Some(20));
    assert_eq!(
        after.function_arn(),
        before.function_arn(),
        "same function, not a new one"
    );
    assert_eq!(after.code_sha256(), before.code_sha256(), "code untouched");

    // New code: the same handler with bytes appended (still a valid executable).
    let mut binary = std::fs::read(common::handler_binary()).unwrap();
    binary.extend_from_slice(b"provision-test-new-build");
    let new_handler = h.dir.path().join("handler-v2");
    std::fs::write(&new_handler, &binary).unwrap();
    std::fs::set_permissions(
        &new_handler,
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    let new_handler = new_handler.to_str().unwrap().to_string();
    let r = h.json(&[
        "up",
        "--memory",
        "256",
        "--timeout",
        "20",
        "--handler",
        &new_handler,
    ]);
    assert_eq!(action(&r, "lambda_function"), "updated");
    assert_eq!(changes(&r, "lambda_function"), ["code_sha256"]);
    all_but(&r, &["lambda_function"], "unchanged");
    let updated = sdk
        .lambda
        .get_function()
        .function_name(&name)
        .send()
        .await
        .unwrap();
    let updated = updated.configuration().unwrap();
    assert_ne!(updated.code_sha256(), before.code_sha256(), "code replaced");
    assert_eq!(updated.function_arn(), before.function_arn());
    assert_eq!(updated.memory_size(), Some(256), "configuration kept");
    // The new build answers.
    let call = h.json(&["invoke"]);
    assert_eq!(call["status"], 200, "{call}");
    // And the same build again is a no-op: the zip is deterministic (writes counted at
    // a proxy).
    let again = h.run_observed(
        &Proxy::start(&h.url),
        &[
            "-o",
            "json",
            "up",
            "--memory",
            "256",
            "--timeout",
            "20",
            "--handler",
            &new_handler,
        ],
    );
    all_but(&again.json(), &[], "unchanged");
    assert!(again.writes().is_empty(), "{:?}", again.writes());
}

#[tokio::test]
async fn scopes_and_token_validity_are_updated_in_place_and_the_api_redeployed_once() {
    let h = Harness::new();
    let sdk = h.aws().await;
    let first = h.json(&["up"]);
    let pool_id = first["outputs"]["user_pool_id"]
        .as_str()
        .unwrap()
        .to_string();
    let client_id = first["outputs"]["client_id"].as_str().unwrap().to_string();
    let (api_id, _) = sdk.apis().await.remove(0);
    let stage = |sdk: &common::Sdk, api: String| {
        let apigw = sdk.apigw.clone();
        async move {
            apigw
                .get_stage()
                .rest_api_id(api)
                .stage_name("prod")
                .send()
                .await
                .unwrap()
                .deployment_id()
                .unwrap()
                .to_string()
        }
    };
    let deployment_before = stage(&sdk, api_id.clone()).await;

    let r = h.json(&["up", "--scope", "users/read", "--scope", "users/write"]);
    assert_eq!(action(&r, "resource_server"), "updated");
    assert_eq!(action(&r, "app_client"), "updated");
    assert_eq!(changes(&r, "app_client"), ["scopes"]);
    assert_eq!(action(&r, "method ANY /"), "updated");
    assert_eq!(action(&r, "method ANY /{proxy+}"), "updated");
    assert_eq!(action(&r, "stage"), "updated");
    all_but(
        &r,
        &["resource_server", "app_client", "method", "stage"],
        "unchanged",
    );
    assert_eq!(r["outputs"]["client_id"], client_id.as_str(), "same client");
    assert_eq!(r["outputs"]["scope"], "users/read users/write");

    let rs = sdk
        .cognito
        .describe_resource_server()
        .user_pool_id(&pool_id)
        .identifier("users")
        .send()
        .await
        .unwrap();
    let mut scopes: Vec<_> = rs
        .resource_server()
        .unwrap()
        .scopes()
        .iter()
        .map(|s| s.scope_name().to_string())
        .collect();
    scopes.sort();
    assert_eq!(scopes, ["read", "write"]);
    let c = sdk
        .cognito
        .describe_user_pool_client()
        .user_pool_id(&pool_id)
        .client_id(&client_id)
        .send()
        .await
        .unwrap();
    let mut client_scopes = c
        .user_pool_client()
        .unwrap()
        .allowed_o_auth_scopes()
        .to_vec();
    client_scopes.sort();
    assert_eq!(client_scopes, ["users/read", "users/write"]);
    let resources = sdk
        .apigw
        .get_resources()
        .rest_api_id(&api_id)
        .send()
        .await
        .unwrap();
    for res in resources.items() {
        let m = sdk
            .apigw
            .get_method()
            .rest_api_id(&api_id)
            .resource_id(res.id().unwrap())
            .http_method("ANY")
            .send()
            .await
            .unwrap();
        let mut s = m.authorization_scopes().to_vec();
        s.sort();
        assert_eq!(
            s,
            ["users/read", "users/write"],
            "method on {:?}",
            res.path()
        );
    }
    let deployment_after = stage(&sdk, api_id.clone()).await;
    assert_ne!(deployment_before, deployment_after, "redeployed");
    assert_eq!(sdk.apis().await.len(), 1, "same API");
    let token = h.json(&["token"]);
    assert_eq!(token["scope"], "users/read users/write");
    assert_eq!(h.json(&["invoke"])["status"], 200);

    // Rerun with the same scopes: no redeployment.
    let same = h.json(&["up", "--scope", "users/write", "--scope", "users/read"]);
    all_but(&same, &[], "unchanged");
    assert_eq!(
        stage(&sdk, api_id.clone()).await,
        deployment_after,
        "not redeployed"
    );

    // Token validity: only the client changes.
    let r = h.json(&[
        "up",
        "--scope",
        "users/read",
        "--scope",
        "users/write",
        "--token-validity",
        "30",
    ]);
    assert_eq!(action(&r, "app_client"), "updated");
    assert_eq!(changes(&r, "app_client"), ["access_token_validity_min"]);
    all_but(&r, &["app_client"], "unchanged");
    let c = sdk
        .cognito
        .describe_user_pool_client()
        .user_pool_id(&pool_id)
        .client_id(&client_id)
        .send()
        .await
        .unwrap();
    let c = c.user_pool_client().unwrap();
    assert_eq!(c.access_token_validity(), Some(30));
    assert_eq!(
        c.token_validity_units()
            .unwrap()
            .access_token()
            .unwrap()
            .as_str(),
        "minutes"
    );
    assert_eq!(
        stage(&sdk, api_id).await,
        deployment_after,
        "not redeployed"
    );
}

#[tokio::test]
async fn a_new_domain_prefix_replaces_the_domain() {
    let h = Harness::new();
    let sdk = h.aws().await;
    let first = h.json(&["up"]);
    let pool_id = first["outputs"]["user_pool_id"]
        .as_str()
        .unwrap()
        .to_string();
    let old = sdk
        .cognito
        .describe_user_pool()
        .user_pool_id(&pool_id)
        .send()
        .await
        .unwrap();
    let old = old.user_pool().unwrap().domain().unwrap().to_string();
    let r = h.json(&["up", "--domain-prefix", "it-second-prefix"]);
    assert_eq!(action(&r, "user_pool_domain"), "updated");
    all_but(&r, &["user_pool_domain"], "unchanged");
    let pool = sdk
        .cognito
        .describe_user_pool()
        .user_pool_id(&pool_id)
        .send()
        .await
        .unwrap();
    assert_eq!(pool.user_pool().unwrap().domain(), Some("it-second-prefix"));
    let gone = sdk
        .cognito
        .describe_user_pool_domain()
        .domain(&old)
        .send()
        .await
        .unwrap();
    assert!(
        gone.domain_description()
            .and_then(|d| d.user_pool_id())
            .is_none(),
        "old prefix released"
    );
    assert_eq!(h.json(&["invoke"])["status"], 200);
}

/// `down` deletes by the recorded ids; one that is gone already (the state file may be
/// behind: a killed run made a new pool or API and lost its id) sends it searching by
/// name and tag, so what is the stack's still goes.
#[tokio::test]
async fn down_with_stale_recorded_ids_still_finds_the_api_and_pool_by_tag() {
    let h = Harness::new();
    h.ok(&["up"]);
    let mut state: Value =
        serde_json::from_str(&std::fs::read_to_string(h.state_file()).unwrap()).unwrap();
    state["resources"]["rest_api"] = "gone00".into();
    state["resources"]["user_pool"] = "us-east-1_Gone0000".into();
    std::fs::write(h.state_file(), state.to_string()).unwrap();
    let down = h.ok(&["-o", "json", "down"]);
    for op in ["apigateway:GetRestApis", "cognito-idp:ListUserPools"] {
        assert!(down.calls.iter().any(|c| c == op), "{op}: {:?}", down.calls);
    }
    h.aws().await.assert_empty().await;
    assert!(!h.state_file().exists());
}

#[tokio::test]
async fn without_a_state_file_up_adopts_everything_and_down_removes_it() {
    let h = Harness::new();
    let sdk = h.aws().await;
    let proxy = Proxy::start(&h.url);
    let first = h.run_observed(&proxy, &["-o", "json", "up"]).json();
    std::fs::remove_file(h.state_file()).unwrap();

    let adopted = h.run_observed(&proxy, &["-o", "json", "up"]);
    assert_eq!(adopted.code, 0, "{}", adopted.describe());
    let report = adopted.json();
    all_but(&report, &[], "adopted");
    assert_eq!(actions(&report).len(), 13);
    assert!(
        adopted.writes().is_empty(),
        "adoption of an unchanged stack writes nothing: {:?}",
        adopted.writes()
    );
    assert_eq!(report["outputs"], first["outputs"], "the same resources");
    assert_eq!(sdk.pools().await.len(), 1);
    assert_eq!(sdk.apis().await.len(), 1);
    assert_eq!(sdk.role_names().await.len(), 1);
    assert_eq!(sdk.function_names().await.len(), 1);
    let state: Value =
        serde_json::from_str(&std::fs::read_to_string(h.state_file()).unwrap()).unwrap();
    assert_eq!(
        state["resources"].as_object().unwrap().len(),
        13,
        "state file rebuilt: {state}"
    );
    assert_eq!(h.json(&["invoke"])["status"], 200);

    // No state file again: down finds everything by tag and name.
    std::fs::remove_file(h.state_file()).unwrap();
    let down = h.json(&["down"]);
    for kind in [
        "iam_role",
        "lambda_function",
        "user_pool",
        "user_pool_domain",
        "rest_api",
    ] {
        assert_eq!(action(&down, kind), "deleted", "{down}");
    }
    sdk.assert_empty().await;
    assert!(!h.state_file().exists());
}

#[tokio::test]
async fn status_finds_a_deleted_client_and_changed_memory_and_up_repairs_them() {
    let h = Harness::new();
    let sdk = h.aws().await;
    let first = h.json(&["up"]);
    let pool_id = first["outputs"]["user_pool_id"]
        .as_str()
        .unwrap()
        .to_string();
    let client_id = first["outputs"]["client_id"].as_str().unwrap().to_string();
    assert_eq!(h.run(&["status"]).code, 0);

    sdk.cognito
        .delete_user_pool_client()
        .user_pool_id(&pool_id)
        .client_id(&client_id)
        .send()
        .await
        .unwrap();
    sdk.lambda
        .update_function_configuration()
        .function_name(format!("{}-handler", h.stack))
        .memory_size(512)
        .send()
        .await
        .unwrap();

    let status = h.run_observed(&Proxy::start(&h.url), &["-o", "json", "status"]);
    assert_eq!(status.code, 3, "{}", status.describe());
    assert!(
        status.writes().is_empty(),
        "status only reads: {:?}",
        status.writes()
    );
    let s = status.json();
    assert_eq!(s["in_sync"], false);
    let state_of = |kind: &str| {
        s["resources"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["kind"] == kind)
            .unwrap()
            .clone()
    };
    assert_eq!(state_of("app_client")["state"], "missing");
    assert_eq!(state_of("lambda_function")["state"], "drifted");
    assert_eq!(
        state_of("lambda_function")["fields"],
        serde_json::json!(["memory_mb"])
    );
    assert_eq!(state_of("user_pool")["state"], "ok");
    let human = h.run(&["status"]);
    assert_eq!(human.code, 3);
    assert!(
        human.stdout.contains("missing") && human.stdout.contains("memory_mb"),
        "{}",
        human.stdout
    );

    let repair = h.json(&["up"]);
    assert_eq!(action(&repair, "app_client"), "created");
    assert_eq!(action(&repair, "lambda_function"), "updated");
    all_but(&repair, &["app_client", "lambda_function"], "unchanged");
    let f = sdk
        .lambda
        .get_function()
        .function_name(format!("{}-handler", h.stack))
        .send()
        .await
        .unwrap();
    assert_eq!(f.configuration().unwrap().memory_size(), Some(128));
    assert_eq!(sdk.clients(&pool_id).await.len(), 1);
    assert_eq!(h.run(&["status"]).code, 0);
    assert_eq!(
        h.json(&["invoke"])["status"],
        200,
        "the new client gets a token"
    );
}

#[tokio::test]
async fn dry_run_plans_and_changes_nothing() {
    let h = Harness::new();
    let sdk = h.aws().await;
    let proxy = Proxy::start(&h.url);
    let plan = h.run_observed(&proxy, &["-o", "json", "up", "--dry-run"]);
    assert_eq!(plan.code, 0, "{}", plan.describe());
    let report = plan.json();
    assert_eq!(report["dry_run"], true);
    all_but(&report, &[], "created");
    assert_eq!(actions(&report).len(), 13);
    assert!(
        plan.writes().is_empty(),
        "dry run wrote: {:?}",
        plan.writes()
    );
    sdk.assert_empty().await;
    assert!(!h.state_file().exists(), "dry run wrote a state file");
    let human = h.ok(&["up", "--dry-run"]);
    assert!(human.stderr.contains("would create"), "{}", human.stderr);

    h.json(&["up"]);
    let state_before = std::fs::read(h.state_file()).unwrap();
    let plan = h.run_observed(
        &proxy,
        &[
            "-o",
            "json",
            "up",
            "--dry-run",
            "--memory",
            "512",
            "--scope",
            "users/read",
            "--scope",
            "users/write",
        ],
    );
    let report = plan.json();
    assert_eq!(action(&report, "lambda_function"), "updated");
    assert_eq!(changes(&report, "lambda_function"), ["memory_mb"]);
    assert_eq!(action(&report, "app_client"), "updated");
    assert_eq!(action(&report, "stage"), "updated");
    assert!(
        plan.writes().is_empty(),
        "dry run wrote: {:?}",
        plan.writes()
    );
    let f = sdk
        .lambda
        .get_function()
        .function_name(format!("{}-handler", h.stack))
        .send()
        .await
        .unwrap();
    assert_eq!(
        f.configuration().unwrap().memory_size(),
        Some(128),
        "memory untouched"
    );
    assert_eq!(
        std::fs::read(h.state_file()).unwrap(),
        state_before,
        "state file untouched"
    );
}

#[tokio::test]
async fn resources_of_another_stack_or_untagged_are_never_adopted() {
    let h = Harness::new();
    let sdk = h.aws().await;
    let trust = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"Service":"lambda.amazonaws.com"},"Action":"sts:AssumeRole"}]}"#;
    let role = format!("{}-handler-us-east-1", h.stack);
    for tags in [None, Some("someone-else")] {
        let mut create = sdk
            .iam
            .create_role()
            .role_name(&role)
            .assume_role_policy_document(trust);
        if let Some(owner) = tags {
            create = create.tags(
                aws_sdk_iam::types::Tag::builder()
                    .key("provision:stack")
                    .value(owner)
                    .build()
                    .unwrap(),
            );
        }
        create.send().await.unwrap();

        // Through a proxy: what reached IAM, not what the binary logged.
        let r = h.run_observed(&Proxy::start(&h.url), &["up"]);
        assert_eq!(r.code, 2, "{}", r.describe());
        let expected = if tags.is_some() {
            "belongs to stack `someone-else`"
        } else {
            "is not tagged"
        };
        assert!(
            r.stderr.contains(expected) && r.stderr.contains(&role),
            "{}",
            r.stderr
        );
        assert!(
            !r.calls.iter().any(|c| c.starts_with("iam:")
                && !c.starts_with("iam:Get")
                && !c.starts_with("iam:List")),
            "touched the foreign role: {:?}",
            r.calls
        );
        // down leaves it and says so (a stale state may name what is someone else's).
        let d = h.run(&["-o", "json", "down"]);
        assert_eq!(d.code, 0, "kept is not an error: {}", d.describe());
        assert!(
            actions(&d.json()).contains(&("iam_role".into(), role.clone(), "kept".into())),
            "{}",
            d.describe()
        );
        assert_eq!(
            sdk.role_names().await,
            vec![role.clone()],
            "the foreign role is still there"
        );
        let attached = sdk
            .iam
            .list_attached_role_policies()
            .role_name(&role)
            .send()
            .await
            .unwrap();
        assert!(
            attached.attached_policies().is_empty(),
            "nothing attached to the foreign role"
        );
        sdk.iam.delete_role().role_name(&role).send().await.unwrap();
    }
}
