//! #15: sweeps, flows, results and notices, driven through the real binary.
#![allow(clippy::expect_used, clippy::unwrap_used)]

mod common;

use std::time::{Duration, Instant};

use common::{Node, stdout};
use serde_json::Value;

/// A job script that writes `{"n": N, "sq": N*N}` as its result.
const SQUARE: &str = r#"import sys,json,os; json.dump({"n": int(sys.argv[1]), "sq": int(sys.argv[1])**2}, open(os.environ["DROVER_OUTPUT_DIR"]+"/result.json","w"))"#;

fn ok(out: &std::process::Output) -> String {
    assert!(
        out.status.success(),
        "exit {:?}\nstdout: {}\nstderr: {}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    stdout(out)
}

fn json(out: &std::process::Output) -> Value {
    serde_json::from_str(&ok(out)).expect("json")
}

/// Acceptance 1: a 20-way sweep over a range; `wait GROUP` exits 0 and `results --json` gives
/// the 20 results in order with the right squares. The group id works for `status` too.
#[test]
fn a_range_sweep_collects_its_results_in_order() {
    let node = Node::start(&["--slots", "2"]);
    let group = ok(&node.drover(&[
        "submit", "--each", "1..20", "--", "python3", "-c", SQUARE, "{}",
    ]))
    .trim()
    .to_string();
    assert_eq!(
        group.len(),
        36,
        "submit --each prints the group's id alone: {group:?}"
    );
    let waited = node.drover(&["wait", &group]);
    assert!(ok(&waited).contains("20 succeeded"), "{}", stdout(&waited));
    let results = json(&node.drover(&["results", &group, "--json"]));
    let rows = results.as_array().expect("an array");
    assert_eq!(rows.len(), 20);
    for (i, row) in rows.iter().enumerate() {
        let n = i as i64 + 1;
        assert_eq!(row["result"]["n"], n, "{row}");
        assert_eq!(row["result"]["sq"], n * n, "{row}");
        assert_eq!(row["values"]["value"], n.to_string());
        assert_eq!(row["index"], i);
    }
    let status = json(&node.drover(&["status", &group, "--json"]));
    assert_eq!(status["kind"], "sweep");
    assert_eq!(status["state"], "succeeded");
    assert_eq!(status["counts"]["succeeded"], 20);
    // By number too, and the CSV has a column per result field.
    let number = status["number"].as_u64().unwrap().to_string();
    let csv = ok(&node.drover(&["results", &number, "--csv"]));
    let mut lines = csv.lines();
    assert_eq!(lines.next(), Some("job,index,value,state,n,sq"));
    assert!(
        lines.next().unwrap().ends_with(",0,1,succeeded,1,1"),
        "{csv}"
    );
    // By name, even when a job has that name too: `results` takes a group, so the sweep wins.
    let named = ok(&node.drover(&[
        "submit", "--name", "squares", "--each", "1..2", "--", "python3", "-c", SQUARE, "{}",
    ]))
    .trim()
    .to_string();
    ok(&node.drover(&["submit", "--name", "squares", "--", "true"]));
    ok(&node.drover(&["wait", &named]));
    let by_name = json(&node.drover(&["results", "squares", "--json"]));
    assert_eq!(by_name.as_array().map(Vec::len), Some(2), "{by_name}");
    // One member's result alone.
    let first = rows[0]["id"].as_str().unwrap();
    assert_eq!(
        json(&node.drover(&["result", first])),
        serde_json::json!({"n": 1, "sq": 1})
    );
}

/// Acceptance 2: two named axes make their product, each job with its argv and environment.
#[test]
fn named_axes_make_the_product() {
    let node = Node::start(&["--slots", "2"]);
    let group = ok(&node.drover(&[
        "submit",
        "--name",
        "grid",
        "--result-stdout",
        "--each",
        "n=1..2",
        "--each",
        "seed=a,b,c",
        "--",
        "sh",
        "-c",
        r#"printf '{"argv":"%s %s","n":"%s","seed":"%s","index":"%s"}\n' "$1" "$2" "$DROVER_EACH_N" "$DROVER_EACH_SEED" "$DROVER_INDEX""#,
        "sh",
        "--n={n}",
        "{seed}",
    ]))
    .trim()
    .to_string();
    ok(&node.drover(&["wait", &group, "--quiet"]));
    let rows = json(&node.drover(&["results", &group, "--json"]));
    let rows = rows.as_array().unwrap();
    assert_eq!(rows.len(), 6);
    let mut i = 0;
    for n in ["1", "2"] {
        for seed in ["a", "b", "c"] {
            let result = &rows[i]["result"];
            assert_eq!(result["argv"], format!("--n={n} {seed}"), "{result}");
            assert_eq!(result["n"], n);
            assert_eq!(result["seed"], seed);
            assert_eq!(result["index"], i.to_string());
            assert_eq!(rows[i]["name"], format!("grid[n={n},seed={seed}]"));
            i += 1;
        }
    }
}

/// Acceptance 5: one failing member of ten; the group ends 9 succeeded, 1 failed, and
/// `retry GROUP --failed` runs only that one again.
#[test]
fn retry_failed_runs_only_the_failed_member() {
    let node = Node::start(&["--slots", "2"]);
    let marker = tempfile::tempdir().unwrap();
    let flag = marker.path().join("fixed");
    let ran = marker.path().join("ran");
    let script = format!(
        "echo $1 >> {ran}; if [ $1 = 7 ] && [ ! -e {flag} ]; then exit 3; fi",
        ran = ran.display(),
        flag = flag.display()
    );
    let group = ok(&node.drover(&[
        "submit", "--each", "1..10", "--", "sh", "-c", &script, "sh", "{}",
    ]))
    .trim()
    .to_string();
    let waited = node.drover(&["wait", &group]);
    assert_eq!(
        waited.status.code(),
        Some(1),
        "a failed member fails the wait"
    );
    let status = json(&node.drover(&["status", &group, "--json"]));
    assert_eq!(status["counts"]["succeeded"], 9);
    assert_eq!(status["counts"]["failed"], 1);
    assert_eq!(status["state"], "failed");
    std::fs::write(&flag, "").unwrap();
    let retried = ok(&node.drover(&["retry", &group, "--failed"]));
    assert_eq!(
        retried.lines().count(),
        1,
        "only one job runs again: {retried}"
    );
    ok(&node.drover(&["wait", &group, "--quiet"]));
    let runs = std::fs::read_to_string(&ran).unwrap();
    assert_eq!(
        runs.lines().count(),
        11,
        "ten jobs, one of them twice: {runs}"
    );
    assert_eq!(runs.lines().filter(|l| *l == "7").count(), 2);
    let status = json(&node.drover(&["status", &group, "--json"]));
    assert_eq!(status["counts"]["succeeded"], 10);
}

/// Acceptance 6: a result over the size limit, and one that is not JSON, fail their jobs with a
/// reason that says so.
#[test]
fn bad_results_fail_the_job_and_say_why() {
    let node = Node::start(&["--slots", "2"]);
    let big = node.submit(&[
        "--",
        "python3",
        "-c",
        r#"import os; open(os.environ["DROVER_OUTPUT_DIR"]+"/result.json","w").write('"' + "x"*(2<<20) + '"')"#,
    ]);
    let garbled = node.submit(&[
        "--",
        "sh",
        "-c",
        r#"echo 'not json {' > "$DROVER_OUTPUT_DIR/result.json""#,
    ]);
    for (id, says) in [(&big, "the limit is 1.0 MiB"), (&garbled, "is not JSON")] {
        let job = node.wait_until(id, "the job to end", |j| j["finished_at"].is_string());
        assert_eq!(job["state"], "failed", "{job:#}");
        let reason = job["reason"].as_str().unwrap();
        assert!(
            reason.starts_with("result_invalid: result.json"),
            "{reason}"
        );
        assert!(reason.contains(says), "{reason}");
        assert!(job.get("result").is_none());
    }
    let out = node.drover(&["result", &garbled]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("gave no result"));
}

/// A flow file: split → a five-way sweep → an aggregate that sums what the sweep gave, reading
/// `$DROVER_INPUTS`. Each step appends to `ledger` once per run.
fn flow_file(
    dir: &std::path::Path,
    ledger: &std::path::Path,
    work_seconds: &str,
) -> std::path::PathBuf {
    let file = dir.join("scan.toml");
    let text = format!(
        r#"
name = "scan"

[steps.split]
argv = ["sh", "-c", "echo split >> {ledger}"]

[steps.work]
after = ["split"]
each = "1..5"
argv = ["sh", "-c", "echo work$1 >> {ledger}; sleep {work_seconds}; echo \"{{\\\"v\\\": $(($1 * 10))}}\" > $DROVER_OUTPUT_DIR/result.json", "sh", "{{}}"]
timeout = "1m"

[steps.total]
after = ["work"]
argv = ["python3", "-c", "import json,os; ins=json.load(open(os.environ['DROVER_INPUTS'])); open('{ledger}','a').write('total\\n'); json.dump({{'sum': sum(i['result']['v'] for i in ins), 'inputs': len(ins)}}, open(os.environ['DROVER_OUTPUT_DIR']+'/result.json','w'))"]
"#,
        ledger = ledger.display()
    );
    std::fs::write(&file, text).unwrap();
    file
}

/// Acceptance 3: the flow completes with the right sum though the node is killed -9 in the
/// middle of the sweep and started again, and each step's work is done once.
#[test]
fn a_flow_survives_a_kill_9_of_its_node_and_sums_its_sweep() {
    let mut node = Node::start(&["--slots", "2"]);
    let dir = tempfile::tempdir().unwrap();
    let ledger = dir.path().join("ledger");
    let file = flow_file(dir.path(), &ledger, "1");
    let flow = ok(&node.drover(&["flow", "submit", file.to_str().unwrap()]))
        .trim()
        .to_string();
    // Kill the node while the sweep runs (some work started, not all done).
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let text = std::fs::read_to_string(&ledger).unwrap_or_default();
        if text.lines().any(|l| l.starts_with("work")) {
            break;
        }
        assert!(Instant::now() < deadline, "the sweep did not start");
        std::thread::sleep(Duration::from_millis(20));
    }
    node.kill9();
    node.restart();
    ok(&node.drover(&["wait", &flow, "--quiet"]));
    let tree = ok(&node.drover(&["flow", "status", &flow]));
    assert!(
        tree.contains("split") && tree.contains("└─ work") && tree.contains("total"),
        "{tree}"
    );
    assert!(tree.contains("5 succeeded"), "{tree}");
    let results = json(&node.drover(&["results", &flow, "--json", "--step", "total"]));
    assert_eq!(
        results[0]["result"],
        serde_json::json!({"sum": 150, "inputs": 5})
    );
    let mut runs: Vec<String> = std::fs::read_to_string(&ledger)
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect();
    runs.sort();
    assert_eq!(
        runs,
        [
            "split", "total", "work1", "work2", "work3", "work4", "work5"
        ],
        "each step's work done once"
    );
}

