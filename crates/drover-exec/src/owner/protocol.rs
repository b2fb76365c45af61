//! What a node and an owner say to each other: one JSON object per line on a Unix stream socket.
//!
//! Every connection opens with the owner's [`Hello`], whose `protocol` field is read before
//! anything else of it, so that a node of any version can tell whether it speaks the owner's
//! language. The protocol number changes only when a message changes in a way an older peer
//! would misread; new optional fields (`#[serde(default)]`) do not change it. A line a peer cannot
//! parse is logged and skipped, never a reason to stop a job.

use std::time::Duration;

use drover_core::AttemptRef;
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt};

use crate::{Outcome, StartRequest, StopReason};

/// The protocol this build speaks.
pub const PROTOCOL: u32 = 1;

/// The longest line either side accepts (a start request carries the job's environment).
pub const MAX_LINE: usize = 32 * 1024 * 1024;

/// The first line an owner sends on every connection: who it is and what it holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hello {
    /// The protocol version; read first, before the rest is trusted.
    pub protocol: u32,
    /// drover's version of the owner's binary.
    pub version: String,
    /// The owner's process id.
    pub pid: u32,
    /// The boot of the machine the owner started in.
    pub boot_id: Option<String>,
    /// The attempt it holds now, if any.
    pub holding: Option<Holding>,
}

/// The attempt an owner holds, and how far it got.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Holding {
    /// The attempt.
    pub attempt: AttemptRef,
    /// Where it is.
    pub phase: Phase,
}

/// How far an attempt got.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    /// Being created: no process yet.
    Starting,
    /// Waiting at the gate for the node's release.
    AtGate {
        /// Leader pid = process group id.
        pid: i32,
        /// The leader's start time.
        proc_start: Option<u64>,
    },
    /// Released: the job runs.
    Running {
        /// Leader pid = process group id.
        pid: i32,
        /// The leader's start time.
        proc_start: Option<u64>,
    },
    /// Over; the outcome waits for the node to record it.
    Ended(Outcome),
}

/// Node → owner.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ToOwner {
    /// Run this attempt (the owner must be idle).
    Start(Box<StartRequest>),
    /// The pid is on disk: let the job exec.
    Release(AttemptRef),
    /// Do not run the child held at the gate.
    Abort(AttemptRef, StopReason),
    /// Stop the job through the kill ladder.
    Stop(AttemptRef, StopReason),
    /// The lease was renewed: kill the tree (no grace) unless another renewal arrives within
    /// `fence_in`; `None` turns fencing off.
    Lease {
        /// The attempt.
        attempt: AttemptRef,
        /// From when the owner reads this message.
        fence_in: Option<Duration>,
    },
    /// The node recorded the attempt's outcome: forget it and be idle.
    Recorded(AttemptRef),
    /// Say how much memory the attempt's tree uses now.
    ReadMemory(AttemptRef),
    /// Exit (only an idle owner does).
    Exit,
}

/// Owner → node. These mirror the [`crate::Report`]s an owner's supervisor makes, but are their
/// own type on purpose: the wire format is versioned and must not change when the node's side
/// of the executor grows a report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FromOwner {
    /// Opens every connection.
    Hello(Hello),
    /// Sent once the child of a `Start` exists and waits at its gate.
    Spawned {
        /// The attempt it was told to start.
        attempt: AttemptRef,
        /// Leader pid = process group id.
        pid: i32,
        /// The leader's start time.
        proc_start: Option<u64>,
    },
    /// Sent once the attempt's whole tree is gone, and again after a reconnect until the node
    /// acknowledges it.
    Exited {
        /// How it ended.
        outcome: Outcome,
        /// The attempt it held.
        attempt: AttemptRef,
    },
    /// The answer to [`ToOwner::ReadMemory`].
    Memory {
        /// The attempt.
        attempt: AttemptRef,
        /// Bytes in use by its tree, where the backend can tell.
        bytes: Option<u64>,
    },
}

