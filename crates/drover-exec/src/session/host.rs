//! `drover session-host`: the job that is a session. It runs the interpreter as its child and
//! serves the session's socket, one exec at a time.
//!
//! Python and SageMath run [`super::PYTHON_SHIM`], which reads requests on fd 3 and writes each
//! status on fd 4 after flushing its output, so every byte an exec printed is in the pipes
//! before its end is known. `gp` has no such channel: its code is wrapped in `iferr(eval(...))`
//! and followed by a `print` of a marker that carries a nonce, and the host reads the marker
//! out of gp's stdout. Output that comes between execs (a banner, a warning) goes to the host's
//! own stdout and stderr, the session job's log.

use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use drover_core::SessionKind;

use super::wire::{self, Request};
use super::{ExecStatus, PYTHON_SHIM, poll};

/// The line the host writes to its stderr (the session job's log) once the interpreter has
/// started and imported what it imports: `drover session start` returns when it sees it.
pub const READY_LINE: &str = "drover: the session is ready";

/// How often the host looks whether its interpreter still runs while nothing else happens.
const TICK: Duration = Duration::from_millis(500);
/// How long a connection may take to say what to run.
const REQUEST_WAIT: Duration = Duration::from_secs(10);

/// Why a session's host could not start or go on.
#[derive(Debug, thiserror::Error)]
pub enum HostError {
    /// The interpreter could not be started.
    #[error("cannot start the session's interpreter `{program}`")]
    Spawn {
        /// Its program.
        program: String,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// The session's socket could not be made.
    #[error("cannot listen on {}", path.display())]
    Listen {
        /// Where.
        path: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// Something else the host needs failed.
    #[error("{what}")]
    Io {
        /// What it was doing.
        what: &'static str,
        /// Why it failed.
        #[source]
        source: io::Error,
    },
}

fn io_err(what: &'static str) -> impl FnOnce(io::Error) -> HostError {
    move |source| HostError::Io { what, source }
}

/// Runs the session: starts `command` (the interpreter, as the user named it) for `kind`, listens
/// on `socket`, and serves execs until the interpreter ends. Returns the exit code the host
/// job ends with: the interpreter's.
pub fn run_host(kind: SessionKind, command: &[String], socket: &Path) -> Result<u8, HostError> {
    let mut interpreter = Interpreter::start(kind, command)?;
    // Listening at once: an exec that comes while the interpreter still starts (Sage takes
    // seconds to import) waits in the backlog instead of failing.
    let listener = listen(socket)?;
    if let Some(code) = interpreter.wait_ready()? {
        eprintln!("drover: the session's interpreter ended (exit code {code}) before it was ready");
        let _ = std::fs::remove_file(socket);
        return Ok(code);
    }
    // `drover session start` waits for this line in the host's log.
    eprintln!("{READY_LINE}");
    let code = loop {
        if let Some(code) = interpreter.ended() {
            break code;
        }
        let mut fds = vec![
            poll_fd(listener.as_raw_fd()),
            poll_fd(interpreter.stdout.as_raw_fd()),
            poll_fd(interpreter.stderr.as_raw_fd()),
        ];
        poll(&mut fds, Some(TICK)).map_err(io_err("cannot wait for the session's work"))?;
        // Output between execs belongs to the session's own log.
        if readable(&fds[1]) {
            interpreter.copy_idle_output(true);
        }
        if readable(&fds[2]) {
            interpreter.copy_idle_output(false);
        }
        if readable(&fds[0]) {
            match listener.accept() {
                Ok((conn, _)) => {
                    if let Outcome::SessionEnded = serve(&mut interpreter, conn) {
                        let _ = interpreter.child.kill();
                        break interpreter.wait_code();
                    }
                }
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => {}
                Err(err) => tracing::warn!(error = %err, "cannot accept an exec"),
            }
        }
    };
    let _ = std::fs::remove_file(socket);
    tracing::info!(exit_code = code, "the session's interpreter ended");
    Ok(code)
}

/// The socket, made afresh (a file left by an earlier run of this session is removed) and
/// readable by this user only.
fn listen(socket: &Path) -> Result<UnixListener, HostError> {
    let fail = |source| HostError::Listen {
        path: socket.to_path_buf(),
        source,
    };
    if let Some(dir) = socket.parent() {
        std::fs::create_dir_all(dir).map_err(fail)?;
    }
    match std::fs::remove_file(socket) {
        Ok(()) => {}
        Err(err) if err.kind() == io::ErrorKind::NotFound => {}
        Err(err) => return Err(fail(err)),
    }
    let listener = UnixListener::bind(socket).map_err(fail)?;
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(socket, std::fs::Permissions::from_mode(0o600)).map_err(fail)?;
    listener.set_nonblocking(true).map_err(fail)?;
    Ok(listener)
}

enum Outcome {
    /// The exec is over (or never began); the session goes on.
    Served,
    /// The interpreter ended or had to be given up.
    SessionEnded,
}

/// One exec, from its request to its last frame.
fn serve(interpreter: &mut Interpreter, mut conn: UnixStream) -> Outcome {
    let _ = conn.set_nonblocking(false);
    let _ = conn.set_read_timeout(Some(REQUEST_WAIT));
    let request: Request = match wire::read_frame(&mut conn) {
        Ok(Some((wire::RUN, body))) => match serde_json::from_slice(&body) {
            Ok(request) => request,
            Err(err) => {
                tracing::warn!(error = %err, "an exec sent a request that is not drover's");
                return Outcome::Served;
            }
        },
        Ok(_) => return Outcome::Served,
        Err(err) => {
            tracing::warn!(error = %err, "an exec did not say what to run");
            return Outcome::Served;
        }
    };
    let _ = conn.set_read_timeout(None);
    let mut exec = Exec {
        conn: Some(conn),
        interrupted_at: None,
        interrupt_wait: Duration::from_millis(request.interrupt_wait_ms),
    };
    if let Err(err) = interpreter.send(&request.code) {
        exec.finish(ExecStatus {
            ok: false,
            error: Some(format!("the session's interpreter is gone: {err}")),
            interrupted: false,
            session_ended: true,
            printed: false,
        });
        return Outcome::SessionEnded;
    }
    loop {
        if let Some(status) = interpreter.take_status(&mut exec) {
            exec.finish(status);
            return Outcome::Served;
        }
        if let Some(code) = interpreter.ended() {
            // What it printed on its way out is this exec's.
            interpreter.drain(&mut exec);
            exec.finish(ExecStatus {
                ok: false,
                error: Some(format!(
                    "the session's interpreter ended (exit code {code}) during this exec; the session is over"
                )),
                interrupted: exec.interrupted_at.is_some(),
                session_ended: true,
                printed: false,
            });
            return Outcome::SessionEnded;
        }
        let wait = match exec.interrupted_at {
            Some(at) => {
                let left = exec.interrupt_wait.saturating_sub(at.elapsed());
                if left.is_zero() {
                    interpreter.drain(&mut exec);
                    exec.finish(ExecStatus {
                        ok: false,
                        error: Some(format!(
                            "the interpreter did not come back from the interrupt within {:?}; the session is over",
                            exec.interrupt_wait
                        )),
                        interrupted: true,
                        session_ended: true,
                        printed: false,
                    });
                    return Outcome::SessionEnded;
                }
                left.min(TICK)
            }
            None => TICK,
        };
        let mut fds = vec![
            poll_fd(interpreter.stdout.as_raw_fd()),
            poll_fd(interpreter.stderr.as_raw_fd()),
        ];
        if let Some(statuses) = &interpreter.statuses {
            fds.push(poll_fd(statuses.as_raw_fd()));
        }
        let conn_at = exec.conn.as_ref().map(|c| {
            fds.push(poll_fd(c.as_raw_fd()));
            fds.len() - 1
        });
        if let Err(err) = poll(&mut fds, Some(wait)) {
            tracing::warn!(error = %err, "cannot wait for the exec's output");
            std::thread::sleep(Duration::from_millis(10));
            continue;
        }
        if readable(&fds[0]) {
            interpreter.read_stdout(&mut exec);
        }
        if readable(&fds[1]) {
            interpreter.read_stderr(&mut exec);
        }
        if interpreter.statuses.is_some() && readable(&fds[2]) {
            interpreter.read_statuses();
        }
        if conn_at.is_some_and(|at| readable(&fds[at])) {
            let frame = exec.conn.as_mut().map(wire::read_frame);
            match frame {
                Some(Ok(Some((wire::INTERRUPT, _)))) => interpreter.interrupt(&mut exec),
                Some(Ok(Some(_))) => {}
                // `session-exec` is gone (killed after its grace): interrupt the code so that
                // the session is free for the next exec.
                _ => {
                    exec.conn = None;
                    interpreter.interrupt(&mut exec);
                }
            }
        }
    }
}

/// The exec being served: its connection while `session-exec` is there to read it.
struct Exec {
    conn: Option<UnixStream>,
    interrupted_at: Option<Instant>,
    interrupt_wait: Duration,
}

impl Exec {
    fn send(&mut self, tag: u8, bytes: &[u8]) {
        if bytes.is_empty() {
            return;
        }
        if let Some(conn) = &mut self.conn {
            if wire::write_frame(conn, tag, bytes).is_err() {
                self.conn = None;
            }
        }
    }

    fn finish(&mut self, status: ExecStatus) {
        if let Ok(body) = serde_json::to_vec(&status) {
            self.send(wire::DONE, &body);
        }
    }
}

/// The interpreter and the pipes the host holds to it.
struct Interpreter {
    kind: SessionKind,
    child: Child,
    /// Where requests go: fd 3 of the shim, or gp's stdin.
    requests: File,
    stdout: File,
    stderr: File,
    /// fd 4 of the shim (Python and Sage); none for gp.
    statuses: Option<File>,
    /// Bytes of fd 4 not yet a whole line.
    status_line: Vec<u8>,
    /// The statuses read, oldest first.
    statuses_read: std::collections::VecDeque<ExecStatus>,
    /// gp: stdout held back because it may be the start of a marker.
    held: Vec<u8>,
    /// gp: the marker that prefixes the host's own lines in gp's output.
    marker: String,
    /// gp: the error the current exec raised, read from its marker line.
    gp_error: Option<String>,
    /// gp: the current exec's done marker has been read.
    gp_done: bool,
    exit_code: Option<u8>,
}

impl Interpreter {
    fn start(kind: SessionKind, command: &[String]) -> Result<Interpreter, HostError> {
        let (program, args) = command.split_first().ok_or_else(|| HostError::Spawn {
            program: String::new(),
            source: io::Error::new(io::ErrorKind::InvalidInput, "no interpreter named"),
        })?;
        let spawn_err = |source| HostError::Spawn {
            program: program.clone(),
            source,
        };
        let mut cmd = Command::new(program);
        cmd.args(args).stdout(Stdio::piped()).stderr(Stdio::piped());
        let (requests, statuses, mut child) = match kind {
            SessionKind::Python | SessionKind::Sage => {
                let (req_read, req_write) = high_pipe().map_err(spawn_err)?;
                let (st_read, st_write) = high_pipe().map_err(spawn_err)?;
                let (req_fd, st_fd) = (req_read.as_raw_fd(), st_write.as_raw_fd());
                cmd.args(["-u", "-c", PYTHON_SHIM, kind.as_str()])
                    .stdin(Stdio::null());
                // SAFETY: dup2 is async-signal-safe; the fds are open in the parent (kept
                // alive below until spawn returns) and are >= 10, so never 3 or 4 themselves.
                unsafe {
                    cmd.pre_exec(move || {
                        if libc::dup2(req_fd, 3) < 0 || libc::dup2(st_fd, 4) < 0 {
                            return Err(io::Error::last_os_error());
                        }
                        Ok(())
                    });
                }
                let child = cmd.spawn().map_err(spawn_err)?;
                drop((req_read, st_write));
                (File::from(req_write), Some(File::from(st_read)), child)
            }
            SessionKind::Gp => {
                cmd.args(["-q", "-f", "-D", "readline=0", "-D", "colors="])
                    .stdin(Stdio::piped());
                let mut child = cmd.spawn().map_err(spawn_err)?;
                let stdin = child
                    .stdin
                    .take()
                    .ok_or_else(|| spawn_err(io::Error::other("no stdin pipe")))?;
                (File::from(OwnedFd::from(stdin)), None, child)
            }
        };
        let stdout = child
            .stdout
            .take()
            .map(|s| File::from(OwnedFd::from(s)))
            .ok_or_else(|| spawn_err(io::Error::other("no stdout pipe")))?;
        let stderr = child
            .stderr
            .take()
            .map(|s| File::from(OwnedFd::from(s)))
            .ok_or_else(|| spawn_err(io::Error::other("no stderr pipe")))?;
        for fd in [stdout.as_fd(), stderr.as_fd()]
            .into_iter()
            .chain(statuses.as_ref().map(|s| s.as_fd()))
        {
            set_nonblocking(fd).map_err(spawn_err)?;
        }
        Ok(Interpreter {
            kind,
            child,
            requests,
            stdout,
            stderr,
            statuses,
            status_line: Vec::new(),
            statuses_read: Default::default(),
            held: Vec::new(),
            marker: format!("@drover:{:016x}:", nonce()),
            gp_error: None,
            gp_done: false,
            exit_code: None,
        })
    }

    /// Waits until the interpreter says it is ready (the shim's first status; gp's answer to a
    /// first marker), copying what it prints meanwhile to the host's own log. `Some(code)` if
    /// it ended first.
    fn wait_ready(&mut self) -> Result<Option<u8>, HostError> {
        let mut quiet = Exec {
            conn: None,
            interrupted_at: None,
            interrupt_wait: Duration::ZERO,
        };
        if self.kind == SessionKind::Gp {
            self.send("")
                .map_err(io_err("cannot talk to the session's interpreter"))?;
        }
        loop {
            if let Some(code) = self.ended() {
                self.copy_idle_output(true);
                self.copy_idle_output(false);
                return Ok(Some(code));
            }
            match self.kind {
                SessionKind::Gp if self.gp_done => return Ok(None),
                SessionKind::Python | SessionKind::Sage
                    if self.statuses_read.pop_front().is_some() =>
                {
                    return Ok(None);
                }
                _ => {}
            }
            let mut fds = vec![
                poll_fd(self.stdout.as_raw_fd()),
                poll_fd(self.stderr.as_raw_fd()),
            ];
            if let Some(statuses) = &self.statuses {
                fds.push(poll_fd(statuses.as_raw_fd()));
            }
            poll(&mut fds, Some(TICK)).map_err(io_err("cannot wait for the interpreter"))?;
            if readable(&fds[0]) {
                match self.kind {
                    SessionKind::Gp => self.read_stdout(&mut quiet),
                    _ => self.copy_idle_output(true),
                }
            }
            if readable(&fds[1]) {
                self.copy_idle_output(false);
            }
            if fds.len() > 2 && readable(&fds[2]) {
                self.read_statuses();
            }
        }
    }

    /// Hands `code` to the interpreter.
    fn send(&mut self, code: &str) -> io::Result<()> {
        self.gp_error = None;
        self.gp_done = false;
        let text = match self.kind {
            SessionKind::Python | SessionKind::Sage => {
                let mut line = serde_json::to_string(&serde_json::json!({ "code": code }))
                    .map_err(io::Error::other)?;
                line.push('\n');
                line
            }
            SessionKind::Gp => gp_request(code, &self.marker),
        };
        self.requests.write_all(text.as_bytes())?;
        self.requests.flush()
    }

    /// Interrupts the running code (once per exec).
    fn interrupt(&mut self, exec: &mut Exec) {
        if exec.interrupted_at.is_some() {
            return;
        }
        exec.interrupted_at = Some(Instant::now());
        if let Ok(pid) = i32::try_from(self.child.id()) {
            // SAFETY: kill has no memory-safety preconditions; the pid is our unreaped child.
            unsafe { libc::kill(pid, libc::SIGINT) };
        }
    }

    /// The interpreter's exit code, once it has ended.
    fn ended(&mut self) -> Option<u8> {
        if self.exit_code.is_none() {
            if let Ok(Some(status)) = self.child.try_wait() {
                self.exit_code = Some(exit_code_of(status));
            }
        }
        self.exit_code
    }

    fn wait_code(&mut self) -> u8 {
        match self.child.wait() {
            Ok(status) => exit_code_of(status),
            Err(_) => 1,
        }
    }

    fn copy_idle_output(&mut self, stdout: bool) {
        let (pipe, sink): (&mut File, &mut dyn Write) = if stdout {
            (&mut self.stdout, &mut io::stdout())
        } else {
            (&mut self.stderr, &mut io::stderr())
        };
        let mut buf = [0u8; 16 * 1024];
        while let Ok(n @ 1..) = pipe.read(&mut buf) {
            let _ = sink.write_all(&buf[..n]);
        }
        let _ = sink.flush();
    }

    fn read_stdout(&mut self, exec: &mut Exec) {
        let mut buf = [0u8; 64 * 1024];
        while let Ok(n @ 1..) = self.stdout.read(&mut buf) {
            match self.kind {
                SessionKind::Gp => {
                    self.held.extend_from_slice(&buf[..n]);
                    self.scan_gp(exec);
                }
                _ => exec.send(wire::STDOUT, &buf[..n]),
            }
        }
    }

    fn read_stderr(&mut self, exec: &mut Exec) {
        let mut buf = [0u8; 64 * 1024];
        while let Ok(n @ 1..) = self.stderr.read(&mut buf) {
            if self.kind == SessionKind::Gp {
                exec.send(wire::STDERR, &without_wrapper(&buf[..n]));
            } else {
                exec.send(wire::STDERR, &buf[..n]);
            }
        }
    }

    fn read_statuses(&mut self) {
        let Some(statuses) = &mut self.statuses else {
            return;
        };
        let mut buf = [0u8; 4096];
        while let Ok(n @ 1..) = statuses.read(&mut buf) {
            self.status_line.extend_from_slice(&buf[..n]);
        }
        while let Some(end) = self.status_line.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = self.status_line.drain(..=end).collect();
            match serde_json::from_slice::<ExecStatus>(&line) {
                Ok(status) => self.statuses_read.push_back(status),
                Err(err) => {
                    tracing::warn!(error = %err, "the shim wrote a status drover cannot read")
                }
            }
        }
    }

    /// Everything the pipes hold now, to the exec.
    fn drain(&mut self, exec: &mut Exec) {
        self.read_stdout(exec);
        self.read_stderr(exec);
        if self.kind == SessionKind::Gp {
            let rest = std::mem::take(&mut self.held);
            exec.send(wire::STDOUT, &rest);
        }
    }

    /// The exec's status, once the interpreter has said it is over.
    fn take_status(&mut self, exec: &mut Exec) -> Option<ExecStatus> {
        match self.kind {
            SessionKind::Python | SessionKind::Sage => {
                let status = self.statuses_read.pop_front()?;
                // Flushed before the status was written: all of it is in the pipes now.
                self.drain(exec);
                Some(status)
            }
            SessionKind::Gp => {
                if !self.gp_done {
                    return None;
                }
                self.read_stderr(exec);
                let interrupted = exec.interrupted_at.is_some();
                let error = self
                    .gp_error
                    .take()
                    .or_else(|| interrupted.then(|| "user interrupt".to_string()));
                Some(ExecStatus {
                    ok: error.is_none(),
                    error,
                    interrupted,
                    session_ended: false,
                    printed: false,
                })
            }
        }
    }

    /// gp: passes on the output before a marker, and reads the markers' lines.
    fn scan_gp(&mut self, exec: &mut Exec) {
        loop {
            let marker = self.marker.as_bytes();
            match find(&self.held, marker) {
                Some(at) => {
                    exec.send(wire::STDOUT, &self.held[..at]);
                    let Some(end) = self.held[at..].iter().position(|b| *b == b'\n') else {
                        self.held.drain(..at);
                        return;
                    };
                    let line = String::from_utf8_lossy(&self.held[at + marker.len()..at + end])
                        .into_owned();
                    self.held.drain(..at + end + 1);
                    if let Some(error) = line.strip_prefix("err ") {
                        self.gp_error = Some(gp_error_text(error));
                    } else if line == "done" {
                        self.gp_done = true;
                    }
                }
                None => {
                    // Keep only a tail that could be the start of a marker.
                    let keep = (1..marker.len().min(self.held.len() + 1))
                        .rev()
                        .find(|k| self.held.ends_with(&marker[..*k]))
                        .unwrap_or(0);
                    let send = self.held.len() - keep;
                    exec.send(wire::STDOUT, &self.held[..send]);
                    self.held.drain(..send);
                    return;
                }
            }
        }
    }
}

/// gp's lines for one exec: the code evaluated under `iferr`, so that an error is reported on
/// a marker line and the session goes on, then a marker that says the exec is over. A trailing
/// `;` keeps gp from printing the value, as at its prompt.
fn gp_request(code: &str, marker: &str) -> String {
    let inputs = gp_inputs(code);
    let quiet = match inputs.last() {
        Some(last) if !last.ends_with(';') => "",
        _ => ";",
    };
    let evals: Vec<String> = inputs
        .iter()
        .map(|input| {
            let mut quoted = String::with_capacity(input.len() + 8);
            for c in input.chars() {
                match c {
                    '\\' => quoted.push_str("\\\\"),
                    '"' => quoted.push_str("\\\""),
                    c => quoted.push(c),
                }
            }
            format!("eval(\"{quoted}\")")
        })
        .collect();
    let evals = if evals.is_empty() {
        "0".to_string()
    } else {
        evals.join(";")
    };
    format!(
        "iferr({evals},drover_e_,print(\"{marker}err \",drover_e_)){quiet}\nprint(\"{marker}done\")\n"
    )
}

/// Code of several lines cut into the inputs gp's prompt would read: a newline outside braces
/// ends an input, braces make one input of several lines (and are not part of it), a `\\\\`
/// comment runs to the end of its line, and a line ending in `\\` goes on to the next. Each
/// input is then one `eval`: a newline inside `eval`'s string would be a syntax error, and a
/// comment would swallow the rest.
fn gp_inputs(code: &str) -> Vec<String> {
    let mut inputs = Vec::new();
    let mut current = String::new();
    let mut chars = code.chars().peekable();
    let (mut braced, mut in_string, mut in_comment) = (false, false, false);
    let mut end_input = |current: &mut String| {
        let input = current.trim();
        if !input.is_empty() {
            inputs.push(input.to_string());
        }
        current.clear();
    };
    while let Some(c) = chars.next() {
        if in_comment {
            if c == '*' && chars.peek() == Some(&'/') {
                chars.next();
                in_comment = false;
            }
            continue;
        }
        if in_string {
            current.push(c);
            match c {
                '\\' => current.extend(chars.next()),
                '"' => in_string = false,
                _ => {}
            }
            continue;
        }
        match c {
            '"' => {
                in_string = true;
                current.push(c);
            }
            '/' if chars.peek() == Some(&'*') => {
                chars.next();
                in_comment = true;
            }
            '\\' if chars.peek() == Some(&'\\') => while chars.next_if(|c| *c != '\n').is_some() {},
            '\\' if chars.peek() == Some(&'\n') => {
                chars.next();
            }
            '{' if !braced => braced = true,
            '}' if braced => braced = false,
            '\n' if braced => current.push(' '),
            '\n' => end_input(&mut current),
            '\r' => {}
            c => current.push(c),
        }
    }
    end_input(&mut current);
    inputs
}

fn set_nonblocking(fd: BorrowedFd<'_>) -> io::Result<()> {
    let owned = fd.try_clone_to_owned()?;
    crate::sys::set_nonblocking(&owned)
}

/// `error("impossible inverse in gdiv: 0.")` → `impossible inverse in gdiv: 0.`
fn gp_error_text(printed: &str) -> String {
    printed
        .trim()
        .strip_prefix("error(\"")
        .and_then(|s| s.strip_suffix("\")"))
        .unwrap_or(printed.trim())
        .replace("\\\"", "\"")
}

/// gp's error context without the lines that show drover's own wrapper (`iferr(eval(...`) and
/// the caret line under them: what is left points into the user's code.
fn without_wrapper(stderr: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(stderr.len());
    let mut after_wrapper = false;
    for line in stderr.split_inclusive(|b| *b == b'\n') {
        if find(line, b"drover_e_").is_some() {
            after_wrapper = true;
            continue;
        }
        if after_wrapper && line.iter().all(|b| b" *^-\n".contains(b)) {
            after_wrapper = false;
            continue;
        }
        after_wrapper = false;
        out.extend_from_slice(line);
    }
    out
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

fn exit_code_of(status: std::process::ExitStatus) -> u8 {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(code), _) => u8::try_from(code).unwrap_or(1),
        (None, Some(signal)) => u8::try_from(128 + signal).unwrap_or(255),
        _ => 1,
    }
}

