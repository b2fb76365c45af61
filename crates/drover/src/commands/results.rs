//! `drover result JOB` and `drover results GROUP`: what jobs gave back, the aggregation people
//! otherwise write by hand. Results come from the store, so any node of a cluster answers.

use std::io::Write;

use drover_api::{GroupResults, ResultRow};
use drover_core::JobRecord;

use super::UsageError;
use super::refs::{resolve_group, resolve_one};
use crate::cli::{Cli, ResultArgs, ResultsArgs};
use crate::exit;

/// `drover result JOB`: the result as JSON (pretty on a terminal), exit 1 when it gave none.
pub fn result(cli: &Cli, args: &ResultArgs) -> anyhow::Result<u8> {
    let client = super::client(cli)?;
    let id = resolve_one(&client, &args.job)?;
    let job: JobRecord = client.get(&format!("/v1/jobs/{id}"))?;
    match &job.result {
        Some(result) => {
            crate::output::json(result)?;
            Ok(exit::OK)
        }
        None => {
            eprintln!(
                "drover: job {} ({}) gave no result ({})",
                job.number, job.name, job.state
            );
            Ok(exit::JOB_FAILED)
        }
    }
}

/// `drover results GROUP`: one row per job in sweep order.
pub fn results(cli: &Cli, args: &ResultsArgs) -> anyhow::Result<u8> {
    if cli.json && args.csv {
        return Err(UsageError("--json or --csv, not both".into()).into());
    }
    let client = super::client(cli)?;
    let id = resolve_group(&client, &args.group)?;
    let mut answer: GroupResults = client.get(&format!("/v1/groups/{id}/results"))?;
    if let Some(step) = &args.step {
        answer
            .results
            .retain(|r| r.step.as_deref() == Some(step.as_str()));
    }
    let mut out = std::io::stdout().lock();
    if cli.json {
        serde_json::to_writer_pretty(&mut out, &answer.results)?;
        writeln!(out)?;
    } else if args.csv {
        write!(out, "{}", csv(&answer.results))?;
    } else {
        write!(out, "{}", table(&answer))?;
    }
    if let Some(hint) = no_results_hint(&answer.results) {
        eprintln!("drover: {hint}");
    }
    Ok(exit::OK)
}

/// Why a user sees no results, when jobs succeeded and not one gave a result: most often the
/// job printed its JSON without `--result-stdout`.
fn no_results_hint(rows: &[ResultRow]) -> Option<&'static str> {
    let succeeded = rows
        .iter()
        .any(|r| r.state == drover_core::JobState::Succeeded);
    if succeeded && rows.iter().all(|r| r.result.is_none()) {
        Some(
            "no job gave a result: a result is the JSON a job writes to $DROVER_OUTPUT_DIR/result.json, \
             or its last line of stdout if it was submitted with --result-stdout",
        )
    } else {
        None
    }
}

/// The result's fields as columns when results are flat objects, else one `result` column.
fn result_columns(rows: &[ResultRow]) -> Vec<String> {
    let mut columns: Vec<String> = Vec::new();
    for row in rows {
        match &row.result {
            Some(serde_json::Value::Object(fields)) => {
                for key in fields.keys() {
                    if !columns.contains(key) {
                        columns.push(key.clone());
                    }
                }
            }
            Some(_) if !columns.iter().any(|c| c == "result") => columns.push("result".into()),
            _ => {}
        }
    }
    columns
}

fn cell(value: Option<&serde_json::Value>) -> String {
    match value {
        None | Some(serde_json::Value::Null) => String::new(),
        Some(serde_json::Value::String(s)) => s.clone(),
        Some(other) => other.to_string(),
    }
}

/// One field of a row for its column: a field of an object result, or the whole result.
fn field<'a>(row: &'a ResultRow, column: &str) -> Option<&'a serde_json::Value> {
    match &row.result {
        Some(serde_json::Value::Object(fields)) => fields.get(column),
        Some(other) if column == "result" => Some(other),
        _ => None,
    }
}

/// RFC 4180: quoted when it holds a comma, a quote or a line end.
fn quote(text: &str) -> String {
    if text.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", text.replace('"', "\"\""))
    } else {
        text.to_string()
    }
}

