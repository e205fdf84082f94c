//! The HTTP API: axum routes over a [`Backend`].
//!
//! | Route | Answers |
//! |---|---|
//! | `GET /api/v1/profile` | the merged profile: `format=folded` (default), `svg`, `pprof`, `json`; `focus=FUNC` or `callers=FUNC` for one function's view; `orientation=flame\|icicle` and `width` (px) for SVGs |
//! | `GET /api/v1/labels` | label names → values → samples |
//! | `GET /api/v1/top` | functions by self (or `sort=total`) samples |
//! | `GET /api/v1/timeline` | samples per stored window |
//! | `GET /api/v1/diff` | base range vs new range: `folded` (3 columns), `svg`, `json` |
//! | `GET /healthz`, `GET /metrics` | `ok`, or 503 `degraded: reason`; Prometheus text |
//! | `GET /`, `GET /ui/{file}` | the embedded web UI ([`crate::ui`]) |
//!
//! Times are unix seconds, RFC 3339, `now-15m` or `-1.5h` ([`profiler_model::time`]); `from` defaults to `now-15m` and `to` to
//! `now`. Any bad parameter answers 400 with `{"error": "invalid `name`: ..."}`; a backend
//! failure answers 500 and is logged once. Backend calls and rendering run on blocking
//! threads.

mod backend;
mod error;
mod flame;
mod handlers;
mod metrics;
mod params;

#[cfg(test)]
mod tests;
#[cfg(test)]
mod testutil;

use std::future::Future;
use std::io;
use std::sync::Arc;

use axum::Router;
use axum::routing::get;
use tokio::net::TcpListener;

pub use backend::{Backend, BackendError, Health, LabelValues, ProfileQuery, TimelinePoint};
pub use error::ApiError;
use handlers::AppState;

/// The API's router, ready for [`serve`] or for `tower::ServiceExt::oneshot` in tests.
pub fn app(backend: Arc<dyn Backend>) -> Router {
    let state = AppState {
        backend,
        metrics: metrics::ApiMetrics::default(),
    };
    Router::new()
        .route("/", get(crate::ui::index))
        .route("/ui/{file}", get(crate::ui::asset))
        .route("/healthz", get(handlers::healthz))
        .route("/metrics", get(handlers::metrics))
        .route("/api/v1/profile", get(handlers::profile))
        .route("/api/v1/labels", get(handlers::labels))
        .route("/api/v1/top", get(handlers::top))
        .route("/api/v1/timeline", get(handlers::timeline))
        .route("/api/v1/diff", get(handlers::diff))
        .fallback(handlers::not_found)
        .layer(axum::middleware::from_fn_with_state(
            state.metrics.clone(),
            metrics::track,
        ))
        .with_state(state)
}

/// Serves [`app`] on `listener` until `shutdown` completes, then finishes the requests in
/// flight and returns.
///
/// # Errors
/// None in practice: axum retries failed accepts; the `io::Result` is axum's signature.
pub async fn serve(
    listener: TcpListener,
    backend: Arc<dyn Backend>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> io::Result<()> {
    if let Ok(addr) = listener.local_addr() {
        tracing::info!(%addr, "serving the HTTP API");
    }
    axum::serve(listener, app(backend))
        .with_graceful_shutdown(shutdown)
        .await
}
