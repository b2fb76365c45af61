//! The command line, as clap sees it.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};
use drover_core::{Cpus, HumanDuration, JobState, Size};

pub use crate::spec_args::SpecArgs;

/// Run long computations durably: every job with a timeout, its whole process tree owned,
/// its outcome and usage recorded, and nothing lost when the node restarts.
#[derive(Debug, Parser)]
#[command(name = "drover", version, about, after_help = EXIT_CODES)]
pub struct Cli {
    /// URL of the node's API (default: the address recorded in the data dir).
    #[arg(long, global = true, env = "DROVER_SERVER", value_name = "URL")]
    pub server: Option<String>,
    /// The node's data dir (default: the platform data dir, e.g. ~/.local/share/drover).
    #[arg(long, global = true, env = "DROVER_DATA_DIR", value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// A file holding the API token a cluster shares (required by nodes that listen beyond
    /// loopback). The token may also come from DROVER_TOKEN or from `token_file`/`token` in
    /// drover.toml. Without one, the CLI uses the node's own token from its data dir.
    #[arg(long, global = true, env = "DROVER_TOKEN_FILE", value_name = "FILE")]
    pub token_file: Option<PathBuf>,
    /// Certificates (PEM) to trust when the node serves HTTPS: its own self-signed certificate,
    /// or the CA that signed it (default: `ca_file` in drover.toml, else the public web PKI's
    /// roots). `serve` uses it to read logs from other nodes.
    #[arg(long, global = true, env = "DROVER_CA_FILE", value_name = "FILE")]
    pub ca_file: Option<PathBuf>,
    /// Print JSON instead of text, for scripts: every command that prints something prints
    /// one JSON document (`watch`: one event per line; `run`: the ended job, on stderr after
    /// the job's own output; `logs`: the job and both streams).
    #[arg(long, global = true)]
    pub json: bool,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Exit codes, shown in `--help`.
pub const EXIT_CODES: &str = "\
Exit codes:
  0  success (for `wait`: every job succeeded)
  `run` and `logs -f` exit with the job's own exit code instead; 128+N if a signal N killed it,
  124 if it timed out, 130 if it was cancelled, 125 if it failed without an exit code of its own
  (spawn_failed, memory_limit, stalled, pids_limit, dependency_failed) or was lost. Otherwise:
  1  a job ended unsuccessfully (failed, timed_out, lost or cancelled)
  2  bad usage: an unknown flag, an invalid value, or a job reference that names several jobs
  3  `wait --timeout` ran out before the jobs ended
  4  the node could not be reached, refused the request, or has no such job";

/// The subcommands.
#[derive(Debug, Subcommand)]
// Each subcommand's arguments are defined only when that subcommand is parsed: building all
// thirty of them cost every CLI process ~0.4 ms (half of its parsing) before #18. `man` and
// `completions` build the whole tree, so they still see every argument.
#[command(defer = true)]
pub enum Command {
    /// Run a node: the HTTP API, the scheduler and the supervisor.
    Serve(Box<ServeArgs>),
    /// Submit a job; prints its id.
    Submit(Box<SubmitArgs>),
    /// Submit a job and stay with it: its output streams to this terminal, and `drover run`
    /// exits with the job's exit code. Ctrl-C cancels the job two seconds later; a second
    /// Ctrl-C within them leaves it running instead.
    Run(Box<RunArgs>),
    /// Show one or more jobs, or a table of recent jobs.
    Status(StatusArgs),
    /// Print a job's output.
    Logs(LogsArgs),
    /// Cancel jobs: waiting ones at once, running ones through the kill ladder.
    Cancel(CancelArgs),
    /// Wait until jobs end; exit 0 only if all succeeded.
    Wait(WaitArgs),
    /// Follow every state change as it happens (pushed by the node, not polled).
    Watch(WatchArgs),
    /// The running jobs with their live memory and CPU, refreshed in place (like htop).
    Top(TopArgs),
    /// Change the priority of a waiting job.
    Priority(PriorityArgs),
    /// Change the settings of a job that waits (queued, scheduled or blocked): any `submit`
    /// flag, and a new program after `--`. `-e` adds to its environment.
    Edit(Box<EditArgs>),
    /// The dead-letter queue: jobs that ended unsuccessfully after their retries.
    Dlq(DlqArgs),
    /// Run ended jobs again with a fresh retry budget (their attempts are kept).
    Retry(Box<RetryArgs>),
    /// Named queues: list them, pause or resume one, limit how many of its jobs run at once.
    Queue(QueueArgs),
    /// Show how jobs would be contained here: the backend and why, what each limit kind
    /// enforces, the capacity, and the machine's memory and pressure.
    Doctor(DoctorArgs),
    /// The nodes sharing this node's database: state, labels, capacity, load, last heartbeat.
    Nodes(NodesArgs),
    /// Stop a node from claiming jobs; it finishes what it runs (by id or host name).
    Drain(NodeArgs),
    /// Let a drained node claim jobs again.
    Undrain(NodeArgs),
    /// Workflows: submit a DAG of steps from a TOML file, show one as a tree, cancel or retry it.
    Flow(FlowArgs),
    /// Sessions: a Python, SageMath or PARI/GP interpreter that keeps its variables between
    /// `drover exec`s, run as a job (limited, accounted, alive across a restart of the node).
    Session(SessionArgs),
    /// Warm pools: parents that have imported a pool's modules once (Python, SageMath) and
    /// fork a fresh child for each job submitted with `--pool`, in the job's own cell.
    Pool(PoolArgs),
    /// Run code in a session and print its output; exits 0 if it ran without an error, 1 on
    /// an exception or GP error (its message on stderr), 124 when its timeout interrupted it.
    Exec(Box<ExecArgs>),
    /// Print one job's result (what it wrote to `$DROVER_OUTPUT_DIR/result.json`).
    Result(ResultArgs),
    /// Print the results of a sweep or flow, in sweep order, as a table, `--json` or `--csv`.
    Results(ResultsArgs),
    /// Run `drover serve` as a service of systemd (Linux) or launchd (macOS) that starts at
    /// boot or login; stopping or restarting it never stops running jobs.
    Service(ServiceArgs),
    /// Print a shell's completion script: `drover completions bash > ~/.local/share/bash-completion/completions/drover`.
    Completions(CompletionsArgs),
    /// Print drover's manual page, or with `--dir`, write one page per command there
    /// (`drover man --dir ~/.local/share/man/man1`, then `man drover-submit`).
    Man(ManArgs),
    /// Print the web page's login link (secret, like the token): opening it logs a browser in
    /// to the node.
    Web(WebArgs),
}

/// `drover flow`
#[derive(Debug, Args)]
pub struct FlowArgs {
    /// What to do.
    #[command(subcommand)]
    pub action: FlowAction,
}

/// `drover flow ...`
#[derive(Debug, Subcommand)]
pub enum FlowAction {
    /// Submit the flow in FILE: checked whole (unknown fields, unknown steps, cycles) before
    /// anything is created; prints its id.
    Submit {
        /// The flow file (TOML): `name`, and one `[steps.NAME]` table per step with job fields,
        /// `after` and `each`.
        file: PathBuf,
        /// Check the file and print the jobs it would make, without submitting anything.
        #[arg(long)]
        dry_run: bool,
    },
    /// Show a flow's steps as a tree with their states.
    Status {
        /// The flow: its number, id or name.
        flow: String,
    },
    /// Cancel every step of a flow that has not ended.
    Cancel {
        /// The flow: its number, id or name.
        flow: String,
    },
    /// Run a flow's unsuccessful steps again (and what failed because of them).
    Retry {
        /// The flow: its number, id or name.
        flow: String,
        /// Only what failed, timed out or was lost, not what was cancelled.
        #[arg(long)]
        failed: bool,
    },
}

/// `drover session`
#[derive(Debug, Args)]
pub struct SessionArgs {
    /// What to do.
    #[command(subcommand)]
    pub action: SessionAction,
}

/// `drover session ...`
#[derive(Debug, Subcommand)]
pub enum SessionAction {
    /// Start a session: its interpreter runs as a job named NAME until `session stop` or its
    /// timeout (default 24h); returns once it runs. Takes `submit`'s job flags (`--memory`,
    /// `--cpus`, `--timeout`, `-e`, ...); after `--`, the interpreter's command if not the
    /// kind's own (`python3`, `sage -python`, `gp`).
    Start(Box<SessionStartArgs>),
    /// The sessions that run or wait to, with their job numbers.
    Ls,
    /// Stop a session (its job is cancelled: the interpreter and everything it started end).
    Stop {
        /// The session's name.
        name: String,
    },
}

/// `drover session start`
#[derive(Debug, Args)]
pub struct SessionStartArgs {
    /// The session's name, which `drover exec` takes (and its job's name).
    #[arg(value_name = "NAME")]
    pub session: String,
    /// The interpreter: python, sage or gp.
    #[arg(long, value_name = "KIND")]
    pub kind: drover_core::SessionKind,
    /// Return at once instead of waiting until the session runs.
    #[arg(long)]
    pub detach: bool,
    /// The job's settings, as `submit` takes them.
    #[command(flatten)]
    pub spec: SpecArgs,
}

/// `drover exec`
#[derive(Debug, Args)]
pub struct ExecArgs {
    /// The session's name.
    pub session: String,
    /// Run the code in FILE instead of the code given after `--` (`-` for stdin; with neither,
    /// the code is read from stdin).
    #[arg(long, short = 'f', value_name = "FILE")]
    pub file: Option<PathBuf>,
    /// Interrupt the code after this long (SIGINT to the interpreter; the session goes on),
    /// default 24h.
    #[arg(long, value_name = "D")]
    pub timeout: Option<drover_core::HumanDuration>,
    /// How long the interrupted code may take to stop before the session is given up
    /// (default 10s).
    #[arg(long, value_name = "D")]
    pub grace: Option<drover_core::HumanDuration>,
    /// Print the exec's job id and return at once instead of printing its output.
    #[arg(long)]
    pub detach: bool,
    /// The code, its words joined by spaces (`drover exec s -- 'x = 41'`).
    #[arg(last = true, value_name = "CODE")]
    pub code: Vec<String>,
}

/// `drover pool`
#[derive(Debug, Args)]
pub struct PoolArgs {
    /// What to do.
    #[command(subcommand)]
    pub action: PoolAction,
}

/// `drover pool ...`
#[derive(Debug, Subcommand)]
pub enum PoolAction {
    /// Start a pool: --size parents (jobs named NAME, on the node this command talks to),
    /// each importing --preload once; `drover submit --pool NAME -- script.py ARGS` then runs
    /// in a forked child. Takes `submit`'s job flags for the parents (default --timeout 30d);
    /// after `--`, the interpreter's command if not the kind's own.
    Create(Box<PoolCreateArgs>),
    /// The pools with their parents.
    Ls,
    /// Remove a pool: its parents are cancelled. Its jobs that run keep their cells until their
    /// parent has gone, then end; those that wait fail once no parent answers.
    Rm {
        /// The pool's name.
        name: String,
    },
}

/// `drover pool create`
#[derive(Debug, Args)]
pub struct PoolCreateArgs {
    /// The pool's name, which `submit --pool` takes.
    #[arg(value_name = "NAME")]
    pub pool: String,
    /// The interpreter: python or sage.
    #[arg(long, value_name = "KIND")]
    pub kind: drover_core::SessionKind,
    /// Modules each parent imports before its first fork (repeatable, or comma-separated).
    #[arg(long, value_name = "MODULES", value_delimiter = ',')]
    pub preload: Vec<String>,
    /// How many parents (default 1; one parent forks any number of jobs at once).
    #[arg(long, value_name = "N", default_value_t = 1)]
    pub size: u32,
    /// Recycle a parent (a fresh start of its job) after it has forked this many jobs.
    #[arg(long, value_name = "K")]
    pub max_jobs: Option<u32>,
    /// Recycle a parent whose own memory grows past this.
    #[arg(long, value_name = "SIZE")]
    pub max_memory: Option<drover_core::Size>,
    /// The parents' job settings, as `submit` takes them.
    #[command(flatten)]
    pub spec: SpecArgs,
}

/// `drover pool-run`: internal, the job one pooled job is (see drover_exec::session::pool_run).
#[derive(Debug, Parser)]
#[command(
    name = "drover pool-run",
    bin_name = "drover pool-run",
    about = "Internal: one job of a pool, run by its node; a warm parent forks the job's code.",
    long_about = None
)]
pub struct PoolRunCli {
    /// The pool.
    #[arg(long)]
    pub pool: String,
    /// Where its parents' sockets are.
    #[arg(long)]
    pub dir: PathBuf,
    /// The job: a script and its arguments, `-c CODE` or `-m MODULE`.
    #[arg(last = true, required = true)]
    pub argv: Vec<String>,
}