/// The CSV `--csv` prints: number, step (a flow's), index, each axis, state, then the result.
fn csv(rows: &[ResultRow]) -> String {
    let steps = rows.iter().any(|r| r.step.is_some());
    let mut axes: Vec<String> = Vec::new();
    for row in rows {
        for key in row.values.keys() {
            if !axes.contains(key) {
                axes.push(key.clone());
            }
        }
    }
    let columns = result_columns(rows);
    let mut header = vec!["job".to_string()];
    if steps {
        header.push("step".into());
    }
    header.push("index".into());
    header.extend(axes.iter().cloned());
    header.push("state".into());
    header.extend(columns.iter().cloned());
    let mut text = header
        .iter()
        .map(|h| quote(h))
        .collect::<Vec<_>>()
        .join(",");
    text.push('\n');
    for row in rows {
        let mut cells = vec![row.number.to_string()];
        if steps {
            cells.push(row.step.clone().unwrap_or_default());
        }
        cells.push(row.index.to_string());
        cells.extend(axes.iter().map(|a| cell(row.values.get(a))));
        cells.push(row.state.to_string());
        cells.extend(columns.iter().map(|c| cell(field(row, c))));
        text.push_str(&cells.iter().map(|c| quote(c)).collect::<Vec<_>>().join(","));
        text.push('\n');
    }
    text
}

/// The table people read: the group's line, then JOB, NAME, STATE, RESULT (clipped).
fn table(answer: &GroupResults) -> String {
    let mut text = format!("{}\n", super::group::group_line(&answer.group));
    let width = answer
        .results
        .iter()
        .map(|r| r.name.chars().count())
        .max()
        .unwrap_or(4)
        .max(4);
    text.push_str(&format!(
        "{:>6}  {:width$}  {:9}  RESULT\n",
        "JOB", "NAME", "STATE"
    ));
    for row in &answer.results {
        let result = match &row.result {
            Some(value) => crate::output::clip(&value.to_string(), 80),
            None => match &row.reason {
                Some(reason) if row.state != drover_core::JobState::Succeeded => {
                    format!("- ({reason})")
                }
                _ => "-".to_string(),
            },
        };
        text.push_str(&format!(
            "{:>6}  {:width$}  {:9}  {result}\n",
            row.number,
            row.name,
            row.state.as_str()
        ));
    }
    text
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn row(number: u64, values: &[(&str, &str)], result: Option<serde_json::Value>) -> ResultRow {
        ResultRow {
            id: drover_core::JobId::from_uuid(uuid::Uuid::nil()),
            number,
            name: format!("sim[{number}]"),
            step: None,
            index: 0,
            values: values
                .iter()
                .map(|(k, v)| (k.to_string(), serde_json::Value::String(v.to_string())))
                .collect(),
            state: drover_core::JobState::Succeeded,
            reason: None,
            result,
        }
    }

    #[test]
    fn csv_spreads_flat_results_into_columns_and_quotes() {
        let rows = vec![
            row(
                2,
                &[("n", "1")],
                Some(serde_json::json!({"sq": 1, "note": "a,b"})),
            ),
            row(
                3,
                &[("n", "2")],
                Some(serde_json::json!({"sq": 4, "extra": true})),
            ),
            row(4, &[("n", "3")], None),
        ];
        let text = csv(&rows);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], "job,index,n,state,sq,note,extra");
        assert_eq!(lines[1], "2,0,1,succeeded,1,\"a,b\",");
        assert_eq!(lines[2], "3,0,2,succeeded,4,,true");
        assert_eq!(lines[3], "4,0,3,succeeded,,,");
    }

    #[test]
    fn succeeded_jobs_without_any_result_get_a_hint() {
        let none = vec![row(2, &[], None), row(3, &[], None)];
        assert!(no_results_hint(&none).unwrap().contains("--result-stdout"));
        let one = vec![row(2, &[], None), row(3, &[], Some(serde_json::json!(1)))];
        assert_eq!(no_results_hint(&one), None);
        let mut failed = row(2, &[], None);
        failed.state = drover_core::JobState::Failed;
        assert_eq!(no_results_hint(&[failed]), None);
        assert_eq!(no_results_hint(&[]), None);
    }

    #[test]
    fn scalar_results_take_one_column() {
        let rows = vec![row(2, &[("value", "x")], Some(serde_json::json!(42)))];
        assert_eq!(
            csv(&rows).lines().collect::<Vec<_>>(),
            ["job,index,value,state,result", "2,0,x,succeeded,42"]
        );
    }
}
