//! Command-line definitions. Parsing only: what the flags mean is decided in `config`.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

const ABOUT: &str = "Stand up, check and tear down a machine-to-machine OAuth2 API on AWS";

const LONG_ABOUT: &str = "\
Stand up, check and tear down a machine-to-machine OAuth2 API on AWS.

One stack is: an IAM role and a Rust Lambda function; a Cognito user pool with a hosted
token endpoint, a resource server and one client_credentials app client per calling
service (optionally published to Secrets Manager); an API Gateway REST API (ANY / and
ANY /{proxy+}, or the methods of [methods]) guarded by a Cognito authorizer that requires
the scopes, deployed to stage `prod`; and the function's log group. provision calls AWS
directly (no CloudFormation) and records what it made in <state-dir>/<region>/<stack>.json, or in
S3 (--state-dir s3://BUCKET[/PREFIX]) to share it with a team and CI.

Settings come from, highest first: flags, environment, the config file
(./provision.toml when it exists), built-in defaults.

Local mode: with --endpoint-url (or AWS_ENDPOINT_URL) every AWS call goes to that
address, e.g. a MiniStack emulator, and the token and API URLs take the emulator's form.";

const AFTER_HELP: &str = "\
Exit codes: 0 success; 1 AWS or API failure; 2 bad input (usage, config, state file);
3 `status` found drift or missing resources; 4 another run holds the stack's lock;
130 interrupted (Ctrl-C, SIGTERM) and stopped cleanly.";

#[derive(Debug, Parser)]
#[command(name = "provision", version, about = ABOUT, long_about = LONG_ABOUT, after_help = AFTER_HELP)]
pub struct Cli {
    /// Stack name: [a-z0-9-], 1 to 32 characters [default: m2m-api]
    #[arg(
        short,
        long,
        global = true,
        env = "PROVISION_STACK",
        value_name = "NAME"
    )]
    pub stack: Option<String>,

    /// AWS region [default: the SDK's chain (AWS_REGION, profile); us-east-1 with an endpoint URL]
    #[arg(long, global = true, env = "AWS_REGION", value_name = "REGION")]
    pub region: Option<String>,

    /// Send every AWS call to this URL (a local emulator such as MiniStack)
    #[arg(long, global = true, env = "AWS_ENDPOINT_URL", value_name = "URL")]
    pub endpoint_url: Option<String>,

    /// Where the state lives: a directory (<DIR>/<REGION>/<stack>.json, a local lock beside it),
    /// or s3://BUCKET[/PREFIX] (shared by a team and CI, with a lease lock; see
    /// `provision init-state`) [default: state]
    #[arg(
        long,
        global = true,
        env = "PROVISION_STATE_DIR",
        value_name = "DIR|s3://BUCKET[/PREFIX]"
    )]
    pub state_dir: Option<PathBuf>,

    /// S3 lock lease in seconds, 5 to 3600: a lock not renewed for this long has
    /// expired and is taken over [default: 60]
    #[arg(
        long,
        global = true,
        env = "PROVISION_LOCK_LEASE",
        value_name = "SECONDS"
    )]
    pub lock_lease: Option<u64>,

    /// Wait this long for a lock another run holds (local or S3), then exit 4
    /// [default: 0, fail at once]
    #[arg(
        long,
        global = true,
        env = "PROVISION_LOCK_WAIT",
        value_name = "SECONDS"
    )]
    pub lock_wait: Option<u64>,

    /// Config file (TOML) [default: ./provision.toml when it exists]
    #[arg(
        short,
        long,
        global = true,
        env = "PROVISION_CONFIG",
        value_name = "FILE"
    )]
    pub config: Option<PathBuf>,

    /// 1: every AWS step one after another (a baseline); more: the independent chains
    /// (IAM→Lambda, Cognito, API Gateway) run at the same time
    #[arg(
        long,
        global = true,
        env = "PROVISION_MAX_CONCURRENCY",
        value_name = "N",
        default_value_t = 8
    )]
    pub max_concurrency: usize,

    /// Output format: human, or json (exactly one JSON object on stdout; logs on stderr)
    #[arg(short, long, global = true, value_enum, default_value_t = Format::Human)]
    pub output: Format,

    /// More detail on stderr (-v: each step, -vv: each AWS request)
    #[arg(short, long, global = true, action = clap::ArgAction::Count, conflicts_with = "quiet")]
    pub verbose: u8,

    /// Print nothing but the result (and errors)
    #[arg(short, long, global = true)]
    pub quiet: bool,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    Human,
    Json,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create what is missing, update what differs, delete what the configuration no longer
    /// lists (clients, secrets, methods); print the outputs
    Up(UpArgs),
    /// Delete every resource of the stack (from the state file, or found by tag); remove the state file
    Down,
    /// Compare the desired stack with what AWS has: ok / drifted / missing / extra per
    /// resource, and each client's secrets (count, age of the oldest) (exit 3 unless all are ok)
    Status(StatusArgs),
    /// Print the outputs of the last successful `up` (from the state: no AWS call with a
    /// local state directory, one S3 read with S3 state)
    Outputs,
    /// Get an access token from the stack's token endpoint (client_credentials grant) and print it
    Token(ClientArg),
    /// Call the API with a fresh token; print the HTTP status and body; exit 0 only on 2xx
    Invoke(InvokeArgs),
    /// Print a client's id, secret, token URL and scope, for its calling service. With
    /// `rotate --show-secret`, the only output that holds a secret; it writes nothing anywhere
    Credentials(ClientArg),
    /// Give a client a second secret without a new client id and deliver it (a new
    /// AWSCURRENT version of its Secrets Manager secret, or --show-secret); --finish
    /// then deletes the old one. Cognito keeps at most two secrets per client
    #[command(after_help = ROTATE_AFTER_HELP)]
    Rotate(RotateArgs),
    /// Print the handler's log events (oldest first, `<time> <message>`); --follow keeps
    /// printing new ones until interrupted
    Logs(LogsArgs),
    /// Create (or check) an S3 bucket for shared state: versioning, default encryption,
    /// public access blocked, TLS only; idempotent
    InitState(InitStateArgs),
    /// Remove the stack's lock when its holder is gone: an expired S3 lock (a live one
    /// too with --force); prints who held it; exit 4 when a live lock stays
    Unlock(UnlockArgs),
    /// Print the stack's resource graph (kinds, ids, parent → child edges) as Graphviz DOT,
    /// or JSON with -o json; from the configuration and the state file, no AWS call
    Graph(StackArgs),
    /// List every stack of the region: those with a state in --state-dir and those found
    /// by their provision:stack tag (functions, user pools, REST APIs, IAM roles), with
    /// how many tagged resources each has, whether a run holds its lock, and when it was
    /// created. Reads only
    List,
    /// Take down every stack of `list` whose name matches --match (and, with
    /// --older-than, that was created longer ago), each as `down` would under its own
    /// lock, several at once; a locked stack is skipped. API Gateway allows one
    /// DeleteRestApi per 30 s per account, so N stacks take about N × 30 s
    #[command(after_help = PRUNE_AFTER_HELP)]
    Prune(PruneArgs),
}

