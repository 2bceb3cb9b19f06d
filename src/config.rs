//! The desired stack: built-in defaults ← provision.toml ← environment ← flags, validated
//! before anything talks to AWS.

use std::fmt;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::cli::{Cli, StackArgs};
use crate::consumers::{self, ClientSpec, MethodSpec};
use crate::errors::{Error, Result};
use crate::store::{self, Location, LockOpts};

mod front;
use front::check_http_limits;
pub use front::Front;

pub use crate::names::{validate_region, validate_stack, Scope, LOCAL_DEFAULT_REGION, MAX_SCOPES};

pub const DEFAULT_STACK: &str = "m2m-api";
pub const DEFAULT_STATE_DIR: &str = "state";
pub const DEFAULT_CONFIG: &str = "provision.toml";
pub const DEFAULT_SCOPE: &str = "users/read";
pub const DEFAULT_MEMORY_MB: i32 = 128;
pub const DEFAULT_TIMEOUT_S: i32 = 10;
pub const DEFAULT_TOKEN_VALIDITY_MIN: i32 = 60;
pub const DEFAULT_LOG_RETENTION_DAYS: i32 = 30;
/// The retention periods CloudWatch Logs accepts (PutRetentionPolicy), and 0 for never:
/// https://docs.aws.amazon.com/AmazonCloudWatchLogs/latest/APIReference/API_PutRetentionPolicy.html
pub const LOG_RETENTION_DAYS: [i32; 23] = [
    0, 1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922,
    3288, 3653,
];
/// Where the handler binary is looked for when no path is given, in this order:
/// a Lambda build for the architecture (scripts/build-lambda), a plain `cargo lambda
/// build`, then host builds.
pub fn handler_candidates(arch: Arch) -> [String; 4] {
    [
        format!("target/lambda/{arch}/handler/bootstrap"),
        "target/lambda/handler/bootstrap".into(),
        "target/release/handler".into(),
        "target/debug/handler".into(),
    ]
}

