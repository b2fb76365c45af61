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
    if job.state == JobState::Queued {
        rows.push(vec!["waiting for".to_string(), "a free slot".to_string()]);
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
