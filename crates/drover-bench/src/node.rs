//! A drover node under test, driven through the real binary.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

/// The longest any single CLI call may take before the harness gives up on it.
pub const CLI_DEADLINE: Duration = Duration::from_secs(300);

/// A running `drover serve`.
pub struct Node {
    pub drover: PathBuf,
    pub data_dir: PathBuf,
    child: Option<Child>,
}

impl Node {
    /// The node's local API token, from its data dir (for requests the CLI does not make).
    pub fn token(&self) -> anyhow::Result<String> {
        let text = std::fs::read_to_string(self.data_dir.join("token"))?;
        Ok(text.trim().to_string())
    }

    /// Starts a node on `data_dir` with extra serve flags and waits until it serves.
    pub fn start(drover: &Path, data_dir: &Path, flags: &[&str]) -> anyhow::Result<Node> {
        let _ = std::fs::remove_file(data_dir.join("serve.json"));
        std::fs::create_dir_all(data_dir.parent().unwrap_or(data_dir))?;
        // Appended to: a node started again on the same data dir (after a crash) adds to it.
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(data_dir.with_extension("log"))?;
        let child = Command::new(drover)
            .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
            .arg(data_dir)
            .args(flags)
            .env("DROVER_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .context("starting drover serve")?;
        let mut node = Node {
            drover: drover.to_path_buf(),
            data_dir: data_dir.to_path_buf(),
            child: Some(child),
        };
        let deadline = Instant::now() + Duration::from_secs(120);
        while !data_dir.join("serve.json").exists() {
            if let Some(child) = node.child.as_mut() {
                if let Some(status) = child.try_wait()? {
                    bail!("drover serve exited early: {status}");
                }
            }
            if Instant::now() > deadline {
                bail!("drover serve did not start");
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        Ok(node)
    }

    /// The port the node listens on, from its address file.
    pub fn port(&self) -> anyhow::Result<u16> {
        let info: serde_json::Value =
            serde_json::from_slice(&std::fs::read(self.data_dir.join("serve.json"))?)?;
        info["url"]
            .as_str()
            .and_then(|url| url.rsplit(':').next())
            .and_then(|port| port.trim_end_matches('/').parse().ok())
            .context("no port in serve.json")
    }

    /// SIGKILL of the node (its job owners live on), and waits for it.
    pub fn kill9(&mut self) -> anyhow::Result<()> {
        if let Some(mut child) = self.child.take() {
            child.kill()?;
            child.wait()?;
        }
        Ok(())
    }

    /// The node's pid.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, Child::id)
    }

    /// Runs the CLI against this node. A call that outlives [`CLI_DEADLINE`] is killed and
    /// reported with the node's log and its unfinished jobs, so a stuck run fails loudly with
    /// what is needed to debug it instead of hanging CI.
    pub fn cli(&self, args: &[&str]) -> anyhow::Result<Output> {
        let mut child = Command::new(&self.drover)
            .args(args)
            .env("DROVER_DATA_DIR", &self.data_dir)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .context("running drover")?;
        // Drain both pipes on threads so a chatty command cannot block on a full pipe.
        let drain = |pipe: Option<Box<dyn std::io::Read + Send>>| {
            std::thread::spawn(move || {
                let mut bytes = Vec::new();
                if let Some(mut pipe) = pipe {
                    let _ = pipe.read_to_end(&mut bytes);
                }
                bytes
            })
        };
        let stdout = drain(child.stdout.take().map(|p| Box::new(p) as _));
        let stderr = drain(child.stderr.take().map(|p| Box::new(p) as _));
        let deadline = Instant::now() + CLI_DEADLINE;
        let status = loop {
            if let Some(status) = child.try_wait()? {
                break status;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                bail!(
                    "drover {} did not finish within {CLI_DEADLINE:?}\n{}",
                    args.join(" "),
                    self.diagnostics()
                );
            }
            std::thread::sleep(Duration::from_millis(2));
        };
        Ok(Output {
            status,
            stdout: stdout.join().unwrap_or_default(),
            stderr: stderr.join().unwrap_or_default(),
        })
    }

    /// The node's log and its unfinished jobs, read straight from its files.
    fn diagnostics(&self) -> String {
        let log = std::fs::read_to_string(self.data_dir.with_extension("log")).unwrap_or_default();
        let tail: Vec<&str> = log.lines().rev().take(40).collect();
        let unfinished = Command::new(&self.drover)
            .args([
                "status",
                "--state",
                "queued,starting,running",
                "--limit",
                "20",
            ])
            .env("DROVER_DATA_DIR", &self.data_dir)
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
            .unwrap_or_default();
        format!(
            "--- node log (last 40 lines, newest first):\n{}\n--- unfinished jobs:\n{unfinished}",
            tail.join("\n")
        )
    }

    /// Runs the CLI and fails unless it exits 0.
    pub fn cli_ok(&self, args: &[&str]) -> anyhow::Result<String> {
        let out = self.cli(args)?;
        if !out.status.success() {
            bail!(
                "drover {} failed: {}",
                args.join(" "),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// Submits a JSON Lines batch from `file`, returning the ids.
    pub fn submit_batch(&self, file: &Path) -> anyhow::Result<Vec<String>> {
        let path = file.to_str().context("batch path")?;
        Ok(self
            .cli_ok(&["submit", "--batch", path])?
            .lines()
            .map(str::to_string)
            .collect())
    }

    /// Resident and peak resident memory of the node, in bytes.
    pub fn rss(&self) -> anyhow::Result<(u64, u64)> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid()))?;
        let field = |name: &str| -> u64 {
            status
                .lines()
                .find(|l| l.starts_with(name))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse::<u64>().ok())
                .unwrap_or(0)
                * 1024
        };
        Ok((field("VmRSS:"), field("VmHWM:")))
    }

    /// Job records as `status --json` gives them (newest first, up to `limit`).
    pub fn jobs(&self, limit: usize) -> anyhow::Result<Vec<serde_json::Value>> {
        let out = self.cli_ok(&["status", "--json", "--limit", &limit.to_string()])?;
        Ok(serde_json::from_str(&out)?)
    }

    /// Stops the node with SIGTERM and waits for it.
    pub fn stop(mut self) -> anyhow::Result<()> {
        self.stop_inner()
    }

    fn stop_inner(&mut self) -> anyhow::Result<()> {
        if let Some(mut child) = self.child.take() {
            // SAFETY: signalling a child we own.
            unsafe {
                libc::kill(child.id() as i32, libc::SIGTERM);
                libc::kill(child.id() as i32, libc::SIGTERM);
            }
            let deadline = Instant::now() + Duration::from_secs(60);
            while child.try_wait()?.is_none() {
                if Instant::now() > deadline {
                    let _ = child.kill();
                    child.wait()?;
                    bail!("drover serve did not stop within 60 s of SIGTERM");
                }
                std::thread::sleep(Duration::from_millis(5));
            }
        }
        Ok(())
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.stop_inner();
    }
}

/// Writes `n` specs running `argv` as JSON Lines into `path`.
pub fn write_batch(path: &Path, n: usize, argv: &[&str]) -> anyhow::Result<()> {
    let line = serde_json::json!({"argv": argv, "cwd": "/"}).to_string();
    let mut text = String::with_capacity((line.len() + 1) * n);
    for _ in 0..n {
        text.push_str(&line);
        text.push('\n');
    }
    std::fs::write(path, text)?;
    Ok(())
}
