//! The function's log group is the stack's: made before the function, tagged, with a
//! retention, adopted (untagged) when Lambda made it first, compared by `status`, read
//! by `provision logs` (the handler's role may write only that group), and deleted by
//! `down`.

mod common;

use common::{actions, Harness};

async fn group(h: &Harness) -> (Option<i32>, Vec<(String, String)>) {
    let sdk = h.aws().await;
    let name = format!("/aws/lambda/{}-handler", h.stack);
    let out = sdk
        .logs
        .describe_log_groups()
        .log_group_name_prefix(&name)
        .send()
        .await
        .unwrap();
    let groups: Vec<_> = out
        .log_groups()
        .iter()
        .filter(|g| g.log_group_name() == Some(name.as_str()))
        .collect();
    assert_eq!(groups.len(), 1, "one log group {name}");
    let arn = groups[0]
        .log_group_arn()
        .map(str::to_string)
        .unwrap_or_else(|| groups[0].arn().unwrap().trim_end_matches(":*").to_string());
    let tags = sdk
        .logs
        .list_tags_for_resource()
        .resource_arn(arn)
        .send()
        .await
        .unwrap();
    let mut tags: Vec<(String, String)> = tags
        .tags()
        .cloned()
        .unwrap_or_default()
        .into_iter()
        .collect();
    tags.sort();
    (groups[0].retention_in_days(), tags)
}

#[tokio::test]
async fn the_log_group_is_made_tagged_read_updated_and_removed() {
    let h = Harness::new();
    let up = h.json(&["up"]);
    assert!(
        actions(&up).contains(&(
            "log_group".into(),
            format!("/aws/lambda/{}-handler", h.stack),
            "created".into()
        )),
        "{up}"
    );
    let call = h.json(&["invoke", "--path", "/hello"]);
    assert_eq!(call["status"], 200);
    let (retention, tags) = group(&h).await;
    assert_eq!(retention, Some(30), "the default retention");
    assert!(
        tags.contains(&("provision:stack".into(), h.stack.clone())),
        "{tags:?}"
    );

    // The handler's one line per request, read back by `logs`.
    let logs = h.ok(&["logs", "--since", "5m"]);
    let line = logs
        .stdout
        .lines()
        .find(|l| l.contains("\"path\":\"/hello\""))
        .unwrap_or_else(|| panic!("the invocation's line in:\n{}", logs.stdout));
    assert!(
        line.contains("\"method\":\"GET\"") && line.contains("\"status\":200"),
        "{line}"
    );
    assert!(line.starts_with("20"), "an RFC 3339 time first: {line}");
    let json = h.json(&["logs", "--since", "5m"]);
    assert!(json["events"]
        .as_array()
        .unwrap()
        .iter()
        .any(|e| e["message"].as_str().unwrap().contains("/hello")));
    let bad = h.run(&["logs", "--since", "soon"]);
    assert_eq!(bad.code, 2, "{}", bad.describe());

    // Retention is compared and updated in place; 0 keeps events forever.
    let sdk = h.aws().await;
    sdk.logs
        .put_retention_policy()
        .log_group_name(format!("/aws/lambda/{}-handler", h.stack))
        .retention_in_days(1)
        .send()
        .await
        .unwrap();
    let status = h.json_code(&["status"], 3);
    assert!(
        status["resources"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["kind"] == "log_group"
                && r["state"] == "drifted"
                && r["fields"][0] == "retention_days"),
        "{status}"
    );
    h.ok(&["up"]);
    assert_eq!(group(&h).await.0, Some(30));
    h.ok(&["up", "--log-retention", "0"]);
    assert_eq!(group(&h).await.0, None, "never expires");
    assert_eq!(h.run(&["status", "--log-retention", "0"]).code, 0);

    h.ok(&["down"]);
    assert!(
        sdk.log_groups().await.is_empty(),
        "down removes the log group"
    );
    sdk.assert_empty().await;
}

