//! One handler per endpoint (the UI's own are in [`super::view_handlers`]). Each parses its
//! parameters first (400 on any problem), then runs the backend query and the rendering on
//! a blocking thread: the heavy ones (profile, top, timeline, diff) within the budgets of
//! [`super::limits`], the light ones (labels, metrics) beside them.

use std::sync::Arc;

use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::{HeaderValue, Uri, header};
use axum::response::{IntoResponse, Response};
use profiler_model::time::TimeRange;
use profiler_model::{Format, LabelFilter, Profile, ProfileKind, analysis, folded};
use profiler_render::RenderOptions;
use serde_json::{Value, json};

use super::backend::{Backend, ProfileQuery};
use super::error::ApiError;
use super::flame::Layout;
use super::limits::{Budget, BudgetWriter, Limiter};
use super::metrics::ApiMetrics;
use super::params::{DEFAULT_FROM, Orientation, Params, ProfileType, RootFrame, TopGroup, TopSort};
use super::views;
use profiler_model::human;

/// What every handler shares.
#[derive(Clone)]
pub(crate) struct AppState {
    pub(crate) backend: Arc<dyn Backend>,
    pub(crate) metrics: ApiMetrics,
    pub(crate) limiter: Arc<Limiter>,
}

/// The query string, or why axum could not read it.
pub(super) type RawParams = Result<Query<Vec<(String, String)>>, QueryRejection>;

const TEXT: &str = "text/plain; charset=utf-8";
const PROMETHEUS: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Runs `f` with the backend on a blocking thread: backend calls may read the disk, and
/// rendering a large profile takes CPU time the async workers should not spend.
pub(super) async fn blocking<T: Send + 'static>(
    state: &AppState,
    f: impl FnOnce(&dyn Backend) -> Result<T, ApiError> + Send + 'static,
) -> Result<T, ApiError> {
    let backend = Arc::clone(&state.backend);
    tokio::task::spawn_blocking(move || f(&*backend))
        .await
        .map_err(|e| ApiError::Internal(format!("query task failed: {e}")))?
}

/// Runs a heavy query `f` on a blocking thread within a slot of the limiter and its
/// budget: 503 when no slot frees in time or the answer is not ready by the deadline (the
/// work then stops at its next check, and keeps its slot until it does).
pub(super) async fn heavy<T: Send + 'static>(
    state: &AppState,
    f: impl FnOnce(&dyn Backend, &Budget) -> Result<T, ApiError> + Send + 'static,
) -> Result<T, ApiError> {
    let slot = state.limiter.acquire().await?;
    let deadline = Limiter::deadline(&slot);
    let budget = slot.budget;
    let backend = Arc::clone(&state.backend);
    let task = tokio::task::spawn_blocking(move || {
        let _slot = slot;
        f(&*backend, &budget)
    });
    match tokio::time::timeout_at(deadline, task).await {
        Ok(joined) => joined.map_err(|e| ApiError::Internal(format!("query task failed: {e}")))?,
        Err(_elapsed) => Err(ApiError::OverTime {
            budget: budget.time,
        }),
    }
}

/// The formats `/api/v1/profile` answers in.
const PROFILE_FORMATS: &[Format] = &[Format::Folded, Format::Svg, Format::Pprof, Format::Json];
/// The formats `/api/v1/diff` answers in.
const DIFF_FORMATS: &[Format] = &[Format::Folded, Format::Svg, Format::Json];

pub(super) fn with_type(content_type: &'static str, body: impl IntoResponse) -> Response {
    ([(header::CONTENT_TYPE, content_type)], body).into_response()
}

fn folded_options(p: &Params, default_root: RootFrame) -> Result<folded::Options, ApiError> {
    Ok(folded::Options::default()
        .with_root(p.choice("root", default_root)?.into())
        .with_no_kernel(p.flag("no_kernel")?))
}

/// One function's view of a profile, from `focus=FUNC` or `callers=FUNC`.
#[derive(Clone, Debug)]
pub(super) enum View {
    /// The whole profile.
    All,
    /// Stacks through the function, re-rooted at it ([`analysis::focus`]).
    Focus(String),
    /// The function's callers, the function at the root ([`analysis::callers`]).
    Callers(String),
}

