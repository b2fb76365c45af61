//! Groups: `POST /v1/groups` submits a sweep or a flow (read, checked and planned whole, then
//! stored in one change), `GET /v1/groups[/{id}]` reads them with their members' counts,
//! `/results` gathers their results in sweep order, and `cancel` and `retry` act on their
//! members.

use axum::Json;
use axum::extract::{Path, Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use drover_api::{
    CancelAllAnswer, CancelAnswer, Changes, GroupDetail, GroupResults, GroupRetry, Groups,
    ResultRow, SubmitGroup, SubmittedGroup,
};
use drover_core::flow::{self, FlowError};
use drover_core::{GroupId, GroupKind, GroupRecord, JobSpec, JobState, Membership};
use drover_store::{GroupFilter, NewGroup, NewMember};

use super::jobs::cancel_result;
use super::parse::{Common, from_value, parse_json, read_body, with_queue_defaults};
use super::*;

/// How many member changes are asked of the store at once (they share group commits).
const AT_ONCE: usize = 512;

/// `POST /v1/groups`: 201 with the group's id, number and members; 422 naming the part of the
/// flow at fault (`steps.work.after`), and nothing stored.
#[utoipa::path(post, path = "/v1/groups", tag = "groups", request_body = drover_api::SubmitGroup,
    responses((status = 201, description = "the group's id, number and members", body = drover_api::SubmittedGroup), (status = "4XX", description = "refused: the message says why, naming the field at fault", body = drover_api::ErrorBody)))]
pub(super) async fn submit(
    State(state): State<ApiState>,
    request: Request,
) -> Result<Response, ApiError> {
    let body = read_body(request).await?;
    let asked: SubmitGroup = parse_json(&body)?;
    let (group, members) = plan(&state, asked)?;
    let name = group.name.clone();
    let stored = state.store.submit_group(group, members).await?;
    let answer = SubmittedGroup {
        id: stored.id,
        number: stored.number,
        name,
        jobs: stored.jobs,
    };
    Ok((StatusCode::CREATED, Json(answer)).into_response())
}

fn invalid(err: FlowError) -> ApiError {
    ApiError::new(
        StatusCode::UNPROCESSABLE_ENTITY,
        Some(&err.field),
        err.message,
    )
}

/// Reads, checks and plans a group: the flow's shape and graph, each step's spec (with
/// `common` and its queue's defaults filled in), and each planned job's size limits.
fn plan(state: &ApiState, asked: SubmitGroup) -> Result<(NewGroup, Vec<NewMember>), ApiError> {
    let document = flow::parse(asked.flow).map_err(invalid)?;
    if asked.kind == GroupKind::Sweep
        && (document.steps.len() != 1 || document.steps[0].each.is_none())
    {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            Some("flow.steps"),
            "a sweep is one step with `each`",
        ));
    }
    let common = Common::new(asked.common.unwrap_or_default());
    let now = chrono::Utc::now();
    let mut spec_error = None;
    let parsed = document.try_map(|step, mut raw| {
        common.fill(&mut raw);
        let value = with_queue_defaults(serde_json::Value::Object(raw), &state.queue_defaults);
        let prefix = format!("steps.{step}");
        let parsed: Result<JobSpec, ApiError> = from_value(value);
        match parsed {
            Ok(mut spec) => {
                super::parse::delay_to_at(&mut spec, now);
                Ok(spec)
            }
            Err(err) => {
                spec_error = Some(err.within(&prefix));
                Err(FlowError::new(prefix, "invalid"))
            }
        }
    });
    let document = match parsed {
        Ok(document) => document,
        Err(err) => return Err(spec_error.take().unwrap_or_else(|| invalid(err))),
    };
    let id = GroupId::from_uuid(uuid::Uuid::now_v7());
    let planned = document.plan(asked.kind);
    let mut members = Vec::with_capacity(planned.jobs.len());
    for job in planned.jobs {
        job.spec
            .validate(&state.limits)
            .map_err(|err| ApiError::from(err).within(&format!("steps.{}", job.step)))?;
        members.push(NewMember {
            spec: job.spec,
            membership: Membership {
                group: id,
                step: (asked.kind == GroupKind::Flow).then_some(job.step),
                index: job.index,
                values: job.values,
            },
            after: job.after,
        });
    }
    let group = NewGroup {
        id,
        name: document.name,
        kind: asked.kind,
        steps: planned.steps,
        notify: document.notify,
    };
    Ok((group, members))
}

pub(crate) fn parse_group_id(raw: &str) -> Result<GroupId, ApiError> {
    raw.parse()
        .map_err(|_| ApiError::bad("id", format!("`{raw}` is not a group id")))
}

async fn load_group(state: &ApiState, id: GroupId) -> Result<GroupRecord, ApiError> {
    state
        .store
        .group(id)
        .await?
        .ok_or_else(|| ApiError::new(StatusCode::NOT_FOUND, Some("id"), format!("no group {id}")))
}

/// `GET /v1/groups?active=true&name=NAME&limit=N`: newest first.
#[utoipa::path(get, path = "/v1/groups", tag = "groups",
    params(("active" = Option<bool>, Query, description = "true: only groups with members that have not ended"), ("name" = Option<String>, Query, description = "only this name"), ("limit" = Option<u32>, Query, description = "at most this many")),
    responses((status = 200, description = "groups, newest first", body = drover_api::Groups), (status = "4XX", description = "refused: the message says why, naming the field at fault", body = drover_api::ErrorBody)))]
