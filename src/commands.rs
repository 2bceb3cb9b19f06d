//! The commands: each reads the configuration, prepares what it needs before any AWS
//! call (validation, the handler package, the state file, the lock), then drives the
//! resource modules in dependency order, running independent chains concurrently.

use std::sync::Mutex;
use std::time::Instant;

use serde_json::json;

use crate::aws::{self, Aws};
use crate::cli::{Format, InvokeArgs, StackArgs};
use crate::client;
use crate::config::{self, Desired, FileConfig, Target};
use crate::errors::{exit, Error, Result};
use crate::package;
use crate::plan::{self, Health};
use crate::report::{self, Action, Done, RunReport};
use crate::resources::{
    app_client, authorizer, domain, function, methods, permission, resource_server, rest_api, role,
    stage, user_pool, Ctx,
};
use crate::state::{self, Outputs, Recorder, StackLock, StateFile};

/// The order resources are listed in, parents first.
const ORDER: [&str; 12] = [
    role::KIND,
    function::KIND,
    user_pool::KIND,
    domain::KIND,
    resource_server::KIND,
    app_client::KIND,
    rest_api::KIND,
    authorizer::KIND,
    "method /",
    "method /{proxy+}",
    permission::KIND,
    stage::KIND,
];

fn rank(kind: &str, id: &str) -> usize {
    let key = if kind == methods::KIND {
        format!("{kind} {}", id.trim_start_matches("ANY "))
    } else {
        kind.to_string()
    };
    ORDER.iter().position(|k| *k == key).unwrap_or(ORDER.len())
}

/// Everything a command that talks to AWS sets up first.
struct Session {
    aws: Aws,
    account: String,
    region: String,
    state_path: std::path::PathBuf,
    existing: Option<StateFile>,
}

/// Loads and checks the state file, then connects and learns the account.
/// Everything that can fail on bad input fails here, before any write.
async fn open(target: &Target) -> Result<Session> {
    let state_path = target.state_path();
    let existing = state::load(&state_path)?;
    let region = match (&target.region, &existing) {
        (Some(r), _) => r.clone(),
        // A state file pins the region, unless the user named one.
        (None, Some(s)) => s.region.clone(),
        (None, None) => aws::resolve_region(None, target.is_local()).await?,
    };
    config::check_partition(&region, target.is_local())?;
    if let Some(s) = &existing {
        state::check_matches(s, &state_path, &target.stack, &region)?;
    }
    let aws = Aws::connect(&region, target.endpoint_url.as_deref()).await;
    let account = aws.account().await?;
    if let Some(s) = &existing {
        state::check_account(s, &state_path, &account)?;
    }
    report::info(&format!("account {account}, region {region}"));
    Ok(Session {
        aws,
        account,
        region,
        state_path,
        existing,
    })
}

fn resolve_prefix(desired: &Desired, account: &str, region: &str, stack: &str) -> Result<String> {
    match &desired.domain_prefix {
        Some(p) => Ok(p.clone()),
        None => {
            let p = config::derived_domain_prefix(account, region, stack);
            config::validate_domain_prefix(&p, "derived domain prefix").map_err(|e| {
                Error::usage(format!(
                    "{e} (derived from the stack name); pass --domain-prefix"
                ))
            })?;
            Ok(p)
        }
    }
}

/// The ids `up` learns, for the outputs.
struct Converged {
    pool_id: String,
    client_id: String,
    api_id: String,
}

