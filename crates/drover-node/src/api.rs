//! The HTTP API under `/v1`. Handlers parse requests into typed values, call the store, and
//! shape answers; they hold no state of their own and never touch processes.
//!
//! Every error is JSON: `{"error": {"message": "...", "field": "timeout"}}`, with `field` naming
//! the offending part of the request where there is one (design.md invariant 6).

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, Request, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use drover_core::node::describe_labels;
use drover_core::{
    JobId, JobRecord, JobSpec, JobState, Limits, NodeId, NodeRecord, NodeState, SpecError,
    labels_match,
};
use drover_store::{CancelOutcome, Change, JobFilter, QueueInfo, Store, StoreError};
use serde_json::json;
use tokio::io::AsyncReadExt;
use tokio::sync::broadcast;

use crate::datadir::{Stream, log_path};

/// The header of a log answer that names the attempt it is of.
pub const ATTEMPT_HEADER: &str = "x-drover-attempt";

/// Largest request body accepted.
pub const MAX_BODY_BYTES: usize = 8 * 1024 * 1024;
/// Most jobs in one batch.
pub const MAX_BATCH: usize = 100_000;
/// Longest a `wait` request is held open.
const MAX_WAIT: Duration = Duration::from_secs(60);
/// How often a followed log is re-read while its job runs. (Issue #7 replaces this with pushed
/// output; until then a short re-read interval bounds the delay without a busy loop.)
const FOLLOW_INTERVAL: Duration = Duration::from_millis(100);

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
}

/// Per queue, the spec fields (as JSON) a job in it gets when it does not set them.
pub type QueueDefaults = HashMap<String, serde_json::Map<String, serde_json::Value>>;

/// The `/v1` router.
pub fn router(state: ApiState) -> Router {
    Router::new()
        .route("/", get(web_page))
        .route("/web/app.js", get(web_script))
        .route("/web/app.css", get(web_style))
        .route("/favicon.ico", get(|| async { StatusCode::NO_CONTENT }))
        .route("/metrics", get(metrics))
        .route("/v1/health", get(health))
        .route("/v1/node", get(node_info))
        .route("/v1/jobs", post(submit).get(list))
        .route("/v1/wait", get(wait_idle))
        .route("/v1/jobs/{id}", get(get_job))
        .route("/v1/jobs/{id}/wait", get(wait_job))
        .route("/v1/jobs/{id}/logs", get(logs))
        .route("/v1/jobs/{id}/cancel", post(cancel))
        .route("/v1/jobs/{id}/priority", post(set_priority))
        .route("/v1/cancel", post(cancel_many))
        .route("/v1/dlq", get(dead_letters))
        .route("/v1/dlq/dismiss", post(dismiss))
        .route("/v1/retry", post(retry))
        .route("/v1/events", get(crate::events::events))
        .route("/v1/queues", get(queues))
        .route("/v1/queues/{name}", post(set_queue))
        .route("/v1/nodes", get(nodes))
        .route("/v1/nodes/{node}/drain", post(drain))
        .route("/v1/nodes/{node}/undrain", post(undrain))
        .fallback(not_found)
        .layer(axum::middleware::from_fn_with_state(
            Arc::clone(&state.access),
            crate::auth::guard,
        ))
        .with_state(state)
}

/// An API error: a status and a message, naming the request field at fault where there is one.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    field: Option<String>,
    message: String,
}

impl ApiError {
    pub(crate) fn new(status: StatusCode, field: Option<&str>, message: impl Into<String>) -> Self {
        Self {
            status,
            field: field.map(str::to_string),
            message: message.into(),
        }
    }

    pub(crate) fn bad(field: &str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, Some(field), message)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = match &self.field {
            Some(field) => {
                json!({"error": {"message": format!("{field}: {}", self.message), "field": field}})
            }
            None => json!({"error": {"message": self.message}}),
        };
        (self.status, Json(body)).into_response()
    }
}

impl From<StoreError> for ApiError {
    fn from(err: StoreError) -> Self {
        if let StoreError::Invalid { field, message } = err {
            return Self::new(StatusCode::UNPROCESSABLE_ENTITY, Some(&field), message);
        }
        tracing::error!(error = %err, "store error in API");
        Self::new(StatusCode::SERVICE_UNAVAILABLE, None, err.to_string())
    }
}

