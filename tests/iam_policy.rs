//! docs/iam-policy.json against what the binary really calls: a lifecycle that takes
//! every code path that writes (create, every kind of update and drift repair, adoption,
//! down) records each AWS operation sent; each must be allowed by the policy (through
//! docs/iam-actions.tsv, the operation → IAM action table), and the policy must allow
//! no action that none of them needs.

mod common;

use std::collections::{BTreeMap, BTreeSet};

use common::Harness;
use serde_json::Value;

/// IAM's wildcard match: `*` any run of characters, `?` one.
fn glob(pattern: &str, text: &str) -> bool {
    fn go(p: &[u8], t: &[u8]) -> bool {
        match (p.first(), t.first()) {
            (None, None) => true,
            (Some(b'*'), _) => go(&p[1..], t) || (!t.is_empty() && go(p, &t[1..])),
            (Some(b'?'), Some(_)) => go(&p[1..], &t[1..]),
            (Some(a), Some(b)) if a.eq_ignore_ascii_case(b) => go(&p[1..], &t[1..]),
            _ => false,
        }
    }
    go(pattern.as_bytes(), text.as_bytes())
}

fn strings(v: &Value) -> Vec<String> {
    match v {
        Value::String(s) => vec![s.clone()],
        Value::Array(a) => a
            .iter()
            .filter_map(|x| x.as_str().map(str::to_string))
            .collect(),
        _ => vec![],
    }
}

