//! The benchmark: wall time and AWS calls of fresh `up`, no-op `up`, `status` and
//! `down` on MiniStack, the median of N runs each (default 5, `BENCH_RUNS`), on the bare
//! emulator and through a proxy adding 100 ms to every AWS request, with the default
//! concurrency and with `--max-concurrency 1` as the baseline; each command's
//! critical-path bound, computed from the runs' own traces (`critical_path`);
//! the time of `provision --help`; fresh and no-op `up` of a stack with 1, 10 and 50
//! app clients; both front doors (`support/fronts.rs`). Prints Markdown tables.
//!
//! Run it with `scripts/bench` (a release build of provision; `BENCH_PROFILE=dev` for
//! a dev build, as the README's figures were measured).

#[path = "../tests/common/mod.rs"]
mod common;
#[path = "support/fleet.rs"]
mod fleet;
#[path = "support/fronts.rs"]
mod fronts;

use std::process::Command;
use std::time::{Duration, Instant};

use common::proxy::Proxy;
use common::Harness;

const LATENCY: Duration = Duration::from_millis(100);

/// A request of a run's trace (see PROVISION_TRACE).
struct Request {
    op: String,
    node: Option<usize>,
    start: f64,
    end: f64,
}

/// The longest chain of requests in a run that had to happen one after another, from
/// the run's own trace: a request waits for every request of its node's parents (the
/// resource graph's edges), for the requests of its own node that were answered
/// before it was sent (a step decides its next request from the last answer), and
/// for the requests outside the graph answered before it (the account check). The
/// same operation again in one node (a poll for the function to be ready, a retry)
/// is waiting, not a new link. Returns the chain's length and its operations.
fn critical_path(trace: &serde_json::Value) -> (usize, Vec<String>) {
    let parents: Vec<Vec<usize>> = trace["graph"]
        .as_array()
        .expect("graph")
        .iter()
        .map(|n| {
            n["parents"]
                .as_array()
                .expect("parents")
                .iter()
                .map(|p| p.as_u64().expect("index") as usize)
                .collect()
        })
        .collect();
    let mut requests: Vec<Request> = trace["requests"]
        .as_array()
        .expect("requests")
        .iter()
        .map(|r| {
            let start = r["start_ms"].as_f64().expect("start");
            Request {
                op: r["op"].as_str().expect("op").to_string(),
                node: r["node"].as_u64().map(|n| n as usize),
                start,
                // Never answered (the process stopped): it still took its turn.
                end: r["end_ms"].as_f64().unwrap_or(start),
            }
        })
        .collect();
    requests.sort_by(|a, b| a.start.partial_cmp(&b.start).unwrap());
    // Per request: chain length and the request before it on the chain.
    let mut depth: Vec<(usize, Option<usize>)> = Vec::new();
    // The deepest chain ending at a node: its own requests', or its parents'.
    fn done(
        n: usize,
        parents: &[Vec<usize>],
        own: &[Vec<usize>],
        depth: &[(usize, Option<usize>)],
    ) -> (usize, Option<usize>) {
        let mut best = (0, None);
        for &r in &own[n] {
            best = best.max((depth[r].0, Some(r)));
        }
        for &p in &parents[n] {
            best = best.max(done(p, parents, own, depth));
        }
        best
    }
    let mut own: Vec<Vec<usize>> = vec![Vec::new(); parents.len()];
    for (i, r) in requests.iter().enumerate() {
        let mut best = (1, None);
        if let Some(n) = r.node {
            if let (d, Some(j)) = parents[n]
                .iter()
                .map(|&p| done(p, &parents, &own, &depth))
                .max()
                .unwrap_or((0, None))
            {
                best = best.max((d + 1, Some(j)));
            }
        }
        for (j, q) in requests[..i].iter().enumerate() {
            let before = q.end <= r.start;
            let linked = match (r.node, q.node) {
                (Some(a), Some(b)) => a == b && before,
                _ => before,
            };
            if linked {
                let again = q.node == r.node && q.op == r.op && r.node.is_some();
                best = best.max((depth[j].0 + usize::from(!again), Some(j)));
            }
        }
        depth.push(best);
        if let Some(n) = r.node {
            own[n].push(i);
        }
    }
    let Some((mut at, &(len, _))) = depth.iter().enumerate().max_by_key(|(_, d)| d.0) else {
        return (0, Vec::new());
    };
    let mut chain = vec![requests[at].op.clone()];
    while let Some(prev) = depth[at].1 {
        if depth[prev].0 < depth[at].0 {
            chain.push(requests[prev].op.clone());
        }
        at = prev;
    }
    chain.reverse();
    (len, chain)
}