impl From<SpecError> for ApiError {
    fn from(err: SpecError) -> Self {
        Self::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            Some(&err.field),
            err.message,
        )
    }
}

async fn not_found() -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, None, "no such endpoint")
}

async fn health(State(state): State<ApiState>) -> Json<serde_json::Value> {
    Json(json!({"node": state.node, "version": env!("CARGO_PKG_VERSION")}))
}

/// The web page, compiled into the binary: one HTML file, its script and its style, no build
/// step. Separate files (not inline) so that the page's CSP can forbid every inline script.
const WEB_PAGE: &str = include_str!("web/index.html");
const WEB_SCRIPT: &str = include_str!("web/app.js");
const WEB_STYLE: &str = include_str!("web/app.css");

/// The query of `GET /`: the login link carries the token.
#[derive(serde::Deserialize)]
struct PageQuery {
    token: Option<String>,
}

/// `GET /`: the live job table, on the event stream; `/?token=…` logs the browser in.
async fn web_page(
    State(state): State<ApiState>,
    query: Result<Query<PageQuery>, QueryRejection>,
) -> Response {
    if let Ok(Query(PageQuery { token: Some(token) })) = query {
        return crate::auth::login(&state.access, &token);
    }
    static_file("text/html; charset=utf-8", WEB_PAGE)
}

async fn web_script() -> Response {
    static_file("text/javascript; charset=utf-8", WEB_SCRIPT)
}

async fn web_style() -> Response {
    static_file("text/css; charset=utf-8", WEB_STYLE)
}

fn static_file(content_type: &'static str, body: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CONTENT_SECURITY_POLICY, crate::auth::PAGE_CSP),
        ],
        body,
    )
        .into_response()
}

