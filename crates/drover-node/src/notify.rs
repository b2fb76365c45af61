//! Notices: a command or a webhook when a job, or a whole group, ends. The notifier follows the
//! store's committed events; it asks the store, in one query per burst of endings, which of them
//! anyone asked to hear of (unless the node wants all); for each it reads the job, and if so
//! (the job's own `notify`, its group's, or the node's `[notify]` table) it takes the notice
//! from the store — once, however many nodes listen — and sends it in a task of its own.
//!
//! A notifier never holds up the queue: commands run outside the runner, at most
//! [`AT_ONCE`] at a time, each in its own process group, killed (the whole group) at the
//! timeout; their failures are logged and forgotten. A notice is sent at most once: one lost to a
//! crash of the node between taking it and sending it is not sent again.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use drover_core::{GroupRecord, JobRecord, JobState};
use drover_store::{Notice, Store};
use http_body_util::Full;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use tokio::sync::{Semaphore, broadcast};

/// Most notices being sent at once; more wait their turn (off the runner's path).
const AT_ONCE: usize = 16;

/// How long the notifier gathers endings after the first of a burst before it asks the store
/// which of them want a notice. A notice is for a person or a script, for whom 25 ms is
/// nothing; the store is asked once per burst instead of once per job.
const GATHER: Duration = Duration::from_millis(25);

/// Largest result passed in `DROVER_JOB_RESULT` (an environment variable has a size limit).
const RESULT_IN_ENV: usize = 64 * 1024;

/// Which endings the node's own `[notify]` tells of.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum NotifyOn {
    /// Every ending.
    #[default]
    All,
    /// Endings other than `succeeded`.
    Failures,
}

impl std::str::FromStr for NotifyOn {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "all" => Ok(NotifyOn::All),
            "failures" => Ok(NotifyOn::Failures),
            other => Err(format!("`{other}`: say all or failures")),
        }
    }
}

/// The node-wide notices (`[notify]` in drover.toml) and the bound on every notifier.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NotifyConfig {
    /// A command (`sh -c`) for every job and group that ends, as `on` says.
    pub command: Option<String>,
    /// A URL (`http://`) that gets a JSON POST for each.
    pub url: Option<String>,
    /// All endings, or failures only.
    pub on: NotifyOn,
    /// How long a notifier may take before it is killed (commands) or abandoned (webhooks).
    pub timeout: Duration,
}

impl Default for NotifyConfig {
    fn default() -> Self {
        Self {
            command: None,
            url: None,
            on: NotifyOn::All,
            timeout: Duration::from_secs(30),
        }
    }
}

impl NotifyConfig {
    fn node_wants(&self, state: JobState) -> bool {
        (self.command.is_some() || self.url.is_some())
            && (self.on == NotifyOn::All || state != JobState::Succeeded)
    }
}

/// Starts the notifier: it follows `store`'s events until the store closes.
pub fn spawn(store: Arc<dyn Store>, config: NotifyConfig) {
    let mut events = store.subscribe();
    let config = Arc::new(config);
    let slots = Arc::new(Semaphore::new(AT_ONCE));
    tokio::spawn(async move {
        loop {
            // Endings come in bursts: each burst is looked at with one query.
            let mut ended = Vec::new();
            match events.recv().await {
                Ok(event) => ended.extend(ending(&event)),
                Err(broadcast::error::RecvError::Lagged(missed)) => {
                    tracing::warn!(
                        missed,
                        "the notifier fell behind; notices of some endings were not sent"
                    );
                    continue;
                }
                Err(broadcast::error::RecvError::Closed) => return,
            }
            if ended.is_empty() {
                continue;
            }
            // A burst is whatever ends within GATHER of its first ending: while short jobs end
            // hundreds a second, the question "who wants a notice?" is asked once per GATHER,
            // not once per job, and the events in between wake nothing here.
            tokio::time::sleep(GATHER).await;
            while ended.len() < 1_000 {
                match events.try_recv() {
                    Ok(event) => ended.extend(ending(&event)),
                    Err(broadcast::error::TryRecvError::Lagged(missed)) => {
                        tracing::warn!(
                            missed,
                            "the notifier fell behind; notices of some endings were not sent"
                        );
                    }
                    Err(_) => break,
                }
            }
            let (store, config, slots) =
                (Arc::clone(&store), Arc::clone(&config), Arc::clone(&slots));
            tokio::spawn(async move {
                // Unless the node wants every ending told, only those someone asked for.
                let wanted = if config.command.is_some() || config.url.is_some() {
                    Ok(ended)
                } else {
                    store.wanting_notice(ended).await
                };
                let wanted = match wanted {
                    Ok(wanted) => wanted,
                    Err(err) => {
                        tracing::warn!(error = %err, "cannot tell which endings to notify of");
                        return;
                    }
                };
                for job in wanted {
                    let (store, config, slots) =
                        (Arc::clone(&store), Arc::clone(&config), Arc::clone(&slots));
                    tokio::spawn(async move {
                        if let Err(err) = on_ending(store.as_ref(), &config, &slots, job).await {
                            tracing::warn!(%job, error = %err, "cannot send the notices of an ending");
                        }
                    });
                }
            });
        }
    });
}

