//! Named queues: their settings and load, and changing them (pause, resume, concurrency).

use axum::Json;
use axum::extract::{Path, Request, State};
use drover_store::QueueInfo;

use drover_api::QueueChange;

use super::parse::{parse_json, read_body};
use super::*;

/// `GET /v1/queues`: every queue with settings or unfinished jobs, and its load.
#[utoipa::path(get, path = "/v1/queues", tag = "queues",
    responses((status = 200, description = "every queue with settings or unfinished jobs", body = Vec<drover_core::QueueInfo>), (status = "4XX", description = "refused: the message says why, naming the field at fault", body = drover_api::ErrorBody)))]
pub(super) async fn queues(
    State(state): State<ApiState>,
) -> Result<Json<Vec<QueueInfo>>, ApiError> {
    Ok(Json(state.store.queues().await?))
}

/// `POST /v1/queues/{name} {"paused": true, "concurrency": 2}`.
#[utoipa::path(post, path = "/v1/queues/{name}", tag = "queues", params(("name" = String, Path, description = "the queue")),
    request_body = drover_api::QueueChange,
    responses((status = 200, description = "the queue as it is now", body = drover_core::QueueInfo), (status = "4XX", description = "refused: the message says why, naming the field at fault", body = drover_api::ErrorBody)))]
pub(super) async fn set_queue(
    State(state): State<ApiState>,
    Path(name): Path<String>,
    request: Request,
) -> Result<Json<QueueInfo>, ApiError> {
    let body: QueueChange = parse_json(&read_body(request).await?)?;
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
