//! Everything the user sees: progress on stderr while a command runs, and the result
//! on stdout (human text, or exactly one JSON object with `-o json`).

use std::io::{IsTerminal, Write};
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::OnceLock;
use std::time::Duration;

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde::Serialize;
use serde_json::{json, Value};

use crate::state::Outputs;

/// 0: quiet, 1: normal, 2: -v, 3: -vv.
static LEVEL: AtomicU8 = AtomicU8::new(1);
static HUMAN: AtomicU8 = AtomicU8::new(1);

/// Spinners for the steps in flight, when stderr is a terminal and output is human.
static MULTI: OnceLock<Option<MultiProgress>> = OnceLock::new();

pub fn init(human: bool, verbose: u8, quiet: bool) {
    let level = if quiet { 0 } else { 1 + verbose.min(2) };
    LEVEL.store(level, Ordering::Relaxed);
    HUMAN.store(human as u8, Ordering::Relaxed);
    let live = human && level >= 1 && std::io::stderr().is_terminal();
    let _ = MULTI.set(live.then(|| MultiProgress::with_draw_target(ProgressDrawTarget::stderr())));
}

fn multi() -> Option<&'static MultiProgress> {
    MULTI.get().and_then(Option::as_ref)
}

/// A line on stderr that does not tear the spinners.
fn line(msg: &str) {
    match multi() {
        Some(m) => {
            let _ = m.println(msg);
        }
        None => eprintln!("{msg}"),
    }
}

/// A step in flight: a spinner on a terminal (cleared when dropped), else a line at -v.
pub struct Activity(Option<ProgressBar>);

pub fn activity(label: &str) -> Activity {
    match multi() {
        Some(m) => {
            let bar = m.add(ProgressBar::new_spinner());
            bar.set_style(
                ProgressStyle::with_template("  {spinner} {msg} {elapsed:.dim}")
                    .expect("valid template"),
            );
            bar.set_message(label.to_string());
            bar.enable_steady_tick(Duration::from_millis(100));
            Activity(Some(bar))
        }
        None => {
            info(&format!("... {label}"));
            Activity(None)
        }
    }
}

impl Drop for Activity {
    fn drop(&mut self) {
        if let Some(bar) = &self.0 {
            bar.finish_and_clear();
        }
    }
}

fn level() -> u8 {
    LEVEL.load(Ordering::Relaxed)
}

fn human() -> bool {
    HUMAN.load(Ordering::Relaxed) == 1
}

/// A step worth telling at -v.
pub fn info(msg: &str) {
    if level() >= 2 {
        line(&format!("  {msg}"));
    }
}

/// Request-level detail at -vv. Never pass it a secret.
pub fn trace(msg: &str) {
    if level() >= 3 {
        line(&format!("    {msg}"));
    }
}

/// A warning: always shown unless -q.
pub fn warn(msg: &str) {
    if level() >= 1 {
        line(&format!("warning: {msg}"));
    }
}

/// A line of progress for human output (also shown with -o json at -v).
pub fn progress(msg: &str) {
    if (human() && level() >= 1) || level() >= 2 {
        line(msg);
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    Created,
    Updated,
    Unchanged,
    Adopted,
    Deleted,
    Absent,
    /// `down` left it: it is not the stack's (see `Done::reason`).
    Kept,
}

impl Action {
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Created => "created",
            Action::Updated => "updated",
            Action::Unchanged => "unchanged",
            Action::Adopted => "adopted",
            Action::Deleted => "deleted",
            Action::Absent => "absent",
            Action::Kept => "kept",
        }
    }
    fn dry(self) -> &'static str {
        match self {
            Action::Created => "would create",
            Action::Updated => "would update",
            Action::Unchanged => "unchanged",
            Action::Adopted => "would adopt",
            Action::Deleted => "would delete",
            Action::Absent => "absent",
            Action::Kept => "kept",
        }
    }
}

/// What happened (or would happen, in a dry run) to one resource.
#[derive(Debug, Clone)]
pub struct Done {
    pub kind: &'static str,
    pub id: String,
    /// The configured name, for kinds with several of a stack (app clients, secrets).
    pub name: Option<String>,
    pub action: Action,
    /// The fields that differed (updates, drift).
    pub changes: Vec<String>,
    /// Why it was kept (`down`).
    pub reason: Option<String>,
    pub elapsed: Duration,
}

pub fn resource_line(done: &Done, dry_run: bool) {
    let action = if dry_run {
        done.action.dry()
    } else {
        done.action.as_str()
    };
    let mut line = format!("  {action:<13} {:<18} {}", done.kind, done.id);
    if let Some(name) = &done.name {
        line.push_str(&format!(" ({name})"));
    }
    if !done.changes.is_empty() {
        line.push_str(&format!("  [{}]", done.changes.join(", ")));
    }
    if let Some(why) = &done.reason {
        line.push_str(&format!("  ({why})"));
    }
    if !dry_run && done.action != Action::Unchanged && done.action != Action::Absent {
        line.push_str(&format!("  ({:.1}s)", done.elapsed.as_secs_f64()));
    }
    progress(&line);
}

/// The result of `up` or `down`.
pub struct RunReport<'a> {
    pub command: &'a str,
    pub stack: &'a str,
    pub region: &'a str,
    pub resources: &'a [Done],
    /// The front door the run built (`up`): `rest` or `http`.
    pub front: Option<&'a str>,
    pub outputs: Option<&'a Outputs>,
    pub api_calls: usize,
    pub elapsed: Duration,
    pub dry_run: bool,
    /// Stopped by Ctrl-C or SIGTERM before the end.
    pub interrupted: bool,
}

