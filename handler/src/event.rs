//! What the handler needs from an API Gateway proxy event, read from either payload format.
//!
//! The REST API (and an HTTP API integration at payload format 1.0) sends the 1.0 event: method
//! in `httpMethod`, path in `path`, a Cognito authorizer's claims in
//! `requestContext.authorizer.claims`. An HTTP API integration at 2.0 marks its event with
//! `"version": "2.0"` and moves everything: method in `requestContext.http.method`, path in
//! `rawPath`, a JWT authorizer's claims in `requestContext.authorizer.jwt.claims` and the token's
//! scopes, already split, in `requestContext.authorizer.jwt.scopes`.
//!
//! The event is read as plain JSON rather than through `lambda_http`: that crate (not a
//! dependency here) tries each event shape in turn as an untagged enum, which needs its typed
//! event structs, `http` and body handling for four fields. The `version` marker is what API
//! Gateway documents for telling the formats apart, so it is what decides here too.

use serde_json::Value;

/// Which payload format an event came in; decides where each field lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    V1,
    V2,
}

/// The parts of one request the handler answers with and logs. Borrowed from the event.
#[derive(Debug, PartialEq)]
pub struct Request<'a> {
    pub format: Format,
    pub method: Option<&'a str>,
    pub path: Option<&'a str>,
    pub client_id: Option<&'a str>,
    /// The token's scopes as Cognito writes them in the `scope` claim: space-separated.
    pub scope: Option<String>,
}

pub fn format_of(event: &Value) -> Format {
    // HTTP APIs at 1.0 send `"version": "1.0"`, REST APIs no version at all: both are 1.0.
    match event.get("version").and_then(Value::as_str) {
        Some("2.0") => Format::V2,
        _ => Format::V1,
    }
}

fn text<'a>(event: &'a Value, pointer: &str) -> Option<&'a str> {
    event.pointer(pointer).and_then(Value::as_str)
}

pub fn read(event: &Value) -> Request<'_> {
    let format = format_of(event);
    let (method, path, claims) = match format {
        Format::V1 => (
            text(event, "/httpMethod"),
            text(event, "/path"),
            event.pointer("/requestContext/authorizer/claims"),
        ),
        Format::V2 => (
            text(event, "/requestContext/http/method"),
            text(event, "/rawPath"),
            event.pointer("/requestContext/authorizer/jwt/claims"),
        ),
    };
    let claim = |name: &str| claims.and_then(|c| c.get(name)).and_then(Value::as_str);
    let scope = claim("scope").map(str::to_owned).or_else(|| {
        // A JWT authorizer also passes the scopes as a list; used only when the claim itself is
        // missing, so both fronts report the claim's own text when there is one.
        let scopes = event.pointer("/requestContext/authorizer/jwt/scopes")?;
        let words: Vec<&str> = scopes
            .as_array()?
            .iter()
            .filter_map(Value::as_str)
            .collect();
        (!words.is_empty()).then(|| words.join(" "))
    });
    Request {
        format,
        method,
        path,
        client_id: claim("client_id"),
        scope,
    }
}

#[cfg(test)]
pub(crate) mod samples {
    //! Events shaped as API Gateway documents them ("Create AWS Lambda proxy integrations for
    //! HTTP APIs" and "Lambda proxy integrations" for REST), carrying the claims of a Cognito
    //! client-credentials access token. In 2.0 every claim arrives as a string.
    use serde_json::{json, Value};

    pub fn rest_v1(method: &str, path: &str, client_id: &str, scope: &str) -> Value {
        json!({
            "resource": "/{proxy+}",
            "path": path,
            "httpMethod": method,
            "headers": {
                "Authorization": "Bearer eyJraWQiOi.secret-token.sig",
                "Host": "abc123.execute-api.us-east-1.amazonaws.com",
                "User-Agent": "curl/8.5.0"
            },
            "multiValueHeaders": {
                "Authorization": ["Bearer eyJraWQiOi.secret-token.sig"]
            },
            "queryStringParameters": null,
            "multiValueQueryStringParameters": null,
            "pathParameters": { "proxy": path.trim_start_matches('/') },
            "stageVariables": null,
            "requestContext": {
                "resourceId": "a1b2c3",
                "resourcePath": "/{proxy+}",
                "httpMethod": method,
                "path": format!("/prod{path}"),
                "accountId": "123456789012",
                "stage": "prod",
                "requestId": "c6af9ac6-7b61-11e6-9a41-93e8deadbeef",
                "identity": { "sourceIp": "203.0.113.7", "userAgent": "curl/8.5.0" },
                "authorizer": {
                    "claims": {
                        "sub": client_id,
                        "token_use": "access",
                        "scope": scope,
                        "auth_time": "1764766800",
                        "iss": "https://cognito-idp.us-east-1.amazonaws.com/us-east-1_Abc123",
                        "exp": "Thu Dec 03 15:00:00 UTC 2026",
                        "iat": "Thu Dec 03 14:00:00 UTC 2026",
                        "version": "2",
                        "jti": "5d2c9e0e-1111-2222-3333-444455556666",
                        "client_id": client_id
                    }
                },
                "apiId": "abc123"
            },
            "body": null,
            "isBase64Encoded": false
        })
    }

