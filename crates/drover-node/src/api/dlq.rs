//! The dead-letter queue: list it, dismiss from it, and run ended jobs again (`retry`).

use std::collections::HashMap;

use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, Request, State};
use drover_core::{JobId, JobRecord};

use drover_api::{Changes, Dismiss, Retry};

use super::parse::{parse_json, read_body};
use super::*;

/// `GET /v1/dlq?limit=N`: the dead-letter queue, newest first.
pub(super) async fn dead_letters(
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
/// retry budget.
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
