//! The benchmark: wall time and AWS calls of fresh `up`, no-op `up`, `status` and
//! `down` on MiniStack, the median of N runs each (default 5, `BENCH_RUNS`), on the bare
//! emulator and through a proxy adding 100 ms to every AWS request, with the default
//! concurrency and with `--max-concurrency 1` as the baseline; the critical-path bound;
//! the time of `provision --help`; and fresh and no-op `up` of a stack with 1, 10 and 50
//! app clients. Prints Markdown tables.
//!
//! Run it with `scripts/bench` (a release build of provision).

#[path = "../tests/common/mod.rs"]
mod common;
#[path = "support/fleet.rs"]
mod fleet;

use std::process::Command;
use std::time::{Duration, Instant};

use common::proxy::Proxy;
use common::Harness;

const LATENCY: Duration = Duration::from_millis(100);

/// The requests of a fresh `up` and what each one truly depends on (not how provision
/// happens to order them): the longest chain is the bound no tool can beat.
const FRESH_UP_DAG: &[(&str, &[&str])] = &[
    ("sts:GetCallerIdentity", &[]),
    (
        "cognito-idp:DescribeUserPoolDomain(preflight)",
        &["sts:GetCallerIdentity"],
    ),
    (
        "iam:GetRole",
        &["cognito-idp:DescribeUserPoolDomain(preflight)"],
    ),
    (
        "lambda:GetFunction",
        &["cognito-idp:DescribeUserPoolDomain(preflight)"],
    ),
    (
        "cognito-idp:ListUserPools",
        &["cognito-idp:DescribeUserPoolDomain(preflight)"],
    ),
    (
        "apigateway:GetRestApis",
        &["cognito-idp:DescribeUserPoolDomain(preflight)"],
    ),
    (
        "logs:DescribeLogGroups",
        &["cognito-idp:DescribeUserPoolDomain(preflight)"],
    ),
    ("logs:CreateLogGroup", &["logs:DescribeLogGroups"]),
    ("logs:PutRetentionPolicy", &["logs:CreateLogGroup"]),
    ("iam:CreateRole", &["iam:GetRole"]),
    ("iam:AttachRolePolicy", &["iam:CreateRole"]),
    (
        "lambda:CreateFunction",
        &[
            "iam:CreateRole",
            "lambda:GetFunction",
            "logs:CreateLogGroup",
        ],
    ),
    ("lambda:GetFunction(ready)", &["lambda:CreateFunction"]),
    ("cognito-idp:CreateUserPool", &["cognito-idp:ListUserPools"]),
    (
        "cognito-idp:CreateUserPoolDomain",
        &["cognito-idp:CreateUserPool"],
    ),
    (
        "cognito-idp:DescribeUserPoolDomain(active)",
        &["cognito-idp:CreateUserPoolDomain"],
    ),
    (
        "cognito-idp:CreateResourceServer",
        &["cognito-idp:CreateUserPool"],
    ),
    (
        "cognito-idp:CreateUserPoolClient",
        &["cognito-idp:CreateResourceServer"],
    ),
    ("apigateway:CreateRestApi", &["apigateway:GetRestApis"]),
    (
        "apigateway:CreateAuthorizer",
        &["apigateway:CreateRestApi", "cognito-idp:CreateUserPool"],
    ),
    ("apigateway:CreateResource", &["apigateway:CreateRestApi"]),
    ("apigateway:PutMethod(/)", &["apigateway:CreateAuthorizer"]),
    (
        "apigateway:PutMethod(proxy)",
        &["apigateway:CreateAuthorizer", "apigateway:CreateResource"],
    ),
    (
        "apigateway:PutIntegration(/)",
        &["apigateway:PutMethod(/)", "lambda:CreateFunction"],
    ),
    (
        "apigateway:PutIntegration(proxy)",
        &["apigateway:PutMethod(proxy)", "lambda:CreateFunction"],
    ),
    (
        "lambda:AddPermission",
        &["lambda:GetFunction(ready)", "apigateway:CreateRestApi"],
    ),
    (
        "apigateway:CreateDeployment",
        &[
            "apigateway:PutIntegration(/)",
            "apigateway:PutIntegration(proxy)",
        ],
    ),
];