/// A chain of dependent requests: its length and its operations.
type Chain = (usize, Vec<String>);

/// A command's bound (seconds), its time over the bound, and the chain behind it.
struct Bound {
    secs: f64,
    ratio: f64,
    chain: Vec<String>,
}

struct Sample {
    secs: f64,
    calls: u64,
    /// The run's longest chain of dependent requests (see `critical_path`).
    chain: Chain,
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
    let trace = h.dir.path().join("trace.json");
    let _ = std::fs::remove_file(&trace);
    cmd.env("PROVISION_TRACE", &trace)
        .args(["-o", "json", "--max-concurrency", concurrency])
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
    let trace: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&trace).expect("PROVISION_TRACE written"))
            .expect("trace is JSON");
    Sample {
        secs,
        calls: json["api_calls"].as_u64().unwrap_or(0),
        chain: critical_path(&trace),
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
    // BENCH_TABLES=state (or main,clients,state,fronts,fleet): only those tables.
    let tables =
        std::env::var("BENCH_TABLES").unwrap_or_else(|_| "main,clients,state,fronts,fleet".into());
    if tables.split(',').any(|t| t == "fleet") {
        println!("{}", fleet::fleet_table(&h));
    }
    if tables.split(',').any(|t| t == "state") {
        println!("{}", state_table(&mut h, &proxy, runs));
    }
    if tables.split(',').any(|t| t == "fronts") {
        println!("{}", fronts::fronts_table(&h, &proxy, runs));
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
    // With 100 ms per request and concurrency: each command's median time and chains.
    let mut at_bound: Vec<(f64, Vec<Chain>)> = Vec::new();
    for (setting, via) in [
        ("bare emulator", None),
        ("+100 ms per AWS request", Some(&proxy)),
    ] {
        for (label, concurrency) in [("default (8)", "8"), ("off (1)", "1")] {
            let mut secs: Vec<Vec<f64>> = vec![Vec::new(); 4];
            let mut calls: Vec<Vec<f64>> = vec![Vec::new(); 4];
            let mut chains: Vec<Vec<Chain>> = vec![Vec::new(); 4];
            for _ in 0..runs {
                h.reset();
                for (i, (_, args, expect)) in commands.iter().enumerate() {
                    let s = run(&h, via, concurrency, args, *expect);
                    secs[i].push(s.secs);
                    calls[i].push(s.calls as f64);
                    chains[i].push(s.chain);
                }
            }
            let cells: Vec<String> = (0..4).map(|i| cell(&secs[i], &calls[i])).collect();
            fresh.insert((setting, concurrency), median(secs[0].clone()));
            table.push_str(&format!(
                "| {setting} | {label} | {} |\n",
                cells.join(" | ")
            ));
            if via.is_some() && concurrency == "8" {
                at_bound = (0..4)
                    .map(|i| (median(secs[i].clone()), chains[i].clone()))
                    .collect();
            }
            eprintln!("done: {setting}, concurrency {label}");
        }
    }
    // Each run's bound from its own trace; the median run's chain is shown.
    let bounds: Vec<Bound> = at_bound
        .into_iter()
        .map(|(secs, mut chains)| {
            chains.sort_by_key(|c| c.0);
            let (len, chain) = chains.swap_remove(chains.len() / 2);
            let bound = len as f64 * LATENCY.as_secs_f64();
            Bound {
                secs: bound,
                ratio: secs / bound,
                chain,
            }
        })
        .collect();
    let row = |f: &dyn Fn(&Bound) -> String| bounds.iter().map(f).collect::<Vec<_>>().join(" | ");
    table.push_str(&format!(
        "| +100 ms, critical-path bound | from each run's trace | {} |\n",
        row(&|b| format!("{:.2} s, {} requests", b.secs, b.chain.len()))
    ));
    table.push_str(&format!(
        "| +100 ms, time / bound | default (8) | {} |\n",
        row(&|b| format!("{:.2}×", b.ratio))
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
        "Fresh `up` with 100 ms per request: {:.2}× faster with concurrency than without.",
        slow / fast
    );
    println!("The longest chains of dependent requests (100 ms each):");
    for ((name, _, _), b) in commands.iter().zip(&bounds) {
        println!("- {name}: {}", b.chain.join(" → "));
    }
    println!("`provision --help`: {:.1} ms (median of 21).", median(help));
    println!();
    if tables.split(',').any(|t| t == "clients") {
        println!("{}", clients_table(&h, runs));
    }
    println!("Medians of {runs} runs; wall time of the whole process, as a user sees it.");
}
