//! The faults of issue #16 found in the API and in settings: keep-alive connections broken by
//! early answers, oversized bodies that got EPIPE instead of their 413, unbounded listings, and
//! values accepted at submit or start that fail later. Each test failed before its fix.

#![allow(clippy::expect_used, clippy::unwrap_used)]

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::Command;
use std::time::Duration;

use common::{BIN, Node};
use serde_json::Value;

/// One keep-alive connection that sends requests and reads each answer whole.
struct KeepAlive {
    port: u16,
    bearer: String,
    reader: BufReader<TcpStream>,
}

impl KeepAlive {
    fn open(node: &Node) -> KeepAlive {
        let stream = TcpStream::connect(("127.0.0.1", node.port())).expect("connect");
        stream
            .set_read_timeout(Some(Duration::from_secs(30)))
            .expect("timeout");
        KeepAlive {
            port: node.port(),
            bearer: node.bearer(),
            reader: BufReader::new(stream),
        }
    }

    /// Sends a request with `body` (and `extra` header lines); the status and the
    /// `Connection` header of its answer. Panics when the connection breaks.
    fn send(&mut self, method: &str, path: &str, body: &[u8], extra: &str) -> (u16, String) {
        let head = format!(
            "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nAuthorization: {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n{extra}\r\n",
            self.port,
            self.bearer,
            body.len()
        );
        let stream = self.reader.get_mut();
        stream.write_all(head.as_bytes()).expect("send the head");
        stream.write_all(body).expect("send the body");
        self.read_answer()
    }

    fn read_answer(&mut self) -> (u16, String) {
        let mut line = String::new();
        self.reader.read_line(&mut line).expect("status line");
        let status: u16 = line
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("no status in {line:?}: the connection was dropped"));
        let mut length = 0usize;
        let mut connection = String::new();
        loop {
            let mut header = String::new();
            self.reader.read_line(&mut header).expect("header");
            let header = header.trim_end();
            if header.is_empty() {
                break;
            }
            let (name, value) = header.split_once(':').expect("header line");
            match name.to_ascii_lowercase().as_str() {
                "content-length" => length = value.trim().parse().expect("length"),
                "connection" => connection = value.trim().to_ascii_lowercase(),
                _ => {}
            }
        }
        let mut body = vec![0; length];
        self.reader.read_exact(&mut body).expect("body");
        (status, connection)
    }
}

/// Defect 6a: answers that come before a handler reads the body (404, 405, 400 on a query,
/// 422) leave the connection usable: 1,200 requests on 4 connections, all answered.
#[test]
fn early_answers_keep_the_connection_alive() {
    let node = Node::start(&[]);
    let body = br#"{"argv": ["true"], "note": "a body nobody reads"}"#.repeat(20);
    let requests = [
        ("POST", "/v1/no-such-route", 404),
        ("DELETE", "/v1/jobs", 405),
        ("POST", "/v1/jobs/not-an-id/cancel", 400),
        ("GET", "/v1/jobs?limit=many", 400),
        ("POST", "/v1/jobs", 422),
    ];
    let mut answered = 0;
    for _ in 0..4 {
        let mut conn = KeepAlive::open(&node);
        for round in 0..60 {
            for (method, path, want) in requests {
                let (status, connection) = conn.send(method, path, &body, "");
                assert_eq!(status, want, "{method} {path}, round {round}");
                assert_ne!(connection, "close", "{method} {path} closed the connection");
                answered += 1;
            }
        }
    }
    assert_eq!(answered, 1200);
}

/// Defect 6b: a body over the limit gets its 413, saying the connection closes, whether the
/// client sends it all or waits for `100-continue`.
#[test]
fn an_oversized_body_is_answered_413() {
    let node = Node::start(&[]);
    let big = vec![b' '; 9 << 20];
    let mut conn = KeepAlive::open(&node);
    let (status, connection) = conn.send("POST", "/v1/jobs", &big, "");
    assert_eq!((status, connection.as_str()), (413, "close"));

    // The same without a Content-Length the node could refuse up front: chunked.
    let mut stream = TcpStream::connect(("127.0.0.1", node.port())).expect("connect");
    let head = format!(
        "POST /v1/jobs HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nAuthorization: {}\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n",
        node.port(),
        node.bearer()
    );
    stream.write_all(head.as_bytes()).expect("head");
    for chunk in big.chunks(1 << 20) {
        stream
            .write_all(format!("{:x}\r\n", chunk.len()).as_bytes())
            .expect("chunk size");
        stream.write_all(chunk).expect("chunk");
        stream.write_all(b"\r\n").expect("chunk end");
    }
    stream.write_all(b"0\r\n\r\n").expect("last chunk");
    let mut answer = String::new();
    let _ = stream.read_to_string(&mut answer);
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");

    // A client that waits for `100 Continue` is told at once and sends nothing.
    let mut stream = TcpStream::connect(("127.0.0.1", node.port())).expect("connect");
    let head = format!(
        "POST /v1/jobs HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nAuthorization: {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nExpect: 100-continue\r\n\r\n",
        node.port(),
        node.bearer(),
        big.len()
    );
    stream.write_all(head.as_bytes()).expect("head");
    let mut answer = String::new();
    let _ = stream.read_to_string(&mut answer);
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
}

