//! The UI's endpoints (`flame`, `cpu`, `explore`, `types`) and the UI's additions to the
//! export endpoints (`type`, `group`, `base_filter`, human subtitles), through `app()` +
//! `oneshot` against the in-memory store.

use axum::http::StatusCode;
use serde_json::Value;

use profiler_model::ProfileKind;

use super::testutil::{FakeBackend, T0, get, labels, range, window};
use super::{ApiConfig, app};

fn standard_app() -> axum::Router {
    app(FakeBackend::standard(), &ApiConfig::default())
}

async fn json(app: &axum::Router, uri: &str) -> Value {
    let a = get(app, uri).await;
    assert_eq!(a.status, StatusCode::OK, "{uri}: {}", a.text());
    a.json()
}

/// `(depth, name, total)` of a flame answer's nodes, plus the base total when compared.
fn nodes(body: &Value) -> Vec<(u64, String, u64, Option<u64>)> {
    let names = body["names"].as_array().expect("names");
    body["nodes"]
        .as_array()
        .expect("nodes")
        .iter()
        .map(|r| {
            (
                r[0].as_u64().expect("depth"),
                names[r[1].as_u64().expect("name id") as usize]
                    .as_str()
                    .expect("name")
                    .to_owned(),
                r[3].as_u64().expect("total"),
                r.get(5).and_then(Value::as_u64),
            )
        })
        .collect()
}

#[tokio::test]
async fn cpu_is_in_cores_without_the_idle_task() {
    let app = standard_app();
    let body = json(&app, &format!("/api/v1/cpu?{}", range(0, 20))).await;
    assert_eq!(body["frequency_hz"], 99);
    assert_eq!(body["type"], "cpu");
    let points = body["points"].as_array().expect("points");
    let samples: Vec<u64> = points
        .iter()
        .map(|p| p["samples"].as_u64().expect("n"))
        .collect();
    // Window A: split 90 + cat 10 (idle 100 left out); window B: split 100 (idle 50).
    assert_eq!(samples, [100, 100]);
    assert_eq!(points[0]["idle_samples"], 100);
    assert_eq!(body["total_samples"], 200);
    let cores = points[0]["cores"].as_f64().expect("cores");
    assert!((cores - 100.0 / 99.0 / 10.0).abs() < 1e-9, "{cores}");
    // A filter narrows it; one that names other pids never subtracts idle.
    let body = json(
        &app,
        &format!("/api/v1/cpu?{}&filter=comm=split", range(0, 20)),
    )
    .await;
    assert_eq!(body["total_samples"], 190);
    let body = json(&app, &format!("/api/v1/cpu?{}&filter=pid=7", range(0, 20))).await;
    assert_eq!(body["total_samples"], 10);
    // The idle task asked for by pid is its own samples, not zero.
    let body = json(&app, &format!("/api/v1/cpu?{}&filter=pid=0", range(0, 20))).await;
    assert_eq!(body["total_samples"], 0, "idle is never CPU in use");
    let empty = json(&app, &format!("/api/v1/cpu?{}", range(100, 200))).await;
    assert_eq!(empty["total_samples"], 0);
    assert_eq!(empty["frequency_hz"], 0);
}

#[tokio::test]
async fn flame_is_the_call_tree_the_chart_adds_up_to() {
    let app = standard_app();
    let body = json(&app, &format!("/api/v1/flame?{}", range(0, 20))).await;
    assert_eq!(body["total_samples"], 200);
    assert_eq!(body["frequency_hz"], 99);
    assert!(body.get("base").is_none());
    let n = nodes(&body);
    assert_eq!(n[0], (0, "all".to_owned(), 200, None));
    assert_eq!(n[1], (1, "split".to_owned(), 190, None));
    assert!(
        n.iter().any(|r| r.1 == "fn_b" && r.2 == 110 && r.0 == 4),
        "{n:?}"
    );
    assert!(!n.iter().any(|r| r.1.contains("idle")), "idle is left out");
    // Focus re-roots under the process.
    let body = json(&app, &format!("/api/v1/flame?{}&focus=work", range(0, 20))).await;
    assert_eq!(body["total_samples"], 190);
}

