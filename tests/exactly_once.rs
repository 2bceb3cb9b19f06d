//! Exactly once: a create whose answer is lost never makes a second resource; the same
//! stack name in two regions is two stacks; privileges granted beside provision's own
//! are drift that `up` removes.

mod common;

use std::collections::BTreeSet;

use serde_json::{json, Value};

use common::proxy::{operation, Lose, Proxy};
use common::{Harness, Sdk};

/// Every create of `up`, as the proxy names operations.
const CREATES: &[&str] = &[
    "CreateRole",
    "CreateLogGroup",
    "PutRetentionPolicy",
    "PutRolePolicy",
    "CreateFunction",
    "CreateUserPool",
    "CreateUserPoolDomain",
    "CreateResourceServer",
    "CreateUserPoolClient",
    "CreateRestApi",
    "CreateAuthorizer",
    "CreateResource",
    "PutMethod",
    "PutIntegration",
    "CreateDeployment",
    "AddPermission",
];

/// Every delete of `down` (the function's permission goes with the function).
const DELETES: &[&str] = &[
    "DeleteLogGroup",
    "DeleteRestApi",
    "DeleteUserPool",
    "DeleteUserPoolDomain",
    "DeleteFunction",
    "DeleteRole",
    "DeleteRolePolicy",
];

/// How many requests of `op` a run sent (`calls` entries are `service:Operation`).
fn sent(calls: &[String], op: &str) -> usize {
    calls
        .iter()
        .filter(|c| c.split(':').nth(1) == Some(op))
        .count()
}

fn missing_from(wanted: &[&str], got: &[String]) -> Vec<String> {
    wanted
        .iter()
        .filter(|w| !got.iter().any(|g| g == *w))
        .map(|w| w.to_string())
        .collect()
}

