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
use std::time::Duration;

use drover_core::AttemptRef;
use tokio::io::BufReader;
use tokio::net::UnixStream;
use tokio::sync::{mpsc, oneshot};

use super::protocol::{self, FromOwner, Hello, Phase, ToOwner, parse_hello};
use super::{OutcomeFile, outcome_path, read_outcome};
use crate::contain::{Containment, ContainmentSpec};
use crate::orphan::{OrphanVerdict, stop_orphan_group};
use crate::supervisor::SupervisorGone;
use crate::{Command, Ending, Outcome, Report};

/// How long a re-attach waits for an owner's hello.
const HELLO_TIMEOUT: Duration = Duration::from_secs(2);

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
        /// Why not.
        why: String,
    },
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

/// Where lines to one owner go: written at once from the actor (messages are small and the
/// socket's buffer large, so this nearly always completes); what the socket will not take yet
/// waits in a backlog that a short-lived task writes out. Dropping the last handle closes our
/// side of the socket: the owner sees the node go.
struct Writer {
    half: tokio::net::unix::OwnedWriteHalf,
    /// Bytes not written yet, and whether a task is writing them.
    backlog: std::sync::Mutex<(Vec<u8>, bool)>,
}

impl Writer {
    fn new(half: tokio::net::unix::OwnedWriteHalf) -> Arc<Writer> {
        Arc::new(Writer {
            half,
            backlog: std::sync::Mutex::new((Vec::new(), false)),
        })
    }

    /// Sends one message, in order after every earlier one.
    fn send(self: &Arc<Self>, message: &ToOwner) {
        let Ok(mut line) = serde_json::to_vec(message) else {
            return;
        };
        line.push(b'\n');
        let Ok(mut backlog) = self.backlog.lock() else {
            return;
        };
        if backlog.1 {
            backlog.0.extend_from_slice(&line);
            return;
        }
        let written = match self.half.try_write(&line) {
            Ok(n) => n,
            Err(err) if err.kind() == io::ErrorKind::WouldBlock => 0,
            // Broken: the reader sees the end and says so.
            Err(_) => return,
        };
        if written < line.len() {
            backlog.0.extend_from_slice(&line[written..]);
            backlog.1 = true;
            let writer = Arc::clone(self);
            tokio::spawn(async move {
                let _ = writer.flush().await;
            });
        }
    }

