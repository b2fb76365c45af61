//! Capturing a job's stdout and stderr into per-attempt files.
//!
//! The job writes into pipes; one task per stream copies everything to its file until EOF, so no
//! line is lost, up to `limit` bytes. Past the limit the rest is still read and counted (so the
//! job never blocks on a full pipe), and the file keeps its first and its last part — a long
//! computation's answer is at its end — with a marker line between them that says how much was
//! dropped. While the job runs, the last part lives in a ring file beside the log
//! (`stdout.log.tail`); when the stream ends it is appended to the log and removed.

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
    open_log(path).map(tokio::fs::File::from_std)
}

fn open_log(path: &Path) -> io::Result<std::fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    let open = || {
        std::fs::OpenOptions::new()
            .create(true)
            .truncate(true)
            .write(true)
            .mode(0o600)
            .open(path)
    };
    match open() {
        Err(err) if err.kind() == io::ErrorKind::NotFound => {
            prepare_log_dir(path)?;
            open()
        }
        other => other,
    }
}

/// Makes the directory a log file at `path` goes into (owner-only), if it is missing. Done
/// before a job may exec, so that a data dir that cannot take logs stops the job before it runs.
pub fn prepare_log_dir(path: &Path) -> io::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    match path.parent() {
        Some(parent) => std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(parent),
        None => Ok(()),
    }
}

/// A log file made at its first byte. Most short jobs write nothing to one of their streams or
/// to both, and each file made is an inode allocated in the data dir's filesystem: on ext4 that
/// was the largest share of an owner's CPU per job (#18). A stream that never writes leaves no
/// file, which every reader takes as an empty log.
pub struct LogFile {
    path: std::path::PathBuf,
    file: Option<tokio::fs::File>,
}

impl LogFile {
    /// The log at `path`, not made yet.
    pub fn at(path: &Path) -> Self {
        Self {
            path: path.to_path_buf(),
            file: None,
        }
    }

    /// The open file, made now if this is its first use.
    async fn file(&mut self) -> io::Result<&mut tokio::fs::File> {
        match &mut self.file {
            Some(file) => Ok(file),
            slot => Ok(slot.insert(create_log_file(&self.path).await?)),
        }
    }

    async fn write_all(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.file().await?.write_all(bytes).await
    }

    async fn flush(&mut self) -> io::Result<()> {
        match &mut self.file {
            Some(file) => file.flush().await,
            None => Ok(()),
        }
    }
}