pub(super) async fn list(
    State(state): State<ApiState>,
    params: Result<Query<HashMap<String, String>>, QueryRejection>,
) -> Result<Json<Groups>, ApiError> {
    let params = query(params)?;
    let limit = super::page_limit(&params, 0)?;
    let active = match params.get("active").map(String::as_str) {
        None | Some("false") => false,
        Some("true") => true,
        Some(other) => {
            return Err(ApiError::bad(
                "active",
                format!("`{other}` is not true or false"),
            ));
        }
    };
    let filter = GroupFilter {
        name: params.get("name").cloned(),
        active,
        limit,
        ..GroupFilter::default()
    };
    Ok(Json(Groups {
        groups: state.store.groups(&filter).await?,
    }))
}

/// `GET /v1/groups/{id}`: the group and its members.
#[utoipa::path(get, path = "/v1/groups/{id}", tag = "groups", params(("id" = String, Path, description = "the group: its id, number or name")),
    responses((status = 200, description = "the group and its members", body = drover_api::GroupDetail), (status = "4XX", description = "refused: the message says why, naming the field at fault", body = drover_api::ErrorBody)))]
pub(super) async fn get_group(
    State(state): State<ApiState>,
    Path(id): Path<String>,
) -> Result<Json<GroupDetail>, ApiError> {
    let id = parse_group_id(&id)?;
    let group = load_group(&state, id).await?;
    let jobs = state.store.members(id, false).await?;
    let jobs = waiting::explained(&state, jobs).await?;
    Ok(Json(GroupDetail { group, jobs }))
}

/// `GET /v1/groups/{id}/results`: each member's result in sweep order (`null` where it gave
/// none), with its values and state.
#[utoipa::path(get, path = "/v1/groups/{id}/results", tag = "groups", params(("id" = String, Path, description = "the group: its id, number or name")),
    responses((status = 200, description = "each member's result, in sweep order", body = drover_api::GroupResults), (status = "4XX", description = "refused: the message says why, naming the field at fault", body = drover_api::ErrorBody)))]
pub(super) async fn results(
    State(state): State<ApiState>,
    Path(id): Path<String>,
) -> Result<Json<GroupResults>, ApiError> {
    let id = parse_group_id(&id)?;
    let group = load_group(&state, id).await?;
    let results = state
        .store
        .members(id, true)
        .await?
        .into_iter()
        .map(|job| {
            let member = job.group.unwrap_or(Membership {
                group: id,
                step: None,
                index: 0,
                values: Vec::new(),
            });
            ResultRow {
                id: job.id,
                number: job.number,
                name: job.name,
                step: member.step,
                index: member.index,
                values: member
                    .values
                    .into_iter()
                    .map(|(k, v)| (k, serde_json::Value::String(v)))
                    .collect(),
                state: job.state,
                reason: job.state.is_terminal().then_some(job.reason).flatten(),
                result: job.result,
            }
        })
        .collect();
    Ok(Json(GroupResults { group, results }))
}

/// `POST /v1/groups/{id}/cancel`: cancels every member that has not ended.
#[utoipa::path(post, path = "/v1/groups/{id}/cancel", tag = "groups", params(("id" = String, Path, description = "the group: its id, number or name")),
    responses((status = 200, description = "what the cancel did to each member", body = drover_api::CancelAllAnswer), (status = "4XX", description = "refused: the message says why, naming the field at fault", body = drover_api::ErrorBody)))]
pub(super) async fn cancel(
    State(state): State<ApiState>,
    Path(id): Path<String>,
) -> Result<Json<CancelAllAnswer>, ApiError> {
    let id = parse_group_id(&id)?;
    load_group(&state, id).await?;
    let ids: Vec<_> = state
        .store
        .members(id, false)
        .await?
        .into_iter()
        .filter(|job| !job.state.is_terminal())
        .map(|job| job.id)
        .collect();
    let mut results = Vec::with_capacity(ids.len());
    for slice in ids.chunks(AT_ONCE) {
        let answers =
            futures::future::join_all(slice.iter().map(|&job| state.store.cancel(job))).await;
        for (&job, answer) in slice.iter().zip(answers) {
            results.push(CancelAnswer {
                id: job,
                result: cancel_result(answer?),
            });
        }
    }
    Ok(Json(CancelAllAnswer { results }))
}

/// `POST /v1/groups/{id}/retry {"failed": true}`: runs again the members that ended
/// unsuccessfully (with `failed`, not the cancelled ones), upstream ones first, so that a member
/// that failed because of another waits for it.
#[utoipa::path(post, path = "/v1/groups/{id}/retry", tag = "groups", params(("id" = String, Path, description = "the group: its id, number or name")),
    request_body(content = drover_api::GroupRetry, description = "optional; `{\"failed\": true}` retries only the members that failed"),
    responses((status = 200, description = "what the retry did to each member", body = drover_api::Changes), (status = "4XX", description = "refused: the message says why, naming the field at fault", body = drover_api::ErrorBody)))]
pub(super) async fn retry(
    State(state): State<ApiState>,
    Path(id): Path<String>,
    request: Request,
) -> Result<Json<Changes>, ApiError> {
    let id = parse_group_id(&id)?;
    let body = read_body(request).await?;
    let asked: GroupRetry = if body.iter().all(u8::is_ascii_whitespace) {
        GroupRetry::default()
    } else {
        parse_json(&body)?
    };
    load_group(&state, id).await?;
    let wanted = |s: JobState| match s {
        JobState::Failed | JobState::TimedOut | JobState::Lost => true,
        JobState::Cancelled => !asked.failed,
        _ => false,
    };
    let ids: Vec<_> = state
        .store
        .members(id, false)
        .await?
        .into_iter()
        .filter(|job| wanted(job.state))
        .map(|job| job.id)
        .collect();
    let results = if ids.is_empty() {
        Vec::new()
    } else {
        state.store.retry(Some(ids)).await?
    };
    Ok(Json(Changes {
        results: results
            .into_iter()
            .map(|(id, change)| change_result(id, change))
            .collect(),
    }))
}