fn critical_path() -> (usize, Vec<&'static str>) {
    let mut depth: Vec<(usize, Option<usize>)> = Vec::new();
    for (i, (_, deps)) in FRESH_UP_DAG.iter().enumerate() {
        let best = deps
            .iter()
            .map(|d| {
                FRESH_UP_DAG
                    .iter()
                    .position(|(n, _)| n == d)
                    .expect("known dependency")
            })
            .map(|j| {
                assert!(j < i, "dependencies come first");
                (depth[j].0, j)
            })
            .max();
        depth.push(match best {
            Some((d, j)) => (d + 1, Some(j)),
            None => (1, None),
        });
    }
    let (mut at, (len, _)) = depth
        .iter()
        .enumerate()
        .max_by_key(|(_, d)| d.0)
        .map(|(i, d)| (i, *d))
        .unwrap();
    let mut chain = vec![FRESH_UP_DAG[at].0];
    while let Some(prev) = depth[at].1 {
        chain.push(FRESH_UP_DAG[prev].0);
        at = prev;
    }
    chain.reverse();
    (len, chain)
}

struct Sample {
    secs: f64,
    calls: u64,
}

fn run(h: &Harness, via: Option<&Proxy>, concurrency: &str, args: &[&str], expect: i32) -> Sample {
    let mut cmd = match via {
        Some(p) => h.command_via(p),
        None => h.command(),
    };
    // A release build of the handler, as users ship (the debug build is 4× larger to pack).
    cmd.env(
        "PROVISION_HANDLER",
        common::repo_root().join("target/release/handler"),
    );
    cmd.args(["-o", "json", "--max-concurrency", concurrency])
        .args(args);
    let started = Instant::now();
    let out = cmd.output().expect("run provision");
    let secs = started.elapsed().as_secs_f64();
    let code = out.status.code().unwrap_or(-1);
    assert_eq!(
        code,
        expect,
        "provision {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON on stdout");
    Sample {
        secs,
        calls: json["api_calls"].as_u64().unwrap_or(0),
    }
}

/// What shared state costs: fresh `up`, no-op `up` and `down` with the state in a local
/// directory and on S3 (with its lease lock), bare and with 100 ms per request.
fn state_table(h: &mut Harness, proxy: &Proxy, runs: usize) -> String {
    let mut table = String::from(
        "| state | setting | fresh `up` | no-op `up` | `down` |\n|---|---|---|---|---|\n",
    );
    let init = h.run(&["init-state", "s3://bench-state/ci"]);
    assert_eq!(init.code, 0, "{}", init.describe());
    for (label, location) in [
        ("local directory", None),
        ("S3 + lease lock", Some("s3://bench-state/ci")),
    ] {
        h.state_location = location.map(str::to_string);
        for (setting, via) in [
            ("bare emulator", None),
            ("+100 ms per AWS request", Some(proxy)),
        ] {
            let mut secs: Vec<Vec<f64>> = vec![Vec::new(); 3];
            let mut calls: Vec<Vec<f64>> = vec![Vec::new(); 3];
            for _ in 0..runs {
                // Keep the state bucket: only the stack's own resources go.
                let _ = h.run(&["down"]);
                for (i, args) in [&["up"][..], &["up"], &["down"]].iter().enumerate() {
                    let s = run(h, via, "8", args, 0);
                    secs[i].push(s.secs);
                    calls[i].push(s.calls as f64);
                }
            }
            let cells: Vec<String> = (0..3).map(|i| cell(&secs[i], &calls[i])).collect();
            table.push_str(&format!(
                "| {label} | {setting} | {} |\n",
                cells.join(" | ")
            ));
            eprintln!("done: state in {label}, {setting}");
        }
    }
    h.state_location = None;
    h.reset();
    table
}

/// Fresh and no-op `up` (and `status`) with N app clients, on the bare emulator.
fn clients_table(h: &Harness, runs: usize) -> String {
    let mut table =
        String::from("| app clients | fresh `up` | no-op `up` | `status` |\n|---|---|---|---|\n");
    let mut base: Option<(f64, f64)> = None;
    let mut per_client = Vec::new();
    for n in [1usize, 10, 50] {
        let clients: String = (0..n)
            .map(|i| format!("[[client]]\nname = \"service-{i}\"\n\n"))
            .collect();
        std::fs::write(h.dir.path().join("provision.toml"), clients).unwrap();
        let mut secs: Vec<Vec<f64>> = vec![Vec::new(); 3];
        let mut calls: Vec<Vec<f64>> = vec![Vec::new(); 3];
        for _ in 0..runs {
            h.reset();
            for (i, args) in [&["up"][..], &["up"], &["status"]].iter().enumerate() {
                let s = run(h, None, "8", args, 0);
                secs[i].push(s.secs);
                calls[i].push(s.calls as f64);
            }
        }
        let cells: Vec<String> = (0..3).map(|i| cell(&secs[i], &calls[i])).collect();
        table.push_str(&format!("| {n} | {} |\n", cells.join(" | ")));
        let (fresh, noop) = (median(calls[0].clone()), median(calls[1].clone()));
        match base {
            None => base = Some((fresh, noop)),
            Some((f1, n1)) => per_client.push(format!(
                "{n} clients: +{:.1} requests per extra client on a fresh `up`, +{:.1} on a no-op `up`",
                (fresh - f1) / (n - 1) as f64,
                (noop - n1) / (n - 1) as f64
            )),
        }
        eprintln!("done: {n} clients");
    }
    std::fs::remove_file(h.dir.path().join("provision.toml")).unwrap();
    h.reset();
    format!("{table}\n{}.", per_client.join("; "))
}