/// Copies `source` into `file` until EOF, keeping at most `limit` bytes: all of it, or the first
/// half of the limit and — with a `tail` path for the ring file — the last half.
pub async fn capture(
    mut source: impl AsyncRead + Unpin,
    mut file: LogFile,
    limit: u64,
    tail: Option<std::path::PathBuf>,
    activity: Option<std::sync::Arc<Activity>>,
) -> io::Result<Captured> {
    let mut buf = vec![0u8; 64 * 1024];
    let mut captured = Captured::default();
    let tail_room = if tail.is_some() { limit / 2 } else { 0 };
    let head_room = limit - tail_room;
    let mut ring: Option<Ring> = None;
    let mut head_closed = false;
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
        if captured.write_error.is_some() {
            continue;
        }
        let room = if head_closed {
            0
        } else {
            head_room.saturating_sub(captured.kept)
        };
        let mut keep = (n as u64).min(room) as usize;
        if keep < n {
            // The head fills inside this read: end it at its last whole line (where it has
            // one), so that the marker follows a whole line; nothing more joins it.
            head_closed = true;
            if tail.is_some() {
                if let Some(at) = buf[..keep].iter().rposition(|b| *b == b'\n') {
                    keep = at + 1;
                }
            }
        }
        if keep > 0 {
            // A write that fails (the disk is full) ends the file, not the capture: the rest
            // is read and counted, and the ending says what was lost.
            match file.write_all(&buf[..keep]).await {
                Ok(()) => captured.kept += keep as u64,
                Err(err) => captured.write_error = Some(err.to_string()),
            }
        }
        let rest = &buf[keep..n];
        if let (false, Some(path), None) = (rest.is_empty(), &tail, &captured.write_error) {
            if ring.is_none() && tail_room > 0 {
                // One byte more than the tail: the byte before it says whether the tail
                // starts at a whole line.
                match Ring::create(path, tail_room + 1).await {
                    Ok(created) => ring = Some(created),
                    Err(err) => captured.write_error = Some(err.to_string()),
                }
            }
            if let Some(ring) = &mut ring {
                if let Err(err) = ring.push(rest).await {
                    captured.write_error = Some(err.to_string());
                }
            }
        }
    }
    let head = captured.kept;
    // The kept tail: where in the ring it starts. It is copied from the ring file to the log
    // in blocks, never held in memory (it may be half of `--max-log-size`).
    let mut tail: Option<(Ring, u64)> = None;
    if let Some(mut ring) = ring.take() {
        if captured.write_error.is_none() {
            match ring.tail_start(tail_room, captured.seen - head).await {
                Ok(from) => tail = Some((ring, from)),
                Err(err) => {
                    captured.write_error = Some(err.to_string());
                    ring.remove().await;
                }
            }
        } else {
            ring.remove().await;
        }
    }
    let tail_len = tail.as_ref().map_or(0, |(ring, from)| ring.held() - from);
    let dropped = captured.seen - head - tail_len;
    let marker = match &captured.write_error {
        Some(err) => Some(format!(
            "\n[drover: output cut: kept {} of {} bytes: {err}]\n",
            captured.kept, captured.seen
        )),
        None if dropped > 0 && tail_len > 0 => Some(format!(
            "\n[drover: output truncated: {dropped} bytes dropped here; kept the first {head} and the last {tail_len} of {} bytes]\n",
            captured.seen
        )),
        None if dropped > 0 => Some(format!(
            "\n[drover: output truncated: kept {} of {} bytes]\n",
            captured.kept, captured.seen
        )),
        None => None,
    };
    if let Some(marker) = marker {
        // Best effort: on a full disk the marker may not fit either; the ending still says it.
        let _ = file.write_all(marker.as_bytes()).await;
    }
    if let Some((mut ring, from)) = tail {
        let copied = match file.file().await {
            Ok(file) => ring.copy_from(from, file).await,
            Err(err) => Err(err),
        };
        match copied {
            Ok(copied) => captured.kept += copied,
            Err(err) => captured.write_error = Some(err.to_string()),
        }
        ring.remove().await;
    }
    let _ = file.flush().await;
    Ok(captured)
}

/// The ring file of a log's last part: byte `k` past the head is at `k % size`, so it holds the
/// last `size` bytes whatever was written.
struct Ring {
    file: tokio::fs::File,
    path: std::path::PathBuf,
    size: u64,
    written: u64,
}

impl Ring {
    async fn create(path: &Path, size: u64) -> io::Result<Ring> {
        use std::os::unix::fs::OpenOptionsExt;
        // Read back at the end, so read-write; the owner's only, as the log is.
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(true)
            .read(true)
            .write(true)
            .mode(0o600)
            .open(path)?;
        Ok(Ring {
            file: tokio::fs::File::from_std(file),
            path: path.to_path_buf(),
            size,
            written: 0,
        })
    }

    async fn push(&mut self, mut bytes: &[u8]) -> io::Result<()> {
        use tokio::io::AsyncSeekExt;
        let size = usize::try_from(self.size).unwrap_or(usize::MAX);
        if bytes.len() > size {
            // Only the last `size` bytes can survive.
            self.written += (bytes.len() - size) as u64;
            bytes = &bytes[bytes.len() - size..];
        }
        while !bytes.is_empty() {
            let at = self.written % self.size;
            let fits = usize::try_from(self.size - at).unwrap_or(usize::MAX);
            let part = bytes.len().min(fits);
            self.file.seek(io::SeekFrom::Start(at)).await?;
            self.file.write_all(&bytes[..part]).await?;
            self.written += part as u64;
            bytes = &bytes[part..];
        }
        Ok(())
    }

    /// How many bytes it holds: the last `size` written, or all of them.
    fn held(&self) -> u64 {
        self.written.min(self.size)
    }