#[tokio::test]
async fn flame_compares_two_independent_ranges_and_filters() {
    let app = standard_app();
    // Window B (fn_b 80 %) against window A (fn_b 33 %), split on both sides.
    let uri = format!(
        "/api/v1/flame?from={}&to={}&filter=comm=split&base_from={}&base_to={}",
        T0 + 10,
        T0 + 20,
        T0,
        T0 + 10
    );
    let body = json(&app, &uri).await;
    assert_eq!(body["total_samples"], 100);
    assert_eq!(body["base"]["total_samples"], 90);
    assert_eq!(body["base"]["filter"], "comm=split");
    assert_eq!(body["grew"][0]["name"], "fn_b");
    assert_eq!(body["grew"][0]["base_self"], 30);
    assert_eq!(body["grew"][0]["new_self"], 80);
    assert_eq!(body["shrank"][0]["name"], "fn_a");
    let n = nodes(&body);
    assert!(
        n.iter()
            .any(|r| r.1 == "fn_b" && r.2 == 80 && r.3 == Some(30))
    );
    // Its own filter for the base: cat's samples only.
    let body = json(&app, &format!("{uri}&base_filter=comm=cat")).await;
    assert_eq!(body["base"]["total_samples"], 10);
    assert_eq!(body["base"]["filter"], "comm=cat");
    // An empty side is an answer (with 0 samples), not an error: the UI says so.
    let body = json(
        &app,
        &format!(
            "/api/v1/flame?{}&base_from={}&base_to={}",
            range(0, 20),
            T0 - 100,
            T0 - 50
        ),
    )
    .await;
    assert_eq!(body["base"]["total_samples"], 0);
    assert_eq!(body["total_samples"], 200);
    // A bad base filter names its parameter.
    let a = get(&app, &format!("{uri}&base_filter=nope=1")).await;
    assert_eq!(a.status, StatusCode::BAD_REQUEST);
    assert!(a.text().contains("invalid `base_filter`"), "{}", a.text());
}

#[tokio::test]
async fn explore_shares_add_up_to_the_chart_and_respect_other_filters() {
    let app = standard_app();
    let cpu = json(&app, &format!("/api/v1/cpu?{}", range(0, 20))).await;
    let body = json(&app, &format!("/api/v1/explore?{}", range(0, 20))).await;
    assert_eq!(body["total_samples"], cpu["total_samples"]);
    let labels = body["labels"].as_array().expect("labels");
    let comm = labels.iter().find(|l| l["name"] == "comm").expect("comm");
    let values = comm["values"].as_array().expect("values");
    let names: Vec<&str> = values
        .iter()
        .map(|v| v["value"].as_str().expect("s"))
        .collect();
    assert_eq!(names, ["split", "cat"], "swapper is never offered");
    let sum: u64 = values
        .iter()
        .map(|v| v["samples"].as_u64().expect("n"))
        .sum();
    assert_eq!(sum, 200);
    let shares: f64 = values.iter().map(|v| v["share"].as_f64().expect("f")).sum();
    assert!((shares - 1.0).abs() < 1e-9);
    // pids carry their process; under comm=split only split's pid is offered, while the
    // process list still offers both.
    let body = json(
        &app,
        &format!("/api/v1/explore?{}&filter=comm=split", range(0, 20)),
    )
    .await;
    assert_eq!(body["total_samples"], 190);
    let labels = body["labels"].as_array().expect("labels");
    let pid = labels.iter().find(|l| l["name"] == "pid").expect("pid");
    assert_eq!(pid["values"].as_array().map(Vec::len), Some(1));
    assert_eq!(pid["values"][0]["value"], "42");
    assert_eq!(pid["values"][0]["hint"], "split");
    let comm = labels.iter().find(|l| l["name"] == "comm").expect("comm");
    assert_eq!(comm["values"].as_array().map(Vec::len), Some(2));
}