#[tokio::test]
async fn a_group_lambda_made_first_is_adopted_but_not_tagged() {
    let h = Harness::new();
    let sdk = h.aws().await;
    let name = format!("/aws/lambda/{}-handler", h.stack);
    // As Lambda makes it on a first invocation: no tags, no retention.
    sdk.logs
        .create_log_group()
        .log_group_name(&name)
        .send()
        .await
        .unwrap();
    let up = h.json(&["up", "--log-retention", "7"]);
    let entry = up["resources"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["kind"] == "log_group")
        .unwrap()
        .clone();
    assert_eq!(entry["action"], "adopted", "{entry}");
    let (retention, tags) = group(&h).await;
    assert_eq!(retention, Some(7));
    // The caller's policy allows tagging only what carries the stack's tag already
    // (docs/iam-policy.json): an adopted group is left untagged, and that is no drift.
    assert!(tags.is_empty(), "{tags:?}");
    let status = h.run(&["status", "--log-retention", "7"]);
    assert_eq!(status.code, 0, "{}", status.describe());
    h.ok(&["down"]);
    sdk.assert_empty().await;
}

/// A stack made by a version that attached AWS's `AWSLambdaBasicExecutionRole` (logs of
/// any group in the account) is moved over by the next `up`: boundary and logs policy
/// on, the managed policy off; the handler's lines still reach `provision logs`.
#[tokio::test]
async fn a_role_made_with_the_basic_execution_policy_is_moved_over_by_up() {
    let h = Harness::new();
    let sdk = h.aws().await;
    h.ok(&["up"]);
    let role = format!("{}-handler-us-east-1", h.stack);
    let basic = "arn:aws:iam::aws:policy/service-role/AWSLambdaBasicExecutionRole";
    // The role as those versions left it: the managed policy, no inline policy, no boundary.
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
    sdk.iam
        .attach_role_policy()
        .role_name(&role)
        .policy_arn(basic)
        .send()
        .await
        .unwrap();

    let status = h.json_code(&["status"], 3);
    let entry = status["resources"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["kind"] == "iam_role")
        .unwrap()
        .clone();
    assert_eq!(entry["state"], "drifted", "{entry}");
    for field in ["policies", "inline_policies", "logs_policy", "boundary"] {
        assert!(
            entry["fields"]
                .as_array()
                .unwrap()
                .iter()
                .any(|f| f == field),
            "{field} in {entry}"
        );
    }
    let up = h.json(&["up"]);
    assert!(
        actions(&up).contains(&("iam_role".into(), role.clone(), "updated".into())),
        "{up}"
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
        "{:?}",
        attached.attached_policies()
    );
    let inline = sdk
        .iam
        .list_role_policies()
        .role_name(&role)
        .send()
        .await
        .unwrap();
    assert_eq!(inline.policy_names(), ["provision-handler-logs"]);
    let doc = sdk
        .iam
        .get_role_policy()
        .role_name(&role)
        .policy_name("provision-handler-logs")
        .send()
        .await
        .unwrap();
    let text = doc.policy_document();
    let doc: serde_json::Value = serde_json::from_str(text).unwrap_or_else(|_| {
        serde_json::from_str(&urlencoding_decode(text)).expect("a JSON policy")
    });
    let statement = &doc["Statement"][0];
    let mut actions_allowed: Vec<&str> = statement["Action"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap())
        .collect();
    actions_allowed.sort();
    assert_eq!(
        actions_allowed,
        ["logs:CreateLogStream", "logs:PutLogEvents"]
    );
    assert_eq!(
        statement["Resource"],
        format!(
            "arn:aws:logs:us-east-1:000000000000:log-group:/aws/lambda/{}-handler:*",
            h.stack
        )
    );
    let got = sdk.iam.get_role().role_name(&role).send().await.unwrap();
    assert_eq!(
        got.role()
            .unwrap()
            .permissions_boundary()
            .and_then(|b| b.permissions_boundary_arn()),
        Some(basic)
    );
    assert_eq!(h.run(&["status"]).code, 0, "in sync after the move");

    assert_eq!(h.json(&["invoke", "--path", "/moved"])["status"], 200);
    let logs = h.ok(&["logs", "--since", "5m"]);
    assert!(
        logs.stdout.contains("\"path\":\"/moved\""),
        "the handler's line after the move:\n{}",
        logs.stdout
    );
    h.ok(&["down"]);
    sdk.assert_empty().await;
}

/// IAM may hand policy documents back URL-encoded.
fn urlencoding_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            if let Ok(b) = u8::from_str_radix(&s[i + 1..i + 3], 16) {
                out.push(b);
                i += 3;
                continue;
            }
        }
        out.push(if bytes[i] == b'+' { b' ' } else { bytes[i] });
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}
