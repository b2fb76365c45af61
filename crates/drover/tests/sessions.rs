//! #19: sessions. A Python or gp interpreter runs as one job and keeps its variables between
//! `drover exec`s; each exec is a job of its own with its output, exit status and timeout; an
//! exec that times out interrupts the code, not the session; the session outlives a kill -9 of
//! its node.
#![allow(clippy::expect_used, clippy::unwrap_used)]

mod common;

use std::process::Output;

use common::{Node, stdout};
use serde_json::Value;

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// `drover exec NAME -- CODE` against `node`.
fn exec(node: &Node, session: &str, code: &str, extra: &[&str]) -> Output {
    let mut args = vec!["exec", session];
    args.extend_from_slice(extra);
    args.extend(["--", code]);
    node.drover(&args)
}

fn start(node: &Node, name: &str, kind: &str) {
    let out = node.drover(&["session", "start", name, "--kind", kind]);
    assert!(
        out.status.success(),
        "session start: {}\n{}",
        stderr(&out),
        node.log()
    );
    assert!(stdout(&out).contains(&format!("session {name} runs")));
}

/// The exec jobs of a session, newest first.
fn execs(node: &Node, session: &str) -> Vec<Value> {
    let out = node.drover(&["status", "--json", "--name", &format!("{session}/exec")]);
    assert!(out.status.success(), "{}", stderr(&out));
    let jobs: Value = serde_json::from_slice(&out.stdout).expect("json");
    jobs.as_array().expect("array").clone()
}

