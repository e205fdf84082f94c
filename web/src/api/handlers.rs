//! One handler per endpoint. Each parses its parameters first (400 on any problem), then
//! runs the backend query and the rendering on a blocking thread.

use std::io;
use std::sync::Arc;

use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::{HeaderValue, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use profiler_model::{FrameKind, Profile, analysis, folded, pprof};
use serde_json::{Value, json};

use super::backend::{Backend, ProfileQuery};
use super::error::ApiError;
use super::flame::Layout;
use super::metrics::ApiMetrics;
use super::params::{
    DEFAULT_FROM, DiffFormat, Orientation, Params, ProfileFormat, RootFrame, TopSort,
};
use crate::render::{self, SvgOptions};

/// What every handler shares.
#[derive(Clone)]
pub(crate) struct AppState {
    pub(crate) backend: Arc<dyn Backend>,
    pub(crate) metrics: ApiMetrics,
}

/// The query string, or why axum could not read it.
type RawParams = Result<Query<Vec<(String, String)>>, QueryRejection>;

const TEXT: &str = "text/plain; charset=utf-8";
const SVG: &str = "image/svg+xml";
const PROMETHEUS: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Runs `f` with the backend on a blocking thread: backend calls may read the disk, and
/// rendering a large profile takes CPU time the async workers should not spend.
async fn blocking<T: Send + 'static>(
    state: &AppState,
    f: impl FnOnce(&dyn Backend) -> Result<T, ApiError> + Send + 'static,
) -> Result<T, ApiError> {
    let backend = Arc::clone(&state.backend);
    tokio::task::spawn_blocking(move || f(&*backend))
        .await
        .map_err(|e| ApiError::Internal(format!("query task failed: {e}")))?
}

fn with_type(content_type: &'static str, body: impl IntoResponse) -> Response {
    ([(header::CONTENT_TYPE, content_type)], body).into_response()
}

/// Seconds, with the fraction only when there is one, for titles and file names.
fn seconds(ns: u64) -> String {
    let (s, frac) = (ns / 1_000_000_000, ns % 1_000_000_000);
    if frac == 0 {
        s.to_string()
    } else {
        format!("{s}.{:09}", frac).trim_end_matches('0').to_owned()
    }
}

fn folded_options(p: &Params, default_root: RootFrame) -> Result<folded::Options, ApiError> {
    Ok(folded::Options::default()
        .with_root(p.choice("root", default_root)?.into())
        .with_no_kernel(p.flag("no_kernel")?))
}

/// One function's view of a profile, from `focus=FUNC` or `callers=FUNC`.
#[derive(Clone, Debug)]
enum View {
    /// The whole profile.
    All,
    /// Stacks through the function, re-rooted at it ([`analysis::focus`]).
    Focus(String),
    /// The function's callers, the function at the root ([`analysis::callers`]).
    Callers(String),
}

impl View {
    fn from_params(p: &Params) -> Result<Self, ApiError> {
        let name = |param: &str| -> Result<Option<String>, ApiError> {
            match p.get(param) {
                None => Ok(None),
                Some("") => Err(ApiError::param(param, "empty function name")),
                Some(v) => Ok(Some(v.to_owned())),
            }
        };
        match (name("focus")?, name("callers")?) {
            (None, None) => Ok(View::All),
            (Some(f), None) => Ok(View::Focus(f)),
            (None, Some(c)) => Ok(View::Callers(c)),
            (Some(_), Some(_)) => Err(ApiError::param(
                "callers",
                "give `focus` or `callers`, not both",
            )),
        }
    }

    /// The folded root frame when `root` is not given: a re-rooted view starts at the
    /// function itself.
    fn default_root(&self) -> RootFrame {
        match self {
            View::All => RootFrame::Comm,
            View::Focus(_) | View::Callers(_) => RootFrame::None,
        }
    }

    fn apply(&self, profile: Profile) -> Profile {
        match self {
            View::All => profile,
            View::Focus(f) => analysis::focus(&profile, f),
            View::Callers(f) => analysis::callers(&profile, f),
        }
    }

    /// Added to titles: what the graph is rooted at.
    fn describe(&self) -> String {
        match self {
            View::All => String::new(),
            View::Focus(f) => format!(" (focus: {f})"),
            View::Callers(f) => format!(" (callers of {f})"),
        }
    }
}

/// The backend's merged profile, without the idle task unless asked for.
fn load_profile(
    backend: &dyn Backend,
    query: &ProfileQuery,
    include_idle: bool,
) -> Result<Profile, ApiError> {
    let profile = backend.profile(query)?;
    Ok(if include_idle {
        profile
    } else {
        profile.without_idle()
    })
}

