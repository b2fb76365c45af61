//! Text output for people: aligned tables and short renderings of times and sizes.

use chrono::{DateTime, Utc};
use drover_core::units::format_bytes;
use drover_core::{HumanDuration, JobRecord, JobState};

/// Prints rows as a table with aligned columns; the first row is the header.
pub fn table(rows: &[Vec<String>]) -> String {
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
    for row in rows {
        let mut line = String::new();
        for (c, cell) in row.iter().enumerate() {
            if c + 1 == row.len() {
                line.push_str(cell);
            } else {
                line.push_str(&format!("{cell:<width$}  ", width = widths[c]));
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
    let ms = (end - started).num_milliseconds().max(0) as u64;
    let secs = std::time::Duration::from_secs(ms / 1000);
    if ms < 1000 {
        format!("{ms}ms")
    } else {
        HumanDuration(secs).to_string()
    }
}

/// The outcome column: the reason if there is one, else a dash.
pub fn outcome(job: &JobRecord) -> String {
    match &job.reason {
        Some(reason) => reason.to_string(),
        None if job.cancel_requested => "cancel requested".to_string(),
        None => "-".to_string(),
    }
}

/// Peak memory, for people.
pub fn memory(job: &JobRecord) -> String {
    job.peak_memory_bytes.map_or("-".to_string(), format_bytes)
}

/// One job in detail.
pub fn detail(job: &JobRecord, now: DateTime<Utc>) -> String {
    let mut rows = vec![
        vec!["id".to_string(), job.id.to_string()],
        vec!["name".to_string(), job.name.clone()],
        vec!["state".to_string(), job.state.to_string()],
        vec!["argv".to_string(), shell_words(&job.argv)],
        vec!["reason".to_string(), outcome(job)],
        vec![
            "exit code".to_string(),
            job.exit_code.map_or("-".to_string(), |c| c.to_string()),
        ],
        vec![
            "attempt".to_string(),
            format!("{} of {}", job.attempt, job.spec.retries + 1),
        ],
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
    if let (JobState::Scheduled, Some(at)) = (job.state, job.not_before) {
        rows.push(vec!["not before".to_string(), at.to_rfc3339()]);
    }
    if job.state == JobState::Queued {
        let why = job
            .waiting_for
            .clone()
            .unwrap_or_else(|| "a free slot".to_string());
        rows.push(vec!["waiting".to_string(), why]);
    }
    let mut out = table(&rows);
    if job.attempts.len() > 1 {
        out.push_str("attempts:\n");
        let mut attempt_rows = vec![vec![
            "  #".into(),
            "STATE".into(),
            "REASON".into(),
            "NODE".into(),
        ]];
        for a in &job.attempts {
            attempt_rows.push(vec![
                format!("  {}", a.attempt),
                a.state.to_string(),
                a.reason.as_ref().map_or("-".to_string(), |r| r.to_string()),
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

/// `drover status`'s table of recent jobs, oldest first.
pub fn jobs_table(jobs: &[JobRecord], now: DateTime<Utc>) -> String {
    let mut rows = vec![header(&[
        "ID", "NAME", "STATE", "REASON", "ATTEMPT", "RUNTIME", "PEAK MEM",
    ])];
    for job in jobs.iter().rev() {
        rows.push(vec![
            job.id.to_string(),
            job.name.clone(),
            job.state.to_string(),
            outcome(job),
            job.attempt.to_string(),
            runtime(job, now),
            memory(job),
        ]);
    }
    table(&rows)
}

/// `drover dlq`'s table.
pub fn dead_letters_table(jobs: &[JobRecord]) -> String {
    let mut rows = vec![header(&["ID", "NAME", "STATE", "ATTEMPTS", "LAST REASON"])];
    for job in jobs {
        rows.push(vec![
            job.id.to_string(),
            job.name.clone(),
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
                drover_core::Size(node.load.reserved.memory_bytes),
                drover_core::Size(node.info.capacity.memory_bytes)
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

/// One `drover watch` line: sequence, time, job, attempt, what happened, state, reason.
pub fn event_line(event: &drover_api::Event) -> String {
    let reason = event
        .reason
        .as_ref()
        .map(|r| r.to_string())
        .unwrap_or_default();
    let attempt = event.attempt.map(|a| format!("#{a}")).unwrap_or_default();
    format!(
        "{:>8}  {}  {}  {:<3} {:<16} {:<10} {}",
        event.seq,
        event.at.format("%H:%M:%S%.3f"),
        event.job_id,
        attempt,
        event.kind.as_str(),
        event.state,
        reason
    )
}

fn header(names: &[&str]) -> Vec<String> {
    names.iter().map(|n| n.to_string()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_align_columns() {
        let rows = vec![
            vec!["ID".to_string(), "STATE".to_string()],
            vec!["a-long-id".to_string(), "running".to_string()],
        ];
        assert_eq!(table(&rows), "ID         STATE\na-long-id  running\n");
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