/// Acceptance 4: a cycle, an unknown step in `after` and an unknown field are refused with exit
/// code 2 and a message naming the problem; nothing is created.
#[test]
fn bad_flows_are_refused_whole() {
    let node = Node::start(&["--slots", "1"]);
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        (
            "cycle",
            "name = \"c\"\n[steps.a]\nargv = [\"true\"]\nafter = [\"c\"]\n[steps.b]\nargv = [\"true\"]\nafter = [\"a\"]\n[steps.c]\nargv = [\"true\"]\nafter = [\"b\"]\n",
            vec!["cycle", "a → b → c → a"],
        ),
        (
            "unknown_step",
            "name = \"u\"\n[steps.a]\nargv = [\"true\"]\n[steps.b]\nargv = [\"true\"]\nafter = [\"nope\"]\n",
            vec!["steps.b.after", "no step `nope`"],
        ),
        (
            "unknown_field",
            "name = \"f\"\n[steps.a]\nargv = [\"true\"]\ntimeot = \"1h\"\n",
            vec!["steps.a", "unknown field `timeot`"],
        ),
    ];
    for (name, text, says) in cases {
        let file = dir.path().join(format!("{name}.toml"));
        std::fs::write(&file, text).unwrap();
        let out = node.drover(&["flow", "submit", file.to_str().unwrap()]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{name}: {stderr}");
        for word in says {
            assert!(stderr.contains(word), "{name}: {stderr}");
        }
    }
    let jobs = json(&node.drover(&["status", "--json"]));
    assert_eq!(
        jobs.as_array().unwrap().len(),
        0,
        "nothing was created: {jobs}"
    );
}

