//! Capturing a job's stdout and stderr into per-attempt files.
//!
//! The job writes into pipes; one task per stream copies everything to its file until EOF, so no
//! line is lost, up to `limit` bytes. Past the limit the rest is read and counted (so the job never
//! blocks on a full pipe) and a marker line says how much was dropped.

use std::io;
use std::os::fd::OwnedFd;
use std::path::Path;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};

/// What a capture saw.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Captured {
    /// Bytes the job wrote.
    pub seen: u64,
    /// Bytes kept in the file (not counting the truncation marker).
    pub kept: u64,
    /// Why the file stopped taking output before the limit (a full disk, an I/O error): the
    /// rest was read and dropped, so the job never blocked or got SIGPIPE.
    pub write_error: Option<String>,
}

/// Opens the read end of a job's output as an async reader: a pipe, or the master side of the
/// job's pseudo-terminal (see [`PtyReader`]).
pub fn pipe_reader(fd: impl Into<OwnedFd>) -> io::Result<std::pin::Pin<Box<dyn AsyncRead + Send>>> {
    use std::os::unix::fs::FileTypeExt;
    let fd: OwnedFd = fd.into();
    let file = std::fs::File::from(fd);
    if file.metadata()?.file_type().is_char_device() {
        return Ok(Box::pin(PtyReader::new(file.into())?));
    }
    Ok(Box::pin(tokio::net::unix::pipe::Receiver::from_owned_fd(
        file.into(),
    )?))
}

/// The master side of a job's pseudo-terminal as an async reader. Once every holder of the
/// slave has closed it, Linux answers a read with `EIO` rather than end-of-file: that is the
/// end here.
pub struct PtyReader {
    fd: tokio::io::unix::AsyncFd<OwnedFd>,
}

impl PtyReader {
    fn new(fd: OwnedFd) -> io::Result<Self> {
        crate::sys::set_nonblocking(&fd)?;
        // SAFETY: an OwnedFd stays open, and names the same descriptor, until it is dropped
        // with the AsyncFd that owns it.
        let fd = unsafe {
            tokio::io::unix::AsyncFd::register_with_interest(fd, tokio::io::Interest::READABLE)
        };
        Ok(Self { fd: fd? })
    }
}

impl AsyncRead for PtyReader {
    fn poll_read(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<io::Result<()>> {
        use std::os::fd::AsRawFd;
        use std::task::Poll;
        loop {
            let mut ready = match self.fd.poll_read_ready(cx) {
                Poll::Ready(ready) => ready?,
                Poll::Pending => return Poll::Pending,
            };
            let unfilled = buf.initialize_unfilled();
            // SAFETY: reads into the initialised, unfilled part of the caller's buffer.
            let n = unsafe {
                libc::read(
                    self.fd.get_ref().as_raw_fd(),
                    unfilled.as_mut_ptr().cast(),
                    unfilled.len(),
                )
            };
            if n >= 0 {
                buf.advance(n as usize);
                return Poll::Ready(Ok(()));
            }
            let err = io::Error::last_os_error();
            match err.raw_os_error() {
                Some(libc::EAGAIN) => ready.clear_ready(),
                Some(libc::EINTR) => {}
                // The slave is closed for good: end of output.
                Some(libc::EIO) => return Poll::Ready(Ok(())),
                _ => return Poll::Ready(Err(err)),
            }
        }
    }
}

/// Creates (truncating) a log file readable by its owner only, in directories (made if
/// missing) that only the owner can open. The calls are made in place, not on a blocking
/// thread: they are a few local metadata operations, and a hand-off to another thread and back
/// would cost more on every short job.
pub async fn create_log_file(path: &Path) -> io::Result<tokio::fs::File> {
    use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
    let open = || {
        std::fs::OpenOptions::new()
            .create(true)
            .truncate(true)
            .write(true)
            .mode(0o600)
            .open(path)
    };
    let file = match open() {
        Err(err) if err.kind() == io::ErrorKind::NotFound => {
            if let Some(parent) = path.parent() {
                std::fs::DirBuilder::new()
                    .recursive(true)
                    .mode(0o700)
                    .create(parent)?;
            }
            open()?
        }
        other => other?,
    };
    Ok(tokio::fs::File::from_std(file))
}

/// Copies `source` into `file` until EOF, keeping at most `limit` bytes.
pub async fn capture(
    mut source: impl AsyncRead + Unpin,
    mut file: tokio::fs::File,
    limit: u64,
    activity: Option<std::sync::Arc<Activity>>,
) -> io::Result<Captured> {
    let mut buf = vec![0u8; 64 * 1024];
    let mut captured = Captured::default();
    loop {
        let n = match source.read(&mut buf).await {
            Ok(0) => break,
            Ok(n) => n,
            Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
            Err(err) => return Err(err),
        };
        if let Some(activity) = &activity {
            activity.touch();
        }
        captured.seen += n as u64;
        let room = limit.saturating_sub(captured.kept);
        let keep = (n as u64).min(room) as usize;
        if keep > 0 && captured.write_error.is_none() {
            // A write that fails (the disk is full) ends the file, not the capture: the rest
            // is read and counted, and the ending says what was lost.
            match file.write_all(&buf[..keep]).await {
                Ok(()) => captured.kept += keep as u64,
                Err(err) => captured.write_error = Some(err.to_string()),
            }
        }
    }
    let marker = match &captured.write_error {
        Some(err) => Some(format!(
            "\n[drover: output cut: kept {} of {} bytes: {err}]\n",
            captured.kept, captured.seen
        )),
        None if captured.seen > captured.kept => Some(format!(
            "\n[drover: output truncated: kept {} of {} bytes]\n",
            captured.kept, captured.seen
        )),
        None => None,
    };
    if let Some(marker) = marker {
        // Best effort: on a full disk the marker may not fit either; the ending still says it.
        let _ = file.write_all(marker.as_bytes()).await;
    }
    let _ = file.flush().await;
    Ok(captured)
}

/// When a job last wrote output, for stall detection. Shared by the capture tasks of one
/// attempt and its stall watch; nothing else.
#[derive(Debug)]
pub struct Activity {
    start: std::time::Instant,
    last_ms: std::sync::atomic::AtomicU64,
}

impl Activity {
    /// Activity counted from now.
    pub fn new() -> Self {
        Self {
            start: std::time::Instant::now(),
            last_ms: std::sync::atomic::AtomicU64::new(0),
        }
    }