#[test]
fn operation_names_every_request_provision_sends() {
    let json = |target: &str| format!("POST / HTTP/1.1\r\nHost: x\r\nX-Amz-Target: {target}");
    assert_eq!(
        operation(
            &json("AWSCognitoIdentityProviderService.CreateUserPool"),
            b"{}"
        ),
        "CreateUserPool"
    );
    let form = "POST / HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded";
    assert_eq!(
        operation(form, b"Action=CreateRole&Version=2010-05-08&RoleName=r"),
        "CreateRole"
    );
    assert_eq!(
        operation(form, b"Version=2011-06-15&Action=GetCallerIdentity"),
        "GetCallerIdentity"
    );
    let rest = |method: &str, path: &str| {
        operation(
            &format!("{method} {path} HTTP/1.1\r\nHost: x"),
            b"{\"a\":1}",
        )
    };
    for (method, path, op) in [
        ("POST", "/2015-03-31/functions", "CreateFunction"),
        (
            "POST",
            "/2015-03-31/functions/s-handler/policy",
            "AddPermission",
        ),
        (
            "DELETE",
            "/2015-03-31/functions/s-handler/policy/provision-apigateway-invoke",
            "RemovePermission",
        ),
        (
            "DELETE",
            "/2015-03-31/functions/s-handler",
            "DeleteFunction",
        ),
        ("GET", "/2015-03-31/functions/s-handler", "GetFunction"),
        (
            "GET",
            "/2015-03-31/functions/s-handler?Qualifier=1",
            "GetFunction",
        ),
        ("POST", "/restapis", "CreateRestApi"),
        ("POST", "/restapis/a1/authorizers", "CreateAuthorizer"),
        ("POST", "/restapis/a1/resources/r0", "CreateResource"),
        ("POST", "/restapis/a1/deployments", "CreateDeployment"),
        ("PUT", "/restapis/a1/resources/r1/methods/ANY", "PutMethod"),
        (
            "PUT",
            "/restapis/a1/resources/r1/methods/ANY/integration",
            "PutIntegration",
        ),
        ("DELETE", "/restapis/a1", "DeleteRestApi"),
        (
            "PATCH",
            "/restapis/a1/stages/prod",
            "PATCH /restapis/a1/stages/prod",
        ),
        // The HTTP front (API Gateway v2): its creates are lost by these names too.
        ("POST", "/v2/apis", "CreateApi"),
        ("GET", "/v2/apis", "GetApis"),
        ("DELETE", "/v2/apis/a1", "DeleteApi"),
        ("POST", "/v2/apis/a1/authorizers", "CreateAuthorizer"),
        ("PATCH", "/v2/apis/a1/authorizers/z1", "UpdateAuthorizer"),
        ("POST", "/v2/apis/a1/integrations", "CreateIntegration"),
        ("POST", "/v2/apis/a1/routes", "CreateRoute"),
        ("PATCH", "/v2/apis/a1/routes/r1", "UpdateRoute"),
        ("DELETE", "/v2/apis/a1/routes/r1", "DeleteRoute"),
        ("POST", "/v2/apis/a1/stages", "CreateStage"),
        ("GET", "/v2/apis/a1/stages/$default", "GetStage"),
    ] {
        assert_eq!(rest(method, path), op, "{method} {path}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_create_answer_never_duplicates_a_resource() {
    let h = Harness::new();
    let proxy = Proxy::start(&h.url);
    // The client publishes its credentials, so the secret's create is lost too.
    std::fs::write(
        h.dir.path().join("provision.toml"),
        "[[client]]\nname = \"client\"\nsecret = true\nreaders = [\"arn:aws:iam::000000000000:role/reader\"]\n",
    )
    .unwrap();
    let with_secret: Vec<&str> = CREATES
        .iter()
        .copied()
        .chain(["CreateSecret", "PutResourcePolicy"])
        .collect();
    for how in [Lose::ServerError, Lose::Drop] {
        h.reset();
        proxy.clear_lost();
        proxy.lose_answers(&with_secret, how);
        let up = h.run_via(&proxy, &["-o", "json", "up"]);
        let counts: Vec<String> = CREATES
            .iter()
            .map(|op| format!("{op} {}", sent(&up.calls, op)))
            .collect();
        println!(
            "{how:?}: up sent {} requests; per create: {}",
            up.calls.len(),
            counts.join(", ")
        );
        assert_eq!(
            up.code,
            0,
            "up with lost answers ({how:?}), lost: {:?}\n{}",
            proxy.lost_answers(),
            up.describe()
        );
        println!(
            "{how:?}: up api_calls {}",
            up.json()["api_calls"].as_u64().unwrap_or_default()
        );
        let lost = proxy.lost_answers();
        let lost_ops: Vec<String> = lost.iter().map(|(op, _)| op.clone()).collect();
        assert_eq!(
            missing_from(&with_secret, &lost_ops),
            Vec::<String>::new(),
            "creates whose answer was never lost ({how:?}): calls {:?}",
            up.calls
        );
        for (op, status) in &lost {
            assert!(
                status.contains(" 20"),
                "the emulator did {op} before its answer was lost ({how:?}): {status}"
            );
        }
        h.assert_one_stack().await;
        let secrets = secrets_of(&h).await;
        assert_eq!(secrets.len(), 1, "one secret ({how:?}): {secrets:?}");
        // Through the proxy, as `up` ran: against an emulator the token URL (which the
        // published secret holds) is the endpoint's own.
        let status = h.run_via(&proxy, &["status"]);
        assert_eq!(
            status.code,
            0,
            "in sync after up with lost answers ({how:?}):\n{}",
            status.describe()
        );

        proxy.clear_lost();
        proxy.lose_answers(&[DELETES, &["DeleteSecret"]].concat(), how);
        let down = h.run_via(&proxy, &["-o", "json", "down"]);
        assert_eq!(
            down.code,
            0,
            "down with lost answers ({how:?}), lost: {:?}\n{}",
            proxy.lost_answers(),
            down.describe()
        );
        assert_eq!(
            missing_from(&[DELETES, &["DeleteSecret"]].concat(), &proxy.lost()),
            Vec::<String>::new(),
            "deletes whose answer was never lost ({how:?}): calls {:?}",
            down.calls
        );
        println!(
            "{how:?}: down sent {} requests (api_calls {})",
            down.calls.len(),
            down.json()["api_calls"].as_u64().unwrap_or_default()
        );
        proxy.lose_answers(&[], how);
        h.aws().await.assert_empty().await;
        assert!(secrets_of(&h).await.is_empty(), "secrets left ({how:?})");
        assert!(!h.state_file().exists(), "state file left ({how:?})");
    }
}

/// A run's requests as `(graph node, service:Operation)`, from its PROVISION_TRACE
/// file (requests sent outside any node, like the reads sent at start, have node "").
fn traced(path: &std::path::Path) -> Vec<(String, String)> {
    let trace: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let labels: Vec<String> = trace["graph"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["node"].as_str().unwrap().to_string())
        .collect();
    trace["requests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            let node = r["node"]
                .as_u64()
                .map(|i| labels[i as usize].clone())
                .unwrap_or_default();
            (node, r["op"].as_str().unwrap().to_string())
        })
        .collect()
}

/// `up` through `proxy`, with its trace.
fn traced_up(h: &Harness, proxy: &Proxy) -> (common::Run, Vec<(String, String)>) {
    let path = h.dir.path().join("trace.json");
    let mut cmd = h.command_via(proxy);
    cmd.env("PROVISION_TRACE", &path);
    let up = h.run_with(cmd, &["up"]);
    assert_eq!(up.code, 0, "{}", up.describe());
    let trace = traced(&path);
    (up, trace)
}

/// One create at a time: its answer lost (a 500), `up` still makes exactly one of each
/// resource, and the loss costs the step that sent it at most two more requests: one or
/// two reads to find what was made (never the create again), or, for a put that is safe
/// to repeat (retention, policy attachment, integration), the put sent again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_create_alone_losing_its_answer_costs_a_lookup_not_a_duplicate() {
    let h = Harness::new();
    let proxy = Proxy::start(&h.url);
    let (clean, clean_trace) = traced_up(&h, &proxy);
    let baseline = clean.calls.len();
    let mut table = Vec::new();
    let mut problems = Vec::new();
    for op in CREATES {
        h.reset();
        proxy.clear_lost();
        proxy.lose_answers(&[op], Lose::ServerError);
        let (up, trace) = traced_up(&h, &proxy);
        assert_eq!(proxy.lost(), vec![op.to_string()], "{op} was sent and lost");
        h.assert_one_stack().await;
        // What the steps that sent `op` sent after it beyond what they send after it in
        // a clean run. (Two steps may send it at once, the methods on `/` and on
        // `/{proxy+}`; only one had its answer lost, the other costs nothing more.)
        let after = |trace: &[(String, String)], node: &str| -> Vec<String> {
            trace
                .iter()
                .filter(|(n, _)| n == node)
                .map(|(_, o)| o.clone())
                .skip_while(|o| o.split(':').nth(1) != Some(op))
                .skip(1)
                // The permission's step also polls the new function's readiness, as
                // many times as the emulator takes: not a cost of the lost answer.
                .filter(|o| !(node.starts_with("lambda_permission") && o == "lambda:GetFunction"))
                .collect()
        };
        let mut nodes: Vec<&String> = trace
            .iter()
            .filter(|(_, o)| o.split(':').nth(1) == Some(op))
            .map(|(n, _)| n)
            .collect();
        nodes.sort();
        nodes.dedup();
        let node = nodes
            .iter()
            .map(|n| n.as_str())
            .collect::<Vec<_>>()
            .join(", ");
        let mut extra = Vec::new();
        for n in &nodes {
            let mut rest = after(&clean_trace, n);
            extra.extend(after(&trace, n).into_iter().filter(|o| {
                match rest.iter().position(|r| r == o) {
                    Some(i) => {
                        rest.remove(i);
                        false
                    }
                    None => true,
                }
            }));
        }
        let reads = extra.iter().all(|o| {
            let name = o.split(':').nth(1).unwrap_or("");
            ["Get", "List", "Describe"]
                .iter()
                .any(|p| name.starts_with(p))
        });
        let resent = extra.len() == 1 && extra[0].split(':').nth(1) == Some(op);
        if extra.is_empty() || extra.len() > 2 || !(reads || resent) {
            problems.push(format!("{op} (step {node}): {extra:?}"));
        }
        table.push(format!(
            "{op}: +{} in step {node} ({}); {} requests in all",
            extra.len(),
            extra
                .iter()
                .map(|c| c.as_str())
                .collect::<Vec<_>>()
                .join(" "),
            up.calls.len(),
        ));
    }
    println!("clean up: {baseline} requests\n{}", table.join("\n"));
    assert!(
        problems.is_empty(),
        "lost answers that cost more than one or two reads (or the put again):\n{}",
        problems.join("\n")
    );
}

