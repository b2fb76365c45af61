//! Acceptance 9 of #8: a node beyond loopback needs a token, and checks it on every request.
#![allow(clippy::expect_used, clippy::unwrap_used)]

mod common;

use std::io::{Read, Write};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::BIN;

/// The status code of a raw `GET path` with an optional bearer token.
fn status_of(port: u16, path: &str, token: Option<&str>) -> u16 {
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect");
    let auth = token.map_or(String::new(), |t| format!("Authorization: Bearer {t}\r\n"));
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: localhost\r\n{auth}Connection: close\r\n\r\n"
    )
    .expect("send");
    let mut answer = String::new();
    stream.read_to_string(&mut answer).expect("read");
    answer
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or_else(|| panic!("no status line in {answer:?}"))
}

/// The status code of a raw `GET path` sending `cookie`.
fn cookie_status(port: u16, path: &str, cookie: &str) -> u16 {
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect");
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: localhost\r\nCookie: {cookie}\r\nConnection: close\r\n\r\n"
    )
    .expect("send");
    let mut line = [0u8; 12];
    stream.read_exact(&mut line).expect("status line");
    String::from_utf8_lossy(&line[9..12])
        .parse()
        .expect("status")
}

#[test]
fn a_node_beyond_loopback_requires_its_token() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");

    // No token: it refuses to start, and says why.
    let refused = Command::new(BIN)
        .args(["serve", "--listen", "0.0.0.0:0", "--data-dir"])
        .arg(&data)
        .env_remove("DROVER_TOKEN")
        .output()
        .expect("run serve");
    assert!(!refused.status.success());
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(stderr.contains("without a token"), "{stderr}");

    // With one (from a file), it serves; the token never shows in its log.
    let secret = "correct-horse-battery-staple";
    let token_file = dir.path().join("token");
    std::fs::write(&token_file, format!("{secret}\n")).expect("token file");
    let log = dir.path().join("node.log");
    let mut node = Command::new(BIN)
        .args(["serve", "--listen", "0.0.0.0:0", "--data-dir"])
        .arg(&data)
        .arg("--token-file")
        .arg(&token_file)
        .env_remove("DROVER_TOKEN")
        .env("DROVER_LOG", "debug")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).expect("log"))
        .spawn()
        .expect("spawn serve");
    let deadline = Instant::now() + Duration::from_secs(30);
    while !data.join("serve.json").exists() {
        assert!(Instant::now() < deadline, "node did not start");
        std::thread::sleep(Duration::from_millis(20));
    }
    let info: serde_json::Value =
        serde_json::from_slice(&std::fs::read(data.join("serve.json")).expect("serve.json"))
            .expect("json");
    let port: u16 = info["url"]
        .as_str()
        .and_then(|u| u.rsplit(':').next())
        .and_then(|p| p.parse().ok())
        .expect("port");

    for path in ["/v1/jobs", "/v1/events", "/metrics", "/v1/nodes"] {
        assert_eq!(status_of(port, path, None), 401, "{path} without a token");
        assert_eq!(
            status_of(port, path, Some("correct-horse")),
            401,
            "{path} with a wrong token"
        );
    }
    assert_eq!(status_of(port, "/v1/jobs", Some(secret)), 200);
    // The web page's way: the token in its cookie; the page itself needs none.
    assert_eq!(
        cookie_status(
            port,
            "/v1/events?since=0",
            &format!("drover_token={secret}")
        ),
        200
    );
    assert_eq!(cookie_status(port, "/v1/jobs", "drover_token=nope"), 401);
    assert_eq!(status_of(port, "/", None), 200);

    // The CLI with the token works; without it, it is refused with a clear message.
    let cli = |token: Option<&str>, args: &[&str]| {
        let mut cmd = Command::new(BIN);
        cmd.args(args)
            .env("DROVER_DATA_DIR", &data)
            .env_remove("DROVER_SERVER");
        match token {
            Some(t) => cmd.env("DROVER_TOKEN", t),
            None => cmd.env_remove("DROVER_TOKEN"),
        };
        cmd.output().expect("run drover")
    };
    let refused = cli(None, &["status"]);
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("401"));
    let submitted = cli(Some(secret), &["submit", "--", "true"]);
    assert!(
        submitted.status.success(),
        "{}",
        String::from_utf8_lossy(&submitted.stderr)
    );
    let id = String::from_utf8_lossy(&submitted.stdout)
        .trim()
        .to_string();
    let waited = cli(Some(secret), &["wait", &id]);
    assert!(
        waited.status.success(),
        "{}",
        String::from_utf8_lossy(&waited.stderr)
    );

    // SAFETY: kill with a pid we own.
    unsafe { libc::kill(node.id() as i32, libc::SIGTERM) };
    node.wait().expect("reap");
    let logged = std::fs::read_to_string(&log).expect("log");
    assert!(!logged.contains(secret), "the token must never be logged");
}
