//! #19: warm pools. A parent imports the pool's modules once and forks a child for each job of
//! the pool; the child is its job — its own id, arguments, exit code, output, cell, limits and
//! timeout — and nothing a child does harms the parent.
#![allow(clippy::expect_used, clippy::unwrap_used)]

mod common;

use std::path::Path;
use std::process::Output;

use common::{Node, alive_with, stdout};
use serde_json::Value;

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// A module that takes a second to import and counts its imports in `imports.log`.
fn slow_module(dir: &Path) {
    std::fs::write(
        dir.join("slowmod.py"),
        format!(
            "import time\nwith open({:?}, 'a') as f:\n    f.write('imported\\n')\ntime.sleep(1)\nVALUE = 7\n",
            dir.join("imports.log")
        ),
    )
    .unwrap();
}

fn create_pool(node: &Node, name: &str, dir: &Path, extra: &[&str]) {
    let pythonpath = format!("PYTHONPATH={}", dir.display());
    let mut args = vec![
        "pool",
        "create",
        name,
        "--kind",
        "python",
        "--preload",
        "slowmod",
        "-e",
        &pythonpath,
    ];
    args.extend_from_slice(extra);
    let out = node.drover(&args);
    assert!(
        out.status.success(),
        "pool create: {}\n{}",
        stderr(&out),
        node.log()
    );
}

/// `drover run --pool POOL ARGS...` against `node`.
fn run_pooled(node: &Node, pool: &str, args: &[&str]) -> Output {
    let mut full = vec!["run", "--pool", pool];
    full.extend_from_slice(args);
    node.drover(&full)
}

fn last_job(node: &Node) -> Value {
    let out = node.drover(&["status", "--json"]);
    let jobs: Value = serde_json::from_slice(&out.stdout).unwrap();
    jobs[0].clone()
}

/// Acceptance 1's mechanism: the module is imported once however many jobs run; each job is
/// itself (its id, arguments, exit code, output).
#[test]
fn pooled_jobs_run_warm_each_as_itself() {
    let node = Node::start(&[]);
    let dir = tempfile::tempdir().unwrap();
    slow_module(dir.path());
    create_pool(&node, "warm", dir.path(), &[]);
    let script = dir.path().join("job.py");
    std::fs::write(
        &script,
        "import os, sys, slowmod\nprint(slowmod.VALUE, sys.argv[1:], os.environ['DROVER_JOB_ID'])\nsys.exit(int(sys.argv[1]))\n",
    )
    .unwrap();
    let script = script.to_string_lossy().into_owned();
    for code in ["0", "3", "0", "0", "5"] {
        let out = run_pooled(&node, "warm", &["--", &script, code, "x"]);
        assert_eq!(
            out.status.code(),
            Some(code.parse().unwrap()),
            "{}",
            stderr(&out)
        );
        let job = last_job(&node);
        assert_eq!(
            stdout(&out),
            format!("7 ['{code}', 'x'] {}\n", job["id"].as_str().unwrap()),
            "the child has the job's own id and arguments"
        );
    }
    let imports = std::fs::read_to_string(dir.path().join("imports.log")).unwrap();
    assert_eq!(imports.lines().count(), 1, "imported once for five jobs");

    // `-c` and `-m`, and an exception's traceback without drover's frames.
    let code = run_pooled(
        &node,
        "warm",
        &["--", "-c", "import slowmod; print(slowmod.VALUE * 6)"],
    );
    assert_eq!(stdout(&code), "42\n");
    let raised = run_pooled(
        &node,
        "warm",
        &["--", "-c", "raise ValueError('bad input')"],
    );
    assert_eq!(raised.status.code(), Some(1));
    assert!(stderr(&raised).contains("ValueError: bad input"));
    assert!(!stderr(&raised).contains("in child"), "{}", stderr(&raised));
    let module = run_pooled(&node, "warm", &["--", "-m", "json.tool", "--help"]);
    assert!(stdout(&module).contains("usage"), "{}", stderr(&module));

    let ls = node.drover(&["pool", "ls"]);
    assert!(stdout(&ls).contains("warm") && stdout(&ls).contains("1/1 running"));
    assert!(node.drover(&["pool", "rm", "warm"]).status.success());
    let gone = run_pooled(&node, "warm", &["--", "-c", "pass"]);
    assert_eq!(gone.status.code(), Some(4), "{}", stderr(&gone));
    assert!(stderr(&gone).contains("no pool named `warm`"));
}

