//! The job endpoints: submit (one or a batch), list, get, wait for one job or for the node to
//! go idle, cancel one or many, and change a waiting job's priority. Logs are in `logs.rs`.

use std::collections::HashMap;
use std::time::Duration;

use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use drover_core::{JobRecord, JobState};
use drover_store::{CancelOutcome, JobFilter};
use tokio::sync::broadcast;

use drover_api::{
    CancelAll, CancelAllAnswer, CancelAnswer, CancelResult, Change, ChangeResult, Counts, Idle,
    SetPriority, Submitted, SubmittedBatch,
};

use super::parse::{is_batch, parse_batch_with, parse_json, parse_spec_with, read_body};
use super::*;

/// `POST /v1/jobs`: one spec (an object) → `{"id"}`, or a batch (an array) → `{"ids"}` in input
/// order. A batch is stored in one transaction: all of it or, on any error, none of it.
#[utoipa::path(post, path = "/v1/jobs", tag = "jobs",
    request_body(content = drover_api::JobSubmission, description = "one job spec, or an array of them (stored all or none)"),
    responses((status = 201, description = "the job's id, or the batch's ids in input order", body = drover_api::JobsSubmitted), (status = "4XX", description = "refused: the message says why, naming the field at fault", body = drover_api::ErrorBody)))]
pub(super) async fn submit(
    State(state): State<ApiState>,
    request: Request,
) -> Result<Response, ApiError> {
    let body = read_body(request).await?;
    let is_batch = is_batch(&body);
    let specs = if is_batch {
        parse_batch_with(&body, &state.limits, &state.queue_defaults)?
    } else {
        vec![parse_spec_with(
            &body,
            &state.limits,
            &state.queue_defaults,
        )?]
    };
    let now = chrono::Utc::now();
    let specs = specs
        .into_iter()
        .map(|mut spec| {
            super::parse::delay_to_at(&mut spec, now);
            spec
        })
        .collect();
    let ids = state.store.submit(specs).await?;
    if is_batch {
        return Ok((StatusCode::CREATED, Json(SubmittedBatch { ids })).into_response());
    }
    let id = ids.first().copied().ok_or_else(|| {
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            None,
            "the store stored no job",
        )
    })?;
    Ok((StatusCode::CREATED, Json(Submitted { id })).into_response())
}

/// `GET /v1/wait?timeout=30s`: answers `{"idle": true}` once no job is queued, starting or
/// running, or `{"idle": false}` at the timeout. Woken by committed events; it looks again only
/// after an event, and a look is one index probe.
#[utoipa::path(get, path = "/v1/wait", tag = "jobs",
    params(("timeout" = Option<String>, Query, description = "how long to wait (`30s`), at most 60s")),
    responses((status = 200, description = "whether every job has ended", body = drover_api::Idle), (status = "4XX", description = "refused: the message says why, naming the field at fault", body = drover_api::ErrorBody)))]
pub(super) async fn wait_idle(
    State(state): State<ApiState>,
    params: Result<Query<HashMap<String, String>>, QueryRejection>,
) -> Result<Json<Idle>, ApiError> {
    let params = query(params)?;
    let timeout = duration_param(&params, "timeout", Duration::from_secs(30))?.min(MAX_WAIT);
    let deadline = tokio::time::Instant::now() + timeout;
    let mut events = state.store.subscribe();
    loop {
        if !state.store.has_active().await? {
            return Ok(Json(Idle { idle: true }));
        }
        // Wait for an ending, then drain whatever else arrived before looking again.
        loop {
            match next_or_stop(&state, deadline, &mut events).await {
                Err(_) | Ok(Err(broadcast::error::RecvError::Closed)) => {
                    return Ok(Json(Idle { idle: false }));
                }
                Ok(Ok(event)) if !event.state.is_terminal() => continue,
                Ok(_) => break,
            }
        }
        while events.try_recv().is_ok() {}
    }
}

