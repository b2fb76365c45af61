//! The web page, compiled into the binary: one HTML file, its script and its style, served
//! with a CSP that forbids inline scripts; `/?token=…` is the login link.

use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};

use super::*;

/// The web page, compiled into the binary: one HTML file, its script and its style, no build
/// step. Separate files (not inline) so that the page's CSP can forbid every inline script.
const WEB_PAGE: &str = include_str!("../web/index.html");

const WEB_SCRIPT: &str = include_str!("../web/app.js");

const WEB_STYLE: &str = include_str!("../web/app.css");

/// The query of `GET /`: the login link carries the token.
#[derive(serde::Deserialize)]
pub(super) struct PageQuery {
    token: Option<String>,
}

/// `GET /`: the live job table, on the event stream; `/?token=…` logs the browser in.
pub(super) async fn page(
    State(state): State<ApiState>,
    query: Result<Query<PageQuery>, QueryRejection>,
) -> Response {
    if let Ok(Query(PageQuery { token: Some(token) })) = query {
        return crate::auth::login(&state.access, &token);
    }
    static_file("text/html; charset=utf-8", WEB_PAGE)
}

pub(super) async fn script() -> Response {
    static_file("text/javascript; charset=utf-8", WEB_SCRIPT)
}

pub(super) async fn style() -> Response {
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