/// The names of every Secrets Manager secret.
async fn secrets_of(h: &Harness) -> Vec<String> {
    let out = common::secrets_client(&h.url)
        .list_secrets()
        .send()
        .await
        .unwrap();
    out.secret_list()
        .iter()
        .filter_map(|s| s.name().map(str::to_string))
        .collect()
}

/// The role name of a function's `Role` ARN.
async fn function_role(sdk: &Sdk, function: &str) -> String {
    let f = sdk
        .lambda
        .get_function()
        .function_name(function)
        .send()
        .await
        .unwrap();
    let arn = f.configuration().unwrap().role().unwrap().to_string();
    arn.rsplit('/').next().unwrap().to_string()
}

async fn role_tags(sdk: &Sdk, role: &str) -> Vec<(String, String)> {
    let out = sdk
        .iam
        .list_role_tags()
        .role_name(role)
        .send()
        .await
        .unwrap();
    let mut tags: Vec<(String, String)> = out
        .tags()
        .iter()
        .map(|t| (t.key().to_string(), t.value().to_string()))
        .collect();
    tags.sort();
    tags
}

// MiniStack 1.5.33 (checked with a quick experiment): Lambda functions, user pools and
// REST APIs are kept per region (a function of the same name can exist in two
// regions, each listing sees only its own; ids are region-prefixed or not found from
// the other region), and IAM is global, as on AWS. One gap: invoking a function does
// not check that its execution role exists, so a 200 from `invoke` does not prove the
// role survived: the test asks IAM for it directly.
#[tokio::test]
async fn the_same_stack_in_two_regions_is_two_stacks() {
    let h = Harness::new();
    let regions = ["us-east-1", "eu-west-1"];
    let state_dir = |region: &str| {
        h.dir
            .path()
            .join(format!("state-{region}"))
            .to_string_lossy()
            .into_owned()
    };
    let run = |region: &str, args: &[&str]| {
        let dir = state_dir(region);
        let mut all = vec!["--region", region, "--state-dir", dir.as_str()];
        all.extend_from_slice(args);
        h.run(&all)
    };
    let role_of = |region: &str| format!("{}-handler-{region}", h.stack);

    for region in regions {
        let up = run(region, &["-o", "json", "up"]);
        assert_eq!(up.code, 0, "up in {region}:\n{}", up.describe());
        let report = up.json();
        for r in report["resources"].as_array().unwrap() {
            assert_eq!(
                r["action"], "created",
                "up in {region} makes its own stack, adopting nothing: {r}"
            );
        }
    }

    let mut sdks = Vec::new();
    for region in regions {
        sdks.push(Sdk::in_region(&h.url, region).await);
    }
    let mut roles = sdks[0].role_names().await;
    roles.sort();
    let mut want: Vec<String> = regions.iter().map(|r| role_of(r)).collect();
    want.sort();
    assert_eq!(roles, want, "one role per region (IAM is global)");
    for (region, sdk) in regions.iter().zip(&sdks) {
        let tags = role_tags(sdk, &role_of(region)).await;
        for tag in [
            ("provision:stack".to_string(), h.stack.clone()),
            ("provision:region".to_string(), region.to_string()),
        ] {
            assert!(
                tags.contains(&tag),
                "the {region} role is tagged {tag:?}: {tags:?}"
            );
        }
        let functions = sdk.function_names().await;
        assert_eq!(functions.len(), 1, "functions in {region}: {functions:?}");
        assert_eq!(
            function_role(sdk, &functions[0]).await,
            role_of(region),
            "the {region} function runs as its own region's role"
        );
        assert_eq!(sdk.pools().await.len(), 1, "user pools in {region}");
        assert_eq!(sdk.apis().await.len(), 1, "REST APIs in {region}");
        let call = run(region, &["-o", "json", "invoke"]);
        assert_eq!(call.code, 0, "invoke in {region}:\n{}", call.describe());
        assert_eq!(call.json()["status"], 200, "invoke in {region}");
    }

    let down = run("eu-west-1", &["down"]);
    assert_eq!(down.code, 0, "down in eu-west-1:\n{}", down.describe());
    let (us, eu) = (&sdks[0], &sdks[1]);
    assert!(
        us.iam
            .get_role()
            .role_name(role_of("us-east-1"))
            .send()
            .await
            .is_ok(),
        "down in eu-west-1 left the us-east-1 role alone; roles now: {:?}",
        us.role_names().await
    );
    let functions = us.function_names().await;
    assert_eq!(functions.len(), 1, "us-east-1 functions: {functions:?}");
    let role = function_role(us, &functions[0]).await;
    assert!(
        us.iam.get_role().role_name(&role).send().await.is_ok(),
        "the role of the us-east-1 function ({role}) still exists"
    );
    assert_eq!(us.pools().await.len(), 1, "us-east-1 user pools");
    assert_eq!(us.apis().await.len(), 1, "us-east-1 REST APIs");
    assert_eq!(
        eu.function_names().await,
        Vec::<String>::new(),
        "eu functions"
    );
    assert_eq!(eu.pools().await, Vec::<(String, String)>::new(), "eu pools");
    assert_eq!(eu.apis().await, Vec::<(String, String)>::new(), "eu APIs");
    assert_eq!(
        us.role_names().await,
        vec![role_of("us-east-1")],
        "only the eu-west-1 role is gone"
    );
    let call = run("us-east-1", &["-o", "json", "invoke"]);
    assert_eq!(call.code, 0, "{}", call.describe());
    assert_eq!(call.json()["status"], 200);
    let status = run("us-east-1", &["status"]);
    assert_eq!(
        status.code,
        0,
        "us-east-1 in sync after down in eu-west-1:\n{}",
        status.describe()
    );

    let down = run("us-east-1", &["down"]);
    assert_eq!(down.code, 0, "down in us-east-1:\n{}", down.describe());
    for sdk in &sdks {
        sdk.assert_empty().await;
    }
    for region in regions {
        let dir = std::path::PathBuf::from(state_dir(region));
        assert!(
            !dir.join(format!("{}.json", h.stack)).exists(),
            "state file left in {region}"
        );
    }
}

