//! The integration-test harness: one MiniStack per test binary on a free loopback
//! port, reset before each test; the real `provision` binary; and SDK clients of our
//! own to check independently what exists.
//!
//! Tests in one binary share the emulator, so they take turns (`Harness::new` holds a
//! lock for the test's lifetime) and each starts from an empty emulator.

#![allow(dead_code)]

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::{Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

use aws_config::BehaviorVersion;
use aws_credential_types::Credentials;
use serde_json::Value;

pub const STACK: &str = "it-stack";

pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

pub struct Emulator {
    pub url: String,
    pub workdir: PathBuf,
    /// The runner stops MiniStack itself when this test binary exits.
    _runner: Mutex<std::process::Child>,
}

static EMULATOR: OnceLock<Emulator> = OnceLock::new();
static TURN: Mutex<()> = Mutex::new(());

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .expect("bind a loopback port")
        .local_addr()
        .unwrap()
        .port()
}

fn venv() -> PathBuf {
    let out = Command::new(repo_root().join("scripts/ministack-venv"))
        .stderr(Stdio::inherit())
        .output()
        .expect("run scripts/ministack-venv");
    assert!(out.status.success(), "scripts/ministack-venv failed");
    PathBuf::from(String::from_utf8(out.stdout).unwrap().trim())
}

fn http(method: &str, url: &str) -> Option<u16> {
    // A tiny HTTP/1.0 client: enough for the emulator's health and reset calls.
    use std::io::{Read, Write};
    let rest = url.strip_prefix("http://")?;
    let (host, path) = rest.split_once('/').map(|(h, p)| (h, format!("/{p}")))?;
    let mut s = std::net::TcpStream::connect(host).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(30))).ok()?;
    write!(
        s,
        "{method} {path} HTTP/1.0\r\nHost: {host}\r\nContent-Length: 0\r\n\r\n"
    )
    .ok()?;
    let mut buf = String::new();
    s.read_to_string(&mut buf).ok()?;
    buf.split_whitespace().nth(1)?.parse().ok()
}

