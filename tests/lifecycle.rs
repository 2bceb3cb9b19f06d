//! The whole life of a stack on the emulator, checked with our own SDK calls:
//! up → every resource exists once with the right settings → token → invoke → 401
//! without a token → status → down → nothing left.

mod common;

use common::{actions, Harness};

#[tokio::test]
async fn up_token_invoke_status_down() {
    let h = Harness::new();
    let sdk = h.aws().await;
    let stack = h.stack.clone();

    let up = h.json(&["up"]);
    assert_eq!(up["stack"], stack.as_str());
    assert_eq!(up["region"], "us-east-1");
    let acts = actions(&up);
    assert_eq!(acts.len(), 13, "{acts:?}");
    assert!(acts.iter().all(|(_, _, a)| a == "created"), "{acts:?}");
    let calls = up["api_calls"].as_u64().unwrap();
    assert!(
        calls >= 20,
        "a fresh up makes at least 20 requests, counted {calls}"
    );
    let outputs = &up["outputs"];
    for key in [
        "api_url",
        "token_url",
        "client_id",
        "scope",
        "user_pool_id",
        "region",
        "stack",
    ] {
        assert!(
            outputs[key].as_str().is_some_and(|v| !v.is_empty()),
            "output {key}: {outputs}"
        );
    }
    assert_eq!(outputs["scope"], "users/read");
    assert_eq!(outputs["token_url"], format!("{}/oauth2/token", h.url));

    // Independent checks: each resource exists exactly once, with its settings.
    let role_name = format!("{stack}-handler-us-east-1");
    assert_eq!(sdk.role_names().await, vec![role_name.clone()]);
    let role = sdk
        .iam
        .get_role()
        .role_name(&role_name)
        .send()
        .await
        .unwrap();
    let role = role.role().unwrap();
    assert!(role
        .tags()
        .iter()
        .any(|t| t.key() == "provision:stack" && t.value() == stack));
    let attached = sdk
        .iam
        .list_attached_role_policies()
        .role_name(&role_name)
        .send()
        .await
        .unwrap();
    let attached: Vec<_> = attached
        .attached_policies()
        .iter()
        .filter_map(|p| p.policy_arn())
        .collect();
    assert!(attached.is_empty(), "no managed policy: {attached:?}");
    assert_eq!(
        role.permissions_boundary()
            .and_then(|b| b.permissions_boundary_arn()),
        Some("arn:aws:iam::aws:policy/service-role/AWSLambdaBasicExecutionRole"),
        "basic execution is the role's ceiling"
    );
    let inline = sdk
        .iam
        .list_role_policies()
        .role_name(&role_name)
        .send()
        .await
        .unwrap();
    assert_eq!(inline.policy_names(), ["provision-handler-logs"]);

    assert_eq!(sdk.function_names().await, vec![format!("{stack}-handler")]);
    let f = sdk
        .lambda
        .get_function()
        .function_name(format!("{stack}-handler"))
        .send()
        .await
        .unwrap();
    let c = f.configuration().unwrap();
    assert_eq!(c.runtime().unwrap().as_str(), "provided.al2023");
    assert_eq!(c.handler(), Some("bootstrap"));
    assert_eq!(c.role(), Some(role.arn()));
    assert_eq!(f.tags().unwrap().get("provision:stack"), Some(&stack));

    let pools = sdk.pools().await;
    assert_eq!(pools.len(), 1, "{pools:?}");
    let (pool_id, pool_name) = &pools[0];
    assert_eq!(pool_name, &format!("{stack}-pool"));
    assert_eq!(outputs["user_pool_id"], pool_id.as_str());
    let pool = sdk
        .cognito
        .describe_user_pool()
        .user_pool_id(pool_id)
        .send()
        .await
        .unwrap();
    let pool = pool.user_pool().unwrap();
    assert!(pool
        .admin_create_user_config()
        .unwrap()
        .allow_admin_create_user_only());
    assert_eq!(
        pool.user_pool_tags().unwrap().get("provision:stack"),
        Some(&stack)
    );
    let domain = pool.domain().expect("the pool has a domain");
    assert!(domain.starts_with(&format!("{stack}-")), "{domain}");
    let rs = sdk
        .cognito
        .describe_resource_server()
        .user_pool_id(pool_id)
        .identifier("users")
        .send()
        .await
        .unwrap();
    let scopes: Vec<_> = rs
        .resource_server()
        .unwrap()
        .scopes()
        .iter()
        .map(|s| s.scope_name())
        .collect();
    assert_eq!(scopes, ["read"]);
    let clients = sdk.clients(pool_id).await;
    assert_eq!(clients.len(), 1, "{clients:?}");
    assert_eq!(clients[0].1, format!("{stack}-client"));
    assert_eq!(outputs["client_id"], clients[0].0.as_str());
    let client = sdk
        .cognito
        .describe_user_pool_client()
        .user_pool_id(pool_id)
        .client_id(&clients[0].0)
        .send()
        .await
        .unwrap();
    let client = client.user_pool_client().unwrap();
    assert!(client.client_secret().is_some_and(|s| !s.is_empty()));
    let flows: Vec<_> = client
        .allowed_o_auth_flows()
        .iter()
        .map(|f| f.as_str())
        .collect();
    assert_eq!(flows, ["client_credentials"]);
    assert_eq!(client.allowed_o_auth_scopes(), ["users/read"]);

    let apis = sdk.apis().await;
    assert_eq!(apis.len(), 1, "{apis:?}");
    let (api_id, api_name) = &apis[0];
    assert_eq!(api_name, &format!("{stack}-api"));
    assert_eq!(
        outputs["api_url"],
        format!("{}/restapis/{api_id}/prod/_user_request_/", h.url)
    );
    let authorizers = sdk
        .apigw
        .get_authorizers()
        .rest_api_id(api_id)
        .send()
        .await
        .unwrap();
    assert_eq!(authorizers.items().len(), 1);
    let a = &authorizers.items()[0];
    assert_eq!(a.name(), Some(format!("{stack}-authorizer").as_str()));
    assert_eq!(a.r#type().unwrap().as_str(), "COGNITO_USER_POOLS");
    assert_eq!(a.provider_arns(), [pool.arn().unwrap()]);
    let resources = sdk
        .apigw
        .get_resources()
        .rest_api_id(api_id)
        .send()
        .await
        .unwrap();
    let mut paths: Vec<_> = resources.items().iter().filter_map(|r| r.path()).collect();
    paths.sort();
    assert_eq!(paths, ["/", "/{proxy+}"]);
    for r in resources.items() {
        let m = sdk
            .apigw
            .get_method()
            .rest_api_id(api_id)
            .resource_id(r.id().unwrap())
            .http_method("ANY")
            .send()
            .await
            .unwrap();
        assert_eq!(m.authorization_type(), Some("COGNITO_USER_POOLS"));
        assert_eq!(m.authorizer_id(), a.id());
        assert_eq!(m.authorization_scopes(), ["users/read"]);
        let i = m.method_integration().unwrap();
        assert_eq!(i.r#type().unwrap().as_str(), "AWS_PROXY");
        assert!(
            i.uri().unwrap().contains(c.function_arn().unwrap()),
            "{:?}",
            i.uri()
        );
    }
    let policy = sdk
        .lambda
        .get_policy()
        .function_name(format!("{stack}-handler"))
        .send()
        .await
        .unwrap();
    let policy: serde_json::Value = serde_json::from_str(policy.policy().unwrap()).unwrap();
    let statements = policy["Statement"].as_array().unwrap();
    assert_eq!(statements.len(), 1, "{policy}");
    let source = statements[0]
        .pointer("/Condition/ArnLike/AWS:SourceArn")
        .unwrap()
        .as_str()
        .unwrap();
    assert!(
        source.contains(&format!(":{api_id}/")),
        "permission scoped to this API: {source}"
    );
    let stage = sdk
        .apigw
        .get_stage()
        .rest_api_id(api_id)
        .stage_name("prod")
        .send()
        .await
        .unwrap();
    assert!(stage.deployment_id().is_some());

    // The state file: mode 0600, no secret.
    let state_text = std::fs::read_to_string(h.state_file()).unwrap();
    let secret = client.client_secret().unwrap();
    assert!(
        !state_text.contains(secret),
        "the client secret leaked into the state file"
    );
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(h.state_file())
        .unwrap()
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(mode, 0o600);

    // outputs: from the state file, no AWS call.
    let out = h.json(&["outputs"]);
    assert_eq!(&out, outputs);
    let proxy = common::proxy::Proxy::start(&h.url);
    let observed = h.run_observed(&proxy, &["outputs"]);
    assert_eq!(observed.code, 0, "{}", observed.describe());
    assert!(
        observed.calls.is_empty(),
        "outputs must not call AWS: {:?}",
        observed.calls
    );

    // token: a real JWT from the emulator's token endpoint.
    let token = h.json(&["token"]);
    let access = token["access_token"].as_str().unwrap();
    assert_eq!(access.split('.').count(), 3, "a JWT: {access}");
    assert_eq!(token["scope"], "users/read");
    let human_token = h.ok(&["token"]);
    assert_eq!(human_token.stdout.trim().split('.').count(), 3);
    assert!(!human_token.stdout.contains(secret) && !human_token.stderr.contains(secret));

    // invoke: 200 with the greeting and the caller's claims.
    let call = h.json(&["invoke", "--path", "/orders/7", "--method", "POST"]);
    assert_eq!(call["status"], 200, "{call}");
    assert_eq!(call["body"]["message"], "Hello Authenticated Client!");
    assert_eq!(call["body"]["client_id"], clients[0].0.as_str());
    assert_eq!(call["body"]["scope"], "users/read");
    let root = h.json(&["invoke"]);
    assert_eq!(root["status"], 200, "{root}");

    // Without a token the authorizer refuses: 401, exit 1.
    let refused = h.run(&["-o", "json", "invoke", "--no-token"]);
    assert_eq!(refused.code, 1, "{}", refused.describe());
    assert_eq!(refused.json()["status"], 401);
    // A raw call with a forged token: 401 too.
    let url = outputs["api_url"].as_str().unwrap();
    let forged = reqwest::Client::new()
        .get(url)
        .header(
            "Authorization",
            "eyJhbGciOiJub25lIn0.eyJzY29wZSI6InVzZXJzL3JlYWQifQ.",
        )
        .send()
        .await
        .unwrap();
    assert_eq!(forged.status().as_u16(), 401);

    // status: all ok, exit 0.
    let status = h.json(&["status"]);
    assert_eq!(status["in_sync"], true, "{status}");
    assert_eq!(status["resources"].as_array().unwrap().len(), 13);

    // down: everything gone, state file last. With the state file's ids nothing is
    // searched for, but each delete follows one read of the resource's tags (the owner
    // check: a stale state file may name what is someone else's now): the account
    // check, one listing of the stack's secrets (recorded or not), and a read and a
    // delete for the API, the pool (its domain is the pool's: no read of its own), the
    // function, the log group, and the role (and its inline logs policy).
    let run = h.run_observed(&proxy, &["-o", "json", "down"]);
    assert_eq!(run.code, 0, "{}", run.describe());
    let mut calls = run.calls.clone();
    calls.sort();
    let mut want = vec![
        "sts:GetCallerIdentity",
        "secretsmanager:ListSecrets",
        "apigateway:GetRestApi",
        "apigateway:DeleteRestApi",
        "cognito-idp:DescribeUserPool",
        "cognito-idp:DeleteUserPoolDomain",
        "cognito-idp:DeleteUserPool",
        "lambda:GetFunction",
        "lambda:DeleteFunction",
        "logs:ListTagsForResource",
        "logs:DeleteLogGroup",
        "iam:GetRole",
        "iam:DeleteRolePolicy",
        "iam:DeleteRole",
    ];
    want.sort();
    assert_eq!(calls, want, "down by the recorded ids, each checked once");
    let down = run.json();
    let acts = actions(&down);
    assert!(acts.iter().all(|(_, _, a)| a == "deleted"), "{acts:?}");
    sdk.assert_empty().await;
    assert!(!h.state_file().exists(), "state file left after down");

    // A second down: nothing to do, still success.
    let again = h.json(&["down"]);
    assert!(
        actions(&again).iter().all(|(_, _, a)| a == "absent"),
        "{again}"
    );
}

/// The sequential baseline (`--max-concurrency 1`) builds the same stack, and human
/// output shows a line per resource and a summary.
#[tokio::test]
async fn without_concurrency_the_same_stack_with_plain_progress_lines() {
    let h = Harness::new();
    let up = h.ok(&["--max-concurrency", "1", "up"]);
    let created: Vec<&str> = up
        .stderr
        .lines()
        .filter(|l| l.trim_start().starts_with("created"))
        .collect();
    assert_eq!(created.len(), 13, "a line per resource:\n{}", up.stderr);
    assert!(
        up.stdout.contains("13 created") && up.stdout.contains("AWS calls"),
        "summary:\n{}",
        up.stdout
    );
    assert!(up.stdout.contains("api_url"), "outputs:\n{}", up.stdout);
    h.assert_one_stack().await;
    let quiet = h.ok(&["-q", "--max-concurrency", "1", "up"]);
    assert!(
        quiet.stderr.trim().is_empty(),
        "-q prints no progress: {}",
        quiet.stderr
    );
    h.ok(&["--max-concurrency", "1", "down"]);
    h.aws().await.assert_empty().await;
    let zero = h.run(&["--max-concurrency", "0", "up"]);
    assert_eq!(zero.code, 2, "{}", zero.describe());
}

/// `outputs` and `graph` need no AWS call with a local state directory (checked above);
/// with state on S3 they read it: the README says two requests each, counted here at a
/// proxy, and both reads.
#[tokio::test]
async fn outputs_and_graph_with_state_on_s3_send_two_reads() {
    let mut h = Harness::new();
    h.state_location = Some("s3://provision-lifecycle-state/ci".into());
    let r = h.run(&["init-state", "s3://provision-lifecycle-state/ci"]);
    assert_eq!(r.code, 0, "{}", r.describe());
    h.ok(&["up"]);
    let proxy = common::proxy::Proxy::start(&h.url);
    for command in ["outputs", "graph"] {
        let run = h.run_observed(&proxy, &[command]);
        assert_eq!(run.code, 0, "{command}: {}", run.describe());
        assert_eq!(run.calls.len(), 2, "{command}: {:?}", run.calls);
        assert!(
            run.writes().is_empty(),
            "{command} wrote: {:?}",
            run.writes()
        );
    }
    h.ok(&["down"]);
}
