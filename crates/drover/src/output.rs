//! Text output for people: aligned tables and short renderings of times and sizes.

use chrono::{DateTime, Utc};
use drover_core::units::format_bytes;
use drover_core::{JobRecord, JobState};

/// Prints `value` as pretty JSON on stdout (`--json`).
pub fn json(value: &impl serde::Serialize) -> anyhow::Result<()> {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    serde_json::to_writer_pretty(&mut out, value)?;
    writeln!(out)?;
    Ok(())
}

/// Whether to colour what goes to stdout: only on a terminal, and never with `NO_COLOR` set
/// (<https://no-color.org>) or `TERM=dumb`.
pub fn colour() -> bool {
    use std::io::IsTerminal;
    std::io::stdout().is_terminal()
        && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
        && std::env::var_os("TERM").is_none_or(|t| t != "dumb")
}

/// The ANSI colour of a state: green for success, red for a failure, yellow for a cancel,
/// cyan while it runs, none while it waits.
fn state_colour(state: &str) -> Option<&'static str> {
    match state {
        "succeeded" => Some("32"),
        "failed" | "timed_out" | "lost" => Some("31"),
        "cancelled" => Some("33"),
        "running" | "starting" => Some("36"),
        _ => None,
    }
}

/// `text` in `colour` (an SGR code), when colours are on.
pub fn paint(text: &str, colour: Option<&str>, on: bool) -> String {
    match colour {
        Some(code) if on => format!("\x1b[{code}m{text}\x1b[0m"),
        _ => text.to_string(),
    }
}

/// At most `max` characters of `text`, the cut marked with `…`.
pub fn clip(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        return text.to_string();
    }
    let kept: String = text.chars().take(max.saturating_sub(1)).collect();
    format!("{kept}…")
}

/// A length of time for people, to the precision that matters: `850ms`, `12.3s`, `4m05s`,
/// `1h02m`, `3d04h`.
pub fn elapsed(ms: u64) -> String {
    let secs = ms / 1000;
    match secs {
        0 => format!("{ms}ms"),
        1..60 => format!("{:.1}s", ms as f64 / 1000.0),
        60..3600 => format!("{}m{:02}s", secs / 60, secs % 60),
        3600..86_400 => format!("{}h{:02}m", secs / 3600, secs % 3600 / 60),
        _ => format!("{}d{:02}h", secs / 86_400, secs % 86_400 / 3600),
    }
}

/// A sparkline of `values` in block characters (`▁▂▃▅▇`), scaled to `top` (a limit) or to
/// the highest value.
pub fn sparkline(values: &[u64], top: Option<u64>) -> String {
    const BLOCKS: [char; 8] = ['▁', '▂', '▃', '▄', '▅', '▆', '▇', '█'];
    let top = top
        .unwrap_or(0)
        .max(values.iter().copied().max().unwrap_or(0))
        .max(1);
    values
        .iter()
        .map(|v| {
            let level = (v.saturating_mul(7) + top / 2) / top;
            BLOCKS[usize::try_from(level).unwrap_or(7).min(7)]
        })
        .collect()
}

/// Prints rows as a table with aligned columns; the first row is the header. A `STATE` column
/// is coloured by state when colours are on.
pub fn table(rows: &[Vec<String>]) -> String {
    table_coloured(rows, colour())
}

