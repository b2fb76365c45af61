//! A job's output: read from the log file of an attempt on this node, proxied from the node
//! that ran it, or followed as it grows until the attempt ends (or this node stops, when the
//! client picks up again from the byte it got to).

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use drover_core::{JobId, JobRecord};
use drover_store::Store;
use tokio::io::AsyncReadExt;
use tokio::sync::broadcast;

use super::*;
use crate::datadir::{Stream, log_path};

/// How often a followed log is re-read while its job runs. Output is not pushed to the node (the
/// owner writes the file), so a short re-read interval bounds the delay without a busy loop.
const FOLLOW_INTERVAL: Duration = Duration::from_millis(100);

/// `GET /v1/jobs/{id}/logs?stream=stdout|stderr&attempt=N&follow=true|offset=BYTES|tail=LINES`
#[utoipa::path(get, path = "/v1/jobs/{id}/logs", tag = "jobs",
    params(("id" = String, Path, description = "the job: its id, number, id prefix or name"), ("stream" = Option<String>, Query, description = "stdout (default) or stderr"), ("attempt" = Option<u32>, Query, description = "which attempt (default: the latest)"), ("follow" = Option<bool>, Query, description = "true: stream as it is written, until the attempt ends"), ("offset" = Option<u64>, Query, description = "start at this byte"), ("tail" = Option<u32>, Query, description = "only the last this many lines")),
    responses((status = 200, description = "the output, as written; the x-drover-attempt header names the attempt", content_type = "text/plain", body = String), (status = "4XX", description = "refused: the message says why, naming the field at fault", body = drover_api::ErrorBody)))]
pub(super) async fn logs(
    State(state): State<ApiState>,
    Path(id): Path<String>,
    params: Result<Query<HashMap<String, String>>, QueryRejection>,
) -> Result<Response, ApiError> {
    let id = parse_id(&id)?;
    let params = query(params)?;
    let stream = match params.get("stream").map(String::as_str) {
        None | Some("stdout") => Stream::Stdout,
        Some("stderr") => Stream::Stderr,
        Some(other) => {
            return Err(ApiError::bad(
                "stream",
                format!("`{other}` is not stdout or stderr"),
            ));
        }
    };
    let follow = match params.get("follow").map(String::as_str) {
        None | Some("false") | Some("0") => false,
        Some("true") | Some("1") | Some("") => true,
        Some(other) => {
            return Err(ApiError::bad(
                "follow",
                format!("`{other}` is not true or false"),
            ));
        }
    };
    let offset = match params.get("offset") {
        None => 0,
        Some(raw) => raw
            .parse::<u64>()
            .map_err(|_| ApiError::bad("offset", format!("`{raw}` is not a byte offset")))?,
    };
    let tail = match params.get("tail") {
        None => None,
        Some(_) if follow || params.contains_key("offset") => {
            return Err(ApiError::bad(
                "tail",
                "tail reads what was written, from the end: not with follow or offset",
            ));
        }
        Some(raw) => Some(
            raw.parse::<u64>()
                .map_err(|_| ApiError::bad("tail", format!("`{raw}` is not a number of lines")))?,
        ),
    };
    let mut job = load(&state, id).await?;
    if follow && !params.contains_key("attempt") {
        // Which node will own the output is known only once the job is claimed: wait for that
        // (or for the job to end unclaimed), woken by events.
        job = until_claimed(&state, job).await?;
    }
    let attempt = match params.get("attempt") {
        Some(raw) => raw
            .parse::<u32>()
            .ok()
            .filter(|n| *n >= 1 && *n <= job.attempt.max(1))
            .ok_or_else(|| {
                ApiError::bad("attempt", format!("`{raw}` is not an attempt of this job"))
            })?,
        None => job.attempt.max(1),
    };
    // Logs stay on the machine that ran the attempt; another node's are proxied from it.
    if let Some(owner) = job
        .attempts
        .iter()
        .find(|a| a.attempt == attempt)
        .map(|a| &a.node)
        .filter(|owner| **owner != state.node)
    {
        let mut query = format!(
            "/v1/jobs/{id}/logs?stream={}&attempt={attempt}&follow={follow}",
            stream.name()
        );
        match tail {
            Some(lines) => query.push_str(&format!("&tail={lines}")),
            None => query.push_str(&format!("&offset={offset}")),
        }
        return crate::remote::proxy_get(
            &state.peers,
            state.store.as_ref(),
            owner,
            &query,
            state.access.credentials().shared(),
        )
        .await;
    }
    let path = log_path(&state.data_root, id, attempt, stream);
    // Which attempt this is: a client that reconnects asks for the same one again.
    let attempt_header = attempt.to_string();
    let text_plain = [
        (header::CONTENT_TYPE, "text/plain; charset=utf-8"),
        (
            header::HeaderName::from_static(ATTEMPT_HEADER),
            attempt_header.as_str(),
        ),
    ];
    if let Some(lines) = tail {
        let path = path.clone();
        let bytes = tokio::task::spawn_blocking(move || read_tail(&path, lines))
            .await
            .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, None, e.to_string()))?
            .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, None, e.to_string()))?;
        return Ok((text_plain, bytes).into_response());
    }
    if !follow {
        let bytes = match tokio::fs::read(&path).await {
            Ok(mut bytes) => bytes.split_off(
                usize::try_from(offset)
                    .unwrap_or(usize::MAX)
                    .min(bytes.len()),
            ),
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(err) => {
                return Err(ApiError::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    None,
                    err.to_string(),
                ));
            }
        };
        return Ok((text_plain, bytes).into_response());
    }
    let body = Body::from_stream(follow_log(
        state.store.clone(),
        id,
        attempt,
        path,
        offset,
        state.stopping.clone(),
    ));
    Ok((text_plain, body).into_response())
}

