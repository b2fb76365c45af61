//! The owner process, `drover owner`: holds one attempt at a time for a node, and goes on
//! holding it when the node goes away.
//!
//! It is started by a node with one end of a socket pair as its standard input (its first
//! connection) and listens on `DIR/PID.sock` for the nodes that come after. The newest connection
//! is the node; an older one is dropped when a newer one arrives. Inside, the attempt runs under
//! the same [`Supervisor`] the tests drive directly: this module only carries messages between
//! the socket and it, keeps the outcome until the node has recorded it, and fences.
//!
//! SIGTERM to an owner stops its job through the kill ladder (reason `node_shutdown`) and, the
//! outcome kept, it exits: what a service manager stopping everything expects.
//!
//! What it does when no node is connected:
//! - a job that runs goes on (timeout, stall and checkpoint included; with a lease, the fence
//!   falls when the last renewal runs out);
//! - a child still at the gate is aborted (the node that would have released it is gone);
//! - an outcome is made durable on disk, and the owner exits;
//! - an idle owner exits.

use std::io;
use std::os::fd::{FromRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use drover_core::AttemptRef;
use tokio::io::BufReader;
use tokio::net::unix::OwnedWriteHalf;
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::mpsc;
use tokio::time::{Instant, sleep_until};

use super::protocol::{self, FromOwner, Hello, Holding, PROTOCOL, Phase, ToOwner};
use super::{OutcomeFile, socket_path, write_outcome};
use crate::contain::{Containment, ContainmentSpec};
use crate::{Command, Report, StopReason, Supervisor, SupervisorHandle};

/// How long an idle owner waits for its next attempt before it exits.
const IDLE_EXIT: Duration = Duration::from_secs(60);

/// How often an owner with no node tries again to write an outcome the disk refused.
const PERSIST_RETRY: Duration = Duration::from_secs(1);

/// What `drover owner` is told on its command line.
#[derive(Debug, Clone)]
pub struct OwnerArgs {
    /// The owners directory (`DATA_DIR/owners`).
    pub dir: PathBuf,
    /// The containment backend the node chose, with its paths.
    pub containment: ContainmentSpec,
}

/// Why an owner could not run.
#[derive(Debug, thiserror::Error)]
pub enum OwnerError {
    /// Standard input is not the socket a node hands its owners.
    #[error("drover owner is started by a node, with a socket as its standard input: {0}")]
    NoNode(io::Error),
    /// The socket to listen on could not be made.
    #[error("cannot listen on {path}: {source}")]
    Listen {
        /// The socket's path.
        path: PathBuf,
        /// The OS error.
        source: io::Error,
    },
    /// The runtime could not start.
    #[error("cannot start the owner's runtime: {0}")]
    Runtime(io::Error),
}

/// Runs an owner until it has nothing left to hold. Call it from `main`, before any thread
/// exists: it leaves the node's session first.
pub fn run(args: OwnerArgs) -> Result<(), OwnerError> {
    // A session of its own: a terminal's Ctrl-C or hangup aimed at the node's process group does
    // not reach the owner (or, through it, the job).
    // SAFETY: setsid and signal take no pointers.
    unsafe {
        libc::setsid();
        libc::signal(libc::SIGHUP, libc::SIG_IGN);
        libc::signal(libc::SIGINT, libc::SIG_IGN);
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(OwnerError::Runtime)?;
    runtime.block_on(serve(args))
}

/// One connected node: where lines go, and which connection this is.
struct Link {
    generation: u64,
    out: OwnedWriteHalf,
}

/// What the owner holds.
struct Held {
    attempt: AttemptRef,
    phase: Phase,
    /// Its outcome is in a file on disk (no node heard it in time).
    persisted: bool,
    /// A write of its outcome failed already (said once, not at every retry).
    write_failed: bool,
    /// Its child runs once it is in its cell, without waiting for the node
    /// ([`crate::StartRequest::self_release`]).
    self_release: bool,
}

async fn serve(args: OwnerArgs) -> Result<(), OwnerError> {
    let pid = std::process::id();
    // SAFETY: fd 0 is the socket the node handed us; nothing else in this process owns it.
    let first = unsafe { OwnedFd::from_raw_fd(0) };
    let first = std::os::unix::net::UnixStream::from(first);
    first.set_nonblocking(true).map_err(OwnerError::NoNode)?;
    let first = UnixStream::from_std(first).map_err(OwnerError::NoNode)?;
    let path = socket_path(&args.dir, pid);
    let _ = std::fs::remove_file(&path);
    let listener = UnixListener::bind(&path).map_err(|source| OwnerError::Listen {
        path: path.clone(),
        source,
    })?;
    let containment = Arc::new(Containment::for_owner(args.containment.clone()));
    let (supervisor, mut reports) = Supervisor::start(Arc::clone(&containment));
    let mut owner = Owner {
        dir: args.dir.clone(),
        boot_id: super::boot_id(),
        held: None,
        link: None,
        generation: 0,
        fence_at: None,
        idle_since: Some(Instant::now()),
        terminating: false,
        supervisor,
        containment,
    };
    let (lines_tx, mut lines) = mpsc::unbounded_channel::<(u64, Option<ToOwner>)>();
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .map_err(OwnerError::Runtime)?;
    owner.attach(first, &lines_tx).await;
    let far = Instant::now() + Duration::from_secs(86400 * 365);
    loop {
        if owner.done() {
            break;
        }
        let fence_at = owner.fence_at;
        let idle_until = owner.idle_since.map(|since| since + IDLE_EXIT);
        let persist_retry = owner.persist_pending();
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => owner.attach(stream, &lines_tx).await,
                Err(err) => tracing::warn!(error = %err, "accept failed"),
            },
            Some((generation, line)) = lines.recv() => {
                if generation != owner.generation {
                    continue; // a line from a connection a newer node replaced
                }
                match line {
                    Some(message) => owner.on_message(message).await,
                    None => owner.on_disconnect(),
                }
            }
            Some(report) = reports.recv() => owner.on_report(report).await,
            _ = sleep_until(fence_at.unwrap_or(far)), if fence_at.is_some() => {
                owner.fence_at = None;
                if let Some(held) = &owner.held {
                    tracing::error!(attempt = %held.attempt, "the lease was not renewed in time; killing the job before it expires");
                    owner.command(Command::Stop(held.attempt, StopReason::LeaseLost));
                }
            }
            _ = tokio::time::sleep(PERSIST_RETRY), if persist_retry => owner.persist(),
            _ = sleep_until(idle_until.unwrap_or(far)), if idle_until.is_some() => {
                tracing::debug!("idle too long; exiting");
                break;
            }
            _ = terminate.recv() => {
                owner.terminating = true;
                match &owner.held {
                    None => break,
                    Some(held) if !matches!(held.phase, Phase::Ended(_)) => {
                        tracing::info!(attempt = %held.attempt, "SIGTERM: stopping the job");
                        owner.command(Command::Stop(held.attempt, StopReason::Shutdown));
                    }
                    // Over, but not recorded yet: onto disk before this owner goes.
                    Some(_) => owner.persist(),
                }
            }
        }
    }
    // The cells of this owner's attempts are gone by now; the subtree is the node's.
    crate::outdir::release();
    let _ = std::fs::remove_file(&path);
    Ok(())
}

