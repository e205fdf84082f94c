//! The API's own Prometheus metrics: requests by endpoint and status, and request latency
//! as a histogram. Recorded by a middleware around every route.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::Response;

use crate::prometheus::{Kind, Text};

/// Upper bounds of the latency histogram buckets, seconds.
const BUCKETS_S: [f64; 11] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
];

#[derive(Debug, Default)]
struct Histogram {
    /// Per bucket, not cumulative; the last slot is `+Inf`.
    buckets: [u64; BUCKETS_S.len() + 1],
    sum_s: f64,
}

#[derive(Debug, Default)]
struct Inner {
    requests: BTreeMap<(String, u16), u64>,
    latency: BTreeMap<String, Histogram>,
}

/// Request counters and latency histograms, shared by all requests.
#[derive(Debug, Default, Clone)]
pub(crate) struct ApiMetrics(Arc<Mutex<Inner>>);

impl ApiMetrics {
    fn record(&self, endpoint: &str, status: u16, seconds: f64) {
        // A panic while holding the lock leaves only counters behind; keep counting.
        let mut inner = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        *inner
            .requests
            .entry((endpoint.to_owned(), status))
            .or_insert(0) += 1;
        let h = inner.latency.entry(endpoint.to_owned()).or_default();
        let slot = BUCKETS_S
            .iter()
            .position(|&le| seconds <= le)
            .unwrap_or(BUCKETS_S.len());
        h.buckets[slot] += 1;
        h.sum_s += seconds;
    }

    /// The metrics in Prometheus text format.
    pub(crate) fn render(&self) -> String {
        let inner = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        let mut text = Text::new();
        let mut requests = text.family(
            "ember_api_requests_total",
            Kind::Counter,
            "HTTP requests answered, by endpoint and status.",
        );
        for ((endpoint, status), n) in &inner.requests {
            requests.sample(
                &[("endpoint", endpoint), ("status", &status.to_string())],
                *n,
            );
        }
        let mut latency = text.family(
            "ember_api_request_duration_seconds",
            Kind::Histogram,
            "Time to answer a request (query, render and encode), by endpoint.",
        );
        for (endpoint, h) in &inner.latency {
            latency.histogram(&[("endpoint", endpoint)], &BUCKETS_S, &h.buckets, h.sum_s);
        }
        text.finish()
    }
}

/// Middleware: times the request and counts it under its route (`unmatched` for 404s, so
/// random paths cannot grow the label set).
pub(crate) async fn track(State(metrics): State<ApiMetrics>, req: Request, next: Next) -> Response {
    let endpoint = req
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |p| p.as_str().to_owned());
    let start = Instant::now();
    let response = next.run(req).await;
    metrics.record(
        &endpoint,
        response.status().as_u16(),
        start.elapsed().as_secs_f64(),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_buckets_are_cumulative() {
        let m = ApiMetrics::default();
        m.record("/a", 200, 0.0005);
        m.record("/a", 200, 0.03);
        m.record("/a", 400, 10.0);
        let text = m.render();
        assert!(text.contains("ember_api_requests_total{endpoint=\"/a\",status=\"200\"} 2\n"));
        assert!(text.contains("ember_api_requests_total{endpoint=\"/a\",status=\"400\"} 1\n"));
        assert!(text.contains(
            "ember_api_request_duration_seconds_bucket{endpoint=\"/a\",le=\"0.001\"} 1\n"
        ));
        assert!(text.contains(
            "ember_api_request_duration_seconds_bucket{endpoint=\"/a\",le=\"0.05\"} 2\n"
        ));
        assert!(
            text.contains(
                "ember_api_request_duration_seconds_bucket{endpoint=\"/a\",le=\"2.5\"} 2\n"
            )
        );
        assert!(text.contains(
            "ember_api_request_duration_seconds_bucket{endpoint=\"/a\",le=\"+Inf\"} 3\n"
        ));
        assert!(text.contains("ember_api_request_duration_seconds_count{endpoint=\"/a\"} 3\n"));
    }
}