/// The last `lines` lines of the file at `path` (all of it if it has fewer; nothing if there is
/// no file), read backwards from its end in blocks, so that the tail of a large log costs what
/// the tail holds. A last line without a newline counts as a line.
fn read_tail(path: &std::path::Path, lines: u64) -> std::io::Result<Vec<u8>> {
    use std::io::{Read, Seek, SeekFrom};
    const BLOCK: u64 = 64 * 1024;
    let mut file = match std::fs::File::open(path) {
        Ok(file) => file,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(err) => return Err(err),
    };
    let len = file.metadata()?.len();
    if lines == 0 || len == 0 {
        return Ok(Vec::new());
    }
    // Newlines to pass, counted from the end: one per line, plus the file's own last one.
    let mut last = [0u8; 1];
    file.seek(SeekFrom::Start(len - 1))?;
    file.read_exact(&mut last)?;
    let mut wanted = lines + u64::from(last[0] == b'\n');
    let mut start = 0;
    let mut end = len;
    let mut block = vec![0u8; BLOCK as usize];
    'scan: while end > 0 {
        let from = end.saturating_sub(BLOCK);
        let part = &mut block[..usize::try_from(end - from).unwrap_or(0)];
        file.seek(SeekFrom::Start(from))?;
        file.read_exact(part)?;
        for (i, byte) in part.iter().enumerate().rev() {
            if *byte == b'\n' {
                wanted -= 1;
                if wanted == 0 {
                    start = from + i as u64 + 1;
                    break 'scan;
                }
            }
        }
        end = from;
    }
    let mut out = Vec::with_capacity(usize::try_from(len - start).unwrap_or(0));
    file.seek(SeekFrom::Start(start))?;
    file.read_to_end(&mut out)?;
    Ok(out)
}

/// Waits until a waiting job has an attempt (or has ended without one, or the node stops), and
/// returns it as it is then.
pub(super) async fn until_claimed(state: &ApiState, job: JobRecord) -> Result<JobRecord, ApiError> {
    if !job.attempts.is_empty() || job.state.is_terminal() {
        return Ok(job);
    }
    let mut events = state.store.subscribe();
    // Read again after subscribing, so that a claim between the two is not missed.
    let mut job = load(state, job.id).await?;
    let far = tokio::time::Instant::now() + Duration::from_secs(86400 * 365);
    while job.attempts.is_empty() && !job.state.is_terminal() {
        match next_or_stop(state, far, &mut events).await {
            Err(_) | Ok(Err(broadcast::error::RecvError::Closed)) => break,
            Ok(Ok(event)) if event.job_id != job.id => continue,
            Ok(_) => job = load(state, job.id).await?,
        }
    }
    Ok(job)
}

