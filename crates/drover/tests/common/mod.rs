//! A harness for end-to-end tests: a real `drover serve` in a temp data dir, driven through the
//! real CLI binary, plus a /proc scan that counts job processes still alive.
#![allow(dead_code, clippy::expect_used, clippy::unwrap_used)]

use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

pub const BIN: &str = env!("CARGO_BIN_EXE_drover");

/// The token the nodes of a test cluster share (given to every node started with `--db`), as a
/// real cluster's nodes do to fetch each other's logs. Clients in tests do not use it: they find
/// each node's own token in its data dir.
pub const CLUSTER_TOKEN: &str = "test-cluster-token-0123456789abcdef";

/// A running node and its data dir.
pub struct Node {
    pub dir: tempfile::TempDir,
    child: Option<Child>,
    extra: Vec<String>,
    env: Vec<(String, String)>,
    /// The drover binary `serve` runs from (another copy, to test an upgrade).
    binary: PathBuf,
}

impl Node {
    /// Starts a node with `extra` serve flags and waits until it serves.
    pub fn start(extra: &[&str]) -> Node {
        Node::start_with_env(extra, &[])
    }

    /// Starts a node with `extra` serve flags and `env` in its environment.
    pub fn start_with_env(extra: &[&str], env: &[(&str, &str)]) -> Node {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut env: Vec<(String, String)> = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        if extra.contains(&"--db") && !env.iter().any(|(k, _)| k == "DROVER_TOKEN") {
            env.push(("DROVER_TOKEN".into(), CLUSTER_TOKEN.into()));
        }
        let mut node = Node {
            dir,
            child: None,
            extra: extra.iter().map(|s| s.to_string()).collect(),
            env,
            binary: PathBuf::from(BIN),
        };
        node.spawn();
        node
    }

    /// The node's own API token, from its data dir.
    pub fn token(&self) -> String {
        std::fs::read_to_string(self.data_dir().join("token"))
            .expect("token file")
            .trim()
            .to_string()
    }

    /// `Bearer TOKEN`, for requests a test makes itself.
    pub fn bearer(&self) -> String {
        format!("Bearer {}", self.token())
    }

    /// The port of its API.
    pub fn port(&self) -> u16 {
        self.url()
            .rsplit(':')
            .next()
            .and_then(|p| p.parse().ok())
            .expect("port")
    }

    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    fn spawn(&mut self) {
        let _ = std::fs::remove_file(self.data_dir().join("serve.json"));
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join("node.log"))
            .expect("node log");
        let child = Command::new(&self.binary)
            .arg("serve")
            .args(["--listen", "127.0.0.1:0", "--data-dir"])
            .arg(self.data_dir())
            .args(&self.extra)
            .env_remove("DROVER_TOKEN")
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .env("DROVER_LOG", "debug")
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("spawn drover serve");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(30);
        while !self.data_dir().join("serve.json").exists() {
            if let Some(status) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                panic!("node exited early ({status}):\n{}", self.log());
            }
            assert!(
                Instant::now() < deadline,
                "node did not start:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("node.log")).unwrap_or_default()
    }

    pub fn url(&self) -> String {
        let info: Value = serde_json::from_slice(
            &std::fs::read(self.data_dir().join("serve.json")).expect("serve.json"),
        )
        .expect("json");
        info["url"].as_str().expect("url").to_string()
    }

    /// `GET` of an API path, authorized, as JSON.
    pub fn get_json(&self, path: &str) -> Value {
        ureq::get(format!("{}{path}", self.url()))
            .header("Authorization", &self.bearer())
            .call()
            .unwrap_or_else(|e| panic!("GET {path}: {e}"))
            .body_mut()
            .read_json()
            .expect("json")
    }

    pub fn pid(&self) -> i32 {
        self.child.as_ref().expect("running").id() as i32
    }

    /// Runs the CLI against this node.
    pub fn drover(&self, args: &[&str]) -> Output {
        self.command(args).output().expect("run drover")
    }