/// Acceptance 2: a pooled job over its memory limit ends `memory_limit`, a fork bomb is held by
/// its own pids limit, a timeout takes the child's whole tree; the parent serves on.
#[test]
fn a_pooled_job_is_limited_as_a_job_and_the_parent_survives() {
    let node = Node::start(&[]);
    let dir = tempfile::tempdir().unwrap();
    slow_module(dir.path());
    create_pool(&node, "lim", dir.path(), &[]);
    let parent = last_job(&node);

    let big = run_pooled(
        &node,
        "lim",
        &[
            "--memory",
            "100M",
            "--",
            "-c",
            "b = b'x' * (500 << 20); print('survived')",
        ],
    );
    assert!(!big.status.success());
    assert!(!stdout(&big).contains("survived"));
    let job = last_job(&node);
    assert_eq!(job["reason"], "memory_limit", "{job:#}");

    let bomb = run_pooled(
        &node,
        "lim",
        &[
            "--pids",
            "10",
            "--timeout",
            "20s",
            "--",
            "-c",
            "import os, sys\nforked = 0\nwhile True:\n    try:\n        pid = os.fork()\n    except OSError:\n        break\n    if pid == 0:\n        import time; time.sleep(30); os._exit(0)\n    forked += 1\nprint('forked', forked)",
        ],
    );
    let forked: u32 = stdout(&bomb)
        .trim()
        .strip_prefix("forked ")
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("{}\n{}", stdout(&bomb), stderr(&bomb)));
    assert!(
        forked < 10,
        "the pids limit held the bomb at {forked} forks"
    );

    let marker = "pooled-sleep-4242";
    let slow = run_pooled(
        &node,
        "lim",
        &[
            "--timeout",
            "1s",
            "--",
            "-c",
            &format!("import subprocess; subprocess.run(['sh', '-c', 'sleep 60 # {marker}'])"),
        ],
    );
    assert!(!slow.status.success());
    assert_eq!(last_job(&node)["state"], "timed_out");
    assert!(
        alive_with(marker).is_empty(),
        "the timed-out job's tree is gone"
    );

    // The bomb's sleepers went with their job, and the parent is the one it was.
    assert!(alive_with("time.sleep(30)").is_empty());
    let after = run_pooled(
        &node,
        "lim",
        &["--", "-c", "import os; print(os.getppid())"],
    );
    assert!(after.status.success(), "{}", stderr(&after));
    let job: Value = node.job(parent["id"].as_str().unwrap());
    assert_eq!(job["state"], "running", "the parent survived: {job:#}");
    assert_eq!(
        stdout(&after).trim(),
        job["attempts"][0]["pid"].to_string(),
        "forked by the first parent"
    );
}

/// A parent is recycled after --max-jobs: its job starts again as a fresh parent, and jobs that
/// come meanwhile wait for it.
#[test]
fn a_parent_is_recycled_after_max_jobs() {
    let node = Node::start(&[]);
    let dir = tempfile::tempdir().unwrap();
    slow_module(dir.path());
    create_pool(&node, "rec", dir.path(), &["--max-jobs", "2"]);
    let mut parents = Vec::new();
    for _ in 0..5 {
        let out = run_pooled(
            &node,
            "rec",
            &["--", "-c", "import os; print(os.getppid())"],
        );
        assert!(out.status.success(), "{}", stderr(&out));
        parents.push(stdout(&out).trim().to_string());
    }
    assert_eq!(parents[0], parents[1]);
    assert_ne!(parents[1], parents[2], "recycled after two jobs");
    assert_eq!(parents[2], parents[3]);
    assert_ne!(parents[3], parents[4]);
    let imports = std::fs::read_to_string(dir.path().join("imports.log")).unwrap();
    assert_eq!(imports.lines().count(), 3, "each fresh parent imports once");
}

/// Acceptance 5: with SageMath installed, a Sage pool factors in a warm child.
#[test]
fn a_sage_pool_factors_in_a_warm_child() {
    let installed = std::process::Command::new("sh")
        .args(["-c", "command -v sage"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !installed {
        assert!(
            std::env::var_os("DROVER_REQUIRE_SAGE").is_none(),
            "DROVER_REQUIRE_SAGE is set but sage is not installed"
        );
        eprintln!("pools: SageMath is not installed; skipping the Sage pool");
        return;
    }
    let node = Node::start(&[]);
    let out = node.drover(&["pool", "create", "sage", "--kind", "sage"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let factored = run_pooled(&node, "sage", &["--", "-c", "print(factor(2^128+1))"]);
    assert_eq!(
        stdout(&factored),
        "59649589127497217 * 5704689200685129054721\n",
        "{}",
        stderr(&factored)
    );
}
