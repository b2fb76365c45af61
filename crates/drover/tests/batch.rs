//! Issue #4: batch submit (all or nothing, errors by line) and `wait --all`.
#![allow(clippy::expect_used, clippy::unwrap_used)]

mod common;

use std::io::Write;
use std::process::{Command, Stdio};

use common::{BIN, Node, stdout};

fn submit_batch(node: &Node, lines: &str) -> std::process::Output {
    let mut child = Command::new(BIN)
        .args(["submit", "--batch", "-"])
        .env("DROVER_DATA_DIR", node.data_dir())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(lines.as_bytes())
        .expect("write");
    child.wait_with_output().expect("wait")
}

fn job_count(node: &Node) -> usize {
    let out = node.drover(&["status", "--json"]);
    serde_json::from_slice::<Vec<serde_json::Value>>(&out.stdout)
        .expect("json")
        .len()
}

#[test]
fn a_batch_gives_ids_in_input_order() {
    let node = Node::start(&[]);
    let lines = r#"{"argv": ["sh", "-c", "echo one"], "name": "one"}

{"argv": ["sh", "-c", "echo two"], "name": "two"}
{"argv": ["sh", "-c", "echo three"], "name": "three", "timeout": "1m"}
"#;
    let out = submit_batch(&node, lines);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let ids: Vec<String> = stdout(&out).lines().map(str::to_string).collect();
    assert_eq!(ids.len(), 3);
    let mut wait = vec!["wait", "--quiet"];
    wait.extend(ids.iter().map(String::as_str));
    assert_eq!(node.drover(&wait).status.code(), Some(0));
    for (id, word) in ids.iter().zip(["one", "two", "three"]) {
        assert_eq!(node.job(id)["name"], word, "ids come back in input order");
        assert_eq!(stdout(&node.drover(&["logs", id])), format!("{word}\n"));
    }
    // From a file too, with the caller's directory as the default cwd.
    let file = node.dir.path().join("jobs.jsonl");
    std::fs::write(&file, "{\"argv\": [\"pwd\"]}\n").expect("write");
    let out = node.drover(&["submit", "--batch", file.to_str().expect("utf-8")]);
    assert!(out.status.success());
    let id = stdout(&out).trim().to_string();
    assert_eq!(node.drover(&["wait", &id]).status.code(), Some(0));
    let here = std::env::current_dir().expect("cwd");
    assert_eq!(
        stdout(&node.drover(&["logs", &id])).trim(),
        here.to_str().expect("utf-8")
    );
}

#[test]
fn a_bad_line_stores_nothing_and_is_named() {
    let node = Node::start(&[]);
    let lines = r#"{"argv": ["true"]}
{"argv": ["true"], "timeout": "banana"}
{"argv": ["true"]}
"#;
    let out = submit_batch(&node, lines);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("line 2") && err.contains("timeout"), "{err}");
    assert!(stdout(&out).is_empty());
    assert_eq!(job_count(&node), 0, "nothing of a refused batch is stored");

    // A validation error (not a parse error), after a blank line: still the right line.
    let out = submit_batch(&node, "{\"argv\": [\"true\"]}\n\n{\"argv\": []}\n");
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("line 3") && err.contains("argv"), "{err}");
    // Malformed JSON is caught with its line before anything is sent.
    let out = submit_batch(&node, "{\"argv\": [\"true\"]}\n{oops\n");
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("line 2"));
    // An unknown field is named with its line.
    let out = submit_batch(&node, "{\"argv\": [\"true\"], \"retires\": 2}\n");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("line 1") && err.contains("retires"), "{err}");
    assert_eq!(job_count(&node), 0);
}

#[test]
fn wait_all_returns_when_the_queue_is_drained() {
    let node = Node::start(&["--slots", "2"]);
    let lines: String = (0..20)
        .map(|i| format!("{{\"argv\": [\"sh\", \"-c\", \"sleep 0.0{i}\"]}}\n"))
        .collect();
    let out = submit_batch(&node, &lines);
    assert!(out.status.success());
    let wait = node.drover(&["wait", "--all", "--quiet"]);
    assert_eq!(wait.status.code(), Some(0));
    assert!(stdout(&wait).is_empty(), "--quiet prints nothing");
    let jobs: Vec<serde_json::Value> =
        serde_json::from_slice(&node.drover(&["status", "--json"]).stdout).expect("json");
    assert_eq!(jobs.len(), 20);
    assert!(
        jobs.iter().all(|j| j["state"] == "succeeded"),
        "all ended when wait --all returned"
    );
    // Nothing to do: returns at once; and a timeout gives code 3 while work remains.
    assert_eq!(node.drover(&["wait", "--all"]).status.code(), Some(0));
    let id = node.submit(&["--", "sleep", "30"]);
    assert_eq!(
        node.drover(&["wait", "--all", "--timeout", "200ms"])
            .status
            .code(),
        Some(3)
    );
    node.drover(&["cancel", &id]);
}
