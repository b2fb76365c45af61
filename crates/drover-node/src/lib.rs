//! A drover node: it owns a data dir, a store, the job owners' executor and the HTTP API, and
//! runs the loop that moves jobs from the store to their owners and back.
//!
//! [`serve`] is the whole life of a node:
//! 1. open and lock the data dir (mode 0700), load the stable node id and the local token;
//! 2. open the store; start the executor, which re-attaches to the job owners an earlier run left
//!    (none after a reboot), and plan the take-over ([`recovery`]);
//! 3. bind the API (loopback unless told otherwise; every request needs a token, see [`auth`])
//!    and write `serve.json` for clients;
//! 4. run the `runner` loop until SIGTERM/SIGINT, then detach: no new claims, running jobs go on
//!    under their owners. With `--stop-jobs-on-exit`, drain instead: wait up to the shutdown
//!    timeout, stop what is left through the kill ladder and record it `lost` (`node_shutdown`).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use drover_core::{Cpus, Limits, Size};
use drover_exec::Containment;
pub use drover_exec::host::{Memory, Pressure, Pressures};
use drover_exec::owner::{Executor, ExecutorConfig};
use drover_store::{SqlStore, Store, StoreError};
use tokio::net::TcpListener;
use tokio::sync::watch;

pub mod api;
pub mod auth;
pub mod capacity;
pub mod datadir;
mod events;
pub mod heap;
mod lane;
pub mod membership;
pub mod metrics;
pub mod notify;
pub mod recovery;
mod remote;
mod runner;
pub mod tls;
pub mod usage;

pub use capacity::Capacity;
pub use datadir::{DataDir, DataDirError, ServeInfo, read_serve_info};
pub use drover_exec::owner::process::{OwnerArgs, run as run_owner};
/// The processes a session is made of, which the binary runs when a node asks it to
/// (`drover session-host`, `drover session-exec`).
pub use drover_exec::session;
pub use drover_exec::{BackendChoice, BackendKind};
pub use remote::Peers;
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
    /// Attempt lease length; renewed every sixth of it. `drover serve` makes it the node TTL
    /// unless told otherwise, and so does [`NodeConfig::new`].
    pub lease: Duration,
    /// Bytes kept per output stream per attempt.
    pub log_limit: u64,
    /// Memory admission may hand out; the machine's less a reserve for the OS when `None`.
    pub memory: Option<Size>,
    /// CPUs admission may hand out; the machine's when `None`.
    pub cpus: Option<Cpus>,
    /// The containment backend.
    pub backend: BackendChoice,
    /// How long a job that does not fit may wait before the node holds back smaller ones for it.
    pub reserve_after: Duration,
    /// Per-queue defaults for fields a submitted spec leaves out.
    pub queue_defaults: api::QueueDefaults,
    /// How long events are kept for clients to resume from.
    pub events_retention: Duration,
    /// A PostgreSQL URL shared by many nodes; `None` keeps jobs in a SQLite file in the data dir.
    pub database: Option<String>,
    /// Between heartbeats into the nodes table (and reaper passes).
    pub heartbeat: Duration,
    /// Silence after which a node is declared dead (3 heartbeats by default).
    pub node_ttl: Duration,
    /// Labels of this node besides the detected `os` and `arch`.
    pub labels: drover_core::Labels,
    /// On SIGTERM/SIGINT, stop running jobs (after `shutdown_timeout`) instead of leaving them
    /// to their owners.
    pub stop_jobs_on_exit: bool,
    /// The token a cluster shares (other nodes and remote clients show it). Required when
    /// `listen` is not loopback. The node's local token (`DATA_DIR/token`) is accepted always.
    pub token: Option<String>,
    /// Host names the API answers to besides `localhost`, loopback addresses and, beyond
    /// loopback, the machine's own names and addresses (a reverse proxy's name, say).
    pub allow_hosts: Vec<String>,
    /// Notices for every job and group that ends (`[notify]`), and how long any notifier may
    /// take.
    pub notify: notify::NotifyConfig,
    /// Start even if the data dir's SQLite store is missing or empty although a node ran there
    /// (`serve --init`): an empty queue on purpose.
    pub init: bool,
    /// Serve the API over HTTPS with this certificate and key (`--tls-cert`, `--tls-key`).
    pub tls: Option<tls::TlsFiles>,
    /// The certificates trusted when this node reads from another node over HTTPS
    /// (`--ca-file`); the public web PKI's when `None`.
    pub ca_file: Option<PathBuf>,
    /// How often running attempts' memory and CPU are sampled for their usage series.
    pub sample_interval: Duration,
}

