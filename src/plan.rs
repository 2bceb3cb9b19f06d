//! Deciding, without I/O: desired settings × what AWS has → create, update (which
//! fields) or leave alone; and the hash that says when the API must be redeployed.
//!
//! Every resource kind describes its settings with one struct, filled once from the
//! configuration (desired) and once from AWS's answer (observed). Comparing the two
//! is the whole plan for that resource.

use serde::Serialize;

use crate::report::Action;

/// Settings that can be compared field by field.
pub trait Settings {
    /// The names of the fields whose values differ.
    fn diff(&self, observed: &Self) -> Vec<&'static str>;
}

/// Implements `Settings` by comparing the named fields.
macro_rules! settings {
    ($t:ty { $($field:ident),+ $(,)? }) => {
        impl Settings for $t {
            fn diff(&self, observed: &Self) -> Vec<&'static str> {
                let mut fields = Vec::new();
                $( if self.$field != observed.$field { fields.push(stringify!($field)); } )+
                fields
            }
        }
    };
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    Create,
    Update(Vec<&'static str>),
    Unchanged,
}

/// The plan for one resource.
pub fn decide<S: Settings>(desired: &S, observed: Option<&S>) -> Decision {
    match observed {
        None => Decision::Create,
        Some(o) => {
            let fields = desired.diff(o);
            if fields.is_empty() {
                Decision::Unchanged
            } else {
                Decision::Update(fields)
            }
        }
    }
}

/// What a resource's line says: an existing resource that the state file did not
/// know is `adopted`, whether or not it also needed an update.
pub fn action(decision: &Decision, recorded: bool) -> Action {
    match decision {
        Decision::Create => Action::Created,
        _ if !recorded => Action::Adopted,
        Decision::Update(_) => Action::Updated,
        Decision::Unchanged => Action::Unchanged,
    }
}

/// `status`'s verdict on one resource.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Health {
    Ok,
    Drifted,
    Missing,
    /// Ours, but not in the configuration: the next `up` deletes it.
    Extra,
}

/// From what a dry run would do: create → missing, update → drifted, delete → extra.
pub fn health(action: Action, changes: &[String]) -> Health {
    match action {
        Action::Created => Health::Missing,
        Action::Deleted => Health::Extra,
        _ if !changes.is_empty() => Health::Drifted,
        _ => Health::Ok,
    }
}