/// The whole stack, in dependency order; independent chains at the same time.
async fn converge(ctx: &Ctx<'_>) -> Result<Converged> {
    let lambda_chain = ctx.track(
        "lambda_function",
        function::ensure(ctx, ctx.track("iam_role", role::ensure(ctx))),
    );
    // The pool and the API; then, at once, the rest of Cognito and the authorizer
    // (which needs only those two, not the function).
    let cognito_and_api = async {
        let (p, a) = ctx
            .both(
                ctx.track("user_pool", user_pool::ensure(ctx)),
                ctx.track("rest_api", rest_api::ensure(ctx)),
            )
            .await;
        let (pool, api) = both_ok(p, a)?;
        let cognito_rest = async {
            let (d, c) = ctx
                .both(
                    ctx.track(
                        "user_pool_domain",
                        domain::ensure(ctx, &pool.handle, pool.domain.as_deref()),
                    ),
                    async {
                        ctx.track(
                            "resource_server",
                            resource_server::ensure(ctx, &pool.handle),
                        )
                        .await?;
                        ctx.track("app_client", app_client::ensure(ctx, &pool.handle))
                            .await
                    },
                )
                .await;
            let (_, client) = both_ok(d, c)?;
            Ok(client)
        };
        let (c, z) = ctx
            .both(
                cognito_rest,
                ctx.track(
                    "authorizer",
                    authorizer::ensure(ctx, &api.handle, &pool.handle),
                ),
            )
            .await;
        let (client, authorizer) = both_ok(c, z)?;
        Ok::<_, Error>((pool, api, client, authorizer))
    };
    let (f, c) = ctx.both(lambda_chain, cognito_and_api).await;
    let (function, (pool, api, client, authorizer)) = both_ok(f, c)?;
    // The methods and the stage are built while the function settles; the permission
    // waits for it.
    let api_part = async {
        let method_settings = ctx
            .track(
                "methods",
                methods::ensure(
                    ctx,
                    &api.handle,
                    api.root_id.as_deref(),
                    &authorizer,
                    &function.handle,
                ),
            )
            .await?;
        let definition = plan::definition_hash(
            &authorizer::desired(&pool.handle.arn),
            &method_settings
                .iter()
                .map(|(p, m)| (*p, m))
                .collect::<Vec<_>>(),
        );
        ctx.track("stage prod", stage::ensure(ctx, &api.handle, &definition))
            .await
    };
    let lambda_part = async {
        if function.settling {
            ctx.track(
                "waiting for lambda_function to be ready",
                function::wait_settled(ctx),
            )
            .await?;
        }
        ctx.track(
            "lambda_permission",
            permission::ensure(ctx, &function.handle, &api.handle),
        )
        .await
    };
    let (a, l) = ctx.both(api_part, lambda_part).await;
    both_ok(a, l)?;
    Ok(Converged {
        pool_id: pool.handle.id,
        client_id: client.id,
        api_id: api.handle.id,
    })
}

/// Both results, once both chains have finished (so nothing is left half-recorded);
/// else the first error, the other shown as a warning.
fn both_ok<A, B>(a: Result<A>, b: Result<B>) -> Result<(A, B)> {
    match (a, b) {
        (Ok(a), Ok(b)) => Ok((a, b)),
        (Err(e), Ok(_)) | (Ok(_), Err(e)) => Err(e),
        (Err(e), Err(other)) => {
            report::warn(&format!("also: {other}"));
            Err(e)
        }
    }
}

/// Will the handler run on Lambda? An error for AWS; a warning for the local emulator,
/// which runs it as a host process whatever it was built for.
fn check_handler(target: &Target, desired: &Desired, package: &package::Package) -> Result<()> {
    let problems = match &package.binary {
        Ok(info) => crate::elf::lambda_problems(info, desired.architecture),
        Err(why) => vec![why.clone()],
    };
    if problems.is_empty() {
        return Ok(());
    }
    let arch_flag = match desired.architecture {
        config::Arch::X86_64 => "",
        config::Arch::Arm64 => " --arm64",
    };
    let message = format!(
        "handler binary {}: {}; build it for Lambda with `cargo lambda build --release{arch_flag} -p handler` (or scripts/build-lambda {})",
        desired.handler.display(),
        problems.join("; "),
        desired.architecture
    );
    if target.is_local() {
        report::info(&format!("{message} (fine for the local emulator)"));
        Ok(())
    } else {
        Err(Error::usage(message))
    }
}

fn sorted(mut done: Vec<Done>) -> Vec<Done> {
    done.sort_by_key(|d| rank(d.kind, &d.id));
    done
}

