//! A test-only HTTP proxy between `provision` and the emulator, on loopback.
//!
//! It forwards each request (one upstream connection per request) and can:
//! - add latency to every request;
//! - answer a share of requests with each service's real throttling shape, or 500/503,
//!   deterministically (seeded) and never more than twice in a row for the same request,
//!   or every request of one service (to exhaust the client's retries);
//! - hold the answer of the k-th request after the emulator has done it, so the test
//!   can kill the client at that exact point (the "answer lost" crash);
//! - lose the answer of the first request of chosen operations after the emulator has
//!   done it (a 500 in the service's error shape, or a closed connection), so the client
//!   sees a failure for work that really happened (`lose_answers`).
//!
//! - enforce API Gateway's account-wide control-plane quotas as AWS documents them
//!   (token buckets per operation; `429 TooManyRequestsException` with `Retry-After`
//!   when one is empty): the proxy is one account (`enforce_api_gateway_quotas`).
//!
//! - emulate Cognito's client-secret rotation, which the emulator lacks (`rotation.rs`).
//!
//! It runs on a runtime of its own, so tests may block while it works.

#![allow(dead_code)]

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, Notify};

#[path = "rotation.rs"]
pub mod rotation;

#[derive(Clone, Debug, Default)]
pub struct Faults {
    /// Share of requests (0.0 to 1.0) answered with a fault instead of forwarded.
    pub rate: f64,
    /// Seed of the choice.
    pub seed: u64,
    /// Every request to this service (as signed: iam, lambda, cognito-idp, apigateway) fails.
    pub always: Option<String>,
}

/// How `lose_answers` loses an answer the emulator gave.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Lose {
    /// An HTTP 500 in the service's error shape instead of the answer.
    #[default]
    ServerError,
    /// The connection is closed without any answer.
    Drop,
}

#[derive(Default)]
struct Shared {
    upstream: String,
    latency: Mutex<Duration>,
    faults: Mutex<Faults>,
    /// Hold the answer of the request with this 1-based number.
    hold_at: Mutex<Option<usize>>,
    /// Hold the answer of the next request of this operation (see `hold_operation`).
    hold_op: Mutex<Option<String>>,
    count: AtomicUsize,
    faults_sent: AtomicUsize,
    held: watch::Sender<bool>,
    release: Notify,
    streaks: Mutex<HashMap<u64, u32>>,
    rng: Mutex<u64>,
    /// Operations whose next answer is to be lost, and how.
    lose: Mutex<(HashSet<String>, Lose)>,
    /// (operation, status line of the emulator's answer) of every answer lost.
    lost: Mutex<Vec<(String, String)>>,
    /// API Gateway's quotas, when enforced: a bucket per operation.
    quotas: Mutex<Option<HashMap<&'static str, Bucket>>>,
    /// API Gateway requests let through (operation, when), and refused with a 429.
    passed: Mutex<Vec<(String, Instant)>>,
    refused: Mutex<Vec<String>>,
    /// Every request since the last reset, as `service:Operation`, and whether it reads.
    seen: Mutex<Vec<(String, bool)>>,
    /// Client-secret rotation, emulated.
    rotation: rotation::Rotation,
}

/// API Gateway's control-plane quotas per account, from AWS's "Amazon API Gateway
/// quotas" page: (operation, requests, per seconds, burst). Written out here on their
/// own, not taken from provision, so the test checks provision against AWS's figures.
const API_GATEWAY_QUOTAS: &[(&str, f64, f64, f64)] = &[
    ("CreateRestApi", 1.0, 3.0, 1.0),
    ("CreateDeployment", 1.0, 5.0, 1.0),
    ("DeleteRestApi", 1.0, 30.0, 1.0),
    ("CreateResource", 5.0, 1.0, 5.0),
    ("DeleteResource", 5.0, 1.0, 5.0),
    ("GetResources", 5.0, 2.0, 5.0),
    ("*", 10.0, 1.0, 40.0),
];

/// A token bucket: `burst` tokens, refilled at `rate` per second.
struct Bucket {
    tokens: f64,
    rate: f64,
    burst: f64,
    at: Instant,
}