/// `drover session-host`: internal, the job a session is (see drover_exec::session).
#[derive(Debug, Parser)]
#[command(
    name = "drover session-host",
    bin_name = "drover session-host",
    about = "Internal: a session's interpreter, run by its node as the session's job.",
    long_about = None
)]
pub struct SessionHostCli {
    /// The interpreter.
    #[arg(long)]
    pub kind: drover_core::SessionKind,
    /// The socket execs reach the session on.
    #[arg(long)]
    pub socket: PathBuf,
    /// The interpreter's command.
    #[arg(last = true, required = true)]
    pub command: Vec<String>,
}

/// `drover session-exec`: internal, the job one exec is (see drover_exec::session).
#[derive(Debug, Parser)]
#[command(
    name = "drover session-exec",
    bin_name = "drover session-exec",
    about = "Internal: one piece of code run in a session, run by its node as the exec's job.",
    long_about = None
)]
pub struct SessionExecCli {
    /// The session's socket.
    #[arg(long)]
    pub socket: PathBuf,
    /// How long the host may take to bring its interpreter back after an interrupt.
    #[arg(long)]
    pub interrupt_wait_ms: u64,
    /// The code.
    #[arg(last = true, required = true)]
    pub code: Vec<String>,
}

/// `drover result`
#[derive(Debug, Args)]
pub struct ResultArgs {
    /// The job: its number, id, id prefix or name.
    pub job: String,
}

