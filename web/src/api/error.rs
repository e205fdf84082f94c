//! The API's one error type: bad parameters answer 400 and name the parameter; backend and
//! internal failures answer 500 and are logged once, here.

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
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
    /// The backend failed (500). Its cause is the source, not part of this message, so
    /// `{err:#}` and [`ApiError::chain`] show it once.
    #[error("backend")]
    Backend(#[from] BackendError),
    /// Rendering or a blocking task failed (500).
    #[error("internal: {0}")]
    Internal(String),
    /// No token, or the wrong one (401).
    #[error("{0}")]
    Unauthorized(String),
    /// `Host` names something this agent does not answer to (421).
    #[error(
        "this agent does not answer to the host `{0}` (a page on another site may have \
         re-resolved its name to this node); use localhost or the listen address, or allow \
         the name with --api-allowed-host"
    )]
    MisdirectedHost(String),
    /// Too many heavy queries at once (503, with `Retry-After`).
    #[error(
        "busy: {running} heavy queries are running and {queued} waiting, the most this agent \
         takes; retry in {retry_after_s} s"
    )]
    Busy {
        /// Queries that run at once.
        running: usize,
        /// Queries that may wait.
        queued: usize,
        /// Seconds to wait before retrying.
        retry_after_s: u64,
    },
    /// The query did not finish in its time budget (503, with `Retry-After`).
    #[error(
        "the query did not finish within its {budget:?} budget: narrow the range (`from`, \
         `to`) or add a `filter`"
    )]
    OverTime {
        /// The budget.
        budget: std::time::Duration,
    },
    /// The answer would be larger than its budget (413).
    #[error("too large: {0}")]
    TooLarge(String),
}

impl ApiError {
    /// The message with every cause after it, `outer: cause: cause`: what the response
    /// body and the log say.
    #[must_use]
    pub fn chain(&self) -> String {
        let mut text = self.to_string();
        let mut source = std::error::Error::source(self);
        while let Some(err) = source {
            text.push_str(": ");
            text.push_str(&err.to_string());
            source = err.source();
        }
        text
    }

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
            ApiError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            ApiError::MisdirectedHost(_) => StatusCode::MISDIRECTED_REQUEST,
            ApiError::Busy { .. } | ApiError::OverTime { .. } => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
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
        if status == StatusCode::INTERNAL_SERVER_ERROR {
            // Logged here and nowhere else: handlers just return the error.
            tracing::error!(err = %self.chain(), "API request failed");
        } else if status == StatusCode::SERVICE_UNAVAILABLE {
            tracing::debug!(err = %self.chain(), "heavy query refused");
        }
        let retry_after = match &self {
            ApiError::Busy { retry_after_s, .. } => Some(*retry_after_s),
            ApiError::OverTime { budget } => Some((budget.as_secs() / 10).clamp(1, 10)),
            _ => None,
        };
        let unauthorized = matches!(self, ApiError::Unauthorized(_));
        let body = ErrorBody {
            error: self.chain(),
        };
        let mut response = (status, Json(body)).into_response();
        let headers = response.headers_mut();
        if let Some(s) = retry_after {
            headers.insert(header::RETRY_AFTER, HeaderValue::from(s));
        }
        if unauthorized {
            headers.insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"ember\""),
            );
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `{err:#}` as `anyhow` and `main` print it: the message, then each source's.
    fn alternate(err: &dyn std::error::Error) -> String {
        let mut text = err.to_string();
        let mut source = err.source();
        while let Some(e) = source {
            text.push_str(": ");
            text.push_str(&e.to_string());
            source = e.source();
        }
        text
    }

    #[test]
    fn every_cause_shows_once_in_the_chain() {
        let cause = "store unreadable: disk on fire";
        let err = ApiError::from(BackendError(cause.to_owned()));
        for shown in [alternate(&err), err.chain()] {
            assert_eq!(shown, format!("backend: {cause}"));
            assert_eq!(shown.matches(cause).count(), 1, "{shown}");
        }
        // Errors without a source are their message alone.
        let bad = ApiError::param("from", "missing unit");
        assert_eq!(bad.chain(), "invalid `from`: missing unit");
        assert_eq!(bad.chain(), alternate(&bad));
    }
}
