//! Unit tests of the executor: hellos from peers that are not owners of this protocol.

use std::io::{Read, Write};

use std::time::Duration;

use super::*;
use crate::contain::{BackendChoice, BackendKind};

fn config(dir: PathBuf) -> (ExecutorConfig, Arc<Containment>) {
    let containment = Arc::new(
        Containment::detect(BackendChoice::Only(BackendKind::Rlimit), "unused").expect("rlimit"),
    );
    let config = ExecutorConfig {
        dir,
        program: "/nonexistent/drover".into(),
        containment: containment.spec(),
        env_remove: Vec::new(),
        keep_idle: 1,
        reattach: true,
    };
    (config, containment)
}

/// The outcome file an owner leaves for attempt `attempt` of a fresh job that ended so.
fn outcome_file(attempt: u32, ending: Ending) -> OutcomeFile {
    OutcomeFile {
        protocol: super::super::PROTOCOL,
        attempt: AttemptRef {
            job_id: drover_core::JobId::from_uuid(uuid::Uuid::now_v7()),
            attempt,
        },
        outcome: Outcome::without_process(ending),
        boot_id: None,
    }
}

/// An upgrade must never kill a job: an owner speaking a protocol this build does not know
/// (an older or newer drover) is reported, sent nothing, and its socket left in place.
#[tokio::test]
async fn an_owner_of_another_protocol_is_reported_and_left_alone() {
    let dir = tempfile::tempdir().expect("tempdir");
    let owners = dir.path().join("owners");
    super::super::process::make_dir(&owners).expect("owners dir");
    let socket = super::super::socket_path(&owners, 999_999);
    let listener = std::os::unix::net::UnixListener::bind(&socket).expect("bind");
    let fake = std::thread::spawn(move || {
        let (mut conn, _) = listener.accept().expect("accept");
        conn.write_all(b"{\"hello\":{\"protocol\":99,\"version\":\"9.9.9\",\"pid\":1}}\n")
            .expect("hello");
        conn.set_read_timeout(Some(Duration::from_secs(5)))
            .expect("timeout");
        let mut heard = Vec::new();
        let _ = conn.read_to_end(&mut heard);
        heard
    });
    let (config, containment) = config(owners);
    let (_handle, _reports, found) = Executor::start(config, containment).await.expect("start");
    match found.as_slice() {
        [
            Found::Foreign {
                socket: s,
                pid,
                why,
            },
        ] => {
            assert_eq!(s, &socket);
            assert_eq!(*pid, Some(999_999));
            assert!(why.contains("protocol 99"), "{why}");
        }
        other => panic!("expected one foreign owner, found {other:?}"),
    }
    let heard = fake.join().expect("fake owner");
    assert!(
        heard.is_empty(),
        "the node sent nothing to an owner it cannot talk to: {:?}",
        String::from_utf8_lossy(&heard)
    );
    assert!(
        socket.exists(),
        "its socket is left for a node that speaks it"
    );
}

/// An outcome left by an owner that exited with no node listening is found at start; a
/// stale socket (nobody listens) and a torn temp file are removed.
#[tokio::test]
async fn outcomes_are_collected_and_stale_sockets_removed() {
    let dir = tempfile::tempdir().expect("tempdir");
    let owners = dir.path().join("owners");
    super::super::process::make_dir(&owners).expect("owners dir");
    let file = outcome_file(2, Ending::Exited(3));
    super::super::write_outcome(&owners, &file, true).expect("outcome");
    let stale = super::super::socket_path(&owners, 999_998);
    drop(std::os::unix::net::UnixListener::bind(&stale).expect("bind"));
    std::fs::write(owners.join("x.outcome.tmp"), b"torn").expect("tmp");
    // A writer that is gone left one; a live one (this test's process) is writing another.
    std::fs::write(owners.join("y.outcome.999999999.tmp"), b"torn").expect("tmp");
    let writing = owners.join(format!("z.outcome.{}.tmp", std::process::id()));
    std::fs::write(&writing, b"half").expect("tmp");
    let (config, containment) = config(owners.clone());
    let (_handle, _reports, found) = Executor::start(config, containment).await.expect("start");
    assert_eq!(found, vec![Found::Outcome(file)]);
    assert!(!stale.exists(), "a socket nobody listens on is removed");
    assert!(!owners.join("x.outcome.tmp").exists());
    assert!(!owners.join("y.outcome.999999999.tmp").exists());
    assert!(
        writing.exists(),
        "a live writer's temp file is not swept from under it"
    );
}

/// An owner that lets go while the node starts — it writes its outcome, then closes its socket
/// without a hello — leaves an outcome the node must find: the files are listed after the
/// sockets were tried. Listed before (as they were), the file came too late, and the attempt
/// had neither owner nor outcome (seen in CI: a job aborted at its gate recorded `owner_died`).
#[tokio::test]
async fn an_outcome_written_while_its_owner_lets_go_is_found() {
    let dir = tempfile::tempdir().expect("tempdir");
    let owners = dir.path().join("owners");
    super::super::process::make_dir(&owners).expect("owners dir");
    let file = outcome_file(1, Ending::Aborted(crate::StopReason::Shutdown));
    let socket = super::super::socket_path(&owners, 999_997);
    let listener = std::os::unix::net::UnixListener::bind(&socket).expect("bind");
    let (dir_for_owner, written) = (owners.clone(), file.clone());
    let owner = std::thread::spawn(move || {
        let (conn, _) = listener.accept().expect("accept");
        super::super::write_outcome(&dir_for_owner, &written, true).expect("outcome");
        let _ = std::fs::remove_file(super::super::socket_path(&dir_for_owner, 999_997));
        drop(conn);
        drop(listener);
    });
    let (config, containment) = config(owners);
    let (_handle, _reports, found) = Executor::start(config, containment).await.expect("start");
    owner.join().expect("fake owner");
    assert_eq!(found, vec![Found::Outcome(file)]);
}