    /// Records output now.
    pub fn touch(&self) {
        let ms = self.start.elapsed().as_millis() as u64;
        self.last_ms.store(ms, std::sync::atomic::Ordering::Relaxed);
    }

    /// How long since the last output (or since the start, if none).
    pub fn idle(&self) -> std::time::Duration {
        let last = std::time::Duration::from_millis(
            self.last_ms.load(std::sync::atomic::Ordering::Relaxed),
        );
        self.start.elapsed().saturating_sub(last)
    }
}

impl Default for Activity {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn run(input: &[u8], limit: u64) -> (Captured, String) {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("out.log");
        let file = create_log_file(&path).await.expect("create");
        let captured = capture(input, file, limit, None).await.expect("capture");
        (captured, std::fs::read_to_string(&path).expect("read"))
    }

    #[tokio::test]
    async fn keeps_everything_under_the_limit() {
        let (captured, text) = run(b"one\ntwo\n", 1024).await;
        assert_eq!(
            captured,
            Captured {
                seen: 8,
                kept: 8,
                write_error: None
            }
        );
        assert_eq!(text, "one\ntwo\n");
    }

    #[tokio::test]
    async fn truncates_and_says_so() {
        let input = vec![b'x'; 200_000];
        let (captured, text) = run(&input, 1000).await;
        assert_eq!(
            captured,
            Captured {
                seen: 200_000,
                kept: 1000,
                write_error: None
            }
        );
        assert!(text.starts_with(&"x".repeat(1000)));
        assert!(
            text.ends_with("[drover: output truncated: kept 1000 of 200000 bytes]\n"),
            "{text}"
        );
    }

    /// A full disk (`/dev/full` answers every write with ENOSPC) ends the file, not the
    /// capture: the whole output is still read, so the job neither blocks nor gets SIGPIPE.
    #[cfg(target_os = "linux")]
    #[tokio::test]
    async fn a_full_disk_cuts_the_file_and_says_why() {
        let full = std::fs::OpenOptions::new()
            .write(true)
            .open("/dev/full")
            .expect("/dev/full");
        let input = vec![b'y'; 300_000];
        let captured = capture(&input[..], tokio::fs::File::from_std(full), 1 << 20, None)
            .await
            .expect("the capture goes on");
        assert_eq!(captured.seen, 300_000, "everything was read");
        // tokio's file reports a failed write at the next one: at most one buffer is counted
        // as kept that was not.
        assert!(captured.kept <= 64 * 1024, "{captured:?}");
        assert!(
            captured
                .write_error
                .as_deref()
                .is_some_and(|e| e.contains("No space left")),
            "{captured:?}"
        );
    }
}
