//! provision: stand up, check and tear down a machine-to-machine OAuth2 API on AWS.
//!
//! `main` only parses, runs and prints the error; `run` returns the exit code.

mod aws;
mod cli;
mod client;
mod commands;
mod config;
mod consumers;
mod elf;
mod errors;
mod fence;
mod fleet;
mod graph;
mod interrupt;
mod names;
mod package;
mod plan;
mod policy_doc;
mod quota;
mod report;
mod resources;
mod state;
mod store;

use clap::Parser;

use crate::cli::{Cli, Command, Format, StackArgs};
use crate::errors::{Error, Result};

fn main() {
    aws::since_start();
    let cli = Cli::parse();
    let format = cli.output;
    report::init(format == Format::Human, cli.verbose, cli.quiet);
    // The command's futures (every resource's chain, joined) are polled on this thread;
    // unoptimised builds need more than a main thread's 8 MiB for them.
    let outcome = std::thread::Builder::new()
        .name("provision".into())
        .stack_size(64 << 20)
        .spawn(move || run(cli))
        .expect("start the command's thread")
        .join()
        .unwrap_or_else(|_| Err(Error::Http("internal error: the command panicked".into())));
    let code = match outcome {
        Ok(code) => code,
        Err(e) => {
            // One line, whatever the underlying error looks like.
            let message = e.to_string();
            let one_line: Vec<&str> = message
                .lines()
                .map(str::trim)
                .filter(|l| !l.is_empty())
                .collect();
            eprintln!("error: {}", one_line.join(" "));
            e.exit_code()
        }
    };
    // For tests and audits (e.g. checking docs/iam-policy.json): every AWS operation sent.
    if let Some(path) = std::env::var_os("PROVISION_CALL_LOG") {
        let ops: String = aws::CallLog::global()
            .operations()
            .iter()
            .map(|op| format!("{op}\n"))
            .collect();
        if let Err(e) = std::fs::write(&path, ops) {
            eprintln!("warning: cannot write PROVISION_CALL_LOG file: {e}");
        }
    }
    // For the benchmark: each request's times and graph node, and the graph.
    if let Some(path) = std::env::var_os("PROVISION_TRACE") {
        let trace = aws::CallLog::global().trace_json().to_string();
        if let Err(e) = std::fs::write(&path, trace) {
            eprintln!("warning: cannot write PROVISION_TRACE file: {e}");
        }
    }
    std::process::exit(code);
}

fn run(cli: Cli) -> Result<i32> {
    let file = config::load_file(cli.config.as_deref())?;
    let target = config::resolve_target(&cli, &file)?;
    let desired_of = |args: &StackArgs| config::resolve_desired(args, &file);
    let format = cli.output;
    // Validate everything the command needs before starting the runtime.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| Error::io("starting the async runtime", e))?;
    if matches!(
        cli.command,
        Command::Up(_) | Command::Down | Command::Prune(_) | Command::Rotate(_)
    ) {
        interrupt::install(&runtime);
    }
    match &cli.command {
        Command::Up(args) => {
            let desired = desired_of(&args.stack)?;
            runtime.block_on(Box::pin(commands::up(
                &target,
                &desired,
                args.dry_run,
                format,
            )))
        }
        Command::Status(args) => {
            let desired = desired_of(&args.stack)?;
            let max_age = config::resolve_max_secret_age(args.max_secret_age, &file)?;
            runtime.block_on(Box::pin(commands::status(
                &target, &desired, max_age, format,
            )))
        }
        Command::Rotate(args) => {
            let desired = desired_of(&StackArgs::default())?;
            // Which clients, and whether each can be delivered: before any AWS call.
            let plan = commands::RotatePlan::new(args, &desired)?;
            runtime.block_on(Box::pin(commands::rotate(&target, &plan, format)))
        }
        Command::Down => runtime.block_on(Box::pin(commands::down(&target, format))),
        Command::Outputs => runtime.block_on(commands::outputs(&target, format)),
        Command::Token(args) => {
            runtime.block_on(commands::token(&target, args.client.as_deref(), format))
        }
        Command::Invoke(args) => runtime.block_on(commands::invoke(&target, args, format)),
        Command::Credentials(args) => runtime.block_on(commands::credentials(
            &target,
            args.client.as_deref(),
            format,
        )),
        Command::Logs(args) => runtime.block_on(commands::logs(&target, args, format)),
        Command::Graph(args) => {
            let desired = desired_of(args)?;
            runtime.block_on(commands::graph(&target, &desired, format))
        }
        Command::InitState(args) => runtime.block_on(commands::init_state(&target, args, format)),
        Command::Unlock(args) => runtime.block_on(commands::unlock(&target, args, format)),
        Command::List => runtime.block_on(commands::list(&target, format)),
        Command::Prune(args) => {
            // Bad input fails here, before the runtime sends anything.
            let selection = commands::Selection::parse(args)?;
            runtime.block_on(Box::pin(commands::prune(&target, &selection, format)))
        }
    }
}
