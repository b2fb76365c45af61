//! `drover completions SHELL`: the shell's completion script, generated from the same clap
//! definition the binary parses with, so it never drifts from the real flags.

use clap::CommandFactory;

use crate::cli::{Cli, CompletionsArgs};
use crate::exit;

/// Prints the completion script for `args.shell` on stdout.
pub fn completions(args: &CompletionsArgs) -> anyhow::Result<u8> {
    let mut command = Cli::command();
    clap_complete::generate(args.shell, &mut command, "drover", &mut std::io::stdout());
    Ok(exit::OK)
}
