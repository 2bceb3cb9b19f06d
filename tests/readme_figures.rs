//! Figures the README states that come from the repository itself, checked against it:
//! a change that moves one (an action added to the policy) fails here until the README
//! says the new figure. No emulator. (The bad-input case count is checked by
//! `tests/bad_input.rs`, which holds the cases; the speed tables come from the bench.)

mod common;

use std::collections::BTreeSet;

use serde_json::Value;

/// The distinct actions `docs/iam-policy.json` allows.
fn policy_actions() -> BTreeSet<String> {
    let text = std::fs::read_to_string(common::repo_root().join("docs/iam-policy.json"))
        .expect("docs/iam-policy.json");
    let policy: Value = serde_json::from_str(&text).expect("the policy is JSON");
    let mut actions = BTreeSet::new();
    for statement in policy["Statement"].as_array().expect("statements") {
        match &statement["Action"] {
            Value::String(a) => {
                actions.insert(a.clone());
            }
            Value::Array(list) => actions.extend(
                list.iter()
                    .map(|a| a.as_str().expect("an action").to_string()),
            ),
            other => panic!("a statement without Action: {other} in {statement}"),
        }
    }
    actions
}

#[test]
fn the_readme_counts_the_policys_actions_right() {
    let count = policy_actions().len();
    assert!(count > 0);
    let claim = format!("({count} actions;");
    assert!(
        common::readme_text().contains(&claim),
        "docs/iam-policy.json allows {count} distinct actions: README.md (Deploying to AWS, \
         Permissions) should say {claim:?}"
    );
}