/// `GET /metrics`: Prometheus/OpenMetrics text. Stored-state gauges are read now.
async fn metrics(State(state): State<ApiState>) -> Result<Response, ApiError> {
    let m = &state.metrics;
    for (job_state, count) in state.store.counts().await? {
        m.jobs
            .get_or_create(&crate::metrics::StateLabel {
                state: job_state.to_string(),
            })
            .set(i64::try_from(count).unwrap_or(i64::MAX));
    }
    for queue in state.store.queues().await? {
        for (phase, count) in [
            ("queued", queue.queued),
            ("waiting", queue.waiting),
            ("running", queue.running),
        ] {
            m.queue_jobs
                .get_or_create(&crate::metrics::QueueLabels {
                    queue: queue.name.clone(),
                    phase: phase.to_string(),
                })
                .set(i64::try_from(count).unwrap_or(i64::MAX));
        }
    }
    let pressure = drover_exec::host::pressures();
    m.pressure_memory
        .set(pressure.memory.map_or(0.0, |p| p.avg10));
    m.pressure_cpu.set(pressure.cpu.map_or(0.0, |p| p.avg10));
    Ok((
        [(
            axum::http::header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        m.encode(),
    )
        .into_response())
}

/// `GET /v1/node`: capacity, containment backend, and the machine's memory and pressure now.
async fn node_info(State(state): State<ApiState>) -> Json<crate::NodeReport> {
    Json(state.info.refreshed())
}

/// Adds what each queued job waits for: no live node with the labels it requires (checked
/// against the nodes table, so the answer does not depend on which node is asked), else what
/// this node saw when it last passed the job over.
async fn with_waiting(
    state: &ApiState,
    mut jobs: Vec<JobRecord>,
) -> Result<Vec<JobRecord>, ApiError> {
    let routed = jobs
        .iter()
        .any(|j| j.state == JobState::Queued && !j.spec.require.is_empty());
    let nodes = if routed {
        state.store.nodes().await?
    } else {
        Vec::new()
    };
    let notes = state.passed_over.lock().ok();
    for job in jobs.iter_mut().filter(|j| j.state == JobState::Queued) {
        let unmatched = !job.spec.require.is_empty()
            && !nodes.iter().any(|n| {
                n.state != NodeState::Dead && labels_match(&job.spec.require, &n.info.labels)
            });
        job.waiting_for = if unmatched {
            Some(format!(
                "no node matches {}: no live node has these labels",
                describe_labels(&job.spec.require)
            ))
        } else {
            notes.as_ref().and_then(|n| n.get(&job.id).cloned())
        };
    }
    Ok(jobs)
}

/// Parses a JSON value of type `T`, naming the field at fault (`timeout`, `[3].argv`).
fn parse_json<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let value: T = serde_path_to_error::deserialize(&mut de).map_err(|err| {
        let path = err.path().to_string();
        let inner = err.into_inner();
        let status = match inner.classify() {
            serde_json::error::Category::Data => StatusCode::UNPROCESSABLE_ENTITY,
            _ => StatusCode::BAD_REQUEST,
        };
        let message = inner.to_string();
        let quoted = quoted_field(&message);
        let field = match (path.as_str(), quoted) {
            ("" | ".", Some(name)) => name,
            ("" | ".", None) => "body".to_string(),
            // An unknown field inside an array element: `[2]` plus the name serde quotes.
            (element, Some(name)) if element.ends_with(']') => format!("{element}.{name}"),
            (path, _) => path.to_string(),
        };
        let message = match message.rsplit_once(" at line ") {
            Some((head, _)) => head.to_string(),
            None => message,
        };
        ApiError::new(status, Some(&field), message)
    })?;
    de.end()
        .map_err(|_| ApiError::bad("body", "trailing characters after the JSON value"))?;
    Ok(value)
}

/// Parses and validates one job spec.
pub fn parse_spec(bytes: &[u8], limits: &Limits) -> Result<JobSpec, ApiError> {
    parse_spec_with(bytes, limits, &QueueDefaults::new())
}

/// Fills the fields a spec leaves out from its queue's defaults. Works on JSON so that "left
/// out" is known: a deserialized spec already holds the built-in defaults.
fn with_queue_defaults(
    mut value: serde_json::Value,
    defaults: &QueueDefaults,
) -> serde_json::Value {
    if let Some(object) = value.as_object_mut() {
        let queue = object
            .get("queue")
            .and_then(|q| q.as_str())
            .unwrap_or(drover_core::DEFAULT_QUEUE)
            .to_string();
        if let Some(fill) = defaults.get(&queue) {
            for (key, default) in fill {
                object.entry(key.clone()).or_insert_with(|| default.clone());
            }
        }
    }
    value
}

/// [`parse_spec`], with per-queue defaults.
pub fn parse_spec_with(
    bytes: &[u8],
    limits: &Limits,
    defaults: &QueueDefaults,
) -> Result<JobSpec, ApiError> {
    let spec: JobSpec = if defaults.is_empty() {
        parse_json(bytes)?
    } else {
        let value: serde_json::Value = parse_json(bytes)?;
        let value = with_queue_defaults(value, defaults);
        parse_json(&serde_json::to_vec(&value).map_err(|e| ApiError::bad("body", e.to_string()))?)?
    };
    spec.validate(limits)?;
    Ok(spec)
}

/// Parses and validates a batch (a JSON array of specs); errors name the element: `[3].timeout`.
pub fn parse_batch(bytes: &[u8], limits: &Limits) -> Result<Vec<JobSpec>, ApiError> {
    parse_batch_with(bytes, limits, &QueueDefaults::new())
}

/// [`parse_batch`], with per-queue defaults.
pub fn parse_batch_with(
    bytes: &[u8],
    limits: &Limits,
    defaults: &QueueDefaults,
) -> Result<Vec<JobSpec>, ApiError> {
    let specs: Vec<JobSpec> = if defaults.is_empty() {
        parse_json(bytes)?
    } else {
        let value: serde_json::Value = parse_json(bytes)?;
        let value = match value {
            serde_json::Value::Array(items) => serde_json::Value::Array(
                items
                    .into_iter()
                    .map(|item| with_queue_defaults(item, defaults))
                    .collect(),
            ),
            other => other,
        };
        parse_json(&serde_json::to_vec(&value).map_err(|e| ApiError::bad("body", e.to_string()))?)?
    };
    if specs.is_empty() {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            Some("body"),
            "an empty batch",
        ));
    }
    if specs.len() > MAX_BATCH {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            Some("body"),
            format!("a batch holds at most {MAX_BATCH} jobs"),
        ));
    }
    for (i, spec) in specs.iter().enumerate() {
        spec.validate(limits).map_err(|err| {
            ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                Some(&format!("[{i}].{}", err.field)),
                err.message,
            )
        })?;
    }
    Ok(specs)
}