/// Defect 6c: a listing answers at most one page, and `status --limit` pages past it.
#[test]
fn listings_are_paged() {
    let node = Node::start(&[]);
    let agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .new_agent();
    for path in [
        "/v1/jobs?limit=5000",
        "/v1/dlq?limit=1001",
        "/v1/groups?limit=2000",
    ] {
        let mut answer = agent
            .get(&format!("{}{path}", node.url()))
            .header("Authorization", &node.bearer())
            .call()
            .expect("request");
        assert_eq!(answer.status().as_u16(), 400, "{path}");
        let body: Value = answer.body_mut().read_json().expect("error body");
        assert_eq!(body["error"]["field"], "limit", "{path}");
    }
    // 1,100 jobs that wait an hour, in one batch.
    let lines: String = (0..1100)
        .map(|i| format!("{{\"argv\": [\"echo\", \"{i}\"], \"delay\": \"1h\"}}\n"))
        .collect();
    let batch = node.dir.path().join("batch.txt");
    std::fs::write(&batch, lines).expect("batch file");
    let out = node.drover(&["submit", "--batch", batch.to_str().expect("path")]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = node.drover(&["--json", "status", "--limit", "1050"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let jobs: Vec<Value> = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(jobs.len(), 1050, "two pages, joined");
    let mut numbers: Vec<u64> = jobs
        .iter()
        .map(|j| j["number"].as_u64().expect("number"))
        .collect();
    let listed = numbers.clone();
    numbers.sort_unstable_by(|a, b| b.cmp(a));
    numbers.dedup();
    assert_eq!(numbers, listed, "newest first, no job twice");
}

/// Defect 7, the API: values a kernel refuses at spawn, and labels of any size, are refused at
/// submit, naming the field.
#[test]
fn values_that_would_fail_at_spawn_are_refused_at_submit() {
    let node = Node::start(&[]);
    let agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .new_agent();
    let huge = "x".repeat(1 << 20);
    for (body, field) in [
        (
            r#"{"argv":["true"],"nofile":2147483647}"#.to_string(),
            "nofile",
        ),
        (r#"{"argv":["true"],"pids":2147483647}"#.to_string(), "pids"),
        (
            format!(r#"{{"argv":["true"],"require":{{"has":"{huge}"}}}}"#),
            "require",
        ),
    ] {
        let mut answer = agent
            .post(&format!("{}/v1/jobs", node.url()))
            .header("Authorization", &node.bearer())
            .header("content-type", "application/json")
            .send(&body)
            .expect("request");
        assert_eq!(answer.status().as_u16(), 422, "{field}");
        let error: Value = answer.body_mut().read_json().expect("error body");
        assert_eq!(error["error"]["field"], field);
        assert!(
            error["error"]["message"]
                .as_str()
                .is_some_and(|m| m.len() < 300),
            "the message does not echo a megabyte: {error}"
        );
    }
    // The node's own hard limit is the most a job gets: more is refused, that much runs.
    let hard = hard_nofile();
    let over = (hard + 1).to_string();
    let out = node.drover(&["submit", "--nofile", &over, "--", "true"]);
    assert_eq!(
        out.status.code(),
        Some(2),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("ulimit -Hn"));
    let out = node.drover(&[
        "run",
        "--nofile",
        &hard.to_string(),
        "--pids",
        "4194304",
        "--",
        "true",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Defect 7, the node's settings: one set of rules whether they come from a flag or from
/// drover.toml; a broken one stops `serve` with exit code 2, naming it.
#[test]
fn serve_refuses_settings_that_break_a_rule() {
    let dir = tempfile::tempdir().expect("tempdir");
    let serve = |flags: &[&str], toml: Option<&str>, env: &[(&str, &str)]| {
        let data = dir.path().join(format!("data{}", rand_suffix()));
        let mut cmd = Command::new(BIN);
        cmd.arg("serve")
            .args(["--listen", "127.0.0.1:0", "--data-dir"])
            .arg(&data)
            .args(flags)
            .env_remove("DROVER_TOKEN");
        if let Some(text) = toml {
            let file = dir.path().join(format!("drover{}.toml", rand_suffix()));
            std::fs::write(&file, text).expect("toml");
            cmd.arg("--config").arg(file);
        }
        cmd.envs(env.iter().copied());
        let out = cmd.output().expect("run serve");
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stderr).to_string(),
        )
    };
    let labels = format!("[serve]\nlabels = {{ has = \"{}\" }}\n", "y".repeat(300));
    for (flags, toml, env, key) in [
        (&[][..], Some("[serve]\nslots = 0\n"), &[][..], "slots"),
        (&["--slots", "0"][..], None, &[][..], "slots"),
        (&["--slots", "5000"][..], None, &[][..], "slots"),
        (&["--heartbeat", "0s"][..], None, &[][..], "heartbeat"),
        (
            &[][..],
            Some("[serve]\nheartbeat = \"0s\"\n"),
            &[][..],
            "heartbeat",
        ),
        (
            &["--heartbeat", "5s", "--node-ttl", "6s"][..],
            None,
            &[][..],
            "node_ttl",
        ),
        (&["--lease", "1s"][..], None, &[][..], "lease"),
        (&[][..], None, &[("DROVER_TOKEN", "x")][..], "token"),
        (&[][..], Some("token = \"short\"\n"), &[][..], "token"),
        (&[][..], Some(labels.as_str()), &[][..], "labels"),
    ] {
        let (code, stderr) = serve(flags, toml, env);
        assert_eq!(code, Some(2), "{flags:?} {toml:?}: {stderr}");
        assert!(
            stderr.contains(key),
            "{flags:?} {toml:?} names {key}: {stderr}"
        );
    }
}

/// This process's hard descriptor limit, which the node started from it inherits.
fn hard_nofile() -> u64 {
    let out = Command::new("sh")
        .args(["-c", "ulimit -Hn"])
        .output()
        .expect("sh");
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .unwrap_or(1 << 20)
        .min(1 << 20)
}

fn rand_suffix() -> String {
    use std::sync::atomic::{AtomicUsize, Ordering};
    static N: AtomicUsize = AtomicUsize::new(0);
    N.fetch_add(1, Ordering::Relaxed).to_string()
}