    /// Reads from the `at`-th byte it holds (in the order written) into `buf`, up to the end of
    /// what it holds or of the file; returns how many bytes were read.
    async fn read_at(&mut self, at: u64, buf: &mut [u8]) -> io::Result<usize> {
        use tokio::io::AsyncSeekExt;
        let oldest = if self.written > self.size {
            self.written % self.size
        } else {
            0
        };
        let physical = (oldest + at) % self.size;
        let n = (buf.len() as u64)
            .min(self.held() - at)
            .min(self.size - physical) as usize;
        self.file.seek(io::SeekFrom::Start(physical)).await?;
        self.file.read_exact(&mut buf[..n]).await?;
        Ok(n)
    }

    /// Where the kept tail starts, given `past_head` bytes came after the head. A ring one byte
    /// larger than `tail_room` has the byte before the tail first: when something was dropped
    /// and that byte ends no line, the tail starts after its first newline (where it has one
    /// before its last byte), so that it begins with a whole line.
    async fn tail_start(&mut self, tail_room: u64, past_head: u64) -> io::Result<u64> {
        let held = self.held();
        let mut byte = [0u8; 1];
        let (before, mut from) = if held > tail_room {
            self.read_at(0, &mut byte).await?;
            (Some(byte[0]), 1)
        } else {
            (None, 0)
        };
        if past_head > held - from && before != Some(b'\n') {
            let mut block = vec![0u8; 64 * 1024];
            let mut at = from;
            'scan: while at < held {
                let n = self.read_at(at, &mut block).await?;
                for (i, b) in block[..n].iter().enumerate() {
                    if *b == b'\n' {
                        let newline = at + i as u64;
                        if newline + 1 < held {
                            from = newline + 1;
                        }
                        break 'scan;
                    }
                }
                at += n as u64;
            }
        }
        Ok(from)
    }

    /// Copies what it holds from the `from`-th byte on into `to`, in blocks; returns how many
    /// bytes were copied.
    async fn copy_from(
        &mut self,
        from: u64,
        to: &mut (impl tokio::io::AsyncWrite + Unpin),
    ) -> io::Result<u64> {
        let mut block = vec![0u8; 64 * 1024];
        let mut at = from;
        while at < self.held() {
            let n = self.read_at(at, &mut block).await?;
            to.write_all(&block[..n]).await?;
            at += n as u64;
        }
        Ok(at - from)
    }

    /// Closes and removes the ring file.
    async fn remove(self) {
        let Ring { file, path, .. } = self;
        drop(file);
        let _ = tokio::fs::remove_file(&path).await;
    }
}

