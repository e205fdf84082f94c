//! Every endpoint through `app()` + `oneshot` against the fake backend, plus one test over
//! a loopback socket.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use axum::http::StatusCode;
use profiler_model::pprof;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

use super::testutil::{FakeBackend, NS, T0, get, get_with, labels, range, send, window};
use super::{ApiConfig, Backend, Limits, Token, app, serve};

fn standard_app() -> axum::Router {
    app(FakeBackend::standard(), &ApiConfig::default())
}

#[tokio::test]
async fn a_degraded_backend_says_why_on_healthz() {
    let backend = FakeBackend::standard();
    *backend.health.lock().expect("lock") =
        super::Health::Degraded("3 windows not written: disk full".to_owned());
    let a = get(&app(backend, &ApiConfig::default()), "/healthz").await;
    assert_eq!(a.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(a.text(), "degraded: 3 windows not written: disk full");
}

#[tokio::test]
async fn healthz_and_index() {
    let app = standard_app();
    let a = get(&app, "/healthz").await;
    assert_eq!(a.status, StatusCode::OK);
    assert_eq!(a.text(), "ok");
    let a = get(&app, "/").await;
    assert_eq!(a.status, StatusCode::OK);
    assert!(
        a.content_type.starts_with("text/html"),
        "{}",
        a.content_type
    );
    assert!(a.text().contains("/api/v1/profile"));
    assert!(a.text().contains("/api/v1/diff"));
}

#[tokio::test]
async fn unknown_path_is_a_json_404() {
    let a = get(&standard_app(), "/api/v2/nothing").await;
    assert_eq!(a.status, StatusCode::NOT_FOUND);
    assert!(
        a.json()["error"]
            .as_str()
            .expect("error")
            .contains("/api/v2/nothing")
    );
}

#[tokio::test]
async fn profile_folded_leaves_idle_out_unless_asked() {
    let app = standard_app();
    let a = get(
        &app,
        &format!("/api/v1/profile?{}&format=folded", range(0, 10)),
    )
    .await;
    assert_eq!(a.status, StatusCode::OK);
    assert_eq!(a.content_type, "text/plain; charset=utf-8");
    assert_eq!(
        a.text(),
        "cat;main;read 10\nsplit;main;work;fn_a 60\nsplit;main;work;fn_b 30\n"
    );
    // folded is the default format.
    let a = get(
        &app,
        &format!("/api/v1/profile?{}&include_idle=true", range(0, 10)),
    )
    .await;
    assert_eq!(
        a.text(),
        "cat;main;read 10\nsplit;main;work;fn_a 60\nsplit;main;work;fn_b 30\nswapper;cpu_idle_[k] 100\n"
    );
}

#[tokio::test]
async fn profile_filter_merges_windows_and_root_options_apply() {
    let app = standard_app();
    let a = get(
        &app,
        &format!(
            "/api/v1/profile?{}&filter=comm%3Dsplit,pid%3D42&root=comm-pid",
            range(0, 20)
        ),
    )
    .await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.text());
    assert_eq!(
        a.text(),
        "split-42;main;work;fn_a 80\nsplit-42;main;work;fn_b 110\n"
    );
    let a = get(
        &app,
        &format!(
            "/api/v1/profile?{}&include_idle=1&no_kernel=true&root=none&filter=pid=0",
            range(0, 20)
        ),
    )
    .await;
    assert_eq!(a.text(), "[no frames] 150\n");
}

#[tokio::test]
async fn profile_relative_and_rfc3339_times_are_accepted() {
    let app = standard_app();
    // The fake's windows are in 2027; the default range (last 15 minutes) is empty.
    let a = get(&app, "/api/v1/profile").await;
    assert_eq!(a.status, StatusCode::OK);
    assert_eq!(a.text(), "");
    let a = get(&app, "/api/v1/profile?from=now-1h&to=now").await;
    assert_eq!(a.status, StatusCode::OK);
    // T0 = 2027-01-15T08:00:00Z
    let a = get(
        &app,
        "/api/v1/profile?from=2027-01-15T08:00:00Z&to=2027-01-15T09:00:10.5%2B01:00&filter=comm=cat",
    )
    .await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.text());
    assert_eq!(a.text(), "cat;main;read 10\n");
    let a = get(
        &app,
        &format!(
            "/api/v1/profile?from={}.5&to={}&filter=comm=cat",
            T0 - 1,
            T0 + 1
        ),
    )
    .await;
    assert_eq!(a.text(), "cat;main;read 10\n");
}

#[tokio::test]
async fn profile_svg_draws_the_frames() {
    let app = standard_app();
    let a = get(
        &app,
        &format!(
            "/api/v1/profile?{}&format=svg&filter=comm=split",
            range(0, 10)
        ),
    )
    .await;
    assert_eq!(a.status, StatusCode::OK);
    assert_eq!(a.content_type, "image/svg+xml");
    let svg = a.text();
    assert!(svg.starts_with("<?xml"));
    assert!(svg.contains("Ember CPU profile: comm=split"));
    assert!(svg.contains("fn_a (60 samples, 66.67%)"), "{svg}");
    assert!(svg.contains("fn_b (30 samples"));
    // An empty range still answers with an SVG.
    let a = get(
        &app,
        &format!("/api/v1/profile?{}&format=svg", range(100, 110)),
    )
    .await;
    assert_eq!(a.status, StatusCode::OK);
    assert!(a.text().contains("No samples"));
}

#[tokio::test]
async fn profile_pprof_decodes_to_the_same_totals() {
    let app = standard_app();
    let a = get(
        &app,
        &format!("/api/v1/profile?{}&format=pprof", range(0, 20)),
    )
    .await;
    assert_eq!(a.status, StatusCode::OK);
    assert_eq!(a.content_type, "application/octet-stream");
    let disposition = a.headers["content-disposition"].to_str().expect("ASCII");
    assert_eq!(
        disposition,
        // T0 is 2027-01-15T08:00:00Z; the name says when and how long, not unix seconds.
        "attachment; filename=\"ember-20270115T080000Z-20s.pb.gz\""
    );
    assert!(a.body.starts_with(&[0x1f, 0x8b]), "gzip");
    let back = pprof::decode(&a.body[..]).expect("pprof decodes");
    assert_eq!(back.total(), 200);
    let split: u64 = back
        .stacks()
        .filter(|s| s.labels.get("comm") == Some("split"))
        .map(|s| s.count)
        .sum();
    assert_eq!(split, 190);
}