#[utoipa::path(get, path = "/v1/jobs/{id}", tag = "jobs", params(("id" = String, Path, description = "the job: its id, number, id prefix or name")),
    responses((status = 200, description = "the job with all its attempts", body = drover_core::JobRecord), (status = "4XX", description = "refused: the message says why, naming the field at fault", body = drover_api::ErrorBody)))]
pub(super) async fn get_job(
    State(state): State<ApiState>,
    Path(id): Path<String>,
) -> Result<Json<JobRecord>, ApiError> {
    Ok(Json(load(&state, parse_id(&id)?).await?))
}

#[utoipa::path(get, path = "/v1/jobs", tag = "jobs",
    params(("state" = Option<String>, Query, description = "states, comma-separated"), ("queue" = Option<String>, Query, description = "only this queue"), ("name" = Option<String>, Query, description = "only this name"), ("since" = Option<String>, Query, description = "submitted after this RFC 3339 time"), ("before" = Option<String>, Query, description = "page on from this job id"), ("limit" = Option<u32>, Query, description = "at most this many (up to 1000)")),
    responses((status = 200, description = "recent jobs, newest first; each keeps its latest attempt's usage series only, thinned", body = Vec<drover_core::JobRecord>), (status = "4XX", description = "refused: the message says why, naming the field at fault", body = drover_api::ErrorBody)))]
pub(super) async fn list(
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
    filter.name = params.get("name").cloned();
    if let Some(before) = params.get("before") {
        filter.before = Some(parse_id(before)?);
    }
    if let Some(since) = params.get("since") {
        filter.since = Some(
            chrono::DateTime::parse_from_rfc3339(since)
                .map_err(|e| {
                    ApiError::bad("since", format!("`{since}` is not an RFC 3339 time: {e}"))
                })?
                .to_utc(),
        );
    }
    filter.limit = super::page_limit(&params, 0)?;
    let mut jobs = state.store.list(&filter).await?;
    for job in &mut jobs {
        thin_usage(job);
    }
    Ok(Json(waiting::explained(&state, jobs).await?))
}

/// Points a list keeps of a job's usage series: enough for a sparkline.
pub const LIST_USAGE_POINTS: usize = 24;

/// A list's job keeps its latest attempt's usage series only, thinned to
/// [`LIST_USAGE_POINTS`]: a page of a hundred jobs stays small, and one job's record has the
/// whole series.
fn thin_usage(job: &mut JobRecord) {
    let last = job.attempts.len().saturating_sub(1);
    for (i, attempt) in job.attempts.iter_mut().enumerate() {
        attempt.usage_series = match attempt.usage_series.take() {
            Some(series) if i == last => Some(series.thinned(LIST_USAGE_POINTS)),
            _ => None,
        };
    }
}

/// `GET /v1/counts`: how many jobs are in each state (states with none left out).
#[utoipa::path(get, path = "/v1/counts", tag = "jobs",
    responses((status = 200, description = "how many jobs are in each state", body = drover_api::Counts), (status = "4XX", description = "refused: the message says why, naming the field at fault", body = drover_api::ErrorBody)))]
pub(super) async fn counts(State(state): State<ApiState>) -> Result<Json<Counts>, ApiError> {
    let counts = state.store.counts().await?;
    Ok(Json(Counts {
        states: counts
            .into_iter()
            .map(|(state, n)| (state.as_str().to_string(), n))
            .collect(),
    }))
}

/// Holds the request until the job is terminal or `timeout` passes, then answers with the job.
/// Driven by the store's event broadcast, not by re-reading.
#[utoipa::path(get, path = "/v1/jobs/{id}/wait", tag = "jobs", params(("id" = String, Path, description = "the job: its id, number, id prefix or name"), ("timeout" = Option<String>, Query, description = "how long to wait (`30s`), at most 60s")),
    responses((status = 200, description = "the job, once it has ended or at the timeout", body = drover_core::JobRecord), (status = "4XX", description = "refused: the message says why, naming the field at fault", body = drover_api::ErrorBody)))]