struct Owner {
    dir: PathBuf,
    boot_id: Option<String>,
    held: Option<Held>,
    link: Option<Link>,
    generation: u64,
    fence_at: Option<Instant>,
    idle_since: Option<Instant>,
    /// SIGTERM came: exit once the job is stopped and its outcome kept.
    terminating: bool,
    supervisor: SupervisorHandle,
    containment: Arc<Containment>,
}

impl Owner {
    /// Whether there is nothing left to do: no node and nothing held, or an outcome made durable
    /// that no node is there to collect.
    ///
    /// An outcome that could not be written (a full disk) keeps the owner alive: it is then
    /// held only here, and the next node collects it from this owner's hello.
    fn done(&self) -> bool {
        if !self.terminating && self.link.is_some() {
            return false;
        }
        match &self.held {
            None => true,
            Some(held) => matches!(held.phase, Phase::Ended(_)) && held.persisted,
        }
    }

    /// Whether an ended attempt's outcome still has to reach the disk: no node is there to
    /// hear it (or this owner is going), and an earlier write failed.
    fn persist_pending(&self) -> bool {
        (self.link.is_none() || self.terminating)
            && self
                .held
                .as_ref()
                .is_some_and(|h| matches!(h.phase, Phase::Ended(_)) && !h.persisted)
    }

