//! Cognito's client-secret rotation, emulated in the test proxy: MiniStack 1.5.33 (like
//! moto 5.2.5) answers `InvalidAction` to `AddUserPoolClientSecret`,
//! `ListUserPoolClientSecrets` and `DeleteUserPoolClientSecret`, so the proxy answers
//! them itself, written from AWS's API reference (Amazon Cognito user pools API
//! Reference: those three actions and `ClientSecretDescriptorType`):
//!
//! - Per client, a list of live secrets. The first is the one the emulator made, with
//!   its value and `CreationDate` read from the emulator (DescribeUserPoolClient).
//!   Ids are `<client-id>--<epoch-create-time>`.
//! - Add: at most two live secrets (a third: `LimitExceededException`); a generated
//!   value, returned in this answer only.
//! - List: ids and creation dates, never a value (AWS: "the response never reveals the
//!   actual secret value").
//! - Delete: never the last (AWS: "You cannot delete the last remaining secret"; the
//!   reference names no error code for it: `InvalidParameterException` here); an
//!   unknown id: `ResourceNotFoundException`.
//! - The token endpoint accepts any live secret: for a newer one the proxy presents the
//!   emulator's own secret upstream (the emulator knows only that one); a deleted or
//!   unknown one gets `400 {"error":"invalid_client"}` without reaching the emulator.
//!   The emulator's own secret is still presented upstream after it is deleted here.
//! - DescribeUserPoolClient returns the emulator's (the client's original) secret while
//!   that one is live, and no `ClientSecret` once it is deleted. AWS's reference does not
//!   say which secret it returns; this is what a floci contributor reports observing on
//!   AWS (floci-io/floci PR #345), and the harder case for provision.
//!
//! `report_older_by` shifts every reported creation date back, so a test can check
//! `status --max-secret-age` without waiting days (the emulator's dates are "now").

use std::collections::HashMap;
use std::sync::Mutex;

use base64::Engine;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// One live secret of a client.
#[derive(Clone, Debug)]
struct Entry {
    id: String,
    value: String,
    created: f64,
}

#[derive(Debug, Default)]
struct Client {
    /// The value the emulator knows, presented upstream for every live secret.
    emulator_secret: String,
    live: Vec<Entry>,
}

#[derive(Default)]
pub struct Rotation {
    clients: Mutex<HashMap<String, Client>>,
    older_by_days: Mutex<f64>,
    /// Secrets handed out by Add, so tests can scan output for them.
    handed_out: Mutex<Vec<String>>,
}

/// What the proxy does with a request.
pub enum Verdict {
    /// Not ours: forward as it came.
    Pass,
    /// Forward this instead (the token endpoint with the emulator's own secret).
    Forward(String, Vec<u8>),
    /// Answer this, without the emulator.
    Answer(Vec<u8>),
}

impl Rotation {
    /// Every creation date reported from now on is `days` earlier.
    pub fn report_older_by(&self, days: f64) {
        *self.older_by_days.lock().unwrap() = days;
    }

    /// How many live secrets the client has here (0: never touched by rotation).
    pub fn live(&self, client_id: &str) -> usize {
        self.clients
            .lock()
            .unwrap()
            .get(client_id)
            .map_or(0, |c| c.live.len())
    }

    /// Every value Add has handed out.
    pub fn handed_out(&self) -> Vec<String> {
        self.handed_out.lock().unwrap().clone()
    }
}

fn now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

fn answer(status: &str, body: &Value) -> Vec<u8> {
    let body = body.to_string();
    format!(
        "HTTP/1.1 {status}\r\nContent-Type: application/x-amz-json-1.1\r\nContent-Length: {}\r\nx-amzn-RequestId: emulated\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

fn error(code: &str, message: &str) -> Vec<u8> {
    answer(
        "400 Bad Request",
        &json!({"__type": code, "message": message}),
    )
}

fn invalid_client() -> Vec<u8> {
    let body =
        json!({"error": "invalid_client", "error_description": "Invalid client credentials."})
            .to_string();
    format!(
        "HTTP/1.1 400 Bad Request\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

fn header<'a>(head: &'a str, name: &str) -> Option<&'a str> {
    head.lines().skip(1).find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.trim().eq_ignore_ascii_case(name).then(|| v.trim())
    })
}