/// The config file, as written by the user. Every key is optional.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    pub stack: Option<String>,
    pub region: Option<String>,
    pub endpoint_url: Option<String>,
    pub state_dir: Option<PathBuf>,
    pub lock_lease: Option<u64>,
    pub lock_wait: Option<u64>,
    pub domain_prefix: Option<String>,
    pub scopes: Option<Vec<String>>,
    /// Days the function's logs are kept (0: never expire).
    pub log_retention: Option<i32>,
    #[serde(default)]
    pub handler: HandlerFileConfig,
    #[serde(default)]
    pub token: TokenFileConfig,
    /// `[[client]]`: one app client per calling service.
    #[serde(default, rename = "client")]
    pub clients: Vec<crate::consumers::ClientFileConfig>,
    /// `[methods]`: HTTP method → the scopes it needs.
    pub methods: Option<std::collections::BTreeMap<String, Vec<String>>>,
    /// `status` calls a client secret older than this many days `drifted`.
    pub max_secret_age: Option<u64>,
    /// `rest` or `http`: which kind of API Gateway API fronts the function.
    pub front: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HandlerFileConfig {
    pub path: Option<PathBuf>,
    pub memory_mb: Option<i32>,
    pub timeout_s: Option<i32>,
    pub architecture: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenFileConfig {
    pub access_token_validity_minutes: Option<i32>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Arch {
    X86_64,
    Arm64,
}

impl Arch {
    pub fn parse(s: &str) -> Result<Self> {
        match s {
            "x86_64" | "x86-64" | "amd64" => Ok(Arch::X86_64),
            "arm64" | "aarch64" => Ok(Arch::Arm64),
            other => Err(Error::usage(format!(
                "architecture: `{other}` is not supported; use x86_64 or arm64"
            ))),
        }
    }

    /// The name Lambda uses.
    pub fn as_str(self) -> &'static str {
        match self {
            Arch::X86_64 => "x86_64",
            Arch::Arm64 => "arm64",
        }
    }
}

impl fmt::Display for Arch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where and as whom the tool runs: enough for every command.
#[derive(Debug, Clone)]
pub struct Target {
    pub stack: String,
    /// None: resolve with the SDK's chain later (see `aws::resolve_region`).
    pub region: Option<String>,
    pub endpoint_url: Option<String>,
    /// Where the state and the lock live: a directory, or S3.
    pub state: Location,
    /// 1: every step one after another; more: independent chains at the same time.
    pub concurrency: usize,
    pub lock: LockOpts,
}

impl Target {
    pub fn is_local(&self) -> bool {
        self.endpoint_url.is_some()
    }
}

/// The desired stack's settings (what `up` converges to and `status` compares with).
#[derive(Debug, Clone)]
pub struct Desired {
    /// None: derived from account, region and stack once the account is known.
    pub domain_prefix: Option<String>,
    /// Sorted, deduplicated, all of one resource server.
    pub scopes: Vec<Scope>,
    pub handler: PathBuf,
    /// Whether `handler` was named by the user (a missing named file is always an error).
    pub handler_given: bool,
    pub memory_mb: i32,
    pub timeout_s: i32,
    pub architecture: Arch,
    pub token_validity_min: i32,
    /// Days the function's log group keeps its events; 0: never expire.
    pub log_retention_days: i32,
    /// The app clients, in the configuration's order (the first is the default one).
    pub clients: Vec<ClientSpec>,
    /// The HTTP methods on `/` and `/{proxy+}`, sorted by verb.
    pub methods: Vec<MethodSpec>,
    /// Which API fronts the function.
    pub front: Front,
}

impl Desired {
    pub fn client(&self, name: &str) -> Option<&ClientSpec> {
        self.clients.iter().find(|c| c.name == name)
    }
    pub fn resource_server(&self) -> &str {
        &self.scopes[0].server
    }
    pub fn scope_names(&self) -> Vec<String> {
        self.scopes.iter().map(|s| s.name.clone()).collect()
    }
    pub fn scope_strings(&self) -> Vec<String> {
        self.scopes.iter().map(|s| s.to_string()).collect()
    }
}

/// Reads the config file: the one named, else ./provision.toml when it exists.
pub fn load_file(named: Option<&Path>) -> Result<FileConfig> {
    let (path, must_exist) = match named {
        Some(p) => (p.to_path_buf(), true),
        None => (PathBuf::from(DEFAULT_CONFIG), false),
    };
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && !must_exist => {
            return Ok(FileConfig::default())
        }
        Err(e) => {
            return Err(Error::usage(format!(
                "config file {}: cannot read it: {e}",
                path.display()
            )))
        }
    };
    toml::from_str(&text).map_err(|e| {
        Error::usage(format!(
            "config file {}: {}",
            path.display(),
            e.to_string().trim_end().replace('\n', " ")
        ))
    })
}

pub fn resolve_target(cli: &Cli, file: &FileConfig) -> Result<Target> {
    let stack = cli
        .stack
        .clone()
        .or_else(|| file.stack.clone())
        .unwrap_or_else(|| DEFAULT_STACK.to_string());
    validate_stack(&stack)?;
    let region = cli.region.clone().or_else(|| file.region.clone());
    if let Some(r) = &region {
        validate_region(r)?;
    }
    let endpoint_url = cli
        .endpoint_url
        .clone()
        .or_else(|| file.endpoint_url.clone())
        .filter(|u| !u.is_empty())
        .map(|u| validate_endpoint(&u))
        .transpose()?;
    let state_dir = cli
        .state_dir
        .clone()
        .or_else(|| file.state_dir.clone())
        .unwrap_or_else(|| PathBuf::from(DEFAULT_STATE_DIR));
    let state = Location::parse(&state_dir)?;
    let lease = cli
        .lock_lease
        .or(file.lock_lease)
        .unwrap_or(store::DEFAULT_LEASE.as_secs());
    if !store::LEASE_RANGE.contains(&lease) {
        return Err(Error::usage(format!(
            "lock lease: {lease} s is out of range; use {} to {} seconds",
            store::LEASE_RANGE.start(),
            store::LEASE_RANGE.end()
        )));
    }
    let wait = cli.lock_wait.or(file.lock_wait).unwrap_or(0);
    if cli.max_concurrency == 0 {
        return Err(Error::usage(
            "max concurrency: 0 would do nothing; use 1 or more",
        ));
    }
    Ok(Target {
        stack,
        region,
        endpoint_url,
        state,
        concurrency: cli.max_concurrency,
        lock: LockOpts {
            lease: std::time::Duration::from_secs(lease),
            wait: std::time::Duration::from_secs(wait),
        },
    })
}