impl Bucket {
    /// Takes a token, or says how long until there is one.
    fn take(&mut self, now: Instant) -> Result<(), Duration> {
        self.tokens =
            (self.tokens + now.duration_since(self.at).as_secs_f64() * self.rate).min(self.burst);
        self.at = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            Ok(())
        } else {
            Err(Duration::from_secs_f64((1.0 - self.tokens) / self.rate))
        }
    }
}

pub struct Proxy {
    pub url: String,
    shared: Arc<Shared>,
}

impl Proxy {
    /// Starts a proxy in front of `upstream` (e.g. http://127.0.0.1:4566).
    pub fn start(upstream: &str) -> Proxy {
        let upstream = upstream
            .trim_start_matches("http://")
            .trim_end_matches('/')
            .to_string();
        let (held, _) = watch::channel(false);
        let shared = Arc::new(Shared {
            upstream,
            held,
            ..Default::default()
        });
        let (tx, rx) = std::sync::mpsc::channel();
        let s = shared.clone();
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
                tx.send(listener.local_addr().unwrap().port()).unwrap();
                loop {
                    let Ok((conn, _)) = listener.accept().await else {
                        continue;
                    };
                    let s = s.clone();
                    tokio::spawn(async move {
                        let _ = serve(conn, s).await;
                    });
                }
            });
        });
        let port = rx.recv().unwrap();
        Proxy {
            url: format!("http://127.0.0.1:{port}"),
            shared,
        }
    }

    pub fn set_latency(&self, d: Duration) {
        *self.shared.latency.lock().unwrap() = d;
    }

    pub fn set_faults(&self, f: Faults) {
        *self.shared.rng.lock().unwrap() = f.seed.max(1);
        self.shared.streaks.lock().unwrap().clear();
        *self.shared.faults.lock().unwrap() = f;
    }

    /// Holds the answer of the `k`-th request from now on (1-based).
    pub fn hold_at(&self, k: usize) {
        self.shared.count.store(0, Ordering::SeqCst);
        self.shared.held.send_replace(false);
        *self.shared.hold_at.lock().unwrap() = Some(k);
    }

    /// Holds the answer of the next request of `op` (as `operation` names it, e.g.
    /// `CreateFunction`), until `release`: a request in flight that does not end.
    pub fn hold_operation(&self, op: &str) {
        self.shared.held.send_replace(false);
        *self.shared.hold_op.lock().unwrap() = Some(op.to_string());
    }

    /// Starts counting (`count`, `seen`) from zero.
    pub fn reset_count(&self) {
        self.shared.count.store(0, Ordering::SeqCst);
        self.shared.seen.lock().unwrap().clear();
    }

    /// The requests that reached the proxy since the last reset, as `service:Operation`
    /// (see `operation`): what the client really sent, counted outside the binary, so
    /// a check of "no AWS call" or "reads only" does not rest on provision's own log.
    pub fn seen(&self) -> Vec<String> {
        let seen = self.shared.seen.lock().unwrap();
        seen.iter().map(|(op, _)| op.clone()).collect()
    }

    /// The requests of `seen` that change something: anything but a GET/HEAD or an
    /// operation named Get*, List*, Describe* (JSON and query protocols POST their reads).
    pub fn seen_writes(&self) -> Vec<String> {
        let seen = self.shared.seen.lock().unwrap();
        seen.iter()
            .filter(|(_, read)| !read)
            .map(|(op, _)| op.clone())
            .collect()
    }

    /// Requests seen since the last reset.
    pub fn count(&self) -> usize {
        self.shared.count.load(Ordering::SeqCst)
    }

    pub fn faults_sent(&self) -> usize {
        self.shared.faults_sent.load(Ordering::SeqCst)
    }

    /// Waits until the held request has been done upstream (true), or `timeout` (false).
    pub fn wait_held(&self, timeout: Duration) -> bool {
        let deadline = std::time::Instant::now() + timeout;
        let mut rx = self.shared.held.subscribe();
        while std::time::Instant::now() < deadline {
            if *rx.borrow_and_update() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        false
    }

    /// For each operation in `ops` (names as `operation` gives them, e.g. `CreateRole`),
    /// the first request from now on is done by the emulator, then its answer is lost
    /// (`how`); later requests of that operation pass normally. Replaces any previous
    /// set.
    pub fn lose_answers(&self, ops: &[&str], how: Lose) {
        *self.shared.lose.lock().unwrap() = (ops.iter().map(|o| o.to_string()).collect(), how);
    }

    /// Operations still waiting for their answer to be lost.
    pub fn still_to_lose(&self) -> Vec<String> {
        let mut v: Vec<String> = self.shared.lose.lock().unwrap().0.iter().cloned().collect();
        v.sort();
        v
    }

    /// The operations whose answer was lost, in order.
    pub fn lost(&self) -> Vec<String> {
        self.lost_answers().into_iter().map(|(op, _)| op).collect()
    }

    /// (operation, status line the emulator answered with) of every answer lost.
    pub fn lost_answers(&self) -> Vec<(String, String)> {
        self.shared.lost.lock().unwrap().clone()
    }

    pub fn clear_lost(&self) {
        self.shared.lost.lock().unwrap().clear();
    }

    /// Lets a held answer go, and stops holding.
    /// From now on, API Gateway requests beyond the account's quotas get a 429.
    pub fn enforce_api_gateway_quotas(&self) {
        let now = Instant::now();
        let buckets = API_GATEWAY_QUOTAS
            .iter()
            .map(|&(op, requests, per, burst)| {
                (
                    op,
                    Bucket {
                        tokens: burst,
                        rate: requests / per,
                        burst,
                        at: now,
                    },
                )
            })
            .collect();
        *self.shared.quotas.lock().unwrap() = Some(buckets);
        self.shared.passed.lock().unwrap().clear();
        self.shared.refused.lock().unwrap().clear();
    }

    /// When each API Gateway request of `operation` went through to the emulator.
    pub fn passed(&self, operation: &str) -> Vec<Instant> {
        let passed = self.shared.passed.lock().unwrap();
        passed
            .iter()
            .filter(|(op, _)| op == operation)
            .map(|(_, t)| *t)
            .collect()
    }

    /// The operations of the API Gateway requests answered 429, one entry each.
    pub fn refused(&self) -> Vec<String> {
        self.shared.refused.lock().unwrap().clone()
    }

    /// The emulated client-secret rotation (see `rotation.rs`).
    pub fn rotation(&self) -> &rotation::Rotation {
        &self.shared.rotation
    }

    pub fn release(&self) {
        *self.shared.hold_at.lock().unwrap() = None;
        self.shared.release.notify_waiters();
    }
}

