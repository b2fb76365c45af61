//! `drover man [--dir DIR]`: manual pages (roff), generated from the clap definition the binary
//! parses with. Hidden commands (the internal `owner`) get no page.

use anyhow::Context;
use clap::CommandFactory;

use crate::cli::{Cli, ManArgs};
use crate::exit;

/// Prints drover(1), or writes drover.1 and drover-COMMAND.1 for every command into `--dir`.
pub fn man(args: &ManArgs) -> anyhow::Result<u8> {
    let command = Cli::command();
    match &args.dir {
        None => {
            let mut out = std::io::stdout().lock();
            clap_mangen::Man::new(command)
                .render(&mut out)
                .context("writing the manual page")?;
        }
        Some(dir) => {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
            clap_mangen::generate_to(command, dir)
                .with_context(|| format!("writing manual pages into {}", dir.display()))?;
            eprintln!(
                "wrote the manual pages into {} (add its parent to MANPATH if man does not find them)",
                dir.display()
            );
        }
    }
    Ok(exit::OK)
}