/// The job an event says has ended, if it does.
fn ending(event: &drover_core::Event) -> Option<drover_core::JobId> {
    (event.state.is_terminal()
        && !matches!(
            event.kind,
            drover_core::EventKind::Dismissed | drover_core::EventKind::Edited
        ))
    .then_some(event.job_id)
}

/// What one ending asks for: the job's notice, then its group's if it was the last to end.
async fn on_ending(
    store: &dyn Store,
    config: &NotifyConfig,
    slots: &Semaphore,
    job: drover_core::JobId,
) -> Result<(), drover_store::StoreError> {
    let Some(job) = store.get(job).await? else {
        return Ok(());
    };
    if !job.state.is_terminal() {
        return Ok(());
    }
    let own = job.spec.notify.clone();
    if (own.is_some() || config.node_wants(job.state))
        && store.take_notice(Notice::Job(job.id)).await?
    {
        let env = job_env(&job);
        let body = serde_json::json!({ "kind": "job", "job": &job });
        let cwd = job.spec.cwd.clone();
        let what = format!("job {}", job.number);
        send(
            config,
            slots,
            own.as_deref(),
            config.node_wants(job.state),
            &env,
            cwd.as_deref(),
            body,
            &what,
        )
        .await;
    }
    let Some(member) = &job.group else {
        return Ok(());
    };
    let Some(group) = store.group(member.group).await? else {
        return Ok(());
    };
    if !group.ended() {
        return Ok(());
    }
    let node_wants = config.node_wants(group.state);
    if (group.notify.is_some() || node_wants) && store.take_notice(Notice::Group(group.id)).await? {
        let env = group_env(&group);
        let body = serde_json::json!({ "kind": "group", "group": &group });
        let what = format!("group {}", group.number);
        send(
            config,
            slots,
            group.notify.as_deref(),
            node_wants,
            &env,
            job.spec.cwd.as_deref(),
            body,
            &what,
        )
        .await;
    }
    Ok(())
}

/// Sends one notice: the asked-for command, and the node's command and webhook when it wants
/// this ending.
#[allow(clippy::too_many_arguments)]
async fn send(
    config: &NotifyConfig,
    slots: &Semaphore,
    own: Option<&str>,
    node_wants: bool,
    env: &[(String, String)],
    cwd: Option<&str>,
    body: serde_json::Value,
    what: &str,
) {
    let Ok(_slot) = slots.acquire().await else {
        return;
    };
    let mut commands: Vec<&str> = own.into_iter().collect();
    if node_wants {
        commands.extend(config.command.as_deref());
    }
    for command in commands {
        run_command(command, env, cwd, config.timeout, what).await;
    }
    if node_wants {
        if let Some(url) = &config.url {
            post(url, body, config.timeout, what).await;
        }
    }
}

fn job_env(job: &JobRecord) -> Vec<(String, String)> {
    let mut env = vec![
        ("DROVER_JOB_ID".to_string(), job.id.to_string()),
        ("DROVER_JOB_NUMBER".to_string(), job.number.to_string()),
        ("DROVER_JOB_NAME".to_string(), job.name.clone()),
        ("DROVER_JOB_STATE".to_string(), job.state.to_string()),
        (
            "DROVER_JOB_REASON".to_string(),
            job.reason
                .as_ref()
                .map(ToString::to_string)
                .unwrap_or_default(),
        ),
    ];
    if let Some(code) = job.exit_code {
        env.push(("DROVER_JOB_EXIT_CODE".to_string(), code.to_string()));
    }
    if let Some(result) = &job.result {
        let text = result.to_string();
        if text.len() <= RESULT_IN_ENV {
            env.push(("DROVER_JOB_RESULT".to_string(), text));
        }
    }
    if let Some(member) = &job.group {
        env.push(("DROVER_GROUP_ID".to_string(), member.group.to_string()));
    }
    env
}

