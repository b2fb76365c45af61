//! A drover node: it owns a data dir, a store, a supervisor and the HTTP API, and runs the loop
//! that moves jobs from the store to the supervisor and back.
//!
//! [`serve`] is the whole life of a node:
//! 1. open and lock the data dir (mode 0700), load the stable node id;
//! 2. open the store and run crash [`recovery`] for attempts this node held before;
//! 3. bind the API (loopback unless told otherwise) and write `serve.json` for clients;
//! 4. run the `runner` loop until SIGTERM/SIGINT, then drain: no new claims, wait up to the
//!    shutdown timeout, stop what is left through the kill ladder and record it `lost`
//!    (`node_shutdown`), so its retry policy applies.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use drover_core::Limits;
use drover_exec::Supervisor;
use drover_store::{SqliteStore, Store, StoreError};
use tokio::net::TcpListener;
use tokio::sync::watch;

pub mod api;
pub mod datadir;
pub mod recovery;
mod runner;

pub use datadir::{DataDir, DataDirError, ServeInfo, read_serve_info};
pub use runner::to_attempt_outcome;

/// How a node is set up. Every field has a `drover serve` flag.
#[derive(Debug, Clone)]
pub struct NodeConfig {
    /// Where the database, logs and address file live.
    pub data_dir: PathBuf,
    /// Where the API listens.
    pub listen: SocketAddr,
    /// Concurrent attempts; the CPU count when `None`.
    pub slots: Option<usize>,
    /// How long shutdown waits for running jobs before stopping them.
    pub shutdown_timeout: Duration,
    /// Attempt lease length.
    pub lease: Duration,
    /// Bytes kept per output stream per attempt.
    pub log_limit: u64,
}

impl NodeConfig {
    /// Defaults for everything but the data dir.
    pub fn new(data_dir: PathBuf) -> Self {
        Self {
            data_dir,
            listen: SocketAddr::from(([127, 0, 0, 1], DEFAULT_PORT)),
            slots: None,
            shutdown_timeout: Duration::from_secs(30),
            lease: Duration::from_secs(30),
            log_limit: 256 * 1024 * 1024,
        }
    }
}

/// The port a node listens on unless told otherwise.
pub const DEFAULT_PORT: u16 = 7878;

/// Why a node could not run.
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    /// The data dir is unusable or taken.
    #[error(transparent)]
    DataDir(#[from] DataDirError),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The API could not listen.
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        /// The address.
        addr: SocketAddr,
        /// The OS error.
        source: std::io::Error,
    },
    /// Signal handlers could not be installed.
    #[error("cannot install signal handlers: {0}")]
    Signals(std::io::Error),
}

/// Runs a node until SIGTERM or SIGINT, then drains and returns.
pub async fn serve(config: NodeConfig) -> Result<(), NodeError> {
    let data = Arc::new(DataDir::open(&config.data_dir)?);
    let node = data.node_id()?;
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open(data.database())?);

    let recovered = recovery::recover(&store, &node).await?;
    if recovered.attempts > 0 {
        tracing::warn!(
            attempts = recovered.attempts,
            groups_stopped = recovered.groups_stopped,
            "recovered attempts left running by a previous run of this node"
        );
    }

    let listener = TcpListener::bind(config.listen)
        .await
        .map_err(|source| NodeError::Listen {
            addr: config.listen,
            source,
        })?;
    let addr = listener.local_addr().map_err(|source| NodeError::Listen {
        addr: config.listen,
        source,
    })?;
    if !addr.ip().is_loopback() {
        tracing::warn!(%addr, "the API listens beyond loopback and has no authentication yet; anyone who can reach it can run programs as this user");
    }
    let slots = config
        .slots
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
        .max(1);

    let (shutdown_tx, shutdown_rx) = watch::channel(0u32);
    spawn_signal_watcher(shutdown_tx)?;

    let app = api::router(api::ApiState {
        store: Arc::clone(&store),
        data_root: data.root().to_path_buf(),
        limits: Limits::default(),
        node: node.clone(),
    });
    let (server_stop_tx, mut server_stop_rx) = watch::channel(false);
    let server = tokio::spawn(async move {
        axum::serve(listener, app)
            .with_graceful_shutdown(async move {
                let _ = server_stop_rx.wait_for(|stop| *stop).await;
            })
            .await
    });
    data.write_serve_info(&ServeInfo {
        url: format!("http://{addr}"),
        pid: std::process::id(),
        node: node.clone(),
    })?;
    tracing::info!(%addr, %node, slots, data_dir = %data.root().display(), "drover node serving");

    let (supervisor, reports) = Supervisor::start();
    let (runner, internal) = runner::Runner::new(
        runner::RunnerConfig {
            node,
            slots,
            lease: config.lease,
            shutdown_timeout: config.shutdown_timeout,
            log_limit: config.log_limit,
        },
        Arc::clone(&store),
        Arc::clone(&data),
        supervisor,
    );
    runner.run(internal, reports, shutdown_rx).await;

    data.remove_serve_info();
    let _ = server_stop_tx.send(true);
    match server.await {
        Ok(Ok(())) => {}
        Ok(Err(err)) => tracing::warn!(error = %err, "API server ended with an error"),
        Err(err) => tracing::warn!(error = %err, "API server task failed"),
    }
    tracing::info!("drover node stopped");
    Ok(())
}

/// Counts SIGTERM/SIGINT into `tx`: the first starts a drain, the second stops jobs at once.
fn spawn_signal_watcher(tx: watch::Sender<u32>) -> Result<(), NodeError> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).map_err(NodeError::Signals)?;
    let mut int = signal(SignalKind::interrupt()).map_err(NodeError::Signals)?;
    tokio::spawn(async move {
        loop {
            tokio::select! {
                _ = term.recv() => {}
                _ = int.recv() => {}
            }
            tx.send_modify(|count| *count += 1);
        }
    });
    Ok(())
}