/// The field serde complains about in "unknown field `x`" / "missing field `x`".
fn quoted_field(message: &str) -> Option<String> {
    if !(message.starts_with("unknown field") || message.starts_with("missing field")) {
        return None;
    }
    let start = message.find('`')? + 1;
    let len = message[start..].find('`')?;
    Some(message[start..start + len].to_string())
}

async fn read_body(request: Request) -> Result<Bytes, ApiError> {
    let announced = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if announced.is_some_and(|n| n > MAX_BODY_BYTES as u64) {
        // Refuse before reading: a client that waits for the answer gets it at once.
        return Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            Some("body"),
            format!("larger than {MAX_BODY_BYTES} bytes"),
        ));
    }
    axum::body::to_bytes(request.into_body(), MAX_BODY_BYTES)
        .await
        .map_err(|_| {
            ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                Some("body"),
                format!("larger than {MAX_BODY_BYTES} bytes, or unreadable"),
            )
        })
}

/// `POST /v1/jobs`: one spec (an object) → `{"id"}`, or a batch (an array) → `{"ids"}` in input
/// order. A batch is stored in one transaction: all of it or, on any error, none of it.
async fn submit(State(state): State<ApiState>, request: Request) -> Result<Response, ApiError> {
    let body = read_body(request).await?;
    let is_batch = body.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'[');
    let specs = if is_batch {
        parse_batch_with(&body, &state.limits, &state.queue_defaults)?
    } else {
        vec![parse_spec_with(
            &body,
            &state.limits,
            &state.queue_defaults,
        )?]
    };
    // A delay counts from now, on this node's clock; what is stored is the time.
    let now = chrono::Utc::now();
    let specs = specs
        .into_iter()
        .map(|mut spec| {
            if let Some(delay) = spec.delay.take() {
                let delay =
                    chrono::Duration::from_std(delay.get()).unwrap_or(chrono::Duration::MAX);
                spec.at = Some(
                    now.checked_add_signed(delay)
                        .unwrap_or(chrono::DateTime::<chrono::Utc>::MAX_UTC),
                );
            }
            spec
        })
        .collect();
    let ids = state.store.submit(specs).await?;
    let answer = if is_batch {
        json!({"ids": ids})
    } else {
        json!({"id": ids.first()})
    };
    Ok((StatusCode::CREATED, Json(answer)).into_response())
}

