//! `GET /v1/events`: every state change as a Server-Sent Event, pushed from the commit path.
//!
//! A subscriber first gets the backlog after the sequence number it asks for (`Last-Event-ID`
//! or `?since=`) from the events table, then live events from the store's post-commit broadcast.
//! It subscribes to the broadcast *before* reading the backlog and skips anything it already
//! sent, so the switch from backlog to live has no gap and no duplicate. Sequence numbers are
//! stored, so the same holds across a node restart.
//!
//! When the node stops, every stream gets a final `node_stopping` event and ends.
//!
//! A subscriber that cannot keep up is not buffered without bound: when the broadcast has moved
//! on past what it has read, it gets a final `dropped` event naming the last sequence it was
//! sent, and the stream ends; it resumes from there with `Last-Event-ID`.

use std::collections::HashMap;
use std::convert::Infallible;
use std::time::Duration;

use axum::extract::{Query, State};
use axum::http::HeaderMap;
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use drover_core::{Event, JobId, JobState};
use futures::Stream;
use tokio::sync::{broadcast, mpsc};

use crate::api::{ApiError, ApiState};

/// Events read from the table per page of backlog.
const BACKLOG_PAGE: usize = 1000;
/// Events queued for one subscriber's socket before the producer waits for it.
const SUBSCRIBER_BUFFER: usize = 256;
/// How often an idle stream sends a comment, so proxies and clients see it is alive.
const KEEP_ALIVE: Duration = Duration::from_secs(15);

/// Which events a subscriber wants.
#[derive(Debug, Default, Clone)]
struct Filter {
    job: Option<JobId>,
    states: Vec<JobState>,
    queue: Option<String>,
    /// The queue of each job seen, so a queue filter looks a job up once.
    queues: HashMap<JobId, String>,
}

impl Filter {
    async fn wants(&mut self, store: &dyn drover_store::Store, event: &Event) -> bool {
        if !(self.job.is_none_or(|job| event.job_id == job)
            && (self.states.is_empty() || self.states.contains(&event.state)))
        {
            return false;
        }
        let Some(queue) = &self.queue else {
            return true;
        };
        if let std::collections::hash_map::Entry::Vacant(slot) = self.queues.entry(event.job_id) {
            match store.get(event.job_id).await {
                Ok(Some(job)) => slot.insert(job.spec.queue_name().to_string()),
                _ => return false,
            };
        }
        self.queues.get(&event.job_id) == Some(queue)
    }
}

/// `GET /v1/events?since=SEQ&job=ID&queue=Q&state=S,...` (or the `Last-Event-ID` header).
#[utoipa::path(get, path = "/v1/events", tag = "events",
    params(("since" = Option<u64>, Query, description = "replay the events after this sequence number (or the Last-Event-ID header)"), ("job" = Option<String>, Query, description = "only this job"), ("queue" = Option<String>, Query, description = "only this queue"), ("state" = Option<String>, Query, description = "only changes to these states, comma-separated")),
    responses((status = 200, description = "server-sent events: one `event: KIND` with the JSON Event per state change, and keep-alive comments", content_type = "text/event-stream", body = String), (status = "4XX", description = "refused: the message says why, naming the field at fault", body = drover_api::ErrorBody)))]
pub(crate) async fn events(
    State(state): State<ApiState>,
    headers: HeaderMap,
    Query(params): Query<HashMap<String, String>>,
) -> Result<Sse<impl Stream<Item = Result<SseEvent, Infallible>>>, ApiError> {
    let header = headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let since = match header.or_else(|| params.get("since").cloned()) {
        Some(raw) => raw.trim().parse::<u64>().map_err(|_| {
            ApiError::bad("since", format!("`{raw}` is not an event sequence number"))
        })?,
        // No position given: live events only, from the newest committed one on.
        None => u64::MAX,
    };
    let mut filter = Filter::default();
    if let Some(job) = params.get("job") {
        filter.job = Some(
            job.parse()
                .map_err(|_| ApiError::bad("job", format!("`{job}` is not a job id")))?,
        );
    }
    filter.queue = params.get("queue").cloned();
    if let Some(states) = params.get("state") {
        for word in states.split(',').filter(|w| !w.is_empty()) {
            filter.states.push(
                word.parse()
                    .map_err(|e: String| ApiError::bad("state", e))?,
            );
        }
    }
    if since != u64::MAX {
        // A resume older than what is kept cannot be complete: say so rather than skip events.
        let (oldest, newest) = state.store.event_bounds().await?;
        let complete = match oldest {
            Some(oldest) => since.saturating_add(1) >= oldest,
            None => since >= newest,
        };
        if !complete {
            return Err(ApiError::new(
                axum::http::StatusCode::GONE,
                Some("since"),
                format!(
                    "events after {since} are no longer kept (the oldest kept is {}); start over from the current state",
                    oldest.map_or("none".to_string(), |o| o.to_string())
                ),
            ));
        }
    }
    // Subscribe before reading the backlog: nothing committed in between is missed.
    let live = state.store.subscribe();
    let (tx, rx) = mpsc::channel(SUBSCRIBER_BUFFER);
    tokio::spawn(produce(state, since, filter, live, tx));
    let stream = futures::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|event| (Ok(event), rx))
    });
    Ok(Sse::new(stream).keep_alive(KeepAlive::new().interval(KEEP_ALIVE)))
}

