//! Names and their rules, shared by every layer (configuration, the state store, the
//! SDK layer): a leaf, so that checking a name never pulls in what uses it.

use std::fmt;

use crate::errors::{Error, Result};

/// Region used with an endpoint URL when nothing else names one (emulators ignore it).
pub const LOCAL_DEFAULT_REGION: &str = "us-east-1";

/// The longest scope string an app client may be allowed (see `Scope::parse`).
pub const MAX_SCOPE_LEN: usize = 256;
/// The most scopes one app client may be allowed: AllowedOAuthScopes has at most 50
/// items (a resource server may define 100), and a client gets all of the stack's:
/// https://docs.aws.amazon.com/cognito-user-identity-pools/latest/APIReference/API_UpdateUserPoolClient.html
/// https://docs.aws.amazon.com/cognito/latest/developerguide/quotas.html
pub const MAX_SCOPES: usize = 50;
/// Region names are at most 14 characters today (ap-southeast-5); the cap keeps
/// `<stack>-handler-<region>` within IAM's 64 for role names.
const MAX_REGION_LEN: usize = 20;

/// An OAuth scope `RESOURCE_SERVER/NAME`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Scope {
    pub server: String,
    pub name: String,
}

impl Scope {
    pub fn parse(s: &str) -> Result<Self> {
        let bad = |why: &str| {
            Error::usage(format!(
                "scope `{s}`: {why}; write it as RESOURCE_SERVER/SCOPE, e.g. users/read"
            ))
        };
        let (server, name) = s.split_once('/').ok_or_else(|| bad("no `/`"))?;
        let ok = |part: &str| {
            !part.is_empty()
                && part.len() <= 256
                && part
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
        };
        if !ok(server) {
            return Err(bad(
                "the resource server must be 1-256 of A-Z a-z 0-9 . _ -",
            ));
        }
        if !ok(name) {
            return Err(bad("the scope name must be 1-256 of A-Z a-z 0-9 . _ -"));
        }
        // The whole string is what the app client is allowed (AllowedOAuthScopes items:
        // 1-256 characters) and our scope description (ScopeDescription: 1-256):
        // https://docs.aws.amazon.com/cognito-user-identity-pools/latest/APIReference/API_UpdateUserPoolClient.html
        // https://docs.aws.amazon.com/cognito-user-identity-pools/latest/APIReference/API_ResourceServerScopeType.html
        if s.len() > MAX_SCOPE_LEN {
            return Err(bad(&format!(
                "{} characters; Cognito allows at most {MAX_SCOPE_LEN} for RESOURCE_SERVER/SCOPE",
                s.len()
            )));
        }
        Ok(Scope {
            server: server.to_string(),
            name: name.to_string(),
        })
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.server, self.name)
    }
}

pub fn validate_stack(stack: &str) -> Result<()> {
    let valid_chars = stack
        .chars()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
    if stack.is_empty() || stack.len() > 32 || !valid_chars {
        return Err(Error::usage(format!(
            "stack name `{stack}`: use 1 to 32 characters of a-z, 0-9 and -"
        )));
    }
    Ok(())
}

pub fn validate_region(region: &str) -> Result<()> {
    // e.g. us-east-1, eu-central-2, us-gov-west-1, ap-southeast-4
    let parts: Vec<&str> = region.split('-').collect();
    let ok = parts.len() >= 3
        && parts[0].len() == 2
        && parts[..parts.len() - 1]
            .iter()
            .all(|p| !p.is_empty() && p.chars().all(|c| c.is_ascii_lowercase()))
        && parts[parts.len() - 1].chars().all(|c| c.is_ascii_digit())
        && !parts[parts.len() - 1].is_empty()
        && region.len() <= MAX_REGION_LEN;
    if ok {
        Ok(())
    } else {
        Err(Error::usage(format!(
            "region `{region}`: not a region name; use one like us-east-1"
        )))
    }
}