#[tokio::test]
async fn no_kernel_drops_kernel_frames_from_pprof_and_json_too() {
    let app = standard_app();
    let r = range(0, 20);
    let a = get(
        &app,
        &format!("/api/v1/profile?{r}&format=pprof&include_idle=true&no_kernel=true"),
    )
    .await;
    assert_eq!(a.status, StatusCode::OK);
    let back = pprof::decode(&a.body[..]).expect("pprof decodes");
    assert!(
        back.frames()
            .iter()
            .all(|f| f.kind == profiler_model::FrameKind::User),
        "{:?}",
        back.frames()
    );
    // The idle task's kernel-only stacks keep their samples, with no frames.
    assert_eq!(back.total(), 350);
    let a = get(
        &app,
        &format!("/api/v1/profile?{r}&format=pprof&include_idle=true"),
    )
    .await;
    let with_kernel = pprof::decode(&a.body[..]).expect("pprof decodes");
    assert!(with_kernel.frames().iter().any(|f| &*f.name == "cpu_idle"));
    let a = get(
        &app,
        &format!("/api/v1/profile?{r}&format=json&include_idle=true&no_kernel=true"),
    )
    .await;
    let frames = a.json()["frames"].clone();
    let frames = frames.as_array().expect("frames");
    assert!(frames.iter().all(|f| f["kind"] == "user"), "{frames:?}");
}

#[tokio::test]
async fn profile_json_has_frames_and_stacks() {
    let app = standard_app();
    let a = get(
        &app,
        &format!("/api/v1/profile?{}&format=json", range(0, 10)),
    )
    .await;
    assert_eq!(a.status, StatusCode::OK);
    assert_eq!(a.content_type, "application/json");
    let v = a.json();
    assert_eq!(v["total_samples"], 100);
    let stacks = v["stacks"].as_array().expect("stacks");
    assert_eq!(stacks.len(), 3);
    assert_eq!(stacks[0]["count"], 60);
    assert_eq!(stacks[0]["labels"]["comm"], "split");
    let frames = v["frames"].as_array().expect("frames");
    let leaf = stacks[0]["frames"]
        .as_array()
        .expect("ids")
        .last()
        .expect("leaf")
        .as_u64()
        .expect("id");
    assert_eq!(
        frames[usize::try_from(leaf).expect("small")]["name"],
        "fn_a"
    );
}

#[tokio::test]
async fn labels_count_samples_per_value() {
    let a = get(&standard_app(), &format!("/api/v1/labels?{}", range(0, 10))).await;
    assert_eq!(a.status, StatusCode::OK);
    let v = a.json();
    assert_eq!(v["labels"]["comm"]["split"], 90);
    assert_eq!(v["labels"]["comm"]["swapper"], 100);
    assert_eq!(v["labels"]["pid"]["7"], 10);
}

#[tokio::test]
async fn top_sorts_by_self_or_total_and_limits() {
    let app = standard_app();
    let a = get(&app, &format!("/api/v1/top?{}", range(0, 10))).await;
    assert_eq!(a.status, StatusCode::OK);
    let v = a.json();
    assert_eq!(v["total_samples"], 100);
    let rows = v["functions"].as_array().expect("rows");
    assert_eq!(rows[0]["name"], "fn_a");
    assert_eq!(rows[0]["self"], 60);
    assert_eq!(rows[0]["total"], 60);
    assert!((rows[0]["self_share"].as_f64().expect("share") - 0.6).abs() < 1e-9);
    assert_eq!(rows.len(), 5); // fn_a, fn_b, read, main, work

    let a = get(
        &app,
        &format!("/api/v1/top?{}&sort=total&limit=2", range(0, 10)),
    )
    .await;
    let v = a.json();
    let rows = v["functions"].as_array().expect("rows");
    assert_eq!(rows.len(), 2);
    assert_eq!(rows[0]["name"], "main");
    assert_eq!(rows[0]["total"], 100);
    assert!((rows[0]["total_share"].as_f64().expect("share") - 1.0).abs() < 1e-9);
    assert_eq!(rows[1]["name"], "work");
    assert_eq!(rows[1]["total"], 90);

    let a = get(
        &app,
        &format!("/api/v1/top?{}&include_idle=true&limit=1", range(0, 10)),
    )
    .await;
    assert_eq!(a.json()["functions"][0]["name"], "cpu_idle_[k]");
}

#[tokio::test]
async fn timeline_gives_one_point_per_window() {
    let a = get(
        &standard_app(),
        &format!("/api/v1/timeline?{}&filter=comm=split", range(0, 20)),
    )
    .await;
    assert_eq!(a.status, StatusCode::OK);
    let v = a.json();
    let points = v["points"].as_array().expect("points");
    assert_eq!(points.len(), 2);
    assert_eq!(points[0]["start_unix_ns"], T0 * NS);
    assert_eq!(points[0]["end_unix_ns"], (T0 + 10) * NS);
    assert_eq!(points[0]["samples"], 90);
    assert_eq!(points[1]["samples"], 100);
}

fn diff_uri(format: &str) -> String {
    format!(
        "/api/v1/diff?base_from={}&base_to={}&{}&filter=comm=split&format={format}",
        T0,
        T0 + 10,
        range(10, 20)
    )
}

#[tokio::test]
async fn diff_folded_is_three_columns_with_the_base_scaled() {
    let app = standard_app();
    let a = get(&app, &diff_uri("folded")).await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.text());
    assert_eq!(a.content_type, "text/plain; charset=utf-8");
    // Base total 90 scaled to 100: 60 → 66.7 → 67, 30 → 33.3 → 33.
    assert_eq!(
        a.text(),
        "split;main;work;fn_a 67 20\nsplit;main;work;fn_b 33 80\n"
    );
    // Without base_*, the base is the equally long range just before.
    let a = get(
        &app,
        &format!("/api/v1/diff?{}&filter=comm=split", range(10, 20)),
    )
    .await;
    assert_eq!(
        a.text(),
        "split;main;work;fn_a 67 20\nsplit;main;work;fn_b 33 80\n"
    );
}

