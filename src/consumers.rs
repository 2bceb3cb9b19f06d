//! Who calls the API, and what each HTTP method needs: the stack's app clients (one per
//! calling service, each with a subset of the stack's scopes, optionally published to
//! Secrets Manager) and the scopes per method. Parsed and validated before any AWS call.

use std::collections::BTreeMap;

use serde::Deserialize;

use crate::errors::{Error, Result};
use crate::names::Scope;

/// The client a stack has when none is configured (`<stack>-client`, all scopes), so
/// stacks made before clients were configurable keep theirs.
pub const DEFAULT_CLIENT: &str = "client";

/// HTTP methods API Gateway accepts on a method (`ANY` matches the others).
const VERBS: [&str; 8] = [
    "ANY", "DELETE", "GET", "HEAD", "OPTIONS", "PATCH", "POST", "PUT",
];

/// One `[[client]]` entry of provision.toml.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClientFileConfig {
    pub name: String,
    pub scopes: Option<Vec<String>>,
    #[serde(default)]
    pub secret: bool,
    #[serde(default)]
    pub readers: Vec<String>,
}

/// An app client as the stack wants it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientSpec {
    /// [a-z0-9-], 1 to 32; the Cognito name is `<stack>-<name>`.
    pub name: String,
    /// Sorted, a subset of the stack's.
    pub scopes: Vec<Scope>,
    /// Publish its credentials to Secrets Manager as `provision/<stack>/<name>`.
    pub secret: bool,
    /// Who may read that secret (IAM ARNs), sorted.
    pub readers: Vec<String>,
}

impl ClientSpec {
    pub fn scope_strings(&self) -> Vec<String> {
        self.scopes.iter().map(|s| s.to_string()).collect()
    }
}

/// One HTTP method on `/` and `/{proxy+}` and the scopes a token needs for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MethodSpec {
    pub verb: String,
    /// Sorted, a subset of the stack's.
    pub scopes: Vec<Scope>,
}

/// The clients: `--client` flags (NAME or NAME=RS/SCOPE,RS/SCOPE) replace the file's
/// list; with neither, one client named `client` with all of the stack's scopes.
pub fn resolve_clients(
    flags: &[String],
    file: &[ClientFileConfig],
    stack_scopes: &[Scope],
) -> Result<Vec<ClientSpec>> {
    let mut clients = Vec::new();
    if !flags.is_empty() {
        for flag in flags {
            let (name, scopes) = match flag.split_once('=') {
                Some((n, s)) => (
                    n.trim(),
                    Some(s.split(',').map(str::to_string).collect::<Vec<_>>()),
                ),
                None => (flag.trim(), None),
            };
            clients.push(client(name, scopes.as_deref(), false, &[], stack_scopes)?);
        }
    } else if !file.is_empty() {
        for c in file {
            clients.push(client(
                &c.name,
                c.scopes.as_deref(),
                c.secret,
                &c.readers,
                stack_scopes,
            )?);
        }
    } else {
        clients.push(client(DEFAULT_CLIENT, None, false, &[], stack_scopes)?);
    }
    for (i, c) in clients.iter().enumerate() {
        if clients[..i].iter().any(|other| other.name == c.name) {
            return Err(Error::usage(format!(
                "client `{}`: listed twice; each calling service needs a name of its own",
                c.name
            )));
        }
    }
    Ok(clients)
}

fn client(
    name: &str,
    scopes: Option<&[String]>,
    secret: bool,
    readers: &[String],
    stack_scopes: &[Scope],
) -> Result<ClientSpec> {
    validate_client_name(name)?;
    let scopes = match scopes {
        Some(raw) => subset(&format!("client `{name}`"), raw, stack_scopes)?,
        None => stack_scopes.to_vec(),
    };
    if !readers.is_empty() && !secret {
        return Err(Error::usage(format!(
            "client `{name}`: readers are for its secret; add `secret = true` or drop `readers`"
        )));
    }
    if secret && readers.is_empty() {
        return Err(Error::usage(format!(
            "client `{name}`: `secret = true` needs `readers = [\"arn:aws:iam::ACCOUNT:role/NAME\", ...]`, the services that may read it"
        )));
    }
    let mut readers = readers.to_vec();
    for r in &readers {
        validate_reader(name, r)?;
    }
    readers.sort();
    readers.dedup();
    Ok(ClientSpec {
        name: name.to_string(),
        scopes,
        secret,
        readers,
    })
}