/// Whether an operation of `Proxy::seen` (`service:Operation`; S3: `s3:METHOD /bucket/key`)
/// changes anything: reads are Get/List/Describe/Head (S3: GET and HEAD); the rest are
/// writes. For counting the writes a run sends after a point (a fenced run must send none).
pub fn is_write(op: &str) -> bool {
    let op = op.split_once(':').map_or(op, |(_, op)| op);
    const READS: [&str; 6] = ["Get", "List", "Describe", "Head", "GET ", "HEAD "];
    !READS.iter().any(|r| op.starts_with(r))
}

/// Reads one HTTP/1.1 request (head + Content-Length body). None at EOF.
async fn read_request(
    conn: &mut TcpStream,
    buf: &mut Vec<u8>,
) -> std::io::Result<Option<(String, Vec<u8>)>> {
    loop {
        if let Some(end) = find(buf, b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).into_owned();
            let length = header(&head, "content-length")
                .and_then(|v| v.parse::<usize>().ok())
                .unwrap_or(0);
            assert!(
                header(&head, "transfer-encoding").is_none(),
                "the test proxy does not handle chunked requests"
            );
            while buf.len() < end + 4 + length {
                let mut chunk = [0u8; 65536];
                let n = conn.read(&mut chunk).await?;
                if n == 0 {
                    return Ok(None);
                }
                buf.extend_from_slice(&chunk[..n]);
            }
            let body = buf[end + 4..end + 4 + length].to_vec();
            buf.drain(..end + 4 + length);
            return Ok(Some((head, body)));
        }
        let mut chunk = [0u8; 65536];
        let n = conn.read(&mut chunk).await?;
        if n == 0 {
            return Ok(None);
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

/// Whether this request is the one `hold_operation` asked for (then no other is held).
fn take_hold_op(s: &Shared, head: &str, body: &[u8]) -> bool {
    let mut op = s.hold_op.lock().unwrap();
    let this = op.as_deref() == Some(operation(head, body).as_str());
    if this {
        *op = None;
    }
    this
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

fn header<'a>(head: &'a str, name: &str) -> Option<&'a str> {
    head.lines().skip(1).find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.trim().eq_ignore_ascii_case(name).then(|| v.trim())
    })
}

