//! The API's one error type: bad parameters answer 400 and name the parameter; backend and
//! internal failures answer 500 and are logged once, here.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use super::backend::BackendError;

/// Everything a handler can fail with. The body is always `{"error": "..."}`.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// A query parameter has a bad value (400).
    #[error("invalid `{name}`: {reason}")]
    BadParam {
        /// The parameter, as the client spelled it.
        name: String,
        /// What is wrong with its value.
        reason: String,
    },
    /// The query string as a whole is wrong: unknown or repeated parameters, bad
    /// encoding (400).
    #[error("{0}")]
    BadQuery(String),
    /// The backend failed (500).
    #[error("backend: {0}")]
    Backend(#[from] BackendError),
    /// Rendering or a blocking task failed (500).
    #[error("internal: {0}")]
    Internal(String),
}

impl ApiError {
    /// A [`ApiError::BadParam`] for `name`.
    pub(crate) fn param(name: &str, reason: impl Into<String>) -> Self {
        ApiError::BadParam {
            name: name.to_owned(),
            reason: reason.into(),
        }
    }

    /// The HTTP status the error answers with.
    #[must_use]
    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::BadParam { .. } | ApiError::BadQuery(_) => StatusCode::BAD_REQUEST,
            ApiError::Backend(_) | ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

#[derive(Serialize)]
struct ErrorBody {
    error: String,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        if status.is_server_error() {
            // Logged here and nowhere else: handlers just return the error.
            tracing::error!(err = %self, "API request failed");
        }
        let body = ErrorBody {
            error: self.to_string(),
        };
        (status, Json(body)).into_response()
    }
}