/// `drover results`
#[derive(Debug, Args)]
pub struct ResultsArgs {
    /// The sweep or flow: its number, id or name.
    pub group: String,
    /// One CSV row per job: number, step, values, state, then the result's fields.
    #[arg(long)]
    pub csv: bool,
    /// Only the jobs of this step (a flow's).
    #[arg(long, value_name = "STEP")]
    pub step: Option<String>,
}

/// `drover owner`: internal, started by a node to hold its jobs (see drover_exec::owner). It
/// is parsed apart from [`Cli`], so that help, completions and manual pages never offer it.
#[derive(Debug, Parser)]
#[command(
    name = "drover owner",
    bin_name = "drover owner",
    about = "Internal: holds a node's jobs so that they outlive it; started by the node itself.",
    long_about = None
)]
pub struct OwnerCli {
    /// Where and how.
    #[command(flatten)]
    pub args: OwnerArgs,
}

/// The arguments a node starts `drover owner` with.
#[derive(Debug, Args)]
pub struct OwnerArgs {
    /// The owners directory.
    #[arg(long)]
    pub dir: PathBuf,
    /// The node's containment, as JSON.
    #[arg(long)]
    pub containment: String,
}

/// `drover web`
#[derive(Debug, Args)]
pub struct WebArgs {
    /// Open the link in the default browser (the link is handed over in a private file, never
    /// on a command line other users could read).
    #[arg(long)]
    pub open: bool,
}