impl View {
    pub(super) fn from_params(p: &Params) -> Result<Self, ApiError> {
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

    pub(super) fn apply(&self, profile: Profile) -> Profile {
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

/// The backend's merged profile, without the idle task unless asked for, within the
/// budget's time and stacks.
pub(super) fn load_profile(
    backend: &dyn Backend,
    query: &ProfileQuery,
    include_idle: bool,
    budget: &Budget,
) -> Result<Profile, ApiError> {
    budget.check_time()?;
    let profile = backend.profile(query)?;
    budget.check_time()?;
    budget.check_stacks(profile.stacks().count())?;
    Ok(if include_idle {
        profile
    } else {
        profile.without_idle()
    })
}

/// What a profile's total is, for subtitles: CPU samples (and the CPU time they stand
/// for), or the time off CPU.
pub(super) fn amount(profile: &Profile) -> String {
    match profile.meta.kind {
        ProfileKind::Cpu => human::samples(profile.total(), profile.meta.frequency_hz),
        ProfileKind::OffCpu => format!(
            "{} µs ({}) off CPU",
            profile.total(),
            human::duration(profile.total().saturating_mul(1000))
        ),
    }
}

/// `profile` (or a diff) rendered by `render` into a response of `format`'s content type,
/// stopped by the budget's output size and deadline.
fn rendered(
    format: Format,
    budget: &Budget,
    render: impl FnOnce(&mut BudgetWriter) -> Result<(), profiler_render::RenderError>,
) -> Result<Response, ApiError> {
    let mut out = BudgetWriter::new(*budget);
    if let Err(e) = render(&mut out) {
        return Err(out
            .error()
            .unwrap_or_else(|| ApiError::Internal(format!("rendering {format}: {e}"))));
    }
    Ok(with_type(format.content_type(), out.out))
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
    "type",
];

/// `GET /api/v1/profile`: the merged profile as folded, SVG, pprof or JSON.
pub(crate) async fn profile(
    State(state): State<AppState>,
    query: RawParams,
) -> Result<Response, ApiError> {
    let p = Params::new(query, PROFILE_PARAMS)?;
    let kind = p.profile_type()?;
    let (from, to) = p.range("from", "to", DEFAULT_FROM, "now")?;
    let filter = p.filter()?;
    let format = p.format("format", PROFILE_FORMATS, Format::Folded)?;
    let include_idle = p.flag("include_idle")?;
    let view = View::from_params(&p)?;
    let options = folded_options(&p, view.default_root())?;
    let layout = Layout::from_params(&p, Orientation::Flame)?;
    let query = ProfileQuery {
        kind: kind.kind(),
        from_unix_ns: from,
        to_unix_ns: to,
        filter,
    };
    heavy(&state, move |backend, budget| {
        let profile = view.apply(load_profile(backend, &query, include_idle, budget)?);
        let what = match kind {
            ProfileType::Cpu => "Ember CPU profile",
            ProfileType::OffCpu => "Ember off-CPU profile",
        };
        let mut title = if query.filter.is_all() {
            what.to_owned()
        } else {
            format!("{what}: {}", query.filter)
        };
        title.push_str(&view.describe());
        let subtitle = format!("{}, {}", human::range(from, to), amount(&profile));
        // `no_kernel` (in `options`) drops kernel frames from every format, as `ember
        // export` does.
        let render = layout.apply(
            RenderOptions::titled(title)
                .with_subtitle(subtitle)
                .with_folded(options)
                .with_range(TimeRange::new(from, to)),
        );
        let mut response = rendered(format, budget, |out| {
            Ok(profiler_render::write(&profile, format, &render, out)?)
        })?;
        if format == Format::Pprof {
            let disposition = format!(
                "attachment; filename=\"ember-{}-{}.{}\"",
                human::file_stamp(from),
                human::duration(to - from).replace(' ', ""),
                format.file_extension()
            );
            let disposition = HeaderValue::from_str(&disposition)
                .map_err(|e| ApiError::Internal(format!("content disposition: {e}")))?;
            response
                .headers_mut()
                .insert(header::CONTENT_DISPOSITION, disposition);
        }
        Ok(response)
    })
    .await
}

// ---------------------------------------------------------------------------------------

/// `GET /api/v1/labels`: label names and values with sample counts.
pub(crate) async fn labels(
    State(state): State<AppState>,
    query: RawParams,
) -> Result<Response, ApiError> {
    let p = Params::new(query, &["from", "to", "type"])?;
    let kind = p.profile_type()?;
    let (from, to) = p.range("from", "to", DEFAULT_FROM, "now")?;
    let labels = blocking(&state, move |b| {
        Ok(b.label_values(kind.kind(), from, to)?)
    })
    .await?;
    Ok(Json(json!({
        "type": kind.name(),
        "unit": kind.unit(),
        "from_unix_ns": from,
        "to_unix_ns": to,
        "labels": labels,
    }))
    .into_response())
}

// ---------------------------------------------------------------------------------------

const TOP_PARAMS: &[&str] = &[
    "from",
    "to",
    "filter",
    "limit",
    "sort",
    "include_idle",
    "group",
    "type",
];

/// `GET /api/v1/top`: the most expensive functions, by self or total samples; with
/// `group=process` or `group=binary`, one row per function and process (or binary), each
/// row naming it.
pub(crate) async fn top(
    State(state): State<AppState>,
    query: RawParams,
) -> Result<Response, ApiError> {
    let p = Params::new(query, TOP_PARAMS)?;
    let kind = p.profile_type()?;
    let group = p.choice("group", TopGroup::Function)?;
    let (from, to) = p.range("from", "to", DEFAULT_FROM, "now")?;
    let query = ProfileQuery {
        kind: kind.kind(),
        from_unix_ns: from,
        to_unix_ns: to,
        filter: p.filter()?,
    };
    let limit = p.limit(50)?;
    let sort = p.choice("sort", TopSort::SelfSamples)?;
    let include_idle = p.flag("include_idle")?;
    let body = heavy(&state, move |backend, budget| {
        let profile = load_profile(backend, &query, include_idle, budget)?;
        if group != TopGroup::Function {
            let mut body = grouped_top(&profile, group, sort, limit, (from, to));
            body["type"] = Value::from(kind.name());
            body["unit"] = Value::from(kind.unit());
            return Ok(body);
        }
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
            "type": kind.name(),
            "unit": kind.unit(),
            "from_unix_ns": from,
            "to_unix_ns": to,
            "total_samples": profile.total(),
            "frequency_hz": profile.meta.frequency_hz,
            "sort": if sort == TopSort::Total { "total" } else { "self" },
            "functions": rows,
        }))
    })
    .await?;
    Ok(Json(body).into_response())
}

