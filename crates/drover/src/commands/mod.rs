//! One file per subcommand; each function returns the process exit code (see `main::exit`).
//!
//! Every command but `serve`, `owner`, `doctor`, `service`, `completions` and `man` is a
//! client: it talks to a node only over its HTTP API (`crate::client`), reads answers as the
//! types of `drover_api`, and builds its tables in `crate::output`. None reads the store or signals a process.

mod cancel;
mod completions;
mod dlq;
mod doctor;
mod edit;
mod flow;
mod follow;
mod group;
mod logs;
mod man;
mod nodes;
mod owner;
mod pool;
mod priority;
mod queue;
mod refs;
mod results;
mod retry;
mod run;
mod serve;
mod service;
mod session;
mod status;
mod submit;
mod top;
mod wait;
mod watch;
mod web;

use std::path::PathBuf;

use crate::cli::Cli;
use crate::client::{Client, default_data_dir};
use crate::exit;

pub use cancel::cancel;
pub use completions::completions;
pub use dlq::dlq;
pub use doctor::doctor;
pub use edit::edit;
pub use flow::flow;
pub use logs::logs;
pub use man::man;
pub use nodes::{drain, nodes};
pub use owner::owner;
pub use pool::{pool, pool_run};
pub use priority::priority;
pub use queue::queue;
pub use results::{result, results};
pub use retry::retry;
pub use run::run;
pub use serve::serve;
pub use service::service;
pub use session::{exec, session, session_exec, session_host};
pub use status::status;
pub use submit::submit;
pub use top::top;
pub use wait::wait;
pub use watch::watch;
pub use web::web;

/// A mistake in what the user typed (exit code 2).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct UsageError(pub String);

/// The data dir named by `--data-dir`, else the platform's.
fn data_dir(cli: &Cli) -> anyhow::Result<PathBuf> {
    match &cli.data_dir {
        Some(dir) => Ok(dir.clone()),
        None => default_data_dir(),
    }
}

/// The data dir a client reads (the node's address, its token, drover.toml). With `--server`
/// none is needed: a job started with a clean environment has `DROVER_SERVER` but no `HOME`.
fn client_data_dir(cli: &Cli) -> anyhow::Result<Option<PathBuf>> {
    match (data_dir(cli), &cli.server) {
        (Ok(dir), _) => Ok(Some(dir)),
        (Err(_), Some(_)) => Ok(None),
        (Err(err), None) => Err(err),
    }
}

/// The settings file in the data dir (drover.toml), if there is one: the CLI reads its token
/// and `[submit]` table, as the node reads the rest.
fn settings(cli: &Cli) -> anyhow::Result<Option<crate::config::FileConfig>> {
    let Some(dir) = client_data_dir(cli)? else {
        return Ok(None);
    };
    match crate::config::locate(None, &dir) {
        Some(path) => Ok(Some(crate::config::load(&path)?)),
        None => Ok(None),
    }
}

/// A client of the node the flags and the data dir name, with its token.
fn client(cli: &Cli) -> anyhow::Result<Client> {
    let file = settings(cli)?;
    let token = crate::config::token(cli.token_file.as_deref(), file.as_ref())?;
    let ca_file = crate::config::ca_file(cli.ca_file.as_deref(), file.as_ref());
    Client::locate(
        cli.server.as_deref(),
        client_data_dir(cli)?.as_deref(),
        token,
        ca_file.as_deref(),
    )
}

use refs::{resolve, resolve_one};

/// Prints per-job results of a change (`retry`, `dlq dismiss`); exit 4 if any job was missing
/// or in a state the change does not apply to.
fn report_changes(cli: &Cli, answer: &drover_api::Changes, done: &str) -> anyhow::Result<u8> {
    use drover_api::Change;
    let mut code = exit::OK;
    for result in &answer.results {
        let id = result.id;
        match result.change {
            Change::Done { .. } if !cli.json => println!("{id}: {done}"),
            Change::Done { .. } => {}
            Change::NotApplicable { state } => {
                eprintln!("drover: {id}: not possible while it is {state}");
                code = exit::NODE;
            }
            Change::NotFound => {
                eprintln!("drover: {id}: no such job");
                code = exit::NODE;
            }
        }
    }
    if cli.json {
        crate::output::json(answer)?;
    }
    Ok(code)
}

/// Sets up logging on stderr for a process that runs for long (`serve`, `owner`): `DROVER_LOG`
/// filters (default `info`), and colours appear only on a terminal, so that a log file or the
/// journal gets plain text.
fn init_logging(json: bool) {
    use std::io::IsTerminal;
    let filter = tracing_subscriber::EnvFilter::try_from_env("DROVER_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr);
    if json {
        builder.json().init();
    } else {
        builder.init();
    }
}