pub async fn up(target: &Target, desired: &Desired, dry_run: bool, format: Format) -> Result<i32> {
    let started = Instant::now();
    // Fail on a missing handler before touching anything.
    let package = package::build(
        &desired.handler,
        desired.handler_given,
        desired.architecture,
    )?;
    check_handler(target, desired, &package)?;
    let _lock = if dry_run {
        None
    } else {
        Some(StackLock::acquire(&target.lock_path())?)
    };
    let session = open(target).await?;
    let prefix = resolve_prefix(desired, &session.account, &session.region, &target.stack)?;
    let mut state = session.existing.clone().unwrap_or_else(|| {
        StateFile::new(
            &target.stack,
            &session.region,
            target.endpoint_url.as_deref(),
        )
    });
    state.account = Some(session.account.clone());
    let rec = Recorder::new(session.state_path.clone(), state, !dry_run);
    let ctx = Ctx {
        aws: &session.aws,
        stack: &target.stack,
        region: &session.region,
        account: &session.account,
        partition: aws::partition(&session.region),
        desired,
        domain_prefix: &prefix,
        package: Some(&package),
        rec: &rec,
        apply: !dry_run,
        show: true,
        concurrent: target.concurrency > 1,
        done: Mutex::new(Vec::new()),
        function: Default::default(),
    };
    // The prefix must be free or ours before anything is created.
    if rec.get(domain::KIND).as_deref() != Some(prefix.as_str()) {
        domain::preflight(&ctx, rec.get(user_pool::KIND).as_deref()).await?;
    }
    if dry_run {
        report::progress(&format!(
            "Plan for stack {} ({} in {}), no changes made:",
            target.stack, session.account, session.region
        ));
    } else {
        report::progress(&format!(
            "Bringing up stack {} ({} in {}):",
            target.stack, session.account, session.region
        ));
    }
    let converged = Box::pin(converge(&ctx)).await?;
    let outputs = Outputs {
        api_url: client::api_url(
            target.endpoint_url.as_deref(),
            &converged.api_id,
            stage::STAGE,
            &session.region,
        ),
        token_url: client::token_url(target.endpoint_url.as_deref(), &prefix, &session.region),
        client_id: converged.client_id,
        scope: desired.scope_strings().join(" "),
        user_pool_id: converged.pool_id,
        region: session.region.clone(),
        stack: target.stack.clone(),
    };
    rec.update(|s| s.outputs = Some(outputs.clone()))?;
    let done = sorted(ctx.done.into_inner().expect("done"));
    let run = RunReport {
        command: "up",
        stack: &target.stack,
        region: &session.region,
        resources: &done,
        outputs: if dry_run { None } else { Some(&outputs) },
        api_calls: session.aws.calls.count(),
        elapsed: started.elapsed(),
        dry_run,
    };
    match format {
        Format::Json => report::emit_json(&run.json()),
        Format::Human => report::emit_text(&run.human()),
    }
    Ok(exit::OK)
}

pub async fn status(target: &Target, desired: &Desired, format: Format) -> Result<i32> {
    let package = match package::build(
        &desired.handler,
        desired.handler_given,
        desired.architecture,
    ) {
        Ok(p) => Some(p),
        Err(e) if !desired.handler_given => {
            report::info(&format!("{e}; the function's code is not compared"));
            None
        }
        Err(e) => return Err(e),
    };
    let session = open(target).await?;
    let prefix = resolve_prefix(desired, &session.account, &session.region, &target.stack)?;
    let state = session.existing.clone().unwrap_or_else(|| {
        StateFile::new(
            &target.stack,
            &session.region,
            target.endpoint_url.as_deref(),
        )
    });
    let rec = Recorder::new(session.state_path.clone(), state, false);
    let ctx = Ctx {
        aws: &session.aws,
        stack: &target.stack,
        region: &session.region,
        account: &session.account,
        partition: aws::partition(&session.region),
        desired,
        domain_prefix: &prefix,
        package: package.as_ref(),
        rec: &rec,
        apply: false,
        // status prints its own table, not the plan's lines.
        show: false,
        concurrent: target.concurrency > 1,
        done: Mutex::new(Vec::new()),
        function: Default::default(),
    };
    Box::pin(converge(&ctx)).await?;
    let health: Vec<_> = sorted(ctx.done.into_inner().expect("done"))
        .into_iter()
        .map(|d| (d.kind, d.id, plan::health(d.action, &d.changes), d.changes))
        .collect();
    let in_sync = health.iter().all(|(_, _, h, _)| *h == Health::Ok);
    match format {
        Format::Json => report::emit_json(&json!({
            "stack": target.stack,
            "in_sync": in_sync,
            "resources": health.iter().map(|(kind, id, h, fields)| {
                let mut v = json!({"kind": kind, "id": id, "state": h});
                if !fields.is_empty() {
                    v["fields"] = json!(fields);
                }
                v
            }).collect::<Vec<_>>(),
            "api_calls": session.aws.calls.count(),
        })),
        Format::Human => {
            let mut out = String::new();
            for (kind, id, h, fields) in &health {
                let state = match h {
                    Health::Ok => "ok",
                    Health::Drifted => "drifted",
                    Health::Missing => "missing",
                    Health::Extra => "extra",
                };
                out.push_str(&format!("  {state:<8} {kind:<18} {id}"));
                if !fields.is_empty() {
                    out.push_str(&format!("  [{}]", fields.join(", ")));
                }
                out.push('\n');
            }
            out.push_str(if in_sync {
                "In sync.\n"
            } else {
                "Not in sync: `provision up` repairs it.\n"
            });
            report::emit_text(&out);
        }
    }
    Ok(if in_sync { exit::OK } else { exit::DRIFT })
}