#[tokio::test]
async fn top_groups_by_process_or_binary() {
    let app = standard_app();
    let body = json(&app, &format!("/api/v1/top?{}&group=process", range(0, 20))).await;
    assert_eq!(body["group"], "process");
    assert_eq!(body["frequency_hz"], 99);
    let rows = body["functions"].as_array().expect("rows");
    assert_eq!(rows[0]["name"], "fn_b");
    assert_eq!(rows[0]["process"], "split");
    assert_eq!(rows[0]["self"], 110);
    let main_rows: Vec<&str> = rows
        .iter()
        .filter(|r| r["name"] == "main")
        .map(|r| r["process"].as_str().expect("process"))
        .collect();
    assert_eq!(
        main_rows.len(),
        2,
        "main of split and main of cat stay apart"
    );
    let body = json(&app, &format!("/api/v1/top?{}&group=binary", range(0, 20))).await;
    assert_eq!(
        body["functions"][0]["binary"], "",
        "the fake frames have no module"
    );
    // Without `group` the answer is what it was: no group, functions merged.
    let body = json(&app, &format!("/api/v1/top?{}", range(0, 20))).await;
    assert!(body.get("group").is_none());
    assert!(body["functions"][0].get("process").is_none());
}

#[tokio::test]
async fn every_endpoint_takes_the_profile_type() {
    let app = standard_app();
    let body = json(&app, "/api/v1/types").await;
    assert_eq!(body["types"][0]["name"], "cpu");
    let r = range(0, 20);
    for path in [
        "profile", "top", "timeline", "diff", "flame", "cpu", "explore", "labels",
    ] {
        let ok = get(&app, &format!("/api/v1/{path}?{r}&type=cpu")).await;
        assert_eq!(ok.status, StatusCode::OK, "{path}: {}", ok.text());
        let off = get(&app, &format!("/api/v1/{path}?{r}&type=off-cpu")).await;
        assert_eq!(off.status, StatusCode::OK, "{path}: {}", off.text());
        let bad = get(&app, &format!("/api/v1/{path}?{r}&type=offcpu")).await;
        assert_eq!(bad.status, StatusCode::BAD_REQUEST, "{path}");
        assert!(
            bad.text()
                .contains("invalid `type`: unknown value `offcpu` (one of: cpu, off-cpu)"),
            "{path}: {}",
            bad.text()
        );
    }
}

/// The standard backend plus an off-CPU window over window A's period: split(42) waits
/// 3 s in `main;work;sleep` and 1 s in `main;read_[k]`; cat(7) 0.5 s in `main;wait`.
fn with_off_cpu() -> std::sync::Arc<FakeBackend> {
    let b = FakeBackend::standard();
    let split = labels("split", "42");
    let cat = labels("cat", "7");
    let mut w = window(
        0,
        &[
            (&split, &["main", "work", "sleep"], 3_000_000),
            (&split, &["main", "read_[k]"], 1_000_000),
            (&cat, &["main", "wait"], 500_000),
        ],
    );
    w.profile.meta.kind = ProfileKind::OffCpu;
    b.push(w);
    b
}

#[tokio::test]
async fn types_list_off_cpu_once_the_store_has_it() {
    let body = json(&standard_app(), "/api/v1/types").await;
    let names: Vec<&str> = body["types"]
        .as_array()
        .expect("types")
        .iter()
        .map(|t| t["name"].as_str().expect("name"))
        .collect();
    assert_eq!(names, ["cpu"]);
    let app = app(with_off_cpu(), &ApiConfig::default());
    let body = json(&app, "/api/v1/types").await;
    assert_eq!(body["types"][1]["name"], "off-cpu");
    assert_eq!(body["types"][1]["title"], "Off-CPU time");
    assert_eq!(body["types"][1]["count_unit"], "microseconds");
    assert_eq!(body["types"][0]["count_unit"], "samples");
}