/// The next committed event, or `Err` at `deadline` — or at once when the node is stopping, so
/// that a long-poll never holds up its shutdown.
async fn next_or_stop(
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

/// `GET /v1/wait?timeout=30s`: answers `{"idle": true}` once no job is queued, starting or
/// running, or `{"idle": false}` at the timeout. Woken by committed events; it looks again only
/// after an event, and a look is one index probe.
async fn wait_idle(
    State(state): State<ApiState>,
    params: Result<Query<HashMap<String, String>>, QueryRejection>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let params = query(params)?;
    let timeout = duration_param(&params, "timeout", Duration::from_secs(30))?.min(MAX_WAIT);
    let deadline = tokio::time::Instant::now() + timeout;
    let mut events = state.store.subscribe();
    loop {
        if !state.store.has_active().await? {
            return Ok(Json(json!({"idle": true})));
        }
        // Wait for an ending, then drain whatever else arrived before looking again.
        loop {
            match next_or_stop(&state, deadline, &mut events).await {
                Err(_) | Ok(Err(broadcast::error::RecvError::Closed)) => {
                    return Ok(Json(json!({"idle": false})));
                }
                Ok(Ok(event)) if !event.state.is_terminal() => continue,
                Ok(_) => break,
            }
        }
        while events.try_recv().is_ok() {}
    }
}

fn parse_id(raw: &str) -> Result<JobId, ApiError> {
    raw.parse()
        .map_err(|_| ApiError::bad("id", format!("`{raw}` is not a job id")))
}

fn query(
    query: Result<Query<HashMap<String, String>>, QueryRejection>,
) -> Result<HashMap<String, String>, ApiError> {
    query
        .map(|Query(q)| q)
        .map_err(|err| ApiError::bad("query", err.body_text()))
}

async fn load(state: &ApiState, id: JobId) -> Result<JobRecord, ApiError> {
    let job =
        state.store.get(id).await?.ok_or_else(|| {
            ApiError::new(StatusCode::NOT_FOUND, Some("id"), format!("no job {id}"))
        })?;
    Ok(with_waiting(state, vec![job]).await?.remove(0))
}

async fn get_job(
    State(state): State<ApiState>,
    Path(id): Path<String>,
) -> Result<Json<JobRecord>, ApiError> {
    Ok(Json(load(&state, parse_id(&id)?).await?))
}

async fn list(
    State(state): State<ApiState>,
    params: Result<Query<HashMap<String, String>>, QueryRejection>,
) -> Result<Json<Vec<JobRecord>>, ApiError> {
    let params = query(params)?;
    let mut filter = JobFilter::default();
    if let Some(states) = params.get("state") {
        for word in states.split(',').filter(|w| !w.is_empty()) {
            filter.states.push(
                word.parse::<JobState>()
                    .map_err(|e| ApiError::bad("state", e))?,
            );
        }
    }
    filter.queue = params.get("queue").cloned();
    if let Some(limit) = params.get("limit") {
        filter.limit = limit
            .parse()
            .map_err(|_| ApiError::bad("limit", format!("`{limit}` is not a count")))?;
    }
    let jobs = state.store.list(&filter).await?;
    Ok(Json(with_waiting(&state, jobs).await?))
}

fn duration_param(
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

/// Holds the request until the job is terminal or `timeout` passes, then answers with the job.
/// Driven by the store's event broadcast, not by re-reading.
async fn wait_job(
    State(state): State<ApiState>,
    Path(id): Path<String>,
    params: Result<Query<HashMap<String, String>>, QueryRejection>,
) -> Result<Json<JobRecord>, ApiError> {
    let id = parse_id(&id)?;
    let params = query(params)?;
    let timeout = duration_param(&params, "timeout", Duration::from_secs(30))?.min(MAX_WAIT);
    // Subscribe before reading, so that an ending between the two is not missed.
    let mut events = state.store.subscribe();
    let job = load(&state, id).await?;
    if job.state.is_terminal() {
        return Ok(Json(job));
    }
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let event = next_or_stop(&state, deadline, &mut events).await;
        match event {
            Err(_) => break,
            Ok(Ok(event)) if event.job_id == id && event.state.is_terminal() => break,
            Ok(Ok(_)) => {}
            Ok(Err(broadcast::error::RecvError::Lagged(_))) => {
                if load(&state, id).await?.state.is_terminal() {
                    break;
                }
            }
            Ok(Err(broadcast::error::RecvError::Closed)) => break,
        }
    }
    Ok(Json(load(&state, id).await?))
}

async fn cancel(
    State(state): State<ApiState>,
    Path(id): Path<String>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let id = parse_id(&id)?;
    let answer = match state.store.cancel(id).await? {
        CancelOutcome::Cancelled => json!({"id": id, "result": "cancelled", "state": "cancelled"}),
        CancelOutcome::Requested { attempt, node } => json!({
            "id": id, "result": "cancel_requested", "attempt": attempt.attempt, "node": node
        }),
        CancelOutcome::AlreadyEnded(state) => {
            json!({"id": id, "result": "already_ended", "state": state})
        }
        CancelOutcome::NotFound => {
            return Err(ApiError::new(
                StatusCode::NOT_FOUND,
                Some("id"),
                format!("no job {id}"),
            ));
        }
    };
    Ok(Json(answer))
}

/// The JSON shape of a per-job change.
fn change_json(id: JobId, change: Change) -> serde_json::Value {
    match change {
        Change::Done(state) => json!({"id": id, "result": "done", "state": state}),
        Change::NotApplicable(state) => {
            json!({"id": id, "result": "not_applicable", "state": state})
        }
        Change::NotFound => json!({"id": id, "result": "not_found"}),
    }
}

/// Answers one per-job change: 404 for no such job, 409 when its state does not allow it.
fn single_change(
    id: JobId,
    change: Change,
    what: &str,
) -> Result<Json<serde_json::Value>, ApiError> {
    match change {
        Change::Done(_) => Ok(Json(change_json(id, change))),
        Change::NotFound => Err(ApiError::new(
            StatusCode::NOT_FOUND,
            Some("id"),
            format!("no job {id}"),
        )),
        Change::NotApplicable(state) => Err(ApiError::new(
            StatusCode::CONFLICT,
            Some("id"),
            format!("job {id} is {state}: {what}"),
        )),
    }
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct PriorityBody {
    priority: i32,
}

/// `POST /v1/jobs/{id}/priority {"priority": N}`: only while the job waits.
async fn set_priority(
    State(state): State<ApiState>,
    Path(id): Path<String>,
    request: Request,
) -> Result<Json<serde_json::Value>, ApiError> {
    let id = parse_id(&id)?;
    let body: PriorityBody = parse_json(&read_body(request).await?)?;
    let change = state.store.set_priority(id, body.priority).await?;
    single_change(id, change, "only a waiting job's priority can change")
}

#[derive(serde::Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct IdsBody {
    #[serde(default)]
    ids: Vec<JobId>,
    #[serde(default)]
    all_dlq: bool,
    #[serde(default)]
    states: Vec<JobState>,
    #[serde(default)]
    queue: Option<String>,
}

/// `POST /v1/cancel {"states": [...], "queue": "q"}`: cancels every job in those states
/// (default: every job that has not ended), in that queue if one is named. Answers one result
/// per job.
async fn cancel_many(
    State(state): State<ApiState>,
    request: Request,
) -> Result<Json<serde_json::Value>, ApiError> {
    let body: IdsBody = parse_json(&read_body(request).await?)?;
    let states = if body.states.is_empty() {
        JobState::ALL
            .into_iter()
            .filter(|s| !s.is_terminal())
            .collect()
    } else {
        body.states
    };
    let mut results = Vec::new();
    // Page through: each round cancels what it finds, so the next round finds the rest.
    loop {
        let filter = JobFilter {
            states: states.clone(),
            limit: 10_000,
            queue: body.queue.clone(),
        };
        let jobs = state.store.list(&filter).await?;
        let mut progressed = false;
        for job in &jobs {
            let outcome = state.store.cancel(job.id).await?;
            let result = match outcome {
                CancelOutcome::Cancelled => {
                    progressed = true;
                    "cancelled"
                }
                CancelOutcome::Requested { .. } => "cancel_requested",
                CancelOutcome::AlreadyEnded(_) => "already_ended",
                CancelOutcome::NotFound => "not_found",
            };
            results.push(json!({"id": job.id, "result": result}));
        }
        if jobs.len() < 10_000 || !progressed {
            break;
        }
    }
    Ok(Json(json!({"results": results})))
}

/// `GET /v1/dlq?limit=N`: the dead-letter queue, newest first.
async fn dead_letters(
    State(state): State<ApiState>,
    params: Result<Query<HashMap<String, String>>, QueryRejection>,
) -> Result<Json<Vec<JobRecord>>, ApiError> {
    let params = query(params)?;
    let limit = match params.get("limit") {
        Some(raw) => raw
            .parse()
            .map_err(|_| ApiError::bad("limit", format!("`{raw}` is not a count")))?,
        None => 100,
    };
    Ok(Json(state.store.dead_letters(limit).await?))
}

/// `POST /v1/dlq/dismiss {"ids": [...]}`.
async fn dismiss(
    State(state): State<ApiState>,
    request: Request,
) -> Result<Json<serde_json::Value>, ApiError> {
    let body: IdsBody = parse_json(&read_body(request).await?)?;
    if body.ids.is_empty() {
        return Err(ApiError::bad("ids", "name at least one job"));
    }
    let results = state.store.dismiss(body.ids).await?;
    Ok(Json(
        json!({"results": results.into_iter().map(|(id, c)| change_json(id, c)).collect::<Vec<_>>()}),
    ))
}

/// `POST /v1/retry {"ids": [...]}` or `{"all_dlq": true}`: runs ended jobs again with a fresh
/// retry budget.
async fn retry(
    State(state): State<ApiState>,
    request: Request,
) -> Result<Json<serde_json::Value>, ApiError> {
    let body: IdsBody = parse_json(&read_body(request).await?)?;
    let ids = match (body.all_dlq, body.ids.is_empty()) {
        (true, true) => None,
        (false, false) => Some(body.ids),
        _ => return Err(ApiError::bad("ids", "give ids or all_dlq, one of the two")),
    };
    let results = state.store.retry(ids).await?;
    Ok(Json(
        json!({"results": results.into_iter().map(|(id, c)| change_json(id, c)).collect::<Vec<_>>()}),
    ))
}

/// `GET /v1/queues`: every queue with settings or unfinished jobs, and its load.
async fn queues(State(state): State<ApiState>) -> Result<Json<Vec<QueueInfo>>, ApiError> {
    Ok(Json(state.store.queues().await?))
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct QueueBody {
    #[serde(default)]
    paused: Option<bool>,
    /// Absent: unchanged; `null`: no limit; a number: the limit.
    #[serde(default, deserialize_with = "present")]
    concurrency: Option<Option<u32>>,
}

/// Tells an absent field (`None`) from an explicit `null` (`Some(None)`).
fn present<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Option<u32>>, D::Error> {
    use serde::Deserialize;
    Ok(Some(Option::<u32>::deserialize(d)?))
}

/// `POST /v1/queues/{name} {"paused": true, "concurrency": 2}`.
async fn set_queue(
    State(state): State<ApiState>,
    Path(name): Path<String>,
    request: Request,
) -> Result<Json<QueueInfo>, ApiError> {
    let body: QueueBody = parse_json(&read_body(request).await?)?;
    if body.concurrency == Some(Some(0)) {
        return Err(ApiError::bad(
            "concurrency",
            "must be at least 1 (null for no limit)",
        ));
    }
    let info = state
        .store
        .set_queue(name, body.paused, body.concurrency)
        .await?;
    state.wake.notify_one();
    Ok(Json(info))
}

/// `GET /v1/nodes`: every node of the cluster (one, on SQLite).
async fn nodes(State(state): State<ApiState>) -> Result<Json<Vec<NodeRecord>>, ApiError> {
    Ok(Json(state.store.nodes().await?))
}

/// `POST /v1/nodes/{node}/drain`: the node claims nothing more and finishes what it runs.
async fn drain(
    State(state): State<ApiState>,
    Path(node): Path<String>,
) -> Result<Json<NodeRecord>, ApiError> {
    set_draining(&state, &node, true).await
}

/// `POST /v1/nodes/{node}/undrain`.
async fn undrain(
    State(state): State<ApiState>,
    Path(node): Path<String>,
) -> Result<Json<NodeRecord>, ApiError> {
    set_draining(&state, &node, false).await
}

/// Finds a node by id, or by host name when exactly one node has it.
async fn resolve_node(state: &ApiState, name: &str) -> Result<NodeId, ApiError> {
    let nodes = state.store.nodes().await?;
    if let Some(node) = nodes.iter().find(|n| n.info.id.0 == name) {
        return Ok(node.info.id.clone());
    }
    let by_host: Vec<_> = nodes.iter().filter(|n| n.info.hostname == name).collect();
    match by_host.as_slice() {
        [one] => Ok(one.info.id.clone()),
        [] => Err(ApiError::new(
            StatusCode::NOT_FOUND,
            Some("node"),
            format!("no node `{name}` (see `drover nodes`)"),
        )),
        _ => Err(ApiError::bad(
            "node",
            format!("several nodes run on host `{name}`; name one by id"),
        )),
    }
}

async fn set_draining(
    state: &ApiState,
    name: &str,
    draining: bool,
) -> Result<Json<NodeRecord>, ApiError> {
    let node = resolve_node(state, name).await?;
    let record = state
        .store
        .set_draining(&node, draining)
        .await?
        .ok_or_else(|| ApiError::new(StatusCode::NOT_FOUND, Some("node"), "the node vanished"))?;
    if node == state.node && !draining {
        state.wake.notify_one();
    }
    Ok(Json(record))
}

/// `GET /v1/jobs/{id}/logs?stream=stdout|stderr&attempt=N&follow=true`
async fn logs(
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
            match stream {
                Stream::Stdout => "stdout",
                Stream::Stderr => "stderr",
            }
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
async fn until_claimed(state: &ApiState, job: JobRecord) -> Result<JobRecord, ApiError> {
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
