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
