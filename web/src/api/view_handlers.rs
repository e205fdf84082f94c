//! The endpoints the web UI draws from (all JSON, all additive to the export endpoints):
//!
//! - `GET /api/v1/flame`: the call tree for the page's flame graph ([`views::flame_tree`]);
//!   with `base_from`/`base_to`/`base_filter` it is a comparison of two independent
//!   ranges and filters, with the functions that grew and shrank;
//! - `GET /api/v1/cpu`: CPU per stored window in cores, the idle task left out; with
//!   `type=off-cpu`, the time off CPU per window, in threads waiting on average;
//! - `GET /api/v1/explore`: each label's values with their CPU share, counted under the
//!   other labels' filters ([`views::explore`]);
//! - `GET /api/v1/types`: the profile types the store holds (`cpu`, and `off-cpu` once
//!   an agent with `--off-cpu` wrote a window).
//!
//! Every answer says its `type` and its `unit` (`samples`, or `microseconds` off CPU).

use axum::Json;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use profiler_model::{LabelFilter, Profile};
use serde_json::{Value, json};

use super::backend::ProfileQuery;
use super::error::ApiError;
use super::flame::WIDTH_RANGE;
use super::handlers::{AppState, RawParams, View, blocking, heavy, load_profile};
use super::params::{DEFAULT_FROM, Params, ProfileType};
use super::views::{self, FilterParts};

/// A filter parameter, with its matchers kept for the views that rework it.
fn filter_parts(p: &Params, name: &str) -> Result<(LabelFilter, FilterParts), ApiError> {
    FilterParts::parse(p.get(name).unwrap_or("")).map_err(|e| ApiError::param(name, e.to_string()))
}

/// The frequency of `a`, else of `b` (0 when neither knows it).
fn frequency(a: &Profile, b: Option<&Profile>) -> u32 {
    match (a.meta.frequency_hz, b) {
        (0, Some(b)) => b.meta.frequency_hz,
        (f, _) => f,
    }
}

/// `width`: the graph's width in pixels; frames narrower than one are left out.
fn width(p: &Params) -> Result<u32, ApiError> {
    let Some(v) = p.get("width") else {
        return Ok(1200);
    };
    let n: u32 = v
        .parse()
        .map_err(|_| ApiError::param("width", format!("`{v}` is not a whole number of pixels")))?;
    let (lo, hi) = WIDTH_RANGE;
    if !(lo..=hi).contains(&(n as usize)) {
        return Err(ApiError::param(
            "width",
            format!("{n} is out of range ({lo} to {hi} pixels)"),
        ));
    }
    Ok(n)
}

const FLAME_PARAMS: &[&str] = &[
    "from",
    "to",
    "filter",
    "type",
    "focus",
    "callers",
    "width",
    "include_idle",
    "base_from",
    "base_to",
    "base_filter",
    "limit",
];

/// `GET /api/v1/flame`: the call tree of a range and filter, as JSON for the UI; a
/// comparison when any `base_*` parameter is given (the base range defaults to the range
/// of the same length just before, the base filter to `filter`).
pub(crate) async fn flame(
    State(state): State<AppState>,
    query: RawParams,
) -> Result<Response, ApiError> {
    let p = Params::new(query, FLAME_PARAMS)?;
    let kind = p.profile_type()?;
    let (from, to) = p.range("from", "to", DEFAULT_FROM, "now")?;
    let (filter, _) = filter_parts(&p, "filter")?;
    let view = View::from_params(&p)?;
    let include_idle = p.flag("include_idle")?;
    let min_fraction = 1.0 / f64::from(width(&p)?);
    let limit = p.limit(20)?;
    let compare = ["base_from", "base_to", "base_filter"]
        .iter()
        .any(|n| p.get(n).is_some());
    let base_query = if compare {
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
                "the base range is empty: `base_from` must be before `base_to`",
            ));
        }
        let base_filter = match p.get("base_filter") {
            Some(_) => filter_parts(&p, "base_filter")?.0,
            None => filter.clone(),
        };
        Some(ProfileQuery {
            kind: kind.kind(),
            from_unix_ns: base_from,
            to_unix_ns: base_to,
            filter: base_filter,
        })
    } else {
        None
    };
    let query = ProfileQuery {
        kind: kind.kind(),
        from_unix_ns: from,
        to_unix_ns: to,
        filter,
    };
    let body = heavy(&state, move |backend, budget| {
        let new = view.apply(load_profile(backend, &query, include_idle, budget)?);
        let base = match &base_query {
            Some(q) => Some(view.apply(load_profile(backend, q, include_idle, budget)?)),
            None => None,
        };
        budget.check_time()?;
        let mut body = views::flame_tree(&new, base.as_ref(), min_fraction);
        body["type"] = Value::from(kind.name());
        body["unit"] = Value::from(kind.unit());
        body["frequency_hz"] = Value::from(frequency(&new, base.as_ref()));
        body["from_unix_ns"] = Value::from(from);
        body["to_unix_ns"] = Value::from(to);
        body["filter"] = Value::from(query.filter.to_string());
        body["total_samples"] = Value::from(new.total());
        if let (Some(b), Some(q)) = (&base, &base_query) {
            let (grew, shrank) = views::changes(b, &new, limit);
            body["base"] = json!({
                "from_unix_ns": q.from_unix_ns,
                "to_unix_ns": q.to_unix_ns,
                "filter": q.filter.to_string(),
                "total_samples": b.total(),
            });
            body["grew"] = Value::Array(grew);
            body["shrank"] = Value::Array(shrank);
        }
        Ok(body)
    })
    .await?;
    Ok(Json(body).into_response())
}

