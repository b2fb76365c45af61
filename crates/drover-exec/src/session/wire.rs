//! The frames `session-exec` and `session-host` exchange on the session's socket: a tag byte, a
//! 4-byte big-endian length, the payload. Small and binary-safe, so output passes unchanged.

use std::io::{self, Read, Write};

/// exec → host: run this code (JSON [`Request`]).
pub(super) const RUN: u8 = b'R';
/// exec → host: interrupt the code that runs (empty).
pub(super) const INTERRUPT: u8 = b'I';
/// host → exec: bytes the code wrote to stdout.
pub(super) const STDOUT: u8 = b'O';
/// host → exec: bytes the code wrote to stderr.
pub(super) const STDERR: u8 = b'E';
/// host → exec: the exec is over (JSON [`super::ExecStatus`]); the last frame.
pub(super) const DONE: u8 = b'D';

/// The most one frame may hold: output is sent in chunks far below it, and a frame claiming
/// more is a peer that does not speak this protocol.
const MAX_FRAME: usize = 64 << 20;

/// What an exec asks the host to run.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub(super) struct Request {
    /// The code, as the user gave it.
    pub code: String,
    /// How long the interpreter has to come back after an interrupt before the session is
    /// given up, in milliseconds.
    pub interrupt_wait_ms: u64,
}

pub(super) fn write_frame(out: &mut impl Write, tag: u8, payload: &[u8]) -> io::Result<()> {
    let len = u32::try_from(payload.len())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "frame too large"))?;
    let mut head = [0u8; 5];
    head[0] = tag;
    head[1..].copy_from_slice(&len.to_be_bytes());
    out.write_all(&head)?;
    out.write_all(payload)?;
    out.flush()
}

/// The next frame, or `None` at a clean end of stream (between frames).
pub(super) fn read_frame(input: &mut impl Read) -> io::Result<Option<(u8, Vec<u8>)>> {
    let mut head = [0u8; 5];
    let mut got = 0;
    while got < head.len() {
        match input.read(&mut head[got..]) {
            Ok(0) if got == 0 => return Ok(None),
            Ok(0) => return Err(io::ErrorKind::UnexpectedEof.into()),
            Ok(n) => got += n,
            Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
            Err(err) => return Err(err),
        }
    }
    let len = u32::from_be_bytes([head[1], head[2], head[3], head[4]]) as usize;
    if len > MAX_FRAME {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("a frame of {len} bytes: the peer does not speak drover's session protocol"),
        ));
    }
    let mut payload = vec![0u8; len];
    input.read_exact(&mut payload)?;
    Ok(Some((head[0], payload)))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn frames_come_back_as_they_went() {
        let mut buf = Vec::new();
        write_frame(&mut buf, STDOUT, b"42\n").unwrap();
        write_frame(&mut buf, DONE, b"").unwrap();
        let mut input = &buf[..];
        assert_eq!(
            read_frame(&mut input).unwrap(),
            Some((STDOUT, b"42\n".to_vec()))
        );
        assert_eq!(read_frame(&mut input).unwrap(), Some((DONE, Vec::new())));
        assert_eq!(read_frame(&mut input).unwrap(), None);
    }

    #[test]
    fn a_stream_cut_inside_a_frame_is_an_error() {
        let mut buf = Vec::new();
        write_frame(&mut buf, STDOUT, b"hello").unwrap();
        let mut cut = &buf[..7];
        assert!(read_frame(&mut cut).is_err());
        let mut huge = &[STDOUT, 0xff, 0xff, 0xff, 0xff][..];
        assert!(read_frame(&mut huge).is_err());
    }
}
