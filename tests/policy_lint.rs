//! Lints the caller's IAM policy, docs/iam-policy.json, with parliament (PyPI, pinned in
//! scripts/lint-requirements.txt, installed by scripts/lint-venv into .venv-lint/ on
//! first use): unknown actions, condition keys an action does not take, resource ARNs
//! of the wrong shape, malformed statements. Zero findings at any severity, INFO
//! included. No emulator, no AWS: parliament works offline from its own action table.
//!
//! The test never skips: a linter that cannot be installed or run, or that answers in
//! a form it does not understand, fails it.

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::OnceLock;

use serde_json::Value;

fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The linter's virtualenv, installed by scripts/lint-venv if missing or stale.
fn venv() -> &'static PathBuf {
    static VENV: OnceLock<PathBuf> = OnceLock::new();
    VENV.get_or_init(|| {
        let script = repo_root().join("scripts/lint-venv");
        let out = Command::new(&script)
            .stdin(Stdio::null())
            .stderr(Stdio::inherit())
            .output()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}", script.display()));
        assert!(
            out.status.success(),
            "{} failed ({}): parliament could not be installed",
            script.display(),
            out.status
        );
        PathBuf::from(String::from_utf8(out.stdout).unwrap().trim())
    })
}

/// The version scripts/lint-requirements.txt pins.
fn pinned_version() -> String {
    let req = std::fs::read_to_string(repo_root().join("scripts/lint-requirements.txt"))
        .expect("read scripts/lint-requirements.txt");
    req.lines()
        .find_map(|l| l.trim().strip_prefix("parliament=="))
        .expect("scripts/lint-requirements.txt pins parliament==X.Y.Z")
        .trim()
        .to_string()
}

/// parliament's findings on `policy`, at every severity (one JSON object each).
fn lint(policy: &str) -> Vec<Value> {
    let parliament = venv().join("bin/parliament");
    // The policy goes in on stdin: parliament refuses `--file` when stdin is not a
    // terminal, and `--files` copies each policy into /tmp/parliament.log (1.6.4 also
    // appends its arguments there on every run, whatever the input).
    let mut child = Command::new(&parliament)
        .args(["--json", "--minimum_severity", "INFO"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", parliament.display()));
    child
        .stdin
        .take()
        .unwrap()
        .write_all(policy.as_bytes())
        .expect("write the policy to parliament");
    let out = child.wait_with_output().expect("wait for parliament");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let failed = |why: &str| -> ! {
        panic!(
            "parliament did not run properly ({why}; {}):\n--- stdout\n{stdout}\n--- stderr\n{stderr}",
            out.status
        )
    };
    let findings: Vec<Value> = stdout
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| match serde_json::from_str::<Value>(l) {
            Ok(v) if v["issue"].is_string() && v["severity"].is_string() => v,
            _ => failed("a line of its output is not a JSON finding"),
        })
        .collect();
    // 0: no finding; 1: findings, printed. Anything else (2 for bad arguments, a
    // Python traceback) means it did not lint.
    match out.status.code() {
        Some(0) if findings.is_empty() => {}
        Some(1) if !findings.is_empty() => {}
        _ => failed("unexpected exit status for what it printed"),
    }
    findings
}

fn describe(findings: &[Value]) -> String {
    findings
        .iter()
        .map(|f| {
            format!(
                "  {} {}: {} {} at {}",
                f["severity"].as_str().unwrap_or("?"),
                f["issue"].as_str().unwrap_or("?"),
                f["title"].as_str().unwrap_or(""),
                f["detail"],
                f["location"]
            )
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Actions newer than the pinned parliament's action table (client-secret rotation, GA
/// 2026-01-30; AWS's Service Authorization Reference lists each as a `cognito-idp` Write
/// action). Only an UNKNOWN_ACTION finding naming one of these is let through.
const NEWER_THAN_PARLIAMENT: &[&str] = &[
    "cognito-idp:AddUserPoolClientSecret",
    "cognito-idp:ListUserPoolClientSecrets",
    "cognito-idp:DeleteUserPoolClientSecret",
];

/// Condition keys newer than the pinned parliament's table: API Gateway v2's
/// `apigateway:Request/RouteAuthorizationType` (CreateRoute/UpdateRoute: the route's
/// authorization type, so a grant can refuse routes without the JWT authorizer; AWS's
/// API Gateway guide, "condition keys for HTTP APIs"). Only an
/// UNKNOWN_CONDITION_FOR_ACTION finding naming one of these is let through.
const KEYS_NEWER_THAN_PARLIAMENT: &[&str] = &["apigateway:Request/RouteAuthorizationType"];

#[test]
fn the_iam_policy_has_no_parliament_findings() {
    let path = repo_root().join("docs/iam-policy.json");
    let policy = std::fs::read_to_string(&path).expect("read docs/iam-policy.json");
    let findings: Vec<Value> = lint(&policy)
        .into_iter()
        .filter(|f| {
            !(f["issue"] == "UNKNOWN_ACTION"
                && NEWER_THAN_PARLIAMENT
                    .iter()
                    .any(|a| f["location"]["string"].as_str() == Some(*a)))
        })
        .filter(|f| {
            !(f["issue"] == "UNKNOWN_CONDITION_FOR_ACTION"
                && KEYS_NEWER_THAN_PARLIAMENT.iter().any(|k| {
                    f["detail"]
                        .as_str()
                        .is_some_and(|d| d.contains(&format!("condition {k} for")))
                }))
        })
        .collect();
    assert!(
        findings.is_empty(),
        "parliament {} finds {} problem(s) in {}:\n{}",
        pinned_version(),
        findings.len(),
        path.display(),
        describe(&findings)
    );
}

/// The linter is the pinned one, and it really looks: a policy with an unknown action,
/// a condition key the action does not take and a broken document are each caught.
/// Without this, a parliament that printed nothing and exited 0 would pass anything.
#[test]
fn the_linter_is_the_pinned_version_and_catches_mistakes() {
    let out = Command::new(venv().join("bin/parliament"))
        .arg("--version")
        .stdin(Stdio::null())
        .output()
        .expect("run parliament --version");
    let version = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        version.trim(),
        format!("parliament {}", pinned_version()),
        "the venv's parliament is not the pinned one"
    );

    let issues = |policy: &str| -> Vec<String> {
        lint(policy)
            .iter()
            .map(|f| f["issue"].as_str().unwrap().to_string())
            .collect()
    };
    let unknown_action = r#"{"Version": "2012-10-17", "Statement": [{"Effect": "Allow",
        "Action": "lambda:InvokeEverything", "Resource": "*"}]}"#;
    assert!(
        issues(unknown_action).contains(&"UNKNOWN_ACTION".to_string()),
        "{:?}",
        issues(unknown_action)
    );
    let wrong_condition_key = r#"{"Version": "2012-10-17", "Statement": [{"Effect": "Allow",
        "Action": "iam:GetRole", "Resource": "arn:aws:iam::*:role/m2m-*",
        "Condition": {"StringEquals": {"lambda:FunctionUrlAuthType": "NONE"}}}]}"#;
    assert!(
        issues(wrong_condition_key).contains(&"UNKNOWN_CONDITION_FOR_ACTION".to_string()),
        "{:?}",
        issues(wrong_condition_key)
    );
    let broken = r#"{"Version": "2012-10-17", "Statement": ["#;
    assert_eq!(issues(broken), vec!["MALFORMED_JSON".to_string()]);
}
