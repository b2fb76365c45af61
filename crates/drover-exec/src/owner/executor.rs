//! The node's side of job owners: it starts owners, carries [`Command`]s to them and their
//! answers back as [`Report`]s, re-attaches to the owners an earlier run of the node left, and
//! cleans up after an owner that died.
//!
//! To the node it looks like the in-process supervisor it replaces: commands in, reports out.
//! An attempt's life (`Start`, `Release`, `Abort`, `Stop`) goes to the owner that holds it;
//! `Ack` lets the owner forget a recorded outcome and take the next attempt (owners are reused,
//! at most `keep_idle` wait idle); `Clean` and `Sweep` act on cells and process groups that no
//! owner holds any more.
//!
//! One actor task owns every connection: no locks, and the order of an owner's messages is the
//! order of its reports.

use std::collections::{HashMap, VecDeque};
use std::io;
use std::os::fd::OwnedFd;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use drover_core::AttemptRef;
use tokio::io::BufReader;
use tokio::net::UnixStream;
use tokio::sync::{mpsc, oneshot};

use super::protocol::{self, FromOwner, Hello, Phase, ToOwner};
use super::{OutcomeFile, outcome_path, read_outcome};
use crate::contain::{Containment, ContainmentSpec};
use crate::supervisor::SupervisorGone;
use crate::{Command, Ending, Outcome, Report};
use cleanup::clean;
use wire::{NoHello, Writer, read_hello};

/// How the node's owners are started and kept.
#[derive(Debug, Clone)]
pub struct ExecutorConfig {
    /// The owners directory (`DATA_DIR/owners`): sockets and outcome files.
    pub dir: PathBuf,
    /// The drover binary to run as `drover owner`.
    pub program: PathBuf,
    /// The node's containment, handed to every owner.
    pub containment: ContainmentSpec,
    /// Variables of the node's environment its owners (and so its jobs) must not inherit.
    pub env_remove: Vec<String>,
    /// Idle owners kept for the next attempts (the node's slots).
    pub keep_idle: usize,
    /// Talk to the owners an earlier run left. `false` after a reboot: their sockets are stale.
    pub reattach: bool,
}

/// What a node finds when it starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Found {
    /// A live owner, now connected; what it holds is in its hello.
    Owner(Hello),
    /// An outcome an owner left before it exited, with no node to hear it.
    Outcome(OutcomeFile),
    /// An owner this build cannot talk to (another protocol): left alone, never killed.
    Foreign {
        /// Its socket.
        socket: PathBuf,
        /// Its process id, from the socket's name (`<pid>.sock`).
        pid: Option<i32>,
        /// Why not.
        why: String,
    },
}

/// What a socket left in the owners directory answered.
enum Greeted {
    Owner(Box<Hello>, UnixStream),
    Foreign(String),
    Nobody,
}

/// How many times a socket whose owner gives no hello is tried before it is called foreign.
const GREET_TRIES: u32 = 3;