impl NodeConfig {
    /// Defaults for everything but the data dir.
    pub fn new(data_dir: PathBuf) -> Self {
        Self {
            data_dir,
            listen: SocketAddr::from(([127, 0, 0, 1], DEFAULT_PORT)),
            slots: None,
            shutdown_timeout: Duration::from_secs(30),
            lease: Duration::from_secs(15),
            log_limit: 256 * 1024 * 1024,
            memory: None,
            cpus: None,
            backend: BackendChoice::Auto,
            reserve_after: DEFAULT_RESERVE_AFTER,
            queue_defaults: api::QueueDefaults::new(),
            events_retention: Duration::from_secs(7 * 24 * 3600),
            database: None,
            heartbeat: Duration::from_secs(5),
            node_ttl: Duration::from_secs(15),
            labels: drover_core::Labels::new(),
            token: None,
            allow_hosts: Vec::new(),
            stop_jobs_on_exit: false,
            notify: notify::NotifyConfig::default(),
            init: false,
            tls: None,
            ca_file: None,
            sample_interval: usage::DEFAULT_INTERVAL,
        }
    }
}

/// Most jobs a node runs at once.
pub const MAX_SLOTS: usize = 4096;
/// The shortest heartbeat: more often would spend the database on nothing.
pub const MIN_HEARTBEAT: Duration = Duration::from_millis(100);

/// The shortest sampling interval: each round reads every running attempt's cell and writes
/// its series.
pub const MIN_SAMPLE_INTERVAL: Duration = Duration::from_millis(200);

/// The longest sampling interval.
pub const MAX_SAMPLE_INTERVAL: Duration = Duration::from_secs(3600);
/// The shortest shared token: anything shorter can be guessed.
pub const MIN_TOKEN_LEN: usize = 16;

impl NodeConfig {
    /// The one set of rules for a node's settings, whether they came from flags, drover.toml
    /// or code: `drover serve` refuses what breaks one, naming the setting as drover.toml
    /// spells it, instead of correcting it behind the user's back.
    pub fn check(&self) -> Result<(), ConfigError> {
        let bad = |key: &'static str, message: String| Err(ConfigError { key, message });
        if let Some(slots) = self.slots {
            if !(1..=MAX_SLOTS).contains(&slots) {
                return bad("slots", format!("is {slots}; it must be 1 to {MAX_SLOTS}"));
            }
        }
        if self.heartbeat < MIN_HEARTBEAT {
            return bad(
                "heartbeat",
                format!(
                    "is {}; it must be at least {}",
                    drover_core::HumanDuration(self.heartbeat),
                    drover_core::HumanDuration(MIN_HEARTBEAT)
                ),
            );
        }
        if !(MIN_SAMPLE_INTERVAL..=MAX_SAMPLE_INTERVAL).contains(&self.sample_interval) {
            return bad(
                "sample_interval",
                format!(
                    "is {}; it must be {} to {}",
                    drover_core::HumanDuration(self.sample_interval),
                    drover_core::HumanDuration(MIN_SAMPLE_INTERVAL),
                    drover_core::HumanDuration(MAX_SAMPLE_INTERVAL)
                ),
            );
        }
        for (key, value) in [("node_ttl", self.node_ttl), ("lease", self.lease)] {
            if value < self.heartbeat * 2 {
                return bad(
                    key,
                    format!(
                        "is {}; it must be at least two heartbeats ({}), or one late heartbeat would cost the node its jobs",
                        drover_core::HumanDuration(value),
                        drover_core::HumanDuration(self.heartbeat * 2)
                    ),
                );
            }
        }
        if let Some(token) = &self.token {
            auth::check_token(token).map_err(|message| ConfigError {
                key: "token",
                message,
            })?;
        }
        drover_core::node::check_labels(&self.labels).map_err(|message| ConfigError {
            key: "labels",
            message,
        })?;
        Ok(())
    }
}