/// A policy document as IAM returns it (URL-encoded on AWS, plain on some emulators).
fn policy_document(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or_else(|_| {
        let bytes = text.as_bytes();
        let mut out = Vec::new();
        let mut i = 0;
        while i < bytes.len() {
            match bytes[i] {
                b'%' if i + 2 < bytes.len() => {
                    let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap();
                    out.push(u8::from_str_radix(hex, 16).unwrap());
                    i += 3;
                }
                b'+' => {
                    out.push(b' ');
                    i += 1;
                }
                b => {
                    out.push(b);
                    i += 1;
                }
            }
        }
        serde_json::from_slice(&out).unwrap_or_else(|e| panic!("policy {text}: {e}"))
    })
}

/// Every `Principal` of a policy document, as `kind:value`.
fn principals(doc: &Value) -> BTreeSet<String> {
    let statements = match &doc["Statement"] {
        Value::Array(a) => a.clone(),
        one => vec![one.clone()],
    };
    let mut out = BTreeSet::new();
    for s in statements {
        match &s["Principal"] {
            Value::Object(m) => {
                for (k, v) in m {
                    match v {
                        Value::Array(a) => {
                            out.extend(a.iter().map(|x| format!("{k}:{}", x.as_str().unwrap())))
                        }
                        v => {
                            out.insert(format!("{k}:{}", v.as_str().unwrap_or_default()));
                        }
                    }
                }
            }
            other => {
                out.insert(format!("{other}"));
            }
        }
    }
    out
}

