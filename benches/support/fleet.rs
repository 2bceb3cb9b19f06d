//! Many stacks at once behind a proxy that enforces API Gateway's account-wide quotas as
//! AWS documents them (tests/common/proxy.rs): N `up`s started together, then `prune`
//! of all N, then N `up`s and N `down`s started together — what `prune`'s pacing of
//! `DeleteRestApi` buys over N independent `down`s. One run each: every row waits on
//! the quotas for minutes, and the quotas, not the machine, set the figures.

use std::process::{Command, Stdio};
use std::time::Instant;

use crate::common::proxy::Proxy;
use crate::common::{self, Harness};

const STACKS: usize = 5;

struct Row {
    secs: f64,
    calls: usize,
    refused: Vec<String>,
}

fn names() -> Vec<String> {
    (1..=STACKS).map(|i| format!("fleet-{i}")).collect()
}

/// `provision` for one stack of the fleet, through the quota proxy, with its own call log.
fn command(h: &Harness, proxy: &Proxy, log: &str, args: &[&str]) -> Command {
    let mut cmd = h.command_via(proxy);
    cmd.env(
        "PROVISION_HANDLER",
        common::repo_root().join("target/release/handler"),
    )
    .env("PROVISION_CALL_LOG", h.dir.path().join(log))
    .args(args)
    .stdout(Stdio::null())
    .stderr(Stdio::piped());
    cmd
}

fn calls(h: &Harness, log: &str) -> usize {
    std::fs::read_to_string(h.dir.path().join(log))
        .map(|s| s.lines().filter(|l| !l.is_empty()).count())
        .unwrap_or(0)
}

/// Every stack runs `args` at the same time; all must succeed.
fn together(h: &Harness, proxy: &Proxy, args: &[&str]) -> Row {
    proxy.enforce_api_gateway_quotas();
    let started = Instant::now();
    let children: Vec<_> = names()
        .iter()
        .map(|s| {
            let mut all = vec!["-s", s.as_str()];
            all.extend_from_slice(args);
            command(h, proxy, &format!("calls-{s}.log"), &all)
                .spawn()
                .unwrap()
        })
        .collect();
    for child in children {
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Row {
        secs: started.elapsed().as_secs_f64(),
        calls: names()
            .iter()
            .map(|s| calls(h, &format!("calls-{s}.log")))
            .sum(),
        refused: proxy.refused(),
    }
}

fn prune(h: &Harness, proxy: &Proxy) -> Row {
    proxy.enforce_api_gateway_quotas();
    let started = Instant::now();
    let out = command(
        h,
        proxy,
        "calls-prune.log",
        &["prune", "--match", "fleet-*"],
    )
    .output()
    .unwrap();
    assert!(
        out.status.success(),
        "prune: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Row {
        secs: started.elapsed().as_secs_f64(),
        calls: calls(h, "calls-prune.log"),
        refused: proxy.refused(),
    }
}

fn line(what: &str, r: &Row) -> String {
    let mut ops: Vec<&String> = r.refused.iter().collect();
    ops.sort();
    ops.dedup();
    let by_op: Vec<String> = ops
        .iter()
        .map(|op| format!("{} {op}", r.refused.iter().filter(|o| o == op).count()))
        .collect();
    format!(
        "| {what} | {:.1} s | {} | {}{} |\n",
        r.secs,
        r.calls,
        r.refused.len(),
        if by_op.is_empty() {
            String::new()
        } else {
            format!(" ({})", by_op.join(", "))
        }
    )
}

pub fn fleet_table(h: &Harness) -> String {
    h.reset();
    let proxy = Proxy::start(&h.url);
    let mut table = String::from(
        "| under API Gateway's quotas | wall time | AWS requests | answered 429 |\n|---|---|---|---|\n",
    );
    let up = together(h, &proxy, &["up"]);
    table.push_str(&line(&format!("{STACKS} × `up`, started together"), &up));
    eprintln!("done: fleet up");
    let pruned = prune(h, &proxy);
    table.push_str(&line(&format!("`prune` of the {STACKS}"), &pruned));
    eprintln!("done: fleet prune");
    together(h, &proxy, &["up"]);
    let downs = together(h, &proxy, &["down"]);
    table.push_str(&line(
        &format!("{STACKS} × `down`, started together"),
        &downs,
    ));
    eprintln!("done: fleet down");
    h.reset();
    table
}