/// `drover run`
#[derive(Debug, Args)]
pub struct RunArgs {
    /// Print the job's id and return at once instead of staying with it.
    #[arg(long)]
    pub detach: bool,
    /// Everything `drover submit` takes.
    #[command(flatten)]
    pub submit: SubmitArgs,
}

/// `drover watch`
#[derive(Debug, Args)]
pub struct WatchArgs {
    /// Only jobs in this queue.
    #[arg(long, value_name = "NAME")]
    pub queue: Option<String>,
    /// Only this job.
    #[arg(long, value_name = "ID")]
    pub job: Option<String>,
    /// Start after this event sequence number (replays what came after it) instead of now.
    #[arg(long, value_name = "SEQ")]
    pub since: Option<u64>,
}

/// `drover top`
#[derive(Debug, Args)]
pub struct TopArgs {
    /// Print one screen and exit (also when the output is not a terminal, and with --json).
    #[arg(long)]
    pub once: bool,
    /// How often the screen is redrawn.
    #[arg(long, value_name = "D", default_value = "2s")]
    pub interval: HumanDuration,
}

/// `drover edit`
#[derive(Debug, Args)]
pub struct EditArgs {
    /// The job: its number, id, id prefix or name.
    #[arg(value_name = "JOB")]
    pub id: String,
    /// What to change.
    #[command(flatten)]
    pub spec: SpecArgs,
}