fn start_emulator() -> Emulator {
    let venv = venv();
    let port = free_port();
    let workdir =
        std::env::temp_dir().join(format!("provision-ministack-{}-{port}", std::process::id()));
    std::fs::create_dir_all(&workdir).unwrap();
    let runner = Command::new(venv.join("bin/python"))
        .arg(repo_root().join("scripts/ministack_serve.py"))
        .arg(port.to_string())
        .arg(std::process::id().to_string())
        .arg(&workdir)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start MiniStack");
    let url = format!("http://127.0.0.1:{port}");
    let deadline = Instant::now() + Duration::from_secs(60);
    while http("GET", &format!("{url}/_ministack/health")) != Some(200) {
        assert!(
            Instant::now() < deadline,
            "MiniStack did not answer on {url} within 60 s; see {}/ministack.log",
            workdir.display()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    Emulator {
        url,
        workdir,
        _runner: Mutex::new(runner),
    }
}

pub fn emulator() -> &'static Emulator {
    EMULATOR.get_or_init(start_emulator)
}

/// `len` bytes of noise (xorshift, fixed seed) that no zip can shrink: a handler over
/// Lambda's 50 MB direct-upload limit.
pub fn incompressible(len: usize) -> Vec<u8> {
    let mut x: u64 = 0x2545_F491_4F6C_DD1D;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// The handler binary the tests ship (a host build, as the emulator runs it locally).
pub fn handler_binary() -> PathBuf {
    let path = repo_root().join("target/debug/handler");
    assert!(
        path.is_file(),
        "{} is missing: build it first with `cargo build -p handler` (scripts/test does)",
        path.display()
    );
    path
}

/// README.md with every run of whitespace made one space, so a figure can be looked up
/// whatever the line breaks.
pub fn readme_text() -> String {
    std::fs::read_to_string(repo_root().join("README.md"))
        .expect("README.md")
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
}

/// The region the tests run in (none is set: provision's default with an endpoint).
pub const REGION: &str = "us-east-1";

/// One test's view: its turn on the emulator, a fresh state directory, helpers.
pub struct Harness {
    _turn: MutexGuard<'static, ()>,
    pub url: String,
    pub dir: tempfile::TempDir,
    pub stack: String,
    /// Where `provision` keeps the state (PROVISION_STATE_DIR): by default a directory
    /// of the test's own; tests of shared state set an s3:// location.
    pub state_location: Option<String>,
}

impl Harness {
    pub fn new() -> Harness {
        let turn = TURN.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let emulator = emulator();
        assert_eq!(
            http("POST", &format!("{}/_ministack/reset", emulator.url)),
            Some(200),
            "resetting MiniStack"
        );
        Harness {
            _turn: turn,
            url: emulator.url.clone(),
            dir: tempfile::tempdir().unwrap(),
            stack: STACK.to_string(),
            state_location: None,
        }
    }

    /// Back to an empty emulator and no state, within the same test.
    pub fn reset(&self) {
        assert_eq!(
            http("POST", &format!("{}/_ministack/reset", self.url)),
            Some(200),
            "resetting MiniStack"
        );
        let _ = std::fs::remove_dir_all(self.state_dir());
    }

    /// `provision` sending its AWS calls through `proxy` instead.
    pub fn command_via(&self, proxy: &proxy::Proxy) -> Command {
        let mut c = self.command();
        c.env("AWS_ENDPOINT_URL", &proxy.url);
        c
    }

    pub fn run_via(&self, proxy: &proxy::Proxy, args: &[&str]) -> Run {
        self.run_with(self.command_via(proxy), args)
    }

    /// Runs through `proxy` with `calls` and `writes()` as the proxy saw the requests,
    /// not as the binary logged them: for checks of "no AWS call" and "reads only",
    /// which must not rest on the counter they judge.
    pub fn run_observed(&self, proxy: &proxy::Proxy, args: &[&str]) -> Run {
        proxy.reset_count();
        let mut run = self.run_via(proxy, args);
        run.calls = proxy.seen();
        run.write_calls = proxy.seen_writes();
        run
    }

    /// Exactly one of each resource of the stack exists, and the API answers.
    pub async fn assert_one_stack(&self) {
        let sdk = self.aws().await;
        assert_eq!(sdk.role_names().await.len(), 1, "roles");
        assert_eq!(sdk.function_names().await.len(), 1, "functions");
        assert_eq!(sdk.log_groups().await.len(), 1, "log groups");
        let pools = sdk.pools().await;
        assert_eq!(pools.len(), 1, "pools: {pools:?}");
        assert_eq!(sdk.clients(&pools[0].0).await.len(), 1, "app clients");
        let pool = sdk
            .cognito
            .describe_user_pool()
            .user_pool_id(&pools[0].0)
            .send()
            .await
            .unwrap();
        assert!(pool.user_pool().unwrap().domain().is_some(), "domain");
        let servers = sdk
            .cognito
            .list_resource_servers()
            .user_pool_id(&pools[0].0)
            .max_results(50)
            .send()
            .await
            .unwrap();
        assert_eq!(servers.resource_servers().len(), 1, "resource servers");
        let functions = sdk.function_names().await;
        let policy = sdk
            .lambda
            .get_policy()
            .function_name(&functions[0])
            .send()
            .await
            .unwrap();
        let policy: Value = serde_json::from_str(policy.policy().unwrap()).unwrap();
        assert_eq!(
            policy["Statement"].as_array().map(Vec::len),
            Some(1),
            "statements of the function's policy: {policy}"
        );
        let apis = sdk.apis().await;
        assert_eq!(apis.len(), 1, "APIs: {apis:?}");
        let auth = sdk
            .apigw
            .get_authorizers()
            .rest_api_id(&apis[0].0)
            .send()
            .await
            .unwrap();
        assert_eq!(auth.items().len(), 1, "authorizers");
        let res = sdk
            .apigw
            .get_resources()
            .rest_api_id(&apis[0].0)
            .send()
            .await
            .unwrap();
        assert_eq!(res.items().len(), 2, "API resources");
        let deployments = sdk
            .apigw
            .get_deployments()
            .rest_api_id(&apis[0].0)
            .send()
            .await
            .unwrap();
        assert_eq!(deployments.items().len(), 1, "deployments");
        let call = self.json(&["invoke"]);
        assert_eq!(call["status"], 200, "{call}");
    }

    pub fn state_dir(&self) -> PathBuf {
        self.dir.path().join("state")
    }

    /// `<state dir>/<region>/<stack>.json`: the tests run in us-east-1 (the emulator's
    /// default when no region is set).
    pub fn state_file(&self) -> PathBuf {
        self.state_dir()
            .join(REGION)
            .join(format!("{}.json", self.stack))
    }

    /// Where the binary writes the AWS operations it sent (see PROVISION_CALL_LOG).
    pub fn call_log(&self) -> PathBuf {
        self.dir.path().join("calls.log")
    }

    /// `provision` with the test environment: emulator endpoint, test credentials,
    /// no instance-metadata lookups, this test's state directory and stack.
    pub fn command(&self) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_provision"));
        c.env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("HOME", self.dir.path())
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .env("AWS_ACCESS_KEY_ID", "test")
            .env("AWS_SECRET_ACCESS_KEY", "test")
            .env("AWS_ENDPOINT_URL", &self.url)
            .env(
                "PROVISION_STATE_DIR",
                self.state_location
                    .clone()
                    .unwrap_or_else(|| self.state_dir().display().to_string()),
            )
            .env("PROVISION_STACK", &self.stack)
            .env("PROVISION_HANDLER", handler_binary())
            .env("PROVISION_CALL_LOG", self.call_log())
            .current_dir(self.dir.path())
            .stdin(Stdio::null());
        c
    }

    pub fn run(&self, args: &[&str]) -> Run {
        self.run_with(self.command(), args)
    }

    /// Runs `cmd` (from `command` or `command_via`, perhaps adjusted) with `args`,
    /// collecting the AWS operations it sent.
    pub fn run_with(&self, mut cmd: Command, args: &[&str]) -> Run {
        let _ = std::fs::remove_file(self.call_log());
        let output = cmd.args(args).output().expect("run provision");
        Run::from(output, args, &self.call_log())
    }

    /// Runs and insists on exit 0.
    pub fn ok(&self, args: &[&str]) -> Run {
        let r = self.run(args);
        assert_eq!(r.code, 0, "provision {args:?} failed:\n{}", r.describe());
        r
    }

    /// `-o json` run, parsed; insists on exit 0.
    pub fn json(&self, args: &[&str]) -> Value {
        let mut all = vec!["-o", "json"];
        all.extend_from_slice(args);
        self.ok(&all).json()
    }

    /// `-o json` run, parsed; insists on exit `code`.
    pub fn json_code(&self, args: &[&str], code: i32) -> Value {
        let mut all = vec!["-o", "json"];
        all.extend_from_slice(args);
        let r = self.run(&all);
        assert_eq!(r.code, code, "provision {args:?}:\n{}", r.describe());
        r.json()
    }

    pub async fn aws(&self) -> Sdk {
        Sdk::new(&self.url).await
    }
}

pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
    /// The AWS operations the run sent, as `service:Operation`.
    pub calls: Vec<String>,
    /// The calls that change something (see `writes`).
    write_calls: Vec<String>,
    args: Vec<String>,
}

