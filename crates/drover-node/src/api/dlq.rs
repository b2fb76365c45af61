//! The dead-letter queue: list it, dismiss from it, and run ended jobs again (`retry`).

use std::collections::HashMap;

use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, Request, State};
use drover_core::{JobId, JobRecord, JobState};

use drover_api::{Changes, Dismiss, Retry};

use super::parse::{parse_json, read_body};
use super::*;

/// `GET /v1/dlq?limit=N`: the dead-letter queue, newest first.
#[utoipa::path(get, path = "/v1/dlq", tag = "dead letters", params(("limit" = Option<u32>, Query, description = "at most this many")),
    responses((status = 200, description = "jobs that ended unsuccessfully after their retries, newest first", body = Vec<drover_core::JobRecord>), (status = "4XX", description = "refused: the message says why, naming the field at fault", body = drover_api::ErrorBody)))]
pub(super) async fn dead_letters(
    State(state): State<ApiState>,
    params: Result<Query<HashMap<String, String>>, QueryRejection>,
) -> Result<Json<Vec<JobRecord>>, ApiError> {
    let params = query(params)?;
    let limit = super::page_limit(&params, 100)?;
    Ok(Json(state.store.dead_letters(limit).await?))
}

/// `POST /v1/dlq/dismiss {"ids": [...]}`.
#[utoipa::path(post, path = "/v1/dlq/dismiss", tag = "dead letters", request_body = drover_api::Dismiss,
    responses((status = 200, description = "what changed for each job", body = drover_api::Changes), (status = "4XX", description = "refused: the message says why, naming the field at fault", body = drover_api::ErrorBody)))]
pub(super) async fn dismiss(
    State(state): State<ApiState>,
    request: Request,
) -> Result<Json<Changes>, ApiError> {
    let body: Dismiss = parse_json(&read_body(request).await?)?;
    if body.ids.is_empty() {
        return Err(ApiError::bad("ids", "name at least one job"));
    }
    let results = state.store.dismiss(body.ids).await?;
    Ok(Json(changes(results)))
}

/// `POST /v1/retry {"ids": [...]}` or `{"all_dlq": true}`: runs ended jobs again with a fresh
/// retry budget; with `"spec": {...}`, with those settings changed.
#[utoipa::path(post, path = "/v1/retry", tag = "dead letters", request_body = drover_api::Retry,
    responses((status = 200, description = "what changed for each job", body = drover_api::Changes), (status = "4XX", description = "refused: the message says why, naming the field at fault", body = drover_api::ErrorBody)))]
pub(super) async fn retry(
    State(state): State<ApiState>,
    request: Request,
) -> Result<Json<Changes>, ApiError> {
    let body: Retry = parse_json(&read_body(request).await?)?;
    let ids = match (body.all_dlq, body.ids.is_empty()) {
        (true, true) => None,
        (false, false) => Some(body.ids),
        _ => return Err(ApiError::bad("ids", "give ids or all_dlq, one of the two")),
    };
    // New settings first (event `edited`), then the retry: the attempts keep the settings they
    // ran with, the job's spec says what the next one gets.
    if let Some(patch) = body.spec.as_ref().filter(|p| !p.is_empty()) {
        let Some(ids) = &ids else {
            return Err(ApiError::bad(
                "spec",
                "new settings need the jobs named by ids",
            ));
        };
        let ended = [
            JobState::Failed,
            JobState::TimedOut,
            JobState::Lost,
            JobState::Cancelled,
        ];
        super::edit::edit_each(&state, ids, patch, &ended).await?;
    }
    let results = state.store.retry(ids).await?;
    Ok(Json(changes(results)))
}

/// Per-job results of a change, as the contract words them.
fn changes(results: Vec<(JobId, drover_store::Change)>) -> Changes {
    Changes {
        results: results
            .into_iter()
            .map(|(id, change)| change_result(id, change))
            .collect(),
    }
}