const PRUNE_AFTER_HELP: &str = "\
Examples:
  provision prune --match 'pr-*' --older-than 24h --dry-run   # what a nightly job would delete
  provision prune --match 'pr-*' --older-than 24h             # delete it
Exit codes: 0 every matching stack deleted or skipped (locked); 1 one failed; 2 bad input
(no --match, a malformed glob or duration: nothing is sent to AWS); 130 interrupted.";

const ROTATE_AFTER_HELP: &str = "\
Examples:
  provision rotate --client billing        # add a second secret; Secrets Manager's AWSCURRENT gets it
  provision rotate --client billing --finish   # later, once callers use it: delete the old one
  provision rotate --client admin --show-secret   # a client not published to Secrets Manager
Exit codes: 0 done (or nothing to finish); 1 AWS failure; 2 bad input (unknown client, a
client with two secrets already, an unpublished client without --show-secret: nothing
is sent); 4 another run holds the stack's lock; 130 interrupted.";

#[derive(Debug, Args)]
pub struct RotateArgs {
    /// The app client, by its configured name
    #[arg(
        long,
        value_name = "NAME",
        required_unless_present = "all",
        conflicts_with = "all"
    )]
    pub client: Option<String>,

    /// Every configured client
    #[arg(long)]
    pub all: bool,

    /// Delete every secret but the newest (never the last one)
    #[arg(long)]
    pub finish: bool,

    /// Print the new secret in the result: the only way to deliver it for a client
    /// without `secret = true`. Cognito returns its value once, now, and never again
    #[arg(long, conflicts_with = "finish")]
    pub show_secret: bool,
}

#[derive(Debug, Args)]
pub struct StatusArgs {
    /// A client secret older than this many days is `drifted` (exit 3), to enforce a
    /// rotation period [config: max_secret_age; default: no limit]
    #[arg(long, value_name = "DAYS")]
    pub max_secret_age: Option<u64>,

    #[command(flatten)]
    pub stack: StackArgs,
}

#[derive(Debug, Args)]
pub struct PruneArgs {
    /// Which stacks, by name: a glob (`*`, `?`, `[a-z]`, `{a,b}`), e.g. 'pr-*'. Required,
    /// so that nothing is pruned by accident; '*' is every stack
    #[arg(long = "match", value_name = "GLOB", required = true)]
    pub pattern: String,