/// The oldest a client secret may be before `status` calls it drifted: the flag, else
/// the config's `max_secret_age`; none by default.
pub fn resolve_max_secret_age(flag: Option<u64>, file: &FileConfig) -> Result<Option<u64>> {
    match flag.or(file.max_secret_age) {
        Some(0) => Err(Error::usage(
            "max secret age: 0 days would call every secret drifted; give at least 1 (days)",
        )),
        other => Ok(other),
    }
}

pub fn resolve_desired(args: &StackArgs, file: &FileConfig) -> Result<Desired> {
    let domain_prefix = args
        .domain_prefix
        .clone()
        .or_else(|| file.domain_prefix.clone());
    if let Some(p) = &domain_prefix {
        validate_domain_prefix(p, "domain prefix")?;
    }
    let raw_scopes: Vec<String> = if !args.scopes.is_empty() {
        args.scopes.clone()
    } else if let Some(s) = &file.scopes {
        s.clone()
    } else {
        vec![DEFAULT_SCOPE.to_string()]
    };
    let scopes = parse_scopes(&raw_scopes)?;
    let memory_mb = args
        .memory
        .or(file.handler.memory_mb)
        .unwrap_or(DEFAULT_MEMORY_MB);
    in_range("memory (MB)", memory_mb, 128, 10240)?;
    let timeout_s = args
        .timeout
        .or(file.handler.timeout_s)
        .unwrap_or(DEFAULT_TIMEOUT_S);
    in_range("timeout (seconds)", timeout_s, 1, 900)?;
    let architecture = match args
        .architecture
        .as_deref()
        .or(file.handler.architecture.as_deref())
    {
        Some(a) => Arch::parse(a)?,
        None => Arch::X86_64,
    };
    let (handler, handler_given) = match args.handler.clone().or_else(|| file.handler.path.clone())
    {
        Some(p) => (p, true),
        None => (default_handler(architecture), false),
    };
    let token_validity_min = args
        .token_validity
        .or(file.token.access_token_validity_minutes)
        .unwrap_or(DEFAULT_TOKEN_VALIDITY_MIN);
    in_range("token validity (minutes)", token_validity_min, 5, 1440)?;
    let log_retention_days = args
        .log_retention
        .or(file.log_retention)
        .unwrap_or(DEFAULT_LOG_RETENTION_DAYS);
    if !LOG_RETENTION_DAYS.contains(&log_retention_days) {
        return Err(Error::usage(format!(
            "log retention: {log_retention_days} days is not one CloudWatch Logs takes; use one of {} (0: never expire)",
            LOG_RETENTION_DAYS.map(|d| d.to_string()).join(", ")
        )));
    }
    let clients = consumers::resolve_clients(&args.clients, &file.clients, &scopes)?;
    let methods = consumers::resolve_methods(file.methods.as_ref(), &scopes)?;
    let front = match args.front.as_deref().or(file.front.as_deref()) {
        Some(f) => Front::parse(f)?,
        None => Front::Rest,
    };
    if front == Front::Http {
        check_http_limits(&clients, &methods)?;
    }
    Ok(Desired {
        front,
        log_retention_days,
        clients,
        methods,
        domain_prefix,
        scopes,
        handler,
        handler_given,
        memory_mb,
        timeout_s,
        architecture,
        token_validity_min,
    })
}

