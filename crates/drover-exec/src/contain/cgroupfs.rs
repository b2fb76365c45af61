//! Reading the kernel's description of cgroup mounts and of our own membership, and the small
//! file operations every cgroup backend shares.
//!
//! Paths are parsed from text handed in, so the parsing is unit-tested on fixed inputs; only the
//! thin `read_*` wrappers touch `/proc`.

use std::io;
use std::path::{Path, PathBuf};

/// One mounted cgroup hierarchy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mount {
    /// Where it is mounted (`/sys/fs/cgroup/memory`).
    pub path: PathBuf,
    /// `true` for the cgroup v2 (unified) hierarchy.
    pub unified: bool,
    /// The v1 controllers it carries (`memory`, `cpu`, `cpuacct`...); empty for v2.
    pub controllers: Vec<String>,
}

/// Parses `/proc/self/mountinfo` text into the cgroup mounts it lists.
pub fn parse_mounts(mountinfo: &str) -> Vec<Mount> {
    let mut mounts = Vec::new();
    for line in mountinfo.lines() {
        // `36 35 0:30 / /sys/fs/cgroup/memory rw,... shared:1 - cgroup cgroup rw,memory`
        let Some((left, right)) = line.split_once(" - ") else {
            continue;
        };
        let Some(mount_point) = left.split_whitespace().nth(4) else {
            continue;
        };
        let mut right = right.split_whitespace();
        let fstype = right.next().unwrap_or("");
        let _source = right.next();
        let options = right.next().unwrap_or("");
        let path = PathBuf::from(unescape(mount_point));
        match fstype {
            "cgroup2" => mounts.push(Mount {
                path,
                unified: true,
                controllers: Vec::new(),
            }),
            "cgroup" => {
                let controllers: Vec<String> = options
                    .split(',')
                    .filter(|o| {
                        !matches!(*o, "rw" | "ro" | "noprefix" | "clone_children")
                            && !o.contains('=')
                    })
                    .map(str::to_string)
                    .collect();
                mounts.push(Mount {
                    path,
                    unified: false,
                    controllers,
                });
            }
            _ => {}
        }
    }
    mounts
}

/// Mount points escape spaces and a few other bytes as `\040`-style octal.
fn unescape(raw: &str) -> String {
    let bytes = raw.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\' && i + 4 <= bytes.len() {
            let code = std::str::from_utf8(&bytes[i + 1..i + 4])
                .ok()
                .and_then(|s| u8::from_str_radix(s, 8).ok());
            if let Some(code) = code {
                out.push(code);
                i += 4;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Our own cgroup in each hierarchy, from `/proc/self/cgroup` text: `(controllers, path)`, where
/// controllers is empty for the v2 line `0::/path` and for named hierarchies.
pub fn parse_membership(text: &str) -> Vec<(Vec<String>, String)> {
    text.lines()
        .filter_map(|line| {
            let mut parts = line.splitn(3, ':');
            let _id = parts.next()?;
            let controllers = parts.next()?;
            let path = parts.next()?;
            let controllers = controllers
                .split(',')
                .filter(|c| !c.is_empty() && !c.starts_with("name="))
                .map(str::to_string)
                .collect();
            Some((controllers, path.to_string()))
        })
        .collect()
}

/// Our cgroup v2 path: the `0::/path` line of `/proc/self/cgroup` text.
pub fn parse_v2_membership(text: &str) -> Option<String> {
    text.lines()
        .find_map(|line| line.strip_prefix("0::"))
        .map(str::to_string)
}

/// Reads our cgroup v2 path from `/proc/self/cgroup`.
pub fn read_v2_membership() -> Option<String> {
    std::fs::read_to_string("/proc/self/cgroup")
        .ok()
        .and_then(|t| parse_v2_membership(&t))
}

/// Reads and parses `/proc/self/mountinfo`.
pub fn read_mounts() -> Vec<Mount> {
    std::fs::read_to_string("/proc/self/mountinfo")
        .map(|t| parse_mounts(&t))
        .unwrap_or_default()
}

/// Reads and parses `/proc/self/cgroup`.
pub fn read_membership() -> Vec<(Vec<String>, String)> {
    std::fs::read_to_string("/proc/self/cgroup")
        .map(|t| parse_membership(&t))
        .unwrap_or_default()
}

/// `base` joined with a cgroup path that starts with `/`.
pub fn join(base: &Path, cgroup_path: &str) -> PathBuf {
    base.join(cgroup_path.trim_start_matches('/'))
}

/// Writes `value` to the control file `dir/name`, naming the file in the error.
pub fn write(dir: &Path, name: &str, value: &str) -> io::Result<()> {
    let path = dir.join(name);
    std::fs::write(&path, value).map_err(|e| {
        io::Error::new(
            e.kind(),
            format!("writing {value:?} to {}: {e}", path.display()),
        )
    })
}

/// Reads the control file `dir/name` as trimmed text.
pub fn read(dir: &Path, name: &str) -> io::Result<String> {
    std::fs::read_to_string(dir.join(name)).map(|s| s.trim().to_string())
}

/// Reads a control file holding one number.
pub fn read_u64(dir: &Path, name: &str) -> Option<u64> {
    read(dir, name).ok()?.parse().ok()
}

/// The value of `key` in a flat-keyed file such as `memory.events` (`oom_kill 3`).
pub fn keyed(dir: &Path, name: &str, key: &str) -> Option<u64> {
    let text = read(dir, name).ok()?;
    keyed_in(&text, key)
}

/// The value of `key` in flat-keyed text.
pub fn keyed_in(text: &str, key: &str) -> Option<u64> {
    text.lines().find_map(|line| {
        let (k, v) = line.split_once(char::is_whitespace)?;
        (k == key).then(|| v.trim().parse().ok()).flatten()
    })
}

/// The pids listed in `dir/cgroup.procs` (the kernel lists no zombies there).
pub fn procs(dir: &Path) -> Vec<i32> {
    read(dir, "cgroup.procs")
        .map(|text| text.lines().filter_map(|l| l.trim().parse().ok()).collect())
        .unwrap_or_default()
}

/// Moves `pid` into the cgroup `dir`.
pub fn attach(dir: &Path, pid: i32) -> io::Result<()> {
    write(dir, "cgroup.procs", &pid.to_string())
}

/// Sends `signal` to every process in `dir`.
pub fn signal_all(dir: &Path, signal: i32) {
    for pid in procs(dir) {
        // SAFETY: kill takes plain integers; a pid that exited meanwhile gives ESRCH.
        unsafe {
            libc::kill(pid, signal);
        }
    }
}

/// Removes a cgroup directory, retrying briefly: the kernel may still be tearing down the last
/// exited member when the directory is first found empty.
pub fn remove(dir: &Path) -> io::Result<()> {
    let mut last = Ok(());
    for pause_ms in [0u64, 1, 5, 20, 50, 100] {
        std::thread::sleep(std::time::Duration::from_millis(pause_ms));
        match std::fs::remove_dir(dir) {
            Ok(()) => return Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) => last = Err(e),
        }
    }
    last
}

/// The names of the cgroups directly under `dir` (after a crash: cells nobody owns any more).
pub fn child_cgroups(dir: &Path) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect()
}

