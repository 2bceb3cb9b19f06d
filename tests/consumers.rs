//! Consumers: one app client per calling service, each with its own scopes, the scopes
//! checked per HTTP method, credentials delivered on request or through Secrets
//! Manager, and the secret nowhere else. Checked with our own SDK reads and real calls.

mod common;

use std::collections::BTreeSet;

use serde_json::Value;

use common::{actions, secrets_client, Harness, Run};

const READER_ROLE: &str = "arn:aws:iam::000000000000:role/admin-service";

fn config(clients: &str) -> String {
    format!(
        r#"scopes = ["users/read", "users/write"]

[methods]
GET = ["users/read"]
ANY = ["users/write"]

{clients}"#
    )
}

const THREE: &str = r#"[[client]]
name = "reader"
scopes = ["users/read"]

[[client]]
name = "writer"
scopes = ["users/write"]

[[client]]
name = "admin"
secret = true
readers = ["arn:aws:iam::000000000000:role/admin-service"]
"#;

/// The scopes in an access token's `scope` claim.
fn token_scopes(token: &str) -> BTreeSet<String> {
    use base64::Engine;
    let payload = token.split('.').nth(1).expect("a JWT");
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload.trim_end_matches('='))
        .expect("base64url payload");
    let claims: Value = serde_json::from_slice(&bytes).expect("JSON claims");
    claims["scope"]
        .as_str()
        .unwrap_or_default()
        .split_whitespace()
        .map(str::to_string)
        .collect()
}

fn set(scopes: &[&str]) -> BTreeSet<String> {
    scopes.iter().map(|s| s.to_string()).collect()
}

fn status_of(h: &Harness, client: &str, method: &str) -> u64 {
    let r = h.run(&[
        "-o", "json", "invoke", "--client", client, "--method", method, "--path", "/items",
    ]);
    r.json()["status"]
        .as_u64()
        .unwrap_or_else(|| panic!("{}", r.describe()))
}

async fn stack_secrets(sm: &aws_sdk_secretsmanager::Client) -> Vec<String> {
    let out = sm.list_secrets().send().await.unwrap();
    out.secret_list()
        .iter()
        .filter_map(|s| s.name().map(str::to_string))
        .collect()
}

