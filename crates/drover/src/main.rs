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

fn main() -> ExitCode {
    let cli = Cli::parse();
    if !matches!(cli.command, Command::Serve(_) | Command::Owner(_)) {
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
        Command::Watch(args) => commands::watch(&cli, args),
        Command::Dlq(args) => commands::dlq(&cli, args),
        Command::Retry(args) => commands::retry(&cli, args),
        Command::Queue(args) => commands::queue(&cli, args),
        Command::Nodes(args) => commands::nodes(&cli, args),
        Command::Drain(args) => commands::drain(&cli, args, true),
        Command::Undrain(args) => commands::drain(&cli, args, false),
        Command::Web(args) => commands::web(&cli, args),
        Command::Owner(args) => commands::owner(args),
    };
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
