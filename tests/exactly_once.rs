//! Exactly once: a create whose answer is lost never makes a second resource, and
//! costs a lookup, not a duplicate. (Regions: tests/regions.rs; privilege drift:
//! tests/privilege_drift.rs.)

mod common;

use serde_json::Value;

use common::proxy::{operation, Lose, Proxy};
use common::Harness;

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