/// Client names become part of Cognito and Secrets Manager names: `[a-z0-9-]`, 1 to 32.
pub fn validate_client_name(name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 32
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
    if ok {
        Ok(())
    } else {
        Err(Error::usage(format!(
            "client name `{name}`: use 1 to 32 characters of a-z, 0-9 and -"
        )))
    }
}

/// Refuses (exit 2, before any write) a reader in another account than the caller's.
/// A published secret is encrypted with the account's `aws/secretsmanager` key, and
/// AWS lets no other account use an AWS managed key: such a reader would be allowed
/// by the secret's policy and still be denied.
pub fn check_readers_in_account(clients: &[ClientSpec], account: &str) -> Result<()> {
    for c in clients {
        for r in &c.readers {
            let theirs = r.split(':').nth(4).unwrap_or_default();
            if theirs != account {
                return Err(Error::usage(format!(
                    "client `{}`: reader `{r}` is in account {theirs}, not in this stack's account {account}; its secret is encrypted with the aws/secretsmanager key, which AWS does not let other accounts use, so that reader could never read it. Let a role in account {account} read the secret, or hand the credentials over with `provision credentials --client {}`",
                    c.name, c.name
                )));
            }
        }
    }
    Ok(())
}

/// An IAM principal ARN: a role, a user, or an account's root.
fn validate_reader(client: &str, arn: &str) -> Result<()> {
    let parts: Vec<&str> = arn.splitn(6, ':').collect();
    let ok = parts.len() == 6
        && parts[0] == "arn"
        && parts[1].starts_with("aws")
        && parts[2] == "iam"
        && parts[3].is_empty()
        && parts[4].len() == 12
        && parts[4].chars().all(|c| c.is_ascii_digit())
        && (parts[5] == "root"
            || ["role/", "user/"].iter().any(|p| {
                parts[5].strip_prefix(p).is_some_and(|rest| {
                    !rest.is_empty()
                        && rest
                            .chars()
                            .all(|c| c.is_ascii_alphanumeric() || "+=,.@_-/".contains(c))
                })
            }));
    if ok {
        Ok(())
    } else {
        Err(Error::usage(format!(
            "client `{client}`: reader `{arn}` is not an IAM role, user or root ARN, e.g. arn:aws:iam::123456789012:role/billing-service"
        )))
    }
}