/// Why a peer's first line is not a hello this build can use.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HelloError {
    /// The owner speaks another protocol.
    #[error(
        "the owner speaks protocol {protocol} (drover {version}); this drover speaks {PROTOCOL}"
    )]
    Protocol {
        /// Its protocol.
        protocol: u64,
        /// Its drover version, if it said.
        version: String,
    },
    /// The line is not a hello at all.
    #[error("not an owner's hello: {0}")]
    Garbled(String),
}

/// Reads a hello, looking at `protocol` before trusting anything else in it.
pub fn parse_hello(line: &str) -> Result<Hello, HelloError> {
    let value: serde_json::Value =
        serde_json::from_str(line).map_err(|e| HelloError::Garbled(e.to_string()))?;
    let hello = value
        .get("hello")
        .ok_or_else(|| HelloError::Garbled("no `hello` object".into()))?;
    let protocol = hello
        .get("protocol")
        .and_then(serde_json::Value::as_u64)
        .ok_or_else(|| HelloError::Garbled("no protocol number".into()))?;
    if protocol != u64::from(PROTOCOL) {
        return Err(HelloError::Protocol {
            protocol,
            version: hello
                .get("version")
                .and_then(serde_json::Value::as_str)
                .unwrap_or("unknown")
                .to_string(),
        });
    }
    serde_json::from_value(hello.clone()).map_err(|e| HelloError::Garbled(e.to_string()))
}

/// Writes one message as a line.
pub async fn send<W, T>(out: &mut W, message: &T) -> std::io::Result<()>
where
    W: tokio::io::AsyncWrite + Unpin,
    T: Serialize,
{
    let mut line = serde_json::to_vec(message).map_err(std::io::Error::other)?;
    line.push(b'\n');
    out.write_all(&line).await
}

/// Reads the next line: `Ok(None)` at end of stream. A line longer than [`MAX_LINE`] is an error.
pub async fn read_line<R>(input: &mut R, buf: &mut String) -> std::io::Result<Option<()>>
where
    R: tokio::io::AsyncBufRead + Unpin,
{
    buf.clear();
    let mut limited = (&mut *input).take(MAX_LINE as u64);
    let n = limited.read_line(buf).await?;
    if n == 0 {
        return Ok(None);
    }
    if !buf.ends_with('\n') {
        if n >= MAX_LINE {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                "a message longer than the protocol allows",
            ));
        }
        // The stream ended inside a line: the peer died while writing.
        return Ok(None);
    }
    Ok(Some(()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hello() -> Hello {
        Hello {
            protocol: PROTOCOL,
            version: "0.1.0".into(),
            pid: 42,
            boot_id: Some("boot".into()),
            holding: None,
        }
    }

    #[test]
    fn a_hello_of_this_protocol_parses() {
        let line = serde_json::to_string(&FromOwner::Hello(hello())).expect("json");
        assert_eq!(parse_hello(&line), Ok(hello()));
    }

    #[test]
    fn an_unknown_protocol_is_named_before_the_rest_is_read() {
        // A future owner: another protocol and fields this build has never heard of.
        let line =
            r#"{"hello":{"protocol":99,"version":"9.0.0","shape":"new","pid":"not a number"}}"#;
        match parse_hello(line) {
            Err(HelloError::Protocol { protocol, version }) => {
                assert_eq!((protocol, version.as_str()), (99, "9.0.0"));
            }
            other => panic!("expected a protocol mismatch, got {other:?}"),
        }
        assert!(matches!(
            parse_hello("garbage"),
            Err(HelloError::Garbled(_))
        ));
    }

    #[test]
    fn messages_round_trip_as_single_lines() {
        let attempt = AttemptRef {
            job_id: drover_core::JobId::from_uuid(uuid::Uuid::now_v7()),
            attempt: 1,
        };
        let messages = [
            ToOwner::Lease {
                attempt,
                fence_in: Some(Duration::from_millis(1500)),
            },
            ToOwner::Stop(attempt, StopReason::Cancel),
            ToOwner::Recorded(attempt),
        ];
        for message in messages {
            let line = serde_json::to_string(&message).expect("json");
            assert!(!line.contains('\n'));
            assert_eq!(
                serde_json::from_str::<ToOwner>(&line).expect("parse"),
                message
            );
        }
    }
}