    fn hello(&self) -> Hello {
        Hello {
            protocol: PROTOCOL,
            version: env!("CARGO_PKG_VERSION").to_string(),
            pid: std::process::id(),
            boot_id: self.boot_id.clone(),
            holding: self.held.as_ref().map(|h| Holding {
                attempt: h.attempt,
                phase: h.phase.clone(),
            }),
        }
    }

    /// Makes `stream` the node's connection (dropping an older one) and greets it.
    async fn attach(
        &mut self,
        stream: UnixStream,
        lines: &mpsc::UnboundedSender<(u64, Option<ToOwner>)>,
    ) {
        self.generation += 1;
        let generation = self.generation;
        let (read, out) = stream.into_split();
        self.link = Some(Link { generation, out });
        let hello = FromOwner::Hello(self.hello());
        self.send(&hello).await;
        let lines = lines.clone();
        tokio::spawn(async move {
            let mut input = BufReader::new(read);
            let mut buf = String::new();
            loop {
                match protocol::read_line(&mut input, &mut buf).await {
                    Ok(Some(())) => match serde_json::from_str::<ToOwner>(&buf) {
                        Ok(message) => {
                            if lines.send((generation, Some(message))).is_err() {
                                return;
                            }
                        }
                        Err(err) => {
                            tracing::warn!(error = %err, "skipping a message this owner cannot read")
                        }
                    },
                    Ok(None) | Err(_) => {
                        let _ = lines.send((generation, None));
                        return;
                    }
                }
            }
        });
    }

    /// Sends a line to the node, if one is connected; a failed write drops the connection.
    async fn send(&mut self, message: &FromOwner) {
        let Some(link) = self.link.as_mut() else {
            return;
        };
        if let Err(err) = protocol::send(&mut link.out, message).await {
            tracing::debug!(generation = link.generation, error = %err, "the node's connection broke");
            self.on_disconnect();
        }
    }

    fn command(&self, command: Command) {
        // The supervisor lives as long as this owner; a send cannot fail before the end.
        let _ = self.supervisor.send(command);
    }

    fn holds(&self, attempt: AttemptRef) -> bool {
        self.held.as_ref().is_some_and(|h| h.attempt == attempt)
    }

    async fn on_message(&mut self, message: ToOwner) {
        match message {
            ToOwner::Start(req) => {
                if let Some(held) = &self.held {
                    tracing::error!(held = %held.attempt, asked = %req.attempt, "asked to start an attempt while holding another; ignored");
                    return;
                }
                let attempt = req.attempt;
                self.held = Some(Held {
                    attempt,
                    phase: Phase::Starting,
                    persisted: false,
                    write_failed: false,
                    self_release: req.self_release,
                });
                self.idle_since = None;
                self.fence_at = req.fence_in.map(|d| Instant::now() + d);
                self.command(Command::Start(req));
            }
            ToOwner::Release(attempt) => {
                if let Some(held) = self.held.as_mut().filter(|h| h.attempt == attempt) {
                    if let Phase::AtGate { pid, proc_start } = held.phase {
                        held.phase = Phase::Running { pid, proc_start };
                        self.command(Command::Release(attempt));
                    }
                }
            }
            ToOwner::Abort(attempt, why) => {
                if self.holds(attempt) {
                    self.command(Command::Abort(attempt, why));
                }
            }
            ToOwner::Stop(attempt, why) => {
                if self.holds(attempt) {
                    self.command(Command::Stop(attempt, why));
                }
            }
            ToOwner::Lease { attempt, fence_in } => {
                let live = self
                    .held
                    .as_ref()
                    .is_some_and(|h| h.attempt == attempt && !matches!(h.phase, Phase::Ended(_)));
                if live {
                    self.fence_at = fence_in.map(|d| Instant::now() + d);
                }
            }
            ToOwner::Recorded(attempt) => {
                let ended = self
                    .held
                    .as_ref()
                    .is_some_and(|h| h.attempt == attempt && matches!(h.phase, Phase::Ended(_)));
                if ended {
                    if self.held.as_ref().is_some_and(|h| h.persisted) {
                        let _ = std::fs::remove_file(super::outcome_path(&self.dir, attempt));
                    }
                    // The outcome is on disk: the cell kept as the record of a self-released
                    // start may go.
                    self.command(Command::Ack(attempt));
                    self.held = None;
                    self.fence_at = None;
                    self.idle_since = Some(Instant::now());
                }
            }
            ToOwner::ReadMemory(attempt) => {
                let bytes = self
                    .holds(attempt)
                    .then(|| self.containment.memory_current(attempt))
                    .flatten();
                self.send(&FromOwner::Memory { attempt, bytes }).await;
            }
            ToOwner::Exit => {
                if self.held.is_none() {
                    self.link = None;
                }
            }
        }
    }