impl Run {
    fn from(o: Output, args: &[&str], log: &Path) -> Run {
        let calls: Vec<String> = std::fs::read_to_string(log)
            .map(|s| {
                s.lines()
                    .filter(|l| !l.is_empty())
                    .map(str::to_string)
                    .collect()
            })
            .unwrap_or_default();
        let write_calls = calls
            .iter()
            .filter(|c| {
                let op = c.split(':').nth(1).unwrap_or("");
                !(op.starts_with("Get") || op.starts_with("List") || op.starts_with("Describe"))
            })
            .cloned()
            .collect();
        Run {
            code: o.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
            calls,
            write_calls,
            args: args.iter().map(|a| a.to_string()).collect(),
        }
    }

    pub fn json(&self) -> Value {
        serde_json::from_str(self.stdout.trim()).unwrap_or_else(|e| {
            panic!(
                "stdout of {:?} is not one JSON object ({e}):\n{}",
                self.args,
                self.describe()
            )
        })
    }

    pub fn describe(&self) -> String {
        format!(
            "exit {}\n--- stdout\n{}\n--- stderr\n{}",
            self.code, self.stdout, self.stderr
        )
    }

    /// The calls that change something (anything but Get/List/Describe reads).
    pub fn writes(&self) -> Vec<&String> {
        self.write_calls.iter().collect()
    }
}