impl RunReport<'_> {
    pub fn json(&self) -> Value {
        let mut v = json!({
            "stack": self.stack,
            "region": self.region,
            "resources": self.resources.iter().map(|d| {
                let mut r = json!({"kind": d.kind, "id": d.id, "action": d.action.as_str()});
                if let Some(name) = &d.name {
                    r["name"] = json!(name);
                }
                if !d.changes.is_empty() {
                    r["changes"] = json!(d.changes);
                }
                if let Some(why) = &d.reason {
                    r["reason"] = json!(why);
                }
                r
            }).collect::<Vec<_>>(),
            "outputs": self.outputs.map(|o| json!(o)).unwrap_or_else(|| json!({})),
            "api_calls": self.api_calls,
            "elapsed_ms": self.elapsed.as_millis() as u64,
        });
        if let Some(front) = self.front {
            v["front"] = json!(front);
        }
        if self.dry_run {
            v["dry_run"] = json!(true);
        }
        if self.interrupted {
            v["interrupted"] = json!(true);
        }
        v
    }

    pub fn human(&self) -> String {
        let mut counts: Vec<(Action, usize)> = Vec::new();
        for d in self.resources {
            match counts.iter_mut().find(|(a, _)| *a == d.action) {
                Some((_, n)) => *n += 1,
                None => counts.push((d.action, 1)),
            }
        }
        let tally = counts
            .iter()
            .map(|(a, n)| format!("{n} {}", if self.dry_run { a.dry() } else { a.as_str() }))
            .collect::<Vec<_>>()
            .join(", ");
        let what = match (self.command, self.dry_run) {
            _ if self.interrupted => format!(
                "Interrupted: stack {} in {} is partly {}; run `provision {}` again to finish",
                self.stack,
                self.region,
                if self.command == "down" { "down" } else { "up" },
                self.command
            ),
            (_, true) => format!("Plan for stack {} in {}", self.stack, self.region),
            ("down", _) => format!("Stack {} is down in {}", self.stack, self.region),
            _ => format!("Stack {} is up in {}", self.stack, self.region),
        };
        let mut out = format!(
            "{what}: {tally} ({} AWS calls, {:.1}s)\n",
            self.api_calls,
            self.elapsed.as_secs_f64()
        );
        if let Some(o) = self.outputs {
            out.push('\n');
            out.push_str(&outputs_human(o));
            out.push_str("\nTry it: `provision token` prints an access token; `provision invoke --path /hello` calls the API with one.\n");
        }
        out
    }
}

pub fn outputs_human(o: &Outputs) -> String {
    let rows = [
        ("api_url", &o.api_url),
        ("token_url", &o.token_url),
        ("client_id", &o.client_id),
        ("scope", &o.scope),
        ("user_pool_id", &o.user_pool_id),
        ("region", &o.region),
        ("stack", &o.stack),
    ];
    let mut out: String = rows
        .iter()
        .map(|(k, v)| format!("  {k:<13} {v}\n"))
        .collect();
    if o.clients.len() > 1 {
        out.push_str("  clients\n");
        for (name, id) in &o.clients {
            out.push_str(&format!("    {name:<11} {id}\n"));
        }
    }
    out
}

/// Prints the command's result on stdout.
pub fn emit_json(v: &Value) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{v}");
}

/// Takes the spinners off the terminal (before an abrupt exit).
pub fn clear() {
    if let Some(m) = multi() {
        let _ = m.clear();
    }
}

pub fn emit_text(s: &str) {
    let mut out = std::io::stdout().lock();
    let _ = write!(out, "{s}");
    if !s.ends_with('\n') {
        let _ = writeln!(out);
    }
}

/// `1970-01-01T00:00:00Z` from seconds since the epoch (UTC), without a date crate.
pub fn utc_timestamp(secs: u64) -> String {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    // Howard Hinnant's civil-from-days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = if m <= 2 { y + 1 } else { y };
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_are_utc_iso() {
        assert_eq!(utc_timestamp(0), "1970-01-01T00:00:00Z");
        assert_eq!(utc_timestamp(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(utc_timestamp(1_795_961_045), "2026-11-29T14:04:05Z");
    }

    #[test]
    fn json_report_has_the_contract_keys() {
        let done = [Done {
            kind: "iam_role",
            id: "s-handler".into(),
            name: None,
            action: Action::Created,
            changes: vec![],
            reason: None,
            elapsed: Duration::from_millis(5),
        }];
        let o = Outputs::default();
        let r = RunReport {
            command: "up",
            stack: "s",
            region: "us-east-1",
            resources: &done,
            front: None,
            outputs: Some(&o),
            api_calls: 3,
            elapsed: Duration::from_millis(1234),
            dry_run: false,
            interrupted: false,
        };
        let v = r.json();
        for key in [
            "stack",
            "region",
            "resources",
            "outputs",
            "api_calls",
            "elapsed_ms",
        ] {
            assert!(v.get(key).is_some(), "{key}");
        }
        assert_eq!(v["resources"][0]["action"], "created");
        assert_eq!(v["elapsed_ms"], 1234);
        for key in [
            "api_url",
            "token_url",
            "client_id",
            "scope",
            "user_pool_id",
            "region",
            "stack",
        ] {
            assert!(v["outputs"].get(key).is_some(), "{key}");
        }
    }
}