/// Connects to an owner's socket and reads its hello. An owner that is busy or closing at that
/// instant (a reset, or a hello cut short) is asked again after a pause before being taken for
/// one this build cannot talk to; one that says something else than a hello is foreign at once.
async fn greet(path: &std::path::Path) -> Greeted {
    let mut why = String::new();
    let started = Instant::now();
    for try_ in 0..GREET_TRIES {
        if try_ > 0 {
            if started.elapsed() >= wire::HELLO_TIMEOUT {
                break; // a silent peer: waited long enough
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let Ok(stream) = UnixStream::connect(path).await else {
            return Greeted::Nobody;
        };
        match read_hello(stream).await {
            Ok((hello, stream)) => return Greeted::Owner(Box::new(hello), stream),
            Err(NoHello::Foreign(err)) => return Greeted::Foreign(err),
            Err(NoHello::Broken(err)) => why = err,
        }
    }
    Greeted::Foreign(why)
}

/// Starts executors.
#[derive(Debug)]
pub struct Executor;

/// The node's end of the executor.
#[derive(Debug, Clone)]
pub struct ExecutorHandle {
    orders: mpsc::UnboundedSender<Order>,
}

enum Order {
    Command(Command),
    Detach(oneshot::Sender<usize>),
}

impl ExecutorHandle {
    /// Sends a command. Fails only if the executor is gone.
    pub fn send(&self, command: Command) -> Result<(), SupervisorGone> {
        self.orders
            .send(Order::Command(command))
            .map_err(|_| SupervisorGone)
    }

    /// Lets go of every owner: connections close, owners holding jobs go on, idle ones exit.
    /// With no job left running, the node's cgroup subtree is removed too. Returns how many jobs
    /// go on under their owners; the executor then stops.
    pub async fn detach(&self) -> usize {
        let (tx, rx) = oneshot::channel();
        if self.orders.send(Order::Detach(tx)).is_ok() {
            return rx.await.unwrap_or(0);
        }
        0
    }
}

impl Executor {
    /// Re-attaches to what an earlier run left in the owners directory and starts the executor
    /// on the current runtime. Reports arrive on the returned receiver.
    pub async fn start(
        config: ExecutorConfig,
        containment: Arc<Containment>,
    ) -> io::Result<(ExecutorHandle, mpsc::UnboundedReceiver<Report>, Vec<Found>)> {
        super::process::make_dir(&config.dir)?;
        let (orders_tx, orders) = mpsc::unbounded_channel();
        let (reports, report_rx) = mpsc::unbounded_channel();
        let (heard_tx, heard) = mpsc::unbounded_channel();
        let mut actor = Actor {
            config,
            containment,
            reports,
            owners: HashMap::new(),
            idle: VecDeque::new(),
            heard_tx,
            next_id: 0,
        };
        let found = actor.reattach().await;
        tokio::spawn(actor.run(orders, heard));
        Ok((ExecutorHandle { orders: orders_tx }, report_rx, found))
    }
}

/// What a connection's reader tells the actor (the rest of what owners say goes straight to
/// the node as reports).
enum Heard {
    /// The owner's hello named its version.
    Version(String),
    /// It reported this attempt's outcome.
    Ended(AttemptRef),
    /// The connection ended.
    Gone,
}

/// One owner's connection.
struct Conn {
    out: Arc<Writer>,
    reader: tokio::task::JoinHandle<()>,
    /// The attempt it holds.
    holding: Option<AttemptRef>,
    /// It reported that attempt's outcome.
    ended: bool,
    /// Its drover version: only owners of this build are reused.
    version: Option<String>,
}

struct Actor {
    config: ExecutorConfig,
    containment: Arc<Containment>,
    reports: mpsc::UnboundedSender<Report>,
    owners: HashMap<u64, Conn>,
    idle: VecDeque<u64>,
    heard_tx: mpsc::UnboundedSender<(u64, Heard)>,
    next_id: u64,
}

impl Actor {
    async fn run(
        mut self,
        mut orders: mpsc::UnboundedReceiver<Order>,
        mut heard: mpsc::UnboundedReceiver<(u64, Heard)>,
    ) {
        loop {
            tokio::select! {
                order = orders.recv() => match order {
                    Some(Order::Command(command)) => self.on_command(command),
                    Some(Order::Detach(done)) => {
                        let left = self.detach();
                        if left == 0 {
                            // Nothing runs any more: the subtree (and any cell a crash left) goes.
                            let containment = Arc::clone(&self.containment);
                            let _ = tokio::task::spawn_blocking(move || containment.close()).await;
                        }
                        let _ = done.send(left);
                        return;
                    }
                    // The node is gone without detaching (it crashed): as good as a detach.
                    None => {
                        let _ = self.detach();
                        return;
                    }
                },
                Some((id, heard)) = heard.recv() => match heard {
                    Heard::Version(version) => {
                        if let Some(conn) = self.owners.get_mut(&id) {
                            conn.version = Some(version);
                        }
                    }
                    Heard::Ended(attempt) => {
                        if let Some(conn) = self.owners.get_mut(&id).filter(|c| c.holding == Some(attempt)) {
                            conn.ended = true;
                        }
                    }
                    Heard::Gone => self.on_gone(id),
                },
            }
        }
    }

    /// Registers a connection: a [`Writer`] for what we send, a reader task for what it says.
    fn connect(&mut self, stream: UnixStream, hello: Option<&Hello>) -> u64 {
        self.next_id += 1;
        let id = self.next_id;
        let (read, write) = stream.into_split();
        let out = Writer::new(write);
        let heard = self.heard_tx.clone();
        let reports = self.reports.clone();
        let reader = tokio::spawn(async move {
            let mut input = BufReader::new(read);
            let mut buf = String::new();
            loop {
                match protocol::read_line(&mut input, &mut buf).await {
                    Ok(Some(())) => match serde_json::from_str::<FromOwner>(&buf) {
                        // Straight to the node: these are on every job's critical path, and a
                        // hop through the actor costs a wake-up each.
                        Ok(FromOwner::Spawned {
                            attempt,
                            pid,
                            proc_start,
                        }) => {
                            let _ = reports.send(Report::Spawned {
                                attempt,
                                pid,
                                proc_start,
                            });
                        }
                        Ok(FromOwner::Memory { attempt, bytes }) => {
                            let _ = reports.send(Report::Memory { attempt, bytes });
                        }
                        Ok(FromOwner::Exited { attempt, outcome }) => {
                            // The actor first, so that it knows the outcome came before any
                            // end of this connection it hears of.
                            let _ = heard.send((id, Heard::Ended(attempt)));
                            let _ = reports.send(Report::Exited { attempt, outcome });
                        }
                        Ok(FromOwner::Hello(hello)) => {
                            let _ = heard.send((id, Heard::Version(hello.version)));
                        }
                        Err(err) => {
                            tracing::warn!(error = %err, "skipping a message from an owner that this node cannot read");
                        }
                    },
                    Ok(None) | Err(_) => {
                        let _ = heard.send((id, Heard::Gone));
                        return;
                    }
                }
            }
        });
        let holding = hello.and_then(|h| h.holding.as_ref());
        self.owners.insert(
            id,
            Conn {
                out,
                reader,
                holding: holding.map(|h| h.attempt),
                ended: holding.is_some_and(|h| matches!(h.phase, Phase::Ended(_))),
                version: hello.map(|h| h.version.clone()),
            },
        );
        id
    }

    /// Starts a new owner on one end of a socket pair.
    fn spawn_owner(&mut self) -> io::Result<u64> {
        let (ours, theirs) = std::os::unix::net::UnixStream::pair()?;
        let spec = serde_json::to_string(&self.config.containment).map_err(io::Error::other)?;
        let mut command = tokio::process::Command::new(&self.config.program);
        command
            .arg("owner")
            .arg("--dir")
            .arg(&self.config.dir)
            .arg("--containment")
            .arg(spec)
            .stdin(Stdio::from(OwnedFd::from(theirs)))
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .kill_on_drop(false);
        for name in &self.config.env_remove {
            command.env_remove(name);
        }
        // Dropped at once: the owner outlives this node if need be, and tokio reaps it if not.
        let child = command.spawn()?;
        tracing::debug!(pid = ?child.id(), "started a job owner");
        drop(child);
        ours.set_nonblocking(true)?;
        let stream = UnixStream::from_std(ours)?;
        let id = self.connect(stream, None);
        if let Some(conn) = self.owners.get_mut(&id) {
            conn.version = Some(env!("CARGO_PKG_VERSION").to_string());
        }
        Ok(id)
    }

    fn holder_of(&self, attempt: AttemptRef) -> Option<u64> {
        self.owners
            .iter()
            .find(|(_, c)| c.holding == Some(attempt))
            .map(|(id, _)| *id)
    }

    fn tell(&self, attempt: AttemptRef, message: ToOwner) {
        if let Some(conn) = self.holder_of(attempt).and_then(|id| self.owners.get(&id)) {
            conn.out.send(&message);
        }
    }

    fn on_command(&mut self, command: Command) {
        match command {
            Command::Start(req) => {
                let attempt = req.attempt;
                let owner = match self.idle.pop_front() {
                    Some(id) if self.owners.contains_key(&id) => Ok(id),
                    _ => self.spawn_owner(),
                };
                match owner {
                    Ok(id) => {
                        if let Some(conn) = self.owners.get_mut(&id) {
                            conn.holding = Some(attempt);
                            conn.ended = false;
                            conn.out.send(&ToOwner::Start(req));
                        }
                    }
                    Err(err) => {
                        let outcome = Outcome::without_process(Ending::SpawnFailed(format!(
                            "cannot start the job's owner: {err}"
                        )));
                        let _ = self.reports.send(Report::Exited { attempt, outcome });
                    }
                }
            }
            Command::Release(attempt) => self.tell(attempt, ToOwner::Release(attempt)),
            Command::Abort(attempt, why) => self.tell(attempt, ToOwner::Abort(attempt, why)),
            Command::Stop(attempt, why) => self.tell(attempt, ToOwner::Stop(attempt, why)),
            Command::Ack(attempt) => self.on_ack(attempt),
            Command::Lease { attempts, fence_in } => {
                for attempt in attempts {
                    self.tell(attempt, ToOwner::Lease { attempt, fence_in });
                }
            }
            Command::ReadMemory(attempts) => {
                for attempt in attempts {
                    self.tell(attempt, ToOwner::ReadMemory(attempt));
                }
            }
            Command::Clean {
                attempt,
                pid,
                proc_start,
                grace,
            } => {
                let containment = Arc::clone(&self.containment);
                let reports = self.reports.clone();
                tokio::spawn(async move {
                    let (killed, survivors) =
                        clean(&containment, attempt, pid, proc_start, grace).await;
                    let _ = reports.send(Report::Cleaned {
                        attempt,
                        killed,
                        survivors,
                    });
                });
            }
            Command::Sweep { keep } => {
                let containment = Arc::clone(&self.containment);
                tokio::spawn(async move {
                    let swept =
                        tokio::task::spawn_blocking(move || containment.sweep_except(&keep)).await;
                    match swept {
                        Ok(0) => {}
                        Ok(cells) => {
                            tracing::warn!(cells, "removed attempt cgroups no owner holds");
                        }
                        Err(err) => {
                            tracing::error!(error = %err, "the sweep of leftover cgroups failed");
                        }
                    }
                });
            }
        }
    }

    /// The node recorded `attempt`: its owner forgets it and waits for the next, or exits.
    fn on_ack(&mut self, attempt: AttemptRef) {
        let Some(id) = self.holder_of(attempt) else {
            // Collected from a file its owner left: the file goes.
            let _ = std::fs::remove_file(outcome_path(&self.config.dir, attempt));
            return;
        };
        let ours = Some(env!("CARGO_PKG_VERSION"));
        let keep = self.idle.len() < self.config.keep_idle;
        if let Some(conn) = self.owners.get_mut(&id) {
            conn.out.send(&ToOwner::Recorded(attempt));
            conn.holding = None;
            conn.ended = false;
            if keep && conn.version.as_deref() == ours {
                self.idle.push_back(id);
            } else {
                conn.out.send(&ToOwner::Exit);
            }
        }
    }

    /// An owner's connection ended: it exited or was killed. One that held an attempt whose
    /// outcome it never reported may have left the outcome on disk; if not, the attempt's tree
    /// may run on unsupervised, and the node must clean up.
    fn on_gone(&mut self, id: u64) {
        self.idle.retain(|i| *i != id);
        let Some(conn) = self.owners.remove(&id) else {
            return;
        };
        conn.reader.abort();
        let Some(attempt) = conn.holding.filter(|_| !conn.ended) else {
            return;
        };
        match read_outcome(&outcome_path(&self.config.dir, attempt)) {
            Some(file) if file.attempt == attempt => {
                let _ = self.reports.send(Report::Exited {
                    attempt,
                    outcome: file.outcome,
                });
            }
            _ => {
                tracing::error!(%attempt, "the job's owner ended without reporting an outcome");
                let _ = self.reports.send(Report::OwnerDied { attempt });
            }
        }
    }

    fn detach(&mut self) -> usize {
        let holding = self.owners.values().filter(|c| c.holding.is_some()).count();
        for (_, conn) in self.owners.drain() {
            conn.reader.abort();
            // Dropping its writer closes our side of the socket: the owner sees the node go.
        }
        self.idle.clear();
        if holding > 0 {
            tracing::info!(
                jobs = holding,
                "detached from the owners of running jobs; they go on, and the next node on this data dir re-attaches"
            );
        }
        holding
    }

    /// Connects to what an earlier run left: owners' sockets and outcome files.
    async fn reattach(&mut self) -> Vec<Found> {
        let mut found = Vec::new();
        let Ok(entries) = std::fs::read_dir(&self.config.dir) else {
            return found;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.ends_with(".tmp") {
                if super::is_abandoned_tmp(&name) {
                    let _ = std::fs::remove_file(&path);
                }
            } else if name.ends_with(".sock") {
                if !self.config.reattach {
                    let _ = std::fs::remove_file(&path);
                    continue;
                }
                match greet(&path).await {
                    Greeted::Owner(hello, stream) => {
                        let id = self.connect(stream, Some(&hello));
                        if hello.holding.is_none() {
                            self.keep_or_dismiss(id);
                        }
                        found.push(Found::Owner(*hello));
                    }
                    Greeted::Foreign(why) => {
                        tracing::error!(socket = %path.display(), %why, "cannot talk to this job owner; leaving it alone");
                        let pid = name.strip_suffix(".sock").and_then(|p| p.parse().ok());
                        found.push(Found::Foreign {
                            socket: path,
                            pid,
                            why,
                        });
                    }
                    // Nobody listens: the owner is gone (its outcome, if any, is a file).
                    Greeted::Nobody => {
                        let _ = std::fs::remove_file(&path);
                    }
                }
            }
        }
        // Outcome files are listed only now, after every socket was tried. An owner that was
        // letting go while this node started (aborting a child at its gate when the node before
        // died, say) writes its outcome before it closes its socket: found gone above, its file
        // is here now, where a listing taken before the sockets missed it and left the
        // attempt with neither owner nor outcome (recorded `owner_died` instead of given back).
        let outcomes: Vec<PathBuf> = std::fs::read_dir(&self.config.dir)
            .map(|entries| {
                entries
                    .flatten()
                    .map(|entry| entry.path())
                    .filter(|path| path.extension().is_some_and(|ext| ext == "outcome"))
                    .collect()
            })
            .unwrap_or_default();
        for path in outcomes {
            match read_outcome(&path) {
                Some(file) if self.holder_of(file.attempt).is_none() => {
                    found.push(Found::Outcome(file));
                }
                Some(_) => {} // its owner is alive and says so in its hello
                None => {
                    tracing::warn!(file = %path.display(), "removing an unreadable outcome file");
                    let _ = std::fs::remove_file(&path);
                }
            }
        }
        found
    }

    /// An idle owner found at start: kept for the next attempts if it is of this build.
    fn keep_or_dismiss(&mut self, id: u64) {
        let ours = self
            .owners
            .get(&id)
            .is_some_and(|c| c.version.as_deref() == Some(env!("CARGO_PKG_VERSION")));
        if ours && self.idle.len() < self.config.keep_idle {
            self.idle.push_back(id);
        } else if let Some(conn) = self.owners.get(&id) {
            conn.out.send(&ToOwner::Exit);
        }
    }
}

mod cleanup;
mod wire;

#[cfg(test)]
mod tests;