/// The service a request is signed for: `Credential=KEY/DATE/REGION/SERVICE/aws4_request`.
fn service(head: &str) -> String {
    header(head, "authorization")
        .and_then(|a| a.split("Credential=").nth(1))
        .and_then(|c| c.split('/').nth(3))
        .unwrap_or("unknown")
        .to_string()
}

/// The AWS operation a request asks for: from `X-Amz-Target` (Cognito), from the
/// `Action` of a query-protocol form body (IAM, STS), or from method and path (the
/// REST-JSON services Lambda and API Gateway). Anything else: `"{METHOD} {path}"`.
pub fn operation(head: &str, body: &[u8]) -> String {
    if let Some(target) = header(head, "x-amz-target") {
        return target.rsplit('.').next().unwrap_or(target).to_string();
    }
    let mut line = head.lines().next().unwrap_or("").split_whitespace();
    let method = line.next().unwrap_or("").to_ascii_uppercase();
    let target = line.next().unwrap_or("");
    let path = target.split(['?', '#']).next().unwrap_or("");
    if method == "POST" {
        let form = String::from_utf8_lossy(body);
        if let Some(action) = form
            .split('&')
            .find_map(|kv| kv.strip_prefix("Action="))
            .filter(|a| !a.is_empty())
        {
            return action.to_string();
        }
    }
    let parts: Vec<&str> = path.split('/').filter(|p| !p.is_empty()).collect();
    let m = method.as_str();
    let named = match parts.as_slice() {
        // Lambda
        ["2015-03-31", "functions"] if m == "POST" => Some("CreateFunction"),
        ["2015-03-31", "functions"] if m == "GET" => Some("ListFunctions"),
        ["2015-03-31", "functions", _] if m == "GET" => Some("GetFunction"),
        ["2015-03-31", "functions", _] if m == "DELETE" => Some("DeleteFunction"),
        ["2015-03-31", "functions", _, "policy"] if m == "POST" => Some("AddPermission"),
        ["2015-03-31", "functions", _, "policy"] if m == "GET" => Some("GetPolicy"),
        ["2015-03-31", "functions", _, "policy", _] if m == "DELETE" => Some("RemovePermission"),
        ["2015-03-31", "functions", _, "code"] if m == "PUT" => Some("UpdateFunctionCode"),
        ["2015-03-31", "functions", _, "configuration"] if m == "PUT" => {
            Some("UpdateFunctionConfiguration")
        }
        ["2015-03-31", "functions", _, "configuration"] if m == "GET" => {
            Some("GetFunctionConfiguration")
        }
        // API Gateway
        ["restapis"] if m == "POST" => Some("CreateRestApi"),
        ["restapis"] if m == "GET" => Some("GetRestApis"),
        ["restapis", _] if m == "GET" => Some("GetRestApi"),
        ["restapis", _] if m == "DELETE" => Some("DeleteRestApi"),
        ["restapis", _, "authorizers"] if m == "POST" => Some("CreateAuthorizer"),
        ["restapis", _, "authorizers"] if m == "GET" => Some("GetAuthorizers"),
        ["restapis", _, "deployments"] if m == "POST" => Some("CreateDeployment"),
        ["restapis", _, "resources"] if m == "GET" => Some("GetResources"),
        ["restapis", _, "resources", _] if m == "POST" => Some("CreateResource"),
        ["restapis", _, "resources", _] if m == "GET" => Some("GetResource"),
        ["restapis", _, "resources", _] if m == "DELETE" => Some("DeleteResource"),
        ["restapis", _, "resources", _, "methods", _] if m == "PUT" => Some("PutMethod"),
        ["restapis", _, "resources", _, "methods", _] if m == "GET" => Some("GetMethod"),
        ["restapis", _, "resources", _, "methods", _] if m == "DELETE" => Some("DeleteMethod"),
        ["restapis", _, "resources", _, "methods", _, "integration"] if m == "PUT" => {
            Some("PutIntegration")
        }
        ["restapis", _, "stages"] if m == "POST" => Some("CreateStage"),
        ["restapis", _, "stages", _] if m == "GET" => Some("GetStage"),
        // API Gateway v2 (HTTP APIs)
        ["v2", "apis"] if m == "POST" => Some("CreateApi"),
        ["v2", "apis"] if m == "GET" => Some("GetApis"),
        ["v2", "apis", _] if m == "GET" => Some("GetApi"),
        ["v2", "apis", _] if m == "DELETE" => Some("DeleteApi"),
        ["v2", "apis", _, "authorizers"] if m == "POST" => Some("CreateAuthorizer"),
        ["v2", "apis", _, "authorizers"] if m == "GET" => Some("GetAuthorizers"),
        ["v2", "apis", _, "authorizers", _] if m == "PATCH" => Some("UpdateAuthorizer"),
        ["v2", "apis", _, "integrations"] if m == "POST" => Some("CreateIntegration"),
        ["v2", "apis", _, "integrations"] if m == "GET" => Some("GetIntegrations"),
        ["v2", "apis", _, "integrations", _] if m == "PATCH" => Some("UpdateIntegration"),
        ["v2", "apis", _, "routes"] if m == "POST" => Some("CreateRoute"),
        ["v2", "apis", _, "routes"] if m == "GET" => Some("GetRoutes"),
        ["v2", "apis", _, "routes", _] if m == "PATCH" => Some("UpdateRoute"),
        ["v2", "apis", _, "routes", _] if m == "DELETE" => Some("DeleteRoute"),
        ["v2", "apis", _, "stages"] if m == "POST" => Some("CreateStage"),
        ["v2", "apis", _, "stages", _] if m == "GET" => Some("GetStage"),
        ["v2", "apis", _, "stages", _] if m == "PATCH" => Some("UpdateStage"),
        _ => None,
    };
    match named {
        Some(op) => op.to_string(),
        None => format!("{method} {path}"),
    }
}