/// A number that user output will not contain by chance.
fn nonce() -> u64 {
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    t ^ (u64::from(std::process::id()) << 32)
}

/// A close-on-exec pipe whose ends are both numbered 10 or above.
fn high_pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    let (read, write) = crate::sys::pipe_cloexec()?;
    Ok((raise(read)?, raise(write)?))
}

fn raise(fd: OwnedFd) -> io::Result<OwnedFd> {
    // SAFETY: F_DUPFD_CLOEXEC duplicates an open fd; the new one is owned by the result.
    let high = unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_DUPFD_CLOEXEC, 10) };
    if high < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `high` was just made and is owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(high) })
}

fn poll_fd(fd: RawFd) -> libc::pollfd {
    super::poll_in(fd)
}

fn readable(fd: &libc::pollfd) -> bool {
    fd.revents & (libc::POLLIN | libc::POLLHUP | libc::POLLERR) != 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gp_code_is_quoted_and_its_errors_read_back() {
        let request = gp_request("x = \"a\\\\b\";\ny = 2;", "@m:");
        assert_eq!(
            request,
            "iferr(eval(\"x = \\\"a\\\\\\\\b\\\";\");eval(\"y = 2;\"),drover_e_,print(\"@m:err \",drover_e_));\nprint(\"@m:done\")\n"
        );
        assert_eq!(
            gp_error_text("error(\"impossible inverse in gdiv: 0.\")"),
            "impossible inverse in gdiv: 0."
        );
        assert_eq!(gp_error_text("something else"), "something else");
    }

    #[test]
    fn gp_errors_do_not_show_the_wrapper() {
        let stderr = b"  ***   at top-level: iferr(eval(\"for(i=1,10^12,)\"),drover_e_,print(\n  ***                       ^------\n  ***   in function eval: for(i=1,10^12,)\n  ***   user interrupt after 1,000 ms\n";
        assert_eq!(
            String::from_utf8_lossy(&without_wrapper(stderr)),
            "  ***   in function eval: for(i=1,10^12,)\n  ***   user interrupt after 1,000 ms\n"
        );
    }

    #[test]
    fn gp_code_is_cut_into_the_inputs_its_prompt_reads() {
        assert_eq!(
            gp_inputs("a = 3\nb = a^2\n\nb + 1"),
            ["a = 3", "b = a^2", "b + 1"]
        );
        // Braces make one input of a multi-line function; a comment and a continuation go.
        assert_eq!(
            gp_inputs("f(n) = {\n  my(s = 0);\n  s + n\n}\nf(2) \\\\ two"),
            ["f(n) =    my(s = 0);   s + n", "f(2)"]
        );
        assert_eq!(gp_inputs("1 + \\\n2"), ["1 + 2"]);
        assert_eq!(gp_inputs("/* a\nb */ 3"), ["3"]);
        assert_eq!(gp_inputs("print(\"a\\\\\\nb\")"), ["print(\"a\\\\\\nb\")"]);
    }
}
