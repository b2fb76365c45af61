//! Everyday use, end to end: jobs run in the submitter's environment, endings explain
//! themselves, jobs are named by number, prefix or name, and waiting jobs say why.
#![allow(clippy::expect_used, clippy::unwrap_used)]

mod common;

use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::process::Output;

use common::{BIN, Node, stdout};
use serde_json::Value;

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// A directory like a virtual environment's `bin`, with one program of its own.
fn venv(dir: &std::path::Path) -> std::path::PathBuf {
    let bin = dir.join("venv/bin");
    std::fs::create_dir_all(&bin).unwrap();
    let probe = bin.join("drover-venv-probe");
    std::fs::write(&probe, "#!/bin/sh\necho from-the-venv\n").unwrap();
    std::fs::set_permissions(&probe, std::fs::Permissions::from_mode(0o755)).unwrap();
    bin
}

/// Acceptance 1: a job gets the submitting shell's variables and PATH, and with --env-clear
/// (or `[submit] env_clear` in drover.toml) it does not. Every job can reach the node itself.
#[test]
fn jobs_run_in_the_submitters_environment() {
    let node = Node::start(&[]);
    let dir = tempfile::tempdir().unwrap();
    let bin = venv(dir.path());
    let path = format!("{}:{}", bin.display(), std::env::var("PATH").unwrap());
    let script = "echo P=$P; command -v drover-venv-probe || echo no-probe";
    let run = |extra: &[&str]| {
        let mut args = vec!["run"];
        args.extend_from_slice(extra);
        args.extend(["--", "sh", "-c", script]);
        let out = node
            .command(&args)
            .env("PATH", &path)
            .env("P", "42")
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
        stdout(&out)
    };
    let probe = bin.join("drover-venv-probe");
    assert_eq!(run(&[]), format!("P=42\n{}\n", probe.display()));
    assert_eq!(run(&["--env-clear"]), "P=\nno-probe\n");
    assert_eq!(run(&["--env-clear", "-e", "P=7"]), "P=7\nno-probe\n");

    // The environment is stored with the job, as the rest of its spec.
    let listed: Value = serde_json::from_str(&stdout(&node.drover(&["status", "--json"]))).unwrap();
    let first = listed.as_array().unwrap().last().unwrap();
    assert_eq!(first["spec"]["env"]["P"], "42");
    assert_eq!(first["spec"]["env_clear"], true);

    // drover.toml can make a clean environment the default.
    std::fs::write(
        node.data_dir().join("drover.toml"),
        "[submit]\nenv_clear = true\n",
    )
    .unwrap();
    assert_eq!(run(&[]), "P=\nno-probe\n");
    std::fs::remove_file(node.data_dir().join("drover.toml")).unwrap();

    // A job reaches the node through DROVER_SERVER and DROVER_TOKEN_FILE alone: even from a
    // clean environment, without HOME or a data dir.
    let first = node.submit(&["--", "true"]);
    let inner = format!("{BIN} status {first} --json");
    let out = node
        .command(&[
            "run",
            "--env-clear",
            "--after",
            &first,
            "--",
            "sh",
            "-c",
            &inner,
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let seen: Value = serde_json::from_str(&stdout(&out)).expect("the job's drover answered");
    assert_eq!(seen["id"], first.as_str());
    let env = "echo $DROVER_SERVER; cat $DROVER_TOKEN_FILE; echo $DROVER_AFTER";
    let out = node
        .command(&["run", "--after", &first, "--", "sh", "-c", env])
        .output()
        .unwrap();
    let expected = format!("{}\n{}\n{first}\n", node.url(), node.token());
    assert_eq!(stdout(&out), expected);
}

/// Acceptance 2: `drover run` ends with a line naming why a job did not succeed, and its exit
/// codes are the documented ones.
#[test]
fn run_says_why_a_job_did_not_succeed() {
    let node = Node::start(&[]);
    let cases: [(&[&str], i32, &str); 4] = [
        (
            &["--", "nonexistent-program"],
            125,
            "failed: spawn_failed: No such file or directory (nonexistent-program)",
        ),
        (
            &["--timeout", "1s", "--", "sleep", "30"],
            124,
            "timed out after 1s",
        ),
        (
            &[
                "--memory",
                "100M",
                "--",
                "python3",
                "-c",
                "b = bytearray(500 << 20)",
            ],
            125,
            "failed: memory_limit (peak 100 MiB of 100 MiB)",
        ),
        (&["--", "sh", "-c", "exit 3"], 3, "failed: exit code 3"),
    ];
    for (args, code, says) in cases {
        let mut full = vec!["run"];
        full.extend_from_slice(args);
        let out = node.drover(&full);
        let err = stderr(&out);
        let last = err.lines().last().unwrap_or_default();
        assert_eq!(out.status.code(), Some(code), "{args:?}: {err}");
        assert!(
            last.starts_with("drover: job ") && last.ends_with(says),
            "{args:?}: the last line names the ending: {err}"
        );
    }
    let out = node.drover(&["run", "--", "true"]);
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(stderr(&out), "", "nothing is said of a success");
}

/// Acceptance 3 (first half): `logs` shows both streams — a Python traceback too — and each
/// alone on request.
#[test]
fn logs_show_both_streams() {
    let node = Node::start(&[]);
    let id = node.submit(&[
        "--",
        "python3",
        "-c",
        "print('before'); raise ValueError('boom')",
    ]);
    node.drover(&["wait", &id]);
    let both = stdout(&node.drover(&["logs", &id]));
    assert!(
        both.starts_with("before\n--- stderr ---\nTraceback"),
        "{both}"
    );
    assert!(both.ends_with("ValueError: boom\n"), "{both}");
    assert_eq!(stdout(&node.drover(&["logs", "--stdout", &id])), "before\n");
    let err = stdout(&node.drover(&["logs", "--stderr", &id]));
    assert!(
        err.starts_with("Traceback") && !err.contains("before"),
        "{err}"
    );
    let json: Value =
        serde_json::from_str(&stdout(&node.drover(&["logs", "--json", &id]))).unwrap();
    assert_eq!(json["stdout"], "before\n");
    assert!(
        json["stderr"]
            .as_str()
            .unwrap()
            .contains("ValueError: boom")
    );
    // Followed, each stream goes to its own.
    let out = node.drover(&["logs", "-f", &id]);
    assert_eq!(stdout(&out), "before\n");
    assert!(stderr(&out).contains("ValueError: boom"));
    assert_eq!(out.status.code(), Some(1), "the job's exit code");
}

/// #17 acceptance 8 (first half): a job that prints 10 MB past a 1 MB limit keeps its first and
/// its last lines — the answer of a long computation is at its end — and says what was dropped.
#[test]
fn output_past_the_limit_keeps_its_first_and_last_lines() {
    let node = Node::start(&["--max-log-size", "1M"]);
    let id = node.submit(&[
        "--",
        "python3",
        "-c",
        "for i in range(1_000_000): print(f'line {i:07}')\nprint('answer: 42')",
    ]);
    node.drover(&["wait", &id]);
    let text = stdout(&node.drover(&["logs", "--stdout", &id]));
    assert!(
        text.starts_with("line 0000000\nline 0000001\n"),
        "{}",
        &text[..200]
    );
    assert!(
        text.ends_with("line 0999999\nanswer: 42\n"),
        "{}",
        &text[text.len() - 200..]
    );
    assert!(text.len() <= (1 << 20) + 200, "kept {} bytes", text.len());
    let marker = text
        .lines()
        .find(|l| l.starts_with("[drover: output truncated:"))
        .expect("a marker line");
    // 1,000,000 lines of 13 bytes and the answer; about half a MiB kept at each end.
    assert!(
        marker.contains("bytes dropped here; kept the first 5242"),
        "{marker}"
    );
    assert!(marker.ends_with("of 13000011 bytes]"), "{marker}");
    // Every line kept is whole.
    for line in text.lines().filter(|l| l.starts_with("line ")) {
        assert_eq!(line.len(), 12, "a broken line: {line:?}");
    }
    assert_eq!(
        stdout(&node.drover(&["logs", "--tail", "2", "--stdout", &id])),
        "line 0999999\nanswer: 42\n"
    );
    let shown = stdout(&node.drover(&["status", &id]));
    assert!(shown.contains("output cut"), "{shown}");
    // The ring file that held the tail while the job ran is gone.
    let leftovers: Vec<_> = walk(&node.data_dir())
        .into_iter()
        .filter(|p| p.to_string_lossy().ends_with(".tail"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if path.is_dir() {
            found.extend(walk(&path));
        } else {
            found.push(path);
        }
    }
    found
}

/// #17 acceptance 8 (second half): `logs --tail N` prints a stream's last N lines, read from the
/// end of a log far larger than they are.
#[test]
fn logs_tail_prints_the_last_lines() {
    let node = Node::start(&[]);
    let id = node.submit(&[
        "--",
        "python3",
        "-c",
        "import sys\nfor i in range(200000): print(f'line {i}')\nsys.stderr.write('warn 1\\nwarn 2')",
    ]);
    node.drover(&["wait", &id]);
    assert_eq!(
        stdout(&node.drover(&["logs", "--tail", "3", "--stdout", &id])),
        "line 199997\nline 199998\nline 199999\n"
    );
    // Both streams: each stream's tail, stderr under its marker; a last line without a newline
    // counts.
    assert_eq!(
        stdout(&node.drover(&["logs", "-n", "1", &id])),
        "line 199999\n--- stderr ---\nwarn 2"
    );
    let out = node.drover(&["logs", "--tail", "3", "-f", &id]);
    assert_eq!(out.status.code(), Some(2), "--tail with -f is refused");
}

/// Acceptance 4: a job's number and a unique prefix of its id work in `status`, `logs`,
/// `cancel` and `wait`, for 100 jobs submitted within one second; an ambiguous prefix is an
/// error that lists the candidates.
#[test]
fn jobs_are_named_by_number_prefix_or_name() {
    let node = Node::start(&[]);
    let mut lines = String::new();
    for i in 0..100 {
        lines.push_str(&format!(
            "{{\"argv\": [\"sh\", \"-c\", \"echo job-{i}; sleep 60\"], \"name\": \"job-{i}\"}}\n"
        ));
    }
    let mut child = node
        .command(&["submit", "--batch", "-"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(lines.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let ids: Vec<String> = stdout(&out).lines().map(str::to_string).collect();
    assert_eq!(ids.len(), 100);
    let jobs: Vec<Value> = ids.iter().map(|id| node.job(id)).collect();
    let numbers: Vec<u64> = jobs.iter().map(|j| j["number"].as_u64().unwrap()).collect();
    assert!(numbers.windows(2).all(|w| w[1] == w[0] + 1), "{numbers:?}");

    // The table shows numbers; `status N` is that job.
    let table = stdout(&node.drover(&["status", "--limit", "200"]));
    assert!(table.starts_with("JOB "), "{table}");
    assert!(table.lines().all(|l| l.chars().count() <= 100), "{table}");
    let n = numbers[41].to_string();
    let shown: Value =
        serde_json::from_str(&stdout(&node.drover(&["status", &n, "--json"]))).unwrap();
    assert_eq!(shown["id"], ids[41].as_str());
    let hashed = format!("#{n}");
    assert_eq!(node.job(&hashed)["id"], ids[41].as_str());

    // The shortest unique prefix of one id (time-ordered ids share their leading characters).
    let unique = |id: &str| {
        (4..=36)
            .map(|len| &id[..len])
            .find(|p| ids.iter().filter(|other| other.starts_with(p)).count() == 1)
            .unwrap()
            .to_string()
    };
    let prefix = unique(&ids[7]);
    assert_eq!(node.job(&prefix)["id"], ids[7].as_str());
    // By name, unique among live jobs.
    assert_eq!(node.job("job-9")["id"], ids[9].as_str());

    // An ambiguous prefix: usage error, listing what it may mean.
    let shared = &ids[0][..8];
    let out = node.drover(&["status", shared]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("names more than one job"),
        "{}",
        stderr(&out)
    );
    assert!(
        stderr(&out).contains(&ids[99]),
        "the candidates are listed: {}",
        stderr(&out)
    );
    let out = node.drover(&["status", "no-such-job-anywhere"]);
    assert_eq!(out.status.code(), Some(4), "{}", stderr(&out));

    // logs, cancel and wait take numbers and prefixes (several at once) too.
    node.wait_until(&ids[0], "running", |j| j["state"] == "running");
    let first = numbers[0].to_string();
    let logs = node
        .command(&["logs", "-f", &first])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let cancel = node.drover(&["cancel", &first, &prefix]);
    assert_eq!(cancel.status.code(), Some(0), "{}", stderr(&cancel));
    let out = node.drover(&["wait", "--timeout", "30s", &first, &prefix]);
    assert_eq!(out.status.code(), Some(1), "cancelled jobs did not succeed");
    assert!(stdout(&out).contains("cancelled"), "{}", stdout(&out));
    let logs = logs.wait_with_output().unwrap();
    assert_eq!(
        logs.status.code(),
        Some(130),
        "logs -f ends with the cancelled job"
    );
    assert_eq!(stdout(&logs), "job-0\n");
    let out = node.drover(&["logs", &first]);
    assert_eq!(stdout(&out), "job-0\n");
    node.drover(&["cancel", "--all"]);
}

/// Acceptance 5: status says why a job waits — a paused queue, a queue at its concurrency, jobs
/// it runs after, memory — in `--json` and in the table.
#[test]
fn waiting_jobs_say_why() {
    let node = Node::start(&["--memory", "1G", "--slots", "4"]);
    node.drover(&["queue", "pause", "paused"]);
    node.drover(&["queue", "set", "narrow", "--concurrency", "1"]);
    let paused = node.submit(&["--queue", "paused", "--", "true"]);
    let busy = node.submit(&["--queue", "narrow", "--", "sleep", "60"]);
    let behind = node.submit(&["--queue", "narrow", "--", "true"]);
    let big = node.submit(&["--memory", "800M", "--", "sleep", "60"]);
    node.wait_until(&big, "running", |j| j["state"] == "running");
    node.wait_until(&busy, "running", |j| j["state"] == "running");
    let bigger = node.submit(&["--memory", "600M", "--", "true"]);
    let blocked = node.submit(&["--after", &format!("{busy},{big}"), "--", "true"]);
    let busy_number = node.job(&busy)["number"].to_string();
    let expected = [
        (&paused, "queue paused is paused".to_string()),
        (&behind, "queue narrow is at its concurrency 1".to_string()),
        (
            &blocked,
            format!("blocked on 2 of 2 jobs: {busy_number} (running)"),
        ),
        (&bigger, "waiting for 600 MiB memory".to_string()),
    ];
    for (id, says) in &expected {
        let job = node.wait_until(id, says, |j| {
            j["waiting_for"]
                .as_str()
                .is_some_and(|w| w.starts_with(says.as_str()))
        });
        assert!(
            job["state"] == "queued" || job["state"] == "blocked",
            "{job:#}"
        );
    }
    let table = stdout(&node.drover(&["status"]));
    for (_, says) in &expected {
        let clipped: String = says.chars().take(30).collect();
        assert!(table.contains(&clipped), "{says} in\n{table}");
    }
    assert!(!table.contains('\u{1b}'), "no escape codes in a pipe");
    node.drover(&["cancel", "--all"]);
}

/// Acceptance 5 (the end of a chain): a job whose dependency failed names it.
#[test]
fn a_failed_dependency_is_named() {
    let node = Node::start(&[]);
    let first = node.submit(&["--", "false"]);
    let second = node.submit(&["--after", &first, "--", "true"]);
    node.drover(&["wait", &second]);
    let job = node.job(&second);
    assert_eq!(job["reason"], format!("dependency_failed: {first}"));
    let out = node.drover(&["run", "--after", &first, "--", "true"]);
    let number = node.job(&first)["number"].clone();
    assert!(
        stderr(&out).contains(&format!("dependency_failed (job {first} did not succeed)")),
        "{} (job {number})",
        stderr(&out)
    );
}

/// Acceptance 6: every command that prints something takes `--json` and prints JSON; a pipe,
/// `NO_COLOR` and the node's log file get no escape codes; `watch --json | head` ends quietly.
#[test]
fn every_printing_command_speaks_json_and_colour_only_on_a_terminal() {
    let node = Node::start(&[]);
    let failed = node.submit(&["--", "false"]);
    node.drover(&["wait", &failed]);
    let waiting = node.submit(&["--delay", "1h", "--", "true"]);
    let node_id = node.node_id();
    let commands: Vec<Vec<&str>> = vec![
        vec!["submit", "--delay", "1h", "--", "true"],
        vec!["run", "--detach", "--", "true"],
        vec!["status"],
        vec!["status", &failed],
        vec!["logs", &failed],
        vec!["wait", &failed],
        vec!["priority", &waiting, "3"],
        vec!["cancel", &waiting],
        vec!["retry", &failed],
        vec!["dlq"],
        vec!["queue", "ls"],
        vec!["queue", "pause", "q"],
        vec!["nodes"],
        vec!["drain", &node_id],
        vec!["undrain", &node_id],
        vec!["doctor"],
        vec!["web"],
    ];
    for mut args in commands {
        args.insert(0, "--json");
        let out = node.drover(&args);
        assert!(
            matches!(out.status.code(), Some(0 | 1)),
            "{args:?}: {}",
            stderr(&out)
        );
        serde_json::from_slice::<Value>(&out.stdout)
            .unwrap_or_else(|e| panic!("{args:?} does not print JSON ({e}): {}", stdout(&out)));
    }
    // `run --json`: the job's output on stdout, its record on stderr.
    let out = node.drover(&["run", "--json", "--", "sh", "-c", "echo out; exit 2"]);
    assert_eq!(
        (stdout(&out).as_str(), out.status.code()),
        ("out\n", Some(2))
    );
    let record: Value = serde_json::from_str(stderr(&out).trim()).unwrap();
    assert_eq!(record["state"], "failed");

    // Colour on a terminal only (`script` gives the command one), never with NO_COLOR.
    let on_a_terminal = |no_color: bool| {
        let mut command = std::process::Command::new("script");
        command
            .args(["-qec", &format!("{BIN} status"), "/dev/null"])
            .env("DROVER_DATA_DIR", node.data_dir())
            .env("TERM", "xterm");
        if no_color {
            command.env("NO_COLOR", "1");
        } else {
            command.env_remove("NO_COLOR");
        }
        stdout(
            &command
                .output()
                .expect("script(1) runs the CLI on a terminal"),
        )
    };
    assert!(
        on_a_terminal(false).contains("\u{1b}[31mfailed"),
        "{}",
        on_a_terminal(false)
    );
    assert!(!on_a_terminal(true).contains('\u{1b}'), "NO_COLOR");
    assert!(
        !stdout(&node.drover(&["status"])).contains('\u{1b}'),
        "a pipe"
    );
    assert!(!node.log().contains('\u{1b}'), "the node's log file");

    // A reader that goes away ends `watch` without a word, at its next write (as `tail -f |
    // head` does): the jobs submitted below make sure one comes after `head` has gone.
    let mut child = std::process::Command::new("sh")
        .args(["-c", &format!("{BIN} watch --json --since 0 | head -1")])
        .env("DROVER_DATA_DIR", node.data_dir())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while child.try_wait().unwrap().is_none() {
        assert!(
            std::time::Instant::now() < deadline,
            "watch did not end after its reader went away"
        );
        node.submit(&["--", "true"]);
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    let watch = child.wait_with_output().unwrap();
    let line = stdout(&watch);
    serde_json::from_str::<Value>(line.trim()).expect("one event");
    assert_eq!(stderr(&watch), "", "no Broken pipe");
}

/// Acceptance 7: a second Ctrl-C leaves a TERM-trapping job running; one Ctrl-C cancels it.
#[test]
fn a_second_ctrl_c_leaves_the_job_running() {
    let node = Node::start(&[]);
    let script = "trap 'echo got-term' TERM; echo started; while true; do sleep 0.1; done";
    let start = || {
        let mut run = node
            .command(&["run", "--grace", "1s", "--", "sh", "-c", script])
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let mut first = String::new();
        let mut out = std::io::BufReader::new(run.stdout.take().unwrap());
        std::io::BufRead::read_line(&mut out, &mut first).unwrap();
        assert_eq!(first, "started\n");
        (run, out)
    };
    let interrupt = |pid: u32| {
        // SAFETY: signals a child of this test.
        unsafe { libc::kill(pid as i32, libc::SIGINT) };
    };
    let newest = || {
        let jobs: Value =
            serde_json::from_slice(&node.drover(&["--json", "status"]).stdout).unwrap();
        jobs.as_array().unwrap()[0]["id"]
            .as_str()
            .unwrap()
            .to_string()
    };

    let (run, _out) = start();
    let id = newest();
    interrupt(run.id());
    std::thread::sleep(std::time::Duration::from_millis(300));
    interrupt(run.id());
    let out = run.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(stderr(&out).contains("left job"), "{}", stderr(&out));
    std::thread::sleep(std::time::Duration::from_secs(3));
    assert_eq!(
        node.job(&id)["state"],
        "running",
        "the job outlived both presses"
    );
    node.drover(&["cancel", &id]);

    let (run, out) = start();
    let id = newest();
    interrupt(run.id());
    let done = run.wait_with_output().unwrap();
    assert_eq!(done.status.code(), Some(130), "{}", stderr(&done));
    let rest = std::io::read_to_string(out).unwrap();
    assert!(
        rest.contains("got-term"),
        "the job saw the ladder's TERM: {rest}"
    );
    assert_eq!(node.job(&id)["state"], "cancelled");
}

/// Acceptance 3 (second half): on `--pty`, a Python job's five prints, half a second apart,
/// reach `logs -f` as they are made; without it Python holds them in its buffer to the end.
#[test]
fn a_pty_makes_python_print_line_by_line() {
    let node = Node::start(&[]);
    let program = "import time\nfor i in range(5):\n    print(i)\n    time.sleep(0.5)\n";
    let spread = |extra: &[&str]| {
        let mut args = vec!["submit"];
        args.extend_from_slice(extra);
        args.extend(["--", "python3", "-c", program]);
        // The job gets this environment: make sure Python is told nothing about buffering.
        let out = node
            .command(&args)
            .env_remove("PYTHONUNBUFFERED")
            .output()
            .unwrap();
        let id = stdout(&out).trim().to_string();
        let mut follow = node
            .command(&["logs", "-f", &id])
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let reader = std::io::BufReader::new(follow.stdout.take().unwrap());
        let mut arrivals = Vec::new();
        for line in std::io::BufRead::lines(reader) {
            arrivals.push((line.unwrap(), std::time::Instant::now()));
        }
        assert!(follow.wait().unwrap().success());
        let lines: Vec<&str> = arrivals.iter().map(|(l, _)| l.as_str()).collect();
        assert_eq!(lines, ["0", "1", "2", "3", "4"], "no \\r, nothing lost");
        arrivals[4].1 - arrivals[0].1
    };
    let on_a_pty = spread(&["--pty"]);
    assert!(
        on_a_pty >= std::time::Duration::from_millis(1500),
        "line by line: {on_a_pty:?}"
    );
    let in_a_pipe = spread(&[]);
    assert!(
        in_a_pipe < std::time::Duration::from_millis(1000),
        "Python buffers a pipe, which is why --pty exists: {in_a_pipe:?}"
    );
}

/// Forgiving input: `retry --memory` runs a job again with a changed spec (each attempt keeps
/// the limit it ran under), `edit` changes a waiting job, and `submit echo hi` suggests `--`.
#[test]
fn jobs_are_retried_with_new_settings_and_edited_while_they_wait() {
    let node = Node::start(&[]);
    let grow = "b = bytearray(150 << 20); print('fits')";
    let id = node.submit(&[
        "--name", "big", "--memory", "64M", "--", "python3", "-c", grow,
    ]);
    node.drover(&["wait", &id]);
    assert_eq!(node.job(&id)["reason"], "memory_limit");
    let out = node.drover(&["retry", "big", "--memory", "400M"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    node.drover(&["wait", &id]);
    let job = node.job(&id);
    assert_eq!(job["state"], "succeeded", "{job:#}");
    assert_eq!(job["spec"]["memory"], "400M");
    let limits: Vec<&Value> = job["attempts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| &a["memory_limit_bytes"])
        .collect();
    assert_eq!(
        limits,
        [&Value::from(64u64 << 20), &Value::from(400u64 << 20)]
    );
    // The change is recorded as such: an `edited` event before the `retried` one.
    let watch = format!("timeout 2 {BIN} watch --json --job {id} --since 0");
    let events = std::process::Command::new("sh")
        .args(["-c", &watch])
        .env("DROVER_DATA_DIR", node.data_dir())
        .output()
        .unwrap();
    let events = stdout(&events);
    let edited = events.find("\"edited\"").expect("an edited event");
    assert!(edited < events.find("\"retried\"").unwrap(), "{events}");

    let waiting = node.submit(&["--delay", "1h", "--", "echo", "one"]);
    let out = node.drover(&[
        "edit",
        &waiting,
        "--timeout",
        "5m",
        "-e",
        "EXTRA=1",
        "--",
        "echo",
        "two",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let job = node.job(&waiting);
    assert_eq!(
        (job["argv"][1].as_str(), job["spec"]["timeout"].as_str()),
        (Some("two"), Some("5m"))
    );
    assert_eq!(job["spec"]["env"]["EXTRA"], "1");
    assert!(
        job["spec"]["env"].as_object().unwrap().len() > 1,
        "the rest of its environment stays"
    );
    let ended = node.drover(&["edit", &id, "--timeout", "5m"]);
    assert_eq!(
        ended.status.code(),
        Some(4),
        "an ended job is retried, not edited"
    );
    assert!(
        stderr(&ended).contains("only a job that waits"),
        "{}",
        stderr(&ended)
    );
}