/// `service:Operation` of a request, and whether it only reads.
fn seen_as(head: &str, body: &[u8]) -> (String, bool) {
    let op = operation(head, body);
    let method = head.split_whitespace().next().unwrap_or("");
    let read = matches!(method, "GET" | "HEAD")
        || ["Get", "List", "Describe"]
            .iter()
            .any(|p| op.starts_with(p));
    (format!("{}:{op}", service(head)), read)
}

/// API Gateway's answer over a quota: 429, with when to come back (whole seconds).
fn too_many_requests(wait: Duration) -> Vec<u8> {
    let body = "{\"message\":\"Too Many Requests\"}";
    format!(
        "HTTP/1.1 429 Too Many Requests\r\nContent-Type: application/json\r\nx-amzn-ErrorType: TooManyRequestsException\r\nRetry-After: {}\r\nContent-Length: {}\r\nx-amzn-RequestId: injected\r\n\r\n{body}",
        wait.as_secs_f64().ceil() as u64,
        body.len()
    )
    .into_bytes()
}

/// An HTTP 500 in the error shape of `service` (as signed).
fn server_error_response(service: &str) -> Vec<u8> {
    let (headers, body): (&str, &str) = match service {
        "iam" | "sts" => (
            "Content-Type: text/xml\r\n",
            "<ErrorResponse><Error><Type>Receiver</Type><Code>ServiceFailure</Code><Message>injected: answer lost</Message></Error><RequestId>injected</RequestId></ErrorResponse>",
        ),
        "cognito-idp" => (
            "Content-Type: application/x-amz-json-1.1\r\n",
            "{\"__type\":\"InternalErrorException\",\"message\":\"injected: answer lost\"}",
        ),
        "lambda" => (
            "Content-Type: application/json\r\nx-amzn-ErrorType: ServiceException\r\n",
            "{\"Type\":\"Service\",\"message\":\"injected: answer lost\"}",
        ),
        _ => (
            "Content-Type: application/json\r\nx-amzn-ErrorType: InternalFailure\r\n",
            "{\"message\":\"injected: answer lost\"}",
        ),
    };
    format!(
        "HTTP/1.1 500 Internal Server Error\r\n{headers}Content-Length: {}\r\nx-amzn-RequestId: injected\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

fn fault_response(service: &str, kind: u64) -> Vec<u8> {
    let (status, headers, body): (&str, &str, String) = match (kind % 4, service) {
        (0, _) => ("500 Internal Server Error", "Content-Type: application/json\r\n", "{\"message\":\"injected internal error\"}".into()),
        (1, _) => ("503 Service Unavailable", "Content-Type: application/json\r\n", "{\"message\":\"injected unavailable\"}".into()),
        (_, "iam") | (_, "sts") => (
            "400 Bad Request",
            "Content-Type: text/xml\r\n",
            "<ErrorResponse><Error><Type>Sender</Type><Code>Throttling</Code><Message>Rate exceeded</Message></Error><RequestId>injected</RequestId></ErrorResponse>".into(),
        ),
        (_, "cognito-idp") => (
            "400 Bad Request",
            "Content-Type: application/x-amz-json-1.1\r\n",
            "{\"__type\":\"TooManyRequestsException\",\"message\":\"Too many requests\"}".into(),
        ),
        (_, "lambda") => (
            "429 Too Many Requests",
            "Content-Type: application/json\r\nx-amzn-ErrorType: TooManyRequestsException\r\n",
            "{\"Type\":\"User\",\"Reason\":\"CallerRateLimitExceeded\",\"message\":\"Rate exceeded\"}".into(),
        ),
        // CloudWatch Logs and Secrets Manager (JSON 1.1) throttle with a 400
        // ThrottlingException; S3 with a 503 SlowDown in its XML error shape.
        (_, "logs") | (_, "secretsmanager") => (
            "400 Bad Request",
            "Content-Type: application/x-amz-json-1.1\r\n",
            "{\"__type\":\"ThrottlingException\",\"message\":\"Rate exceeded\"}".into(),
        ),
        (_, "s3") => (
            "503 Slow Down",
            "Content-Type: application/xml\r\n",
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Error><Code>SlowDown</Code><Message>Please reduce your request rate.</Message><RequestId>injected</RequestId></Error>".into(),
        ),
        // API Gateway.
        _ => (
            "429 Too Many Requests",
            "Content-Type: application/json\r\nx-amzn-ErrorType: TooManyRequestsException\r\n",
            "{\"message\":\"Too Many Requests\"}".into(),
        ),
    };
    format!(
        "HTTP/1.1 {status}\r\n{headers}Content-Length: {}\r\nx-amzn-RequestId: injected\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

/// The response with `Connection: close`: one request per client connection, so the
/// client never reuses a connection this proxy is about to close.
fn closing(response: &[u8]) -> Vec<u8> {
    let end = find(response, b"\r\n\r\n").unwrap_or(response.len());
    let mut bytes = with_connection_close(&String::from_utf8_lossy(&response[..end])).into_bytes();
    bytes.extend_from_slice(response.get(end + 4..).unwrap_or_default());
    bytes
}

/// An HTTP head (request or response) with `Connection: close` instead of whatever it
/// said, ending with the blank line.
fn with_connection_close(head: &str) -> String {
    let mut out = String::new();
    for (i, line) in head.lines().enumerate() {
        if i > 0 && line.to_ascii_lowercase().starts_with("connection:") {
            continue;
        }
        out.push_str(line);
        out.push_str("\r\n");
    }
    out.push_str("Connection: close\r\n\r\n");
    out
}

fn next_random(state: &Mutex<u64>) -> u64 {
    // xorshift64*: deterministic for one seed.
    let mut s = state.lock().unwrap();
    let mut x = *s;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    *s = x;
    x.wrapping_mul(0x2545F4914F6CDD1D)
}

fn request_key(head: &str, body: &[u8]) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    head.lines().next().hash(&mut h);
    header(head, "x-amz-target").hash(&mut h);
    body.hash(&mut h);
    h.finish()
}

async fn serve(mut conn: TcpStream, s: Arc<Shared>) -> std::io::Result<()> {
    let mut buf = Vec::new();
    let Some((head, body)) = read_request(&mut conn, &mut buf).await? else {
        return Ok(());
    };
    {
        let n = s.count.fetch_add(1, Ordering::SeqCst) + 1;
        s.seen.lock().unwrap().push(seen_as(&head, &body));
        let latency = *s.latency.lock().unwrap();
        if !latency.is_zero() {
            tokio::time::sleep(latency).await;
        }
        let svc = service(&head);
        let faults = s.faults.lock().unwrap().clone();
        let key = request_key(&head, &body);
        let fault = if faults.always.as_deref() == Some(svc.as_str()) {
            Some(next_random(&s.rng))
        } else if faults.rate > 0.0 {
            let r = next_random(&s.rng);
            let mut streaks = s.streaks.lock().unwrap();
            let streak = streaks.entry(key).or_insert(0);
            if (r % 10_000) as f64 / 10_000.0 < faults.rate && *streak < 2 {
                *streak += 1;
                Some(r >> 16)
            } else {
                *streak = 0;
                None
            }
        } else {
            None
        };
        if let Some(kind) = fault {
            s.faults_sent.fetch_add(1, Ordering::SeqCst);
            return conn.write_all(&closing(&fault_response(&svc, kind))).await;
        }
        if svc == "apigateway" {
            let op = operation(&head, &body);
            let verdict = s.quotas.lock().unwrap().as_mut().map(|buckets| {
                let key = API_GATEWAY_QUOTAS
                    .iter()
                    .map(|q| q.0)
                    .find(|q| *q == op)
                    .unwrap_or("*");
                buckets
                    .get_mut(key)
                    .expect("a bucket per quota")
                    .take(Instant::now())
            });
            match verdict {
                Some(Err(wait)) => {
                    s.refused.lock().unwrap().push(op);
                    return conn.write_all(&closing(&too_many_requests(wait))).await;
                }
                Some(Ok(())) => s.passed.lock().unwrap().push((op, Instant::now())),
                None => {}
            }
        }
        // Is this the first request of an operation whose answer is to be lost?
        let lose = {
            let mut lose = s.lose.lock().unwrap();
            let how = lose.1;
            let op = operation(&head, &body);
            lose.0.remove(&op).then_some((op, how))
        };
        let mut response = Vec::new();
        let (head, body) = match rotation::intercept(&s.rotation, &s.upstream, &head, &body).await?
        {
            rotation::Verdict::Answer(emulated) => {
                response = emulated;
                (head, body)
            }
            rotation::Verdict::Forward(h, b) => (h, b),
            rotation::Verdict::Pass => (head, body),
        };
        if response.is_empty() {
            // Forward on a fresh upstream connection, asking it to close after answering.
            let mut up = TcpStream::connect(&s.upstream).await?;
            up.write_all(with_connection_close(&head).as_bytes())
                .await?;
            up.write_all(&body).await?;
            up.read_to_end(&mut response).await?;
        }
        if let Some((op, how)) = lose {
            let status = String::from_utf8_lossy(&response)
                .lines()
                .next()
                .unwrap_or("")
                .to_string();
            s.lost.lock().unwrap().push((op, status));
            return match how {
                Lose::ServerError => conn.write_all(&closing(&server_error_response(&svc))).await,
                // Dropping `conn` closes the connection with no answer at all.
                Lose::Drop => Ok(()),
            };
        }
        let hold = *s.hold_at.lock().unwrap() == Some(n) || take_hold_op(&s, &head, &body);
        if hold {
            let released = s.release.notified();
            s.held.send_replace(true);
            released.await;
        }
        conn.write_all(&closing(&response)).await
    }
}