/// An SVG saying there is nothing to draw: inferno refuses empty input.
fn empty_svg(title: &str) -> String {
    let title = title
        .replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;");
    format!(
        "<?xml version=\"1.0\" standalone=\"no\"?>\n\
         <svg version=\"1.1\" width=\"1200\" height=\"80\" xmlns=\"http://www.w3.org/2000/svg\">\
         <text x=\"600\" y=\"30\" text-anchor=\"middle\" font-size=\"17\">{title}</text>\
         <text x=\"600\" y=\"60\" text-anchor=\"middle\" font-size=\"14\">No samples in the selected range</text>\
         </svg>\n"
    )
}

fn render_error(e: &io::Error) -> ApiError {
    ApiError::Internal(format!("rendering the flame graph: {e}"))
}

// ---------------------------------------------------------------------------------------

const PROFILE_PARAMS: &[&str] = &[
    "from",
    "to",
    "filter",
    "format",
    "include_idle",
    "root",
    "no_kernel",
    "focus",
    "callers",
    "orientation",
    "width",
];

/// `GET /api/v1/profile`: the merged profile as folded, SVG, pprof or JSON.
pub(crate) async fn profile(
    State(state): State<AppState>,
    query: RawParams,
) -> Result<Response, ApiError> {
    let p = Params::new(query, PROFILE_PARAMS)?;
    let (from, to) = p.range("from", "to", DEFAULT_FROM, "now")?;
    let filter = p.filter()?;
    let format = p.choice("format", ProfileFormat::Folded)?;
    let include_idle = p.flag("include_idle")?;
    let view = View::from_params(&p)?;
    let options = folded_options(&p, view.default_root())?;
    let layout = Layout::from_params(&p, Orientation::Flame)?;
    let query = ProfileQuery {
        from_unix_ns: from,
        to_unix_ns: to,
        filter,
    };
    blocking(&state, move |backend| {
        let profile = view.apply(load_profile(backend, &query, include_idle)?);
        Ok(match format {
            ProfileFormat::Folded => {
                let mut out = Vec::new();
                folded::write(&profile, options, &mut out)
                    .map_err(|e| ApiError::Internal(format!("writing folded stacks: {e}")))?;
                with_type(TEXT, out)
            }
            ProfileFormat::Svg => {
                let mut title = if query.filter.is_all() {
                    "Ember CPU profile".to_owned()
                } else {
                    format!("Ember CPU profile: {}", query.filter)
                };
                title.push_str(&view.describe());
                if profile.is_empty() {
                    return Ok(with_type(SVG, empty_svg(&title)));
                }
                let subtitle = format!(
                    "{} to {} (unix s), {} samples",
                    seconds(from),
                    seconds(to),
                    profile.total()
                );
                let svg = layout.apply(
                    SvgOptions::titled(title)
                        .with_subtitle(subtitle)
                        .with_folded(options),
                );
                let mut out = Vec::new();
                render::flamegraph_svg(&profile, &svg, &mut out).map_err(|e| render_error(&e))?;
                with_type(SVG, out)
            }
            ProfileFormat::Pprof => {
                let mut out = Vec::new();
                pprof::encode(&profile, &mut out)
                    .map_err(|e| ApiError::Internal(format!("encoding pprof: {e}")))?;
                let disposition = format!(
                    "attachment; filename=\"ember-{}-{}.pb.gz\"",
                    seconds(from),
                    seconds(to)
                );
                let disposition = HeaderValue::from_str(&disposition)
                    .map_err(|e| ApiError::Internal(format!("content disposition: {e}")))?;
                (
                    [
                        (
                            header::CONTENT_TYPE,
                            HeaderValue::from_static("application/octet-stream"),
                        ),
                        (header::CONTENT_DISPOSITION, disposition),
                    ],
                    out,
                )
                    .into_response()
            }
            ProfileFormat::Json => Json(profile_json(&profile, from, to)).into_response(),
        })
    })
    .await
}

/// The profile as JSON: frames once, stacks as frame ids (root first), biggest first.
fn profile_json(profile: &Profile, from: u64, to: u64) -> Value {
    let frames: Vec<Value> = profile
        .frames()
        .iter()
        .map(|f| {
            json!({
                "name": &*f.name,
                "folded_name": f.folded_name().to_string(),
                "kind": match f.kind { FrameKind::User => "user", FrameKind::Kernel => "kernel" },
                "inlined": f.inlined,
                "module": f.module.as_deref(),
                "file": f.file.as_deref(),
                "line": f.line,
            })
        })
        .collect();
    let mut stacks: Vec<_> = profile.stacks().collect();
    stacks.sort_by(|a, b| {
        b.count
            .cmp(&a.count)
            .then_with(|| a.frames.cmp(b.frames))
            .then_with(|| a.labels.cmp(b.labels))
    });
    let stacks: Vec<Value> = stacks
        .into_iter()
        .map(|s| {
            let labels: serde_json::Map<String, Value> = s
                .labels
                .iter()
                .map(|(k, v)| (k.to_owned(), Value::from(v)))
                .collect();
            json!({ "labels": labels, "frames": s.frames, "count": s.count })
        })
        .collect();
    json!({
        "from_unix_ns": from,
        "to_unix_ns": to,
        "meta": {
            "start_unix_ns": profile.meta.start_unix_ns,
            "duration_ns": profile.meta.duration_ns,
            "frequency_hz": profile.meta.frequency_hz,
        },
        "total_samples": profile.total(),
        "frames": frames,
        "stacks": stacks,
    })
}

