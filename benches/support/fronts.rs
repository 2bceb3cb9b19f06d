//! The two front doors side by side: fresh `up`, no-op `up`, `status`, an `up` that
//! switches the stack to the other front in place, and `down`, with `front = "rest"`
//! and `front = "http"` in provision.toml, bare and with 100 ms per AWS request.

use crate::common::proxy::Proxy;
use crate::common::Harness;
use crate::{cell, run};

fn front(h: &Harness, front: &str) {
    std::fs::write(
        h.dir.path().join("provision.toml"),
        format!("front = \"{front}\"\n"),
    )
    .unwrap();
}

pub fn fronts_table(h: &Harness, proxy: &Proxy, runs: usize) -> String {
    let mut table = String::from(
        "| front | setting | fresh `up` | no-op `up` | `status` | `up` switching to the other | `down` |\n|---|---|---|---|---|---|---|\n",
    );
    for (name, other) in [("rest", "http"), ("http", "rest")] {
        for (setting, via) in [
            ("bare emulator", None),
            ("+100 ms per AWS request", Some(proxy)),
        ] {
            let mut secs: Vec<Vec<f64>> = vec![Vec::new(); 5];
            let mut calls: Vec<Vec<f64>> = vec![Vec::new(); 5];
            for _ in 0..runs {
                h.reset();
                front(h, name);
                for (i, args) in [&["up"][..], &["up"], &["status"]].iter().enumerate() {
                    let s = run(h, via, "8", args, 0);
                    secs[i].push(s.secs);
                    calls[i].push(s.calls as f64);
                }
                front(h, other);
                for (i, args) in [(3, &["up"][..]), (4, &["down"])] {
                    let s = run(h, via, "8", args, 0);
                    secs[i].push(s.secs);
                    calls[i].push(s.calls as f64);
                }
            }
            let cells: Vec<String> = (0..5).map(|i| cell(&secs[i], &calls[i])).collect();
            table.push_str(&format!("| {name} | {setting} | {} |\n", cells.join(" | ")));
            eprintln!("done: front {name}, {setting}");
        }
    }
    std::fs::remove_file(h.dir.path().join("provision.toml")).unwrap();
    h.reset();
    table
}
