//! A store that is gone, empty or damaged is never served as if nothing were wrong (issue #16,
//! defect 4): a deleted or truncated `drover.db` in a data dir where a node has run would start
//! an empty queue and forget every job, and a damaged one would answer "corrupt row".
#![allow(clippy::expect_used, clippy::unwrap_used)]

mod common;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{BIN, Node};
use serde_json::Value;

/// How one `drover serve` on `data` ended: `Ok` once it served (it is then stopped), or its
/// exit code and standard error when it refused to start.
fn serve_once(data: &Path, flags: &[&str]) -> Result<(), (Option<i32>, String)> {
    let _ = std::fs::remove_file(data.join("serve.json"));
    let err_path = data.with_extension("stderr");
    let stderr = std::fs::File::create(&err_path).expect("stderr file");
    let mut child = Command::new(BIN)
        .arg("serve")
        .args(["--listen", "127.0.0.1:0", "--data-dir"])
        .arg(data)
        .args(flags)
        .env_remove("DROVER_TOKEN")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(stderr)
        .spawn()
        .expect("spawn serve");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(status) = child.try_wait().expect("wait") {
            let text = std::fs::read_to_string(&err_path).unwrap_or_default();
            return Err((status.code(), text));
        }
        if data.join("serve.json").exists() {
            // SAFETY: kill with a pid we own.
            unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
            child.wait().expect("reap");
            return Ok(());
        }
        assert!(
            Instant::now() < deadline,
            "serve neither served nor refused"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A node with `n` finished jobs, stopped, its store checkpointed into `drover.db` alone.
fn stopped_node_with_jobs(n: usize) -> Node {
    let mut node = Node::start(&[]);
    for i in 0..n {
        node.submit(&["--", "echo", &i.to_string()]);
    }
    assert!(node.drover(&["wait", "--all"]).status.success());
    assert!(node.terminate().success());
    let db = rusqlite::Connection::open(common::db_path(&node)).expect("open");
    db.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))
        .expect("checkpoint");
    node
}