    /// Only stacks created longer ago than this, e.g. 90m, 24h, 7d (a stack whose
    /// creation time is unknown is never older)
    #[arg(long, value_name = "DURATION")]
    pub older_than: Option<String>,

    /// Print what would be deleted; delete nothing
    #[arg(long)]
    pub dry_run: bool,
}

#[derive(Debug, Args)]
pub struct LogsArgs {
    /// How far back to start, e.g. 90s, 5m, 2h, 1d
    #[arg(long, default_value = "10m", value_name = "DURATION")]
    pub since: String,

    /// Keep polling for new events (every 2 s) until interrupted
    #[arg(long, short = 'f')]
    pub follow: bool,
}

#[derive(Debug, Args)]
pub struct InitStateArgs {
    /// s3://BUCKET[/PREFIX]
    #[arg(value_name = "s3://BUCKET[/PREFIX]")]
    pub location: PathBuf,
}

#[derive(Debug, Args)]
pub struct UnlockArgs {
    /// Remove the lock even while its lease runs (the holder may still be running:
    /// only when you know it is not)
    #[arg(long)]
    pub force: bool,
}

#[derive(Debug, Args)]
pub struct ClientArg {
    /// The app client, by its configured name [default: the first]
    #[arg(long, value_name = "NAME")]
    pub client: Option<String>,
}

#[derive(Debug, Args)]
pub struct UpArgs {
    /// Print the plan (create / update / unchanged / adopt per resource) and send no write call
    #[arg(long)]
    pub dry_run: bool,

    #[command(flatten)]
    pub stack: StackArgs,
}

/// The desired stack's settings that can be given on the command line.
#[derive(Debug, Args, Default)]
pub struct StackArgs {
    /// Hosted-UI domain prefix [default: <stack>-<8 hex of sha256(account/region/stack)>]
    #[arg(long, env = "PROVISION_DOMAIN_PREFIX", value_name = "PREFIX")]
    pub domain_prefix: Option<String>,

    /// OAuth scope as RESOURCE_SERVER/SCOPE; repeat for more [default: users/read]
    #[arg(long = "scope", value_name = "RS/SCOPE")]
    pub scopes: Vec<String>,

    /// The handler binary to ship as `bootstrap` [default: the first that exists of
    /// target/lambda/<arch>/handler/bootstrap (scripts/build-lambda), target/lambda/handler/bootstrap,
    /// target/release/handler, target/debug/handler]
    #[arg(long, env = "PROVISION_HANDLER", value_name = "PATH")]
    pub handler: Option<PathBuf>,

    /// Lambda memory in MB, 128 to 10240 [default: 128]
    #[arg(long, value_name = "MB")]
    pub memory: Option<i32>,

    /// Lambda timeout in seconds, 1 to 900 [default: 10]
    #[arg(long, value_name = "SECONDS")]
    pub timeout: Option<i32>,

    /// Lambda architecture: x86_64 or arm64 [default: x86_64]
    #[arg(long, value_name = "ARCH")]
    pub architecture: Option<String>,

    /// Access-token validity in minutes, 5 to 1440 [default: 60]
    #[arg(long, value_name = "MINUTES")]
    pub token_validity: Option<i32>,

    /// Days the function's logs are kept: one of CloudWatch's periods (1, 3, 5, 7, 14,
    /// 30, 60, 90, ... 3653), or 0 to keep them forever [default: 30]
    #[arg(long, env = "PROVISION_LOG_RETENTION", value_name = "DAYS")]
    pub log_retention: Option<i32>,

    /// An app client for one calling service: NAME (all scopes) or NAME=RS/SCOPE,RS/SCOPE;
    /// repeat for more. Replaces the config file's [[client]] list [default: one named
    /// `client`]. Cognito names it <stack>-<NAME>
    #[arg(long = "client", value_name = "NAME[=SCOPES]")]
    pub clients: Vec<String>,

    /// The API's front door: `rest` (REST API, Cognito authorizer) or `http` (HTTP API,
    /// JWT authorizer; about a third of the price per request). Changing it on a stack
    /// switches in place: the new API is built, the function's permission moved, the
    /// old API deleted; the URL changes [default: rest]
    #[arg(long, env = "PROVISION_FRONT", value_name = "rest|http")]
    pub front: Option<String>,
}

#[derive(Debug, Args)]
pub struct InvokeArgs {
    /// Path under the API's stage, e.g. /orders/7
    #[arg(long, default_value = "/")]
    pub path: String,

    /// HTTP method
    #[arg(long, short = 'X', default_value = "GET")]
    pub method: String,

    /// Call without a token (expect 401)
    #[arg(long)]
    pub no_token: bool,

    /// Request body to send
    #[arg(long, short = 'd', value_name = "BODY")]
    pub data: Option<String>,

    /// Get the token as this app client, by its configured name [default: the first]
    #[arg(long, value_name = "NAME")]
    pub client: Option<String>,
}
