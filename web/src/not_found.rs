//! The JSON 404 the API and the UI both answer, so neither imports the other for it.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::json;

/// `404 {"error": "no such endpoint `PATH`"}`.
pub(crate) fn response(path: &str) -> Response {
    let body = json!({ "error": format!("no such endpoint `{path}`") });
    (StatusCode::NOT_FOUND, Json(body)).into_response()
}