#[tokio::test]
async fn privileges_beyond_what_provision_grants_are_drift_and_up_removes_them() {
    let h = Harness::new();
    let sdk = h.aws().await;
    h.json(&["up"]);
    assert_eq!(h.run(&["status"]).code, 0, "in sync after up");
    let functions = sdk.function_names().await;
    assert_eq!(functions.len(), 1, "{functions:?}");
    let function = functions[0].clone();
    let role = function_role(&sdk, &function).await;
    let fn_arn = sdk
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
    let api = sdk.apis().await[0].0.clone();
    let resources = sdk
        .apigw
        .get_resources()
        .rest_api_id(&api)
        .send()
        .await
        .unwrap();
    let root = resources
        .items()
        .iter()
        .find(|r| r.path() == Some("/"))
        .unwrap()
        .id()
        .unwrap()
        .to_string();

    // Someone else's privileges, granted beside provision's own.
    let trust = json!({
        "Version": "2012-10-17",
        "Statement": [
            {"Effect": "Allow", "Principal": {"Service": "lambda.amazonaws.com"}, "Action": "sts:AssumeRole"},
            {"Effect": "Allow", "Principal": {"AWS": "arn:aws:iam::123456789012:root"}, "Action": "sts:AssumeRole"}
        ]
    });
    sdk.iam
        .update_assume_role_policy()
        .role_name(&role)
        .policy_document(trust.to_string())
        .send()
        .await
        .unwrap();
    let everything = json!({
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]
    });
    sdk.iam
        .put_role_policy()
        .role_name(&role)
        .policy_name("backdoor")
        .policy_document(everything.to_string())
        .send()
        .await
        .unwrap();
    let admin = "arn:aws:iam::aws:policy/AdministratorAccess";
    if let Err(e) = sdk
        .iam
        .attach_role_policy()
        .role_name(&role)
        .policy_arn(admin)
        .send()
        .await
    {
        // An emulator without AWS managed policies: attach a customer one instead.
        println!("attaching {admin} failed ({e:?}); attaching a customer policy");
        let own = sdk
            .iam
            .create_policy()
            .policy_name("test-admin")
            .policy_document(everything.to_string())
            .send()
            .await
            .unwrap();
        sdk.iam
            .attach_role_policy()
            .role_name(&role)
            .policy_arn(own.policy().unwrap().arn().unwrap())
            .send()
            .await
            .unwrap();
    }
    sdk.lambda
        .add_permission()
        .function_name(&function)
        .statement_id("public")
        .principal("*")
        .action("lambda:InvokeFunction")
        .send()
        .await
        .unwrap();
    sdk.apigw
        .put_method()
        .rest_api_id(&api)
        .resource_id(&root)
        .http_method("GET")
        .authorization_type("NONE")
        .send()
        .await
        .unwrap();
    sdk.apigw
        .put_integration()
        .rest_api_id(&api)
        .resource_id(&root)
        .http_method("GET")
        .r#type(aws_sdk_apigateway::types::IntegrationType::AwsProxy)
        .integration_http_method("POST")
        .uri(format!(
            "arn:aws:apigateway:us-east-1:lambda:path/2015-03-31/functions/{fn_arn}/invocations"
        ))
        .send()
        .await
        .unwrap();

    // Through a proxy: "only reads" as AWS saw the requests, not as provision logged them.
    let status = h.run_observed(&Proxy::start(&h.url), &["-o", "json", "status"]);
    assert_eq!(status.code, 3, "{}", status.describe());
    assert!(
        status.writes().is_empty(),
        "status only reads: {:?}",
        status.writes()
    );
    let s = status.json();
    assert_eq!(s["stack"], h.stack.as_str(), "{s}");
    assert_eq!(s["in_sync"], false, "{s}");
    assert!(s["api_calls"].is_u64(), "{s}");
    let find = |kind: &str, id: Option<&str>| -> Value {
        s["resources"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["kind"] == kind && id.is_none_or(|id| r["id"] == id))
            .cloned()
            .unwrap_or_else(|| panic!("no {kind} {id:?} in status: {s}"))
    };
    let fields = |r: &Value| -> BTreeSet<String> {
        r["fields"]
            .as_array()
            .map(|a| {
                a.iter()
                    .map(|f| f.as_str().unwrap_or_default().to_string())
                    .collect()
            })
            .unwrap_or_default()
    };
    let role_status = find("iam_role", None);
    assert_eq!(role_status["state"], "drifted", "{role_status}");
    for field in ["trust_policy", "inline_policies", "policies"] {
        assert!(
            fields(&role_status).contains(field),
            "role drift names {field}: {role_status}"
        );
    }
    let permission = find("lambda_permission", Some("provision-apigateway-invoke"));
    assert_eq!(permission["state"], "drifted", "{permission}");
    assert!(
        fields(&permission).contains("extra_statements"),
        "{permission}"
    );
    let extra = find("method", Some("GET /"));
    assert_eq!(extra["state"], "extra", "{extra}");

    let repair = h.run(&["-o", "json", "up"]);
    assert_eq!(repair.code, 0, "{}", repair.describe());
    let after = h.run(&["status"]);
    assert_eq!(after.code, 0, "in sync after up:\n{}", after.describe());

    let got = sdk.iam.get_role().role_name(&role).send().await.unwrap();
    let trust = policy_document(got.role().unwrap().assume_role_policy_document().unwrap());
    assert_eq!(
        principals(&trust),
        BTreeSet::from(["Service:lambda.amazonaws.com".to_string()]),
        "trust policy: {trust}"
    );
    let inline = sdk
        .iam
        .list_role_policies()
        .role_name(&role)
        .send()
        .await
        .unwrap();
    assert_eq!(
        inline.policy_names(),
        ["provision-handler-logs"],
        "inline policies: provision's only"
    );
    let logs = sdk
        .iam
        .get_role_policy()
        .role_name(&role)
        .policy_name("provision-handler-logs")
        .send()
        .await
        .unwrap();
    let logs = policy_document(logs.policy_document());
    assert_eq!(
        logs["Statement"][0]["Resource"],
        format!("arn:aws:logs:us-east-1:000000000000:log-group:/aws/lambda/{function}:*"),
        "{logs}"
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
        "attached: {:?}",
        attached.attached_policies()
    );
    let policy = sdk
        .lambda
        .get_policy()
        .function_name(&function)
        .send()
        .await
        .unwrap();
    let policy: Value = serde_json::from_str(policy.policy().unwrap()).unwrap();
    let sids: Vec<&str> = policy["Statement"]
        .as_array()
        .unwrap()
        .iter()
        .map(|st| st["Sid"].as_str().unwrap_or_default())
        .collect();
    assert_eq!(sids, vec!["provision-apigateway-invoke"], "{policy}");
    let get = sdk
        .apigw
        .get_method()
        .rest_api_id(&api)
        .resource_id(&root)
        .http_method("GET")
        .send()
        .await;
    assert!(get.is_err(), "GET / is gone: {get:?}");
    let any = sdk
        .apigw
        .get_method()
        .rest_api_id(&api)
        .resource_id(&root)
        .http_method("ANY")
        .send()
        .await;
    assert!(any.is_ok(), "ANY / stays: {any:?}");
    assert_eq!(h.json(&["invoke"])["status"], 200);
}

