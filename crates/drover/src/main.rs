//! `drover`: one binary, many roles. `serve` runs a node; every other command is a thin client
//! of a node's HTTP API (see `client.rs`), and never touches the store or processes itself.

mod cli;
mod client;
mod commands;
mod config;
mod output;
mod spec_args;
mod when;

use std::process::ExitCode;

use clap::Parser;

use crate::cli::{Cli, Command};
use crate::client::ClientError;

/// Exit codes; see `cli::EXIT_CODES`.
pub mod exit {
    /// Every job succeeded / the command did what was asked.
    pub const OK: u8 = 0;
    /// A job ended unsuccessfully.
    pub const JOB_FAILED: u8 = 1;
    /// Bad usage (clap's own code too).
    pub const USAGE: u8 = 2;
    /// `wait --timeout` ran out.
    pub const TIMEOUT: u8 = 3;
    /// The node could not be reached or refused.
    pub const NODE: u8 = 4;
}

/// For `drover submit echo hi`: the program belongs after `--`, and the line that would work.
fn program_hint(err: &clap::Error, args: &[String]) -> Option<String> {
    use clap::error::{ContextKind, ContextValue, ErrorKind};
    if err.kind() != ErrorKind::UnknownArgument {
        return None;
    }
    let Some(ContextValue::String(stray)) = err.get(ContextKind::InvalidArg) else {
        return None;
    };
    let command = args.iter().position(|a| a == "submit" || a == "run")?;
    let at = command + args[command..].iter().position(|a| a == stray)?;
    if stray.starts_with('-') || args[..at].iter().any(|a| a == "--") {
        return None;
    }
    let mut fixed: Vec<&str> = vec!["drover"];
    fixed.extend(args[1..at].iter().map(String::as_str));
    fixed.push("--");
    fixed.extend(args[at..].iter().map(String::as_str));
    Some(format!(
        "tip: the job's program and its arguments go after `--`:\n  {}",
        fixed.join(" ")
    ))
}

fn main() -> ExitCode {
    let args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    if args.get(1).is_some_and(|a| a == "owner") {
        // The internal job owner: not part of the public command line (see `cli::OwnerCli`).
        // It keeps SIGPIPE ignored, as the node does.
        return match cli::OwnerCli::try_parse_from(&args[1..]) {
            Ok(owner) => finish(commands::owner(&owner.args)),
            Err(err) => err.exit(),
        };
    }
    // The jobs a session is made of, run by a node: internal too.
    if args.get(1).is_some_and(|a| a == "session-host") {
        return match cli::SessionHostCli::try_parse_from(&args[1..]) {
            Ok(host) => finish(commands::session_host(&host)),
            Err(err) => err.exit(),
        };
    }
    if args.get(1).is_some_and(|a| a == "session-exec") {
        return match cli::SessionExecCli::try_parse_from(&args[1..]) {
            Ok(exec) => finish(commands::session_exec(&exec)),
            Err(err) => err.exit(),
        };
    }
    if args.get(1).is_some_and(|a| a == "pool-run") {
        return match cli::PoolRunCli::try_parse_from(&args[1..]) {
            Ok(run) => commands::pool_run(&run),
            Err(err) => err.exit(),
        };
    }
    let cli = match Cli::try_parse_from(&args) {
        Ok(cli) => cli,
        Err(err) => {
            let hint = program_hint(&err, &std::env::args().collect::<Vec<_>>());
            let code = err.exit_code();
            let _ = err.print();
            if let Some(hint) = hint {
                eprintln!("{hint}");
            }
            return ExitCode::from(u8::try_from(code).unwrap_or(exit::USAGE));
        }
    };
    if !matches!(cli.command, Command::Serve(_)) {
        // A client whose reader went away (`drover watch | head`) ends quietly, as other Unix
        // tools do. The node and owners keep ignoring SIGPIPE: a closed socket is an error
        // they handle, not a reason to die.
        // SAFETY: restores the default action before any other thread exists.
        unsafe {
            libc::signal(libc::SIGPIPE, libc::SIG_DFL);
        }
    }
    let result = match &cli.command {
        Command::Serve(args) => commands::serve(&cli, args),
        Command::Submit(args) => commands::submit(&cli, args),
        Command::Run(args) => commands::run(&cli, args),
        Command::Status(args) => commands::status(&cli, args),
        Command::Logs(args) => commands::logs(&cli, args),
        Command::Cancel(args) => commands::cancel(&cli, args),
        Command::Wait(args) => commands::wait(&cli, args),
        Command::Doctor(args) => commands::doctor(&cli, args),
        Command::Priority(args) => commands::priority(&cli, args),
        Command::Edit(args) => commands::edit(&cli, args),
        Command::Watch(args) => commands::watch(&cli, args),
        Command::Top(args) => commands::top(&cli, args),
        Command::Dlq(args) => commands::dlq(&cli, args),
        Command::Retry(args) => commands::retry(&cli, args),
        Command::Queue(args) => commands::queue(&cli, args),
        Command::Nodes(args) => commands::nodes(&cli, args),
        Command::Drain(args) => commands::drain(&cli, args, true),
        Command::Undrain(args) => commands::drain(&cli, args, false),
        Command::Web(args) => commands::web(&cli, args),
        Command::Flow(args) => commands::flow(&cli, args),
        Command::Session(args) => commands::session(&cli, args),
        Command::Pool(args) => commands::pool(&cli, args),
        Command::Exec(args) => commands::exec(&cli, args),
        Command::Result(args) => commands::result(&cli, args),
        Command::Results(args) => commands::results(&cli, args),
        Command::Service(args) => commands::service(&cli, args),
        Command::Completions(args) => commands::completions(args),
        Command::Man(args) => commands::man(args),
    };
    finish(result)
}

/// The process's exit code for a command's result; an error is printed first.
fn finish(result: anyhow::Result<u8>) -> ExitCode {
    match result {
        Ok(code) => ExitCode::from(code),
        Err(err) => {
            eprintln!("drover: {err:#}");
            let code = if let Some(client) = err.downcast_ref::<ClientError>() {
                client.exit_code()
            } else if err.downcast_ref::<commands::UsageError>().is_some() {
                exit::USAGE
            } else {
                exit::NODE
            };
            ExitCode::from(code)
        }
    }
}