fn gp_required() -> bool {
    let installed = std::process::Command::new("sh")
        .args(["-c", "command -v gp"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !installed {
        assert!(
            std::env::var_os("DROVER_REQUIRE_GP").is_none(),
            "DROVER_REQUIRE_GP is set but gp is not installed"
        );
        eprintln!("sessions: gp is not installed; skipping the gp session");
    }
    installed
}

/// Acceptance 3, on a node with one slot: the session's host takes none, so its execs run.
#[test]
fn a_python_session_keeps_its_state_and_survives_errors_and_timeouts() {
    let node = Node::start(&["--slots", "1"]);
    start(&node, "py", "python");

    let set = exec(&node, "py", "x = 41", &[]);
    assert!(set.status.success(), "{}", stderr(&set));
    let get = exec(&node, "py", "print(x + 1)", &[]);
    assert!(get.status.success(), "{}", stderr(&get));
    assert_eq!(stdout(&get), "42\n");
    // A last bare expression is printed, as at a prompt.
    assert_eq!(stdout(&exec(&node, "py", "x * 2", &[])), "82\n");

    let raised = exec(&node, "py", "def f():\n    return 1 / 0\nf()", &[]);
    assert_eq!(raised.status.code(), Some(1), "{}", stderr(&raised));
    let text = stderr(&raised);
    assert!(
        text.contains("ZeroDivisionError: division by zero"),
        "{text}"
    );
    assert!(text.contains("line 2, in f"), "the user's frames: {text}");
    assert!(!text.contains("shim"), "no frame of drover's shim: {text}");

    let looped = exec(&node, "py", "while True: pass", &["--timeout", "1s"]);
    assert_eq!(
        looped.status.code(),
        Some(124),
        "a timeout exits 124, as run does"
    );
    assert!(
        stderr(&looped).contains("KeyboardInterrupt"),
        "{}",
        stderr(&looped)
    );
    let timed_out = &execs(&node, "py")[0];
    assert_eq!(timed_out["state"], "timed_out", "{timed_out:#}");

    // The session answers the next exec, its state intact.
    let after = exec(&node, "py", "print('still', x)", &[]);
    assert!(after.status.success(), "{}", stderr(&after));
    assert_eq!(stdout(&after), "still 41\n");

    // Code from stdin.
    let mut piped = node.command(&["exec", "py"]);
    piped.stdin(std::process::Stdio::piped());
    piped.stdout(std::process::Stdio::piped());
    let mut child = piped.spawn().unwrap();
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"y = x + 1\nprint(y)\n")
        .unwrap();
    let piped = child.wait_with_output().unwrap();
    assert_eq!(stdout(&piped), "42\n");

    // Every exec is a job of its own, and the session is listed.
    assert_eq!(execs(&node, "py").len(), 7);
    let ls = node.drover(&["session", "ls"]);
    assert!(stdout(&ls).contains("py") && stdout(&ls).contains("python"));

    let stop = node.drover(&["session", "stop", "py"]);
    assert!(stop.status.success(), "{}", stderr(&stop));
    let gone = exec(&node, "py", "print(x)", &[]);
    assert_eq!(gone.status.code(), Some(4), "{}", stderr(&gone));
    assert!(stderr(&gone).contains("no session named `py`"));
}

/// Acceptance 4: a gp session keeps a variable between two execs; a GP error is a failure with
/// its message, and the session goes on.
#[test]
fn a_gp_session_keeps_a_variable() {
    if !gp_required() {
        return;
    }
    let node = Node::start(&[]);
    start(&node, "g", "gp");
    let set = exec(&node, "g", "v = 2^64 + 1;", &[]);
    assert!(set.status.success(), "{}", stderr(&set));
    assert_eq!(stdout(&set), "", "a trailing `;` prints nothing");
    let get = exec(&node, "g", "v - 1", &[]);
    assert_eq!(stdout(&get), "18446744073709551616\n", "{}", stderr(&get));

    let failed = exec(&node, "g", "1/0", &[]);
    assert_eq!(failed.status.code(), Some(1));
    assert!(
        stderr(&failed).contains("impossible inverse"),
        "{}",
        stderr(&failed)
    );
    // Several lines, and a function over several lines in braces, as at gp's prompt.
    let lines = exec(
        &node,
        "g",
        "f(n) = {\n  my(s = 0);\n  for(i = 1, n, s += i);\n  s\n}\nf(100) + v - v",
        &[],
    );
    assert_eq!(stdout(&lines), "5050\n", "{}", stderr(&lines));

    let looped = exec(&node, "g", "for(i = 1, 10^12, )", &["--timeout", "1s"]);
    assert!(!looped.status.success());
    assert!(stderr(&looped).contains("user interrupt"));
    assert_eq!(
        stdout(&exec(&node, "g", "print(v)", &[])),
        "18446744073709551617\n"
    );
    assert!(node.drover(&["session", "stop", "g"]).status.success());
}

/// Acceptance 6: kill -9 of the node and a restart; the session answers with its state.
#[test]
fn a_session_survives_a_kill_of_its_node() {
    let mut node = Node::start(&[]);
    start(&node, "keep", "python");
    assert!(
        exec(&node, "keep", "import os\nstate = [1, 2, 3]", &[])
            .status
            .success()
    );
    let before = stdout(&exec(&node, "keep", "print(os.getpid())", &[]));

    node.kill9();
    node.restart();

    let after = exec(&node, "keep", "print(state, os.getpid())", &[]);
    assert!(after.status.success(), "{}\n{}", stderr(&after), node.log());
    assert_eq!(stdout(&after), format!("[1, 2, 3] {}", before));
    assert!(node.drover(&["session", "stop", "keep"]).status.success());
}

/// A name is one session at a time; `--name` is not how a session is named.
#[test]
fn a_session_name_is_taken_once() {
    let node = Node::start(&[]);
    start(&node, "one", "python");
    let again = node.drover(&["session", "start", "one", "--kind", "python"]);
    assert_eq!(again.status.code(), Some(2), "{}", stderr(&again));
    assert!(stderr(&again).contains("already exists"));
    let named = node.drover(&["session", "start", "two", "--kind", "python", "--name", "x"]);
    assert_eq!(named.status.code(), Some(2));
    let broken = node.drover(&[
        "session",
        "start",
        "bad",
        "--kind",
        "python",
        "--",
        "no-such-python",
    ]);
    assert!(!broken.status.success());
    assert!(
        stderr(&broken).contains("ended as it started"),
        "{}",
        stderr(&broken)
    );
    assert!(node.drover(&["session", "stop", "one"]).status.success());
}
