//! `GET /v1/openapi.json`: the API described from the handlers and the types they read and
//! write. Every `/v1` route is registered through [`routes`], which takes its method and path
//! from the handler's `#[utoipa::path]`: a route cannot exist without its description.

use std::sync::{Arc, OnceLock};

use utoipa::openapi::OpenApi as Description;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::{ApiState, dlq, edit, groups, jobs, logs, nodes, queues, resolve};

/// The parts of the description that are not a route: its title, its token scheme.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "drover",
        description = "The HTTP API of a drover node. Every request needs `Authorization: Bearer TOKEN` (the node's own token from its data dir, or the cluster's). Errors are `{\"error\": {\"message\", \"field\"}}`.",
        license(name = "MIT OR Apache-2.0")
    ),
    modifiers(&Token),
    security(("token" = []))
)]
struct Base;

/// The bearer token every request shows.
struct Token;

impl Modify for Token {
    fn modify(&self, openapi: &mut Description) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "token",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

/// Every `/v1` route with its description.
pub(super) fn routes() -> OpenApiRouter<ApiState> {
    OpenApiRouter::with_openapi(Base::openapi())
        .routes(routes!(nodes::health))
        .routes(routes!(nodes::node_info))
        .routes(routes!(jobs::submit, jobs::list))
        .routes(routes!(jobs::wait_idle))
        .routes(routes!(jobs::counts))
        .routes(routes!(jobs::get_job))
        .routes(routes!(jobs::wait_job))
        .routes(routes!(logs::logs))
        .routes(routes!(jobs::cancel))
        .routes(routes!(jobs::set_priority))
        .routes(routes!(edit::edit))
        .routes(routes!(jobs::cancel_many))
        .routes(routes!(resolve::resolve))
        .routes(routes!(groups::submit, groups::list))
        .routes(routes!(groups::get_group))
        .routes(routes!(groups::results))
        .routes(routes!(groups::cancel))
        .routes(routes!(groups::retry))
        .routes(routes!(dlq::dead_letters))
        .routes(routes!(dlq::dismiss))
        .routes(routes!(dlq::retry))
        .routes(routes!(crate::events::events))
        .routes(routes!(queues::queues))
        .routes(routes!(queues::set_queue))
        .routes(routes!(nodes::nodes))
        .routes(routes!(nodes::drain))
        .routes(routes!(nodes::undrain))
        .routes(routes!(openapi_json))
}

/// The description, built once.
pub fn description() -> Arc<Description> {
    static BUILT: OnceLock<Arc<Description>> = OnceLock::new();
    Arc::clone(BUILT.get_or_init(|| {
        let (_, mut description) = routes().split_for_parts();
        description.info.version = env!("CARGO_PKG_VERSION").to_string();
        Arc::new(description)
    }))
}

/// `GET /v1/openapi.json`.
#[utoipa::path(get, path = "/v1/openapi.json", tag = "nodes",
    responses((status = 200, description = "this description (OpenAPI 3.1)", body = Object)))]
pub(super) async fn openapi_json() -> Result<axum::response::Response, super::ApiError> {
    use axum::response::IntoResponse;
    // Encoded once: the description never changes while the node runs.
    static JSON: OnceLock<Result<String, String>> = OnceLock::new();
    let json =
        JSON.get_or_init(|| serde_json::to_string(&*description()).map_err(|e| e.to_string()));
    match json {
        Ok(json) => Ok((
            [(axum::http::header::CONTENT_TYPE, "application/json")],
            json.as_str(),
        )
            .into_response()),
        Err(why) => Err(super::ApiError::new(
            axum::http::StatusCode::INTERNAL_SERVER_ERROR,
            None,
            format!("cannot encode the API description: {why}"),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every endpoint the README's API table lists is described, with the method it gives.
    #[test]
    fn every_route_of_the_readme_is_described() {
        let readme = include_str!("../../../../README.md");
        let description = description();
        let mut listed = 0;
        for line in readme
            .lines()
            .filter(|l| l.starts_with("| `GET /v1") || l.starts_with("| `POST /v1"))
        {
            // The first column holds one or more `METHOD PATH` spans.
            let cell = line.split(" | ").next().unwrap_or_default();
            for route in cell
                .split('`')
                .filter(|s| s.starts_with("GET /") || s.starts_with("POST /"))
            {
                let (method, path) = route.split_once(' ').unwrap_or(("", route));
                let path = path.split('?').next().unwrap_or_default();
                let item = description
                    .paths
                    .paths
                    .get(path)
                    .unwrap_or_else(|| panic!("{path} is in the README but not described"));
                let operation = match method {
                    "GET" => item.get.as_ref(),
                    "POST" => item.post.as_ref(),
                    _ => None,
                };
                assert!(operation.is_some(), "{method} {path} is not described");
                listed += 1;
            }
        }
        assert!(listed >= 25, "the README lists {listed} routes");
        assert_eq!(description.paths.paths.len(), 28, "one entry per path");
    }
}