async fn exercise_every_path(h: &Harness) -> BTreeSet<String> {
    let sdk = h.aws().await;
    let stack = h.stack.clone();
    let calls = std::cell::RefCell::new(BTreeSet::new());
    let ok = |args: &[&str]| {
        let r = h.ok(args);
        calls.borrow_mut().extend(r.calls.iter().cloned());
    };
    ok(&["up"]);
    ok(&["status"]);
    ok(&["token"]);
    ok(&["invoke"]);
    ok(&["logs", "--since", "5m"]);
    ok(&["up", "--log-retention", "0"]);
    ok(&["up"]);
    ok(&["up", "--memory", "256"]);
    let mut binary = std::fs::read(common::handler_binary()).unwrap();
    binary.extend_from_slice(b"policy-test");
    let v2 = h.dir.path().join("handler-v2");
    std::fs::write(&v2, binary).unwrap();
    std::fs::set_permissions(&v2, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    ok(&["up", "--memory", "256", "--handler", v2.to_str().unwrap()]);
    ok(&["up", "--scope", "users/read", "--scope", "users/write"]);

    // Drift behind the tool's back, of every kind `up` repairs.
    let role = format!("{stack}-handler-us-east-1");
    sdk.iam
        .update_assume_role_policy()
        .role_name(&role)
        .policy_document(r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"Service":"ec2.amazonaws.com"},"Action":"sts:AssumeRole"}]}"#)
        .send()
        .await
        .unwrap();
    sdk.iam
        .detach_role_policy()
        .role_name(&role)
        .policy_arn("arn:aws:iam::aws:policy/service-role/AWSLambdaBasicExecutionRole")
        .send()
        .await
        .unwrap();
    let (pool_id, _) = sdk.pools().await.remove(0);
    sdk.cognito
        .update_user_pool()
        .user_pool_id(&pool_id)
        .admin_create_user_config(
            aws_sdk_cognitoidentityprovider::types::AdminCreateUserConfigType::builder()
                .allow_admin_create_user_only(false)
                .build(),
        )
        .send()
        .await
        .unwrap();
    let (client_id, _) = sdk.clients(&pool_id).await.remove(0);
    sdk.cognito
        .delete_user_pool_client()
        .user_pool_id(&pool_id)
        .client_id(&client_id)
        .send()
        .await
        .unwrap();
    sdk.cognito
        .create_user_pool_client()
        .user_pool_id(&pool_id)
        .client_name(format!("{stack}-client"))
        .generate_secret(false)
        .send()
        .await
        .unwrap();
    let (api_id, _) = sdk.apis().await.remove(0);
    let auth = sdk
        .apigw
        .get_authorizers()
        .rest_api_id(&api_id)
        .send()
        .await
        .unwrap();
    sdk.apigw
        .update_authorizer()
        .rest_api_id(&api_id)
        .authorizer_id(auth.items()[0].id().unwrap())
        .patch_operations(
            aws_sdk_apigateway::types::PatchOperation::builder()
                .op(aws_sdk_apigateway::types::Op::Replace)
                .path("/identitySource")
                .value("method.request.header.X-Token")
                .build(),
        )
        .send()
        .await
        .unwrap();
    // Privileges beyond what provision grants: `up` takes them away.
    sdk.iam
        .put_role_policy()
        .role_name(&role)
        .policy_name("extra")
        .policy_document(r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"*","Resource":"*"}]}"#)
        .send()
        .await
        .unwrap();
    sdk.lambda
        .add_permission()
        .function_name(format!("{stack}-handler"))
        .statement_id("public")
        .action("lambda:InvokeFunction")
        .principal("*")
        .send()
        .await
        .unwrap();
    let resources = sdk
        .apigw
        .get_resources()
        .rest_api_id(&api_id)
        .send()
        .await
        .unwrap();
    let root = resources
        .items()
        .iter()
        .find(|r| r.path() == Some("/"))
        .and_then(|r| r.id())
        .unwrap()
        .to_string();
    sdk.apigw
        .put_method()
        .rest_api_id(&api_id)
        .resource_id(&root)
        .http_method("GET")
        .authorization_type("NONE")
        .send()
        .await
        .unwrap();
    let drift = h.run(&["-o", "json", "status"]);
    assert_eq!(drift.code, 3, "{}", drift.describe());
    ok(&["up", "--scope", "users/read", "--scope", "users/write"]);
    let after = h.run(&[
        "-o",
        "json",
        "status",
        "--scope",
        "users/read",
        "--scope",
        "users/write",
    ]);
    assert_eq!(
        after.code,
        0,
        "up repaired every drift:\n{}",
        after.describe()
    );
    calls.borrow_mut().extend(after.calls.iter().cloned());

    // A client whose credentials are published to Secrets Manager: created, its
    // readers and scopes changed, read by `credentials`, then dropped from the config.
    let config = h.dir.path().join("provision.toml");
    let with_secret = |scopes: &str, reader: &str| {
        format!(
            "scopes = [\"users/read\", \"users/write\"]\n[methods]\nGET = [\"users/read\"]\nANY = [\"users/write\"]\n[[client]]\nname = \"admin\"\nscopes = [{scopes}]\nsecret = true\nreaders = [\"arn:aws:iam::000000000000:role/{reader}\"]\n"
        )
    };
    std::fs::write(&config, with_secret("\"users/read\"", "one")).unwrap();
    ok(&["up"]);
    std::fs::write(
        &config,
        with_secret("\"users/read\", \"users/write\"", "two"),
    )
    .unwrap();
    ok(&["up"]);
    ok(&["status"]);
    ok(&["credentials", "--client", "admin"]);
    // Rotation: the emulator lacks its three operations, the test proxy emulates them.
    let proxy = common::proxy::Proxy::start(&h.url);
    for args in [
        &["rotate", "--client", "admin"][..],
        &["rotate", "--client", "admin", "--finish"],
    ] {
        let r = h.run_via(&proxy, args);
        assert_eq!(r.code, 0, "{}", r.describe());
        calls.borrow_mut().extend(r.calls.iter().cloned());
    }
    std::fs::remove_file(&config).unwrap();
    ok(&["up", "--scope", "users/read", "--scope", "users/write"]);

    // No state file: adoption, then down by discovery.
    std::fs::remove_file(h.state_file()).unwrap();
    ok(&["up", "--scope", "users/read", "--scope", "users/write"]);
    ok(&["down"]);
    sdk.assert_empty().await;

    // Fleets: list (state and tags), prune.
    ok(&["up"]);
    ok(&["list"]);
    ok(&["prune", "--match", "m2m-*", "--dry-run"]);
    ok(&["prune", "--match", "m2m-*"]);
    sdk.assert_empty().await;

    // State on S3 (the bucket made by an administrator, as `init-state` would).
    let s3 = common::s3_client(&h.url);
    s3.create_bucket()
        .bucket("m2m-provision-state")
        .send()
        .await
        .unwrap();
    let on_s3 = |args: &[&str]| {
        let mut all = vec!["--state-dir", "s3://m2m-provision-state/ci"];
        all.extend_from_slice(args);
        ok(&all);
    };
    on_s3(&["up"]);
    on_s3(&["status"]);
    on_s3(&["outputs"]);
    on_s3(&["unlock"]);
    on_s3(&["list"]);
    on_s3(&["down"]);
    sdk.assert_empty().await;
    calls.into_inner()
}

