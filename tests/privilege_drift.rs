//! Privileges granted beside provision's own (a statement added to the function's
//! resource policy, a policy attached to its role) are drift that `up` removes.

mod common;

use std::collections::BTreeSet;

use serde_json::{json, Value};

use common::proxy::Proxy;
use common::{function_role, Harness};

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
