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

/// `GET /v1/jobs/{id}/logs?stream=stdout|stderr&attempt=N&follow=true`
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
        let query = format!(
            "/v1/jobs/{id}/logs?stream={}&attempt={attempt}&follow={follow}&offset={offset}",
            stream.name()
        );
        return crate::remote::proxy_get(
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
