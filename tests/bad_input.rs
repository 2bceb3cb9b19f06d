//! Bad input never half-applies: each case gets its exit code and one clear line naming
//! the field, no AWS write (for input errors, no AWS call at all), and the state file's
//! bytes unchanged.

mod common;

use common::Harness;

const GOOD_STATE: &str = r#"{
  "schema": 1,
  "stack": "it-stack",
  "region": "us-east-1",
  "account": "000000000000",
  "resources": { "user_pool": "us-east-1_doesnotexist" }
}"#;

struct Case {
    name: &'static str,
    args: Vec<String>,
    /// The state file's content before the run (None: GOOD_STATE).
    state: Option<&'static str>,
    /// Files to write into the test directory first.
    files: Vec<(&'static str, &'static str)>,
    /// Environment variables to remove.
    unset: Vec<&'static str>,
    code: i32,
    /// The error line must contain each of these.
    says: Vec<&'static str>,
    /// Whether the case is caught before any AWS call.
    no_call: bool,
}

fn case(name: &'static str, args: &[&str], code: i32, says: &[&'static str]) -> Case {
    Case {
        name,
        args: args.iter().map(|a| a.to_string()).collect(),
        state: None,
        files: vec![],
        unset: vec![],
        code,
        says: says.to_vec(),
        no_call: true,
    }
}