#[tokio::test]
async fn diff_json_gives_share_deltas() {
    let a = get(&standard_app(), &diff_uri("json")).await;
    assert_eq!(a.status, StatusCode::OK);
    let v = a.json();
    assert_eq!(v["base"]["total_samples"], 90);
    assert_eq!(v["new"]["total_samples"], 100);
    let rows = v["functions"].as_array().expect("rows");
    let row = |name: &str| {
        rows.iter()
            .find(|r| r["name"] == name)
            .unwrap_or_else(|| panic!("{name} missing"))
    };
    let b = row("fn_b");
    assert!((b["self_delta"].as_f64().expect("f64") - (0.8 - 1.0 / 3.0)).abs() < 1e-9);
    assert!((b["base_self_share"].as_f64().expect("f64") - 1.0 / 3.0).abs() < 1e-9);
    assert!((row("fn_a")["self_delta"].as_f64().expect("f64") + (2.0 / 3.0 - 0.2)).abs() < 1e-9);
    assert!(row("main")["total_delta"].as_f64().expect("f64").abs() < 1e-9);
    // Largest changes first.
    assert!(rows[0]["name"] == "fn_a" || rows[0]["name"] == "fn_b");
}

#[tokio::test]
async fn diff_svg_is_differential() {
    let a = get(&standard_app(), &diff_uri("svg")).await;
    assert_eq!(a.status, StatusCode::OK);
    assert_eq!(a.content_type, "image/svg+xml");
    let svg = a.text();
    assert!(svg.contains("Ember differential flame graph"));
    // Width is the new profile; the second percentage is the change (80 − 33 of 100).
    assert!(svg.contains("fn_b (80 samples, 80.00%; +47.00%)"), "{svg}");
    assert!(svg.contains("fn_a (20 samples, 20.00%; -47.00%)"));
}

#[tokio::test]
async fn bad_parameters_answer_400_naming_the_parameter() {
    let app = standard_app();
    let r = range(0, 10);
    let cases: Vec<(String, &str)> = vec![
        (
            format!("/api/v1/profile?from=abc&to={}", T0),
            "invalid `from`",
        ),
        (
            format!("/api/v1/profile?from={}&to=now-5x", T0),
            "invalid `to`",
        ),
        (
            format!("/api/v1/profile?from={}&to=2026-13-01T00:00:00Z", T0),
            "invalid `to`",
        ),
        (
            format!("/api/v1/profile?from={}&to={}", T0 + 10, T0),
            "invalid `from`",
        ),
        (
            format!("/api/v1/profile?from={T0}&to={T0}"),
            "invalid `from`",
        ),
        (
            format!("/api/v1/profile?{r}&filter=pid42"),
            "invalid `filter`",
        ),
        (
            format!("/api/v1/profile?{r}&filter=comm=a,,pid=1"),
            "invalid `filter`",
        ),
        (
            format!("/api/v1/profile?{r}&format=xml"),
            "invalid `format`",
        ),
        (
            format!("/api/v1/profile?{r}&include_idle=maybe"),
            "invalid `include_idle`",
        ),
        (format!("/api/v1/profile?{r}&root=pid"), "invalid `root`"),
        (
            format!("/api/v1/profile?{r}&no_kernel=2"),
            "invalid `no_kernel`",
        ),
        (
            format!("/api/v1/profile?{r}&from=1"),
            "invalid `from`: given more than once",
        ),
        (
            format!("/api/v1/profile?{r}&form=1"),
            "unknown parameter `form`",
        ),
        (format!("/api/v1/top?{r}&limit=0"), "invalid `limit`"),
        (format!("/api/v1/top?{r}&limit=10001"), "invalid `limit`"),
        (format!("/api/v1/top?{r}&limit=ten"), "invalid `limit`"),
        (format!("/api/v1/top?{r}&limit=-1"), "invalid `limit`"),
        (format!("/api/v1/top?{r}&sort=name"), "invalid `sort`"),
        (
            format!("/api/v1/top?{r}&format=svg"),
            "unknown parameter `format`",
        ),
        ("/api/v1/labels?from=yesterday".to_owned(), "invalid `from`"),
        (
            format!("/api/v1/timeline?{r}&filter==x"),
            "invalid `filter`",
        ),
        (
            format!("/api/v1/diff?{r}&base_from=x"),
            "invalid `base_from`",
        ),
        (
            format!("/api/v1/diff?{r}&base_to=now-1y"),
            "invalid `base_to`",
        ),
        (
            format!("/api/v1/diff?{r}&base_from={}&base_to={}", T0 + 5, T0),
            "invalid `base_from`",
        ),
        (format!("/api/v1/diff?{r}&format=pprof"), "invalid `format`"),
        (
            format!("/api/v1/diff?{r}&limit=0&format=json"),
            "invalid `limit`",
        ),
    ];
    for (uri, expected) in cases {
        let a = get(&app, &uri).await;
        assert_eq!(a.status, StatusCode::BAD_REQUEST, "{uri}: {}", a.text());
        assert_eq!(a.content_type, "application/json", "{uri}");
        let msg = a.json()["error"].as_str().expect("error string").to_owned();
        assert!(
            msg.starts_with(expected),
            "{uri}: `{msg}` does not start with `{expected}`"
        );
    }
}

#[tokio::test]
async fn times_share_the_duration_grammar_and_errors_quote_the_input() {
    let app = standard_app();
    // `-1.5h` is what `ember record -d 1.5h` and `ember export --from -1.5h` take too.
    let a = get(&app, "/api/v1/profile?from=-1.5h").await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.text());
    let a = get(&app, "/api/v1/top?from=now-1.5h&to=-500ms").await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.text());
    for (uri, expected) in [
        (
            "/api/v1/profile?from=-1",
            "invalid `from`: `-1`: missing unit (us, ms, s, m, h or d)",
        ),
        (
            "/api/v1/profile?from=now-99999999999h",
            "invalid `from`: `now-99999999999h`: too large",
        ),
        // Only `from` and `to` were given: the defaulted base range is `from`'s fault.
        (
            "/api/v1/diff?from=0&to=now",
            "invalid `from`: no room before `from` (0 ns)",
        ),
        (
            "/api/v1/diff?from=10&to=now&base_to=0",
            "invalid `base_to`: no room before `base_to` (0 ns)",
        ),
    ] {
        let a = get(&app, uri).await;
        assert_eq!(a.status, StatusCode::BAD_REQUEST, "{uri}: {}", a.text());
        let msg = a.json()["error"].as_str().expect("error string").to_owned();
        assert!(msg.starts_with(expected), "{uri}: `{msg}`");
    }
}