/// Streams a log file from `offset` as it grows, ending once the attempt has ended and the file
/// is read out — or when the node stops: the job goes on under its owner, and the client
/// reconnects (to this node started again) from the offset it got to.
fn follow_log(
    store: Arc<dyn Store>,
    id: JobId,
    attempt: u32,
    path: PathBuf,
    offset: u64,
    stopping: tokio::sync::watch::Receiver<bool>,
) -> impl futures::Stream<Item = Result<Bytes, std::io::Error>> {
    struct Follow {
        store: Arc<dyn Store>,
        events: broadcast::Receiver<drover_core::Event>,
        stopping: tokio::sync::watch::Receiver<bool>,
        file: Option<tokio::fs::File>,
        ended: bool,
        done: bool,
    }
    let events = store.subscribe();
    let start = Follow {
        store,
        events,
        stopping,
        file: None,
        ended: false,
        done: false,
    };
    futures::stream::unfold(start, move |mut f| {
        let path = path.clone();
        async move {
            let mut buf = vec![0u8; 64 * 1024];
            loop {
                if f.done {
                    return None;
                }
                if f.file.is_none() {
                    f.file = tokio::fs::File::open(&path).await.ok();
                    if let Some(file) = f.file.as_mut() {
                        use tokio::io::AsyncSeekExt;
                        if let Err(err) = file.seek(std::io::SeekFrom::Start(offset)).await {
                            f.done = true;
                            return Some((Err(err), f));
                        }
                    }
                }
                if let Some(file) = f.file.as_mut() {
                    match file.read(&mut buf).await {
                        Ok(0) => {}
                        Ok(n) => {
                            buf.truncate(n);
                            return Some((Ok(Bytes::from(buf)), f));
                        }
                        Err(err) => {
                            f.done = true;
                            return Some((Err(err), f));
                        }
                    }
                }
                if f.ended {
                    // Everything written before the end has been read.
                    return None;
                }
                // Has this attempt ended? (An event tells us promptly; the interval bounds the
                // delay for output written meanwhile.)
                tokio::select! {
                    event = f.events.recv() => {
                        if let Ok(event) = event {
                            if event.job_id != id {
                                continue;
                            }
                        }
                    }
                    _ = tokio::time::sleep(FOLLOW_INTERVAL) => {}
                    _ = f.stopping.wait_for(|stop| *stop) => return None,
                }
                match f.store.get(id).await {
                    Ok(Some(job)) => {
                        // Still to come: the job has not reached this attempt yet and may.
                        let upcoming = job.attempt < attempt && !job.state.is_terminal();
                        let running = job.attempt == attempt && job.state.has_live_attempt();
                        f.ended = !upcoming && !running;
                    }
                    _ => f.ended = true,
                }
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::read_tail;

    fn tail_of(text: &[u8], lines: u64) -> Vec<u8> {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("stdout.log");
        std::fs::write(&path, text).expect("write");
        read_tail(&path, lines).expect("tail")
    }

    #[test]
    fn the_tail_is_the_last_lines() {
        assert_eq!(tail_of(b"a\nb\nc\n", 2), b"b\nc\n");
        assert_eq!(tail_of(b"a\nb\nc", 1), b"c");
        assert_eq!(tail_of(b"a\nb\nc", 2), b"b\nc");
        assert_eq!(tail_of(b"a\nb\n", 5), b"a\nb\n");
        assert_eq!(tail_of(b"a\nb\n", 0), b"");
        assert_eq!(tail_of(b"", 3), b"");
        assert_eq!(tail_of(b"\n\n\n", 2), b"\n\n");
    }

    /// Lines that straddle the 64 KiB blocks it reads backwards in.
    #[test]
    fn the_tail_of_a_large_file_crosses_blocks() {
        let text: String = (0..50_000).map(|i| format!("line {i}\n")).collect();
        let tail = tail_of(text.as_bytes(), 3);
        assert_eq!(tail, b"line 49997\nline 49998\nline 49999\n");
        let long = format!("{}\nlast\n", "x".repeat(200_000));
        assert_eq!(tail_of(long.as_bytes(), 2), long.as_bytes());
        assert_eq!(tail_of(long.as_bytes(), 1), b"last\n");
    }

    #[test]
    fn no_file_is_no_output() {
        let dir = tempfile::tempdir().expect("tempdir");
        assert!(
            read_tail(&dir.path().join("none"), 3)
                .expect("tail")
                .is_empty()
        );
    }
}