/// A setting [`NodeConfig::check`] refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{key} {message}")]
pub struct ConfigError {
    /// The setting, as drover.toml's `[serve]` table names it (its flag is `--` and the same
    /// words with `-`).
    pub key: &'static str,
    /// What is wrong with it.
    pub message: String,
}

/// Variables of the node's environment that hold its secrets: jobs never inherit them (a job
/// that prints its environment must not leak the token or a database password into its log).
pub const NODE_SECRETS: [&str; 3] = ["DROVER_TOKEN", "DROVER_TOKEN_FILE", "DROVER_DATABASE_URL"];

/// How long a large job waits for room before the node reserves for it by default.
pub const DEFAULT_RESERVE_AFTER: Duration = Duration::from_secs(60);

pub use drover_api::NodeReport;

/// `report` with the figures that change (the machine's memory and pressure) read again now.
pub fn refreshed(report: &NodeReport) -> NodeReport {
    NodeReport {
        host_memory: drover_exec::host::memory(),
        pressure: drover_exec::host::pressures(),
        ..report.clone()
    }
}

/// What `drover doctor` reports: the backend `serve` would choose here with these settings, and
/// the capacity it would offer.
pub fn doctor(
    backend: BackendChoice,
    memory: Option<Size>,
    cpus: Option<Cpus>,
    slots: Option<usize>,
) -> Result<NodeReport, drover_exec::contain::ContainError> {
    let scope = format!("drover.doctor-{}", std::process::id());
    let containment = Containment::detect(backend, &scope)?;
    let report = containment.report();
    containment.close();
    Ok(refreshed(&NodeReport {
        node: drover_core::NodeId("(doctor)".into()),
        version: env!("CARGO_PKG_VERSION").into(),
        capacity: capacity::resolve(memory, cpus, slots),
        containment: report,
        host_memory: None,
        pressure: Pressures::default(),
    }))
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
    /// Job owners could not be set up.
    #[error("cannot set up job owners: {0}")]
    Owners(std::io::Error),
    /// Signal handlers could not be installed.
    #[error("cannot install signal handlers: {0}")]
    Signals(std::io::Error),
    /// The containment backend asked for cannot be used.
    #[error(transparent)]
    Containment(#[from] drover_exec::contain::ContainError),
    /// A listener beyond loopback without a token would let anyone who reaches it run programs.
    #[error(
        "refusing to listen on {addr} without a token: anyone who can reach it could run programs as this user. Set DROVER_TOKEN, --token-file or `token_file` in drover.toml (or listen on 127.0.0.1)"
    )]
    NoToken {
        /// The address asked for.
        addr: SocketAddr,
    },
    /// A setting breaks a rule.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// A TLS certificate, key or CA file cannot be used.
    #[error(transparent)]
    Tls(#[from] tls::TlsError),
    /// The data dir's store is missing or empty although a node ran there: see
    /// [`DataDir::lost_store`].
    #[error("{0}")]
    LostStore(String),
}

/// Removes the node's cgroup tree when dropped, if it is empty ([`Containment::release`]).
struct ReleaseTree(Arc<Containment>);

impl Drop for ReleaseTree {
    fn drop(&mut self) {
        self.0.release();
    }
}