/// `drover priority`
#[derive(Debug, Args)]
pub struct PriorityArgs {
    /// The job.
    pub id: String,
    /// Its new priority (higher runs first).
    #[arg(allow_negative_numbers = true)]
    pub priority: i32,
}

/// `drover dlq`
#[derive(Debug, Args)]
pub struct DlqArgs {
    /// What to do (default: list).
    #[command(subcommand)]
    pub action: Option<DlqAction>,
    /// How many to list (at most 1000).
    #[arg(long, default_value_t = 100, value_name = "N", value_parser = clap::value_parser!(u16).range(1..=1000))]
    pub limit: u16,
}

/// `drover dlq ...`
#[derive(Debug, Subcommand)]
pub enum DlqAction {
    /// Take jobs out of the dead-letter queue without running them again.
    Dismiss {
        /// The jobs.
        #[arg(required = true, value_name = "ID")]
        ids: Vec<String>,
    },
}

/// `drover retry`
#[derive(Debug, Args)]
pub struct RetryArgs {
    /// Jobs to run again: numbers, ids, id prefixes or names.
    #[arg(
        value_name = "ID",
        required_unless_present = "all_dlq",
        conflicts_with = "all_dlq"
    )]
    pub ids: Vec<String>,
    /// Every job in the dead-letter queue.
    #[arg(long)]
    pub all_dlq: bool,
    /// For a group: only its members that failed, timed out or were lost (and those that
    /// failed because of them), not the cancelled ones.
    #[arg(long)]
    pub failed: bool,
    /// Settings to change before they run again (`--memory 2G`, `--timeout 4h`; any `submit`
    /// flag): recorded in the job's spec, while each past attempt keeps what it ran with.
    #[command(flatten)]
    pub spec: SpecArgs,
}

/// `drover queue`
#[derive(Debug, Args)]
pub struct QueueArgs {
    /// What to do.
    #[command(subcommand)]
    pub action: QueueAction,
}

/// `drover queue ...`
#[derive(Debug, Subcommand)]
pub enum QueueAction {
    /// Every queue with settings or unfinished jobs, and its load.
    Ls,
    /// Start no new job from this queue; running ones go on.
    Pause {
        /// The queue.
        name: String,
    },
    /// Start this queue's jobs again.
    Resume {
        /// The queue.
        name: String,
    },
    /// Change a queue's settings.
    Set {
        /// The queue.
        name: String,
        /// Most of its jobs starting or running at once; `none` for no limit.
        #[arg(long, value_name = "N|none", value_parser = parse_concurrency)]
        concurrency: Option<Concurrency>,
    },
}

/// A queue's concurrency limit as given on the command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Concurrency(pub Option<u32>);

fn parse_concurrency(raw: &str) -> Result<Concurrency, String> {
    if raw == "none" {
        return Ok(Concurrency(None));
    }
    match raw.parse::<u32>() {
        Ok(n) if n >= 1 => Ok(Concurrency(Some(n))),
        _ => Err(format!("`{raw}` is not a count of at least 1, or `none`")),
    }
}

/// `drover doctor`
#[derive(Debug, Args)]
pub struct DoctorArgs {
    /// Check this backend instead of the automatic choice.
    #[arg(long, default_value = "auto", value_name = "BACKEND")]
    pub backend: drover_node::BackendChoice,
    /// As `serve --memory`.
    #[arg(long, value_name = "SIZE")]
    pub memory: Option<Size>,
    /// As `serve --cpus`.
    #[arg(long, value_name = "N")]
    pub cpus: Option<Cpus>,
}

/// `drover service`
#[derive(Debug, Args)]
pub struct ServiceArgs {
    /// What to do.
    #[command(subcommand)]
    pub action: ServiceAction,
}

/// `drover service install|uninstall`
#[derive(Debug, Subcommand)]
pub enum ServiceAction {
    /// Write the unit (systemd) or property list (launchd) for `drover serve` with this data
    /// dir, and say how to start it.
    Install(ServiceInstallArgs),
    /// Remove what `install` wrote, and say how to stop the service (running jobs keep running).
    Uninstall(ServiceUninstallArgs),
}

