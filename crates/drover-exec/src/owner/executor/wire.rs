//! The wire to one owner: lines written in order without blocking the actor, and the hello read
//! from a fresh connection. Nothing here knows what the lines mean beyond the hello.

use std::io;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::BufReader;
use tokio::net::UnixStream;

use crate::owner::protocol::{self, Hello, ToOwner, parse_hello};

/// How long a re-attach waits for an owner's hello.
pub(super) const HELLO_TIMEOUT: Duration = Duration::from_secs(2);

/// Where lines to one owner go: written at once from the actor (messages are small and the
/// socket's buffer large, so this nearly always completes); what the socket will not take yet
/// waits in a backlog that a short-lived task writes out. Dropping the last handle closes our
/// side of the socket: the owner sees the node go.
pub(super) struct Writer {
    half: tokio::net::unix::OwnedWriteHalf,
    /// Bytes not written yet, and whether a task is writing them.
    backlog: std::sync::Mutex<(Vec<u8>, bool)>,
}

impl Writer {
    pub(super) fn new(half: tokio::net::unix::OwnedWriteHalf) -> Arc<Writer> {
        Arc::new(Writer {
            half,
            backlog: std::sync::Mutex::new((Vec::new(), false)),
        })
    }

    /// Sends one message, in order after every earlier one.
    pub(super) fn send(self: &Arc<Self>, message: &ToOwner) {
        let Ok(mut line) = serde_json::to_vec(message) else {
            return;
        };
        line.push(b'\n');
        let Ok(mut backlog) = self.backlog.lock() else {
            return;
        };
        if backlog.1 {
            backlog.0.extend_from_slice(&line);
            return;
        }
        let written = match self.half.try_write(&line) {
            Ok(n) => n,
            Err(err) if err.kind() == io::ErrorKind::WouldBlock => 0,
            // Broken: the reader sees the end and says so.
            Err(_) => return,
        };
        if written < line.len() {
            backlog.0.extend_from_slice(&line[written..]);
            backlog.1 = true;
            let writer = Arc::clone(self);
            tokio::spawn(async move {
                let _ = writer.flush().await;
            });
        }
    }

    async fn flush(&self) -> io::Result<()> {
        loop {
            self.half.writable().await?;
            let Ok(mut backlog) = self.backlog.lock() else {
                return Err(io::Error::other("poisoned"));
            };
            match self.half.try_write(&backlog.0) {
                Ok(n) => {
                    backlog.0.drain(..n);
                }
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => {}
                Err(err) => return Err(err),
            }
            if backlog.0.is_empty() {
                backlog.1 = false;
                return Ok(());
            }
        }
    }
}

/// Why a fresh connection gave no hello this build can use.
pub(super) enum NoHello {
    /// The connection broke, closed or stayed silent: the owner may be busy or on its way out.
    Broken(String),
    /// A whole line came that is not a hello of this protocol: another drover speaks here.
    Foreign(String),
}

/// Reads an owner's hello from a fresh connection.
pub(super) async fn read_hello(stream: UnixStream) -> Result<(Hello, UnixStream), NoHello> {
    let mut input = BufReader::new(stream);
    let mut line = String::new();
    match tokio::time::timeout(HELLO_TIMEOUT, protocol::read_line(&mut input, &mut line)).await {
        Ok(Ok(Some(()))) => {}
        Ok(Ok(None)) => {
            return Err(NoHello::Broken(
                "it closed the connection without a hello".into(),
            ));
        }
        Ok(Err(err)) => return Err(NoHello::Broken(err.to_string())),
        Err(_) => {
            return Err(NoHello::Broken(format!(
                "no hello within {HELLO_TIMEOUT:?}"
            )));
        }
    }
    let hello = parse_hello(line.trim_end()).map_err(|e| NoHello::Foreign(e.to_string()))?;
    if !input.buffer().is_empty() {
        // Nothing follows a hello before the node speaks; a peer that says more is not an owner.
        return Err(NoHello::Foreign("unexpected data after the hello".into()));
    }
    Ok((hello, input.into_inner()))
}
