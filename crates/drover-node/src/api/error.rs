//! The API's one error type: a status, a message, and the request field at fault. Every
//! error answer is JSON (`drover_api::ErrorBody`), so a client can name the field to its user.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use drover_core::SpecError;
use drover_store::StoreError;

/// An API error: a status and a message, naming the request field at fault where there is one.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    field: Option<String>,
    message: String,
}

impl ApiError {
    /// An error with this status, naming `field` where there is one.
    pub(crate) fn new(status: StatusCode, field: Option<&str>, message: impl Into<String>) -> Self {
        Self {
            status,
            field: field.map(str::to_string),
            message: message.into(),
        }
    }

    /// The status it answers with.
    pub fn status(&self) -> StatusCode {
        self.status
    }

    /// The request field at fault, if there is one.
    pub fn field(&self) -> Option<&str> {
        self.field.as_deref()
    }

    /// The same error, its field placed inside `prefix` (`timeout` in `steps.work` is
    /// `steps.work.timeout`).
    pub(crate) fn within(mut self, prefix: &str) -> Self {
        self.field = Some(match self.field.take() {
            Some(field) if field != "body" => format!("{prefix}.{field}"),
            _ => prefix.to_string(),
        });
        self
    }

    /// A 400 naming `field`.
    pub(crate) fn bad(field: &str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, Some(field), message)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let message = match &self.field {
            Some(field) => format!("{field}: {}", self.message),
            None => self.message,
        };
        let body = drover_api::ErrorBody {
            error: drover_api::ErrorDetail {
                message,
                field: self.field,
            },
        };
        (self.status, Json(body)).into_response()
    }
}

impl From<StoreError> for ApiError {
    fn from(err: StoreError) -> Self {
        if let StoreError::Invalid { field, message } = err {
            return Self::new(StatusCode::UNPROCESSABLE_ENTITY, Some(&field), message);
        }
        tracing::error!(error = %err, transient = err.is_transient(), "store error in API");
        // A database that is down or busy may answer the same request later (503); a corrupt
        // row or an illegal change will not (500).
        let status = if err.is_transient() || matches!(err, StoreError::Closed) {
            StatusCode::SERVICE_UNAVAILABLE
        } else {
            StatusCode::INTERNAL_SERVER_ERROR
        };
        Self::new(status, None, err.to_string())
    }
}

impl From<SpecError> for ApiError {
    fn from(err: SpecError) -> Self {
        Self::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            Some(&err.field),
            err.message,
        )
    }
}

pub(super) async fn not_found() -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, None, "no such endpoint")
}