/// A generated secret: 52 characters of [a-z0-9], like Cognito's.
fn generate() -> String {
    use std::hash::{BuildHasher, Hasher};
    let mut out = String::new();
    while out.len() < 52 {
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_u128(now().to_bits() as u128 ^ out.len() as u128);
        out.push_str(&format!("{:016x}", h.finish()));
    }
    out.truncate(52);
    out
}

/// The body of an HTTP response (Content-Length or chunked).
fn response_body(raw: &[u8]) -> Vec<u8> {
    let Some(end) = raw.windows(4).position(|w| w == b"\r\n\r\n") else {
        return Vec::new();
    };
    let head = String::from_utf8_lossy(&raw[..end]).to_ascii_lowercase();
    let mut rest = &raw[end + 4..];
    if !head.contains("transfer-encoding: chunked") {
        return rest.to_vec();
    }
    let mut body = Vec::new();
    while let Some(nl) = rest.windows(2).position(|w| w == b"\r\n") {
        let size =
            usize::from_str_radix(String::from_utf8_lossy(&rest[..nl]).trim(), 16).unwrap_or(0);
        if size == 0 {
            break;
        }
        body.extend_from_slice(&rest[nl + 2..nl + 2 + size]);
        rest = &rest[nl + 2 + size + 2..];
    }
    body
}

/// The emulator's own view of a client: (ClientSecret, CreationDate).
async fn describe_upstream(
    upstream: &str,
    auth: &str,
    pool: &str,
    client: &str,
) -> std::io::Result<Option<(String, f64)>> {
    let v = describe_raw(upstream, auth, pool, client).await?;
    let c = &v["UserPoolClient"];
    Ok(c["ClientSecret"].as_str().map(|s| {
        (
            s.to_string(),
            c["CreationDate"].as_f64().unwrap_or_else(now),
        )
    }))
}