#[tokio::test]
async fn filters_that_match_nothing_valid_answer_400_on_every_endpoint() {
    let app = standard_app();
    let r = range(0, 20);
    for filter in [
        "pid=abc",
        "pid=-1",
        "tid=1.5",
        "COMM=split",
        "job=web",
        "comm!=split",
        "comm=~split.*",
        "{comm=\"split\"}",
    ] {
        let encoded: String = filter
            .bytes()
            .map(|b| match b {
                b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'.' | b'_' => {
                    char::from(b).to_string()
                }
                _ => format!("%{b:02X}"),
            })
            .collect();
        for endpoint in ["profile", "top", "diff", "timeline"] {
            let uri = format!("/api/v1/{endpoint}?{r}&filter={encoded}");
            let a = get(&app, &uri).await;
            assert_eq!(a.status, StatusCode::BAD_REQUEST, "{uri}: {}", a.text());
            let msg = a.json()["error"].as_str().expect("error string").to_owned();
            assert!(
                msg.starts_with(&format!("invalid `filter`: bad label matcher `{filter}`")),
                "{uri}: `{msg}`"
            );
        }
    }
}

#[tokio::test]
async fn container_filter_alias_selects_the_container_id_label() {
    let b = super::testutil::FakeBackend::default();
    let in_c1 = labels("app", "5").with("container_id", "4f8a1c2b3d4e");
    let on_host = labels("app", "6");
    b.push(window(
        0,
        &[
            (&in_c1, &["main", "inside"], 3),
            (&on_host, &["main", "outside"], 4),
        ],
    ));
    let app = app(Arc::new(b), &ApiConfig::default());
    for filter in ["container=4f8a1c2b3d4e", "container_id=4f8a1c2b3d4e"] {
        let a = get(
            &app,
            &format!("/api/v1/profile?{}&filter={filter}", range(0, 10)),
        )
        .await;
        assert_eq!(a.status, StatusCode::OK, "{filter}: {}", a.text());
        assert_eq!(a.text(), "app;main;inside 3\n", "{filter}");
    }
}