pub async fn down(target: &Target, format: Format) -> Result<i32> {
    let started = Instant::now();
    let _lock = StackLock::acquire(&target.lock_path())?;
    let session = open(target).await?;
    let state = session.existing.clone().unwrap_or_else(|| {
        StateFile::new(
            &target.stack,
            &session.region,
            target.endpoint_url.as_deref(),
        )
    });
    let recorded = state.clone();
    let rec = Recorder::new(
        session.state_path.clone(),
        state,
        session.existing.is_some(),
    );
    let desired = config::resolve_desired(&StackArgs::default(), &FileConfig::default())?;
    let ctx = Ctx {
        aws: &session.aws,
        stack: &target.stack,
        region: &session.region,
        account: &session.account,
        partition: aws::partition(&session.region),
        desired: &desired,
        domain_prefix: "",
        package: None,
        rec: &rec,
        apply: true,
        show: true,
        concurrent: target.concurrency > 1,
        done: Mutex::new(Vec::new()),
        function: Default::default(),
    };
    report::progress(&format!(
        "Taking down stack {} ({} in {}):",
        target.stack, session.account, session.region
    ));
    let tell = |kind: &'static str, id: &str, gone: bool, t: Instant| {
        let done = Done {
            kind,
            id: id.to_string(),
            action: if gone {
                Action::Deleted
            } else {
                Action::Absent
            },
            changes: Vec::new(),
            elapsed: t.elapsed(),
        };
        report::resource_line(&done, false);
        ctx.done.lock().expect("done").push(done);
    };
    // Children that go with their parent, as the state file knew them.
    let children = |parent_gone: bool, kinds: &[&'static str]| {
        for kind in kinds {
            let keys: Vec<(&'static str, String)> = if *kind == methods::KIND {
                ["/", "/{proxy+}"]
                    .iter()
                    .filter(|p| recorded.get(&format!("{} {p}", methods::KIND)).is_some())
                    .map(|p| (methods::KIND, format!("ANY {p}")))
                    .collect()
            } else {
                recorded
                    .get(kind)
                    .map(|id| (*kind, id.to_string()))
                    .into_iter()
                    .collect()
            };
            for (k, id) in keys {
                tell(k, &id, parent_gone, Instant::now());
            }
        }
    };

    let api_chain = async {
        let t = Instant::now();
        // Every API of this name and tag: duplicates too, so none is left behind.
        let apis = rest_api::find_all(&ctx).await?;
        let mut gone_any = false;
        for api in &apis {
            let gone = rest_api::delete(&ctx, &api.id).await?;
            gone_any |= gone;
            tell(rest_api::KIND, &api.id, gone, t);
        }
        children(gone_any, &[stage::KIND, methods::KIND, authorizer::KIND]);
        if apis.is_empty() {
            let id = recorded
                .get(rest_api::KIND)
                .map(str::to_string)
                .unwrap_or_else(|| ctx.api_name());
            tell(rest_api::KIND, &id, false, t);
        }
        for key in [
            rest_api::KIND,
            stage::KIND,
            authorizer::KIND,
            "method /",
            "method /{proxy+}",
        ] {
            rec.remove(key)?;
        }
        Ok::<_, Error>(())
    };
    let permission_removal = async {
        let t = Instant::now();
        // Only from our own function.
        let removed = if function::check_ours(&ctx).await? {
            permission::remove(&ctx).await?
        } else {
            false
        };
        tell(permission::KIND, permission::STATEMENT_ID, removed, t);
        rec.remove(permission::KIND)?;
        Ok::<_, Error>(())
    };
    let cognito_chain = async {
        let t = Instant::now();
        // Every pool of this name and tag: duplicates too, so none is left behind.
        let pools = user_pool::find_all(&ctx).await?;
        if pools.is_empty() {
            if let Some(d) = recorded.get(domain::KIND) {
                tell(domain::KIND, d, false, t);
            }
            children(false, &[app_client::KIND, resource_server::KIND]);
            tell(user_pool::KIND, &ctx.pool_name(), false, t);
        }
        let mut gone_any = false;
        for pool in &pools {
            if let Some(prefix) = &pool.domain {
                let t = Instant::now();
                let gone = domain::delete(&ctx, &pool.id, prefix).await?;
                tell(domain::KIND, prefix, gone, t);
            }
            let gone = user_pool::delete(&ctx, &pool.id).await?;
            gone_any |= gone;
            tell(user_pool::KIND, &pool.id, gone, t);
        }
        if !pools.is_empty() {
            children(gone_any, &[app_client::KIND, resource_server::KIND]);
        }
        for key in [
            user_pool::KIND,
            domain::KIND,
            app_client::KIND,
            resource_server::KIND,
        ] {
            rec.remove(key)?;
        }
        Ok::<_, Error>(())
    };
    // The API and our permission go before the function; the function before its role.
    let lambda_chain = async {
        let (a, p) = ctx
            .both(
                ctx.track("deleting rest_api", api_chain),
                ctx.track("removing lambda_permission", permission_removal),
            )
            .await;
        both_ok(a, p)?;
        let t = Instant::now();
        let gone = ctx
            .track("deleting lambda_function", function::delete(&ctx))
            .await?;
        tell(function::KIND, &ctx.function_name(), gone, t);
        rec.remove(function::KIND)?;
        let t = Instant::now();
        let (name, gone) = ctx.track("deleting iam_role", role::delete(&ctx)).await?;
        tell(role::KIND, &name, gone, t);
        rec.remove(role::KIND)?;
        Ok::<_, Error>(())
    };
    let (l, c) = ctx
        .both(
            lambda_chain,
            ctx.track("deleting user_pool_domain and user_pool", cognito_chain),
        )
        .await;
    both_ok(l, c)?;
    // Last: the state file, once nothing it names is left.
    rec.delete_file()?;
    let done = sorted(ctx.done.into_inner().expect("done"));
    let run = RunReport {
        command: "down",
        stack: &target.stack,
        region: &session.region,
        resources: &done,
        outputs: None,
        api_calls: session.aws.calls.count(),
        elapsed: started.elapsed(),
        dry_run: false,
    };
    match format {
        Format::Json => report::emit_json(&run.json()),
        Format::Human => report::emit_text(&run.human()),
    }
    Ok(exit::OK)
}