#[tokio::test]
async fn the_policy_allows_exactly_what_the_binary_calls() {
    let mut h = Harness::new();
    h.stack = "m2m-policy".into(); // the policy is written for stacks named m2m-*
    let calls = exercise_every_path(&h).await;

    let root = common::repo_root();
    let policy: Value =
        serde_json::from_str(&std::fs::read_to_string(root.join("docs/iam-policy.json")).unwrap())
            .unwrap();
    let table = std::fs::read_to_string(root.join("docs/iam-actions.tsv")).unwrap();
    let mut rows: BTreeMap<String, Vec<(String, String)>> = BTreeMap::new();
    for line in table.lines().skip(1).filter(|l| !l.trim().is_empty()) {
        let cols: Vec<&str> = line.split('\t').collect();
        assert_eq!(cols.len(), 3, "bad row in docs/iam-actions.tsv: {line}");
        rows.entry(cols[0].to_string())
            .or_default()
            .push((cols[1].to_string(), cols[2].to_string()));
    }
    let statements: Vec<&Value> = policy["Statement"].as_array().unwrap().iter().collect();
    for s in &statements {
        assert_eq!(s["Effect"], "Allow", "only Allow statements: {s}");
    }
    let allows = |action: &str, arn: &str| {
        statements.iter().any(|s| {
            strings(&s["Action"]).iter().any(|a| glob(a, action))
                && strings(&s["Resource"]).iter().any(|r| glob(r, arn))
        })
    };

    let mut needed = BTreeSet::new();
    let mut problems = Vec::new();
    for op in &calls {
        let Some(actions) = rows.get(op) else {
            problems.push(format!("{op} is called but not in docs/iam-actions.tsv"));
            continue;
        };
        for (action, arn) in actions {
            if action == "none" {
                continue;
            }
            needed.insert(action.clone());
            if !allows(action, arn) {
                problems.push(format!(
                    "{op} needs {action} on {arn}, which the policy does not allow"
                ));
            }
        }
    }
    let granted: BTreeSet<String> = statements
        .iter()
        .flat_map(|s| strings(&s["Action"]))
        .collect();
    for action in &granted {
        assert!(!action.contains('*'), "no wildcard actions: {action}");
        if !needed.contains(action) {
            problems.push(format!(
                "the policy allows {action}, which no operation the tool called needs"
            ));
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
    println!(
        "{} distinct AWS operations called; the policy grants {} distinct IAM actions, all needed",
        calls.len(),
        granted.len()
    );
}

#[test]
fn glob_matches_like_iam() {
    assert!(glob(
        "arn:aws:iam::*:role/m2m-*-handler",
        "arn:aws:iam::123:role/m2m-api-handler"
    ));
    assert!(!glob(
        "arn:aws:iam::*:role/m2m-*-handler",
        "arn:aws:iam::123:role/other-handler"
    ));
    assert!(glob("apigateway:GET", "apigateway:GET"));
    assert!(glob("*", "anything"));
    assert!(!glob("iam:Get?", "iam:GetRole"));
}
