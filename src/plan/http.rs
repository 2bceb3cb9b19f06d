//! The settings of the HTTP API front door's resources (API Gateway v2).

use super::Settings;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpApiSettings {
    /// HTTP (a WEBSOCKET API of the stack's name is not one provision changes).
    pub protocol: String,
}
settings!(HttpApiSettings { protocol });

/// The JWT authorizer: Cognito's access tokens, checked by issuer and audience.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JwtSettings {
    pub kind: String,
    pub identity_source: Vec<String>,
    pub issuer: String,
    /// Every app client id of the stack, sorted (client-credentials tokens carry
    /// `client_id`, which the authorizer checks against the audience).
    pub audience: Vec<String>,
}
settings!(JwtSettings {
    kind,
    identity_source,
    issuer,
    audience
});

/// The one Lambda integration every route targets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IntegrationSettings {
    pub integration_type: String,
    pub uri: String,
    pub payload_format_version: String,
}
settings!(IntegrationSettings {
    integration_type,
    uri,
    payload_format_version
});

/// A route: who may call it (authorizer, scopes) and where it goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteSettings {
    pub authorization_type: String,
    pub authorizer_id: String,
    /// Sorted.
    pub scopes: Vec<String>,
    pub target: String,
}
settings!(RouteSettings {
    authorization_type,
    authorizer_id,
    scopes,
    target
});

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpStageSettings {
    pub auto_deploy: bool,
}
settings!(HttpStageSettings { auto_deploy });