/// The state file of a stack that is up, for the commands that only read it.
fn recorded_outputs(target: &Target) -> Result<(StateFile, Outputs)> {
    let path = target.state_path();
    let state = state::load(&path)?.ok_or_else(|| {
        Error::usage(format!(
            "no state file {}: the stack `{}` is not up here; run `provision up` first (or pass --state-dir)",
            path.display(),
            target.stack
        ))
    })?;
    let region = target
        .region
        .clone()
        .unwrap_or_else(|| state.region.clone());
    state::check_matches(&state, &path, &target.stack, &region)?;
    let outputs = state.outputs.clone().ok_or_else(|| {
        Error::usage(format!(
            "state file {}: no outputs yet (the last `up` did not finish); run `provision up`",
            path.display()
        ))
    })?;
    Ok((state, outputs))
}

pub fn outputs(target: &Target, format: Format) -> Result<i32> {
    let (_, outputs) = recorded_outputs(target)?;
    match format {
        Format::Json => report::emit_json(&json!(outputs)),
        Format::Human => report::emit_text(&report::outputs_human(&outputs)),
    }
    Ok(exit::OK)
}

async fn fresh_token(
    target: &Target,
    state: &StateFile,
    outputs: &Outputs,
) -> Result<client::Token> {
    let aws = Aws::connect(&state.region, target.endpoint_url.as_deref()).await;
    let secret = app_client::secret(&aws, &outputs.user_pool_id, &outputs.client_id).await?;
    let scopes: Vec<String> = outputs
        .scope
        .split_whitespace()
        .map(str::to_string)
        .collect();
    client::token(
        &outputs.token_url,
        &outputs.client_id,
        &secret,
        &scopes,
        !target.is_local(),
    )
    .await
}

