//! The Lambda function behind the stack's API.
//!
//! It answers every method and path with 200 and a JSON greeting that names the
//! authenticated client. The front door's authorizer (the REST API's
//! COGNITO_USER_POOLS one, or the HTTP API's JWT one) has already checked the
//! token by the time we run; we only echo the claims it passed on. Both payload
//! formats are read (see `event`), and one response serves both.

mod event;

use lambda_runtime::{service_fn, Error, LambdaEvent};
use serde_json::{json, Value};

/// The body's constant part, as in the AWS sample this stack re-does.
pub const MESSAGE: &str = "Hello Authenticated Client!";

/// Builds the API Gateway proxy response for one event.
///
/// Always the full response object, never a bare body: payload 1.0 requires it, and at 2.0 an
/// object without `statusCode` would be taken for the body itself and sent back whole.
pub fn respond(event: &Value) -> Value {
    let request = event::read(event);
    let body = json!({
        "message": MESSAGE,
        "client_id": request.client_id,
        "scope": request.scope,
    });
    json!({
        "statusCode": 200,
        "headers": { "Content-Type": "application/json" },
        "isBase64Encoded": false,
        "body": body.to_string(),
    })
}

/// One structured line per request for the function's log group (`provision logs`):
/// method, path, client id and status. Never a header: the token stays out.
pub fn log_line(event: &Value, response: &Value) -> String {
    let request = event::read(event);
    json!({
        "method": request.method,
        "path": request.path,
        "client_id": request.client_id,
        "status": response.get("statusCode"),
    })
    .to_string()
}

#[tokio::main]
async fn main() -> Result<(), Error> {
    lambda_runtime::run(service_fn(|event: LambdaEvent<Value>| async move {
        let response = respond(&event.payload);
        // Lambda sends stdout and stderr to the log group; MiniStack keeps stderr only.
        eprintln!("{}", log_line(&event.payload, &response));
        Ok::<Value, Error>(response)
    }))
    .await
}

#[cfg(test)]
mod tests {
    use super::event::samples::{http_v2, rest_v1};
    use super::*;

    fn body_of(response: &Value) -> Value {
        serde_json::from_str(response["body"].as_str().expect("body is a string"))
            .expect("body is JSON")
    }

    #[test]
    fn answers_200_json_with_the_claims_of_the_authorizer() {
        let event = json!({
            "httpMethod": "POST",
            "path": "/orders/7",
            "requestContext": {
                "authorizer": {
                    "claims": { "client_id": "abc123", "scope": "users/read", "token_use": "access" }
                }
            }
        });
        let response = respond(&event);
        assert_eq!(response["statusCode"], 200);
        assert_eq!(response["headers"]["Content-Type"], "application/json");
        let body = body_of(&response);
        assert_eq!(body["message"], MESSAGE);
        assert_eq!(body["client_id"], "abc123");
        assert_eq!(body["scope"], "users/read");
    }

    #[test]
    fn logs_one_line_with_method_path_client_and_status_but_no_token() {
        let event = json!({
            "httpMethod": "GET",
            "path": "/items",
            "headers": { "Authorization": "Bearer secret-token" },
            "requestContext": { "authorizer": { "claims": { "client_id": "abc123" } } }
        });
        let line = log_line(&event, &respond(&event));
        assert!(!line.contains('\n'));
        let v: Value = serde_json::from_str(&line).unwrap();
        assert_eq!(v["method"], "GET");
        assert_eq!(v["path"], "/items");
        assert_eq!(v["client_id"], "abc123");
        assert_eq!(v["status"], 200);
        assert!(!line.contains("secret-token"));
    }

    #[test]
    fn both_payload_formats_get_the_same_greeting_client_and_scopes() {
        let v1 = respond(&rest_v1("GET", "/items", "abc123", "m2m/read m2m/write"));
        let v2 = respond(&http_v2("GET", "/items", "abc123", "m2m/read m2m/write"));
        assert_eq!(v1, v2);
        let body = body_of(&v2);
        assert_eq!(body["message"], MESSAGE);
        assert_eq!(body["client_id"], "abc123");
        assert_eq!(body["scope"], "m2m/read m2m/write");
    }

    #[test]
    fn the_response_is_a_response_object_at_payload_2_0_not_a_bare_body() {
        // At 2.0 API Gateway takes a JSON answer without an integer `statusCode` to be the body.
        let response = respond(&http_v2("POST", "/", "abc123", "m2m/write"));
        assert_eq!(response["statusCode"].as_u64(), Some(200));
        assert!(response["body"].is_string());
        assert_eq!(response["isBase64Encoded"], false);
    }

    #[test]
    fn the_log_line_is_the_same_for_both_formats_and_holds_no_token() {
        for event in [
            rest_v1("DELETE", "/orders/7", "abc123", "m2m/write"),
            http_v2("DELETE", "/orders/7", "abc123", "m2m/write"),
        ] {
            let line = log_line(&event, &respond(&event));
            let v: Value = serde_json::from_str(&line).unwrap();
            assert_eq!(v["method"], "DELETE");
            assert_eq!(v["path"], "/orders/7");
            assert_eq!(v["client_id"], "abc123");
            assert_eq!(v["status"], 200);
            assert!(!line.contains("secret-token"), "{line}");
        }
    }

    #[test]
    fn without_an_authorizer_the_claims_are_null_not_an_error() {
        for event in [json!({}), json!({"requestContext": {"authorizer": null}})] {
            let response = respond(&event);
            assert_eq!(response["statusCode"], 200);
            let body = body_of(&response);
            assert_eq!(body["message"], MESSAGE);
            assert!(body["client_id"].is_null());
            assert!(body["scope"].is_null());
        }
    }
}