/// The distinct directories among `dirs`, in a stable order.
pub fn distinct<'a>(
    dirs: impl IntoIterator<Item = Option<&'a PathBuf>>,
) -> std::collections::BTreeSet<PathBuf> {
    dirs.into_iter().flatten().cloned().collect()
}

/// Whether the current process may create a cgroup under `dir`: tried, not guessed.
pub fn can_create_under(dir: &Path) -> io::Result<()> {
    let probe = dir.join(format!("drover.probe-{}", std::process::id()));
    std::fs::create_dir(&probe)?;
    std::fs::remove_dir(&probe)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MOUNTINFO: &str = "\
24 30 0:22 / /sys rw,nosuid - sysfs sysfs rw
31 24 0:26 / /sys/fs/cgroup ro - tmpfs tmpfs ro,mode=755
33 31 0:28 / /sys/fs/cgroup/unified rw - cgroup2 cgroup2 rw,nsdelegate
35 31 0:30 / /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory
36 31 0:31 / /sys/fs/cgroup/cpu,cpuacct rw - cgroup cgroup rw,cpu,cpuacct
37 31 0:32 / /sys/fs/cgroup/systemd rw - cgroup cgroup rw,xattr,name=systemd
38 31 0:33 / /sys/fs/cgroup/my\\040dir rw - cgroup cgroup rw,pids
";

    #[test]
    fn mounts_are_read_with_their_controllers() {
        let mounts = parse_mounts(MOUNTINFO);
        assert_eq!(mounts.len(), 5);
        assert!(mounts[0].unified);
        assert_eq!(mounts[0].path, PathBuf::from("/sys/fs/cgroup/unified"));
        assert_eq!(mounts[1].controllers, vec!["memory"]);
        assert_eq!(mounts[2].controllers, vec!["cpu", "cpuacct"]);
        assert!(mounts[3].controllers.contains(&"xattr".to_string()));
        assert_eq!(mounts[4].path, PathBuf::from("/sys/fs/cgroup/my dir"));
    }

    #[test]
    fn membership_lines_split_into_controllers_and_paths() {
        let lines =
            parse_membership("4:memory:/process_api/abc\n1:name=systemd:/\n0::/user.slice\n");
        assert_eq!(
            lines[0],
            (vec!["memory".to_string()], "/process_api/abc".to_string())
        );
        assert_eq!(lines[1], (vec![], "/".to_string()));
        assert_eq!(lines[2], (vec![], "/user.slice".to_string()));
        assert_eq!(
            parse_v2_membership("1:name=systemd:/x\n0::/user.slice\n").as_deref(),
            Some("/user.slice")
        );
        assert_eq!(
            join(Path::new("/sys/fs/cgroup"), "/a/b"),
            PathBuf::from("/sys/fs/cgroup/a/b")
        );
    }

    #[test]
    fn keyed_files_are_read_by_key() {
        let text = "low 0\nhigh 0\nmax 12\noom 1\noom_kill 1\n";
        assert_eq!(keyed_in(text, "oom_kill"), Some(1));
        assert_eq!(keyed_in(text, "max"), Some(12));
        assert_eq!(keyed_in(text, "oom_group_kill"), None);
    }
}