/// The answer of `/api/v1/top?group=process|binary`.
fn grouped_top(
    profile: &Profile,
    group: TopGroup,
    sort: TopSort,
    limit: usize,
    (from, to): (u64, u64),
) -> Value {
    let mut stats = views::top_grouped(profile, group);
    if sort == TopSort::Total {
        stats.sort_by(|a, b| {
            b.total_samples
                .cmp(&a.total_samples)
                .then(b.self_samples.cmp(&a.self_samples))
                .then_with(|| a.group.cmp(&b.group))
                .then_with(|| a.name.cmp(&b.name))
        });
    }
    stats.truncate(limit);
    let key = if group == TopGroup::Process {
        "process"
    } else {
        "binary"
    };
    let total = profile.total().max(1);
    #[expect(
        clippy::cast_precision_loss,
        reason = "a share needs no more than f64's 53 bits of precision"
    )]
    let share = |n: u64| n as f64 / total as f64;
    let rows: Vec<Value> = stats
        .iter()
        .map(|s| {
            json!({
                "name": s.name,
                key: s.group,
                "self": s.self_samples,
                "total": s.total_samples,
                "self_share": share(s.self_samples),
                "total_share": share(s.total_samples),
            })
        })
        .collect();
    json!({
        "from_unix_ns": from,
        "to_unix_ns": to,
        "total_samples": profile.total(),
        "frequency_hz": profile.meta.frequency_hz,
        "sort": if sort == TopSort::Total { "total" } else { "self" },
        "group": key,
        "functions": rows,
    })
}

// ---------------------------------------------------------------------------------------

/// `GET /api/v1/timeline`: samples per stored window.
pub(crate) async fn timeline(
    State(state): State<AppState>,
    query: RawParams,
) -> Result<Response, ApiError> {
    let p = Params::new(query, &["from", "to", "filter", "type"])?;
    let kind = p.profile_type()?;
    let (from, to) = p.range("from", "to", DEFAULT_FROM, "now")?;
    let query = ProfileQuery {
        kind: kind.kind(),
        from_unix_ns: from,
        to_unix_ns: to,
        filter: p.filter()?,
    };
    let points = heavy(&state, move |b, budget| {
        let points = b.timeline(&query)?;
        budget.check_time()?;
        Ok(points)
    })
    .await?;
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
    Ok(Json(json!({
        "type": kind.name(),
        "unit": kind.unit(),
        "from_unix_ns": from,
        "to_unix_ns": to,
        "points": points,
    }))
    .into_response())
}