/// `GET /api/v1/cpu`: per stored window, the samples and cores the filter's processes
/// used, the kernel's idle task left out (so the chart's total is the flame graph's).
pub(crate) async fn cpu(
    State(state): State<AppState>,
    query: RawParams,
) -> Result<Response, ApiError> {
    let p = Params::new(query, &["from", "to", "filter", "type"])?;
    let kind = p.profile_type()?;
    let (from, to) = p.range("from", "to", DEFAULT_FROM, "now")?;
    let (filter, parts) = filter_parts(&p, "filter")?;
    let body = heavy(&state, move |backend, budget| {
        let q = |filter: LabelFilter| ProfileQuery {
            kind: kind.kind(),
            from_unix_ns: from,
            to_unix_ns: to,
            filter,
        };
        let points = backend.timeline(&q(filter))?;
        budget.check_time()?;
        let idle: std::collections::HashMap<u64, u64> = match parts.idle() {
            Some(f) => backend
                .timeline(&q(f))?
                .into_iter()
                .map(|pt| (pt.start_unix_ns, pt.samples))
                .collect(),
            None => std::collections::HashMap::new(),
        };
        budget.check_time()?;
        // The frequency, from the newest window alone (one small read).
        let frequency_hz = match points.last() {
            Some(last) => {
                backend
                    .profile(&ProfileQuery {
                        kind: kind.kind(),
                        from_unix_ns: last.start_unix_ns,
                        to_unix_ns: last.end_unix_ns,
                        filter: LabelFilter::all(),
                    })?
                    .meta
                    .frequency_hz
            }
            None => 0,
        };
        let mut total = 0;
        let rows: Vec<Value> = points
            .iter()
            .map(|pt| {
                let idle = idle.get(&pt.start_unix_ns).copied().unwrap_or(0);
                let samples = pt.samples.saturating_sub(idle);
                total += samples;
                #[expect(
                    clippy::cast_precision_loss,
                    reason = "cores are shown to three digits"
                )]
                let secs = pt.end_unix_ns.saturating_sub(pt.start_unix_ns) as f64 / 1e9;
                #[expect(
                    clippy::cast_precision_loss,
                    reason = "cores are shown to three digits"
                )]
                let cores = (kind == ProfileType::Cpu && frequency_hz > 0 && secs > 0.0)
                    .then(|| samples as f64 / f64::from(frequency_hz) / secs);
                // Off CPU: microseconds waited per second, i.e. threads waiting on average.
                #[expect(
                    clippy::cast_precision_loss,
                    reason = "threads are shown to three digits"
                )]
                let waiting = (kind == ProfileType::OffCpu && secs > 0.0)
                    .then(|| samples as f64 / 1e6 / secs);
                let mut row = json!({
                    "start_unix_ns": pt.start_unix_ns,
                    "end_unix_ns": pt.end_unix_ns,
                    "samples": samples,
                    "idle_samples": idle,
                    "cores": cores,
                });
                if kind == ProfileType::OffCpu {
                    row["threads_waiting"] = Value::from(waiting);
                }
                row
            })
            .collect();
        Ok(json!({
            "type": kind.name(),
            "unit": kind.unit(),
            "from_unix_ns": from,
            "to_unix_ns": to,
            "frequency_hz": frequency_hz,
            "total_samples": total,
            "points": rows,
        }))
    })
    .await?;
    Ok(Json(body).into_response())
}

/// `GET /api/v1/explore`: every label's values with samples and share, each counted
/// under the filter's matchers on the other labels; `limit` values per label.
pub(crate) async fn explore(
    State(state): State<AppState>,
    query: RawParams,
) -> Result<Response, ApiError> {
    let p = Params::new(query, &["from", "to", "filter", "type", "limit"])?;
    let kind = p.profile_type()?;
    let (from, to) = p.range("from", "to", DEFAULT_FROM, "now")?;
    let (filter, parts) = filter_parts(&p, "filter")?;
    let limit = p.limit(200)?;
    let body = heavy(&state, move |backend, budget| {
        let all = ProfileQuery {
            kind: kind.kind(),
            from_unix_ns: from,
            to_unix_ns: to,
            filter: LabelFilter::all(),
        };
        let profile = load_profile(backend, &all, false, budget)?;
        let total: u64 = profile
            .stacks()
            .filter(|s| filter.matches(s.labels))
            .map(|s| s.count)
            .sum();
        Ok(json!({
            "type": kind.name(),
            "unit": kind.unit(),
            "from_unix_ns": from,
            "to_unix_ns": to,
            "filter": filter.to_string(),
            "frequency_hz": profile.meta.frequency_hz,
            "total_samples": total,
            "labels": views::explore(&profile, &parts, limit),
        }))
    })
    .await?;
    Ok(Json(body).into_response())
}

/// `GET /api/v1/types`: the profile types the store holds, for the UI's selector: CPU
/// always, off-CPU once a window of it was written.
pub(crate) async fn types(State(state): State<AppState>) -> Result<Response, ApiError> {
    let kinds = blocking(&state, |b| Ok(b.kinds()?)).await?;
    let types: Vec<Value> = kinds
        .into_iter()
        .map(ProfileType::of)
        .map(|t| {
            json!({
                "name": t.name(),
                "title": t.title(),
                "unit": t.rate_unit(),
                "count_unit": t.unit(),
            })
        })
        .collect();
    Ok(Json(json!({ "types": types })).into_response())
}