// ---------------------------------------------------------------------------------------

/// `GET /api/v1/labels`: label names and values with sample counts.
pub(crate) async fn labels(
    State(state): State<AppState>,
    query: RawParams,
) -> Result<Response, ApiError> {
    let p = Params::new(query, &["from", "to"])?;
    let (from, to) = p.range("from", "to", DEFAULT_FROM, "now")?;
    let labels = blocking(&state, move |b| Ok(b.label_values(from, to)?)).await?;
    Ok(Json(json!({ "from_unix_ns": from, "to_unix_ns": to, "labels": labels })).into_response())
}

// ---------------------------------------------------------------------------------------

const TOP_PARAMS: &[&str] = &["from", "to", "filter", "limit", "sort", "include_idle"];

/// `GET /api/v1/top`: the most expensive functions, by self or total samples.
pub(crate) async fn top(
    State(state): State<AppState>,
    query: RawParams,
) -> Result<Response, ApiError> {
    let p = Params::new(query, TOP_PARAMS)?;
    let (from, to) = p.range("from", "to", DEFAULT_FROM, "now")?;
    let query = ProfileQuery {
        from_unix_ns: from,
        to_unix_ns: to,
        filter: p.filter()?,
    };
    let limit = p.limit(50)?;
    let sort = p.choice("sort", TopSort::SelfSamples)?;
    let include_idle = p.flag("include_idle")?;
    let body = blocking(&state, move |backend| {
        let profile = load_profile(backend, &query, include_idle)?;
        let mut stats = analysis::top_functions(&profile);
        if sort == TopSort::Total {
            stats.sort_by(|a, b| {
                b.total_samples
                    .cmp(&a.total_samples)
                    .then(b.self_samples.cmp(&a.self_samples))
                    .then_with(|| a.name.cmp(&b.name))
            });
        }
        stats.truncate(limit);
        let rows: Vec<Value> = stats
            .iter()
            .map(|s| {
                json!({
                    "name": s.name,
                    "self": s.self_samples,
                    "total": s.total_samples,
                    "self_share": s.self_share,
                    "total_share": s.total_share,
                })
            })
            .collect();
        Ok(json!({
            "from_unix_ns": from,
            "to_unix_ns": to,
            "total_samples": profile.total(),
            "sort": if sort == TopSort::Total { "total" } else { "self" },
            "functions": rows,
        }))
    })
    .await?;
    Ok(Json(body).into_response())
}

// ---------------------------------------------------------------------------------------

/// `GET /api/v1/timeline`: samples per stored window.
pub(crate) async fn timeline(
    State(state): State<AppState>,
    query: RawParams,
) -> Result<Response, ApiError> {
    let p = Params::new(query, &["from", "to", "filter"])?;
    let (from, to) = p.range("from", "to", DEFAULT_FROM, "now")?;
    let query = ProfileQuery {
        from_unix_ns: from,
        to_unix_ns: to,
        filter: p.filter()?,
    };
    let points = blocking(&state, move |b| Ok(b.timeline(&query)?)).await?;
    let points: Vec<Value> = points
        .iter()
        .map(|pt| {
            json!({
                "start_unix_ns": pt.start_unix_ns,
                "end_unix_ns": pt.end_unix_ns,
                "samples": pt.samples,
            })
        })
        .collect();
    Ok(Json(json!({ "from_unix_ns": from, "to_unix_ns": to, "points": points })).into_response())
}

// ---------------------------------------------------------------------------------------

const DIFF_PARAMS: &[&str] = &[
    "base_from",
    "base_to",
    "from",
    "to",
    "filter",
    "format",
    "include_idle",
    "root",
    "no_kernel",
    "limit",
    "orientation",
    "width",
];