fn jobs_listed(node: &Node) -> usize {
    let out = node.drover(&["--json", "status", "--limit", "1000"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice::<Vec<Value>>(&out.stdout)
        .expect("json")
        .len()
}

#[test]
fn a_missing_or_empty_store_is_not_served_as_an_empty_queue() {
    let mut node = stopped_node_with_jobs(3);
    let data = node.data_dir();
    let db = common::db_path(&node);
    let saved = node.dir.path().join("saved.db");
    std::fs::copy(&db, &saved).expect("keep a copy");

    // Deleted.
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", db.display()));
    }
    let (code, stderr) = serve_once(&data, &[]).expect_err("a deleted store is refused");
    assert_ne!(code, Some(0));
    assert!(
        stderr.contains("is missing") && stderr.contains("--init"),
        "{stderr}"
    );
    assert!(
        !data.join("drover.db").exists(),
        "nothing was created in its place"
    );

    // Truncated to 0 bytes, with a WAL beside it that SQLite would delete on open.
    std::fs::write(&db, b"").expect("truncate");
    let wal = data.join("drover.db-wal");
    std::fs::write(&wal, vec![7u8; 8192]).expect("a wal");
    let (_, stderr) = serve_once(&data, &[]).expect_err("an empty store is refused");
    assert!(
        stderr.contains("is empty") && stderr.contains("Keep"),
        "{stderr}"
    );
    assert_eq!(
        std::fs::metadata(&wal).expect("the wal is kept").len(),
        8192
    );

    // The copy put back, as the message says: every job is there.
    std::fs::remove_file(&wal).expect("remove the test wal");
    std::fs::copy(&saved, &db).expect("restore");
    node.restart();
    assert_eq!(jobs_listed(&node), 3);
    assert!(node.terminate().success());

    // An empty queue on purpose.
    std::fs::remove_file(&db).expect("remove");
    serve_once(&data, &["--init"]).expect("--init starts an empty queue");
    node.restart();
    assert_eq!(jobs_listed(&node), 0);

    // A data dir where no node ever ran needs no --init.
    let fresh = node.dir.path().join("fresh");
    serve_once(&fresh, &[]).expect("a first start");
}

#[test]
fn a_damaged_store_is_refused_with_how_to_recover() {
    let mut node = stopped_node_with_jobs(30);
    let data = node.data_dir();
    let db = common::db_path(&node);
    let saved = node.dir.path().join("saved.db");
    std::fs::copy(&db, &saved).expect("keep a copy");
    // 40 bytes over the head of the jobs table's root page (page 2).
    let mut bytes = std::fs::read(&db).expect("read");
    assert!(bytes.len() > 3 * 4096, "the store has pages to damage");
    for b in &mut bytes[4096..4096 + 40] {
        *b ^= 0xA5;
    }
    std::fs::write(&db, &bytes).expect("damage");
    let (code, stderr) = serve_once(&data, &[]).expect_err("a damaged store is refused");
    assert_ne!(code, Some(0));
    assert!(
        stderr.contains("is damaged")
            && stderr.contains("copy of drover.db")
            && stderr.contains("--init"),
        "{stderr}"
    );
    assert!(
        stderr.lines().count() <= 2,
        "one message, not a page dump: {stderr}"
    );

    // The first advice works: the copy from before, put back, is served with every job.
    std::fs::copy(&saved, &db).expect("restore");
    node.restart();
    assert_eq!(jobs_listed(&node), 30);
}

/// A tmpfs of `mb` MiB mounted for one test, unmounted when dropped. `None` (the test skips)
/// when this user cannot mount; CI runs as root, where a failed mount fails the test.
struct Tmpfs(std::path::PathBuf);

impl Tmpfs {
    fn mount(under: &Path, mb: u32) -> Option<Tmpfs> {
        let dir = under.join("tmpfs");
        std::fs::create_dir_all(&dir).expect("mount point");
        let ok = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={mb}m"), "tmpfs"])
            .arg(&dir)
            .status()
            .is_ok_and(|s| s.success());
        // SAFETY: geteuid has no preconditions.
        let root = unsafe { libc::geteuid() } == 0;
        match (ok, root) {
            (true, _) => Some(Tmpfs(dir)),
            (false, true) => panic!("root cannot mount a tmpfs here"),
            (false, false) => {
                eprintln!("SKIPPED: mounting a tmpfs needs root");
                None
            }
        }
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

/// Issue #16, defect 2: the data dir's disk full for longer than the old 20 s retry window.
/// Jobs that exit 0 meanwhile are recorded `succeeded` once there is room (not `lost`, not run
/// twice), and a job that writes while the disk is full is not hurt by it: its log is cut and
/// says so.
#[test]
fn a_full_disk_loses_no_outcome() {
    let outer = tempfile::tempdir().expect("tempdir");
    let Some(fs) = Tmpfs::mount(outer.path(), 24) else {
        return;
    };
    let data = fs.0.join("data");
    // The harness's nodes live in their own temp dirs; this one's data dir is the tmpfs.
    let log_path = outer.path().join("node.log");
    let log = std::fs::File::create(&log_path).expect("log");
    let mut child = Command::new(BIN)
        // Four slots: the writer runs at once, while the disk is full and before the
        // reserve is given back.
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--slots",
            "4",
            "--data-dir",
        ])
        .arg(&data)
        .env_remove("DROVER_TOKEN")
        .stdin(Stdio::null())
        .stdout(log.try_clone().expect("log"))
        .stderr(log)
        .spawn()
        .expect("serve");
    let deadline = Instant::now() + Duration::from_secs(30);
    while !data.join("serve.json").exists() {
        assert!(Instant::now() < deadline, "the node did not start");
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(data.join("reserve").exists(), "space is set aside");
    let drover = |args: &[&str]| {
        Command::new(BIN)
            .arg("--data-dir")
            .arg(&data)
            .args(args)
            .output()
            .expect("drover")
    };
    let submit = |args: &[&str]| {
        let out = drover(&[&["submit"], args].concat());
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    };
    // Three jobs that end while the disk is full, one that writes 6 MB into it.
    let quiet: Vec<String> = (0..3)
        .map(|_| submit(&["--retries", "2", "--", "sleep", "4"]))
        .collect();
    let noisy = submit(&[
        "--",
        "sh",
        "-c",
        "sleep 2; head -c 6000000 /dev/zero | tr '\\0' x; echo; echo done-writing",
    ]);
    std::thread::sleep(Duration::from_secs(1));
    // Fill the disk, and keep it full past the old window.
    let filler = fs.0.join("filler");
    let _ = Command::new("dd")
        .args(["if=/dev/zero", "bs=1M", "count=64"])
        .arg(format!("of={}", filler.display()))
        .stderr(Stdio::null())
        .status();
    std::thread::sleep(Duration::from_secs(25));
    std::fs::remove_file(&filler).expect("free the disk");

    let mut ids = quiet.clone();
    ids.push(noisy.clone());
    let waited = drover(
        &[
            &["wait", "--timeout", "60s", "--quiet"],
            &ids.iter().map(String::as_str).collect::<Vec<_>>()[..],
        ]
        .concat(),
    );
    let log_text = std::fs::read_to_string(&log_path).unwrap_or_default();
    assert!(
        waited.status.success(),
        "{}\n{log_text}",
        String::from_utf8_lossy(&waited.stderr)
    );
    for id in &ids {
        let out = drover(&["--json", "status", id]);
        let job: Value = serde_json::from_slice(&out.stdout).expect("json");
        assert_eq!(job["state"], "succeeded", "{job:#}\n{log_text}");
        assert_eq!(job["attempt"], 1, "run once: {job:#}");
    }
    assert!(
        log_text.contains("disk is full"),
        "the reserve was freed:\n{log_text}"
    );
    // The noisy job went on to its end although its log was cut (it wrote into a full disk):
    // the cut is on its attempt, and `status` and `logs` say so.
    let out = drover(&["--json", "status", &noisy]);
    let job: Value = serde_json::from_slice(&out.stdout).expect("json");
    let cuts = &job["attempts"][0]["log_cuts"];
    assert_eq!(cuts[0]["stream"], "stdout", "{job:#}\n{log_text}");
    assert_eq!(
        cuts[0]["written_bytes"],
        6_000_000 + "\ndone-writing\n".len()
    );
    assert!(cuts[0]["kept_bytes"].as_u64() < Some(6_000_000), "{job:#}");
    assert!(
        cuts[0]["error"]
            .as_str()
            .is_some_and(|e| e.contains("No space left")),
        "{job:#}"
    );
    let status = drover(&["status", &noisy]);
    let status = String::from_utf8_lossy(&status.stdout);
    assert!(
        status.contains("output cut") && status.contains("stdout: kept"),
        "{status}"
    );
    let logs = drover(&["logs", "--stdout", &noisy]);
    let said = String::from_utf8_lossy(&logs.stderr);
    assert!(
        said.contains("output was cut: stdout: kept") && said.contains("No space left on device"),
        "{said}"
    );
    // SAFETY: a pid we own.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let _ = child.wait();
    let _ = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "pkill -f 'owner --dir {}'",
            data.join("owners").display()
        ))
        .status();
}