pub async fn token(target: &Target, format: Format) -> Result<i32> {
    let (state, outputs) = recorded_outputs(target)?;
    let token = fresh_token(target, &state, &outputs).await?;
    match format {
        Format::Json => report::emit_json(&json!(token)),
        Format::Human => report::emit_text(&token.access_token),
    }
    Ok(exit::OK)
}

pub async fn invoke(target: &Target, args: &InvokeArgs, format: Format) -> Result<i32> {
    if !args.path.starts_with('/') {
        return Err(Error::usage(format!(
            "path `{}`: must start with /",
            args.path
        )));
    }
    let (state, outputs) = recorded_outputs(target)?;
    let token = if args.no_token {
        None
    } else {
        Some(fresh_token(target, &state, &outputs).await?.access_token)
    };
    let url = client::join(&outputs.api_url, &args.path);
    report::info(&format!("{} {url}", args.method.to_ascii_uppercase()));
    let reply = client::call(&url, &args.method, token.as_deref(), args.data.as_deref()).await?;
    match format {
        Format::Json => {
            let body = serde_json::from_str::<serde_json::Value>(&reply.body)
                .unwrap_or_else(|_| json!(reply.body));
            report::emit_json(&json!({"status": reply.status, "body": body}));
        }
        Format::Human => report::emit_text(&format!("HTTP {}\n{}", reply.status, reply.body)),
    }
    Ok(if (200..300).contains(&reply.status) {
        exit::OK
    } else {
        exit::FAILURE
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Arch, Scope};

    fn target(endpoint: Option<&str>) -> Target {
        Target {
            stack: "s".into(),
            region: Some("eu-west-1".into()),
            endpoint_url: endpoint.map(str::to_string),
            state_dir: "state".into(),
            concurrency: 8,
        }
    }

    fn desired(arch: Arch) -> Desired {
        Desired {
            domain_prefix: None,
            scopes: vec![Scope::parse("users/read").unwrap()],
            handler: "target/debug/handler".into(),
            handler_given: true,
            memory_mb: 128,
            timeout_s: 10,
            architecture: arch,
            token_validity_min: 60,
        }
    }

    fn package(binary: Vec<u8>) -> package::Package {
        package::Package {
            binary: crate::elf::inspect(&binary),
            zip: Vec::new(),
            code_sha256: String::new(),
        }
    }

    #[test]
    fn a_handler_lambda_cannot_run_stops_an_aws_deploy_but_not_a_local_one() {
        let x86_new_glibc = package(crate::elf::tests::fixture(62, &["GLIBC_2.39"]));
        let err = check_handler(&target(None), &desired(Arch::X86_64), &x86_new_glibc).unwrap_err();
        assert_eq!(err.exit_code(), 2);
        assert!(
            err.to_string().contains("GLIBC_2.39")
                && err.to_string().contains("cargo lambda build"),
            "{err}"
        );
        check_handler(
            &target(Some("http://127.0.0.1:4566")),
            &desired(Arch::X86_64),
            &x86_new_glibc,
        )
        .expect("only a warning locally");

        let x86 = package(crate::elf::tests::fixture(62, &["GLIBC_2.17"]));
        check_handler(&target(None), &desired(Arch::X86_64), &x86).expect("runs on Lambda");
        let err = check_handler(&target(None), &desired(Arch::Arm64), &x86).unwrap_err();
        assert!(err.to_string().contains("--arm64"), "{err}");

        let script = package(b"#!/bin/sh\n".to_vec());
        let err = check_handler(&target(None), &desired(Arch::X86_64), &script).unwrap_err();
        assert!(err.to_string().contains("not an ELF"), "{err}");
    }
}