fn group_env(group: &GroupRecord) -> Vec<(String, String)> {
    let counts: Vec<String> = group
        .counts
        .iter()
        .map(|(state, n)| format!("{n} {state}"))
        .collect();
    vec![
        ("DROVER_GROUP_ID".to_string(), group.id.to_string()),
        ("DROVER_GROUP_NUMBER".to_string(), group.number.to_string()),
        ("DROVER_GROUP_NAME".to_string(), group.name.clone()),
        (
            "DROVER_GROUP_KIND".to_string(),
            group.kind.as_str().to_string(),
        ),
        ("DROVER_GROUP_STATE".to_string(), group.state.to_string()),
        ("DROVER_GROUP_JOBS".to_string(), group.jobs.to_string()),
        ("DROVER_GROUP_COUNTS".to_string(), counts.join(", ")),
    ]
}

/// Runs `sh -c command` in its own process group; past `timeout` the whole group is killed.
async fn run_command(
    command: &str,
    env: &[(String, String)],
    cwd: Option<&str>,
    timeout: Duration,
    what: &str,
) {
    let mut child = tokio::process::Command::new("sh");
    child
        .arg("-c")
        .arg(command)
        .envs(env.iter().map(|(k, v)| (k, v)))
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .process_group(0)
        .kill_on_drop(true);
    for secret in crate::NODE_SECRETS {
        child.env_remove(secret);
    }
    if let Some(dir) = cwd.filter(|d| std::path::Path::new(d).is_dir()) {
        child.current_dir(dir);
    }
    let child = match child.spawn() {
        Ok(child) => child,
        Err(err) => {
            tracing::warn!(%what, %command, error = %err, "cannot start the notify command");
            return;
        }
    };
    let pid = child.id().and_then(|p| i32::try_from(p).ok());
    match tokio::time::timeout(timeout, child.wait_with_output()).await {
        Ok(Ok(output)) if output.status.success() => {
            tracing::debug!(%what, %command, "notified");
        }
        Ok(Ok(output)) => {
            let stderr = String::from_utf8_lossy(&output.stderr);
            tracing::warn!(%what, %command, status = %output.status, stderr = %stderr.trim(), "the notify command failed");
        }
        Ok(Err(err)) => tracing::warn!(%what, %command, error = %err, "the notify command failed"),
        Err(_) => {
            // The leader is killed on drop; what it started goes with its group.
            if let Some(pid) = pid {
                // SAFETY: a plain syscall on a process group this node made.
                unsafe {
                    libc::kill(-pid, libc::SIGKILL);
                }
            }
            tracing::warn!(%what, %command, ?timeout, "the notify command took too long and was killed");
        }
    }
}

/// POSTs `body` as JSON to `url` (plain HTTP), giving up at `timeout`.
async fn post(url: &str, body: serde_json::Value, timeout: Duration, what: &str) {
    let request = hyper::Request::post(url)
        .header(hyper::header::CONTENT_TYPE, "application/json")
        .body(Full::new(Bytes::from(body.to_string())));
    let request = match request {
        Ok(request) => request,
        Err(err) => {
            tracing::warn!(%what, %url, error = %err, "bad notify URL");
            return;
        }
    };
    let client = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    match tokio::time::timeout(timeout, client.request(request)).await {
        Ok(Ok(answer)) if answer.status().is_success() => tracing::debug!(%what, %url, "notified"),
        Ok(Ok(answer)) => {
            tracing::warn!(%what, %url, status = %answer.status(), "the webhook refused the notice")
        }
        Ok(Err(err)) => tracing::warn!(%what, %url, error = %err, "the webhook cannot be reached"),
        Err(_) => tracing::warn!(%what, %url, ?timeout, "the webhook did not answer in time"),
    }
}