    pub fn http_v2(method: &str, path: &str, client_id: &str, scope: &str) -> Value {
        let scopes: Vec<&str> = scope.split(' ').collect();
        json!({
            "version": "2.0",
            "routeKey": format!("{method} /{{proxy+}}"),
            "rawPath": path,
            "rawQueryString": "",
            "headers": {
                "authorization": "Bearer eyJraWQiOi.secret-token.sig",
                "content-length": "0",
                "host": "def456.execute-api.us-east-1.amazonaws.com",
                "user-agent": "curl/8.5.0",
                "x-forwarded-for": "203.0.113.7",
                "x-forwarded-port": "443",
                "x-forwarded-proto": "https"
            },
            "requestContext": {
                "accountId": "123456789012",
                "apiId": "def456",
                "authorizer": {
                    "jwt": {
                        "claims": {
                            "auth_time": "1764766800",
                            "client_id": client_id,
                            "exp": "1764770400",
                            "iat": "1764766800",
                            "iss": "https://cognito-idp.us-east-1.amazonaws.com/us-east-1_Abc123",
                            "jti": "5d2c9e0e-1111-2222-3333-444455556666",
                            "scope": scope,
                            "sub": client_id,
                            "token_use": "access",
                            "version": "2"
                        },
                        "scopes": scopes
                    }
                },
                "domainName": "def456.execute-api.us-east-1.amazonaws.com",
                "domainPrefix": "def456",
                "http": {
                    "method": method,
                    "path": path,
                    "protocol": "HTTP/1.1",
                    "sourceIp": "203.0.113.7",
                    "userAgent": "curl/8.5.0"
                },
                "requestId": "JKJaXmPLvHcESHA=",
                "routeKey": format!("{method} /{{proxy+}}"),
                "stage": "$default",
                "time": "03/Dec/2026:14:00:00 +0000",
                "timeEpoch": 1764770400000u64
            },
            "pathParameters": { "proxy": path.trim_start_matches('/') },
            "isBase64Encoded": false
        })
    }
}

#[cfg(test)]
mod tests {
    use super::samples::{http_v2, rest_v1};
    use super::*;
    use serde_json::json;

    #[test]
    fn the_version_marker_alone_decides_the_format() {
        assert_eq!(format_of(&http_v2("GET", "/", "c", "s")), Format::V2);
        assert_eq!(format_of(&rest_v1("GET", "/", "c", "s")), Format::V1);
        // An HTTP API integration left at payload 1.0 says so; it is the REST shape.
        assert_eq!(
            format_of(&json!({"version": "1.0", "httpMethod": "GET"})),
            Format::V1
        );
    }

    #[test]
    fn both_formats_give_the_same_request() {
        let rest = rest_v1("POST", "/orders/7", "abc123", "m2m/read m2m/write");
        let http = http_v2("POST", "/orders/7", "abc123", "m2m/read m2m/write");
        let (v1, v2) = (read(&rest), read(&http));
        assert_eq!(v1.format, Format::V1);
        assert_eq!(v2.format, Format::V2);
        for request in [&v1, &v2] {
            assert_eq!(request.method, Some("POST"));
            assert_eq!(request.path, Some("/orders/7"));
            assert_eq!(request.client_id, Some("abc123"));
            assert_eq!(request.scope.as_deref(), Some("m2m/read m2m/write"));
        }
    }

    #[test]
    fn a_v2_event_is_not_read_at_the_v1_places() {
        // The v2 sample has no `httpMethod`/`path`/`authorizer.claims`; reading it as 1.0 would
        // find nothing, which is what the handler did before it knew 2.0.
        let mut event = http_v2("GET", "/items", "abc123", "m2m/read");
        event["version"] = json!("1.0");
        let request = read(&event);
        assert_eq!(
            (request.method, request.path, request.client_id),
            (None, None, None)
        );
    }

    #[test]
    fn without_the_scope_claim_the_jwt_scopes_list_is_used() {
        let mut event = http_v2("GET", "/", "abc123", "m2m/read m2m/write");
        let claims = event
            .pointer_mut("/requestContext/authorizer/jwt/claims")
            .unwrap();
        claims.as_object_mut().unwrap().remove("scope");
        assert_eq!(read(&event).scope.as_deref(), Some("m2m/read m2m/write"));
        event["requestContext"]["authorizer"]["jwt"]["scopes"] = json!(null);
        assert_eq!(read(&event).scope, None);
    }

    #[test]
    fn no_authorizer_means_no_caller_in_either_format() {
        for mut event in [rest_v1("GET", "/", "c", "s"), http_v2("GET", "/", "c", "s")] {
            event["requestContext"]
                .as_object_mut()
                .unwrap()
                .remove("authorizer");
            let request = read(&event);
            assert_eq!(request.method, Some("GET"));
            assert_eq!((request.client_id, request.scope), (None, None));
        }
    }
}