// ---------------------------------------------------------------------------------------

const DIFF_PARAMS: &[&str] = &[
    "base_from",
    "base_to",
    "base_filter",
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
    "type",
];

/// `GET /api/v1/diff`: what changed from the base range to the new one, normalized by
/// share of samples. The base range has the new range's filter unless `base_filter` gives
/// its own (pod A against pod B).
pub(crate) async fn diff(
    State(state): State<AppState>,
    query: RawParams,
) -> Result<Response, ApiError> {
    let p = Params::new(query, DIFF_PARAMS)?;
    let kind = p.profile_type()?;
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
        // Blame what was given: a defaulted base range is empty only because `from` (or
        // `base_to`) leaves no room before it.
        return Err(match (p.get("base_from"), p.get("base_to")) {
            (Some(_), _) => ApiError::param(
                "base_from",
                format!("`base_from` must be before `base_to` ({base_from} ns >= {base_to} ns)"),
            ),
            (None, Some(_)) => ApiError::param(
                "base_to",
                format!(
                    "no room before `base_to` ({base_to} ns) for a base range as long as the \
                     new one: give `base_from` too"
                ),
            ),
            (None, None) => ApiError::param(
                "from",
                format!(
                    "no room before `from` ({from} ns) for a base range as long as the new one: \
                     give `base_from` and `base_to`, or a later `from`"
                ),
            ),
        });
    }
    let filter = p.filter()?;
    let base_filter = match p.get("base_filter") {
        Some(raw) => {
            LabelFilter::parse(raw).map_err(|e| ApiError::param("base_filter", e.to_string()))?
        }
        None => filter.clone(),
    };
    let format = p.format("format", DIFF_FORMATS, Format::Folded)?;
    let include_idle = p.flag("include_idle")?;
    let options = folded_options(&p, RootFrame::Comm)?;
    let layout = Layout::from_params(&p, Orientation::Flame)?;
    let limit = p.limit(50)?;
    let base_query = ProfileQuery {
        kind: kind.kind(),
        from_unix_ns: base_from,
        to_unix_ns: base_to,
        filter: base_filter,
    };
    let new_query = ProfileQuery {
        kind: kind.kind(),
        from_unix_ns: from,
        to_unix_ns: to,
        filter,
    };
    heavy(&state, move |backend, budget| {
        let base = load_profile(backend, &base_query, include_idle, budget)?;
        let new = load_profile(backend, &new_query, include_idle, budget)?;
        let render = layout
            .apply(
                RenderOptions::titled(match kind {
                    ProfileType::Cpu => "Ember differential flame graph",
                    ProfileType::OffCpu => "Ember differential off-CPU flame graph",
                })
                .with_subtitle(format!(
                    "new {} ({}) vs base {} ({}, scaled to the new total); red grew, blue \
                     shrank",
                    human::range(from, to),
                    amount(&new),
                    human::range(base_from, base_to),
                    amount(&base)
                )),
            )
            .with_folded(options)
            .with_range(TimeRange::new(from, to))
            .with_base_range(TimeRange::new(base_from, base_to))
            .with_limit(limit);
        rendered(format, budget, |out| {
            profiler_render::write_diff(&base, &new, format, &render, out)
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
            axum::http::StatusCode::SERVICE_UNAVAILABLE,
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
    let (running, waiting) = state.limiter.load();
    let mut load = crate::prometheus::Text::new();
    load.family(
        "ember_api_heavy_queries_running",
        crate::prometheus::Kind::Gauge,
        "Heavy queries (profile, top, timeline, diff, flame, cpu, explore) running now, \
         within their budgets.",
    )
    .sample(&[], running as u64);
    load.family(
        "ember_api_heavy_queries_waiting",
        crate::prometheus::Kind::Gauge,
        "Heavy queries waiting for a slot now.",
    )
    .sample(&[], waiting as u64);
    text.push_str(&load.finish());
    Ok(with_type(PROMETHEUS, text))
}

/// Any other path: a JSON 404.
pub(crate) async fn not_found(uri: Uri) -> Response {
    crate::not_found::response(uri.path())
}
