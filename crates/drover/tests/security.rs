//! #11: a default node (loopback, no token set up by anyone) accepts requests only from its own
//! user's clients and its own page: not from another site's page, not through another name, not
//! from another local user. Jobs do not see the node's secrets; its files are private.
#![allow(clippy::expect_used, clippy::unwrap_used)]

mod common;

use std::io::{BufRead, BufReader};
use std::os::unix::fs::PermissionsExt;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{BIN, Node, raw_request, stdout};

/// How many jobs the node has.
fn job_count(node: &Node) -> usize {
    let out = node.drover(&["status", "--json", "--limit", "10000"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let jobs: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).expect("json");
    jobs.len()
}

fn mode(path: &std::path::Path) -> u32 {
    std::fs::metadata(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .permissions()
        .mode()
        & 0o777
}

/// Acceptance 1: every kind of request a web page can send without asking first, a foreign
/// `Origin` even with the login cookie, and a foreign `Host` are refused, and nothing is created.
#[test]
fn a_default_node_refuses_what_another_site_can_send() {
    let node = Node::start(&[]);
    let port = node.port();
    let token = node.token();
    let before = job_count(&node);
    let spec = r#"{"argv":["touch","/tmp/drover-csrf-was-here"],"cwd":"/"}"#;
    let cookie = format!("Cookie: drover_token_{port}={token}");
    let bearer = format!("Authorization: Bearer {token}");

    // The "simple requests" a browser sends cross-site with no preflight: no token, refused.
    for content_type in [
        Some("Content-Type: text/plain"),
        Some("Content-Type: application/x-www-form-urlencoded"),
        Some("Content-Type: multipart/form-data; boundary=x"),
        None,
    ] {
        let mut headers = vec!["Origin: http://evil.example"];
        headers.extend(content_type);
        let (status, answer) = raw_request(port, "POST", "/v1/jobs", &headers, spec);
        assert!(matches!(status, 401 | 403), "{content_type:?}: {answer}");
        // The same without an Origin (a program, not a page): still no token, still refused.
        let (status, answer) = raw_request(port, "POST", "/v1/jobs", &headers[1..], spec);
        assert_eq!(status, 401, "{content_type:?} without a token: {answer}");
    }
    // With the token, a body that is not JSON is still refused.
    let (status, answer) = raw_request(
        port,
        "POST",
        "/v1/jobs",
        &[&bearer, "Content-Type: text/plain"],
        spec,
    );
    assert_eq!(status, 415, "{answer}");

    // Another site's page, even when the browser holds the login cookie.
    let json = "Content-Type: application/json";
    for (method, path, body) in [("POST", "/v1/jobs", spec), ("GET", "/v1/jobs", "")] {
        let (status, answer) = raw_request(
            port,
            method,
            path,
            &[&cookie, json, "Origin: http://evil.example"],
            body,
        );
        assert_eq!(status, 403, "{method} {path} from evil.example: {answer}");
    }
    // Another port of this machine is another origin (but the same site: cookies go there).
    let (status, _) = raw_request(
        port,
        "POST",
        "/v1/jobs",
        &[&cookie, json, "Origin: http://127.0.0.1:1"],
        spec,
    );
    assert_eq!(status, 403);
    // A cross-site request that carries the cookie and no Origin (as some requests do).
    let (status, _) = raw_request(
        port,
        "GET",
        "/v1/jobs",
        &[&cookie, "Sec-Fetch-Site: same-site"],
        "",
    );
    assert_eq!(status, 403);

    // DNS rebinding: the attacker's name, resolved to 127.0.0.1, even with the right token.
    for host in ["Host: evil.example", "Host: evil.example:7878"] {
        let (status, answer) = raw_request(port, "POST", "/v1/jobs", &[host, &bearer, json], spec);
        assert_eq!(status, 403, "{host}: {answer}");
        assert!(answer.contains("does not answer to the name"), "{answer}");
        let (status, _) = raw_request(port, "GET", "/", &[host], "");
        assert_eq!(
            status, 403,
            "the page is not served under another name either"
        );
    }

    assert_eq!(job_count(&node), before, "nothing was created");
    assert!(!std::path::Path::new("/tmp/drover-csrf-was-here").exists());

    // The same request, well made, is accepted: the refusals above were the rules at work.
    let (status, answer) = raw_request(
        port,
        "POST",
        "/v1/jobs",
        &[&bearer, json, &format!("Origin: http://127.0.0.1:{port}")],
        r#"{"argv":["true"],"cwd":"/"}"#,
    );
    assert_eq!(status, 201, "{answer}");
    let (status, _) = raw_request(
        port,
        "GET",
        "/v1/jobs",
        &[
            &cookie,
            "Sec-Fetch-Site: same-origin",
            &format!("Host: localhost:{port}"),
        ],
        "",
    );
    assert_eq!(status, 200, "the page's own requests carry the cookie");
    assert_eq!(job_count(&node), before + 1);
}

/// Acceptance 2: the user's own CLI needs no setup: it finds the node's token in the data dir.
#[test]
fn the_cli_works_with_no_token_set_up() {
    let node = Node::start(&[]);
    assert_eq!(mode(&node.data_dir().join("token")), 0o600);
    // `watch` first, so it sees the job's events as they happen.
    let mut watch = Command::new(BIN)
        .args(["watch", "--json"])
        .env("DROVER_DATA_DIR", node.data_dir())
        .env_remove("DROVER_TOKEN")
        .env_remove("DROVER_SERVER")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("drover watch");
    // Give watch a moment to subscribe (it replays nothing older than its start).
    std::thread::sleep(Duration::from_millis(500));
    let id = node.submit(&["--", "sh", "-c", "echo first; sleep 1; echo second"]);
    let followed = node.drover(&["logs", "-f", &id]);
    assert!(
        followed.status.success(),
        "{}",
        String::from_utf8_lossy(&followed.stderr)
    );
    assert_eq!(stdout(&followed), "first\nsecond\n");
    let waited = node.drover(&["wait", &id]);
    assert!(
        waited.status.success(),
        "{}",
        String::from_utf8_lossy(&waited.stderr)
    );
    assert_eq!(node.job(&id)["state"], "succeeded");
    let mut lines = BufReader::new(watch.stdout.take().expect("stdout")).lines();
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut saw_finish = false;
    while Instant::now() < deadline && !saw_finish {
        let Some(Ok(line)) = lines.next() else { break };
        let event: serde_json::Value = serde_json::from_str(&line).expect("event json");
        saw_finish = event["job_id"] == id.as_str() && event["kind"] == "finished";
    }
    let _ = watch.kill();
    let _ = watch.wait();
    assert!(saw_finish, "watch saw the job finish");
}

/// Acceptance 3: another local user can read neither the token nor the address, and a request
/// of theirs without the token is refused.
#[test]
fn another_user_cannot_submit() {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("another_user_cannot_submit: needs root to run a command as `nobody`; skipped");
        return;
    }
    let node = Node::start(&[]);
    let before = job_count(&node);
    let as_nobody = |args: &[&str]| {
        Command::new("runuser")
            .args(["-u", "nobody", "--"])
            .args(args)
            .output()
            .expect("runuser")
    };
    let token_path = node.data_dir().join("token");
    let read = as_nobody(&["cat", token_path.to_str().expect("utf-8")]);
    assert!(
        !read.status.success(),
        "nobody read the token: {}",
        stdout(&read)
    );
    let url = format!("{}/v1/jobs", node.url());
    let spec = r#"{"argv":["sh","-c","id > /tmp/drover-nobody-was-here"],"cwd":"/"}"#;
    let posted = as_nobody(&[
        "curl",
        "-s",
        "-o",
        "/dev/null",
        "-w",
        "%{http_code}",
        "-X",
        "POST",
        "-H",
        "Content-Type: application/json",
        "-d",
        spec,
        &url,
    ]);
    assert_eq!(
        stdout(&posted),
        "401",
        "{}",
        String::from_utf8_lossy(&posted.stderr)
    );
    // The drover CLI as nobody, pointed at the data dir, finds nothing it may read.
    let data = node.data_dir();
    let cli = as_nobody(&[
        BIN,
        "--data-dir",
        data.to_str().expect("utf-8"),
        "submit",
        "--",
        "id",
    ]);
    assert!(!cli.status.success());
    assert_eq!(job_count(&node), before, "nothing was created");
}

/// Acceptance 4 (the part without a browser; `scripts/browser-test` drives the page with the
/// cookie): the login link sets an HttpOnly, SameSite=Strict cookie and sends the browser on
/// without the token; the page is served with a strict CSP and frame protection.
#[test]
fn the_login_link_sets_a_strict_cookie_and_the_page_is_locked_down() {
    let node = Node::start(&[]);
    let port = node.port();
    let printed = node.drover(&["web"]);
    assert!(
        printed.status.success(),
        "{}",
        String::from_utf8_lossy(&printed.stderr)
    );
    let link = stdout(&printed).trim().to_string();
    let token = node.token();
    assert_eq!(link, format!("{}/?token={token}", node.url()));

    let (status, answer) = raw_request(port, "GET", &format!("/?token={token}"), &[], "");
    assert_eq!(status, 303, "{answer}");
    let headers = answer.to_ascii_lowercase();
    assert!(headers.contains("\r\nlocation: /\r\n"), "{answer}");
    let cookie_line = answer
        .lines()
        .find(|l| l.to_ascii_lowercase().starts_with("set-cookie:"))
        .expect("a cookie");
    assert!(cookie_line.contains(&format!("drover_token_{port}={token}")));
    assert!(cookie_line.contains("HttpOnly"), "{cookie_line}");
    assert!(cookie_line.contains("SameSite=Strict"), "{cookie_line}");

    let (status, answer) = raw_request(port, "GET", "/?token=not-the-token", &[], "");
    assert_eq!(status, 401);
    assert!(
        !answer.to_ascii_lowercase().contains("set-cookie"),
        "{answer}"
    );

    for path in ["/", "/web/app.js", "/web/app.css"] {
        let (status, answer) = raw_request(port, "GET", path, &[], "");
        assert_eq!(status, 200, "{path}");
        let csp = answer
            .lines()
            .find_map(|l| l.strip_prefix("content-security-policy: "))
            .unwrap_or_else(|| panic!("{path} has no CSP: {answer}"));
        for rule in [
            "default-src 'none'",
            "script-src 'self'",
            "frame-ancestors 'none'",
        ] {
            assert!(csp.contains(rule), "{path}: {csp}");
        }
        assert!(!csp.contains("unsafe-inline"), "{csp}");
        assert!(headers_have(&answer, "x-frame-options: deny"), "{path}");
        assert!(
            headers_have(&answer, "x-content-type-options: nosniff"),
            "{path}"
        );
    }
    // The page has no inline script for the CSP to allow.
    let (_, page) = raw_request(port, "GET", "/", &[], "");
    assert!(!page.contains("<script>"), "no inline script");
    // API answers are not to be sniffed or framed either.
    let (_, answer) = raw_request(port, "GET", "/v1/jobs", &[], "");
    assert!(headers_have(&answer, "x-content-type-options: nosniff"));
}

fn headers_have(answer: &str, line: &str) -> bool {
    answer
        .split("\r\n\r\n")
        .next()
        .unwrap_or("")
        .lines()
        .any(|l| l.eq_ignore_ascii_case(line))
}

/// Acceptance 5: a job of a node whose environment holds its token does not see it (nor the
/// token file's path nor a database URL); the store's files are 0600 and log directories 0700.
#[test]
fn jobs_do_not_see_the_nodes_secrets_and_its_files_are_private() {
    let secret = "node-secret-4f1c9a7e2b";
    let node = Node::start_with_env(
        &[],
        &[
            ("DROVER_TOKEN", secret),
            ("DROVER_TOKEN_FILE", "/nonexistent/token-path"),
        ],
    );
    let id = node.submit(&["--", "sh", "-c", "env; echo token=${DROVER_TOKEN:-none}"]);
    node.wait_until(&id, "the job to end", |j| j["state"] == "succeeded");
    let logs = node.drover(&["logs", &id]);
    let env = stdout(&logs);
    assert!(env.contains("token=none"), "{env}");
    assert!(
        !env.contains(secret),
        "the token leaked into the job: {env}"
    );
    assert!(
        !env.contains("token-path"),
        "the token file's path leaked: {env}"
    );
    assert!(
        env.contains("DROVER_JOB_ID="),
        "the job's own variables are there: {env}"
    );
    // A job may still be given the variable explicitly.
    let given = node.submit(&[
        "-e",
        "DROVER_TOKEN=mine",
        "--",
        "sh",
        "-c",
        "echo $DROVER_TOKEN",
    ]);
    node.wait_until(&given, "the job to end", |j| j["state"] == "succeeded");
    assert_eq!(stdout(&node.drover(&["logs", &given])), "mine\n");

    // The shared token works as well as the local one, for clients elsewhere.
    let elsewhere = Command::new(BIN)
        .args([
            "--server",
            &node.url(),
            "--data-dir",
            "/nonexistent",
            "status",
            &id,
        ])
        .env("DROVER_TOKEN", secret)
        .output()
        .expect("drover status");
    assert!(
        elsewhere.status.success(),
        "{}",
        String::from_utf8_lossy(&elsewhere.stderr)
    );

    let data = node.data_dir();
    for file in [
        "drover.db",
        "drover.db-wal",
        "drover.db-shm",
        "token",
        "node-id",
    ] {
        assert_eq!(mode(&data.join(file)), 0o600, "{file}");
    }
    let logs_dir = data.join("logs");
    assert_eq!(mode(&logs_dir), 0o700);
    let mut shards = 0;
    for shard in std::fs::read_dir(&logs_dir).expect("logs").flatten() {
        shards += 1;
        assert_eq!(mode(&shard.path()), 0o700, "{}", shard.path().display());
        for file in std::fs::read_dir(shard.path()).expect("shard").flatten() {
            assert_eq!(mode(&file.path()), 0o600, "{}", file.path().display());
        }
    }
    assert!(shards > 0);
}
