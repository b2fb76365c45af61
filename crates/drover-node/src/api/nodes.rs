//! The nodes of the cluster and this one: health, this node's report, the nodes table, and
//! draining a node by id or host name.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use drover_core::{NodeId, NodeRecord};

use super::*;

/// `GET /v1/health`: the node answers, and says who it is.
#[utoipa::path(get, path = "/v1/health", tag = "nodes",
    responses((status = 200, description = "the node answers", body = drover_api::Health), (status = "4XX", description = "refused: the message says why, naming the field at fault", body = drover_api::ErrorBody)))]
pub(super) async fn health(State(state): State<ApiState>) -> Json<drover_api::Health> {
    Json(drover_api::Health {
        node: state.node.clone(),
        version: env!("CARGO_PKG_VERSION").into(),
    })
}

/// `GET /v1/node`: capacity, containment backend, and the machine's memory and pressure now.
#[utoipa::path(get, path = "/v1/node", tag = "nodes",
    responses((status = 200, description = "capacity, containment, the machine's memory and pressure", body = drover_api::NodeReport), (status = "4XX", description = "refused: the message says why, naming the field at fault", body = drover_api::ErrorBody)))]
pub(super) async fn node_info(State(state): State<ApiState>) -> Json<drover_api::NodeReport> {
    Json(crate::refreshed(&state.info))
}

/// `GET /v1/nodes`: every node of the cluster (one, on SQLite).
#[utoipa::path(get, path = "/v1/nodes", tag = "nodes",
    responses((status = 200, description = "every node sharing the database", body = Vec<drover_core::NodeRecord>), (status = "4XX", description = "refused: the message says why, naming the field at fault", body = drover_api::ErrorBody)))]
pub(super) async fn nodes(
    State(state): State<ApiState>,
) -> Result<Json<Vec<NodeRecord>>, ApiError> {
    Ok(Json(state.store.nodes().await?))
}

/// `POST /v1/nodes/{node}/drain`: the node claims nothing more and finishes what it runs.
#[utoipa::path(post, path = "/v1/nodes/{node}/drain", tag = "nodes", params(("node" = String, Path, description = "the node: its id or host name")),
    responses((status = 200, description = "the node, draining", body = drover_core::NodeRecord), (status = "4XX", description = "refused: the message says why, naming the field at fault", body = drover_api::ErrorBody)))]
pub(super) async fn drain(
    State(state): State<ApiState>,
    Path(node): Path<String>,
) -> Result<Json<NodeRecord>, ApiError> {
    set_draining(&state, &node, true).await
}

/// `POST /v1/nodes/{node}/undrain`.
#[utoipa::path(post, path = "/v1/nodes/{node}/undrain", tag = "nodes", params(("node" = String, Path, description = "the node: its id or host name")),
    responses((status = 200, description = "the node, claiming again", body = drover_core::NodeRecord), (status = "4XX", description = "refused: the message says why, naming the field at fault", body = drover_api::ErrorBody)))]
pub(super) async fn undrain(
    State(state): State<ApiState>,
    Path(node): Path<String>,
) -> Result<Json<NodeRecord>, ApiError> {
    set_draining(&state, &node, false).await
}

/// Finds a node by id, or by host name when exactly one node has it.
pub(super) async fn resolve_node(state: &ApiState, name: &str) -> Result<NodeId, ApiError> {
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

pub(super) async fn set_draining(
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