fn default_handler(arch: Arch) -> PathBuf {
    let candidates = handler_candidates(arch);
    candidates
        .iter()
        .map(PathBuf::from)
        .find(|p| p.is_file())
        .unwrap_or_else(|| PathBuf::from(&candidates[0]))
}

fn in_range(what: &str, value: i32, min: i32, max: i32) -> Result<()> {
    if (min..=max).contains(&value) {
        Ok(())
    } else {
        Err(Error::usage(format!(
            "{what}: {value} is out of range; use {min} to {max}"
        )))
    }
}

pub fn parse_scopes(raw: &[String]) -> Result<Vec<Scope>> {
    let mut scopes = raw
        .iter()
        .map(|s| Scope::parse(s.trim()))
        .collect::<Result<Vec<_>>>()?;
    scopes.sort();
    scopes.dedup();
    if scopes.is_empty() {
        return Err(Error::usage(
            "scopes: at least one scope is needed, e.g. users/read",
        ));
    }
    if scopes.len() > MAX_SCOPES {
        return Err(Error::usage(format!(
            "scopes: {} given; Cognito allows an app client at most {MAX_SCOPES}",
            scopes.len()
        )));
    }
    let server = &scopes[0].server;
    if let Some(other) = scopes.iter().find(|s| &s.server != server) {
        return Err(Error::usage(format!(
            "scope `{other}`: all scopes must belong to one resource server (`{server}` here)"
        )));
    }
    Ok(scopes)
}

/// Cognito's rules for a prefix domain.
pub fn validate_domain_prefix(prefix: &str, what: &str) -> Result<()> {
    let bad = |why: &str| Error::usage(format!("{what} `{prefix}`: {why}"));
    if prefix.is_empty() || prefix.len() > 63 {
        return Err(bad("must be 1 to 63 characters"));
    }
    if !prefix
        .chars()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
    {
        return Err(bad("only a-z, 0-9 and - are allowed"));
    }
    if prefix.starts_with('-') || prefix.ends_with('-') {
        return Err(bad("must not start or end with a hyphen"));
    }
    for reserved in ["aws", "amazon", "cognito"] {
        if prefix.contains(reserved) {
            return Err(bad(&format!(
                "must not contain `{reserved}` (reserved by AWS); choose another with --domain-prefix"
            )));
        }
    }
    Ok(())
}

/// provision builds the token and API URLs of the `aws` partition, and the stack needs
/// Cognito user pools with a hosted domain and a Cognito authorizer: China's regions
/// have neither, GovCloud's hosted domains take another form (`auth-fips`), and the
/// isolated partitions are unknown. A local emulator takes any region.
pub fn check_partition(region: &str, local: bool) -> Result<()> {
    let other = ["cn-", "us-gov-", "us-iso", "eu-iso"]
        .iter()
        .any(|p| region.starts_with(p));
    if other && !local {
        return Err(Error::usage(format!(
            "region `{region}`: outside the `aws` partition, which is the only one provision supports (Cognito user pools, hosted domains or Cognito authorizers differ or are missing there); use a region of the aws partition"
        )));
    }
    Ok(())
}

fn validate_endpoint(url: &str) -> Result<String> {
    let rest = url
        .strip_prefix("http://")
        .or_else(|| url.strip_prefix("https://"));
    match rest {
        Some(host) if !host.is_empty() && !host.starts_with('/') => {
            Ok(url.trim_end_matches('/').to_string())
        }
        _ => Err(Error::usage(format!(
            "endpoint URL `{url}`: use http://HOST:PORT or https://HOST:PORT"
        ))),
    }
}

/// The default domain prefix: stable for one account, region and stack, and very
/// likely free (prefixes are global per region).
pub fn derived_domain_prefix(account: &str, region: &str, stack: &str) -> String {
    use sha2::{Digest, Sha256};
    let digest = Sha256::digest(format!("{account}/{region}/{stack}").as_bytes());
    format!("{stack}-{}", &hex::encode(digest)[..8])
}

#[cfg(test)]
mod tests;