/// The emulator's DescribeUserPoolClient answer, parsed.
async fn describe_raw(
    upstream: &str,
    auth: &str,
    pool: &str,
    client: &str,
) -> std::io::Result<Value> {
    let body = json!({"UserPoolId": pool, "ClientId": client}).to_string();
    let request = format!(
        "POST / HTTP/1.1\r\nHost: {upstream}\r\nContent-Type: application/x-amz-json-1.1\r\nX-Amz-Target: AWSCognitoIdentityProviderService.DescribeUserPoolClient\r\nAuthorization: {auth}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let mut up = TcpStream::connect(upstream).await?;
    up.write_all(request.as_bytes()).await?;
    let mut raw = Vec::new();
    up.read_to_end(&mut raw).await?;
    Ok(serde_json::from_slice(&response_body(&raw)).unwrap_or(Value::Null))
}

fn descriptor(e: &Entry, older_by: f64, with_value: bool) -> Value {
    let mut d = json!({
        "ClientSecretId": e.id,
        "ClientSecretCreateDate": e.created - older_by * 86_400.0,
    });
    if with_value {
        d["ClientSecretValue"] = json!(e.value);
    }
    d
}

/// Decides what to do with one request (see the module's comment).
pub async fn intercept(
    r: &Rotation,
    upstream: &str,
    head: &str,
    body: &[u8],
) -> std::io::Result<Verdict> {
    let path = head.split_whitespace().nth(1).unwrap_or("");
    if path.starts_with("/oauth2/token") {
        return Ok(token(r, head, body));
    }
    let Some(op) = header(head, "x-amz-target")
        .and_then(|t| t.strip_prefix("AWSCognitoIdentityProviderService."))
    else {
        return Ok(Verdict::Pass);
    };
    let req: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    let pool = req["UserPoolId"].as_str().unwrap_or_default().to_string();
    let client = req["ClientId"].as_str().unwrap_or_default().to_string();
    if op == "DescribeUserPoolClient" {
        let original_gone = r
            .clients
            .lock()
            .unwrap()
            .get(&client)
            .is_some_and(|c| !c.live.iter().any(|e| e.value == c.emulator_secret));
        if !original_gone {
            return Ok(Verdict::Pass);
        }
        let auth = header(head, "authorization").unwrap_or_default();
        let mut v = describe_raw(upstream, auth, &pool, &client).await?;
        if let Some(c) = v["UserPoolClient"].as_object_mut() {
            c.remove("ClientSecret");
        }
        return Ok(Verdict::Answer(answer("200 OK", &v)));
    }
    if !matches!(
        op,
        "AddUserPoolClientSecret" | "ListUserPoolClientSecrets" | "DeleteUserPoolClientSecret"
    ) {
        return Ok(Verdict::Pass);
    }
    let known = r.clients.lock().unwrap().contains_key(&client);
    if !known {
        let auth = header(head, "authorization").unwrap_or_default();
        let Some((secret, created)) = describe_upstream(upstream, auth, &pool, &client).await?
        else {
            return Ok(Verdict::Answer(error(
                "ResourceNotFoundException",
                &format!("User pool client {client} does not exist or has no secret."),
            )));
        };
        let entry = Entry {
            id: format!("{client}--{}", created as i64),
            value: secret.clone(),
            created,
        };
        r.clients
            .lock()
            .unwrap()
            .entry(client.clone())
            .or_insert(Client {
                emulator_secret: secret,
                live: vec![entry],
            });
    }
    let older_by = *r.older_by_days.lock().unwrap();
    let mut clients = r.clients.lock().unwrap();
    let c = clients.get_mut(&client).expect("known");
    Ok(Verdict::Answer(match op {
        "ListUserPoolClientSecrets" => answer(
            "200 OK",
            &json!({"ClientSecrets": c.live.iter().map(|e| descriptor(e, older_by, false)).collect::<Vec<_>>()}),
        ),
        "AddUserPoolClientSecret" => {
            if c.live.len() >= 2 {
                error(
                    "LimitExceededException",
                    "The app client already has the maximum number of client secrets (2).",
                )
            } else {
                let created = now();
                let mut epoch = created as i64;
                while c.live.iter().any(|e| e.id == format!("{client}--{epoch}")) {
                    epoch += 1;
                }
                let e = Entry {
                    id: format!("{client}--{epoch}"),
                    value: req["ClientSecret"]
                        .as_str()
                        .map(str::to_string)
                        .unwrap_or_else(generate),
                    created,
                };
                let generated = req["ClientSecret"].is_null();
                c.live.push(e.clone());
                r.handed_out.lock().unwrap().push(e.value.clone());
                answer(
                    "200 OK",
                    &json!({"ClientSecretDescriptor": descriptor(&e, older_by, generated)}),
                )
            }
        }
        _ => {
            let id = req["ClientSecretId"].as_str().unwrap_or_default();
            match c.live.iter().position(|e| e.id == id) {
                None => error(
                    "ResourceNotFoundException",
                    &format!("Client secret {id} does not exist."),
                ),
                Some(_) if c.live.len() == 1 => error(
                    "InvalidParameterException",
                    "Cannot delete the last remaining client secret.",
                ),
                Some(i) => {
                    c.live.remove(i);
                    answer("200 OK", &json!({}))
                }
            }
        }
    }))
}

/// The token endpoint: any live secret of a rotated client works.
fn token(r: &Rotation, head: &str, body: &[u8]) -> Verdict {
    let Some((id, secret)) = header(head, "authorization")
        .and_then(|a| a.strip_prefix("Basic "))
        .and_then(|b| {
            base64::engine::general_purpose::STANDARD
                .decode(b.trim())
                .ok()
        })
        .and_then(|raw| String::from_utf8(raw).ok())
        .and_then(|pair| {
            pair.split_once(':')
                .map(|(i, s)| (i.to_string(), s.to_string()))
        })
    else {
        return Verdict::Pass;
    };
    let clients = r.clients.lock().unwrap();
    let Some(c) = clients.get(&id) else {
        return Verdict::Pass;
    };
    if !c.live.iter().any(|e| e.value == secret) {
        return Verdict::Answer(invalid_client());
    }
    let basic =
        base64::engine::general_purpose::STANDARD.encode(format!("{id}:{}", c.emulator_secret));
    let head: String = head
        .lines()
        .map(|l| {
            if l.to_ascii_lowercase().starts_with("authorization:") {
                format!("Authorization: Basic {basic}")
            } else {
                l.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join("\r\n");
    Verdict::Forward(head, body.to_vec())
}