pub fn changes(decision: &Decision) -> Vec<String> {
    match decision {
        Decision::Update(fields) => fields.iter().map(|f| f.to_string()).collect(),
        _ => Vec::new(),
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoleSettings {
    /// The trust policy, normalized so that it compares as a document.
    pub trust_policy: serde_json::Value,
    /// Managed policies attached, sorted.
    pub policies: Vec<String>,
    /// Names of inline policies, sorted: provision grants one, its logs policy.
    pub inline_policies: Vec<String>,
    /// That logs policy's document, normalized (Null when the role has none).
    pub logs_policy: serde_json::Value,
    /// The permissions boundary's ARN ("" for none).
    pub boundary: String,
}
settings!(RoleSettings {
    trust_policy,
    policies,
    inline_policies,
    logs_policy,
    boundary
});

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FunctionSettings {
    pub code_sha256: String,
    pub memory_mb: i32,
    pub timeout_s: i32,
    pub runtime: String,
    pub handler: String,
    pub role_arn: String,
    pub architecture: String,
}
settings!(FunctionSettings {
    code_sha256,
    memory_mb,
    timeout_s,
    runtime,
    handler,
    role_arn,
    architecture
});

impl FunctionSettings {
    /// The fields UpdateFunctionCode changes; the others need UpdateFunctionConfiguration.
    pub const CODE_FIELDS: [&'static str; 2] = ["code_sha256", "architecture"];
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PoolSettings {
    pub admin_only_sign_up: bool,
}
settings!(PoolSettings { admin_only_sign_up });

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DomainSettings {
    pub prefix: String,
}
settings!(DomainSettings { prefix });

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResourceServerSettings {
    /// Scope names, sorted.
    pub scopes: Vec<String>,
}
settings!(ResourceServerSettings { scopes });

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientSettings {
    pub has_secret: bool,
    /// Sorted.
    pub flows: Vec<String>,
    /// Full scope strings, sorted.
    pub scopes: Vec<String>,
    pub oauth_enabled: bool,
    pub access_token_validity_min: i32,
}
settings!(ClientSettings {
    has_secret,
    flows,
    scopes,
    oauth_enabled,
    access_token_validity_min
});

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiSettings {
    pub endpoint_types: Vec<String>,
}
settings!(ApiSettings { endpoint_types });

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AuthorizerSettings {
    pub kind: String,
    pub provider_arns: Vec<String>,
    pub identity_source: String,
}
settings!(AuthorizerSettings {
    kind,
    provider_arns,
    identity_source
});

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MethodSettings {
    pub authorization_type: String,
    pub authorizer_id: String,
    /// Sorted.
    pub scopes: Vec<String>,
    pub integration_type: String,
    pub integration_method: String,
    pub integration_uri: String,
}
settings!(MethodSettings {
    authorization_type,
    authorizer_id,
    scopes,
    integration_type,
    integration_method,
    integration_uri
});

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PermissionSettings {
    pub principal: String,
    pub action: String,
    pub source_arn: String,
    /// The ids of the other statements in the function's resource policy, sorted:
    /// provision grants no one else anything.
    pub extra_statements: Vec<String>,
}
settings!(PermissionSettings {
    principal,
    action,
    source_arn,
    extra_statements
});

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogGroupSettings {
    /// 0: never expire.
    pub retention_days: i32,
    /// Carries the stack's tag (a group Lambda made by itself does not).
    pub tagged: bool,
}
settings!(LogGroupSettings {
    retention_days,
    tagged
});

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecretSettings {
    /// What the secret holds (besides the client secret itself).
    pub client_id: String,
    pub scope: String,
    pub token_url: String,
    /// Its resource policy, normalized: exactly the readers may read it.
    pub readers: serde_json::Value,
}
settings!(SecretSettings {
    client_id,
    scope,
    token_url,
    readers
});

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StageSettings {
    /// Hash of the API definition the stage's deployment was made from.
    pub definition: String,
}
settings!(StageSettings { definition });

mod http;
pub use http::{
    HttpApiSettings, HttpStageSettings, IntegrationSettings, JwtSettings, RouteSettings,
};

/// Marks a deployment's description, so that a run without a state file can still
/// tell which definition a stage serves.
pub const DEFINITION_MARK: &str = "provision definition ";

/// A short, stable hash of everything that shapes the deployed API.
pub fn definition_hash(
    authorizer: &AuthorizerSettings,
    methods: &[(&str, &MethodSettings)],
) -> String {
    use sha2::{Digest, Sha256};
    let canonical = serde_json::json!({
        "version": 1,
        "authorizer": authorizer,
        "methods": methods,
    });
    hex::encode(&Sha256::digest(canonical.to_string().as_bytes())[..8])
}

/// Reads the hash back from a deployment's description.
pub fn definition_from_description(description: Option<&str>) -> String {
    description
        .and_then(|d| d.strip_prefix(DEFINITION_MARK))
        .unwrap_or("")
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn function(memory: i32) -> FunctionSettings {
        FunctionSettings {
            code_sha256: "abc".into(),
            memory_mb: memory,
            timeout_s: 10,
            runtime: "provided.al2023".into(),
            handler: "bootstrap".into(),
            role_arn: "arn:aws:iam::1:role/r".into(),
            architecture: "x86_64".into(),
        }
    }

    #[test]
    fn absent_is_created_equal_is_unchanged_different_is_updated_with_fields() {
        let desired = function(128);
        assert_eq!(decide(&desired, None), Decision::Create);
        assert_eq!(decide(&desired, Some(&function(128))), Decision::Unchanged);
        let mut observed = function(256);
        observed.code_sha256 = "old".into();
        assert_eq!(
            decide(&desired, Some(&observed)),
            Decision::Update(vec!["code_sha256", "memory_mb"])
        );
    }

    #[test]
    fn unrecorded_existing_resources_are_adopted() {
        assert_eq!(action(&Decision::Create, false), Action::Created);
        assert_eq!(action(&Decision::Create, true), Action::Created);
        assert_eq!(action(&Decision::Unchanged, false), Action::Adopted);
        assert_eq!(action(&Decision::Update(vec!["x"]), false), Action::Adopted);
        assert_eq!(action(&Decision::Unchanged, true), Action::Unchanged);
        assert_eq!(action(&Decision::Update(vec!["x"]), true), Action::Updated);
    }

    #[test]
    fn status_maps_missing_and_drifted() {
        let drift = changes(&Decision::Update(vec!["scopes"]));
        assert_eq!(health(Action::Created, &[]), Health::Missing);
        assert_eq!(health(Action::Updated, &drift), Health::Drifted);
        assert_eq!(health(Action::Adopted, &drift), Health::Drifted);
        assert_eq!(health(Action::Adopted, &[]), Health::Ok);
        assert_eq!(health(Action::Unchanged, &[]), Health::Ok);
        assert_eq!(health(Action::Deleted, &[]), Health::Extra);
        assert_eq!(changes(&Decision::Update(vec!["scopes"])), ["scopes"]);
    }

    #[test]
    fn client_drift_names_the_field() {
        let desired = ClientSettings {
            has_secret: true,
            flows: vec!["client_credentials".into()],
            scopes: vec!["users/read".into()],
            oauth_enabled: true,
            access_token_validity_min: 60,
        };
        let mut observed = desired.clone();
        observed.scopes = vec!["users/write".into()];
        assert_eq!(
            decide(&desired, Some(&observed)),
            Decision::Update(vec!["scopes"])
        );
    }

    #[test]
    fn definition_hash_changes_with_scopes_and_round_trips_through_the_description() {
        let auth = AuthorizerSettings {
            kind: "COGNITO_USER_POOLS".into(),
            provider_arns: vec!["arn:pool".into()],
            identity_source: "method.request.header.Authorization".into(),
        };
        let m = |scope: &str| MethodSettings {
            authorization_type: "COGNITO_USER_POOLS".into(),
            authorizer_id: "a1".into(),
            scopes: vec![scope.into()],
            integration_type: "AWS_PROXY".into(),
            integration_method: "POST".into(),
            integration_uri: "uri".into(),
        };
        let (r, w) = (m("users/read"), m("users/write"));
        let h1 = definition_hash(&auth, &[("/", &r), ("/{proxy+}", &r)]);
        assert_eq!(h1, definition_hash(&auth, &[("/", &r), ("/{proxy+}", &r)]));
        assert_ne!(h1, definition_hash(&auth, &[("/", &w), ("/{proxy+}", &w)]));
        assert_eq!(h1.len(), 16);
        let description = format!("{DEFINITION_MARK}{h1}");
        assert_eq!(definition_from_description(Some(&description)), h1);
        assert_eq!(definition_from_description(Some("made by hand")), "");
        assert_eq!(definition_from_description(None), "");
    }
}