/// Acceptance 7: `--notify` hears a job's id and state for success and failure; a notify
/// command that sleeps for ever is killed after the node's notify timeout, and the next jobs run
/// meanwhile.
#[test]
fn notify_commands_hear_endings_and_never_hold_up_the_queue() {
    let node = Node::start(&["--slots", "2", "--notify-timeout", "1s"]);
    let dir = tempfile::tempdir().unwrap();
    let heard = dir.path().join("heard");
    let notify = format!(
        "echo \"$DROVER_JOB_ID $DROVER_JOB_STATE $DROVER_JOB_REASON\" >> {}",
        heard.display()
    );
    let good = node.submit(&["--notify", &notify, "--", "true"]);
    let bad = node.submit(&["--notify", &notify, "--", "sh", "-c", "exit 4"]);
    let marker = common::marker_sleep(415_015);
    let hang = node.submit(&["--notify", &format!("sleep {marker}"), "--", "true"]);
    // While the hanging notifier runs, more jobs start and end at once.
    let started = Instant::now();
    let after: Vec<String> = (0..4).map(|_| node.submit(&["--", "true"])).collect();
    for id in &after {
        node.wait_until(id, "a later job to end", |j| j["state"] == "succeeded");
    }
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "later jobs were held up"
    );
    node.wait_until(&hang, "the job to end", |j| j["state"] == "succeeded");
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let text = std::fs::read_to_string(&heard).unwrap_or_default();
        let alive = common::alive_with(&marker).len();
        if text.lines().count() >= 2 && alive == 0 {
            assert!(
                text.contains(&format!("{good} succeeded exit_code: 0")),
                "{text}"
            );
            assert!(
                text.contains(&format!("{bad} failed exit_code: 4")),
                "{text}"
            );
            assert_eq!(text.lines().count(), 2, "one notice each: {text}");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "heard {text:?}; {alive} hanging notifier(s) alive\n{}",
            node.log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(
        node.log()
            .contains("the notify command took too long and was killed")
    );
}

