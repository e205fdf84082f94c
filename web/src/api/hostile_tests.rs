//! What the hostile probe of issue 13 found to hold, kept so: a sweep of malformed requests
//! over every endpoint answers 4xx (never 5xx, never a hang), paths never leave the embedded
//! UI, and hostile process and function names come out escaped in every text format.

use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::{Request, StatusCode};

use super::testutil::{FakeBackend, get, labels, range, send, window};
use super::{ApiConfig, app};

/// Every GET endpoint that takes query parameters.
const ENDPOINTS: [&str; 9] = [
    "/api/v1/profile",
    "/api/v1/labels",
    "/api/v1/top",
    "/api/v1/timeline",
    "/api/v1/diff",
    "/api/v1/flame",
    "/api/v1/cpu",
    "/api/v1/explore",
    "/api/v1/types",
];

/// Query strings a hostile or careless client sends: broken percent-encoding, bytes that
/// are not UTF-8, NULs, control characters, numbers past every range, repeated and empty
/// parameters, expression syntax and very long values.
fn hostile_queries() -> Vec<String> {
    let long = "a".repeat(64 * 1024);
    let mut q: Vec<String> = [
        "from=%zz",
        "from=%",
        "from=%f",
        "filter=%ff%fe%fd",
        "filter=comm=%00split",
        "filter=comm=split%0a%0d",
        "filter=%c0%af",
        "from=18446744073709551616",
        "from=-99999999999999999999h",
        "to=1e309",
        "from=NaN&to=inf",
        "from=now&to=now",
        "from=10&to=5",
        "from=&to=&filter=&format=&type=",
        "from=1&from=2&from=3",
        "format=folded&format=svg&format=pprof",
        "format=../../etc/passwd",
        "type=%2e%2e",
        "filter=comm%3dsplit%2cpid%3d",
        "filter=,,,,",
        "filter=comm==split",
        "filter=pid=0x2a",
        "filter=pid=99999999999999999999",
        "max_stacks=-1",
        "max_stacks=18446744073709551616",
        "limit=0&limit=-5",
        "base_from=x&base_to=y",
        "group=%00",
        "by=__proto__",
        "unit=%ef%bf%bd",
        "&&&&===&&",
        "=",
        "%3d%3d%3d",
    ]
    .iter()
    .map(|s| (*s).to_owned())
    .collect();
    q.push(format!("filter=comm={long}"));
    q.push(format!("from={long}"));
    q.push(format!("{long}={long}"));
    q.push(
        (0..2000)
            .map(|i| format!("p{i}=1"))
            .collect::<Vec<_>>()
            .join("&"),
    );
    q
}

#[tokio::test]
async fn a_sweep_of_malformed_requests_gets_4xx_or_an_answer_never_5xx_or_a_hang() {
    let app = app(FakeBackend::standard(), &ApiConfig::default());
    let mut tried = 0;
    for endpoint in ENDPOINTS {
        for query in hostile_queries() {
            for uri in [
                format!("{endpoint}?{query}"),
                format!("{endpoint}?{}&{query}", range(0, 20)),
            ] {
                // A URI the `http` crate refuses never reaches the router: hyper answers
                // it with its own 400.
                let Ok(req) = Request::builder().uri(uri.as_str()).body(Body::empty()) else {
                    continue;
                };
                let started = Instant::now();
                let a = tokio::time::timeout(Duration::from_secs(10), send(&app, req))
                    .await
                    .unwrap_or_else(|_| panic!("{uri} hung"));
                tried += 1;
                let shown = &uri[..uri.len().min(120)];
                assert!(
                    a.status.is_success() || a.status.is_client_error(),
                    "{shown}: {} {}",
                    a.status,
                    String::from_utf8_lossy(&a.body[..a.body.len().min(300)])
                );
                assert!(
                    started.elapsed() < Duration::from_secs(5),
                    "{shown} was slow"
                );
                if a.status == StatusCode::BAD_REQUEST {
                    // A refusal says what was wrong, as JSON.
                    let v: serde_json::Value = serde_json::from_slice(&a.body)
                        .unwrap_or_else(|e| panic!("{shown}: a 400 that is not JSON ({e})"));
                    assert!(
                        v["error"].as_str().is_some_and(|e| !e.is_empty()),
                        "{shown}"
                    );
                }
            }
        }
    }
    assert!(tried > 500, "only {tried} requests could be built");
}

#[tokio::test]
async fn paths_never_leave_the_embedded_ui() {
    let app = app(FakeBackend::standard(), &ApiConfig::default());
    for uri in [
        "/ui/..%2f..%2f..%2fetc%2fpasswd",
        "/ui/%2e%2e/%2e%2e/etc/passwd",
        "/ui/%2e%2e%2fCargo.toml",
        "/ui/..%5c..%5cCargo.toml",
        "/ui/....//....//etc/passwd",
        "/ui/%252e%252e%252fetc%252fpasswd",
        "/ui/app.js%00.txt",
        "/ui/.%2fapp.js",
        "/ui/../../etc/passwd",
        "/../../../../etc/passwd",
        "/ui//etc/passwd",
        "/ui/%2fetc%2fpasswd",
        "/api/v1/../../etc/passwd",
    ] {
        let Ok(req) = Request::builder().uri(uri).body(Body::empty()) else {
            continue;
        };
        let a = send(&app, req).await;
        let body = String::from_utf8_lossy(&a.body);
        assert!(
            a.status == StatusCode::NOT_FOUND || a.status == StatusCode::BAD_REQUEST,
            "{uri}: {} {body}",
            a.status
        );
        assert!(
            !body.contains("root:") && !body.contains("[package]"),
            "{uri} served a file: {body}"
        );
    }
}

/// A process named to break formats (`comm` is any 15 bytes a user chooses) and a function
/// named like markup.
fn hostile_backend() -> std::sync::Arc<FakeBackend> {
    let evil = labels("a;b c\n<x>&\"'", "66");
    let b = FakeBackend::default();
    b.push(window(
        0,
        &[(
            &evil,
            &["main", "<script>alert(1)</script>", "f&g\"h'i"],
            50,
        )],
    ));
    std::sync::Arc::new(b)
}

#[tokio::test]
async fn hostile_names_are_escaped_in_svg_and_folded() {
    let app = app(hostile_backend(), &ApiConfig::default());
    let r = range(0, 20);
    let svg = get(&app, &format!("/api/v1/profile?{r}&format=svg")).await;
    assert_eq!(svg.status, StatusCode::OK);
    let text = svg.text();
    assert!(text.contains("alert(1)"), "the frame is drawn: {text}");
    assert!(
        !text.contains("<script>") && !text.contains("<x>"),
        "markup from a name reached the SVG raw"
    );
    assert!(text.contains("&lt;script&gt;"), "not escaped as text");
    assert!(!text.contains("f&g"), "a raw `&` from a name");
    let folded = get(&app, &format!("/api/v1/profile?{r}&format=folded")).await;
    assert_eq!(folded.status, StatusCode::OK);
    let lines: Vec<&str> = folded.text().lines().collect();
    // One stack, one line: the process name's `;`, space and newline cannot split it.
    assert_eq!(lines.len(), 1, "{lines:?}");
    let (stack, count) = lines[0].rsplit_once(' ').expect("stack and count");
    assert_eq!(count, "50");
    let frames: Vec<&str> = stack.split(';').collect();
    assert_eq!(frames.len(), 4, "{frames:?}");
    assert!(!frames[0].contains([' ', '\n', ';']), "{:?}", frames[0]);
    assert_eq!(frames[2], "<script>alert(1)</script>");
}
