//! What the HTTP-front tests share (included by tests/front.rs and
//! tests/front_switch.rs with `#[path]`, so cargo does not build it as a test of its own).

#![allow(dead_code)]

use serde_json::Value;

use super::common::{self, actions, Harness};

pub const TWO: &str = r#"front = "http"
scopes = ["users/read", "users/write"]

[methods]
GET = ["users/read"]
POST = ["users/write"]

[[client]]
name = "reader"
scopes = ["users/read"]

[[client]]
name = "writer"
scopes = ["users/write"]
"#;

pub fn write_config(h: &Harness, text: &str) {
    std::fs::write(h.dir.path().join("provision.toml"), text).unwrap();
}

pub fn token(h: &Harness, client: &str) -> String {
    let t = h.json(&["token", "--client", client]);
    t["access_token"].as_str().unwrap().to_string()
}

/// The status of a real call to the API at `url` + `path`.
pub async fn call(url: &str, method: &str, path: &str, auth: Option<&str>) -> u16 {
    let mut req = reqwest::Client::new().request(
        reqwest::Method::from_bytes(method.as_bytes()).unwrap(),
        common_join(url, path),
    );
    if let Some(a) = auth {
        req = req.header("Authorization", a);
    }
    req.send().await.unwrap().status().as_u16()
}

pub fn common_join(base: &str, path: &str) -> String {
    format!("{base}{}", path.trim_start_matches('/'))
}

pub fn kinds(report: &Value) -> Vec<String> {
    actions(report).into_iter().map(|(k, _, _)| k).collect()
}

/// The stack's one HTTP API: (id, route key → (authorization type, scopes)).
pub async fn routes(sdk: &common::Sdk, api_id: &str) -> Vec<(String, String, Vec<String>, String)> {
    let out = sdk.apigw2.get_routes().api_id(api_id).send().await.unwrap();
    let mut all: Vec<_> = out
        .items()
        .iter()
        .map(|r| {
            (
                r.route_key().unwrap_or_default().to_string(),
                r.route_id().unwrap_or_default().to_string(),
                r.authorization_scopes().to_vec(),
                r.authorization_type()
                    .map(|t| t.as_str().to_string())
                    .unwrap_or_default(),
            )
        })
        .collect();
    all.sort();
    all
}

/// Lambda's own record of who may invoke the function (the emulator never checks it
/// on invocation, so the policy is read instead).
pub async fn source_arn(sdk: &common::Sdk, stack: &str) -> String {
    let policy = sdk
        .lambda
        .get_policy()
        .function_name(format!("{stack}-handler"))
        .send()
        .await
        .unwrap();
    let doc: Value = serde_json::from_str(policy.policy().unwrap()).unwrap();
    let statements = doc["Statement"].as_array().cloned().unwrap_or_default();
    assert_eq!(statements.len(), 1, "{doc}");
    statements[0]["Condition"]["ArnLike"]["AWS:SourceArn"]
        .as_str()
        .unwrap()
        .to_string()
}

/// How many of each thing the stack's one HTTP API has: (APIs, authorizers,
/// integrations, route keys).
pub async fn http_counts(sdk: &common::Sdk) -> (usize, usize, usize, Vec<String>) {
    let apis = sdk.http_apis().await;
    let Some((id, _)) = apis.first() else {
        return (0, 0, 0, vec![]);
    };
    let authorizers = sdk
        .apigw2
        .get_authorizers()
        .api_id(id)
        .send()
        .await
        .unwrap();
    let integrations = sdk
        .apigw2
        .get_integrations()
        .api_id(id)
        .send()
        .await
        .unwrap();
    let keys = routes(sdk, id).await.into_iter().map(|r| r.0).collect();
    (
        apis.len(),
        authorizers.items().len(),
        integrations.items().len(),
        keys,
    )
}
