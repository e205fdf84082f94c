//! The HTTP API: axum routes over a [`Backend`].
//!
//! | Route | Answers |
//! |---|---|
//! | `GET /api/v1/profile` | the merged profile: `format=folded` (default), `svg`, `pprof`, `json`; `focus=FUNC` or `callers=FUNC` for one function's view; `orientation=flame\|icicle` and `width` (px) for SVGs |
//! | `GET /api/v1/labels` | label names → values → samples |
//! | `GET /api/v1/top` | functions by self (or `sort=total`) samples; `group=process\|binary` for one row per function and process (or binary) |
//! | `GET /api/v1/timeline` | samples per stored window |
//! | `GET /api/v1/diff` | base range vs new range: `folded` (3 columns), `svg`, `json`; `base_filter` for a base of its own filter |
//! | `GET /api/v1/flame` | the UI's flame graph: the call tree as JSON, or two ranges and filters compared (`view_handlers`) |
//! | `GET /api/v1/cpu` | CPU in cores per stored window, idle left out |
//! | `GET /api/v1/explore` | each label's values with their CPU share, under the other labels' filters |
//! | `GET /api/v1/types` | the profile types stored (`cpu`, and `off-cpu` once the agent ran with `--off-cpu`); every profile endpoint takes `type=cpu\|off-cpu` and says its `unit` |
//! | `GET /healthz`, `GET /metrics` | `ok`, or 503 `degraded: reason`; Prometheus text |
//! | `GET /`, `GET /ui/{file}` | the embedded web UI ([`crate::ui`]) |
//! | `POST /login` | the UI's login form, when the API has a token ([`access`]) |
//!
//! Times are unix seconds, RFC 3339, `now-15m` or `-1.5h` ([`profiler_model::time`]); `from` defaults to `now-15m` and `to` to
//! `now`. Any bad parameter answers 400 with `{"error": "invalid `name`: ..."}`; a backend
//! failure answers 500 and is logged once. Backend calls and rendering run on blocking
//! threads.
//!
//! Who may ask is checked first ([`access`]: the `Host` header, then the optional bearer
//! token); heavy queries then run within budgets of concurrency, time and size
//! ([`limits`]: 503 with `Retry-After`, or 413), while `/healthz`, `/labels`, `/metrics`
//! and the UI's files never wait behind them. Requests for the same range and filter share
//! one merge of the store's windows (`shared.rs`), as the UI's first screen sends three.

pub mod access;
mod backend;
mod error;
mod flame;
mod handlers;
pub mod limits;
mod metrics;
mod params;
mod shared;
mod view_handlers;
mod views;

#[cfg(test)]
mod hostile_tests;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod testutil;
#[cfg(test)]
mod view_tests;

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::routing::{get, post};
use tokio::net::TcpListener;

pub use access::{Token, TokenError};
pub use backend::{Backend, BackendError, Health, LabelValues, ProfileQuery, TimelinePoint};
pub use error::ApiError;
use handlers::AppState;
pub use limits::Limits;

use crate::tls::{TlsConfig, TlsListener};

/// How the API is exposed and what a query may cost. The default serves anyone who
/// reaches a loopback address, without TLS, with [`Limits::default`].
#[derive(Clone, Default)]
pub struct ApiConfig {
    /// The bearer token every endpoint but `/healthz` needs, if any.
    pub token: Option<Token>,
    /// Names accepted in `Host` besides `localhost`, loopback addresses and the listen
    /// address (`--api-allowed-host`; a port is ignored, a malformed name matches nothing:
    /// check them with [`access::host_part`]).
    pub allowed_hosts: Vec<String>,
    /// The address the API listens on, accepted in `Host`.
    pub listen: Option<SocketAddr>,
    /// Serve HTTPS with this certificate and key.
    pub tls: Option<TlsConfig>,
    /// Budgets of the heavy queries.
    pub limits: Limits,
    /// Run on a blocking thread when the last heavy query of a burst ends (the agent
    /// returns freed heap memory to the system there).
    pub after_burst: Option<Arc<dyn Fn() + Send + Sync>>,
}

impl std::fmt::Debug for ApiConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiConfig")
            .field("token", &self.token)
            .field("allowed_hosts", &self.allowed_hosts)
            .field("listen", &self.listen)
            .field("tls", &self.tls.is_some())
            .field("limits", &self.limits)
            .finish_non_exhaustive()
    }
}

/// The API's router, ready for [`serve`] or for `tower::ServiceExt::oneshot` in tests.
pub fn app(backend: Arc<dyn Backend>, config: &ApiConfig) -> Router {
    let access = Arc::new(access::Access {
        token: config.token.clone(),
        allowed_hosts: config
            .allowed_hosts
            .iter()
            .filter_map(|h| access::host_part(h))
            .collect(),
        listen: config.listen,
        tls: config.tls.is_some(),
    });
    let state = AppState {
        // Requests for one range and filter share one merge (the UI's first screen sends
        // three at once).
        backend: Arc::new(shared::Shared::new(backend)),
        metrics: metrics::ApiMetrics::default(),
        limiter: Arc::new(limits::Limiter::new(
            config.limits.clone(),
            config.after_burst.clone(),
        )),
    };
    let login = Router::new()
        .route("/login", post(access::login))
        .with_state(Arc::clone(&access));
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
        .route("/api/v1/flame", get(view_handlers::flame))
        .route("/api/v1/cpu", get(view_handlers::cpu))
        .route("/api/v1/explore", get(view_handlers::explore))
        .route("/api/v1/types", get(view_handlers::types))
        .fallback(handlers::not_found)
        .with_state(state.clone())
        .merge(login)
        .layer(axum::middleware::from_fn_with_state(access, access::check))
        .layer(axum::middleware::from_fn_with_state(
            state.metrics.clone(),
            metrics::track,
        ))
}

/// Serves [`app`] on `listener` (over TLS when `config.tls` is set) until `shutdown`
/// completes, then finishes the requests in flight and returns.
///
/// # Errors
/// None in practice: axum retries failed accepts; the `io::Result` is axum's signature.
pub async fn serve(
    listener: TcpListener,
    backend: Arc<dyn Backend>,
    config: ApiConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> io::Result<()> {
    let router = app(backend, &config);
    match &config.tls {
        None => {
            if let Ok(addr) = listener.local_addr() {
                tracing::info!(%addr, "serving the HTTP API");
            }
            axum::serve(listener, router)
                .with_graceful_shutdown(shutdown)
                .await
        }
        Some(tls) => {
            let listener = TlsListener::new(listener, tls)?;
            if let Ok(addr) = axum::serve::Listener::local_addr(&listener) {
                tracing::info!(%addr, "serving the HTTP API over TLS");
            }
            axum::serve(listener, router)
                .with_graceful_shutdown(shutdown)
                .await
        }
    }
}