pub(super) async fn wait_job(
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

#[utoipa::path(post, path = "/v1/jobs/{id}/cancel", tag = "jobs", params(("id" = String, Path, description = "the job: its id, number, id prefix or name")),
    responses((status = 200, description = "what the cancel did", body = drover_api::CancelAnswer), (status = "4XX", description = "refused: the message says why, naming the field at fault", body = drover_api::ErrorBody)))]
pub(super) async fn cancel(
    State(state): State<ApiState>,
    Path(id): Path<String>,
) -> Result<Json<CancelAnswer>, ApiError> {
    let id = parse_id(&id)?;
    match cancel_result(state.store.cancel(id).await?) {
        CancelResult::NotFound => Err(ApiError::new(
            StatusCode::NOT_FOUND,
            Some("id"),
            format!("no job {id}"),
        )),
        result => Ok(Json(CancelAnswer { id, result })),
    }
}

/// The store's answer to a cancel, as the contract words it.
pub(super) fn cancel_result(outcome: CancelOutcome) -> CancelResult {
    match outcome {
        CancelOutcome::Cancelled => CancelResult::Cancelled {
            state: JobState::Cancelled,
        },
        CancelOutcome::Requested { attempt, node } => CancelResult::CancelRequested {
            attempt: attempt.attempt,
            node,
        },
        CancelOutcome::AlreadyEnded(state) => CancelResult::AlreadyEnded { state },
        CancelOutcome::NotFound => CancelResult::NotFound,
    }
}

/// `POST /v1/jobs/{id}/priority {"priority": N}`: only while the job waits; 404 for no such
/// job, 409 for one that has started or ended.
#[utoipa::path(post, path = "/v1/jobs/{id}/priority", tag = "jobs", params(("id" = String, Path, description = "the job: its id, number, id prefix or name")),
    request_body = drover_api::SetPriority,
    responses((status = 200, description = "what changed", body = drover_api::ChangeResult), (status = "4XX", description = "refused: the message says why, naming the field at fault", body = drover_api::ErrorBody)))]
pub(super) async fn set_priority(
    State(state): State<ApiState>,
    Path(id): Path<String>,
    request: Request,
) -> Result<Json<ChangeResult>, ApiError> {
    let id = parse_id(&id)?;
    let body: SetPriority = parse_json(&read_body(request).await?)?;
    let change = change_result(id, state.store.set_priority(id, body.priority).await?);
    match change.change {
        Change::Done { .. } => Ok(Json(change)),
        Change::NotFound => Err(ApiError::new(
            StatusCode::NOT_FOUND,
            Some("id"),
            format!("no job {id}"),
        )),
        Change::NotApplicable { state } => Err(ApiError::new(
            StatusCode::CONFLICT,
            Some("id"),
            format!("job {id} is {state}: only a waiting job's priority can change"),
        )),
    }
}

/// `POST /v1/cancel {"states": [...], "queue": "q"}`: cancels every job in those states
/// (default: every job that has not ended), in that queue if one is named. Answers one result
/// per job.
#[utoipa::path(post, path = "/v1/cancel", tag = "jobs", request_body = drover_api::CancelAll,
    responses((status = 200, description = "what the cancel did to each job", body = drover_api::CancelAllAnswer), (status = "4XX", description = "refused: the message says why, naming the field at fault", body = drover_api::ErrorBody)))]
pub(super) async fn cancel_many(
    State(state): State<ApiState>,
    request: Request,
) -> Result<Json<CancelAllAnswer>, ApiError> {
    let body: CancelAll = parse_json(&read_body(request).await?)?;
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
            ..JobFilter::default()
        };
        let jobs = state.store.list(&filter).await?;
        let mut progressed = false;
        for job in &jobs {
            let outcome = state.store.cancel(job.id).await?;
            progressed |= outcome == CancelOutcome::Cancelled;
            results.push(CancelAnswer {
                id: job.id,
                result: cancel_result(outcome),
            });
        }
        if jobs.len() < 10_000 || !progressed {
            break;
        }
    }
    Ok(Json(CancelAllAnswer { results }))
}