    async fn flush(&self) -> io::Result<()> {
        loop {
            self.half.writable().await?;
            let Ok(mut backlog) = self.backlog.lock() else {
                return Err(io::Error::other("poisoned"));
            };
            match self.half.try_write(&backlog.0) {
                Ok(n) => {
                    backlog.0.drain(..n);
                }
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => {}
                Err(err) => return Err(err),
            }
            if backlog.0.is_empty() {
                backlog.1 = false;
                return Ok(());
            }
        }
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
                tokio::task::spawn_blocking(move || {
                    let swept = containment.sweep_except(&keep);
                    if swept > 0 {
                        tracing::warn!(cells = swept, "removed attempt cgroups no owner holds");
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
        let mut outcomes = Vec::new();
        for entry in entries.flatten() {
            let path = entry.path();
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.ends_with(".tmp") {
                let _ = std::fs::remove_file(&path);
            } else if name.ends_with(".outcome") {
                outcomes.push(path);
            } else if name.ends_with(".sock") {
                if !self.config.reattach {
                    let _ = std::fs::remove_file(&path);
                    continue;
                }
                match UnixStream::connect(&path).await {
                    Ok(stream) => match read_hello(stream).await {
                        Ok((hello, stream)) => {
                            let id = self.connect(stream, Some(&hello));
                            if hello.holding.is_none() {
                                self.keep_or_dismiss(id);
                            }
                            found.push(Found::Owner(hello));
                        }
                        Err(why) => {
                            tracing::error!(socket = %path.display(), %why, "cannot talk to this job owner; leaving it alone");
                            found.push(Found::Foreign { socket: path, why });
                        }
                    },
                    // Nobody listens: the owner is gone (its outcome, if any, is a file).
                    Err(_) => {
                        let _ = std::fs::remove_file(&path);
                    }
                }
            }
        }
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

/// Reads an owner's hello from a fresh connection.
async fn read_hello(stream: UnixStream) -> Result<(Hello, UnixStream), String> {
    let mut input = BufReader::new(stream);
    let mut line = String::new();
    match tokio::time::timeout(HELLO_TIMEOUT, protocol::read_line(&mut input, &mut line)).await {
        Ok(Ok(Some(()))) => {}
        Ok(Ok(None)) => return Err("it closed the connection without a hello".into()),
        Ok(Err(err)) => return Err(err.to_string()),
        Err(_) => return Err(format!("no hello within {HELLO_TIMEOUT:?}")),
    }
    let hello = parse_hello(line.trim_end()).map_err(|e| e.to_string())?;
    if !input.buffer().is_empty() {
        // Nothing follows a hello before the node speaks; a peer that says more is not an owner.
        return Err("unexpected data after the hello".into());
    }
    Ok((hello, input.into_inner()))
}

/// Stops what is left of an attempt no owner holds: its group (if the pid is still ours) and
/// whatever is in its cell. Returns how many processes were killed and whether any survived.
async fn clean(
    containment: &Containment,
    attempt: AttemptRef,
    pid: Option<i32>,
    proc_start: Option<u64>,
    grace: Duration,
) -> (usize, bool) {
    let mut killed = 0;
    let mut survivors = false;
    if let Some(pgid) = pid {
        if let OrphanVerdict::Stopped(ladder) = stop_orphan_group(pgid, proc_start, grace).await {
            killed += 1;
            survivors |= ladder.survivors;
        }
    }
    let cell = containment.cell_of(attempt);
    let left = cell.orphaned_members();
    if !left.is_empty() {
        tracing::warn!(%attempt, processes = left.len(), "killing processes of an attempt whose owner is gone");
        killed += left.len();
        let killing = cell.clone();
        let _ = tokio::task::spawn_blocking(move || {
            killing.kill();
            for pid in killing.orphaned_members() {
                // SAFETY: kill with plain integers.
                unsafe { libc::kill(pid, libc::SIGKILL) };
            }
        })
        .await;
        let deadline = tokio::time::Instant::now() + crate::KILL_VERIFY_WINDOW;
        let mut pause = Duration::from_millis(2);
        while !cell.orphaned_members().is_empty() {
            if tokio::time::Instant::now() >= deadline {
                survivors = true;
                break;
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(Duration::from_millis(100));
        }
    }
    let _ = tokio::task::spawn_blocking(move || cell.remove()).await;
    (killed, survivors)
}

#[cfg(test)]
mod tests {
    use std::io::{Read, Write};

    use super::*;
    use crate::contain::{BackendChoice, BackendKind};

    fn config(dir: PathBuf) -> (ExecutorConfig, Arc<Containment>) {
        let containment = Arc::new(
            Containment::detect(BackendChoice::Only(BackendKind::Rlimit), "unused")
                .expect("rlimit"),
        );
        let config = ExecutorConfig {
            dir,
            program: "/nonexistent/drover".into(),
            containment: containment.spec(),
            env_remove: Vec::new(),
            keep_idle: 1,
            reattach: true,
        };
        (config, containment)
    }

    /// An upgrade must never kill a job: an owner speaking a protocol this build does not know
    /// (an older or newer drover) is reported, sent nothing, and its socket left in place.
    #[tokio::test]
    async fn an_owner_of_another_protocol_is_reported_and_left_alone() {
        let dir = tempfile::tempdir().expect("tempdir");
        let owners = dir.path().join("owners");
        super::super::process::make_dir(&owners).expect("owners dir");
        let socket = super::super::socket_path(&owners, 999_999);
        let listener = std::os::unix::net::UnixListener::bind(&socket).expect("bind");
        let fake = std::thread::spawn(move || {
            let (mut conn, _) = listener.accept().expect("accept");
            conn.write_all(b"{\"hello\":{\"protocol\":99,\"version\":\"9.9.9\",\"pid\":1}}\n")
                .expect("hello");
            conn.set_read_timeout(Some(Duration::from_secs(5)))
                .expect("timeout");
            let mut heard = Vec::new();
            let _ = conn.read_to_end(&mut heard);
            heard
        });
        let (config, containment) = config(owners);
        let (_handle, _reports, found) = Executor::start(config, containment).await.expect("start");
        match found.as_slice() {
            [Found::Foreign { socket: s, why }] => {
                assert_eq!(s, &socket);
                assert!(why.contains("protocol 99"), "{why}");
            }
            other => panic!("expected one foreign owner, found {other:?}"),
        }
        let heard = fake.join().expect("fake owner");
        assert!(
            heard.is_empty(),
            "the node sent nothing to an owner it cannot talk to: {:?}",
            String::from_utf8_lossy(&heard)
        );
        assert!(
            socket.exists(),
            "its socket is left for a node that speaks it"
        );
    }

    /// An outcome left by an owner that exited with no node listening is found at start; a
    /// stale socket (nobody listens) and a torn temp file are removed.
    #[tokio::test]
    async fn outcomes_are_collected_and_stale_sockets_removed() {
        let dir = tempfile::tempdir().expect("tempdir");
        let owners = dir.path().join("owners");
        super::super::process::make_dir(&owners).expect("owners dir");
        let attempt = AttemptRef {
            job_id: drover_core::JobId::from_uuid(uuid::Uuid::now_v7()),
            attempt: 2,
        };
        let file = OutcomeFile {
            protocol: super::super::PROTOCOL,
            attempt,
            outcome: Outcome::without_process(Ending::Exited(3)),
            boot_id: None,
        };
        super::super::write_outcome(&owners, &file, true).expect("outcome");
        let stale = super::super::socket_path(&owners, 999_998);
        drop(std::os::unix::net::UnixListener::bind(&stale).expect("bind"));
        std::fs::write(owners.join("x.outcome.tmp"), b"torn").expect("tmp");
        let (config, containment) = config(owners.clone());
        let (_handle, _reports, found) = Executor::start(config, containment).await.expect("start");
        assert_eq!(found, vec![Found::Outcome(file)]);
        assert!(!stale.exists(), "a socket nobody listens on is removed");
        assert!(!owners.join("x.outcome.tmp").exists());
    }
}