#[test]
fn bad_input_is_refused_before_any_write_with_one_clear_line() {
    let h = Harness::new();
    let long_prefix = "a".repeat(64);
    let long_stack = "s".repeat(33);
    // Cognito's limits: a scope string of at most 256 characters, at most 50 per client.
    let long_scope = format!("users/{}", "r".repeat(251));
    let many_scopes: Vec<String> = (0..51)
        .flat_map(|i| ["--scope".to_string(), format!("users/s{i}")])
        .collect();
    let mut many_scopes_args = vec!["up"];
    many_scopes_args.extend(many_scopes.iter().map(String::as_str));
    // An HTTP API's hard limits: 10 scopes per route (here `ANY` needs all 11), 50
    // audiences per JWT authorizer (one per client).
    let route_scopes: Vec<String> = (0..11)
        .flat_map(|i| ["--scope".to_string(), format!("users/s{i}")])
        .collect();
    let mut route_scopes_args = vec!["up", "--front", "http"];
    route_scopes_args.extend(route_scopes.iter().map(String::as_str));
    let clients: Vec<String> = (0..51)
        .flat_map(|i| ["--client".to_string(), format!("c{i}")])
        .collect();
    let mut clients_args = vec!["up", "--front", "http"];
    clients_args.extend(clients.iter().map(String::as_str));
    // A 60 MB handler that does not compress: over Lambda's 50 MB zip upload limit.
    let big = h.dir.path().join("big-handler");
    std::fs::write(&big, common::incompressible(60 << 20)).unwrap();
    let big = big.to_str().unwrap().to_string();
    let cases = vec![
        case(
            "a handler whose zip is over Lambda's 50 MB",
            &["up", "--handler", &big],
            2,
            &["zip is 60.0 MB", "limit of 50.0 MB", "strip"],
        ),
        case(
            "rotate: a client the configuration does not list",
            &["rotate", "--client", "nobody"],
            2,
            &["client `nobody`", "no such client"],
        ),
        case(
            "rotate: an unpublished client without --show-secret",
            &["rotate", "--client", "client"],
            2,
            &["not published", "--show-secret"],
        ),
        case(
            "status: a max secret age of 0 days",
            &["status", "--max-secret-age", "0"],
            2,
            &["max secret age"],
        ),
        case(
            "a log retention CloudWatch does not take",
            &["up", "--log-retention", "8"],
            2,
            &["log retention", "8 days"],
        ),
        case(
            "the same client twice",
            &["up", "--client", "billing", "--client", "billing"],
            2,
            &["client `billing`", "listed twice"],
        ),
        case(
            "a client scope the stack does not define",
            &["up", "--client", "billing=users/delete"],
            2,
            &["users/delete", "not one of the stack's"],
        ),
        case(
            "a client name with capitals",
            &["up", "--client", "Billing"],
            2,
            &["client name `Billing`"],
        ),
        Case {
            files: vec![(
                "provision.toml",
                "[[client]]\nname = \"admin\"\nsecret = true\nreaders = [\"arn:aws:iam::12:role/admin\"]\n",
            )],
            ..case(
                "a malformed reader ARN",
                &["up"],
                2,
                &["reader `arn:aws:iam::12:role/admin`", "not an IAM role"],
            )
        },
        Case {
            files: vec![(
                "provision.toml",
                "[methods]\nFETCH = [\"users/read\"]\n",
            )],
            ..case(
                "a method API Gateway does not take",
                &["up"],
                2,
                &["methods", "FETCH"],
            )
        },
        case(
            "scope string over Cognito's 256 characters",
            &["up", "--scope", &long_scope],
            2,
            &["scope", "at most 256"],
        ),
        case(
            "more scopes than an app client may have",
            &many_scopes_args,
            2,
            &["scopes", "51", "at most 50"],
        ),
        case(
            "region name too long for a role name",
            &["--region", "us-eastttttttttttttttttt-1", "up"],
            2,
            &["region", "not a region name"],
        ),
        Case {
            // On AWS (no endpoint URL): refused before anything, credentials included.
            unset: vec!["AWS_ENDPOINT_URL"],
            ..case(
                "region outside the aws partition",
                &["--region", "cn-north-1", "down"],
                2,
                &["cn-north-1", "partition"],
            )
        },
        case(
            "stack with capitals",
            &["--stack", "My_Stack", "up"],
            2,
            &["stack name", "My_Stack"],
        ),
        case(
            "stack too long",
            &["--stack", &long_stack, "up"],
            2,
            &["stack name", "1 to 32"],
        ),
        case(
            "domain prefix with aws",
            &["up", "--domain-prefix", "my-aws-api"],
            2,
            &["domain prefix", "`aws`"],
        ),
        case(
            "domain prefix with cognito",
            &["up", "--domain-prefix", "cognito-x"],
            2,
            &["domain prefix", "`cognito`"],
        ),
        case(
            "domain prefix uppercase",
            &["up", "--domain-prefix", "MyPrefix"],
            2,
            &["domain prefix", "a-z"],
        ),
        case(
            "domain prefix leading hyphen",
            &["up", "--domain-prefix=-x"],
            2,
            &["domain prefix", "hyphen"],
        ),
        case(
            "domain prefix too long",
            &["up", "--domain-prefix", &long_prefix],
            2,
            &["domain prefix", "63"],
        ),
        case(
            "scope without server",
            &["up", "--scope", "read"],
            2,
            &["scope `read`", "RESOURCE_SERVER/SCOPE"],
        ),
        case(
            "scopes of two servers",
            &["up", "--scope", "users/read", "--scope", "orders/read"],
            2,
            &["scope", "one resource server"],
        ),
        case(
            "scope with a space",
            &["up", "--scope", "users/re ad"],
            2,
            &["scope", "scope name"],
        ),
        case(
            "malformed region",
            &["--region", "moon-1", "up"],
            2,
            &["region `moon-1`"],
        ),
        case(
            "memory out of range",
            &["up", "--memory", "64"],
            2,
            &["memory", "128 to 10240"],
        ),
        case(
            "architecture unknown",
            &["up", "--architecture", "sparc"],
            2,
            &["architecture", "sparc"],
        ),
        case(
            "missing handler binary",
            &["up", "--handler", "/nonexistent/bootstrap"],
            2,
            &["handler binary", "cargo"],
        ),
        case(
            "endpoint URL not http",
            &["--endpoint-url", "ftp://x", "up"],
            2,
            &["endpoint URL", "http://"],
        ),
        Case {
            state: Some("{ not json"),
            ..case(
                "malformed state file",
                &["up"],
                2,
                &["state file", "not valid JSON"],
            )
        },
        Case {
            state: Some(r#"{"terraform_version": "1.9"}"#),
            ..case(
                "foreign state file",
                &["up"],
                2,
                &["state file", "not a provision state file"],
            )
        },
        Case {
            state: Some(r#"{"schema": 0, "stack": "it-stack", "region": "us-east-1"}"#),
            ..case(
                "older-schema state file",
                &["up"],
                2,
                &["state file", "schema version 0"],
            )
        },
        Case {
            state: Some(r#"{"schema": 1, "stack": "other", "region": "us-east-1"}"#),
            ..case(
                "state file of another stack",
                &["down"],
                2,
                &["state file", "stack `other`"],
            )
        },
        Case {
            state: Some(r#"{"schema": 1, "stack": "it-stack", "region": "eu-west-1"}"#),
            ..case(
                "state file of another region",
                &["--region", "us-east-1", "up"],
                2,
                &["state file", "region eu-west-1"],
            )
        },
        Case {
            state: Some(
                r#"{"schema": 1, "stack": "it-stack", "region": "us-east-1", "account": "123456789012"}"#,
            ),
            no_call: false,
            ..case(
                "state file of another account",
                &["up"],
                2,
                &["state file", "account 123456789012"],
            )
        },
        case(
            "--front neither rest nor http",
            &["up", "--front", "graphql"],
            2,
            &["front", "`graphql`", "rest", "http"],
        ),
        Case {
            files: vec![("provision.toml", "front = \"soap\"\n")],
            ..case(
                "config front neither rest nor http",
                &["status"],
                2,
                &["front", "`soap`"],
            )
        },
        case(
            "front http: a route with 11 scopes",
            &route_scopes_args,
            2,
            &["front = \"http\"", "11 scopes", "at most 10"],
        ),
        case(
            "front http: 51 clients",
            &clients_args,
            2,
            &["front = \"http\"", "51 clients", "at most 50 audiences"],
        ),
        case(
            "config file missing",
            &["-c", "nope.toml", "up"],
            2,
            &["config file nope.toml", "cannot read"],
        ),
        Case {
            files: vec![("provision.toml", "stak = \"x\"\n")],
            ..case(
                "config with an unknown key",
                &["up"],
                2,
                &["config file provision.toml", "stak"],
            )
        },
        Case {
            files: vec![("provision.toml", "[handler\nmemory_mb = 1\n")],
            ..case(
                "config not TOML",
                &["up"],
                2,
                &["config file provision.toml"],
            )
        },
        Case {
            files: vec![("provision.toml", "[handler]\nmemory_mb = 99999\n")],
            ..case(
                "config value out of range",
                &["status"],
                2,
                &["memory", "99999"],
            )
        },
        case(
            "invoke path without slash",
            &["invoke", "--path", "orders"],
            2,
            &["path `orders`"],
        ),
        Case {
            no_call: false,
            ..case(
                "unreachable endpoint",
                &["--endpoint-url", "http://127.0.0.1:9", "up"],
                1,
                &["checking the AWS credentials", "endpoint"],
            )
        },
        Case {
            unset: vec!["AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"],
            no_call: false,
            ..case("no credentials", &["up"], 2, &["credentials"])
        },
    ];
    assert!(cases.len() >= 15);
    // Every run goes through a proxy, which counts what reaches AWS: "no AWS call" and
    // "no write" do not rest on the binary's own call log.
    let proxy = common::proxy::Proxy::start(&h.url);
    let mut failures = Vec::new();
    for c in &cases {
        let state = c.state.unwrap_or(GOOD_STATE);
        std::fs::create_dir_all(h.state_file().parent().unwrap()).unwrap();
        std::fs::write(h.state_file(), state).unwrap();
        for (name, content) in &c.files {
            std::fs::write(h.dir.path().join(name), content).unwrap();
        }
        let mut cmd = h.command_via(&proxy);
        for var in &c.unset {
            cmd.env_remove(var);
        }
        let args: Vec<&str> = c.args.iter().map(String::as_str).collect();
        proxy.reset_count();
        let out = h.run_with(cmd, &args);
        let (calls, writes) = (proxy.seen(), proxy.seen_writes());
        let (code, stderr) = (out.code, &out.stderr);
        let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
        let mut problems = Vec::new();
        if code != c.code {
            problems.push(format!("exit {code}, expected {}", c.code));
        }
        if lines.len() != 1 || !lines[0].starts_with("error: ") {
            problems.push(format!("not one error line: {lines:?}"));
        }
        for word in &c.says {
            if !stderr.contains(word) {
                problems.push(format!("error does not say `{word}`"));
            }
        }
        if c.no_call && !calls.is_empty() {
            problems.push(format!("AWS was called: {calls:?}"));
        }
        if !writes.is_empty() {
            problems.push(format!("AWS writes: {writes:?}"));
        }
        if std::fs::read_to_string(h.state_file()).unwrap() != state {
            problems.push("state file changed".into());
        }
        if !out.stdout.is_empty() {
            problems.push(format!("stdout not empty: {}", out.stdout));
        }
        for (name, _) in &c.files {
            std::fs::remove_file(h.dir.path().join(name)).unwrap();
        }
        if !problems.is_empty() {
            failures.push(format!(
                "{}: {}\n    stderr: {stderr}",
                c.name,
                problems.join("; ")
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} cases failed:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
    // Nothing was created by any of them.
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async { h.aws().await.assert_empty().await });
    println!("{} bad inputs refused", cases.len());
    // The README's figure is this list's length: adding a case means fixing the figure.
    let claim = format!("({} cases in `tests/bad_input.rs`)", cases.len());
    assert!(
        common::readme_text().contains(&claim),
        "README.md should say {claim:?} (Guarantees, \"Bad input never half-applies\")"
    );
}
