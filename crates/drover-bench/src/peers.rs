//! The tools users would pick instead, installed where missing. A peer that cannot be had is
//! skipped loudly, with the reason in the report, never silently.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

/// Whether a command runs (`--version` answers).
fn present(program: &str) -> bool {
    Command::new(program)
        .arg("--version")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

fn run_quiet(program: &str, args: &[&str]) -> anyhow::Result<()> {
    let out = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .output()?;
    if !out.status.success() {
        bail!(
            "{program} {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr)
                .lines()
                .last()
                .unwrap_or("")
        );
    }
    Ok(())
}

/// GNU parallel from Debian. `Err` says why it is unavailable.
pub fn ensure_parallel(install: bool) -> anyhow::Result<()> {
    if present("parallel") {
        return Ok(());
    }
    if !install {
        bail!("not installed (quick mode installs nothing)");
    }
    eprintln!("bench: installing GNU parallel from Debian...");
    run_quiet("apt-get", &["update", "-qq"])?;
    run_quiet("apt-get", &["install", "-y", "-qq", "parallel"])?;
    if present("parallel") {
        Ok(())
    } else {
        bail!("apt-get installed parallel but it does not run")
    }
}

/// pueue and pueued, from crates.io. `Err` says why they are unavailable.
pub fn ensure_pueue(install: bool) -> anyhow::Result<()> {
    if present("pueue") && present("pueued") {
        return Ok(());
    }
    if !install {
        bail!("not installed (quick mode installs nothing)");
    }
    eprintln!("bench: installing pueue with `cargo install pueue --locked` (a few minutes)...");
    run_quiet("cargo", &["install", "pueue", "--locked"])?;
    if present("pueue") {
        Ok(())
    } else {
        bail!("cargo installed pueue but it does not run")
    }
}

/// A private pueue daemon in its own directory.
pub struct Pueue {
    config: PathBuf,
    daemon: Child,
}

impl Pueue {
    /// Starts `pueued` with its state under `dir`.
    pub fn start(dir: &Path) -> anyhow::Result<Pueue> {
        std::fs::create_dir_all(dir)?;
        let config = dir.join("pueue.yml");
        std::fs::write(
            &config,
            format!(
                "shared:\n  pueue_directory: {0}\n  runtime_directory: {0}\n  use_unix_socket: true\n  unix_socket_path: {0}/pueue.socket\n",
                dir.display()
            ),
        )?;
        let daemon = Command::new("pueued")
            .arg("-c")
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("starting pueued")?;
        let pueue = Pueue { config, daemon };
        let deadline = Instant::now() + Duration::from_secs(20);
        while pueue.run(&["status"]).is_err() {
            if Instant::now() > deadline {
                bail!("pueued did not start");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(pueue)
    }

    /// Runs `pueue -c CONFIG ARGS`.
    pub fn run(&self, args: &[&str]) -> anyhow::Result<()> {
        let out = Command::new("pueue")
            .arg("-c")
            .arg(&self.config)
            .args(args)
            .stdin(Stdio::null())
            .output()?;
        if !out.status.success() {
            bail!(
                "pueue {}: {}",
                args.join(" "),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(())
    }
}

impl Drop for Pueue {
    fn drop(&mut self) {
        let _ = self.run(&["shutdown"]);
        let _ = self.daemon.kill();
        let _ = self.daemon.wait();
    }
}