#[tokio::test]
async fn backend_errors_answer_500() {
    let backend = FakeBackend::standard();
    backend.fail.store(true, Ordering::SeqCst);
    let app = app(backend, &ApiConfig::default());
    for uri in [
        format!("/api/v1/profile?{}", range(0, 10)),
        format!("/api/v1/profile?{}&format=svg", range(0, 10)),
        format!("/api/v1/labels?{}", range(0, 10)),
        format!("/api/v1/top?{}", range(0, 10)),
        format!("/api/v1/timeline?{}", range(0, 10)),
        format!("/api/v1/diff?{}", range(0, 10)),
    ] {
        let a = get(&app, &uri).await;
        assert_eq!(a.status, StatusCode::INTERNAL_SERVER_ERROR, "{uri}");
        assert_eq!(
            a.json()["error"],
            "backend: store unreadable: disk on fire",
            "{uri}"
        );
    }
    // Bad parameters are still 400: they are checked before the backend is asked.
    let a = get(&app, "/api/v1/profile?from=x").await;
    assert_eq!(a.status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn metrics_have_the_backend_and_the_api() {
    let app = standard_app();
    get(&app, &format!("/api/v1/top?{}", range(0, 10))).await;
    get(&app, &format!("/api/v1/top?{}", range(0, 10))).await;
    get(&app, "/api/v1/top?limit=0").await;
    get(&app, "/nope").await;
    let a = get(&app, "/metrics").await;
    assert_eq!(a.status, StatusCode::OK);
    assert!(a.content_type.starts_with("text/plain; version=0.0.4"));
    let text = a.text();
    assert!(text.contains("ember_store_windows 2\n"), "{text}");
    assert!(
        text.contains("ember_api_requests_total{endpoint=\"/api/v1/top\",status=\"200\"} 2\n"),
        "{text}"
    );
    assert!(text.contains("ember_api_requests_total{endpoint=\"/api/v1/top\",status=\"400\"} 1\n"));
    assert!(text.contains("ember_api_requests_total{endpoint=\"unmatched\",status=\"404\"} 1\n"));
    assert!(text.contains("# TYPE ember_api_request_duration_seconds histogram\n"));
    assert!(
        text.contains("ember_api_heavy_queries_running 0\n"),
        "{text}"
    );
    assert!(text.contains(
        "ember_api_request_duration_seconds_bucket{endpoint=\"/api/v1/top\",le=\"+Inf\"} 3\n"
    ));
    assert!(
        text.contains("ember_api_request_duration_seconds_count{endpoint=\"/api/v1/top\"} 3\n")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn queries_run_while_the_backend_is_updated() {
    let backend = FakeBackend::standard();
    // All 64 may wait: this is about consistency, the limits have their own tests.
    let config = ApiConfig {
        limits: Limits {
            queued: 64,
            ..Limits::default()
        },
        ..ApiConfig::default()
    };
    let app = app(Arc::clone(&backend) as Arc<dyn Backend>, &config);
    let writer = {
        let backend = Arc::clone(&backend);
        tokio::spawn(async move {
            let split = labels("split", "42");
            for i in 0..200 {
                backend.push(window(20 + i, &[(&split, &["main", "work", "fn_c"], 1)]));
                tokio::task::yield_now().await;
            }
        })
    };
    let mut tasks = Vec::new();
    for i in 0..64u64 {
        let app = app.clone();
        tasks.push(tokio::spawn(async move {
            let uri = match i % 5 {
                0 => format!("/api/v1/profile?{}&format=pprof", range(0, 300)),
                1 => format!("/api/v1/top?{}", range(0, 300)),
                2 => format!("/api/v1/timeline?{}", range(0, 300)),
                3 => format!("/api/v1/labels?{}", range(0, 300)),
                _ => format!("/api/v1/diff?{}&format=svg", range(150, 300)),
            };
            let a = get(&app, &uri).await;
            assert_eq!(a.status, StatusCode::OK, "{uri}: {}", a.text());
        }));
    }
    for t in tasks {
        t.await.expect("request task");
    }
    writer.await.expect("writer task");
    let a = get(&app, &format!("/api/v1/timeline?{}", range(0, 300))).await;
    assert_eq!(a.json()["points"].as_array().expect("points").len(), 202);
}

#[tokio::test]
async fn serves_over_a_loopback_socket_and_shuts_down_gracefully() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind loopback");
    let addr = listener.local_addr().expect("local addr");
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(serve(
        listener,
        FakeBackend::standard(),
        ApiConfig::default(),
        async move {
            let _ = stopped.await;
        },
    ));

    let mut conn = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let request = format!(
        "GET /api/v1/top?{}&limit=1 HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n",
        range(0, 10)
    );
    conn.write_all(request.as_bytes())
        .await
        .expect("write request");
    let mut response = String::new();
    tokio::time::timeout(Duration::from_secs(10), conn.read_to_string(&mut response))
        .await
        .expect("response within 10 s")
        .expect("read response");
    assert!(response.starts_with("HTTP/1.1 200 OK\r\n"), "{response}");
    assert!(
        response
            .to_ascii_lowercase()
            .contains("content-type: application/json")
    );
    assert!(response.contains("\"name\":\"fn_a\""), "{response}");

    stop.send(()).expect("server still running");
    tokio::time::timeout(Duration::from_secs(10), server)
        .await
        .expect("server stops within 10 s")
        .expect("server task")
        .expect("serve returns Ok");
}

// ---- the UI's parameters: focus, callers, orientation, width ------------------------------

#[tokio::test]
async fn profile_focus_re_roots_and_callers_reverse() {
    let app = standard_app();
    let r = range(0, 10);
    let folded = |q: String| {
        let app = app.clone();
        async move {
            let a = get(
                &app,
                &format!(
                    "/api/v1/profile?{r}&filter=comm=split&{q}",
                    r = range(0, 10)
                ),
            )
            .await;
            assert_eq!(a.status, StatusCode::OK, "{q}: {}", a.text());
            a.text().to_owned()
        }
    };
    assert_eq!(
        folded("focus=work".into()).await,
        "work;fn_a 60\nwork;fn_b 30\n"
    );
    assert_eq!(folded("focus=fn_b".into()).await, "fn_b 30\n");
    assert_eq!(
        folded("focus=work&root=comm".into()).await,
        "split;work;fn_a 60\nsplit;work;fn_b 30\n"
    );
    assert_eq!(folded("callers=fn_a".into()).await, "fn_a;work;main 60\n");
    assert_eq!(folded("focus=absent".into()).await, "");
    // Every format shows the same focused profile: what the page downloads is what it shows.
    let a = get(&app, &format!("/api/v1/profile?{r}&focus=fn_a&format=json")).await;
    assert_eq!(a.json()["total_samples"], 60);
    let a = get(
        &app,
        &format!("/api/v1/profile?{r}&focus=fn_a&format=pprof"),
    )
    .await;
    let decoded = pprof::decode(&a.body[..]).expect("valid pprof");
    assert_eq!(decoded.total(), 60);
    let a = get(&app, &format!("/api/v1/profile?{r}&focus=fn_a&format=svg")).await;
    assert!(a.text().contains("(focus: fn_a)"), "{}", a.text());
    let a = get(
        &app,
        &format!("/api/v1/profile?{r}&focus=absent&format=svg"),
    )
    .await;
    assert_eq!(a.status, StatusCode::OK);
    assert!(a.text().contains("No samples"));
}

#[tokio::test]
async fn orientation_picks_inferno_direction() {
    let app = standard_app();
    for (uri, inverted) in [
        (
            format!("/api/v1/profile?{}&format=svg", range(0, 10)),
            false,
        ),
        (
            format!(
                "/api/v1/profile?{}&format=svg&orientation=flame",
                range(0, 10)
            ),
            false,
        ),
        (
            format!(
                "/api/v1/profile?{}&format=svg&orientation=icicle",
                range(0, 10)
            ),
            true,
        ),
        (diff_uri("svg") + "&orientation=icicle", true),
    ] {
        let a = get(&app, &uri).await;
        assert_eq!(a.status, StatusCode::OK, "{uri}");
        assert!(
            a.text().contains(&format!("var inverted = {inverted};")),
            "{uri}"
        );
    }
}

#[tokio::test]
async fn width_prunes_frames_narrower_than_a_pixel() {
    let b = FakeBackend::default();
    let l = labels("big", "1");
    b.push(window(
        0,
        &[(&l, &["main", "hot"], 9_999), (&l, &["main", "tiny"], 1)],
    ));
    let app = app(std::sync::Arc::new(b), &ApiConfig::default());
    let svg = |width: &str| {
        let app = app.clone();
        let uri = format!("/api/v1/profile?{}&format=svg{width}", range(0, 10));
        async move {
            let a = get(&app, &uri).await;
            assert_eq!(a.status, StatusCode::OK, "{uri}: {}", a.text());
            a.text().to_owned()
        }
    };
    // One sample in 10,000 is 0.12 px of a 1200 px graph: dropped; at 20,000 px it is 2 px.
    assert!(!svg("&width=1200").await.contains("tiny ("));
    assert!(svg("&width=1200").await.contains("hot ("));
    assert!(svg("&width=20000").await.contains("tiny ("));
    // Without `width`, inferno's default (0.01 %) keeps it, as before.
    assert!(svg("").await.contains("tiny ("));
}

#[tokio::test]
async fn ui_params_are_checked() {
    let app = standard_app();
    let r = range(0, 10);
    for (uri, expected) in [
        (
            format!("/api/v1/profile?{r}&focus=a&callers=b"),
            "invalid `callers`: give `focus` or `callers`",
        ),
        (
            format!("/api/v1/profile?{r}&focus="),
            "invalid `focus`: empty function name",
        ),
        (
            format!("/api/v1/profile?{r}&width=50"),
            "invalid `width`: 50 is out of range",
        ),
        (
            format!("/api/v1/profile?{r}&width=wide"),
            "invalid `width`: `wide` is not",
        ),
        (
            format!("/api/v1/profile?{r}&orientation=sideways"),
            "invalid `orientation`: unknown value `sideways` (one of: flame, icicle)",
        ),
        (format!("/api/v1/diff?{r}&width=0"), "invalid `width`"),
    ] {
        let a = get(&app, &uri).await;
        assert_eq!(a.status, StatusCode::BAD_REQUEST, "{uri}: {}", a.text());
        let msg = a.json()["error"].as_str().expect("error string").to_owned();
        assert!(msg.starts_with(expected), "{uri}: `{msg}`");
    }
}

#[tokio::test]
async fn ui_assets_are_embedded_with_types_and_etags() {
    use axum::body::Body;
    use axum::http::{Request, header};
    use tower::ServiceExt as _;

    let app = standard_app();
    let page = get(&app, "/").await;
    assert_eq!(page.content_type, "text/html; charset=utf-8");
    assert!(page.text().contains("/ui/app.js") && page.text().contains("/ui/app.css"));
    assert_eq!(page.headers[header::CACHE_CONTROL], "no-cache");
    for (path, ty, needle) in [
        ("/ui/app.js", "text/javascript; charset=utf-8", "buildTree"),
        ("/ui/app.css", "text/css; charset=utf-8", "#flame"),
        ("/ui/favicon.svg", "image/svg+xml", "<svg"),
    ] {
        let a = get(&app, path).await;
        assert_eq!(a.status, StatusCode::OK, "{path}");
        assert_eq!(a.content_type, ty, "{path}");
        assert!(a.text().contains(needle), "{path}");
        assert_eq!(a.headers[header::CACHE_CONTROL], "no-cache", "{path}");
        let etag = a.headers[header::ETAG].clone();
        // A revalidation with the same ETag is a body-less 304.
        let req = Request::builder()
            .uri(path)
            .header(header::IF_NONE_MATCH, etag.clone())
            .body(Body::empty())
            .expect("valid request");
        let res = app.clone().oneshot(req).await.expect("infallible router");
        assert_eq!(res.status(), StatusCode::NOT_MODIFIED, "{path}");
        assert_eq!(res.headers()[header::ETAG], etag);
    }
    // No external resources: the page works offline, next to the agent.
    for path in ["/", "/ui/app.js", "/ui/app.css"] {
        let text = get(&app, path).await.text().to_owned();
        assert!(
            !text.contains("https://") && !text.contains("http://cdn"),
            "{path} loads something remote"
        );
    }
    let a = get(&app, "/ui/missing.js").await;
    assert_eq!(a.status, StatusCode::NOT_FOUND);
    assert!(
        a.json()["error"]
            .as_str()
            .expect("error")
            .contains("/ui/missing.js")
    );
}

// ---- exposure: the Host check and the token ------------------------------------------------

const TOKEN: &str = "s3cret-token-0123456789";

fn token_app() -> axum::Router {
    let config = ApiConfig {
        token: Some(Token::new(TOKEN, "test").expect("valid token")),
        ..ApiConfig::default()
    };
    app(FakeBackend::standard(), &config)
}

#[tokio::test]
async fn without_a_token_every_endpoint_answers_loopback_hosts() {
    let app = standard_app();
    let top = format!("/api/v1/top?{}", range(0, 10));
    for host in [
        "localhost:7070",
        "127.0.0.1:7070",
        "[::1]:7070",
        "LOCALHOST",
        "127.0.0.2",
    ] {
        let a = get_with(&app, &top, &[("host", host)]).await;
        assert_eq!(a.status, StatusCode::OK, "{host}: {}", a.text());
    }
}

#[tokio::test]
async fn a_rebound_host_answers_421_naming_the_flag() {
    let app = standard_app();
    for uri in ["/", "/api/v1/labels", "/metrics", "/ui/app.js", "/nope"] {
        let a = get_with(&app, uri, &[("host", "attacker.example:7070")]).await;
        assert_eq!(a.status, StatusCode::MISDIRECTED_REQUEST, "{uri}");
        let e = a.json()["error"].as_str().expect("error").to_owned();
        assert!(
            e.contains("attacker.example") && e.contains("--api-allowed-host"),
            "{e}"
        );
    }
    // Malformed, and an address that is not the listen address.
    for host in ["a:b:c", "10.0.0.7:7070"] {
        let a = get_with(&app, "/api/v1/labels", &[("host", host)]).await;
        assert_eq!(a.status, StatusCode::MISDIRECTED_REQUEST, "{host}");
    }
    // /healthz reveals nothing and answers probes whatever they send.
    let a = get_with(&app, "/healthz", &[("host", "attacker.example")]).await;
    assert_eq!(a.status, StatusCode::OK);
}

#[tokio::test]
async fn allowed_hosts_and_the_listen_address_are_accepted() {
    let listen: std::net::SocketAddr = "10.0.0.7:7070".parse().expect("address");
    let config = ApiConfig {
        allowed_hosts: vec![
            "Node-7.Cluster.Local.".to_owned(),
            "other.example:7070".to_owned(),
        ],
        listen: Some(listen),
        ..ApiConfig::default()
    };
    let router = app(FakeBackend::standard(), &config);
    for (host, status) in [
        ("node-7.cluster.local:7070", StatusCode::OK),
        ("node-7.cluster.local.", StatusCode::OK),
        ("10.0.0.7:7070", StatusCode::OK),
        ("other.example", StatusCode::OK),
        ("10.0.0.8:7070", StatusCode::MISDIRECTED_REQUEST),
        ("node-8.cluster.local", StatusCode::MISDIRECTED_REQUEST),
    ] {
        let a = get_with(&router, "/api/v1/labels", &[("host", host)]).await;
        assert_eq!(a.status, status, "{host}");
    }
    // Listening on every address: any IP address names it (an address cannot be
    // rebound), a foreign name still does not.
    let config = ApiConfig {
        listen: Some("0.0.0.0:7070".parse().expect("address")),
        ..ApiConfig::default()
    };
    let app = app(FakeBackend::standard(), &config);
    let a = get_with(&app, "/api/v1/labels", &[("host", "10.0.0.8:7070")]).await;
    assert_eq!(a.status, StatusCode::OK);
    let a = get_with(&app, "/api/v1/labels", &[("host", "attacker.example")]).await;
    assert_eq!(a.status, StatusCode::MISDIRECTED_REQUEST);
}

#[tokio::test]
async fn with_a_token_requests_need_the_bearer_header() {
    let app = token_app();
    let top = format!("/api/v1/top?{}", range(0, 10));
    let host = ("host", "127.0.0.1:7070");
    let bearer = format!("Bearer {TOKEN}");
    let a = get_with(&app, &top, &[host, ("authorization", &bearer)]).await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.text());
    assert_eq!(a.json()["functions"][0]["name"], "fn_a");
    for uri in [
        top.as_str(),
        "/metrics",
        "/api/v1/labels",
        "/ui/app.js",
        "/nope",
    ] {
        // No token.
        let a = get_with(&app, uri, &[host]).await;
        assert_eq!(a.status, StatusCode::UNAUTHORIZED, "{uri}");
        assert_eq!(
            a.headers.get("www-authenticate").expect("challenge"),
            "Bearer realm=\"ember\""
        );
        assert!(
            a.json()["error"]
                .as_str()
                .expect("error")
                .contains("Bearer")
        );
        // A wrong one, one a character short, one a character long, another scheme.
        for auth in [
            "Bearer wrong-token-0123456789",
            &bearer[..bearer.len() - 1],
            &format!("{bearer}x"),
            &format!("Basic {TOKEN}"),
        ] {
            let a = get_with(&app, uri, &[host, ("authorization", auth)]).await;
            assert_eq!(a.status, StatusCode::UNAUTHORIZED, "{uri} with {auth}");
        }
    }
    // /healthz needs nothing.
    let a = get_with(&app, "/healthz", &[host]).await;
    assert_eq!(a.status, StatusCode::OK);
    // The Host check comes first, token or not.
    let a = get_with(
        &app,
        &top,
        &[("host", "attacker.example"), ("authorization", &bearer)],
    )
    .await;
    assert_eq!(a.status, StatusCode::MISDIRECTED_REQUEST);
}

fn login_request(token: &str, next: &str) -> axum::http::Request<axum::body::Body> {
    axum::http::Request::builder()
        .method("POST")
        .uri("/login")
        .header("host", "localhost:7070")
        .header("content-type", "application/x-www-form-urlencoded")
        .body(axum::body::Body::from(format!(
            "token={token}&next={}",
            next.replace('/', "%2F")
                .replace('?', "%3F")
                .replace('=', "%3D")
                .replace('&', "%26")
        )))
        .expect("valid request")
}

#[tokio::test]
async fn the_ui_logs_in_once_and_then_uses_an_http_only_cookie() {
    let app = token_app();
    let host = ("host", "localhost:7070");
    // The page without the token: a login form that will come back to the same view.
    let a = get_with(&app, "/?from=now-1h&filter=comm%3Dsplit", &[host]).await;
    assert_eq!(a.status, StatusCode::UNAUTHORIZED);
    assert!(a.content_type.starts_with("text/html"));
    let page = a.text();
    assert!(
        page.contains("<form method=\"post\" action=\"/login\">"),
        "{page}"
    );
    assert!(
        page.contains("value=\"/?from=now-1h&amp;filter=comm%3Dsplit\""),
        "{page}"
    );
    assert!(
        !page.contains("/api/v1/profile"),
        "the UI itself is not served"
    );

    // A wrong token: the form again, no cookie.
    let a = send(&app, login_request("wrong-token-0123456789", "/")).await;
    assert_eq!(a.status, StatusCode::UNAUTHORIZED);
    assert!(a.text().contains("Wrong token"));
    assert!(a.headers.get("set-cookie").is_none());

    // The right one: the cookie, and back to the view.
    let a = send(&app, login_request(TOKEN, "/?from=now-1h")).await;
    assert_eq!(a.status, StatusCode::SEE_OTHER);
    assert_eq!(
        a.headers.get("location").expect("location"),
        "/?from=now-1h"
    );
    let cookie = a
        .headers
        .get("set-cookie")
        .expect("a cookie")
        .to_str()
        .expect("ASCII")
        .to_owned();
    assert!(
        cookie.starts_with(&format!("ember_token={TOKEN};")),
        "{cookie}"
    );
    for attr in ["HttpOnly", "SameSite=Strict", "Path=/"] {
        assert!(cookie.contains(attr), "{cookie}");
    }
    assert!(!cookie.contains("Secure"), "no TLS here: {cookie}");
    let jar = format!("other=1; ember_token={TOKEN}");
    for uri in ["/", "/ui/app.js", "/api/v1/labels"] {
        let a = get_with(&app, uri, &[host, ("cookie", &jar)]).await;
        assert_eq!(a.status, StatusCode::OK, "{uri}");
    }
    let a = get_with(
        &app,
        "/api/v1/labels",
        &[host, ("cookie", "ember_token=nope")],
    )
    .await;
    assert_eq!(a.status, StatusCode::UNAUTHORIZED);

    // `next` only ever leads to a path of this agent.
    for evil in [
        "//attacker.example/",
        "https://attacker.example/",
        "/\\attacker.example",
    ] {
        let a = send(&app, login_request(TOKEN, evil)).await;
        assert_eq!(a.headers.get("location").expect("location"), "/", "{evil}");
    }
}

// ---- budgets of the heavy queries ----------------------------------------------------------

fn slow_app(delay_ms: u64, limits: Limits) -> (Arc<FakeBackend>, axum::Router) {
    let backend = FakeBackend::standard();
    backend.delay_ms.store(delay_ms, Ordering::SeqCst);
    let config = ApiConfig {
        limits,
        ..ApiConfig::default()
    };
    let app = app(Arc::clone(&backend) as Arc<dyn Backend>, &config);
    (backend, app)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn heavy_queries_beyond_the_queue_answer_503_with_retry_after() {
    let (_backend, app) = slow_app(
        1500,
        Limits {
            concurrent: 1,
            queued: 2,
            ..Limits::default()
        },
    );
    let uri = format!("/api/v1/top?{}", range(0, 10));
    let mut tasks = Vec::new();
    for _ in 0..6 {
        let (app, uri) = (app.clone(), uri.clone());
        tasks.push(tokio::spawn(async move { get(&app, &uri).await }));
    }
    // While they run, the light endpoints answer at once.
    tokio::time::sleep(Duration::from_millis(100)).await;
    let started = std::time::Instant::now();
    for light in ["/api/v1/labels", "/healthz", "/metrics", "/", "/ui/app.css"] {
        assert_eq!(get(&app, light).await.status, StatusCode::OK, "{light}");
    }
    assert!(
        started.elapsed() < Duration::from_millis(1000),
        "light endpoints waited {:?} behind heavy queries",
        started.elapsed()
    );
    let mut ok = 0;
    let mut busy = 0;
    for t in tasks {
        let a = t.await.expect("request task");
        match a.status {
            StatusCode::OK => ok += 1,
            StatusCode::SERVICE_UNAVAILABLE => {
                busy += 1;
                assert_eq!(a.headers.get("retry-after").expect("Retry-After"), "3");
                let e = a.json()["error"].as_str().expect("error").to_owned();
                assert!(e.starts_with("busy:") && e.contains("retry in 3 s"), "{e}");
            }
            s => panic!("unexpected {s}: {}", a.text()),
        }
    }
    // One runs, two wait, three are turned away.
    assert_eq!((ok, busy), (3, 3));
    let metrics = get(&app, "/metrics").await;
    assert!(
        metrics
            .text()
            .contains("ember_api_requests_total{endpoint=\"/api/v1/top\",status=\"503\"} 3\n")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_query_past_its_time_budget_answers_503_and_frees_its_slot() {
    let (backend, app) = slow_app(
        800,
        Limits {
            concurrent: 1,
            queued: 4,
            time_budget: Duration::from_millis(300),
            ..Limits::default()
        },
    );
    let started = std::time::Instant::now();
    let a = get(
        &app,
        &format!("/api/v1/profile?{}&format=svg", range(0, 10)),
    )
    .await;
    assert_eq!(a.status, StatusCode::SERVICE_UNAVAILABLE, "{}", a.text());
    assert!(
        started.elapsed() < Duration::from_millis(700),
        "{:?}",
        started.elapsed()
    );
    assert!(a.headers.get("retry-after").is_some());
    let e = a.json()["error"].as_str().expect("error").to_owned();
    assert!(
        e.contains("300ms budget") && e.contains("narrow the range"),
        "{e}"
    );
    // The slow work still holds the only slot: a second query waits, then times out too.
    let a = get(&app, &format!("/api/v1/timeline?{}", range(0, 10))).await;
    assert_eq!(a.status, StatusCode::SERVICE_UNAVAILABLE);
    // Once the store is fast again and the slot is free, queries answer.
    backend.delay_ms.store(0, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let a = get(&app, &format!("/api/v1/timeline?{}", range(0, 10))).await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.text());
}

#[tokio::test]
async fn too_many_stacks_or_too_large_an_answer_is_a_413() {
    let (_b, app) = slow_app(
        0,
        Limits {
            max_stacks: 3,
            ..Limits::default()
        },
    );
    // Window A has four distinct stacks (idle included before it is dropped).
    let a = get(&app, &format!("/api/v1/profile?{}", range(0, 10))).await;
    assert_eq!(a.status, StatusCode::PAYLOAD_TOO_LARGE, "{}", a.text());
    let e = a.json()["error"].as_str().expect("error").to_owned();
    assert!(
        e.contains("4 distinct stacks") && e.contains("`filter`"),
        "{e}"
    );
    // Narrowed by a filter, it answers.
    let a = get(
        &app,
        &format!("/api/v1/profile?{}&filter=comm=split", range(0, 10)),
    )
    .await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.text());
    let diff = format!(
        "/api/v1/diff?base_from={T0}&base_to={}&{}&format=json",
        T0 + 10,
        range(10, 20)
    );
    let a = get(&app, &diff).await;
    assert_eq!(a.status, StatusCode::PAYLOAD_TOO_LARGE, "{}", a.text());
    let a = get(&app, &diff_uri("json")).await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.text());

    let (_b, app) = slow_app(
        0,
        Limits {
            max_output_bytes: 2048,
            ..Limits::default()
        },
    );
    let a = get(
        &app,
        &format!("/api/v1/profile?{}&format=svg", range(0, 10)),
    )
    .await;
    assert_eq!(a.status, StatusCode::PAYLOAD_TOO_LARGE, "{}", a.text());
    let e = a.json()["error"].as_str().expect("error").to_owned();
    assert!(
        e.contains("larger than") && e.contains("narrow the range"),
        "{e}"
    );
    let a = get(
        &app,
        &format!("/api/v1/profile?{}&format=folded", range(0, 10)),
    )
    .await;
    assert_eq!(a.status, StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_after_burst_hook_runs_when_the_last_heavy_query_ends() {
    let runs = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = Arc::clone(&runs);
    let backend = FakeBackend::standard();
    backend.delay_ms.store(200, Ordering::SeqCst);
    let config = ApiConfig {
        after_burst: Some(Arc::new(move || {
            counter.fetch_add(1, Ordering::SeqCst);
        })),
        limits: Limits {
            concurrent: 4,
            ..Limits::default()
        },
        ..ApiConfig::default()
    };
    let app = app(backend, &config);
    let uri = format!("/api/v1/top?{}", range(0, 10));
    let tasks: Vec<_> = (0..4)
        .map(|_| {
            let (app, uri) = (app.clone(), uri.clone());
            tokio::spawn(async move { get(&app, &uri).await.status })
        })
        .collect();
    for t in tasks {
        assert_eq!(t.await.expect("task"), StatusCode::OK);
    }
    // Four overlapping queries are one burst; light queries are none.
    get(&app, "/api/v1/labels").await;
    assert_eq!(runs.load(Ordering::SeqCst), 1);
}

// ---- TLS -----------------------------------------------------------------------------------

#[tokio::test]
async fn serves_https_with_a_pem_certificate_and_key() {
    use rustls::pki_types::CertificateDer;

    let cert = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()])
        .expect("a self-signed certificate");
    let dir = std::env::temp_dir().join(format!("ember-web-tls-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let (cert_path, key_path) = (dir.join("cert.pem"), dir.join("key.pem"));
    std::fs::write(&cert_path, cert.cert.pem()).expect("write cert");
    std::fs::write(&key_path, cert.signing_key.serialize_pem()).expect("write key");
    // A wrong file is named in the error.
    let err = crate::tls::TlsConfig::from_pem_files(&key_path, &key_path)
        .expect_err("a key is no certificate");
    assert!(err.to_string().contains("key.pem"), "{err}");
    let tls = crate::tls::TlsConfig::from_pem_files(&cert_path, &key_path).expect("TLS config");
    std::fs::remove_dir_all(&dir).ok();

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind loopback");
    let addr = listener.local_addr().expect("local addr");
    let config = ApiConfig {
        tls: Some(tls),
        ..ApiConfig::default()
    };
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(serve(
        listener,
        FakeBackend::standard(),
        config,
        async move {
            let _ = stopped.await;
        },
    ));

    // A client that opens a connection and says nothing delays no one.
    let _silent = tokio::net::TcpStream::connect(addr).await.expect("connect");

    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(CertificateDer::from(cert.cert.der().to_vec()))
        .expect("root");
    let client = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("protocols")
    .with_root_certificates(roots)
    .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(client));
    let tcp = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let name = rustls::pki_types::ServerName::try_from("localhost").expect("name");
    let mut conn = tokio::time::timeout(Duration::from_secs(10), connector.connect(name, tcp))
        .await
        .expect("handshake within 10 s")
        .expect("handshake");
    let request = format!(
        "GET /api/v1/top?{}&limit=1 HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n",
        range(0, 10)
    );
    conn.write_all(request.as_bytes()).await.expect("write");
    let mut response = Vec::new();
    // A peer closing without close_notify is fine for HTTP with Connection: close.
    let _ = tokio::time::timeout(Duration::from_secs(10), conn.read_to_end(&mut response))
        .await
        .expect("response within 10 s");
    let response = String::from_utf8_lossy(&response);
    assert!(response.starts_with("HTTP/1.1 200 OK\r\n"), "{response}");
    assert!(response.contains("\"name\":\"fn_a\""), "{response}");

    stop.send(()).expect("server still running");
    tokio::time::timeout(Duration::from_secs(10), server)
        .await
        .expect("server stops within 10 s")
        .expect("server task")
        .expect("serve returns Ok");
}