/// `{kind/id: action}` of an `up`/`down` JSON report.
pub fn actions(report: &Value) -> Vec<(String, String, String)> {
    report["resources"]
        .as_array()
        .expect("resources array")
        .iter()
        .map(|r| {
            (
                r["kind"].as_str().unwrap().to_string(),
                r["id"].as_str().unwrap().to_string(),
                r["action"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

/// The configuration of the tests' own SDK clients: the emulator, test credentials.
pub fn test_config(url: &str) -> aws_config::SdkConfig {
    aws_config::SdkConfig::builder()
        .behavior_version(BehaviorVersion::latest())
        .endpoint_url(url)
        .region(aws_config::Region::new("us-east-1"))
        .credentials_provider(
            aws_credential_types::provider::SharedCredentialsProvider::new(Credentials::new(
                "test", "test", None, None, "tests",
            )),
        )
        .build()
}

/// An S3 client of the test's own (path-style: the emulator answers on one host).
pub fn s3_client(url: &str) -> aws_sdk_s3::Client {
    aws_sdk_s3::Client::from_conf(
        aws_sdk_s3::config::Builder::from(&test_config(url))
            .force_path_style(true)
            .build(),
    )
}

/// An S3 object's body as text; `None` when it is not there.
pub async fn s3_object(s3: &aws_sdk_s3::Client, bucket: &str, key: &str) -> Option<String> {
    let out = s3.get_object().bucket(bucket).key(key).send().await.ok()?;
    let bytes = out.body.collect().await.unwrap().into_bytes();
    Some(String::from_utf8_lossy(&bytes).into_owned())
}

pub fn secrets_client(url: &str) -> aws_sdk_secretsmanager::Client {
    aws_sdk_secretsmanager::Client::new(&test_config(url))
}

/// SDK clients of the test's own, for independent checks.
pub struct Sdk {
    pub iam: aws_sdk_iam::Client,
    pub lambda: aws_sdk_lambda::Client,
    pub cognito: aws_sdk_cognitoidentityprovider::Client,
    pub apigw: aws_sdk_apigateway::Client,
    pub apigw2: aws_sdk_apigatewayv2::Client,
    pub logs: aws_sdk_cloudwatchlogs::Client,
}

impl Sdk {
    pub async fn new(url: &str) -> Sdk {
        Sdk::in_region(url, "us-east-1").await
    }

    /// Clients for another region (IAM is global; the rest is per region).
    pub async fn in_region(url: &str, region: &str) -> Sdk {
        let config = aws_config::defaults(BehaviorVersion::latest())
            .endpoint_url(url)
            .region(aws_config::Region::new(region.to_string()))
            .credentials_provider(Credentials::new("test", "test", None, None, "tests"))
            .load()
            .await;
        Sdk {
            iam: aws_sdk_iam::Client::new(&config),
            lambda: aws_sdk_lambda::Client::new(&config),
            cognito: aws_sdk_cognitoidentityprovider::Client::new(&config),
            apigw: aws_sdk_apigateway::Client::new(&config),
            apigw2: aws_sdk_apigatewayv2::Client::new(&config),
            logs: aws_sdk_cloudwatchlogs::Client::new(&config),
        }
    }

    pub async fn role_names(&self) -> Vec<String> {
        let out = self.iam.list_roles().send().await.unwrap();
        out.roles()
            .iter()
            .map(|r| r.role_name().to_string())
            .collect()
    }

    pub async fn function_names(&self) -> Vec<String> {
        let out = self.lambda.list_functions().send().await.unwrap();
        out.functions()
            .iter()
            .filter_map(|f| f.function_name().map(str::to_string))
            .collect()
    }

    /// (id, name) of every user pool.
    pub async fn pools(&self) -> Vec<(String, String)> {
        let out = self
            .cognito
            .list_user_pools()
            .max_results(60)
            .send()
            .await
            .unwrap();
        out.user_pools()
            .iter()
            .map(|p| {
                (
                    p.id().unwrap().to_string(),
                    p.name().unwrap_or_default().to_string(),
                )
            })
            .collect()
    }

    /// (id, name) of every REST API.
    pub async fn apis(&self) -> Vec<(String, String)> {
        let out = self.apigw.get_rest_apis().limit(500).send().await.unwrap();
        out.items()
            .iter()
            .map(|a| {
                (
                    a.id().unwrap().to_string(),
                    a.name().unwrap_or_default().to_string(),
                )
            })
            .collect()
    }

    /// (id, name) of every HTTP API.
    pub async fn http_apis(&self) -> Vec<(String, String)> {
        let out = self.apigw2.get_apis().send().await.unwrap();
        out.items()
            .iter()
            .map(|a| {
                (
                    a.api_id().unwrap().to_string(),
                    a.name().unwrap_or_default().to_string(),
                )
            })
            .collect()
    }

    pub async fn clients(&self, pool_id: &str) -> Vec<(String, String)> {
        let out = self
            .cognito
            .list_user_pool_clients()
            .user_pool_id(pool_id)
            .max_results(60)
            .send()
            .await
            .unwrap();
        out.user_pool_clients()
            .iter()
            .map(|c| {
                (
                    c.client_id().unwrap().to_string(),
                    c.client_name().unwrap_or_default().to_string(),
                )
            })
            .collect()
    }

    /// The names of every log group.
    pub async fn log_groups(&self) -> Vec<String> {
        let out = self.logs.describe_log_groups().send().await.unwrap();
        out.log_groups()
            .iter()
            .filter_map(|g| g.log_group_name().map(str::to_string))
            .collect()
    }

    /// Nothing of any stack is left in the emulator.
    pub async fn assert_empty(&self) {
        assert_eq!(self.role_names().await, Vec::<String>::new(), "roles left");
        assert_eq!(
            self.function_names().await,
            Vec::<String>::new(),
            "functions left"
        );
        assert_eq!(
            self.pools().await,
            Vec::<(String, String)>::new(),
            "user pools left"
        );
        assert_eq!(
            self.apis().await,
            Vec::<(String, String)>::new(),
            "REST APIs left"
        );
        assert_eq!(
            self.http_apis().await,
            Vec::<(String, String)>::new(),
            "HTTP APIs left"
        );
        assert_eq!(
            self.log_groups().await,
            Vec::<String>::new(),
            "log groups left"
        );
    }
}
pub mod proxy;

/// Turns the stack `up` made into one made before roles were per region: its function
/// runs as `<stack>-handler` (tagged for the stack, no region tag, AWS's basic execution
/// policy attached, as those versions made it), the state file records that name, and
/// the region-named role is gone.
pub async fn make_legacy(h: &Harness, sdk: &Sdk) -> String {
    let legacy = format!("{}-handler", h.stack);
    let regional = format!("{}-handler-us-east-1", h.stack);
    let trust = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"Service":"lambda.amazonaws.com"},"Action":"sts:AssumeRole"}]}"#;
    let basic = "arn:aws:iam::aws:policy/service-role/AWSLambdaBasicExecutionRole";
    let made = sdk
        .iam
        .create_role()
        .role_name(&legacy)
        .assume_role_policy_document(trust)
        .tags(
            aws_sdk_iam::types::Tag::builder()
                .key("provision:stack")
                .value(&h.stack)
                .build()
                .unwrap(),
        )
        .send()
        .await
        .unwrap();
    let arn = made.role().unwrap().arn().to_string();
    sdk.iam
        .attach_role_policy()
        .role_name(&legacy)
        .policy_arn(basic)
        .send()
        .await
        .unwrap();
    sdk.lambda
        .update_function_configuration()
        .function_name(format!("{}-handler", h.stack))
        .role(&arn)
        .send()
        .await
        .unwrap();
    sdk.iam
        .delete_role_policy()
        .role_name(&regional)
        .policy_name("provision-handler-logs")
        .send()
        .await
        .unwrap();
    sdk.iam
        .delete_role()
        .role_name(&regional)
        .send()
        .await
        .unwrap();
    let mut state: Value =
        serde_json::from_str(&std::fs::read_to_string(h.state_file()).unwrap()).unwrap();
    state["resources"]["iam_role"] = Value::String(legacy.clone());
    std::fs::write(h.state_file(), state.to_string()).unwrap();
    // The function's update settles (MiniStack: about half a second).
    std::thread::sleep(std::time::Duration::from_secs(2));
    legacy
}

/// Sends `sig` to a child process of this test (`Child::id`), which must not have been
/// reaped yet; fails the test when kill(2) does.
pub fn signal(pid: u32, sig: libc::c_int) {
    // SAFETY: kill(2) on a child of this test that has not been waited for.
    assert_eq!(
        unsafe { libc::kill(pid as libc::pid_t, sig) },
        0,
        "kill({pid}, {sig})"
    );
}

/// The role name of a function's `Role` ARN.
pub async fn function_role(sdk: &Sdk, function: &str) -> String {
    let f = sdk
        .lambda
        .get_function()
        .function_name(function)
        .send()
        .await
        .unwrap();
    let arn = f.configuration().unwrap().role().unwrap().to_string();
    arn.rsplit('/').next().unwrap().to_string()
}

/// A role's tags, sorted.
pub async fn role_tags(sdk: &Sdk, role: &str) -> Vec<(String, String)> {
    let out = sdk
        .iam
        .list_role_tags()
        .role_name(role)
        .send()
        .await
        .unwrap();
    let mut tags: Vec<(String, String)> = out
        .tags()
        .iter()
        .map(|t| (t.key().to_string(), t.value().to_string()))
        .collect();
    tags.sort();
    tags
}