/// A sweep's `--notify` is said once, for the whole group, with its counts.
#[test]
fn a_sweep_is_notified_once_when_all_of_it_ended() {
    let node = Node::start(&["--slots", "2"]);
    let dir = tempfile::tempdir().unwrap();
    let heard = dir.path().join("heard");
    let notify = format!(
        "echo \"$DROVER_GROUP_STATE $DROVER_GROUP_COUNTS\" >> {}",
        heard.display()
    );
    let group = ok(&node.drover(&[
        "submit", "--notify", &notify, "--each", "a,b,c", "--", "echo", "{}",
    ]))
    .trim()
    .to_string();
    ok(&node.drover(&["wait", &group, "--quiet"]));
    let deadline = Instant::now() + Duration::from_secs(10);
    while !heard.exists() {
        assert!(Instant::now() < deadline, "no group notice\n{}", node.log());
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(
        std::fs::read_to_string(&heard).unwrap(),
        "succeeded 3 succeeded\n"
    );
}

/// Acceptance 8: on PostgreSQL, a sweep run across two nodes has all its results readable
/// through either node.
#[test]
fn results_of_a_sweep_across_two_nodes_read_through_either() {
    let Some(db) = drover_store::testing::TestDatabase::create() else {
        return;
    };
    let nodes: Vec<Node> = (0..2)
        .map(|_| Node::start(&["--db", db.url(), "--slots", "2"]))
        .collect();
    let group = ok(&nodes[0].drover(&[
        "submit", "--each", "1..12", "--", "sh", "-c",
        r#"sleep 0.2; echo "{\"n\": $1, \"node\": \"$DROVER_NODE\"}" > $DROVER_OUTPUT_DIR/result.json"#,
        "sh", "{}",
    ]))
    .trim()
    .to_string();
    ok(&nodes[1].drover(&["wait", &group, "--quiet"]));
    let mut seen_nodes = std::collections::BTreeSet::new();
    for node in &nodes {
        let rows = json(&node.drover(&["results", &group, "--json"]));
        let rows = rows.as_array().unwrap();
        assert_eq!(rows.len(), 12);
        for (i, row) in rows.iter().enumerate() {
            assert_eq!(row["result"]["n"], i + 1, "{row}");
            seen_nodes.insert(row["result"]["node"].as_str().unwrap().to_string());
        }
    }
    assert_eq!(
        seen_nodes.len(),
        2,
        "both nodes ran part of the sweep: {seen_nodes:?}"
    );
}

/// `logs GROUP` prints each member's output under a header, in sweep order; `cancel GROUP`
/// cancels what has not ended.
#[test]
fn logs_and_cancel_take_a_group() {
    let node = Node::start(&["--slots", "1"]);
    let group = ok(&node.drover(&["submit", "--each", "x,y", "--", "echo", "hello {}"]))
        .trim()
        .to_string();
    ok(&node.drover(&["wait", &group, "--quiet"]));
    let logs = ok(&node.drover(&["logs", &group]));
    let x = logs.find("hello x").expect("x's output");
    let y = logs.find("hello y").expect("y's output");
    assert!(x < y, "{logs}");
    assert!(logs.contains("==> echo[x]"), "{logs}");
    let slow = ok(&node.drover(&["submit", "--each", "1..3", "--", "sleep", "30"]))
        .trim()
        .to_string();
    ok(&node.drover(&["cancel", &slow]));
    node.drover(&["wait", &slow, "--quiet", "--timeout", "20s"]);
    let status = json(&node.drover(&["status", &slow, "--json"]));
    assert_eq!(status["state"], "cancelled", "{status:#}");
}