/// Where the ring file of `log`'s last part lives while its job runs.
pub fn tail_path(log: &Path) -> std::path::PathBuf {
    let mut name = log.as_os_str().to_os_string();
    name.push(".tail");
    std::path::PathBuf::from(name)
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
        let captured = capture(
            input,
            LogFile::at(&path),
            limit,
            Some(tail_path(&path)),
            None,
        )
        .await
        .expect("capture");
        assert!(!tail_path(&path).exists(), "the ring file is removed");
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

    /// A log that cannot be made at the first byte (its directory cannot exist) is a cut
    /// like a full disk: the output is read to its end and the ending says why.
    #[tokio::test]
    async fn a_log_that_cannot_be_made_is_cut_not_fatal() {
        let input = vec![b'z'; 200_000];
        let captured = capture(
            &input[..],
            LogFile::at(Path::new("/dev/null/ab/job.1.stdout")),
            1 << 20,
            None,
            None,
        )
        .await
        .expect("the capture goes on");
        assert_eq!(captured.seen, 200_000);
        assert_eq!(captured.kept, 0);
        assert!(captured.write_error.is_some(), "{captured:?}");
    }

    /// A stream that writes nothing leaves no file (readers take a missing log as empty); the
    /// first byte makes it, in a directory made if missing.
    #[tokio::test]
    async fn a_silent_stream_makes_no_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("ab").join("job.1.stdout");
        let captured = capture(
            &b""[..],
            LogFile::at(&path),
            1024,
            Some(tail_path(&path)),
            None,
        )
        .await
        .expect("capture");
        assert_eq!(captured, Captured::default());
        assert!(!path.exists());
        let captured = capture(&b"hi\n"[..], LogFile::at(&path), 1024, None, None)
            .await
            .expect("capture");
        assert_eq!(captured.kept, 3);
        assert_eq!(std::fs::read_to_string(&path).expect("read"), "hi\n");
    }

    /// Past the limit the file keeps its first and its last half, the marker between them.
    #[tokio::test]
    async fn keeps_the_head_and_the_tail_and_says_what_was_dropped() {
        let input: String = (0..100_000).map(|i| format!("{i:06}\n")).collect();
        let (captured, text) = run(input.as_bytes(), 1400).await;
        // 700 bytes of head and of tail: the first and the last 100 lines, whole.
        assert_eq!(captured.seen, 700_000);
        assert_eq!(captured.kept, 1400, "{captured:?}");
        assert_eq!(captured.write_error, None);
        let head: String = (0..100).map(|i| format!("{i:06}\n")).collect();
        let tail: String = (99_900..100_000).map(|i| format!("{i:06}\n")).collect();
        assert_eq!(
            text,
            format!(
                "{head}\n[drover: output truncated: 698600 bytes dropped here; kept the first 700 and the last 700 of 700000 bytes]\n{tail}"
            )
        );
        // A limit that falls inside a line: the head ends at its last whole line, and the tail
        // begins at the next whole one.
        let (captured, text) = run(input.as_bytes(), 1404).await;
        assert_eq!(captured.kept, 700 + 700, "{captured:?}");
        assert!(text.starts_with(&format!("{head}\n[drover:")), "{text}");
        assert!(text.ends_with(&format!("bytes]\n{tail}")), "{text}");
    }

    /// The ring wraps many times, over reads of every size: what it holds is the stream's end.
    #[tokio::test]
    async fn the_tail_is_the_end_whatever_the_reads() {
        let input: Vec<u8> = (0..1_000_003u32).map(|i| b'a' + (i % 26) as u8).collect();
        let dir = tempfile::tempdir().expect("tempdir");
        let log = dir.path().join("out.log");
        let captured = capture(
            &input[..],
            LogFile::at(&log),
            2 * 4099,
            Some(tail_path(&log)),
            None,
        )
        .await
        .expect("capture");
        assert_eq!(captured.seen, 1_000_003);
        // No newlines, so nothing is trimmed: the file ends with the stream's last 4099 bytes.
        let kept = std::fs::read(&log).expect("read");
        assert!(kept.ends_with(&input[input.len() - 4099..]));
        assert!(kept.starts_with(&input[..4099]));
        let path = dir.path().join("ring");
        let mut ring = Ring::create(&path, 4099).await.expect("ring");
        // (A ring of 4099 bytes; `capture` asks for one more than its tail.)
        for chunk in input.chunks(7919) {
            ring.push(chunk).await.expect("push");
        }
        let mut held = Vec::new();
        ring.copy_from(0, &mut held).await.expect("copy");
        assert_eq!(held, &input[input.len() - 4099..]);
        ring.remove().await;
        assert!(!path.exists());
    }

    /// Output with no newline at all is kept as bytes: the tail is not trimmed to nothing.
    #[tokio::test]
    async fn a_tail_without_a_newline_is_kept_whole() {
        let (captured, text) = run(b"abcdefghij", 8).await;
        assert_eq!(captured.kept, 8);
        assert_eq!(
            text,
            "abcd\n[drover: output truncated: 2 bytes dropped here; kept the first 4 and the last 4 of 10 bytes]\nghij"
        );
    }

    /// A full disk (`/dev/full` answers every write with ENOSPC) ends the file, not the
    /// capture: the whole output is still read, so the job neither blocks nor gets SIGPIPE.
    #[cfg(target_os = "linux")]
    #[tokio::test]
    async fn a_full_disk_cuts_the_file_and_says_why() {
        let input = vec![b'y'; 300_000];
        let captured = capture(
            &input[..],
            LogFile::at(Path::new("/dev/full")),
            1 << 20,
            None,
            None,
        )
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