#[tokio::test]
async fn off_cpu_answers_are_in_microseconds_and_say_so() {
    let app = app(with_off_cpu(), &ApiConfig::default());
    let r = range(0, 20);
    // Every profile endpoint reads the off-CPU windows only, and says its unit.
    let top = json(&app, &format!("/api/v1/top?{r}&type=off-cpu")).await;
    assert_eq!(
        (top["type"].as_str(), top["unit"].as_str()),
        (Some("off-cpu"), Some("microseconds"))
    );
    assert_eq!(top["total_samples"], 4_500_000);
    assert_eq!(top["functions"][0]["name"], "sleep");
    assert_eq!(top["functions"][0]["self"], 3_000_000);
    let cpu_top = json(&app, &format!("/api/v1/top?{r}")).await;
    assert_eq!(cpu_top["unit"], "samples");
    assert_eq!(cpu_top["total_samples"], 200, "CPU answers are unchanged");

    let folded = get(&app, &format!("/api/v1/profile?{r}&type=off-cpu&root=none")).await;
    assert_eq!(folded.status, StatusCode::OK);
    assert!(
        folded.text().contains("main;work;sleep 3000000"),
        "{}",
        folded.text()
    );
    assert!(!folded.text().contains("fn_a"), "{}", folded.text());
    let svg = get(
        &app,
        &format!("/api/v1/profile?{r}&type=off-cpu&format=svg"),
    )
    .await;
    let svg = svg.text();
    assert!(
        svg.contains("Ember off-CPU profile"),
        "{}",
        &svg[..svg.len().min(2000)]
    );
    assert!(
        svg.contains("4500000 µs (4.5 s) off CPU"),
        "{}",
        &svg[..svg.len().min(2000)]
    );

    let tl = json(&app, &format!("/api/v1/timeline?{r}&type=off-cpu")).await;
    assert_eq!(tl["unit"], "microseconds");
    assert_eq!(tl["points"].as_array().expect("points").len(), 1);
    assert_eq!(tl["points"][0]["samples"], 4_500_000);

    // Off CPU per window: 4.5 s waited in 10 s, 0.45 threads waiting on average.
    let chart = json(&app, &format!("/api/v1/cpu?{r}&type=off-cpu")).await;
    assert_eq!(chart["unit"], "microseconds");
    let pt = &chart["points"][0];
    assert!(pt["cores"].is_null(), "{pt}");
    let waiting = pt["threads_waiting"].as_f64().expect("threads waiting");
    assert!((waiting - 0.45).abs() < 1e-9, "{waiting}");

    let flame = json(&app, &format!("/api/v1/flame?{r}&type=off-cpu")).await;
    assert_eq!(
        (flame["type"].as_str(), flame["unit"].as_str()),
        (Some("off-cpu"), Some("microseconds"))
    );
    assert_eq!(flame["total_samples"], 4_500_000);

    let explore = json(&app, &format!("/api/v1/explore?{r}&type=off-cpu")).await;
    assert_eq!(explore["total_samples"], 4_500_000);
    let labels = json(&app, &format!("/api/v1/labels?{r}&type=off-cpu")).await;
    assert_eq!(labels["unit"], "microseconds");
    assert_eq!(labels["labels"]["comm"]["cat"], 500_000);
    assert!(
        labels["labels"]["comm"].get("swapper").is_none(),
        "{labels}"
    );

    let diff = get(
        &app,
        &format!(
            "/api/v1/diff?from={}&to={}&base_from={}&base_to={}&type=off-cpu&format=svg",
            T0,
            T0 + 10,
            T0 + 10,
            T0 + 20
        ),
    )
    .await;
    assert!(
        diff.text().contains("off-CPU"),
        "{}",
        &diff.text()[..diff.text().len().min(2000)]
    );
}

#[tokio::test]
async fn diff_takes_a_base_filter_and_subtitles_are_human() {
    let app = standard_app();
    let a = get(
        &app,
        &format!(
            "/api/v1/diff?from={}&to={}&base_from={}&base_to={}&base_filter=comm=cat&root=none",
            T0 + 10,
            T0 + 20,
            T0,
            T0 + 10
        ),
    )
    .await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.text());
    // The base is cat's 10 samples, scaled to the new total; split's stacks are new.
    assert!(a.text().contains("main;read "), "{}", a.text());
    let svg = get(
        &app,
        &format!("/api/v1/profile?{}&format=svg", range(0, 20)),
    )
    .await;
    let svg = svg.text();
    assert!(
        svg.contains("2027-01-15 08:00:00 to 08:00:20 UTC (20 s), 200 samples (2.02 CPU s)"),
        "{}",
        &svg[..svg.len().min(3000)]
    );
    assert!(!svg.contains("unix s"));
    let diff = get(
        &app,
        &format!("/api/v1/diff?from={}&to={}&format=svg", T0 + 10, T0 + 20),
    )
    .await;
    assert!(
        diff.text()
            .contains("new 2027-01-15 08:00:10 to 08:00:20 UTC (10 s)")
    );
}