    /// The CLI against this node, ready to run: a test may change its environment first.
    pub fn command(&self, args: &[&str]) -> Command {
        let mut command = Command::new(BIN);
        command
            .args(args)
            .env("DROVER_DATA_DIR", self.data_dir())
            .env_remove("DROVER_SERVER")
            .env_remove("DROVER_TOKEN")
            .env_remove("DROVER_TOKEN_FILE")
            .stdin(Stdio::null());
        command
    }

    /// `drover submit ARGS`, returning the id.
    pub fn submit(&self, args: &[&str]) -> String {
        let mut full = vec!["submit"];
        full.extend_from_slice(args);
        let out = self.drover(&full);
        assert!(
            out.status.success(),
            "submit failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let id = String::from_utf8(out.stdout)
            .expect("utf-8")
            .trim()
            .to_string();
        assert_eq!(id.len(), 36, "submit prints only the id, got {id:?}");
        id
    }

    /// `drover status ID --json`.
    pub fn job(&self, id: &str) -> Value {
        let out = self.drover(&["status", id, "--json"]);
        assert!(
            out.status.success(),
            "status failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).expect("status json")
    }

    /// Polls status until `pred` holds (test-side polling; the node itself never polls).
    pub fn wait_until(&self, id: &str, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let job = self.job(id);
            if pred(&job) {
                return job;
            }
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what}: {job:#}\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(25));
        }
    }

    pub fn kill9(&mut self) {
        let mut child = self.child.take().expect("running");
        child.kill().expect("kill -9");
        child.wait().expect("reap");
    }

    /// SIGTERM and wait for a clean exit.
    pub fn terminate(&mut self) -> std::process::ExitStatus {
        let mut child = self.child.take().expect("running");
        // SAFETY: kill with a pid we own.
        unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
        child.wait().expect("reap")
    }

    pub fn restart(&mut self) {
        assert!(self.child.is_none(), "stop the node first");
        self.spawn();
    }

    /// Runs the node's next start from `binary`.
    pub fn set_binary(&mut self, binary: &std::path::Path) {
        self.binary = binary.to_path_buf();
    }

    /// The node's id, from its address file.
    pub fn node_id(&self) -> String {
        let info: Value = serde_json::from_slice(
            &std::fs::read(self.data_dir().join("serve.json")).expect("serve.json"),
        )
        .expect("json");
        info["node"].as_str().expect("node").to_string()
    }

    /// Sets a variable for the node's next start.
    pub fn set_env(&mut self, key: &str, value: &str) {
        self.env.retain(|(k, _)| k != key);
        self.env.push((key.to_string(), value.to_string()));
    }

    /// The job owners (`drover owner`) of this node's data dir that are alive.
    pub fn owners(&self) -> Vec<i32> {
        alive_with(&format!(
            "owner --dir {}",
            self.data_dir().join("owners").display()
        ))
    }

    /// kill -9 of the node and of every job owner it started: nothing holds its jobs any more.
    pub fn kill9_with_owners(&mut self) {
        self.kill9();
        for pid in self.owners() {
            // SAFETY: kill with plain integers.
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        while !self.owners().is_empty() {
            assert!(Instant::now() < deadline, "owners survived SIGKILL");
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Stops the jobs that outlived the node: SIGTERM to each owner stops its job through the
    /// kill ladder; SIGKILL for any owner still there after 20 s.
    fn stop_owners(&self) {
        let owners = self.owners();
        for pid in &owners {
            // SAFETY: kill with plain integers.
            unsafe { libc::kill(*pid, libc::SIGTERM) };
        }
        let deadline = Instant::now() + Duration::from_secs(20);
        while !self.owners().is_empty() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        for pid in self.owners() {
            // SAFETY: kill with plain integers.
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        // A graceful stop, then the jobs that outlive it: a test leaves no job processes behind.
        if let Some(mut child) = self.child.take() {
            // SAFETY: kill with a pid we own.
            unsafe {
                libc::kill(child.id() as i32, libc::SIGTERM);
                libc::kill(child.id() as i32, libc::SIGTERM);
            }
            let deadline = Instant::now() + Duration::from_secs(20);
            loop {
                if let Ok(Some(_)) = child.try_wait() {
                    break;
                }
                if Instant::now() >= deadline {
                    let _ = child.kill();
                    let _ = child.wait();
                    break;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        self.stop_owners();
    }
}

/// Processes (not zombies) whose command line contains `marker`.
pub fn alive_with(marker: &str) -> Vec<i32> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").expect("/proc").flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<i32>().ok())
        else {
            continue;
        };
        let Ok(cmdline) = std::fs::read(format!("/proc/{pid}/cmdline")) else {
            continue;
        };
        let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
        if !cmdline.contains(marker) {
            continue;
        }
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        let state = stat
            .rsplit(')')
            .next()
            .and_then(|r| r.split_whitespace().next());
        if !matches!(state, Some("Z") | Some("X") | None) {
            found.push(pid);
        }
    }
    found
}

/// `sleep` processes (not zombies) running exactly `sleep DURATION`.
pub fn sleeps_alive(duration: &str) -> usize {
    let exact = format!("sleep {duration} ");
    alive_with(duration)
        .into_iter()
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline"))
                .map(|c| String::from_utf8_lossy(&c).replace('\0', " ") == exact)
                .unwrap_or(false)
        })
        .count()
}

/// A sleep duration unique to one test, so its processes can be found in /proc.
pub fn marker_sleep(tag: u32) -> String {
    format!("1000.{:04}{}", std::process::id() % 10_000, tag)
}

pub fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

pub fn db_path(node: &Node) -> PathBuf {
    node.data_dir().join("drover.db")
}

/// Where a URL's `host:port` is.
fn authority(url: &str) -> std::ops::Range<usize> {
    let start = url
        .find('@')
        .map_or_else(|| url.find("://").expect("url") + 3, |at| at + 1);
    let end = url[start..]
        .find(['/', '?'])
        .map_or(url.len(), |i| start + i);
    start..end
}

/// A TCP proxy between a node and its database that a test can cut (every connection reset,
/// new ones refused at once) and heal: a network partition on one machine.
pub struct Proxy {
    pub port: u16,
    cut: std::sync::Arc<std::sync::atomic::AtomicBool>,
    open: std::sync::Arc<std::sync::Mutex<Vec<std::net::TcpStream>>>,
}

impl Proxy {
    pub fn start(target: std::net::SocketAddr) -> Proxy {
        use std::sync::atomic::Ordering;
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind proxy");
        let port = listener.local_addr().expect("addr").port();
        let cut = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let open = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let (cut2, open2) = (cut.clone(), open.clone());
        std::thread::spawn(move || {
            for client in listener.incoming().flatten() {
                if cut2.load(Ordering::SeqCst) {
                    drop(client);
                    continue;
                }
                let Ok(server) = std::net::TcpStream::connect(target) else {
                    continue;
                };
                let mut tracked = open2.lock().unwrap();
                tracked.push(client.try_clone().expect("clone"));
                tracked.push(server.try_clone().expect("clone"));
                for (mut from, mut to) in [
                    (
                        client.try_clone().expect("clone"),
                        server.try_clone().expect("clone"),
                    ),
                    (server, client),
                ] {
                    std::thread::spawn(move || {
                        let _ = std::io::copy(&mut from, &mut to);
                        let _ = to.shutdown(std::net::Shutdown::Both);
                    });
                }
            }
        });
        Proxy { port, cut, open }
    }

    /// `url` with its host and port replaced by this proxy's.
    pub fn url(&self, url: &str) -> String {
        let range = authority(url);
        format!(
            "{}127.0.0.1:{}{}",
            &url[..range.start],
            self.port,
            &url[range.end..]
        )
    }

    /// A proxy in front of the server a `postgres://` URL points at.
    pub fn before(url: &str) -> Proxy {
        use std::net::ToSocketAddrs;
        let authority = &url[authority(url)];
        let authority = if authority.contains(':') {
            authority.to_string()
        } else {
            format!("{authority}:5432")
        };
        let target = authority
            .to_socket_addrs()
            .expect("resolve")
            .next()
            .expect("an address");
        Proxy::start(target)
    }

    /// Resets every connection and refuses new ones.
    pub fn cut(&self) {
        self.cut.store(true, std::sync::atomic::Ordering::SeqCst);
        for stream in self.open.lock().unwrap().drain(..) {
            let _ = stream.shutdown(std::net::Shutdown::Both);
        }
    }

    /// Accepts connections again.
    pub fn heal(&self) {
        self.cut.store(false, std::sync::atomic::Ordering::SeqCst);
    }
}

/// Jobs that write their id to a shared file when they run: which ran, and how often.
pub struct Ledger {
    dir: tempfile::TempDir,
}

impl Ledger {
    pub fn new() -> Ledger {
        Ledger {
            dir: tempfile::tempdir().expect("tempdir"),
        }
    }

    /// The file the jobs append to.
    pub fn path(&self) -> PathBuf {
        self.dir.path().join("ran.txt")
    }

    /// Submits `n` jobs through `node` in one batch, each appending its id and then running
    /// `then` (shell); returns their ids in order.
    pub fn submit(&self, node: &Node, n: usize, then: &str) -> Vec<String> {
        let line = serde_json::json!({
            "argv": ["sh", "-c", format!("echo $DROVER_JOB_ID >> {}; {then}", self.path().display())]
        })
        .to_string();
        let batch = self.dir.path().join("batch.jsonl");
        std::fs::write(&batch, vec![line; n].join("\n")).expect("batch");
        let out = node.drover(&["submit", "--batch", batch.to_str().expect("utf-8")]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let ids: Vec<String> = stdout(&out).lines().map(str::to_string).collect();
        assert_eq!(ids.len(), n);
        ids
    }

    /// How many times each job ran.
    pub fn runs(&self) -> std::collections::BTreeMap<String, usize> {
        let mut seen = std::collections::BTreeMap::new();
        for id in std::fs::read_to_string(self.path())
            .unwrap_or_default()
            .lines()
        {
            *seen.entry(id.to_string()).or_default() += 1;
        }
        seen
    }

    /// Asserts that exactly `ids` ran, each once.
    pub fn assert_each_ran_once(&self, ids: &[String]) {
        let runs = self.runs();
        let twice: Vec<_> = runs.iter().filter(|(_, n)| **n > 1).collect();
        assert!(twice.is_empty(), "jobs that ran more than once: {twice:?}");
        let mut want: Vec<&String> = ids.iter().collect();
        want.sort();
        let ran: Vec<&String> = runs.keys().collect();
        assert_eq!(ran, want, "every job ran");
    }
}

/// One raw HTTP/1.1 request, as a browser or another program might send it: the status and the
/// whole answer (headers and body). `headers` are sent as given, one per line.
pub fn raw_request(
    port: u16,
    method: &str,
    path: &str,
    headers: &[&str],
    body: &str,
) -> (u16, String) {
    use std::io::Read;
    let mut stream = send_raw(port, method, path, headers, body);
    let mut answer = String::new();
    stream.read_to_string(&mut answer).expect("read");
    let status = answer
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or_else(|| panic!("no status line in {answer:?}"));
    (status, answer)
}

/// The status of a raw request, read from the status line alone (for endless answers such as
/// the event stream).
pub fn raw_status(port: u16, method: &str, path: &str, headers: &[&str]) -> u16 {
    use std::io::Read;
    let mut stream = send_raw(port, method, path, headers, "");
    let mut line = [0u8; 12];
    stream.read_exact(&mut line).expect("status line");
    String::from_utf8_lossy(&line[9..12])
        .parse()
        .expect("status")
}

fn send_raw(
    port: u16,
    method: &str,
    path: &str,
    headers: &[&str],
    body: &str,
) -> std::net::TcpStream {
    use std::io::Write;
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect");
    let mut request = format!("{method} {path} HTTP/1.1\r\n");
    if !headers
        .iter()
        .any(|h| h.to_ascii_lowercase().starts_with("host:"))
    {
        request.push_str(&format!("Host: 127.0.0.1:{port}\r\n"));
    }
    for header in headers {
        request.push_str(header);
        request.push_str("\r\n");
    }
    request.push_str(&format!(
        "Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    ));
    stream.write_all(request.as_bytes()).expect("send");
    stream
}