/// `drover service install`
#[derive(Debug, Args)]
pub struct ServiceInstallArgs {
    /// A service of your own (systemd --user, a launchd agent); the default.
    #[arg(long, conflicts_with = "system")]
    pub user: bool,
    /// A service of the machine (/etc/systemd/system, /Library/LaunchDaemons), run as the user
    /// who called sudo; needs root.
    #[arg(long)]
    pub system: bool,
    /// Print the file instead of writing it.
    #[arg(long)]
    pub print: bool,
    /// A settings file for the node (`serve --config`).
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
}

/// `drover service uninstall`
#[derive(Debug, Args)]
pub struct ServiceUninstallArgs {
    /// The per-user service (the default).
    #[arg(long, conflicts_with = "system")]
    pub user: bool,
    /// The machine's service.
    #[arg(long)]
    pub system: bool,
}

/// `drover completions`
#[derive(Debug, Args)]
pub struct CompletionsArgs {
    /// The shell to complete for.
    #[arg(value_name = "SHELL")]
    pub shell: clap_complete::Shell,
}

/// `drover man`
#[derive(Debug, Args)]
pub struct ManArgs {
    /// Write drover.1 and a drover-COMMAND.1 for every command into this directory instead of
    /// printing drover.1.
    #[arg(long, value_name = "DIR")]
    pub dir: Option<PathBuf>,
}

/// `drover nodes`
#[derive(Debug, Args)]
pub struct NodesArgs {}

/// `drover drain` / `drover undrain`
#[derive(Debug, Args)]
pub struct NodeArgs {
    /// The node's id, or its host name when only one node runs there.
    pub node: String,
}

