//! Changing a job's spec: `POST /v1/jobs/{id}/edit` for a job that waits, and the new settings
//! of `POST /v1/retry {"spec": {...}}` for jobs that ended. Both take a patch — the spec fields
//! to change, in the schema of `POST /v1/jobs` — laid over the stored spec and checked as a
//! submit is. The store refuses to move what fixes a job's place (`after`, `at`, its key).

use axum::Json;
use axum::extract::{Path, Request, State};
use drover_api::ChangeResult;
use drover_core::{JobId, JobSpec, JobState};

use super::parse::{parse_json, read_body};
use super::*;

/// The states `drover edit` applies to.
const WAITING: [JobState; 3] = [JobState::Queued, JobState::Scheduled, JobState::Blocked];

/// `POST /v1/jobs/{id}/edit` with a patch: the waiting job's spec changes.
#[utoipa::path(post, path = "/v1/jobs/{id}/edit", tag = "jobs", params(("id" = String, Path, description = "the job: its id, number, id prefix or name")),
    request_body(content = Object, description = "spec fields to change; `env` and `require` change key by key"),
    responses((status = 200, description = "what changed", body = drover_api::ChangeResult), (status = "4XX", description = "refused: the message says why, naming the field at fault", body = drover_api::ErrorBody)))]
pub(super) async fn edit(
    State(state): State<ApiState>,
    Path(id): Path<String>,
    request: Request,
) -> Result<Json<ChangeResult>, ApiError> {
    let id = parse_id(&id)?;
    let patch: serde_json::Map<String, serde_json::Value> = parse_json(&read_body(request).await?)?;
    let job = load(&state, id).await?;
    let spec = patched(&job.spec, &patch, &state.limits)?;
    let change = state.store.edit(id, spec, &WAITING).await?;
    Ok(Json(change_result(id, change)))
}

/// Gives each job of `ids` the spec `patch` makes of its own, if it is in one of `states`;
/// a job in another state, or missing, is left alone (the retry that follows says so).
pub(super) async fn edit_each(
    state: &ApiState,
    ids: &[JobId],
    patch: &serde_json::Map<String, serde_json::Value>,
    states: &[JobState],
) -> Result<(), ApiError> {
    for id in ids {
        let Some(job) = state.store.get(*id).await? else {
            continue;
        };
        if states.contains(&job.state) {
            let spec = patched(&job.spec, patch, &state.limits)?;
            state.store.edit(*id, spec, states).await?;
        }
    }
    Ok(())
}

/// `spec` with the fields of `patch` laid over it — a table (`env`, `require`) key by key —
/// checked as a submitted spec is. Errors name the field.
fn patched(
    spec: &JobSpec,
    patch: &serde_json::Map<String, serde_json::Value>,
    limits: &drover_core::Limits,
) -> Result<JobSpec, ApiError> {
    let mut value = serde_json::to_value(spec).map_err(|e| ApiError::bad("spec", e.to_string()))?;
    if let Some(fields) = value.as_object_mut() {
        for (key, new) in patch {
            match (
                fields.get_mut(key).and_then(|v| v.as_object_mut()),
                new.as_object(),
            ) {
                (Some(table), Some(changes)) => {
                    for (name, value) in changes {
                        table.insert(name.clone(), value.clone());
                    }
                }
                _ => {
                    fields.insert(key.clone(), new.clone());
                }
            }
        }
    }
    let bytes = serde_json::to_vec(&value).map_err(|e| ApiError::bad("spec", e.to_string()))?;
    let spec: JobSpec = parse_json(&bytes)?;
    spec.validate(limits)?;
    Ok(spec)
}
