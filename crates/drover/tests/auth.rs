//! Acceptance 9 of #8: a node beyond loopback needs a token, and checks it on every request.
#![allow(clippy::expect_used, clippy::unwrap_used)]

mod common;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::BIN;

/// The status code of a raw `GET path` with an optional bearer token.
fn status_of(port: u16, path: &str, token: Option<&str>) -> u16 {
    match token {
        Some(t) => common::raw_status(port, "GET", path, &[&format!("Authorization: Bearer {t}")]),
        None => common::raw_status(port, "GET", path, &[]),
    }
}

/// The status code of a raw `GET path` sending `cookie`.
fn cookie_status(port: u16, path: &str, cookie: &str) -> u16 {
    common::raw_status(port, "GET", path, &[&format!("Cookie: {cookie}")])
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
    // The web page's way: the token in its cookie (named per port); the page itself needs none.
    let cookie = format!("drover_token_{port}");
    assert_eq!(
        cookie_status(port, "/v1/events?since=0", &format!("{cookie}={secret}")),
        200
    );
    assert_eq!(
        cookie_status(port, "/v1/jobs", &format!("{cookie}=nope")),
        401
    );
    assert_eq!(
        cookie_status(port, "/v1/jobs", &format!("drover_token_1={secret}")),
        401,
        "another port's cookie is not this node's"
    );
    assert_eq!(status_of(port, "/", None), 200);

    // The CLI with the token works; from another machine (no data dir of this node's) without
    // it, it is refused with a clear message.
    let url = format!("http://127.0.0.1:{port}");
    let elsewhere = dir.path().join("elsewhere");
    let cli = |token: Option<&str>, args: &[&str]| {
        let mut cmd = Command::new(BIN);
        cmd.args(args)
            .env("DROVER_DATA_DIR", &elsewhere)
            .env("DROVER_SERVER", &url)
            .env_remove("DROVER_TOKEN_FILE");
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
    assert!(
        logged.contains("over plain HTTP: its token and the jobs' specs travel in clear"),
        "{logged}"
    );
}
