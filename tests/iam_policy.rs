//! docs/iam-policy.json against what the binary really calls, and against what its
//! grants would let a holder do.
//!
//! A lifecycle that takes every code path that writes (create, every kind of update and
//! drift repair, the move off AWS's basic execution policy, the legacy role's claim,
//! adoption, a > 50 MB upload through S3, down) records each AWS operation sent. Each
//! must be allowed by the policy through docs/iam-actions.tsv (operation → IAM action,
//! the ARN built from this run's account, stack and ids, and the request context: tags
//! sent, tags the resource carries, other condition keys), with the policy's
//! `Condition`s evaluated; the policy must allow no action that none of them needs.
//! Apart from any run: no statement may grant a tagging action on a resource that does
//! not already carry the stack's tag (a tag grant is a takeover grant).

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

/// What the run used that the table's ARNs name: account, region, stack, pool and API ids.
type Names = BTreeMap<&'static str, String>;

async fn exercise_every_path(h: &Harness) -> (BTreeSet<String>, Names) {
    let sdk = h.aws().await;
    let stack = h.stack.clone();
    let calls = std::cell::RefCell::new(BTreeSet::new());
    let ok = |args: &[&str]| {
        let r = h.ok(args);
        calls.borrow_mut().extend(r.calls.iter().cloned());
    };
    ok(&["up"]);
    let mut names = Names::new();
    let state: Value =
        serde_json::from_str(&std::fs::read_to_string(h.state_file()).unwrap()).unwrap();
    names.insert("account", state["account"].as_str().unwrap().to_string());
    names.insert("region", "us-east-1".into());
    names.insert("stack", stack.clone());
    names.insert("pool", sdk.pools().await.remove(0).0);
    names.insert("api", sdk.apis().await.remove(0).0);
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
    // The role as older versions made it: AWS's basic execution policy attached, no
    // logs policy, no boundary (moved over by `up`).
    sdk.iam
        .attach_role_policy()
        .role_name(&role)
        .policy_arn("arn:aws:iam::aws:policy/service-role/AWSLambdaBasicExecutionRole")
        .send()
        .await
        .unwrap();
    sdk.iam
        .delete_role_policy()
        .role_name(&role)
        .policy_name("provision-handler-logs")
        .send()
        .await
        .unwrap();
    sdk.iam
        .delete_role_permissions_boundary()
        .role_name(&role)
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
    // A handler package over Lambda's 50 MB direct upload goes through the state
    // bucket (PutObject under artifacts/, CreateFunction from S3; down deletes it).
    let mut big = std::fs::read(common::handler_binary()).unwrap();
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    big.extend((0..51 << 20).map(|_| {
        // xorshift: bytes deflate cannot shrink back under 50 MB
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x as u8
    }));
    let big_path = h.dir.path().join("handler-big");
    std::fs::write(&big_path, big).unwrap();
    std::fs::set_permissions(
        &big_path,
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    on_s3(&["up", "--handler", big_path.to_str().unwrap()]);
    on_s3(&["status", "--handler", big_path.to_str().unwrap()]);
    on_s3(&["outputs"]);
    on_s3(&["unlock"]);
    on_s3(&["list"]);
    on_s3(&["down"]);
    sdk.assert_empty().await;

    // A stack made before roles were per region: `up` claims its role (TagRole).
    ok(&["up"]);
    common::make_legacy(h, &sdk).await;
    ok(&["up"]);
    ok(&["down"]);
    let legacy = format!("{stack}-handler");
    if sdk.role_names().await.contains(&legacy) {
        sdk.iam
            .delete_role_policy()
            .role_name(&legacy)
            .policy_name("provision-handler-logs")
            .send()
            .await
            .ok();
        sdk.iam.delete_role().role_name(&legacy).send().await.ok();
    }
    sdk.assert_empty().await;

    // The HTTP front: a switch from REST (the permission moves, the REST API goes),
    // drift of every kind `up` repairs on it, an extra route, adoption without state,
    // the switch back and forth, `down` by id and by discovery.
    ok(&["up"]);
    ok(&["up", "--front", "http"]);
    ok(&["status", "--front", "http"]);
    let (http_id, _) = sdk.http_apis().await.remove(0);
    let routes = sdk
        .apigw2
        .get_routes()
        .api_id(&http_id)
        .send()
        .await
        .unwrap();
    let route = routes.items()[0].route_id().unwrap().to_string();
    sdk.apigw2
        .update_route()
        .api_id(&http_id)
        .route_id(&route)
        .authorization_type(aws_sdk_apigatewayv2::types::AuthorizationType::None)
        .send()
        .await
        .unwrap();
    let authorizers = sdk
        .apigw2
        .get_authorizers()
        .api_id(&http_id)
        .send()
        .await
        .unwrap();
    sdk.apigw2
        .update_authorizer()
        .api_id(&http_id)
        .authorizer_id(authorizers.items()[0].authorizer_id().unwrap())
        .jwt_configuration(
            aws_sdk_apigatewayv2::types::JwtConfiguration::builder()
                .issuer("https://example.com")
                .audience("someone")
                .build(),
        )
        .send()
        .await
        .unwrap();
    let integrations = sdk
        .apigw2
        .get_integrations()
        .api_id(&http_id)
        .send()
        .await
        .unwrap();
    sdk.apigw2
        .update_integration()
        .api_id(&http_id)
        .integration_id(integrations.items()[0].integration_id().unwrap())
        .payload_format_version("1.0")
        .send()
        .await
        .unwrap();
    sdk.apigw2
        .update_stage()
        .api_id(&http_id)
        .stage_name("$default")
        .auto_deploy(false)
        .send()
        .await
        .unwrap();
    sdk.apigw2
        .create_route()
        .api_id(&http_id)
        .route_key("GET /open")
        .send()
        .await
        .unwrap();
    let drift = h.run(&["-o", "json", "status", "--front", "http"]);
    assert_eq!(drift.code, 3, "{}", drift.describe());
    ok(&["up", "--front", "http"]);
    let after = h.run(&["-o", "json", "status", "--front", "http"]);
    assert_eq!(
        after.code,
        0,
        "up repaired the HTTP front:\n{}",
        after.describe()
    );
    calls.borrow_mut().extend(after.calls.iter().cloned());
    std::fs::remove_file(h.state_file()).unwrap();
    ok(&["up", "--front", "http"]);
    ok(&["up"]);
    ok(&["up", "--front", "http"]);
    ok(&["down"]);
    ok(&["up", "--front", "http"]);
    std::fs::remove_file(h.state_file()).unwrap();
    ok(&["down"]);
    sdk.assert_empty().await;
    (calls.into_inner(), names)
}

/// The request context of one call, as docs/iam-actions.tsv states it: condition keys
/// and their values (what is sent, and the tags the resource carries).
type Context = BTreeMap<String, Vec<String>>;

fn context(text: &str, names: &Names) -> Context {
    let mut ctx = Context::new();
    for fact in text.split(';').map(str::trim).filter(|f| !f.is_empty()) {
        let (key, values) = fact
            .split_once('=')
            .unwrap_or_else(|| panic!("bad context fact `{fact}` in docs/iam-actions.tsv"));
        ctx.insert(
            key.to_ascii_lowercase(),
            values
                .split(',')
                .map(|v| resolve(v.trim(), names))
                .collect(),
        );
    }
    ctx
}

fn resolve(template: &str, names: &Names) -> String {
    let mut out = template.to_string();
    for (k, v) in names {
        out = out.replace(&format!("{{{k}}}"), v);
    }
    assert!(!out.contains('{'), "unresolved placeholder in `{template}`");
    out
}

/// IAM's evaluation of one Condition block against a request context: every operator
/// and every key must hold. A key the request does not carry fails a plain operator,
/// passes `...IfExists` and `ForAllValues:...`, and is what `Null: true` asks for.
fn conditions_hold(condition: &Value, ctx: &Context) -> bool {
    let Some(ops) = condition.as_object() else {
        return true;
    };
    ops.iter().all(|(op, keys)| {
        keys.as_object().unwrap().iter().all(|(key, wanted)| {
            let wanted = strings(wanted);
            let have = ctx.get(&key.to_ascii_lowercase());
            let (set, base) = match op.split_once(':') {
                Some((set, base)) => (Some(set), base),
                None => (None, op.as_str()),
            };
            let (base, if_exists) = match base.strip_suffix("IfExists") {
                Some(b) => (b, true),
                None => (base, false),
            };
            let one = |v: &str| -> bool {
                match base {
                    "StringEquals" | "ArnEquals" => wanted.iter().any(|w| w == v),
                    "StringLike" | "ArnLike" => wanted.iter().any(|w| glob(w, v)),
                    "StringNotEquals" => wanted.iter().all(|w| w != v),
                    "StringNotLike" => wanted.iter().all(|w| !glob(w, v)),
                    other => panic!("condition operator {other} not modelled by this test"),
                }
            };
            if base == "Null" {
                return (have.is_none()) == (wanted == ["true"]);
            }
            match (set, have) {
                (Some("ForAllValues"), None) => true,
                (Some("ForAllValues"), Some(vs)) => vs.iter().all(|v| one(v)),
                (Some("ForAnyValue"), Some(vs)) => vs.iter().any(|v| one(v)),
                (Some(_), None) => false,
                (None, None) => if_exists,
                (None, Some(vs)) => vs.len() == 1 && one(&vs[0]),
                (Some(other), _) => panic!("set operator {other} not modelled"),
            }
        })
    })
}

fn allowed(statements: &[&Value], action: &str, arn: &str, ctx: &Context) -> bool {
    statements.iter().any(|s| {
        strings(&s["Action"]).iter().any(|a| glob(a, action))
            && strings(&s["Resource"]).iter().any(|r| glob(r, arn))
            && conditions_hold(&s["Condition"], ctx)
    })
}

#[tokio::test]
async fn the_policy_allows_exactly_what_the_binary_calls() {
    let mut h = Harness::new();
    h.stack = "m2m-policy".into(); // the policy is written for stacks named m2m-*
    let (calls, names) = exercise_every_path(&h).await;

    let root = common::repo_root();
    let policy: Value =
        serde_json::from_str(&std::fs::read_to_string(root.join("docs/iam-policy.json")).unwrap())
            .unwrap();
    let table = std::fs::read_to_string(root.join("docs/iam-actions.tsv")).unwrap();
    // operation -> (action, the ARN this run used, its request context)
    let mut rows: BTreeMap<String, Vec<(String, String, Context)>> = BTreeMap::new();
    for line in table.lines().skip(1).filter(|l| !l.trim().is_empty()) {
        let cols: Vec<&str> = line.split('\t').collect();
        assert_eq!(cols.len(), 4, "bad row in docs/iam-actions.tsv: {line}");
        let arn = if cols[2] == "none" || cols[2] == "*" {
            cols[2].to_string()
        } else {
            resolve(cols[2], &names)
        };
        rows.entry(cols[0].to_string()).or_default().push((
            cols[1].to_string(),
            arn,
            context(cols[3], &names),
        ));
    }
    let statements: Vec<&Value> = policy["Statement"].as_array().unwrap().iter().collect();
    for s in &statements {
        assert_eq!(s["Effect"], "Allow", "only Allow statements: {s}");
    }

    let mut needed = BTreeSet::new();
    let mut problems = Vec::new();
    for op in &calls {
        let Some(actions) = rows.get(op) else {
            problems.push(format!("{op} is called but not in docs/iam-actions.tsv"));
            continue;
        };
        for (action, arn, ctx) in actions {
            if action == "none" {
                continue;
            }
            needed.insert(action.clone());
            if !allowed(&statements, action, arn, ctx) {
                problems.push(format!(
                    "{op} needs {action} on {arn} with {ctx:?}, which the policy does not allow"
                ));
            }
            // A tag grant must not reach a resource that is not already a stack's: the
            // same call on an untagged resource, or on another team's, is denied.
            if is_tagging(action, std::slice::from_ref(arn)) {
                for foreign in [None, Some("team-x")] {
                    let mut ctx = ctx.clone();
                    match foreign {
                        None => ctx.remove("aws:resourcetag/provision:stack"),
                        Some(v) => {
                            ctx.insert("aws:resourcetag/provision:stack".into(), vec![v.into()])
                        }
                    };
                    if allowed(&statements, action, arn, &ctx) {
                        problems.push(format!(
                            "{op}: {action} on {arn} is allowed on a resource tagged {foreign:?}"
                        ));
                    }
                }
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
    for op in [
        "iam:TagRole",
        "iam:PutRolePolicy",
        "iam:PutRolePermissionsBoundary",
        "iam:DetachRolePolicy",
        "s3:PutObject",
        "s3:ListObjectsV2",
        "apigateway:CreateApi",
        "apigateway:UpdateRoute",
        "apigateway:UpdateAuthorizer",
        "apigateway:UpdateIntegration",
        "apigateway:UpdateStage",
        "apigateway:DeleteRoute",
        "apigateway:GetApis",
        "apigateway:DeleteApi",
    ] {
        assert!(calls.contains(op), "the run took the path that calls {op}");
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
    println!(
        "{} distinct AWS operations called; the policy grants {} distinct IAM actions, all needed",
        calls.len(),
        granted.len()
    );
}

/// The evaluator is IAM's where it matters here: a missing tag fails a plain operator
/// and passes IfExists; ForAllValues holds for a request without tags.
#[test]
fn conditions_evaluate_like_iam() {
    let names = Names::from([("stack", "m2m-a".to_string())]);
    let ctx = context(
        "aws:ResourceTag/provision:stack={stack}; aws:TagKeys=provision:stack",
        &names,
    );
    let like = serde_json::json!({"StringLike": {"aws:ResourceTag/provision:stack": "m2m-*"}});
    assert!(conditions_hold(&like, &ctx));
    assert!(!conditions_hold(&like, &Context::new()));
    let if_exists =
        serde_json::json!({"StringLikeIfExists": {"aws:ResourceTag/provision:stack": "m2m-*"}});
    assert!(conditions_hold(&if_exists, &Context::new()));
    let keys =
        serde_json::json!({"ForAllValues:StringEquals": {"aws:TagKeys": ["provision:stack"]}});
    assert!(conditions_hold(&keys, &ctx));
    assert!(conditions_hold(&keys, &Context::new()));
    let more = context("aws:TagKeys=provision:stack,owner", &names);
    assert!(!conditions_hold(&keys, &more));
    let arn =
        serde_json::json!({"ArnEquals": {"iam:PermissionsBoundary": "arn:aws:iam::aws:policy/x"}});
    assert!(!conditions_hold(&arn, &ctx));
}

/// The HTTP front's routes: the policy lets a route be created or changed only with the
/// JWT authorizer, never open (`NONE`) or with another authorizer. AWS documents
/// `apigateway:Request/RouteAuthorizationType` as a list of strings for CreateRoute and
/// UpdateRoute, hence the set operator.
#[test]
fn the_policy_lets_no_route_open() {
    let policy: Value = serde_json::from_str(
        &std::fs::read_to_string(common::repo_root().join("docs/iam-policy.json")).unwrap(),
    )
    .unwrap();
    let statements: Vec<&Value> = policy["Statement"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["Effect"] == "Allow")
        .collect();
    let names = Names::from([("stack", "m2m-a".to_string())]);
    for (action, arn) in [
        (
            "apigateway:POST",
            "arn:aws:apigateway:us-east-1::/apis/a1/routes",
        ),
        (
            "apigateway:PATCH",
            "arn:aws:apigateway:us-east-1::/apis/a1/routes/r1",
        ),
    ] {
        let with = |kind: &str| {
            context(
                &format!("aws:ResourceTag/provision:stack={{stack}}; apigateway:Request/RouteAuthorizationType={kind}"),
                &names,
            )
        };
        assert!(
            allowed(&statements, action, arn, &with("JWT")),
            "{action} JWT"
        );
        for kind in ["NONE", "AWS_IAM", "CUSTOM", "JWT,NONE"] {
            assert!(
                !allowed(&statements, action, arn, &with(kind)),
                "{action} {arn} with authorization {kind} is allowed"
            );
        }
    }
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

/// Tagging actions: tagging a resource `provision:stack=<stack>` makes every statement
/// scoped by `aws:ResourceTag/provision:stack` apply to it, so a grant to tag is a grant
/// to take over. Any service's `Tag*` action counts, and API Gateway's tags resource.
fn is_tagging(action: &str, resources: &[String]) -> bool {
    const KNOWN: &[&str] = &[
        "iam:TagRole",
        "iam:TagPolicy",
        "lambda:TagResource",
        "cognito-idp:TagResource",
        "secretsmanager:TagResource",
        "logs:TagResource",
        "logs:TagLogGroup",
        "s3:PutBucketTagging",
        "s3:PutObjectTagging",
    ];
    if KNOWN.iter().any(|known| glob(action, known)) {
        return true;
    }
    let verb = action.split_once(':').map_or(action, |(_, v)| v);
    if verb.starts_with("Tag") || verb.contains("Tagging") {
        return true;
    }
    // API Gateway authorizes tags (TagResource, and tags sent with a create) as POST or
    // PUT on `/tags/<url-encoded ARN>`.
    let tags_of_a_foreign_api = "arn:aws:apigateway:eu-west-1::/tags/arn%3Aaws%3Aapigateway%3Aeu-west-1%3A%3A%2Frestapis%2Fforeign1";
    ["apigateway:POST", "apigateway:PUT"]
        .iter()
        .any(|verb| glob(action, verb))
        && resources.iter().any(|r| glob(r, tags_of_a_foreign_api))
}

/// Why `statement` lets its tagging action reach a resource that is not already a
/// stack's, if it does: only a condition requiring the resource's own
/// `provision:stack` tag (present, and matching a pattern narrower than "anything")
/// keeps a foreign resource out, whatever the ARN pattern (names can be taken by anyone).
fn tag_grant_problem(statement: &Value) -> Option<String> {
    let sid = statement["Sid"].as_str().unwrap_or("(no Sid)");
    if statement["Effect"] != "Allow" {
        return None;
    }
    if statement.get("NotAction").is_some() || statement.get("NotResource").is_some() {
        return Some(format!(
            "{sid}: NotAction/NotResource in an Allow may grant tagging anywhere"
        ));
    }
    let resources = strings(&statement["Resource"]);
    let tagging: Vec<String> = strings(&statement["Action"])
        .into_iter()
        .filter(|a| is_tagging(a, &resources))
        .collect();
    if tagging.is_empty() {
        return None;
    }
    let limited = statement["Condition"].as_object().is_some_and(|ops| {
        ops.iter().any(|(op, keys)| {
            // Operators that hold only when the key is present and matches.
            matches!(op.as_str(), "StringEquals" | "StringLike")
                && keys.as_object().is_some_and(|keys| {
                    keys.iter().any(|(key, values)| {
                        key.eq_ignore_ascii_case("aws:ResourceTag/provision:stack")
                            && !strings(values).is_empty()
                            && strings(values).iter().all(|v| !v.is_empty() && v != "*")
                    })
                })
        })
    });
    (!limited).then(|| {
        format!(
            "{sid} allows {} on {resources:?} without requiring the resource's own aws:ResourceTag/provision:stack: a foreign resource could be tagged into a stack",
            tagging.join(", ")
        )
    })
}

fn tag_grant_problems(policy: &Value) -> Vec<String> {
    policy["Statement"]
        .as_array()
        .expect("Statement is a list")
        .iter()
        .filter_map(tag_grant_problem)
        .collect()
}

fn policy_file() -> Value {
    let path = common::repo_root().join("docs/iam-policy.json");
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

#[test]
fn the_policy_tags_only_what_is_already_a_stacks() {
    let policy = policy_file();
    let problems = tag_grant_problems(&policy);
    assert!(problems.is_empty(), "{}", problems.join("\n"));
    // It does grant tagging (tags sent with creates, the legacy role's claim): the
    // check above looked at something.
    let tag_statements = policy["Statement"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| {
            let resources = strings(&s["Resource"]);
            strings(&s["Action"])
                .iter()
                .any(|a| is_tagging(a, &resources))
        })
        .count();
    assert!(tag_statements >= 6, "{tag_statements} tag statements");
}

/// The check bites: each grant the issue found (or one like it), planted in a copy of
/// the real policy, is reported.
#[test]
fn the_tag_check_catches_planted_grants() {
    let planted = [
        // The issue's Cognito grant: the new tag checked, not the resource's own.
        r#"{"Sid":"Bad","Effect":"Allow","Action":"cognito-idp:TagResource","Resource":"arn:aws:cognito-idp:*:*:userpool/*","Condition":{"StringLike":{"aws:RequestTag/provision:stack":"m2m-*"},"ForAllValues:StringEquals":{"aws:TagKeys":["provision:stack"]}}}"#,
        // The issue's API Gateway grant.
        r#"{"Sid":"Bad","Effect":"Allow","Action":"apigateway:POST","Resource":["arn:aws:apigateway:*::/restapis","arn:aws:apigateway:*::/tags/*"],"Condition":{"StringLike":{"aws:RequestTag/provision:stack":"m2m-*"}}}"#,
        // TagResource through PUT, on every API Gateway resource.
        r#"{"Sid":"Bad","Effect":"Allow","Action":"apigateway:PUT","Resource":"arn:aws:apigateway:*::*"}"#,
        // A name pattern is not ownership.
        r#"{"Sid":"Bad","Effect":"Allow","Action":["iam:TagRole"],"Resource":"arn:aws:iam::*:role/m2m-*-handler-*"}"#,
        r#"{"Sid":"Bad","Effect":"Allow","Action":"logs:TagLogGroup","Resource":"arn:aws:logs:*:*:log-group:/aws/lambda/m2m-*-handler"}"#,
        // IfExists lets an untagged resource through; "*" any tagged one; Null is no limit.
        r#"{"Sid":"Bad","Effect":"Allow","Action":"lambda:TagResource","Resource":"*","Condition":{"StringLikeIfExists":{"aws:ResourceTag/provision:stack":"m2m-*"}}}"#,
        r#"{"Sid":"Bad","Effect":"Allow","Action":"secretsmanager:TagResource","Resource":"*","Condition":{"StringLike":{"aws:ResourceTag/provision:stack":"*"}}}"#,
        r#"{"Sid":"Bad","Effect":"Allow","Action":"s3:PutBucketTagging","Resource":"*","Condition":{"Null":{"aws:ResourceTag/provision:stack":"false"}}}"#,
        // Wildcards that include a tag action.
        r#"{"Sid":"Bad","Effect":"Allow","Action":"logs:*","Resource":"arn:aws:logs:*:*:log-group:/aws/lambda/m2m-*"}"#,
        r#"{"Sid":"Bad","Effect":"Allow","Action":"*","Resource":"*"}"#,
        r#"{"Sid":"Bad","Effect":"Allow","NotAction":"iam:*","Resource":"*"}"#,
        // A service this check has no list for.
        r#"{"Sid":"Bad","Effect":"Allow","Action":"kms:TagResource","Resource":"*"}"#,
    ];
    for bad in planted {
        let mut policy = policy_file();
        policy["Statement"]
            .as_array_mut()
            .unwrap()
            .push(serde_json::from_str(bad).unwrap());
        let problems = tag_grant_problems(&policy);
        assert_eq!(problems.len(), 1, "planted {bad}: {problems:?}");
        assert!(problems[0].starts_with("Bad"), "{problems:?}");
    }
    // And what the policy does is accepted when it stands alone.
    let good = r#"{"Sid":"Good","Effect":"Allow","Action":"cognito-idp:TagResource","Resource":"arn:aws:cognito-idp:*:*:userpool/*","Condition":{"StringLike":{"aws:ResourceTag/provision:stack":"m2m-*","aws:RequestTag/provision:stack":"m2m-*"}}}"#;
    assert_eq!(
        tag_grant_problem(&serde_json::from_str(good).unwrap()),
        None
    );
}