/// Runs a node until SIGTERM or SIGINT, then drains and returns.
pub async fn serve(config: NodeConfig) -> Result<(), NodeError> {
    config.check()?;
    // First: a port in use fails the start before anything is opened or created.
    let listener = TcpListener::bind(config.listen)
        .await
        .map_err(|source| NodeError::Listen {
            addr: config.listen,
            source,
        })?;
    if !config.listen.ip().is_loopback() && config.token.is_none() {
        return Err(NodeError::NoToken {
            addr: config.listen,
        });
    }
    // Read before anything is created: a wrong path fails the start with its name.
    let server_tls = config.tls.as_ref().map(tls::server_config).transpose()?;
    let peers = Peers::new(tls::client_config(config.ca_file.as_deref())?);
    let scheme = if server_tls.is_some() {
        "https"
    } else {
        "http"
    };
    if !config.listen.ip().is_loopback() && server_tls.is_none() {
        // Plain HTTP: the shared token and every job's spec (its environment too) cross the
        // network as they are. Said at every start, so nobody relies on it unknowingly.
        tracing::warn!(
            addr = %config.listen,
            "the API listens beyond loopback over plain HTTP: its token and the jobs' specs travel in clear; give it --tls-cert and --tls-key, or use it on a network you trust"
        );
    }
    let data = Arc::new(DataDir::open(&config.data_dir)?);
    if config.database.is_none() && !config.init {
        if let Some(why) = data.lost_store() {
            return Err(NodeError::LostStore(why));
        }
    }
    let node = data.node_id()?;
    data.ensure_reserve();
    let credentials = auth::Credentials::new(data.local_token()?, config.token.clone());
    let opened = match &config.database {
        Some(url) => SqlStore::postgres(url).await?,
        None => SqlStore::sqlite(data.database())?,
    };
    let location = opened.location().to_string();
    let store: Arc<dyn Store> = Arc::new(opened);

    let containment = Arc::new(Containment::detect(
        config.backend,
        &format!("drover.{}", node.0),
    )?);
    // However this function returns, an empty cgroup tree of this node does not outlive it.
    let _release = ReleaseTree(Arc::clone(&containment));
    containment.sweep_gone_nodes();
    let capacity = capacity::resolve(config.memory, config.cpus, config.slots);
    let slots = capacity.slots;

    // Jobs outlive their node: re-attach to the owners an earlier run left. After a reboot
    // their sockets are stale and none of their processes can be alive.
    let boot = drover_exec::owner::boot_id();
    let rebooted = matches!((data.last_boot_id(), &boot), (Some(last), Some(now)) if last != *now);
    if rebooted {
        tracing::warn!("the machine rebooted since this node last ran: what it held is lost");
    }
    let program = std::env::current_exe().map_err(NodeError::Owners)?;
    // The executor and the runner live on the job lane (see `lane`): the tasks they spawn,
    // and the owners' sockets, are polled there.
    let lane = lane::Lane::start().map_err(NodeError::Owners)?;
    let (executor, reports, found) = lane
        .run(Executor::start(
            ExecutorConfig {
                dir: data.owners_dir(),
                program: program.clone(),
                containment: containment.spec(),
                env_remove: NODE_SECRETS.iter().map(|s| s.to_string()).collect(),
                // Running attempts, plus as many whose outcome is on its way to the store.
                keep_idle: 2 * slots,
                reattach: !rebooted,
            },
            Arc::clone(&containment),
        ))
        .await
        .map_err(NodeError::Owners)?;
    // Owners release their children themselves where an attempt's cell records its start (see
    // `RunnerConfig::self_release`): cgroup cells, and a store only this node recovers from.
    let self_release = config.database.is_none() && containment.has_cells();
    let recovered = recovery::recover(
        &store,
        &node,
        found,
        rebooted,
        config.lease,
        self_release.then_some(containment.as_ref()),
    )
    .await?;
    if recovered.reattached + recovered.collected + recovered.orphaned + recovered.given_back > 0 {
        tracing::info!(
            reattached = recovered.reattached,
            collected = recovered.collected,
            orphaned = recovered.orphaned,
            given_back = recovered.given_back,
            "took over what this node held before it stopped"
        );
    }
    if let Some(boot) = &boot {
        data.write_boot_id(boot)?;
    }
    // Cells no owner holds are what a crash left: everything in them goes.
    let _ = executor.send(drover_exec::Command::Sweep {
        keep: recovered.owned(),
    });

    prune_events(store.as_ref(), config.events_retention).await;
    let addr = listener.local_addr().map_err(|source| NodeError::Listen {
        addr: config.listen,
        source,
    })?;
    let info = Arc::new(NodeReport {
        node: node.clone(),
        version: env!("CARGO_PKG_VERSION").into(),
        capacity,
        containment: containment.report(),
        host_memory: None,
        pressure: Pressures::default(),
    });
    let passed_over = runner::PassedOver::default();
    let metrics = Arc::new(metrics::Metrics::new());
    metrics
        .capacity_memory
        .set(i64::try_from(capacity.memory_bytes).unwrap_or(i64::MAX));
    metrics
        .capacity_cpus
        .set(f64::from(capacity.cpus.millis()) / 1000.0);
    let wake = Arc::new(tokio::sync::Notify::new());
    let member = drover_core::NodeInfo {
        id: node.clone(),
        hostname: datadir::hostname(),
        labels: node_labels(&node, &config.labels),
        url: Some(advertised_url(scheme, addr)),
        capacity: capacity.resources(),
        slots: u32::try_from(slots).unwrap_or(u32::MAX),
        started_at: chrono::Utc::now(),
    };
    let state = membership::join(store.as_ref(), &member).await?;
    let (load_tx, load_rx) = watch::channel(drover_core::NodeLoad::default());

    let (shutdown_tx, shutdown_rx) = watch::channel(0u32);
    spawn_signal_watcher(shutdown_tx)?;

    let (server_stop_tx, mut server_stop_rx) = watch::channel(false);
    let app = api::router(api::ApiState {
        stopping: server_stop_rx.clone(),
        store: Arc::clone(&store),
        data_root: data.root().to_path_buf(),
        limits: Limits {
            max_memory: Some(Size(capacity.memory_bytes)),
            max_cpus: Some(capacity.cpus),
            max_nofile: drover_exec::host::max_nofile(),
            ..Limits::default()
        },
        node: node.clone(),
        info: Arc::clone(&info),
        passed_over: Arc::clone(&passed_over),
        wake: Arc::clone(&wake),
        queue_defaults: Arc::new(config.queue_defaults.clone()),
        metrics: Arc::clone(&metrics),
        access: Arc::new(auth::AccessPolicy::new(
            credentials,
            addr,
            &config.allow_hosts,
        )),
        peers,
    });
    let stopped = async move {
        let _ = server_stop_rx.wait_for(|stop| *stop).await;
    };
    let server = match server_tls {
        Some(tls) => {
            let listener =
                tls::TlsListener::new(listener, tls).map_err(|source| NodeError::Listen {
                    addr: config.listen,
                    source,
                })?;
            tokio::spawn(serve_api(listener, app, stopped))
        }
        None => tokio::spawn(serve_api(listener, app, stopped)),
    };
    data.write_serve_info(&ServeInfo {
        url: format!("{scheme}://{addr}"),
        pid: std::process::id(),
        node: node.clone(),
    })?;
    tracing::info!(%addr, %node, capacity = %capacity.describe(), backend = %containment.kind(),
        data_dir = %data.root().display(), store = %location, "drover node serving");
    tracing::info!("the web page needs a login: `drover web` prints its link");

    notify::spawn(Arc::clone(&store), config.notify.clone());
    usage::spawn(
        Arc::clone(&store),
        Arc::clone(&containment),
        node.clone(),
        config.sample_interval,
    );
    heap::spawn_trimmer();
    spawn_pruner(
        Arc::clone(&store),
        Arc::clone(&data),
        config.events_retention,
    );
    membership::spawn(
        Arc::clone(&store),
        member,
        membership::Timing {
            heartbeat: config.heartbeat,
            node_ttl: config.node_ttl,
            reap: config.database.is_some(),
        },
        load_rx,
        Arc::clone(&wake),
        state,
    );
    let (mut runner, internal) = runner::Runner::new(
        runner::RunnerConfig {
            program,
            node,
            slots,
            lease: config.lease,
            shutdown_timeout: config.shutdown_timeout,
            log_limit: config.log_limit,
            capacity: capacity.resources(),
            reserve_after: config.reserve_after,
            fence: config.database.is_some(),
            self_release,
            stop_jobs_on_exit: config.stop_jobs_on_exit,
            passed_over,
            wake,
            metrics,
            load: load_tx,
            server_url: local_url(addr),
        },
        Arc::clone(&store),
        Arc::clone(&data),
        executor.clone(),
    );
    let adopted = recovered.adopted;
    let detaching = executor.clone();
    lane.run(async move {
        runner.adopt(adopted);
        runner.run(internal, reports, shutdown_rx).await;
        // Running jobs go on under their owners (the executor says how many in the log).
        detaching.detach().await;
    })
    .await;
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

/// The node's labels: the detected `os` and `arch`, its id as `node` (which pins a session's
/// execs to the node of its host), then the configured ones (which win).
pub fn node_labels(
    node: &drover_core::NodeId,
    configured: &drover_core::Labels,
) -> drover_core::Labels {
    let mut labels = drover_core::Labels::new();
    labels.insert("node".into(), node.0.clone());
    labels.insert("os".into(), std::env::consts::OS.into());
    labels.insert("arch".into(), std::env::consts::ARCH.into());
    labels.extend(configured.clone());
    labels
}

/// Where other nodes reach this one's API: the listen address, or the host name when it listens
/// on every interface.
/// The node's API as a process on this machine reaches it: a wildcard address becomes loopback.
fn local_url(addr: SocketAddr) -> String {
    let ip = match addr.ip() {
        std::net::IpAddr::V4(ip) if ip.is_unspecified() => std::net::Ipv4Addr::LOCALHOST.into(),
        std::net::IpAddr::V6(ip) if ip.is_unspecified() => std::net::Ipv6Addr::LOCALHOST.into(),
        ip => ip,
    };
    format!("http://{}", SocketAddr::new(ip, addr.port()))
}

/// Serves `app` on `listener` (plain TCP or [`tls::TlsListener`]) until `stopped`.
async fn serve_api<L>(
    listener: L,
    app: axum::Router,
    stopped: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()>
where
    L: axum::serve::Listener,
    L::Addr: std::fmt::Debug,
{
    axum::serve(listener, app)
        .with_graceful_shutdown(stopped)
        .await
}

fn advertised_url(scheme: &str, addr: SocketAddr) -> String {
    if addr.ip().is_unspecified() {
        format!("{scheme}://{}:{}", datadir::hostname(), addr.port())
    } else {
        format!("{scheme}://{addr}")
    }
}

/// Deletes events older than `retention`.
async fn prune_events(store: &dyn Store, retention: Duration) {
    let Ok(retention) = chrono::Duration::from_std(retention) else {
        return; // a retention too long to express keeps everything
    };
    let before = chrono::Utc::now() - retention;
    match store.prune_events(before).await {
        Ok(0) => {}
        Ok(gone) => tracing::info!(gone, "pruned events past their retention"),
        Err(err) => tracing::warn!(error = %err, "cannot prune events"),
    }
}

/// Prunes events and old checkpoints hourly (a housekeeping timer, not a poll: nothing waits on
/// it). The first pruning of events happens before the API serves, so no client sees events
/// about to go.
fn spawn_pruner(store: Arc<dyn Store>, data: Arc<DataDir>, retention: Duration) {
    tokio::spawn(async move {
        let hour = Duration::from_secs(3600);
        let mut every = tokio::time::interval_at(tokio::time::Instant::now() + hour, hour);
        loop {
            prune_checkpoints(store.as_ref(), &data, retention).await;
            every.tick().await;
            prune_events(store.as_ref(), retention).await;
        }
    });
}

/// Removes the checkpoint directories of jobs that ended longer than `retention` ago (a job
/// that succeeded loses its directory at once), or that the store no longer has.
async fn prune_checkpoints(store: &dyn Store, data: &DataDir, retention: Duration) {
    let root = data.root().join("checkpoints");
    let Ok(entries) = std::fs::read_dir(&root) else {
        return;
    };
    let horizon = chrono::Duration::from_std(retention)
        .ok()
        .map(|r| chrono::Utc::now() - r);
    for entry in entries.flatten() {
        let Some(id) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<drover_core::JobId>().ok())
        else {
            continue;
        };
        let old = match store.get(id).await {
            Ok(None) => true,
            Ok(Some(job)) => {
                job.state.is_terminal()
                    && job
                        .finished_at
                        .zip(horizon)
                        .is_some_and(|(done, horizon)| done < horizon)
            }
            Err(_) => false,
        };
        if old {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
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
