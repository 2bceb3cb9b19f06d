//! `prune`: takes down the stacks of `list` whose name matches a glob (and that are old
//! enough), each as `down` would under its own lock, several at once. The account's
//! `DeleteRestApi` quota (one per 30 s) sets the pace: the deletes of REST APIs queue
//! (see `quota`) while everything else of the stacks goes in parallel.

use std::time::{Duration, Instant};

use futures_util::stream::{self, StreamExt};
use serde_json::json;

use super::{down, list, open, Open};
use crate::cli::{Format, PruneArgs};
use crate::config::Target;
use crate::errors::{exit, Error, Result};
use crate::fleet::{self, Stack};
use crate::{interrupt, report};

/// Which stacks `prune` takes, checked before any AWS call.
pub struct Selection {
    pattern: String,
    matcher: globset::GlobMatcher,
    older_than: Option<Duration>,
    dry_run: bool,
}

impl Selection {
    pub fn parse(args: &PruneArgs) -> Result<Selection> {
        if args.pattern.trim().is_empty() {
            return Err(Error::usage(
                "--match: empty; give a glob of stack names such as 'pr-*' ('*' is every stack)",
            ));
        }
        let matcher = globset::Glob::new(&args.pattern)
            .map_err(|e| {
                Error::usage(format!(
                    "--match `{}`: not a valid glob ({}); write it like 'pr-*', 'dev-?' or 'pr-[0-9]*'",
                    args.pattern,
                    e.kind()
                ))
            })?
            .compile_matcher();
        let older_than = args
            .older_than
            .as_deref()
            .map(|d| {
                humantime::parse_duration(d).map_err(|e| {
                    Error::usage(format!(
                        "--older-than `{d}`: {e}; write a duration such as 90m, 24h or 7d"
                    ))
                })
            })
            .transpose()?;
        Ok(Selection {
            pattern: args.pattern.clone(),
            matcher,
            older_than,
            dry_run: args.dry_run,
        })
    }

    /// Whether `s` is to go, at unix time `now`. A stack of unknown age is never older.
    fn selects(&self, s: &Stack, now: i64) -> bool {
        self.matcher.is_match(&s.stack)
            && match self.older_than {
                None => true,
                Some(age) => s
                    .created
                    .is_some_and(|c| now.saturating_sub(c) > age.as_secs() as i64),
            }
    }
}

/// One stack's result, as the contract names them.
struct Outcome {
    stack: String,
    result: &'static str,
    reason: Option<String>,
    resources: usize,
    elapsed: Duration,
    interrupted: bool,
}

pub async fn prune(target: &Target, sel: &Selection, format: Format) -> Result<i32> {
    let started = Instant::now();
    let (aws, region) = list::connect(target).await?;
    let stacks = {
        let _activity = report::activity("looking for stacks");
        fleet::stacks(&aws, &region, &target.state).await?
    };
    let now = unix_now();
    let chosen: Vec<&Stack> = stacks.iter().filter(|s| sel.selects(s, now)).collect();
    let age = sel
        .older_than
        .map(|d| format!(", created more than {} ago", humantime::format_duration(d)))
        .unwrap_or_default();
    report::progress(&format!(
        "{} {} of {} stack(s) in {region} matching '{}'{age}{}",
        if sel.dry_run {
            "Would prune"
        } else {
            "Pruning"
        },
        chosen.len(),
        stacks.len(),
        sel.pattern,
        if chosen.len() < 2 || sel.dry_run {
            String::new()
        } else {
            // DeleteRestApi: one per 30 s per account (see `quota`).
            let q = crate::quota::api_gateway("DeleteRestApi");
            format!(
                " (about {} s: one DeleteRestApi every {} s, API Gateway allows {} per account)",
                (q.paced() * (chosen.len() as u32 - 1)).as_secs(),
                q.paced().as_secs(),
                q.rate()
            )
        }
    ));
    let limit = target.concurrency.max(1);
    let region = region.as_str();
    let mut outcomes: Vec<Outcome> = stream::iter(chosen.iter().map(|s| async move {
        let outcome = one(target, region, s, sel).await;
        tell(&outcome);
        outcome
    }))
    .buffer_unordered(limit)
    .collect()
    .await;
    outcomes.sort_by(|a, b| a.stack.cmp(&b.stack));
    let count = |r: &str| outcomes.iter().filter(|o| o.result == r).count();
    let failed = count("failed");
    let interrupted = outcomes.iter().any(|o| o.interrupted);
    match format {
        Format::Json => report::emit_json(&json!({
            "stacks": outcomes.iter().map(|o| {
                let mut v = json!({"stack": o.stack, "result": o.result});
                if let Some(r) = &o.reason {
                    v["reason"] = json!(r);
                }
                v
            }).collect::<Vec<_>>(),
            // Every stack's session counts into the process's one log.
            "api_calls": aws.calls.count(),
            "elapsed_ms": started.elapsed().as_millis() as u64,
        })),
        Format::Human => {
            report::emit_text(&format!(
            "{} stack(s) matched: {} {}, {} skipped, {failed} failed ({} AWS requests, {:.1} s)\n",
            outcomes.len(),
            count(if sel.dry_run { "would delete" } else { "deleted" }),
            if sel.dry_run { "would be deleted" } else { "deleted" },
            count("skipped"),
            aws.calls.count(),
            started.elapsed().as_secs_f64()
        ))
        }
    }
    Ok(if interrupted {
        exit::INTERRUPTED
    } else if failed > 0 {
        exit::FAILURE
    } else {
        exit::OK
    })
}