/// `GET /api/v1/diff`: what changed from the base range to the new one, normalized by
/// share of samples.
pub(crate) async fn diff(
    State(state): State<AppState>,
    query: RawParams,
) -> Result<Response, ApiError> {
    let p = Params::new(query, DIFF_PARAMS)?;
    let (from, to) = p.range("from", "to", DEFAULT_FROM, "now")?;
    // By default the base is the range of the same length just before the new one.
    let base_to = match p.get("base_to") {
        Some(_) => p.time("base_to", "")?,
        None => from,
    };
    let base_from = match p.get("base_from") {
        Some(_) => p.time("base_from", "")?,
        None => base_to.saturating_sub(to - from),
    };
    if base_from >= base_to {
        return Err(ApiError::param(
            "base_from",
            format!("`base_from` must be before `base_to` ({base_from} ns >= {base_to} ns)"),
        ));
    }
    let filter = p.filter()?;
    let format = p.choice("format", DiffFormat::Folded)?;
    let include_idle = p.flag("include_idle")?;
    let options = folded_options(&p, RootFrame::Comm)?;
    let layout = Layout::from_params(&p, Orientation::Flame)?;
    let limit = p.limit(50)?;
    let base_query = ProfileQuery {
        from_unix_ns: base_from,
        to_unix_ns: base_to,
        filter: filter.clone(),
    };
    let new_query = ProfileQuery {
        from_unix_ns: from,
        to_unix_ns: to,
        filter,
    };
    blocking(&state, move |backend| {
        let base = load_profile(backend, &base_query, include_idle)?;
        let new = load_profile(backend, &new_query, include_idle)?;
        Ok(match format {
            DiffFormat::Folded => {
                let lines = analysis::diff_folded(&base, &new, options);
                with_type(TEXT, analysis::diff_folded_text(&lines))
            }
            DiffFormat::Svg => {
                let title = "Ember differential flame graph";
                if new.is_empty() {
                    return Ok(with_type(SVG, empty_svg(title)));
                }
                let lines = analysis::diff_folded(&base, &new, options);
                let text: Vec<String> = lines
                    .iter()
                    .map(|l| format!("{} {} {}", l.stack, l.base, l.new))
                    .collect();
                let svg = layout.apply(SvgOptions::titled(title).with_subtitle(format!(
                    "new {}..{} ({} samples) vs base {}..{} ({} samples, scaled to the new total); \
                     red grew, blue shrank",
                    seconds(from),
                    seconds(to),
                    new.total(),
                    seconds(base_from),
                    seconds(base_to),
                    base.total()
                )));
                let mut out = Vec::new();
                render::differential_svg(text.iter().map(String::as_str), &svg, &mut out)
                    .map_err(|e| render_error(&e))?;
                with_type(SVG, out)
            }
            DiffFormat::Json => {
                let mut rows = analysis::diff_functions(&base, &new);
                rows.truncate(limit);
                let rows: Vec<Value> = rows
                    .iter()
                    .map(|d| {
                        json!({
                            "name": d.name,
                            "base_self_share": d.base_self_share,
                            "self_share": d.new_self_share,
                            "self_delta": d.self_delta(),
                            "base_total_share": d.base_total_share,
                            "total_share": d.new_total_share,
                            "total_delta": d.total_delta(),
                        })
                    })
                    .collect();
                Json(json!({
                    "base": { "from_unix_ns": base_from, "to_unix_ns": base_to, "total_samples": base.total() },
                    "new": { "from_unix_ns": from, "to_unix_ns": to, "total_samples": new.total() },
                    "functions": rows,
                }))
                .into_response()
            }
        })
    })
    .await
}

// ---------------------------------------------------------------------------------------

/// `GET /healthz`: `ok`, or a 503 saying why the backend is degraded.
pub(crate) async fn healthz(State(state): State<AppState>) -> Response {
    match state.backend.health() {
        super::Health::Ok => with_type(TEXT, "ok"),
        super::Health::Degraded(reason) => (
            StatusCode::SERVICE_UNAVAILABLE,
            with_type(TEXT, format!("degraded: {reason}")),
        )
            .into_response(),
    }
}

/// `GET /metrics`: the backend's metrics, then the API's own.
pub(crate) async fn metrics(State(state): State<AppState>) -> Result<Response, ApiError> {
    let mut text = blocking(&state, |b| Ok(b.metrics())).await?;
    if !text.is_empty() && !text.ends_with('\n') {
        text.push('\n');
    }
    text.push_str(&state.metrics.render());
    Ok(with_type(PROMETHEUS, text))
}

/// Any other path: a JSON 404.
pub(crate) async fn not_found(uri: Uri) -> Response {
    not_found_response(uri.path())
}

/// The JSON 404 for `path`.
pub(crate) fn not_found_response(path: &str) -> Response {
    let body = json!({ "error": format!("no such endpoint `{path}`") });
    (StatusCode::NOT_FOUND, Json(body)).into_response()
}