fn to_sse(event: &Event) -> SseEvent {
    let data = serde_json::to_string(event).unwrap_or_else(|_| "{}".to_string());
    SseEvent::default()
        .id(event.seq.to_string())
        .event(kind_name(event))
        .data(data)
}

fn kind_name(event: &Event) -> String {
    serde_json::to_value(event.kind)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_else(|| "event".to_string())
}

/// Takes a subscriber off the gauge however its producer ends.
struct Subscribed(std::sync::Arc<crate::metrics::Metrics>);

impl Drop for Subscribed {
    fn drop(&mut self) {
        self.0.subscribers.dec();
    }
}

/// Feeds one subscriber: backlog, then live events, until it goes away or falls behind.
async fn produce(
    state: ApiState,
    since: u64,
    mut filter: Filter,
    mut live: broadcast::Receiver<Event>,
    tx: mpsc::Sender<SseEvent>,
) {
    // Counted while this producer lives.
    state.metrics.subscribers.inc();
    let _counted = Subscribed(std::sync::Arc::clone(&state.metrics));
    let mut sent = since;
    if since != u64::MAX {
        loop {
            let page = match state.store.events_since(sent, BACKLOG_PAGE).await {
                Ok(page) => page,
                Err(err) => {
                    tracing::warn!(error = %err, "cannot read the event backlog");
                    return;
                }
            };
            let full = page.len() == BACKLOG_PAGE;
            for event in page {
                sent = event.seq;
                if filter.wants(state.store.as_ref(), &event).await
                    && tx.send(to_sse(&event)).await.is_err()
                {
                    return;
                }
            }
            if !full {
                break;
            }
        }
    }
    let mut stopping = state.stopping.clone();
    loop {
        let received = tokio::select! {
            received = live.recv() => received,
            () = async { let _ = stopping.wait_for(|stop| *stop).await; } => {
                // The node is stopping: say so and end, so its shutdown need not wait for us.
                let last = if sent == u64::MAX { 0 } else { sent };
                let goodbye = SseEvent::default().event("node_stopping").data(
                    serde_json::json!({"last_event_id": last}).to_string(),
                );
                let _ = tokio::time::timeout(Duration::from_secs(1), tx.send(goodbye)).await;
                return;
            }
        };
        match received {
            Ok(event) => {
                if since == u64::MAX && sent == u64::MAX {
                    sent = event.seq.saturating_sub(1);
                }
                if event.seq <= sent {
                    continue; // already sent from the backlog
                }
                sent = event.seq;
                if filter.wants(state.store.as_ref(), &event).await
                    && tx.send(to_sse(&event)).await.is_err()
                {
                    return;
                }
            }
            Err(broadcast::error::RecvError::Lagged(missed)) => {
                tracing::info!(
                    missed,
                    last = sent,
                    "dropping an event subscriber that fell behind"
                );
                let last = if sent == u64::MAX { 0 } else { sent };
                let goodbye = SseEvent::default().event("dropped").data(
                    serde_json::json!({
                        "reason": "the subscriber fell behind; resume with Last-Event-ID",
                        "last_event_id": last,
                    })
                    .to_string(),
                );
                let _ = tokio::time::timeout(Duration::from_secs(1), tx.send(goodbye)).await;
                return;
            }
            Err(broadcast::error::RecvError::Closed) => return,
        }
    }
}