/// One stack: as `down` would, under its own lock, once its lock shows it is still
/// one to take (see `prune_check`).
async fn one(target: &Target, region: &str, s: &Stack, sel: &Selection) -> Outcome {
    let dry_run = sel.dry_run;
    let t = Instant::now();
    let outcome = |result, reason: Option<String>| Outcome {
        stack: s.stack.clone(),
        result,
        reason,
        resources: 0,
        elapsed: t.elapsed(),
        interrupted: false,
    };
    if interrupt::requested() {
        return outcome("skipped", Some("interrupted before it started".into()));
    }
    if dry_run {
        return if s.locked {
            outcome("skipped", Some("locked by a live run".into()))
        } else {
            outcome("would delete", None)
        };
    }
    let stack_target = Target {
        stack: s.stack.clone(),
        region: Some(region.to_string()),
        ..target.clone()
    };
    let mut session = match open(
        &stack_target,
        Open {
            lock: true,
            account: true,
        },
    )
    .await
    {
        Ok(session) => session,
        Err(Error::Locked(why)) => return outcome("skipped", Some(why)),
        Err(e) => return outcome("failed", Some(e.to_string())),
    };
    if let Err(outcome) = still_chosen(&session, region, s, sel, &outcome).await {
        session.release().await;
        return outcome;
    }
    let result = down::take_down(&session, &stack_target, false).await;
    session.release().await;
    match result {
        Ok(gone) if gone.interrupted => Outcome {
            interrupted: true,
            ..outcome(
                "failed",
                Some(
                    "interrupted: what is gone is recorded; run `provision prune` again to finish"
                        .into(),
                ),
            )
        },
        Ok(gone) => Outcome {
            resources: gone
                .done
                .iter()
                .filter(|d| d.action == report::Action::Deleted)
                .count(),
            ..outcome("deleted", None)
        },
        Err(e) => outcome("failed", Some(e.to_string())),
    }
}

/// Under the lock: whether the stack is still one `sel` chooses. Its age is read again
/// when `--older-than` asks for one (the name cannot have changed); a stack re-created
/// since the listing is younger now, and skipped.
async fn still_chosen(
    session: &super::Session,
    region: &str,
    s: &Stack,
    sel: &Selection,
    outcome: &dyn Fn(&'static str, Option<String>) -> Outcome,
) -> std::result::Result<(), Outcome> {
    let Some(age) = sel.older_than else {
        return Ok(());
    };
    let created = match super::prune_check::created_now(&session.aws, region, &s.stack).await {
        Ok(created) => created,
        Err(e) => return Err(outcome("failed", Some(e.to_string()))),
    };
    let now = unix_now();
    let again = Stack {
        created,
        ..s.clone()
    };
    if sel.selects(&again, now) {
        return Ok(());
    }
    let why = match created {
        Some(c) => format!(
            "re-created while prune ran: its oldest resource is {} old now, not more than {}",
            humantime::format_duration(Duration::from_secs(now.saturating_sub(c).max(0) as u64)),
            humantime::format_duration(age)
        ),
        None => "no resource of it is there any more (its age is unknown)".into(),
    };
    Err(outcome("skipped", Some(why)))
}

fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// The stack's line, as soon as it is done.
fn tell(o: &Outcome) {
    let line = match (&o.reason, o.result) {
        (Some(why), result) => format!("  {}: {result}: {why}", o.stack),
        (None, "deleted") => format!(
            "  {}: deleted ({} resources, {:.1} s)",
            o.stack,
            o.resources,
            o.elapsed.as_secs_f64()
        ),
        (None, result) => format!("  {}: {result}", o.stack),
    };
    if o.result == "failed" {
        report::warn(line.trim_start());
    } else {
        report::progress(&line);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(pattern: &str, older_than: Option<&str>) -> PruneArgs {
        PruneArgs {
            pattern: pattern.into(),
            older_than: older_than.map(str::to_string),
            dry_run: false,
        }
    }

    fn stack(name: &str, created: Option<i64>) -> Stack {
        Stack {
            stack: name.into(),
            in_state: true,
            tagged: 4,
            locked: false,
            created,
        }
    }

    #[test]
    fn a_glob_and_an_age_choose_the_stacks() {
        let sel = Selection::parse(&args("pr-*", Some("1h"))).unwrap();
        let now = 100_000;
        assert!(sel.selects(&stack("pr-1", Some(now - 7200)), now));
        assert!(!sel.selects(&stack("pr-2", Some(now - 60)), now), "too new");
        assert!(!sel.selects(&stack("pr-3", None), now), "unknown age");
        assert!(!sel.selects(&stack("keep-1", Some(0)), now), "no match");
        let all = Selection::parse(&args("*", None)).unwrap();
        assert!(all.selects(&stack("anything", None), now));
    }

    #[test]
    fn bad_globs_and_durations_are_usage_errors() {
        for (pattern, older) in [
            ("pr-[", None),
            ("", None),
            ("pr-*", Some("soon")),
            ("pr-*", Some("5")),
        ] {
            let err = Selection::parse(&args(pattern, older))
                .err()
                .unwrap_or_else(|| panic!("{pattern} {older:?} must be refused"));
            assert_eq!(err.exit_code(), exit::USAGE, "{err}");
        }
    }
}
