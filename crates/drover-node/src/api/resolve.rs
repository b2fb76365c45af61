//! `POST /v1/resolve`: turns the words people use for a job or a group — its number, a prefix
//! of its id, its name — into ids, so that every command takes them wherever it takes an id.
//! The other endpoints take ids only: one reference, one meaning, decided here. Jobs are tried
//! before groups at each step; numbers never clash (a group takes one from the jobs' sequence).

use axum::Json;
use axum::extract::{Request, State};
use drover_api::{Candidate, Found, Resolution, Resolve, Resolved};
use drover_core::{JobId, JobState};
use drover_store::{GroupFilter, JobFilter};

use super::parse::{parse_json, read_body};
use super::*;

/// The most references one request may hold.
const MAX_REFS: usize = 10_000;
/// How many candidates an ambiguous reference lists.
const CANDIDATES: usize = 10;
/// The shortest id prefix looked up: shorter ones would match nearly every job.
pub(crate) const MIN_PREFIX: usize = 4;

/// `POST /v1/resolve`
#[utoipa::path(post, path = "/v1/resolve", tag = "jobs", request_body = drover_api::Resolve,
    responses((status = 200, description = "what each word names", body = drover_api::Resolved), (status = "4XX", description = "refused: the message says why, naming the field at fault", body = drover_api::ErrorBody)))]
pub(super) async fn resolve(
    State(state): State<ApiState>,
    request: Request,
) -> Result<Json<Resolved>, ApiError> {
    let body = read_body(request).await?;
    let asked: Resolve = parse_json(&body)?;
    if asked.refs.len() > MAX_REFS {
        return Err(ApiError::bad(
            "refs",
            format!(
                "holds {} references; the limit is {MAX_REFS}",
                asked.refs.len()
            ),
        ));
    }
    let mut results = Vec::with_capacity(asked.refs.len());
    for reference in asked.refs {
        let found = find(state.store.as_ref(), &reference, asked.groups_first).await?;
        results.push(Resolution { reference, found });
    }
    Ok(Json(Resolved { results }))
}

/// What `reference` names, trying in turn: a whole id, a number, an id prefix, a name; at each,
/// jobs before groups, or groups before jobs when the caller wants a group.
async fn find(
    store: &dyn drover_store::Store,
    reference: &str,
    groups_first: bool,
) -> Result<Found, ApiError> {
    if groups_first {
        let found = find_group(store, reference).await?;
        if found != Found::None {
            return Ok(found);
        }
        return find_job(store, reference).await;
    }
    let found = find_job(store, reference).await?;
    if found != Found::None {
        return Ok(found);
    }
    find_group(store, reference).await
}

/// A group named by a whole id, a number, an id prefix or a name (among groups with a member
/// that has not ended, else among all).
async fn find_group(store: &dyn drover_store::Store, reference: &str) -> Result<Found, ApiError> {
    let word = reference.trim();
    let digits = word.strip_prefix('#').unwrap_or(word);
    let mut filters = Vec::new();
    if let Ok(id) = word.parse::<drover_core::GroupId>() {
        return Ok(match store.group(id).await? {
            Some(group) => Found::Group {
                id,
                number: group.number,
            },
            None => Found::None,
        });
    } else if !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()) {
        let Ok(number) = digits.parse::<u64>() else {
            return Ok(Found::None);
        };
        filters.push(GroupFilter {
            number: Some(number),
            ..GroupFilter::default()
        });
    } else {
        if word.len() >= MIN_PREFIX && word.bytes().all(|b| b.is_ascii_hexdigit() || b == b'-') {
            filters.push(GroupFilter {
                id_prefix: Some(word.to_string()),
                limit: 2,
                ..GroupFilter::default()
            });
        }
        for active in [true, false] {
            filters.push(GroupFilter {
                name: Some(word.to_string()),
                active,
                limit: 2,
                ..GroupFilter::default()
            });
        }
    }
    for filter in filters {
        let mut groups = store.groups(&filter).await?;
        match groups.len() {
            0 => continue,
            // The newest of several groups of one name: a name is reused run after run, and
            // the one a person means is the latest.
            _ => {
                let group = groups.remove(0);
                return Ok(Found::Group {
                    id: group.id,
                    number: group.number,
                });
            }
        }
    }
    Ok(Found::None)
}

/// A job named by a whole id, a number, an id prefix or a name.
async fn find_job(store: &dyn drover_store::Store, reference: &str) -> Result<Found, ApiError> {
    let word = reference.trim();
    if let Ok(id) = word.parse::<JobId>() {
        return Ok(match store.get(id).await? {
            Some(job) => Found::One {
                id,
                number: job.number,
            },
            None => Found::None,
        });
    }
    let digits = word.strip_prefix('#').unwrap_or(word);
    if !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()) {
        let Ok(number) = digits.parse::<u64>() else {
            return Ok(Found::None);
        };
        let filter = JobFilter {
            number: Some(number),
            ..JobFilter::default()
        };
        return Ok(one_of(store.list(&filter).await?));
    }
    if word.len() >= MIN_PREFIX && word.bytes().all(|b| b.is_ascii_hexdigit() || b == b'-') {
        let filter = JobFilter {
            id_prefix: Some(word.to_string()),
            limit: CANDIDATES + 1,
            ..JobFilter::default()
        };
        let found = one_of(store.list(&filter).await?);
        if found != Found::None {
            return Ok(found);
        }
    }
    // A name: among jobs that have not ended (the one a person has in mind), else among all.
    let live: Vec<JobState> = JobState::ALL
        .iter()
        .copied()
        .filter(|s| !s.is_terminal())
        .collect();
    for states in [live, Vec::new()] {
        let filter = JobFilter {
            name: Some(word.to_string()),
            states,
            limit: CANDIDATES + 1,
            ..JobFilter::default()
        };
        let found = one_of(store.list(&filter).await?);
        if found != Found::None {
            return Ok(found);
        }
    }
    Ok(Found::None)
}

/// One job, several (listed up to [`CANDIDATES`]), or none.
fn one_of(mut jobs: Vec<drover_core::JobRecord>) -> Found {
    match jobs.len() {
        0 => Found::None,
        1 => {
            let job = jobs.remove(0);
            Found::One {
                id: job.id,
                number: job.number,
            }
        }
        n => Found::Many {
            more: n > CANDIDATES,
            candidates: jobs
                .into_iter()
                .take(CANDIDATES)
                .map(|job| Candidate {
                    id: job.id,
                    number: job.number,
                    name: job.name,
                    state: job.state,
                })
                .collect(),
        },
    }
}
