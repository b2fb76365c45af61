//! The HTTP API under `/v1`. Handlers parse requests into typed values, call the store, and
//! answer with the types of `drover_api`, the contract the CLI reads; they hold no state of their
//! own and never touch processes (a cancel reaches a running job through the store's event).
//!
//! One file per resource: `jobs`, `groups` (sweeps and flows), `logs`, `dlq`, `queues`, `nodes`, the words for a job in
//! `resolve`, spec changes in `edit`, why a job waits in `waiting`, and the page in `web`;
//! request parsing is in `parse`, the error type in `error`. Who may call is decided before any
//! handler runs, by `crate::auth::guard`; the metrics scrape is `crate::metrics::scrape`.
//!
//! Every error is JSON: `{"error": {"message": "...", "field": "timeout"}}`, with `field` naming
//! the offending part of the request where there is one.

mod body;
mod dlq;
mod edit;
mod error;
mod groups;
mod jobs;
mod logs;
mod nodes;
pub mod openapi;
mod parse;
mod queues;
mod resolve;
mod waiting;
mod web;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::Query;
use axum::extract::rejection::QueryRejection;
use axum::http::StatusCode;
use axum::routing::get;
use drover_core::{JobId, JobRecord, Limits, NodeId};
use drover_store::Store;
use tokio::sync::broadcast;

pub use drover_api::ATTEMPT_HEADER;
pub use error::ApiError;
pub use parse::{parse_batch, parse_batch_with, parse_spec, parse_spec_with};

/// Largest request body accepted.
pub const MAX_BODY_BYTES: usize = 8 * 1024 * 1024;

/// Most jobs in one batch.
pub const MAX_BATCH: usize = 100_000;

/// Most records in one answer of a listing (`/v1/jobs`, `/v1/dlq`, `/v1/groups`): more are
/// read page by page (`before=ID` for jobs), so no request makes the node hold a listing of
/// its whole history in memory.
pub use drover_api::MAX_PAGE;

/// Longest a `wait` request is held open.
const MAX_WAIT: Duration = Duration::from_secs(60);

/// What the handlers share.
#[derive(Clone)]
pub struct ApiState {
    /// The store.
    pub store: Arc<dyn Store>,
    /// The data dir, for logs.
    pub data_root: PathBuf,
    /// Size limits on specs.
    pub limits: Limits,
    /// This node.
    pub node: NodeId,
    /// What the node is and has, for `GET /v1/node`.
    pub info: Arc<crate::NodeReport>,
    /// Queued jobs the node's last claim passed over for lack of resources, and why.
    pub passed_over: crate::runner::PassedOver,
    /// Wakes the node loop for a change no job event announces (a queue resumed or widened).
    pub wake: Arc<tokio::sync::Notify>,
    /// Per-queue defaults for fields a submitted spec leaves out (`[queues.NAME]` in
    /// drover.toml).
    pub queue_defaults: Arc<QueueDefaults>,
    /// Turns true when the node stops serving: open streams end, so shutdown does not wait on
    /// them.
    pub stopping: tokio::sync::watch::Receiver<bool>,
    /// The node's metrics.
    pub metrics: Arc<crate::metrics::Metrics>,
    /// Who may make requests, and the tokens they show.
    pub access: Arc<crate::auth::AccessPolicy>,
    /// The client for reading from other nodes (logs live where they were written).
    pub peers: crate::remote::Peers,
}

/// Per queue, the spec fields (as JSON) a job in it gets when it does not set them.
pub type QueueDefaults = HashMap<String, serde_json::Map<String, serde_json::Value>>;

/// The `/v1` router.
pub fn router(state: ApiState) -> Router {
    Router::new()
        .route("/", get(web::page))
        .route("/web/app.js", get(web::script))
        .route("/web/app.css", get(web::style))
        .route("/favicon.ico", get(|| async { StatusCode::NO_CONTENT }))
        .route("/metrics", get(crate::metrics::scrape))
        // Every /v1 route, each with its description (`openapi.rs`).
        .merge(Router::from(openapi::routes()))
        .fallback(error::not_found)
        .layer(axum::middleware::from_fn_with_state(
            Arc::clone(&state.access),
            crate::auth::guard,
        ))
        // Outermost, so that no answer, the guard's included, leaves a body unread.
        .layer(axum::middleware::from_fn(body::read_whole))
        .with_state(state)
}

/// The next committed event, or `Err` at `deadline` — or at once when the node is stopping, so
/// that a long-poll never holds up its shutdown.
pub(crate) async fn next_or_stop(
    state: &ApiState,
    deadline: tokio::time::Instant,
    events: &mut broadcast::Receiver<drover_core::Event>,
) -> Result<Result<drover_core::Event, broadcast::error::RecvError>, tokio::time::error::Elapsed> {
    let mut stopping = state.stopping.clone();
    tokio::select! {
        next = tokio::time::timeout_at(deadline, events.recv()) => next,
        () = async { let _ = stopping.wait_for(|stop| *stop).await; } => {
            tokio::time::timeout_at(tokio::time::Instant::now(), std::future::pending()).await
        }
    }
}

pub(crate) fn parse_id(raw: &str) -> Result<JobId, ApiError> {
    raw.parse()
        .map_err(|_| ApiError::bad("id", format!("`{raw}` is not a job id")))
}

pub(crate) fn query(
    query: Result<Query<HashMap<String, String>>, QueryRejection>,
) -> Result<HashMap<String, String>, ApiError> {
    query
        .map(|Query(q)| q)
        .map_err(|err| ApiError::bad("query", err.body_text()))
}

pub(crate) async fn load(state: &ApiState, id: JobId) -> Result<JobRecord, ApiError> {
    let job =
        state.store.get(id).await?.ok_or_else(|| {
            ApiError::new(StatusCode::NOT_FOUND, Some("id"), format!("no job {id}"))
        })?;
    Ok(waiting::explained(state, vec![job]).await?.remove(0))
}

/// A listing's `limit`: `default` when absent; refused when not a count or over [`MAX_PAGE`].
pub(crate) fn page_limit(
    params: &HashMap<String, String>,
    default: usize,
) -> Result<usize, ApiError> {
    let Some(raw) = params.get("limit") else {
        return Ok(default);
    };
    let limit: usize = raw
        .parse()
        .map_err(|_| ApiError::bad("limit", format!("`{raw}` is not a count")))?;
    if limit > MAX_PAGE {
        return Err(ApiError::bad(
            "limit",
            format!(
                "{limit} is more than one page ({MAX_PAGE}); read further pages with before=ID"
            ),
        ));
    }
    Ok(limit)
}

pub(crate) fn duration_param(
    params: &HashMap<String, String>,
    name: &str,
    default: Duration,
) -> Result<Duration, ApiError> {
    match params.get(name) {
        None => Ok(default),
        Some(raw) => raw
            .parse::<drover_core::HumanDuration>()
            .map(|d| d.get())
            .map_err(|e| ApiError::bad(name, e.to_string())),
    }
}

/// The store's answer to a change of one job, as the contract words it.
pub(crate) fn change_result(id: JobId, change: drover_store::Change) -> drover_api::ChangeResult {
    use drover_api::Change;
    let change = match change {
        drover_store::Change::Done(state) => Change::Done { state },
        drover_store::Change::NotApplicable(state) => Change::NotApplicable { state },
        drover_store::Change::NotFound => Change::NotFound,
    };
    drover_api::ChangeResult { id, change }
}