#[tokio::test]
async fn a_stack_made_before_roles_were_per_region_keeps_its_role_in_its_region() {
    let h = Harness::new();
    let sdk = h.aws().await;
    h.ok(&["up"]);
    let legacy = common::make_legacy(&h, &sdk).await;

    // `up` keeps the legacy role and claims it for its region.
    let up = h.json(&["up"]);
    let role = up["resources"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["kind"] == "iam_role")
        .unwrap()
        .clone();
    assert_eq!(role["id"], legacy.as_str(), "{up}");
    // Made with AWS's basic execution policy attached: moved over to the logs policy.
    assert_eq!(role["action"], "updated", "{up}");
    assert_eq!(sdk.role_names().await, vec![legacy.clone()], "no new role");
    assert!(
        role_tags(&sdk, &legacy)
            .await
            .contains(&("provision:region".to_string(), "us-east-1".to_string())),
        "claimed for us-east-1"
    );
    assert_eq!(h.run(&["status"]).code, 0);

    // Another region gets a role of its own and never touches the legacy one.
    let eu_dir = h.dir.path().join("state-eu");
    let eu = |args: &[&str]| {
        let mut all = vec![
            "--region",
            "eu-west-1",
            "--state-dir",
            eu_dir.to_str().unwrap(),
        ];
        all.extend_from_slice(args);
        h.ok(&all)
    };
    eu(&["up"]);
    let mut roles = sdk.role_names().await;
    roles.sort();
    assert_eq!(
        roles,
        vec![legacy.clone(), format!("{}-handler-eu-west-1", h.stack)]
    );
    eu(&["down"]);
    assert_eq!(sdk.role_names().await, vec![legacy.clone()], "legacy kept");

    // Its own region's `down` removes it: it was claimed.
    h.ok(&["down"]);
    sdk.assert_empty().await;

    // A legacy role nobody claimed (no `up` since the upgrade) may serve another
    // region too: `down` leaves it and says how to remove it.
    h.reset();
    h.ok(&["up"]);
    let legacy = common::make_legacy(&h, &sdk).await;
    let down = h.ok(&["down"]);
    assert!(
        down.stderr.contains(&format!("left IAM role {legacy}")),
        "{}",
        down.describe()
    );
    assert_eq!(sdk.role_names().await, vec![legacy.clone()]);
    assert!(sdk.function_names().await.is_empty());
    sdk.iam
        .detach_role_policy()
        .role_name(&legacy)
        .policy_arn("arn:aws:iam::aws:policy/service-role/AWSLambdaBasicExecutionRole")
        .send()
        .await
        .unwrap();
    sdk.iam
        .delete_role()
        .role_name(&legacy)
        .send()
        .await
        .unwrap();
}