/// `drover serve`
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Address of the API. Loopback unless you say otherwise; beyond loopback the node needs a
    /// shared token for the machines that reach it (DROVER_TOKEN, --token-file). Default:
    /// `listen` in drover.toml's `[serve]`, else 127.0.0.1:7878.
    #[arg(long, value_name = "ADDR:PORT")]
    pub listen: Option<std::net::SocketAddr>,
    /// A host name the API answers to besides localhost, loopback addresses and (beyond
    /// loopback) the machine's own names and addresses, e.g. a reverse proxy's (repeatable).
    /// Requests naming any other host are refused, which defeats DNS rebinding.
    #[arg(long = "allow-host", value_name = "NAME")]
    pub allow_hosts: Vec<String>,
    /// Serve the API over HTTPS with this certificate chain (PEM; the node's certificate
    /// first). Needs --tls-key. Clients of a self-signed node pass --ca-file.
    #[arg(long, value_name = "FILE", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// The private key of --tls-cert (PEM).
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// Start with an empty queue even though this data dir's database is missing or empty
    /// while a node has run here before (which otherwise stops `serve`: a deleted or truncated
    /// database is not a first start).
    #[arg(long)]
    pub init: bool,
    /// Jobs run at once (default: the number of CPUs).
    #[arg(long, value_name = "N")]
    pub slots: Option<u32>,
    /// On SIGTERM/SIGINT, stop running jobs instead of leaving them running under their owners
    /// (the default: a node started again re-attaches to them). They get --shutdown-timeout to
    /// finish first; a second signal stops them at once.
    #[arg(long)]
    pub stop_jobs_on_exit: bool,
    /// Run this shell command when any job or group ends (see --notify-on), with its id,
    /// number, name, state, reason and result in DROVER_JOB_* (DROVER_GROUP_*) variables.
    #[arg(long, value_name = "CMD")]
    pub notify_command: Option<String>,
    /// POST a JSON notice to this http:// URL when any job or group ends (see --notify-on).
    #[arg(long, value_name = "URL")]
    pub notify_url: Option<String>,
    /// Which endings --notify-command and --notify-url hear of: all, or failures only.
    #[arg(long, value_name = "all|failures")]
    pub notify_on: Option<drover_node::notify::NotifyOn>,
    /// How long any notifier (a job's --notify too) may run before it is killed (default 30s).
    #[arg(long, value_name = "D")]
    pub notify_timeout: Option<HumanDuration>,
    /// With --stop-jobs-on-exit: how long to let running jobs finish before stopping them.
    #[arg(long, default_value = "30s", value_name = "D")]
    pub shutdown_timeout: HumanDuration,
    /// How long an attempt's lease lasts without renewal (default: the node TTL). Leases are
    /// renewed every third of it; a node that cannot renew them stops its jobs a third of a
    /// lease before they end, and the reaper requeues attempts whose lease has ended.
    #[arg(long, value_name = "D")]
    pub lease: Option<HumanDuration>,
    /// Output kept per stream per attempt: past it, the first and the last half, and a note of
    /// what was dropped between them.
    #[arg(long, default_value = "256M", value_name = "SIZE")]
    pub max_log_size: Size,
    /// Log format of the node itself.
    #[arg(long, default_value = "text", value_parser = ["text", "json"])]
    pub log_format: String,
    /// Memory jobs may reserve in all (default: the machine's, less a tenth for the OS, at least
    /// 1 GiB). A job declaring more is refused at submit.
    #[arg(long, value_name = "SIZE")]
    pub memory: Option<Size>,
    /// CPUs jobs may reserve in all (default: the machine's). A job declaring more is refused.
    #[arg(long, value_name = "N")]
    pub cpus: Option<Cpus>,
    /// How jobs are contained: auto (cgroup2, else cgroup1, else rlimit), cgroup2, cgroup1 or
    /// rlimit (default auto). `drover doctor` shows what each enforces here.
    #[arg(long, value_name = "BACKEND")]
    pub backend: Option<drover_node::BackendChoice>,
    /// How long a job that does not fit may wait before the node stops starting smaller jobs
    /// ahead of it, so that a stream of small jobs cannot starve it (default 60s).
    #[arg(long, value_name = "D")]
    pub reserve_after: Option<HumanDuration>,
    /// How often each running job's memory and CPU are sampled for its usage series (the web
    /// page's graphs, `drover top`, `status --json`). Default 5s.
    #[arg(long, value_name = "D")]
    pub sample_interval: Option<HumanDuration>,
    /// How long events are kept for `GET /v1/events` clients to resume from; a resume from
    /// before that is answered 410 Gone.
    #[arg(long, default_value = "7d", value_name = "D")]
    pub events_retention: HumanDuration,
    /// Where jobs are kept: a `postgres://user@host/db` URL shared by every node of a cluster
    /// (default: a SQLite file in the data dir, for one machine).
    #[arg(
        long,
        value_name = "URL",
        env = "DROVER_DATABASE_URL",
        hide_env_values = true
    )]
    pub db: Option<String>,
    /// A label of this node (repeatable): `--label has=sage`. Jobs submitted with `--require`
    /// run only on nodes with those labels. `os`, `arch` and `node` (the node's id) are detected.
    #[arg(long = "label", value_name = "KEY=VALUE", value_parser = drover_core::node::parse_label)]
    pub labels: Vec<(String, String)>,
    /// How often the node writes its heartbeat and runs the reaper (default 5s).
    #[arg(long, value_name = "D")]
    pub heartbeat: Option<HumanDuration>,
    /// How long a node may stay silent before it is declared dead (default 3 heartbeats).
    #[arg(long, value_name = "D")]
    pub node_ttl: Option<HumanDuration>,
    /// Settings file (default: drover.toml in the data dir, if there is one). Its `[serve]`
    /// table takes db, labels, heartbeat, node_ttl, memory, cpus, slots, backend,
    /// reserve_after, sample_interval, allow_hosts, tls_cert and tls_key, and `[queues.NAME]` tables give a queue's job defaults;
    /// flags win over it.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
}

/// `drover submit`
#[derive(Debug, Args)]
pub struct SubmitArgs {
    /// The job: its program and every setting it may have.
    #[command(flatten)]
    pub spec: SpecArgs,
    /// Submit many jobs from FILE (`-` for stdin): JSON Lines, one spec per line in the schema
    /// of `POST /v1/jobs`. All or nothing; prints one id per line, in input order.
    #[arg(long, value_name = "FILE", conflicts_with_all = ["each", "each_line"])]
    pub batch: Option<PathBuf>,
    /// Make a sweep: one job per value, `{}` in the program's arguments replaced by it (no
    /// shell involved). VALUES is a range (`1..20`, `0..100:10`) or a list (`a,b,c`);
    /// `NAME=VALUES` names it (`{NAME}` in arguments, `$DROVER_EACH_NAME`), and several named
    /// ones make every combination. Prints the group's id: `wait`, `status`, `cancel`, `retry`,
    /// `logs` and `results` take it.
    #[arg(long, value_name = "[NAME=]VALUES")]
    pub each: Vec<String>,
    /// Make a sweep over the lines of FILE (`-` for stdin), one job per non-empty line.
    #[arg(long, value_name = "FILE", conflicts_with = "each")]
    pub each_line: Option<PathBuf>,
    /// Run in a forked child of the warm pool NAME (`drover pool create`): the program is a
    /// script and its arguments, `-c CODE` or `-m MODULE`, run by the pool's interpreter with
    /// its modules already imported. The job's own flags (limits, timeout) apply to it alone.
    #[arg(long, value_name = "NAME", conflicts_with = "batch")]
    pub pool: Option<String>,
}