/// Scopes that must all be among the stack's.
fn subset(what: &str, raw: &[String], stack_scopes: &[Scope]) -> Result<Vec<Scope>> {
    let mut scopes = Vec::new();
    for s in raw {
        let scope = Scope::parse(s.trim())?;
        if !stack_scopes.contains(&scope) {
            return Err(Error::usage(format!(
                "{what}: scope `{scope}` is not one of the stack's ({}); add it to `scopes` first",
                stack_scopes
                    .iter()
                    .map(|s| s.to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            )));
        }
        scopes.push(scope);
    }
    scopes.sort();
    scopes.dedup();
    if scopes.is_empty() {
        return Err(Error::usage(format!(
            "{what}: no scopes; give at least one of the stack's"
        )));
    }
    Ok(scopes)
}

/// `[methods]`: VERB = [scopes]; without it, `ANY` with all of the stack's scopes.
pub fn resolve_methods(
    file: Option<&BTreeMap<String, Vec<String>>>,
    stack_scopes: &[Scope],
) -> Result<Vec<MethodSpec>> {
    let Some(table) = file.filter(|t| !t.is_empty()) else {
        return Ok(vec![MethodSpec {
            verb: "ANY".into(),
            scopes: stack_scopes.to_vec(),
        }]);
    };
    let mut methods = Vec::new();
    for (verb, scopes) in table {
        let upper = verb.to_ascii_uppercase();
        if !VERBS.contains(&upper.as_str()) {
            return Err(Error::usage(format!(
                "methods: `{verb}` is not an HTTP method API Gateway takes ({})",
                VERBS.join(", ")
            )));
        }
        if methods.iter().any(|m: &MethodSpec| m.verb == upper) {
            return Err(Error::usage(format!("methods: `{upper}` given twice")));
        }
        methods.push(MethodSpec {
            scopes: subset(&format!("method {upper}"), scopes, stack_scopes)?,
            verb: upper,
        });
    }
    methods.sort_by(|a, b| a.verb.cmp(&b.verb));
    Ok(methods)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stack() -> Vec<Scope> {
        crate::config::parse_scopes(&["users/read".into(), "users/write".into()]).unwrap()
    }

    #[test]
    fn no_client_configured_is_one_named_client_with_every_scope() {
        let c = resolve_clients(&[], &[], &stack()).unwrap();
        assert_eq!(c.len(), 1);
        assert_eq!(c[0].name, "client");
        assert_eq!(c[0].scope_strings(), ["users/read", "users/write"]);
    }

    #[test]
    fn flags_replace_the_file_and_take_scopes() {
        let file = vec![ClientFileConfig {
            name: "from-file".into(),
            ..Default::default()
        }];
        let c = resolve_clients(
            &["billing=users/read".into(), "admin".into()],
            &file,
            &stack(),
        )
        .unwrap();
        let names: Vec<_> = c.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(names, ["billing", "admin"]);
        assert_eq!(c[0].scope_strings(), ["users/read"]);
        assert_eq!(c[1].scopes.len(), 2);
    }

    #[test]
    fn bad_clients_are_refused_naming_the_field() {
        let cases: Vec<(Vec<String>, Vec<ClientFileConfig>, &str)> = vec![
            (vec!["a".into(), "a".into()], vec![], "listed twice"),
            (vec!["Billing".into()], vec![], "client name `Billing`"),
            (
                vec!["b=users/delete".into()],
                vec![],
                "not one of the stack's",
            ),
            (vec!["b=".into()], vec![], "scope ``"),
            (
                vec![],
                vec![ClientFileConfig {
                    name: "x".into(),
                    secret: true,
                    readers: vec!["arn:aws:iam::12345:role/r".into()],
                    ..Default::default()
                }],
                "is not an IAM role",
            ),
            (
                vec![],
                vec![ClientFileConfig {
                    name: "x".into(),
                    readers: vec!["arn:aws:iam::123456789012:role/r".into()],
                    ..Default::default()
                }],
                "add `secret = true`",
            ),
            (
                vec![],
                vec![ClientFileConfig {
                    name: "x".into(),
                    secret: true,
                    ..Default::default()
                }],
                "needs `readers",
            ),
        ];
        for (flags, file, says) in cases {
            let err = resolve_clients(&flags, &file, &stack()).unwrap_err();
            assert_eq!(err.exit_code(), 2);
            assert!(err.to_string().contains(says), "{says}: {err}");
        }
        let ok = ClientFileConfig {
            name: "x".into(),
            secret: true,
            readers: vec![
                "arn:aws:iam::123456789012:role/svc".into(),
                "arn:aws:iam::123456789012:root".into(),
                "arn:aws:iam::123456789012:user/path/u".into(),
            ],
            ..Default::default()
        };
        assert_eq!(
            resolve_clients(&[], &[ok], &stack()).unwrap()[0]
                .readers
                .len(),
            3
        );
    }

    #[test]
    fn methods_default_to_any_and_are_checked() {
        let m = resolve_methods(None, &stack()).unwrap();
        assert_eq!(m.len(), 1);
        assert_eq!(m[0].verb, "ANY");
        let mut table = BTreeMap::new();
        table.insert("get".to_string(), vec!["users/read".to_string()]);
        table.insert("ANY".to_string(), vec!["users/write".to_string()]);
        let m = resolve_methods(Some(&table), &stack()).unwrap();
        let verbs: Vec<_> = m.iter().map(|m| m.verb.as_str()).collect();
        assert_eq!(verbs, ["ANY", "GET"]);
        table.insert("FETCH".to_string(), vec!["users/read".to_string()]);
        assert!(resolve_methods(Some(&table), &stack())
            .unwrap_err()
            .to_string()
            .contains("`FETCH`"));
        let mut dup = BTreeMap::new();
        dup.insert("get".to_string(), vec!["users/read".to_string()]);
        dup.insert("GET".to_string(), vec!["users/read".to_string()]);
        assert!(resolve_methods(Some(&dup), &stack())
            .unwrap_err()
            .to_string()
            .contains("twice"));
    }

    #[test]
    fn readers_must_be_in_the_callers_account() {
        let spec = |reader: &str| ClientSpec {
            name: "admin".into(),
            scopes: Vec::new(),
            secret: true,
            readers: vec![reader.into()],
        };
        assert!(check_readers_in_account(
            &[spec("arn:aws:iam::123456789012:role/r")],
            "123456789012"
        )
        .is_ok());
        let err =
            check_readers_in_account(&[spec("arn:aws:iam::210987654321:role/r")], "123456789012")
                .unwrap_err()
                .to_string();
        assert!(
            err.contains("210987654321") && err.contains("aws/secretsmanager"),
            "{err}"
        );
    }
}