/// Asks the token endpoint directly, as a calling service would with its credentials.
async fn token_with(token_url: &str, id: &str, secret: &str, scope: &str) -> reqwest::Response {
    reqwest::Client::new()
        .post(token_url)
        .basic_auth(id, Some(secret))
        .form(&[("grant_type", "client_credentials"), ("scope", scope)])
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn each_calling_service_gets_its_client_its_scopes_and_its_secret() {
    let mut h = Harness::new();
    // Every run through one proxy, from the start (the published secret holds the
    // endpoint's token URL), so the write checks below count what reached AWS.
    let proxy = common::proxy::Proxy::start(&h.url);
    h.url = proxy.url.clone();
    let sdk = h.aws().await;
    let sm = secrets_client(&h.url);
    std::fs::write(h.dir.path().join("provision.toml"), config(THREE)).unwrap();

    let up = h.json(&["up"]);
    let clients: Vec<(String, String)> = up["resources"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["kind"] == "app_client")
        .map(|r| {
            (
                r["name"].as_str().unwrap().to_string(),
                r["id"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    let names: Vec<&str> = clients.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, ["reader", "writer", "admin"], "{up}");
    for (name, id) in &clients {
        assert_eq!(up["outputs"]["clients"][name], id.as_str(), "{up}");
    }
    assert_eq!(up["outputs"]["client_id"], clients[0].1.as_str());
    assert_eq!(up["outputs"]["scope"], "users/read users/write");
    let methods: BTreeSet<String> = actions(&up)
        .into_iter()
        .filter(|(k, _, _)| k == "method")
        .map(|(_, id, _)| id)
        .collect();
    assert_eq!(
        methods,
        set(&["ANY /", "ANY /{proxy+}", "GET /", "GET /{proxy+}"])
    );

    // Independently: three clients in the pool, each with exactly its scopes.
    let (pool_id, _) = sdk.pools().await.remove(0);
    let in_pool = sdk.clients(&pool_id).await;
    assert_eq!(in_pool.len(), 3, "{in_pool:?}");
    for (name, want) in [
        ("reader", set(&["users/read"])),
        ("writer", set(&["users/write"])),
        ("admin", set(&["users/read", "users/write"])),
    ] {
        let token = h.json(&["token", "--client", name]);
        let access = token["access_token"].as_str().unwrap();
        assert_eq!(token_scopes(access), want, "{name}'s token");
    }

    // The gateway checks the scopes per method, before the function runs.
    assert_eq!(status_of(&h, "reader", "GET"), 200);
    assert_eq!(status_of(&h, "reader", "POST"), 401);
    assert_eq!(status_of(&h, "writer", "POST"), 200);
    assert_eq!(status_of(&h, "writer", "GET"), 401);
    assert_eq!(status_of(&h, "admin", "GET"), 200);
    assert_eq!(status_of(&h, "admin", "POST"), 200);

    // `credentials` works at the token endpoint.
    let creds = h.json(&["credentials", "--client", "writer"]);
    assert_eq!(creds["client_id"], clients[1].1.as_str());
    assert_eq!(creds["scope"], "users/write");
    let answer = token_with(
        creds["token_url"].as_str().unwrap(),
        creds["client_id"].as_str().unwrap(),
        creds["client_secret"].as_str().unwrap(),
        "users/write",
    )
    .await;
    assert_eq!(answer.status().as_u16(), 200, "credentials get a token");

    // The published secret holds working credentials; exactly the readers may read it.
    let name = format!("provision/{}/admin", h.stack);
    assert_eq!(stack_secrets(&sm).await, vec![name.clone()]);
    let value = sm.get_secret_value().secret_id(&name).send().await.unwrap();
    let held: Value = serde_json::from_str(value.secret_string().unwrap()).unwrap();
    assert_eq!(held["client_id"], clients[2].1.as_str());
    assert_eq!(held["scope"], "users/read users/write");
    assert_eq!(held["token_url"], up["outputs"]["token_url"]);
    let answer = token_with(
        held["token_url"].as_str().unwrap(),
        held["client_id"].as_str().unwrap(),
        held["client_secret"].as_str().unwrap(),
        "users/read users/write",
    )
    .await;
    assert_eq!(
        answer.status().as_u16(),
        200,
        "the secret's credentials work"
    );
    let policy = sm
        .get_resource_policy()
        .secret_id(&name)
        .send()
        .await
        .unwrap();
    let policy: Value = serde_json::from_str(policy.resource_policy().unwrap()).unwrap();
    let statements = policy["Statement"].as_array().unwrap();
    assert_eq!(statements.len(), 1, "{policy}");
    assert_eq!(statements[0]["Action"], "secretsmanager:GetSecretValue");
    let principals = &statements[0]["Principal"]["AWS"];
    let principals: Vec<&str> = match principals {
        Value::String(s) => vec![s.as_str()],
        Value::Array(a) => a.iter().map(|v| v.as_str().unwrap()).collect(),
        other => panic!("principals {other}"),
    };
    assert_eq!(principals, [READER_ROLE]);
    let tags = sm.describe_secret().secret_id(&name).send().await.unwrap();
    assert!(tags
        .tags()
        .iter()
        .any(|t| t.key() == Some("provision:stack") && t.value() == Some(h.stack.as_str())));

    // A no-op up and status: nothing to do.
    let again = h.run_observed(&proxy, &["-o", "json", "up"]);
    assert_eq!(again.code, 0, "{}", again.describe());
    assert!(again.writes().is_empty(), "{:?}", again.writes());
    assert_eq!(h.run(&["status"]).code, 0);

    // A client the configuration no longer lists goes (and only it), with its secret.
    let fewer = THREE.replace(
        "[[client]]\nname = \"writer\"\nscopes = [\"users/write\"]\n\n",
        "",
    );
    let fewer = fewer.replace(
        "secret = true\nreaders = [\"arn:aws:iam::000000000000:role/admin-service\"]\n",
        "",
    );
    std::fs::write(h.dir.path().join("provision.toml"), config(&fewer)).unwrap();
    let status = h.json_code(&["status"], 3);
    let extra: Vec<(String, String)> = status["resources"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["state"] == "extra")
        .map(|r| {
            (
                r["kind"].as_str().unwrap().to_string(),
                r["name"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect();
    assert_eq!(
        extra,
        [
            ("app_client".to_string(), "writer".to_string()),
            ("secret".to_string(), "admin".to_string())
        ],
        "{status}"
    );
    let dry = h.json(&["up", "--dry-run"]);
    assert!(h.run(&["status"]).code == 3, "a dry run changed nothing");
    assert!(actions(&dry)
        .iter()
        .any(|(k, id, a)| k == "app_client" && id == &clients[1].1 && a == "deleted"));
    let up = h.run_observed(&proxy, &["-o", "json", "up"]);
    assert_eq!(up.code, 0, "{}", up.describe());
    let mut writes: Vec<String> = up.writes().into_iter().cloned().collect();
    writes.sort();
    assert_eq!(
        writes,
        [
            "cognito-idp:DeleteUserPoolClient",
            "secretsmanager:DeleteSecret"
        ],
        "only the writer client and the secret go"
    );
    assert_eq!(sdk.clients(&pool_id).await.len(), 2);
    assert!(stack_secrets(&sm).await.is_empty());
    assert_eq!(status_of(&h, "reader", "GET"), 200, "the others still work");

    // Adding one creates only that.
    let more = format!("{fewer}\n[[client]]\nname = \"billing\"\nscopes = [\"users/read\"]\n");
    std::fs::write(h.dir.path().join("provision.toml"), config(&more)).unwrap();
    let up = h.run_observed(&proxy, &["-o", "json", "up"]);
    assert_eq!(up.code, 0, "{}", up.describe());
    assert_eq!(
        up.writes(),
        [&"cognito-idp:CreateUserPoolClient".to_string()],
        "only the new client is made"
    );
    assert_eq!(status_of(&h, "billing", "GET"), 200);
    assert_eq!(status_of(&h, "billing", "POST"), 401);

    // A client outside the stack's name space is never touched; one inside it is extra.
    for name in ["someone-elses", &format!("{}-ghost", h.stack)] {
        sdk.cognito
            .create_user_pool_client()
            .user_pool_id(&pool_id)
            .client_name(name)
            .send()
            .await
            .unwrap();
    }
    let status = h.json_code(&["status"], 3);
    assert_eq!(
        status["resources"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|r| r["state"] == "extra")
            .map(|r| r["name"].as_str().unwrap())
            .collect::<Vec<_>>(),
        ["ghost"]
    );
    h.ok(&["up"]);
    let left: BTreeSet<String> = sdk
        .clients(&pool_id)
        .await
        .into_iter()
        .map(|(_, n)| n)
        .collect();
    assert!(left.contains("someone-elses"), "{left:?}");
    assert!(!left.contains(&format!("{}-ghost", h.stack)), "{left:?}");

    h.ok(&["down"]);
    sdk.assert_empty().await;
    assert!(stack_secrets(&sm).await.is_empty());
}

#[tokio::test]
async fn the_client_secret_appears_only_where_credentials_prints_it() {
    let h = Harness::new();
    let sm = secrets_client(&h.url);
    std::fs::write(h.dir.path().join("provision.toml"), config(THREE)).unwrap();
    let runs: Vec<Run> = vec![
        h.ok(&["-vv", "up"]),
        h.ok(&["-vv", "-o", "json", "up"]),
        h.ok(&["-vv", "status"]),
        h.ok(&["-vv", "outputs"]),
        h.ok(&["-vv", "-o", "json", "token", "--client", "admin"]),
        h.ok(&["-vv", "invoke", "--client", "admin"]),
        h.ok(&["-vv", "graph"]),
    ];
    let name = format!("provision/{}/admin", h.stack);
    let value = sm.get_secret_value().secret_id(&name).send().await.unwrap();
    let held: Value = serde_json::from_str(value.secret_string().unwrap()).unwrap();
    let secret = held["client_secret"].as_str().unwrap().to_string();
    assert!(secret.len() >= 20, "a real secret to look for");
    for r in &runs {
        assert!(
            !r.stdout.contains(&secret) && !r.stderr.contains(&secret),
            "the secret leaked:\n{}",
            r.describe()
        );
    }
    let state = std::fs::read_to_string(h.state_file()).unwrap();
    assert!(!state.contains(&secret), "the secret is in the state file");
    let creds = h.ok(&["-o", "json", "credentials", "--client", "admin"]);
    assert_eq!(creds.json()["client_secret"], secret.as_str());
    assert!(!creds.stderr.contains(&secret), "only on stdout");
    assert_eq!(
        std::fs::read_to_string(h.state_file()).unwrap(),
        state,
        "credentials writes nothing"
    );
    let down = h.ok(&["-vv", "down"]);
    assert!(!down.stdout.contains(&secret) && !down.stderr.contains(&secret));
}

#[test]
fn graph_shows_the_clients_as_nodes_without_calling_aws() {
    let h = Harness::new();
    std::fs::write(h.dir.path().join("provision.toml"), config(THREE)).unwrap();
    // Counted at a proxy: nothing reached it, whatever the binary logs.
    let dot = h.run_observed(&common::proxy::Proxy::start(&h.url), &["graph"]);
    assert_eq!(dot.code, 0, "{}", dot.describe());
    assert!(dot.calls.is_empty(), "no AWS call: {:?}", dot.calls);
    assert!(
        dot.stdout.starts_with("digraph provision {"),
        "{}",
        dot.stdout
    );
    for edge in [
        "\"app_client admin\" -> \"secret admin\"",
        "\"user_pool it-stack-pool\" -> \"app_client reader\"",
        "\"iam_role it-stack-handler-us-east-1\" -> \"lambda_function it-stack-handler\"",
    ] {
        assert!(dot.stdout.contains(edge), "{edge} in\n{}", dot.stdout);
    }
    let json = h.ok(&["-o", "json", "graph"]).json();
    let kinds: Vec<&str> = json["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["kind"].as_str().unwrap())
        .collect();
    assert_eq!(
        kinds.iter().filter(|k| **k == "app_client").count(),
        4,
        "3 + the sweep"
    );
    assert_eq!(
        kinds.iter().filter(|k| **k == "method").count(),
        5,
        "2 verbs × 2 paths + the sweep"
    );
    assert!(json["edges"].as_array().unwrap().len() > kinds.len());
}

/// A reader in another account could never read the secret (it is encrypted with the
/// account's aws/secretsmanager key, which AWS lets no other account use): `up` says so
/// and stops with exit 2 once STS has named the account, before anything is made.
#[tokio::test]
async fn a_reader_in_another_account_is_refused_before_any_write() {
    let h = Harness::new();
    let other = THREE.replace("000000000000", "123456789012");
    std::fs::write(h.dir.path().join("provision.toml"), config(&other)).unwrap();
    let up = h.run(&["up"]);
    assert_eq!(up.code, 2, "{}", up.describe());
    assert!(
        up.stderr.contains("123456789012") && up.stderr.contains("aws/secretsmanager"),
        "says which reader and why: {}",
        up.describe()
    );
    assert!(up.writes().is_empty(), "{:?}", up.writes());
    h.aws().await.assert_empty().await;
}