/// `drover status`
#[derive(Debug, Args)]
pub struct StatusArgs {
    /// Jobs to show, by number, id, id prefix or name (default: a table of recent jobs).
    #[arg(value_name = "JOB")]
    pub ids: Vec<String>,
    /// Only jobs in these states (comma-separated), for the table.
    #[arg(long, value_delimiter = ',', value_name = "STATE")]
    pub state: Vec<JobState>,
    /// Only jobs of this name, for the table.
    #[arg(long, value_name = "NAME")]
    pub name: Option<String>,
    /// Only jobs in this queue, for the table.
    #[arg(long, value_name = "NAME")]
    pub queue: Option<String>,
    /// Only jobs submitted since this time, for the table: `2h` (ago), `09:00`, `yesterday`,
    /// `2026-12-01 09:00`, or RFC 3339.
    #[arg(long, value_name = "TIME", value_parser = crate::when::parse_since)]
    pub since: Option<chrono::DateTime<chrono::Utc>>,
    /// How many recent jobs the table shows.
    #[arg(long, default_value_t = 50, value_name = "N", value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..))]
    pub limit: usize,
}

/// `drover logs`
#[derive(Debug, Args)]
pub struct LogsArgs {
    /// The job: its number, id, id prefix or name.
    #[arg(value_name = "JOB")]
    pub id: String,
    /// Only stdout (default: both streams, stdout then stderr under a marker line; with -f,
    /// each to its own stream as it is written).
    #[arg(long, conflicts_with = "stderr")]
    pub stdout: bool,
    /// Only stderr.
    #[arg(long)]
    pub stderr: bool,
    /// Keep printing output as it comes until the attempt ends.
    #[arg(long, short = 'f', conflicts_with = "tail")]
    pub follow: bool,
    /// Only the last N lines of each stream, read from the end of the file (a large log costs
    /// what its tail holds).
    #[arg(long, short = 'n', value_name = "N")]
    pub tail: Option<u64>,
    /// Which attempt (default: the latest).
    #[arg(long, value_name = "N")]
    pub attempt: Option<u32>,
}

/// Jobs named by id, or every job that has not ended (`--all`): what `cancel` and `wait` act on.
#[derive(Debug, Args)]
pub struct Selection {
    /// The jobs: numbers, ids, id prefixes or names.
    #[arg(
        required_unless_present = "all",
        conflicts_with = "all",
        value_name = "ID"
    )]
    pub ids: Vec<String>,
    /// Every job that has not ended: blocked, scheduled (a delay or --at, even hours ahead),
    /// queued, starting or running. `cancel` narrows it with --state and --queue; `wait`
    /// returns once none is left.
    #[arg(long)]
    pub all: bool,
}

/// `drover cancel`
#[derive(Debug, Args)]
pub struct CancelArgs {
    /// The jobs: by id, or all of them.
    #[command(flatten)]
    pub jobs: Selection,
    /// With --all: only jobs in these states (comma-separated).
    #[arg(long, value_delimiter = ',', value_name = "STATE", requires = "all")]
    pub state: Vec<JobState>,
    /// With --all: only jobs in this queue.
    #[arg(long, value_name = "NAME", requires = "all")]
    pub queue: Option<String>,
}

/// `drover wait`
#[derive(Debug, Args)]
pub struct WaitArgs {
    /// The jobs: by id, or all of them.
    #[command(flatten)]
    pub jobs: Selection,
    /// Give up after this long (exit code 3).
    #[arg(long, value_name = "D")]
    pub timeout: Option<HumanDuration>,
    /// Print nothing; the exit code says it all.
    #[arg(long, short = 'q')]
    pub quiet: bool,
}