fn table_coloured(rows: &[Vec<String>], on: bool) -> String {
    let state_column = rows
        .first()
        .and_then(|header| header.iter().position(|h| h == "STATE"));
    let columns = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..columns)
        .map(|c| {
            rows.iter()
                .filter_map(|r| r.get(c))
                .map(|s| s.chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    for (r, row) in rows.iter().enumerate() {
        let mut line = String::new();
        for (c, cell) in row.iter().enumerate() {
            let padded = if c + 1 == row.len() {
                cell.clone()
            } else {
                let pad = widths[c].saturating_sub(cell.chars().count());
                format!("{cell}{}  ", " ".repeat(pad))
            };
            if r > 0 && Some(c) == state_column {
                // Colour the word only, so the padding stays plain and the columns aligned.
                let painted = paint(cell, state_colour(cell), on);
                line.push_str(&padded.replacen(cell.as_str(), &painted, 1));
            } else {
                line.push_str(&padded);
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// Run time of the latest attempt: finished − started, or now − started while running.
pub fn runtime(job: &JobRecord, now: DateTime<Utc>) -> String {
    let Some(started) = job.started_at else {
        return "-".to_string();
    };
    let end = job
        .current_attempt()
        .and_then(|a| a.finished_at)
        .unwrap_or(now);
    elapsed((end - started).num_milliseconds().max(0) as u64)
}

/// The outcome column: the reason if there is one, else what it waits for, else a dash.
pub fn outcome(job: &JobRecord) -> String {
    match (&job.reason, &job.waiting_for) {
        (Some(reason), _) => reason.to_string(),
        (None, _) if job.cancel_requested => "cancel requested".to_string(),
        (None, Some(waiting)) => waiting.clone(),
        (None, None) if job.state == JobState::Queued => "waiting for a free slot".to_string(),
        (None, None) if job.state == JobState::Scheduled => match job.not_before {
            Some(at) => format!(
                "starts {}",
                at.with_timezone(&chrono::Local).format("%Y-%m-%d %H:%M:%S")
            ),
            None => "-".to_string(),
        },
        (None, None) => "-".to_string(),
    }
}

/// Peak memory, for people.
pub fn memory(job: &JobRecord) -> String {
    job.peak_memory_bytes.map_or("-".to_string(), format_bytes)
}

/// How a job that did not succeed ended, in one line for people — `job … failed:
/// memory_limit (peak 100 MiB of 100 MiB)`, `job … timed out after 2s` — or `None` for one
/// that succeeded or has not ended.
pub fn ending(job: &JobRecord) -> Option<String> {
    use drover_core::Reason;
    let id = job.number;
    let attempts = match job.attempt {
        0 | 1 => String::new(),
        n => format!(" ({n} attempts)"),
    };
    let why = match (&job.reason, job.state) {
        (_, JobState::Succeeded) => return None,
        (_, state) if !state.is_terminal() => return None,
        (_, JobState::TimedOut) => {
            return Some(format!(
                "job {id} timed out after {}{attempts}",
                job.spec.timeout
            ));
        }
        (_, JobState::Cancelled) => return Some(format!("job {id} was cancelled")),
        (Some(Reason::ExitCode(code)), _) => format!("exit code {code}"),
        (Some(Reason::Signal(signal)), _) => {
            format!("killed by {}", drover_core::reason::signal_name(*signal))
        }
        (Some(Reason::SpawnFailed(error)), _) => {
            // "No such file or directory (os error 2)": the program says more than the number.
            let error = match error.rsplit_once(" (os error ") {
                Some((text, _)) => text,
                None => error.as_str(),
            };
            let program = job.argv.first().map(String::as_str).unwrap_or("");
            format!("spawn_failed: {error} ({program})")
        }
        (Some(Reason::MemoryLimit), _) => {
            let limit = job
                .current_attempt()
                .and_then(|a| a.memory_limit_bytes)
                .or(job.spec.memory.map(|m| m.bytes()));
            match (job.peak_memory_bytes, limit) {
                (Some(peak), Some(limit)) => format!(
                    "memory_limit (peak {} of {})",
                    format_bytes(peak),
                    format_bytes(limit)
                ),
                _ => "memory_limit".to_string(),
            }
        }
        (Some(Reason::PidsLimit), _) => match job.spec.pids {
            Some(pids) => format!("pids_limit (at most {pids} processes)"),
            None => "pids_limit".to_string(),
        },
        (Some(Reason::Stalled), _) => match job.spec.stall {
            Some(stall) => format!("stalled (no output or heartbeat for {stall})"),
            None => "stalled".to_string(),
        },
        (Some(Reason::DependencyFailed(Some(other))), _) => {
            format!("dependency_failed (job {other} did not succeed)")
        }
        (Some(reason), _) => reason.to_string(),
        (None, state) => state.to_string(),
    };
    let verb = match job.state {
        JobState::Lost => "was lost",
        _ => "failed",
    };
    Some(format!("job {id} {verb}: {why}{attempts}"))
}

/// A stream's cut in words: `stdout: kept 4.7 MiB of 5.7 MiB (No space left on device)`.
pub fn log_cut(cut: &drover_core::LogCut) -> String {
    let why = match cut.error.as_deref() {
        // "No space left on device (os error 28)": the words say it; the number does not.
        Some(error) => error
            .rsplit_once(" (os error ")
            .map_or(error, |(text, _)| text)
            .to_string(),
        None => "the limit of serve --max-log-size".to_string(),
    };
    format!(
        "{}: kept {} of {} ({why})",
        cut.stream,
        format_bytes(cut.kept_bytes),
        format_bytes(cut.written_bytes)
    )
}

/// What part of a session or pool a job is, for `status JOB`.
pub fn role_text(role: &drover_core::SessionRole) -> String {
    use drover_core::SessionRole;
    match role {
        SessionRole::Host { kind } => {
            format!("a {kind} session's interpreter (`drover exec NAME`)")
        }
        SessionRole::Exec { session } => format!("an exec in the session of job {session}"),
        SessionRole::PoolParent { pool, kind, .. } => {
            format!("a parent of the {kind} pool `{pool}`")
        }
        SessionRole::Pooled { pool } => format!("a job of the pool `{pool}`, forked warm"),
    }
}

/// One job in detail.
pub fn detail(job: &JobRecord, now: DateTime<Utc>) -> String {
    let mut rows = vec![
        vec!["job".to_string(), job.number.to_string()],
        vec!["id".to_string(), job.id.to_string()],
        vec!["name".to_string(), job.name.clone()],
        vec!["queue".to_string(), job.spec.queue_name().to_string()],
        vec!["state".to_string(), job.state.to_string()],
        vec!["argv".to_string(), shell_words(&job.argv)],
        vec![
            "cwd".to_string(),
            job.spec
                .cwd
                .clone()
                .unwrap_or_else(|| "(the node's)".into()),
        ],
        vec![
            "reason".to_string(),
            job.reason
                .as_ref()
                .map_or("-".to_string(), ToString::to_string),
        ],
        vec![
            "exit code".to_string(),
            job.exit_code.map_or("-".to_string(), |c| c.to_string()),
        ],
        vec!["attempt".to_string(), {
            // A retry gives a fresh budget, so the count may pass the first one's.
            let budget = job.spec.retries + 1;
            if job.attempt > budget {
                job.attempt.to_string()
            } else {
                format!("{} of {budget}", job.attempt)
            }
        }],
        vec![
            "node".to_string(),
            job.node.as_ref().map_or("-".to_string(), |n| n.to_string()),
        ],
        vec!["created".to_string(), job.created_at.to_rfc3339()],
        vec!["runtime".to_string(), runtime(job, now)],
        vec!["peak memory".to_string(), memory(job)],
        vec![
            "cpu time".to_string(),
            job.cpu_time_ms
                .map_or("-".to_string(), |ms| format!("{:.2}s", ms as f64 / 1000.0)),
        ],
        vec!["timeout".to_string(), job.spec.timeout.to_string()],
    ];
    if let Some(role) = &job.spec.session {
        rows.insert(6, vec!["role".to_string(), role_text(role)]);
    }
    if let Some(series) = job
        .current_attempt()
        .and_then(|a| a.usage_series.as_ref())
        .filter(|s| !s.points.is_empty())
    {
        // The whole series in one line's width: 60 marks at most.
        let thin = series.thinned(60);
        let values: Vec<u64> = thin
            .points
            .iter()
            .map(|p| p.memory_bytes.unwrap_or(0))
            .collect();
        let limit = job.current_attempt().and_then(|a| a.memory_limit_bytes);
        let highest = series.peak_memory().map_or("-".into(), format_bytes);
        let span = series.latest().map_or(0, |p| p.at_ms);
        rows.push(vec![
            "memory use".to_string(),
            format!(
                "{} highest {highest} over {}, {} samples",
                sparkline(&values, limit),
                elapsed(span),
                series.points.len()
            ),
        ]);
    }
    let spec = &job.spec;
    let mut limits = Vec::new();
    if let Some(memory) = spec.memory {
        limits.push(format!("memory {}", format_bytes(memory.bytes())));
    }
    if let Some(cpus) = spec.cpus {
        limits.push(format!("cpus {cpus}"));
    }
    if let Some(pids) = spec.pids {
        limits.push(format!("pids {pids}"));
    }
    if let Some(nofile) = spec.nofile {
        limits.push(format!("nofile {nofile}"));
    }
    if let Some(stall) = spec.stall {
        limits.push(format!("stall {stall}"));
    }
    if !limits.is_empty() {
        rows.push(vec!["limits".to_string(), limits.join(", ")]);
    }
    if !spec.after.is_empty() {
        let ids: Vec<String> = spec.after.iter().map(|id| id.to_string()).collect();
        rows.push(vec!["after".to_string(), ids.join(", ")]);
    }
    if let Some(attempt) = job.current_attempt() {
        for cut in &attempt.log_cuts {
            rows.push(vec!["output cut".to_string(), log_cut(cut)]);
        }
    }
    if let (JobState::Scheduled, Some(at)) = (job.state, job.not_before) {
        rows.push(vec!["not before".to_string(), at.to_rfc3339()]);
    }
    if matches!(job.state, JobState::Queued | JobState::Blocked) {
        let why = job
            .waiting_for
            .clone()
            .unwrap_or_else(|| "waiting for a free slot".to_string());
        rows.push(vec!["waiting".to_string(), why]);
    }
    let mut out = table(&rows);
    if job.attempts.len() > 1 {
        out.push_str("attempts:\n");
        let mut attempt_rows = vec![vec![
            "  #".into(),
            "STATE".into(),
            "REASON".into(),
            "PEAK MEM".into(),
            "LIMIT".into(),
            "NODE".into(),
        ]];
        for a in &job.attempts {
            attempt_rows.push(vec![
                format!("  {}", a.attempt),
                a.state.to_string(),
                a.reason.as_ref().map_or("-".to_string(), |r| r.to_string()),
                a.peak_memory_bytes.map_or("-".to_string(), format_bytes),
                a.memory_limit_bytes.map_or("-".to_string(), format_bytes),
                a.node.to_string(),
            ]);
        }
        out.push_str(&table(&attempt_rows));
    }
    out
}

/// `drover doctor` for people.
pub fn doctor_text(info: &drover_api::NodeReport) -> String {
    let c = &info.containment;
    let mut out = format!(
        "backend: {}
  why: {}
",
        c.backend, c.why
    );
    for path in &c.cgroup_paths {
        out.push_str(&format!(
            "  cgroup: {}
",
            path.display()
        ));
    }
    out.push_str(
        "limits:
",
    );
    let mut rows = Vec::new();
    for l in &c.limits {
        rows.push(vec![
            format!("  {}", l.limit),
            if l.enforced {
                "enforced"
            } else {
                "NOT enforced"
            }
            .to_string(),
            l.how.clone(),
        ]);
    }
    out.push_str(&table(&rows));
    out.push_str(&format!(
        "capacity: {}
",
        info.capacity.describe()
    ));
    if let Some(m) = info.host_memory {
        out.push_str(&format!(
            "machine memory: {} total, {} available
",
            format_bytes(m.total_bytes),
            format_bytes(m.available_bytes)
        ));
    }
    let pressure = |p: Option<drover_node::Pressure>| {
        p.map_or("not available".to_string(), |p| {
            format!("{:.2}% (10 s), {:.2}% (60 s)", p.avg10, p.avg60)
        })
    };
    out.push_str(&format!(
        "pressure: memory {}; cpu {}
",
        pressure(info.pressure.memory),
        pressure(info.pressure.cpu)
    ));
    out
}

/// argv as a person would type it.
pub fn shell_words(argv: &[String]) -> String {
    argv.iter()
        .map(|a| {
            if !a.is_empty()
                && a.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_./=:,+@%".contains(c))
            {
                a.clone()
            } else {
                format!("'{}'", a.replace('\'', "'\\''"))
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// `drover status`'s table of recent jobs, oldest first, in 100 columns: a job's number is
/// what commands take for it (`drover status 42` shows the whole id); long names and reasons
/// are clipped (`--json` has them whole).
pub fn jobs_table(jobs: &[JobRecord], now: DateTime<Utc>) -> String {
    let mut rows = vec![header(&[
        "JOB", "NAME", "QUEUE", "STATE", "RUNTIME", "PEAK MEM", "REASON",
    ])];
    for job in jobs.iter().rev() {
        let mut state = job.state.to_string();
        if job.attempt > 1 {
            state.push_str(&format!(" #{}", job.attempt));
        }
        rows.push(vec![
            job.number.to_string(),
            clip(&job.name, 18),
            clip(job.spec.queue_name(), 10),
            state,
            runtime(job, now),
            memory(job),
            clip(&outcome(job), 34),
        ]);
    }
    table(&rows)
}

/// `drover dlq`'s table.
pub fn dead_letters_table(jobs: &[JobRecord]) -> String {
    let mut rows = vec![header(&["JOB", "NAME", "STATE", "ATTEMPTS", "LAST REASON"])];
    for job in jobs {
        rows.push(vec![
            job.number.to_string(),
            clip(&job.name, 24),
            job.state.to_string(),
            job.attempt.to_string(),
            outcome(job),
        ]);
    }
    table(&rows)
}

/// `drover queue ls`'s table. DEFERRED counts jobs waiting for a time or for other jobs.
pub fn queues_table(queues: &[drover_api::QueueInfo]) -> String {
    let mut rows = vec![header(&[
        "QUEUE",
        "STATE",
        "CONCURRENCY",
        "QUEUED",
        "DEFERRED",
        "RUNNING",
    ])];
    for q in queues {
        rows.push(vec![
            q.name.clone(),
            if q.paused { "paused" } else { "active" }.to_string(),
            q.concurrency.map_or("-".to_string(), |n| n.to_string()),
            q.queued.to_string(),
            q.deferred.to_string(),
            q.running.to_string(),
        ]);
    }
    table(&rows)
}

/// `drover nodes`'s table.
pub fn nodes_table(nodes: &[drover_api::NodeRecord], now: DateTime<Utc>) -> String {
    let mut rows = vec![header(&[
        "NODE",
        "HOST",
        "STATE",
        "LABELS",
        "SLOTS",
        "RUNNING",
        "MEMORY",
        "CPUS",
        "HEARTBEAT",
    ])];
    let cpus = |millis: u64| f64::from(u32::try_from(millis).unwrap_or(u32::MAX)) / 1000.0;
    for node in nodes {
        let ago = (now - node.heartbeat_at).num_milliseconds().max(0) as f64 / 1000.0;
        rows.push(vec![
            node.info.id.to_string(),
            node.info.hostname.clone(),
            node.state.to_string(),
            drover_core::node::describe_labels(&node.info.labels),
            node.info.slots.to_string(),
            node.load.running.to_string(),
            format!(
                "{}/{}",
                format_bytes(node.load.reserved.memory_bytes),
                format_bytes(node.info.capacity.memory_bytes)
            ),
            format!(
                "{}/{}",
                cpus(node.load.reserved.cpu_millis),
                cpus(node.info.capacity.cpu_millis)
            ),
            format!("{ago:.1}s ago"),
        ]);
    }
    table(&rows)
}

/// The header of `drover watch`'s lines.
pub const EVENT_HEADER: &str =
    "     SEQ  TIME          JOB     NAME              TRY EVENT            STATE       REASON";

/// One `drover watch` line: sequence, local time, the job's number and name, attempt, what
/// happened, state, reason.
pub fn event_line(event: &drover_api::Event, job: Option<(u64, &str)>) -> String {
    let reason = event
        .reason
        .as_ref()
        .map(|r| r.to_string())
        .unwrap_or_default();
    let attempt = event.attempt.map(|a| format!("#{a}")).unwrap_or_default();
    let (number, name) = match job {
        Some((number, name)) => (number.to_string(), clip(name, 16)),
        None => (event.job_id.to_string()[..8].to_string(), "?".to_string()),
    };
    let line = format!(
        "{:>8}  {}  {:<7} {:<17} {:<3} {:<16} {:<11} {}",
        event.seq,
        event
            .at
            .with_timezone(&chrono::Local)
            .format("%H:%M:%S%.3f"),
        number,
        name,
        attempt,
        event.kind.as_str(),
        event.state,
        reason
    );
    line.trim_end().to_string()
}

fn header(names: &[&str]) -> Vec<String> {
    names.iter().map(|n| n.to_string()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sparkline_rises_with_its_values_and_scales_to_its_limit() {
        assert_eq!(sparkline(&[0, 1, 2, 3, 4, 5, 6, 7], None), "▁▂▃▄▅▆▇█");
        assert_eq!(
            sparkline(&[10, 10], Some(80)),
            "▂▂",
            "scaled to the limit, not the values"
        );
        assert_eq!(sparkline(&[], None), "");
    }

    #[test]
    fn a_cut_log_says_what_was_kept_and_why() {
        let mut cut = drover_core::LogCut {
            stream: drover_core::Stream::Stdout,
            written_bytes: 6 << 20,
            kept_bytes: 4 << 20,
            error: Some("No space left on device (os error 28)".into()),
        };
        assert_eq!(
            log_cut(&cut),
            "stdout: kept 4.0 MiB of 6.0 MiB (No space left on device)"
        );
        cut.error = None;
        cut.stream = drover_core::Stream::Stderr;
        assert_eq!(
            log_cut(&cut),
            "stderr: kept 4.0 MiB of 6.0 MiB (the limit of serve --max-log-size)"
        );
    }

    #[test]
    fn tables_align_columns() {
        let rows = vec![
            vec!["ID".to_string(), "STATE".to_string()],
            vec!["a-long-id".to_string(), "running".to_string()],
        ];
        assert_eq!(
            table_coloured(&rows, false),
            "ID         STATE\na-long-id  running\n"
        );
        let coloured = table_coloured(&rows, true);
        assert_eq!(
            coloured,
            "ID         STATE\na-long-id  \x1b[36mrunning\x1b[0m\n"
        );
    }

    #[test]
    fn times_are_shown_to_the_precision_that_matters() {
        let cases = [
            (850, "850ms"),
            (12_345, "12.3s"),
            (245_000, "4m05s"),
            (3_720_000, "1h02m"),
            (273_600_000, "3d04h"),
        ];
        for (ms, text) in cases {
            assert_eq!(elapsed(ms), text);
        }
        assert_eq!(clip("abcdef", 4), "abc…");
        assert_eq!(clip("abc", 4), "abc");
    }

    #[test]
    fn endings_name_the_reason_and_its_numbers() {
        let mut job: JobRecord = serde_json::from_value(serde_json::json!({
            "id": "01935f3e-0000-7000-8000-000000000001", "number": 7, "name": "big",
            "state": "failed",
            "argv": ["nonexistent-program"], "attempt": 1, "node": null, "exit_code": null,
            "signal": null, "reason": "spawn_failed: No such file or directory (os error 2)",
            "created_at": "2026-12-01T00:00:00Z", "started_at": null, "finished_at": null,
            "peak_memory_bytes": null, "cpu_time_ms": null, "cancel_requested": false,
            "spec": {"argv": ["nonexistent-program"], "timeout": "2s"}, "attempts": []
        }))
        .unwrap();
        let line = ending(&job).unwrap();
        assert!(
            line.ends_with("failed: spawn_failed: No such file or directory (nonexistent-program)"),
            "{line}"
        );
        job.reason = Some(drover_core::Reason::MemoryLimit);
        job.peak_memory_bytes = Some(100 << 20);
        job.spec.memory = Some(drover_core::Size(100 << 20));
        let line = ending(&job).unwrap();
        assert!(
            line.ends_with("memory_limit (peak 100 MiB of 100 MiB)"),
            "{line}"
        );
        job.state = JobState::TimedOut;
        job.attempt = 3;
        assert!(
            ending(&job)
                .unwrap()
                .ends_with("timed out after 2s (3 attempts)")
        );
        job.state = JobState::Succeeded;
        assert_eq!(ending(&job), None);
    }

    #[test]
    fn shell_words_quote_what_needs_it() {
        let argv = vec![
            "sh".to_string(),
            "-c".to_string(),
            "echo 'hi' there".to_string(),
        ];
        assert_eq!(shell_words(&argv), "sh -c 'echo '\\''hi'\\'' there'");
    }
}
