//! The Lambda function behind the stack's API.
//!
//! It answers every method and path with 200 and a JSON greeting that names the
//! authenticated client. API Gateway's COGNITO_USER_POOLS authorizer has already
//! checked the token by the time we run; we only echo the claims it passed on.
//!
//! The event is read as plain JSON rather than through `lambda_http`'s typed
//! request: the handler needs two fields, and fewer dependencies keep the
//! Lambda build (and the cold start) small.

use lambda_runtime::{service_fn, Error, LambdaEvent};
use serde_json::{json, Value};

/// The body's constant part, as in the AWS sample this stack re-does.
pub const MESSAGE: &str = "Hello Authenticated Client!";

/// The claims the authorizer put in the request context, if any.
fn claim<'a>(event: &'a Value, name: &str) -> Option<&'a Value> {
    event
        .pointer("/requestContext/authorizer/claims")
        .and_then(|claims| claims.get(name))
        .filter(|v| !v.is_null())
}

/// Builds the API Gateway proxy response for one event.
pub fn respond(event: &Value) -> Value {
    let body = json!({
        "message": MESSAGE,
        "client_id": claim(event, "client_id"),
        "scope": claim(event, "scope"),
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
    json!({
        "method": event.get("httpMethod"),
        "path": event.get("path"),
        "client_id": claim(event, "client_id"),
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
