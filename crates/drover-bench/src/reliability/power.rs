//! Power loss: the data dir lives on ext4 in a loop device; mid-burst the node and its owners
//! are frozen (SIGSTOP) and the device is copied with O_DIRECT. The copy holds what the file
//! system had sent to the disk, not what sat in its page cache — the disk as a power cut leaves
//! it. A node started on the copy must pass `integrity_check` and find every job it had
//! acknowledged (each was committed with an fsync before its answer).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{Context, bail};

use super::burst::{Clients, states_of, wait_for_ends};
use super::{integrity_check, pids_with};
use crate::node::Node;

/// What the copy held.
#[derive(Debug, Clone, Default)]
pub struct Power {
    pub acknowledged: usize,
    pub found: usize,
    pub lost: usize,
    pub integrity: String,
}

/// A loop device with a file system mounted from it, undone on drop.
struct Mounted {
    device: String,
    point: PathBuf,
}

impl Mounted {
    fn attach(image: &Path, point: &Path) -> anyhow::Result<Mounted> {
        let out = Command::new("losetup")
            .args(["--find", "--show"])
            .arg(image)
            .output()
            .context("losetup")?;
        if !out.status.success() {
            bail!(
                "losetup cannot attach a loop device: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        let device = String::from_utf8_lossy(&out.stdout).trim().to_string();
        std::fs::create_dir_all(point)?;
        let mounted = Mounted {
            device,
            point: point.to_path_buf(),
        };
        run("mount", &[&mounted.device, &point.to_string_lossy()])?;
        Ok(mounted)
    }
}

impl Drop for Mounted {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.point).status();
        let _ = Command::new("losetup").args(["-d", &self.device]).status();
    }
}

fn run(program: &str, args: &[&str]) -> anyhow::Result<()> {
    let out = Command::new(program)
        .args(args)
        .output()
        .with_context(|| format!("running {program}"))?;
    if !out.status.success() {
        bail!(
            "{program} {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

/// Runs the power cut with `clients` submitting for `window`. Fails with why where loop
/// devices cannot be had (not root, no losetup, a container without loop devices).
pub fn run_power(
    drover: &Path,
    scratch: &Path,
    clients: usize,
    window: Duration,
) -> anyhow::Result<Power> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        bail!("loop devices need root");
    }
    let dir = std::path::absolute(scratch.join("power"))?;
    std::fs::create_dir_all(&dir)?;
    let image = dir.join("disk.img");
    let copy = dir.join("copy.img");
    std::fs::File::create(&image)?.set_len(256 << 20)?;
    run("mkfs.ext4", &["-q", "-F", &image.to_string_lossy()])?;
    let ledger = dir.join("ledger");
    let marker = format!("2.{:06}3", std::process::id() % 1_000_000);

    let mounted = Mounted::attach(&image, &dir.join("mnt"))?;
    let data = mounted.point.join("data");
    let mut node = Node::start(drover, &data, &["--slots", "4"])?;
    let clients = Clients::start(&node, clients, &ledger, &marker)?;
    std::thread::sleep(window);
    // Freeze everything that writes to the disk, then copy what reached it.
    let owners = pids_with(&format!("owner --dir {}", data.join("owners").display()));
    for pid in std::iter::once(node.pid() as i32).chain(owners.iter().copied()) {
        // SAFETY: kill with plain integers.
        unsafe { libc::kill(pid, libc::SIGSTOP) };
    }
    let copied = run(
        "dd",
        &[
            &format!("if={}", mounted.device),
            &format!("of={}", copy.display()),
            "bs=4M",
            "iflag=direct",
            "status=none",
        ],
    );
    node.kill9()?;
    for pid in &owners {
        // SAFETY: kill with plain integers.
        unsafe { libc::kill(*pid, libc::SIGKILL) };
    }
    let (acknowledged, _) = clients.finish()?;
    // The frozen owners' jobs (the slow ones) are orphans now; they end within seconds.
    std::thread::sleep(Duration::from_secs(3));
    drop(mounted);
    copied?;

    let mounted = Mounted::attach(&copy, &dir.join("after"))?;
    let data = mounted.point.join("data");
    let integrity = integrity_check(&data.join("drover.db"))?;
    let node = Node::start(drover, &data, &["--slots", "4"])?;
    wait_for_ends(&node, Duration::from_secs(180))?;
    let states = states_of(&node)?;
    node.stop()?;
    let found = acknowledged
        .iter()
        .filter(|id| states.contains_key(*id))
        .count();
    // Owners the last node left go idle and exit; give them no chance to hold the mount.
    for pid in pids_with(&format!("owner --dir {}", data.join("owners").display())) {
        // SAFETY: kill with plain integers.
        unsafe { libc::kill(pid, libc::SIGKILL) };
    }
    std::thread::sleep(Duration::from_millis(200));
    drop(mounted);
    let _ = std::fs::remove_file(&image);
    let _ = std::fs::remove_file(&copy);
    Ok(Power {
        acknowledged: acknowledged.len(),
        found,
        lost: acknowledged.len() - found,
        integrity,
    })
}