    /// The node went away (crashed, stopped, or replaced by a newer connection's node).
    fn on_disconnect(&mut self) {
        self.link = None;
        let Some(held) = &self.held else {
            return;
        };
        match held.phase {
            // Released by this owner once it is in its cell: it goes on, and the next node
            // takes it over (its cell is the record of the start).
            Phase::Starting if held.self_release => {
                tracing::info!(attempt = %held.attempt, "the node went away while the job started; the job goes on");
            }
            // Nobody will release it, and it never ran: abort (the next node gives it back).
            Phase::Starting | Phase::AtGate { .. } => {
                tracing::info!(attempt = %held.attempt, "the node went away before releasing the job; aborting it");
                self.command(Command::Abort(held.attempt, StopReason::Shutdown));
            }
            Phase::Running { .. } => {
                tracing::info!(attempt = %held.attempt, "the node went away; the job goes on");
            }
            Phase::Ended(_) => self.persist(),
        }
    }

    /// Writes the held outcome to disk durably (temp file, fsync, rename, fsync of the
    /// directory), for the next node to collect: no node heard it, and this owner is about to
    /// let go. While a node is connected the outcome lives here until the node says it is
    /// recorded: its store then holds it durably, and the file would only cost the disk.
    fn persist(&mut self) {
        let Some(held) = self.held.as_mut() else {
            return;
        };
        let Phase::Ended(outcome) = &held.phase else {
            return;
        };
        if held.persisted {
            return;
        }
        let file = OutcomeFile {
            protocol: PROTOCOL,
            attempt: held.attempt,
            outcome: outcome.clone(),
            boot_id: self.boot_id.clone(),
        };
        match write_outcome(&self.dir, &file, true) {
            Ok(()) => {
                if held.write_failed {
                    tracing::info!(attempt = %held.attempt, "the outcome is on disk at last");
                }
                held.persisted = true;
                // On disk in the file now, which the next node reads: the cell kept as the
                // record of a self-released start may go.
                let attempt = held.attempt;
                self.command(Command::Ack(attempt));
            }
            // Kept in memory; tried again every PERSIST_RETRY while no node listens.
            Err(err) if !held.write_failed => {
                held.write_failed = true;
                tracing::error!(attempt = %held.attempt, error = %err, "cannot write the outcome to disk yet; this owner keeps it until a node collects it or the write succeeds");
            }
            Err(err) => {
                tracing::debug!(attempt = %held.attempt, error = %err, "the outcome still cannot be written");
            }
        }
    }

    async fn on_report(&mut self, report: Report) {
        match report {
            Report::Spawned {
                attempt,
                pid,
                proc_start,
            } => {
                let mut at_gate = false;
                if let Some(held) = self.held.as_mut().filter(|h| h.attempt == attempt) {
                    held.phase = if held.self_release {
                        Phase::Running { pid, proc_start }
                    } else {
                        Phase::AtGate { pid, proc_start }
                    };
                    at_gate = !held.self_release;
                }
                if self.link.is_none() && at_gate {
                    self.command(Command::Abort(attempt, StopReason::Shutdown));
                    return;
                }
                self.send(&FromOwner::Spawned {
                    attempt,
                    pid,
                    proc_start,
                })
                .await;
            }
            Report::Exited { attempt, outcome } => {
                self.fence_at = None;
                if let Some(held) = self.held.as_mut().filter(|h| h.attempt == attempt) {
                    held.phase = Phase::Ended(outcome.clone());
                }
                if self.link.is_none() || self.terminating {
                    self.persist();
                }
                // A send that fails drops the link, which persists the outcome.
                self.send(&FromOwner::Exited { attempt, outcome }).await;
            }
            // A supervisor sends only the two above.
            Report::OwnerDied { .. } | Report::Memory { .. } | Report::Cleaned { .. } => {}
        }
    }
}

/// The owners directory a node keeps under its data dir, created private.
pub fn make_dir(dir: &Path) -> io::Result<()> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
}