/// A table cell: the median wall time and request count of some runs.
fn cell(secs: &[f64], calls: &[f64]) -> String {
    format!(
        "{:.2} s, {} calls",
        median(secs.to_vec()),
        median(calls.to_vec())
    )
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

fn main() {
    let runs: usize = std::env::var("BENCH_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(5);
    let mut h = Harness::new();
    let proxy = Proxy::start(&h.url);
    proxy.set_latency(LATENCY);
    // BENCH_TABLES=state (or main,clients,state,fleet): only those tables.
    let tables = std::env::var("BENCH_TABLES").unwrap_or_else(|_| "main,clients,state,fleet".into());
    if tables.split(',').any(|t| t == "fleet") {
        println!("{}", fleet::fleet_table(&h));
    }
    if tables.split(',').any(|t| t == "state") {
        println!("{}", state_table(&mut h, &proxy, runs));
    }
    if !tables.split(',').any(|t| t == "main") {
        return;
    }
    let commands: [(&str, &[&str], i32); 4] = [
        ("fresh up", &["up"], 0),
        ("no-op up", &["up"], 0),
        ("status", &["status"], 0),
        ("down", &["down"], 0),
    ];
    let mut table = String::new();
    table.push_str("| setting | concurrency | fresh `up` | no-op `up` | `status` | `down` |\n");
    table.push_str("|---|---|---|---|---|---|\n");
    let mut fresh = std::collections::HashMap::new();
    for (setting, via) in [
        ("bare emulator", None),
        ("+100 ms per AWS request", Some(&proxy)),
    ] {
        for (label, concurrency) in [("default (8)", "8"), ("off (1)", "1")] {
            let mut secs: Vec<Vec<f64>> = vec![Vec::new(); 4];
            let mut calls: Vec<Vec<f64>> = vec![Vec::new(); 4];
            for _ in 0..runs {
                h.reset();
                for (i, (_, args, expect)) in commands.iter().enumerate() {
                    let s = run(&h, via, concurrency, args, *expect);
                    secs[i].push(s.secs);
                    calls[i].push(s.calls as f64);
                }
            }
            let cells: Vec<String> = (0..4).map(|i| cell(&secs[i], &calls[i])).collect();
            fresh.insert((setting, concurrency), median(secs[0].clone()));
            table.push_str(&format!(
                "| {setting} | {label} | {} |\n",
                cells.join(" | ")
            ));
            eprintln!("done: {setting}, concurrency {label}");
        }
    }
    let (len, chain) = critical_path();
    let bound = len as f64 * LATENCY.as_secs_f64();
    table.push_str(&format!(
        "| +100 ms, critical-path bound | {len} dependent requests | {bound:.2} s | | | |\n"
    ));
    let mut help = Vec::new();
    for _ in 0..21 {
        let started = Instant::now();
        let out = Command::new(env!("CARGO_BIN_EXE_provision"))
            .arg("--help")
            .output()
            .unwrap();
        assert!(out.status.success());
        help.push(started.elapsed().as_secs_f64() * 1000.0);
    }
    let slow = fresh[&("+100 ms per AWS request", "1")];
    let fast = fresh[&("+100 ms per AWS request", "8")];
    println!("{table}");
    println!(
        "Fresh `up` with 100 ms per request: {:.2}× faster with concurrency than without; {:.2}× the critical-path bound ({len} requests: {}).",
        slow / fast,
        fast / bound,
        chain.join(" → ")
    );
    println!("`provision --help`: {:.1} ms (median of 21).", median(help));
    println!();
    if tables.split(',').any(|t| t == "clients") {
        println!("{}", clients_table(&h, runs));
    }
    println!("Medians of {runs} runs; wall time of the whole process, as a user sees it.");
}
