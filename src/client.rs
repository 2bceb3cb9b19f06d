//! The data plane: the token endpoint and the API, as a client service would call them.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::errors::{Error, Result};

/// The stack's token endpoint.
pub fn token_url(endpoint_url: Option<&str>, domain_prefix: &str, region: &str) -> String {
    match endpoint_url {
        Some(e) => format!("{}/oauth2/token", e.trim_end_matches('/')),
        None => format!("https://{domain_prefix}.auth.{region}.amazoncognito.com/oauth2/token"),
    }
}

/// The base URL of the API's `prod` stage, ending in `/`.
pub fn api_url(endpoint_url: Option<&str>, api_id: &str, stage: &str, region: &str) -> String {
    match endpoint_url {
        Some(e) => format!(
            "{}/restapis/{api_id}/{stage}/_user_request_/",
            e.trim_end_matches('/')
        ),
        None => format!("https://{api_id}.execute-api.{region}.amazonaws.com/{stage}/"),
    }
}

/// `base` (ending in `/`) joined with a path such as `/orders/7`.
pub fn join(base: &str, path: &str) -> String {
    format!("{base}{}", path.trim_start_matches('/'))
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Token {
    pub access_token: String,
    #[serde(default)]
    pub expires_in: u64,
    #[serde(default)]
    pub token_type: String,
    #[serde(default)]
    pub scope: String,
}

fn http() -> Result<reqwest::Client> {
    reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(5))
        .timeout(Duration::from_secs(30))
        .build()
        .map_err(|e| Error::Http(format!("setting up the HTTP client: {e}")))
}

/// The client_credentials grant. The secret goes in the Authorization header only.
///
/// `wait_for_dns`: a new Cognito domain can take a minute or so to resolve; keep trying
/// to connect for that long (AWS only: an emulator that does not answer is just down).
pub async fn token(
    url: &str,
    client_id: &str,
    secret: &str,
    scopes: &[String],
    wait_for_dns: bool,
) -> Result<Token> {
    let scope = scopes.join(" ");
    let started = std::time::Instant::now();
    let mut delay = Duration::from_secs(1);
    let response = loop {
        let sent = http()?
            .post(url)
            .basic_auth(client_id, Some(secret))
            .form(&[
                ("grant_type", "client_credentials"),
                ("scope", scope.as_str()),
            ])
            .send()
            .await;
        match sent {
            Ok(r) => break r,
            Err(e)
                if wait_for_dns
                    && e.is_connect()
                    && started.elapsed() + delay < Duration::from_secs(90) =>
            {
                crate::report::progress(&format!(
                    "the token endpoint does not answer yet (a new domain takes a minute or so to resolve); retrying in {}s",
                    delay.as_secs()
                ));
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(15));
            }
            Err(e) => {
                return Err(Error::Http(format!(
                    "requesting a token from {url}: {}",
                    reqwest_reason(&e)
                )))
            }
        }
    };
    let status = response.status();
    let body = response
        .text()
        .await
        .map_err(|e| Error::Http(format!("reading the token response of {url}: {e}")))?;
    if !status.is_success() {
        let detail = serde_json::from_str::<serde_json::Value>(&body)
            .ok()
            .and_then(|v| v.get("error").and_then(|e| e.as_str()).map(str::to_string))
            .unwrap_or_else(|| body.chars().take(200).collect());
        return Err(Error::Http(format!(
            "token endpoint {url} answered {}: {detail}; run `provision status` to check the app client and domain",
            status.as_u16()
        )));
    }
    let mut token: Token = serde_json::from_str(&body).map_err(|_| {
        Error::Http(format!(
            "token endpoint {url} answered {} without a token",
            status.as_u16()
        ))
    })?;
    if token.scope.is_empty() {
        token.scope = scope;
    }
    Ok(token)
}

pub struct Reply {
    pub status: u16,
    pub body: String,
}

pub async fn call(
    url: &str,
    method: &str,
    token: Option<&str>,
    body: Option<&str>,
) -> Result<Reply> {
    let method = reqwest::Method::from_bytes(method.to_ascii_uppercase().as_bytes())
        .map_err(|_| Error::usage(format!("method `{method}`: not an HTTP method")))?;
    let mut request = http()?.request(method, url);
    if let Some(t) = token {
        request = request.header("Authorization", t);
    }
    if let Some(b) = body {
        request = request
            .header("Content-Type", "application/json")
            .body(b.to_string());
    }
    let response = request
        .send()
        .await
        .map_err(|e| Error::Http(format!("calling {url}: {}", reqwest_reason(&e))))?;
    let status = response.status().as_u16();
    let body = response
        .text()
        .await
        .map_err(|e| Error::Http(format!("reading the answer of {url}: {e}")))?;
    Ok(Reply { status, body })
}

fn reqwest_reason(e: &reqwest::Error) -> String {
    let mut msg = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        msg.push_str(&format!(": {s}"));
        source = s.source();
    }
    msg
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn local_urls_take_the_emulator_form() {
        assert_eq!(
            token_url(Some("http://127.0.0.1:4566/"), "p", "us-east-1"),
            "http://127.0.0.1:4566/oauth2/token"
        );
        assert_eq!(
            api_url(Some("http://127.0.0.1:4566"), "abc123", "prod", "us-east-1"),
            "http://127.0.0.1:4566/restapis/abc123/prod/_user_request_/"
        );
    }

    #[test]
    fn aws_urls_take_the_real_form() {
        assert_eq!(
            token_url(None, "m2m-api-1a2b3c4d", "eu-west-1"),
            "https://m2m-api-1a2b3c4d.auth.eu-west-1.amazoncognito.com/oauth2/token"
        );
        assert_eq!(
            api_url(None, "abc123", "prod", "eu-west-1"),
            "https://abc123.execute-api.eu-west-1.amazonaws.com/prod/"
        );
    }

    #[test]
    fn paths_join_under_the_stage() {
        let base = "https://x/prod/";
        assert_eq!(join(base, "/"), "https://x/prod/");
        assert_eq!(join(base, "/orders/7"), "https://x/prod/orders/7");
        assert_eq!(join(base, "orders"), "https://x/prod/orders");
    }
}
