//! The agent's API as it is exposed: the refusal to serve a wildcard address without a
//! token, HTTPS with a token on loopback, and a burst of mixed queries against a seeded
//! store (light endpoints stay fast, memory comes back).
//!
//! Every agent here is short-lived and killed (SIGKILL) by a guard, whatever the test does.

use std::io::{BufRead as _, Read as _, Write as _};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use profiler_model::{Frame, FrameKind, Labels, Profile, ProfileMeta, keys};
use profiler_store::{Store, StoreConfig, Window};

use crate::common::{ember, privileged, tempdir};

/// An agent that is killed when dropped.
struct Agent {
    child: Child,
    base: String,
}

impl Drop for Agent {
    fn drop(&mut self) {
        self.child.kill().ok();
        self.child.wait().ok();
    }
}

impl Agent {
    /// Starts `ember agent` at 1 Hz (the API is what is tested, not the sampler) with
    /// `args`, and waits for the line saying where the API listens.
    fn start(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Agent {
        let mut cmd = ember();
        cmd.args(["agent", "-F", "1", "--data-dir"])
            .arg(dir)
            .args(args)
            .stderr(Stdio::piped());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("starting ember agent");
        let stderr = child.stderr.take().expect("piped stderr");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stderr)
                .lines()
                .map_while(Result::ok)
            {
                let _ = tx.send(line);
            }
        });
        let mut agent = Agent {
            child,
            base: String::new(),
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            match rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
                Ok(line) => {
                    if let Some(url) = line.strip_prefix("ember: API listening on ") {
                        agent.base = url.trim().to_owned();
                        return agent;
                    }
                }
                Err(e) => panic!("the agent did not say where its API listens ({e})"),
            }
        }
    }

    fn port(&self) -> u16 {
        self.base
            .rsplit(':')
            .next()
            .and_then(|p| p.parse().ok())
            .expect("a port in the API's URL")
    }

    /// A `/proc/PID/status` field in KiB: `VmRSS`, `RssAnon` (the heap, not the mapped
    /// binaries the symbolizer caches), `VmHWM`.
    fn status_kib(&self, field: &str) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .expect("the agent's /proc status");
        status
            .lines()
            .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or_else(|| panic!("no {field} in /proc/PID/status"))
    }
}

#[test]
fn the_agent_refuses_a_wildcard_listen_without_a_token() {
    let dir = tempdir();
    let data = dir.path().join("store");
    let mut child = ember()
        .args(["agent", "--listen", "0.0.0.0:0", "--data-dir"])
        .arg(&data)
        .stderr(Stdio::piped())
        .spawn()
        .expect("starting ember agent");
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(s) = child.try_wait().expect("waiting") {
            break s;
        }
        if Instant::now() > deadline {
            child.kill().ok();
            child.wait().ok();
            panic!("the agent served 0.0.0.0 without a token instead of refusing");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let mut stderr = String::new();
    child
        .stderr
        .take()
        .expect("piped stderr")
        .read_to_string(&mut stderr)
        .expect("reading stderr");
    assert!(!status.success(), "{stderr}");
    assert!(
        stderr.contains("0.0.0.0:0")
            && stderr.contains("--api-token-file")
            && stderr.contains("EMBER_API_TOKEN")
            && stderr.contains("--insecure-listen"),
        "{stderr}"
    );
    assert!(!data.exists(), "the store was created before the refusal");
}

/// curl's status and body for `url` with extra arguments.
fn curl(args: &[&str], url: &str) -> (u16, String) {
    let out = std::process::Command::new("curl")
        .args(["-sS", "--max-time", "20", "-w", "\n%{http_code}"])
        .args(args)
        .arg(url)
        .output()
        .expect("running curl");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, code) = text.rsplit_once('\n').unwrap_or(("", &text));
    (code.trim().parse().unwrap_or(0), body.to_owned())
}

#[test]
fn a_tls_agent_with_a_token_answers_over_https_on_loopback() {
    let Some(_p) = privileged("a_tls_agent_with_a_token_answers_over_https_on_loopback") else {
        return;
    };
    let dir = tempdir();
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()])
        .expect("a self-signed certificate");
    let cert_path = dir.path().join("cert.pem");
    let key_path = dir.path().join("key.pem");
    let token_path = dir.path().join("token");
    std::fs::write(&cert_path, cert.cert.pem()).expect("writing the certificate");
    std::fs::write(&key_path, cert.signing_key.serialize_pem()).expect("writing the key");
    let token = "e2e-token-0123456789abcdef";
    std::fs::write(&token_path, format!("{token}\n")).expect("writing the token");
    let agent = Agent::start(
        &dir.path().join("store"),
        &[
            "--listen",
            "127.0.0.1:0",
            "--tls-cert",
            cert_path.to_str().expect("UTF-8 path"),
            "--tls-key",
            key_path.to_str().expect("UTF-8 path"),
            "--api-token-file",
            token_path.to_str().expect("UTF-8 path"),
        ],
        &[],
    );
    assert!(
        agent.base.starts_with("https://127.0.0.1:"),
        "{}",
        agent.base
    );
    let url = |path: &str| format!("https://localhost:{}{path}", agent.port());
    let resolve = format!("localhost:{}:127.0.0.1", agent.port());
    let cacert = cert_path.to_str().expect("UTF-8 path");
    let bearer = format!("Authorization: Bearer {token}");
    let tls = ["--resolve", resolve.as_str(), "--cacert", cacert];

    let (code, body) = curl(
        &[&tls[..], &["-H", &bearer]].concat(),
        &url("/api/v1/labels"),
    );
    assert_eq!(code, 200, "{body}");
    assert!(body.contains("\"labels\""), "{body}");
    let (code, _) = curl(&tls, &url("/healthz"));
    assert_eq!(code, 200);
    let (code, body) = curl(&tls, &url("/api/v1/labels"));
    assert_eq!(code, 401, "{body}");
    let (code, _) = curl(
        &[
            &tls[..],
            &["-H", "Authorization: Bearer wrong-token-0123456789"],
        ]
        .concat(),
        &url("/metrics"),
    );
    assert_eq!(code, 401);
    // The browser's way in: the login form's cookie.
    let (code, body) = curl(&tls, &url("/"));
    assert_eq!(code, 401);
    assert!(body.contains("action=\"/login\""), "{body}");
    let (code, _) = curl(
        &[&tls[..], &["-b", &format!("ember_token={token}")]].concat(),
        &url("/ui/app.js"),
    );
    assert_eq!(code, 200);
    // A rebound name, token or not.
    let (code, body) = curl(
        &[&tls[..], &["-H", &bearer, "-H", "Host: attacker.example"]].concat(),
        &url("/api/v1/labels"),
    );
    assert_eq!(code, 421, "{body}");
    // Plain HTTP on the TLS port gets no answer.
    let (code, _) = curl(&[], &format!("http://127.0.0.1:{}/healthz", agent.port()));
    assert_ne!(code, 200);
}

/// Writes `windows` windows of 10 s ending now, each with `stacks` random stacks 20 deep
/// over 2,000 function names: a busy node's worth of distinct stacks.
fn seed_store(dir: &Path, windows: u64, stacks: usize) {
    let mut store = Store::open(dir, StoreConfig::default()).expect("opening the store");
    let names: Vec<String> = (0..2000).map(|i| format!("fn_{i:04}")).collect();
    let mut rng: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = move || {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng
    };
    let now = profiler_model::time::now_unix_ns();
    let ns = 1_000_000_000;
    for w in 0..windows {
        let start = now - (windows - w) * 10 * ns;
        let mut profile = Profile::new(ProfileMeta {
            start_unix_ns: start,
            duration_ns: 10 * ns,
            frequency_hz: 99,
            ..ProfileMeta::default()
        });
        for s in 0..stacks {
            let labels = Labels::new()
                .with(keys::COMM, format!("manystacks{}", s % 4))
                .with(keys::PID, format!("{}", 1000 + s % 4));
            let frames: Vec<Frame> = (0..20)
                .map(|_| {
                    let i = usize::try_from(next() % 2000).expect("small");
                    Frame::named(names[i].as_str(), FrameKind::User)
                })
                .collect();
            profile.add(&labels, &frames, 1 + next() % 5);
        }
        store
            .write_window(&Window {
                start_unix_ns: start,
                end_unix_ns: start + 10 * ns,
                profile,
            })
            .expect("writing a window");
    }
}

/// One `GET` over a fresh connection; the status (0 when the connection failed).
fn get_status(port: u16, path: &str) -> u16 {
    let Ok(mut conn) = TcpStream::connect(("127.0.0.1", port)) else {
        return 0;
    };
    conn.set_read_timeout(Some(Duration::from_secs(120))).ok();
    let request = format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n");
    if conn.write_all(request.as_bytes()).is_err() {
        return 0;
    }
    let mut response = Vec::new();
    let _ = conn.read_to_end(&mut response);
    let head = String::from_utf8_lossy(&response[..response.len().min(64)]).into_owned();
    head.split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0)
}

/// `/metrics` as text.
fn metrics_text(port: u16) -> String {
    let Ok(mut conn) = TcpStream::connect(("127.0.0.1", port)) else {
        return String::new();
    };
    conn.set_read_timeout(Some(Duration::from_secs(20))).ok();
    let request = "GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n";
    let mut response = String::new();
    if conn.write_all(request.as_bytes()).is_ok() {
        let _ = conn.read_to_string(&mut response);
    }
    response
}

/// A metric's value in Prometheus text (0 when absent).
fn gauge(text: &str, name: &str) -> u64 {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
        .unwrap_or(0)
}

/// Queries that ran past their budget still finish their work: waits for the last.
fn wait_idle(port: u16) {
    let idle_by = Instant::now() + Duration::from_secs(90);
    while !metrics_text(port).contains("ember_api_heavy_queries_running 0\n") {
        assert!(
            Instant::now() < idle_by,
            "heavy queries still running 90 s after a burst"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// `requests` mixed queries (every fourth a light `/labels`), `in_flight` at a time: per
/// request whether it was light, its status and its time; and the burst's length.
fn burst(port: u16, requests: usize, in_flight: usize) -> (Vec<(bool, u16, Duration)>, Duration) {
    let heavy = [
        "/api/v1/profile?from=now-1h&format=svg",
        "/api/v1/profile?from=now-1h&format=pprof",
        "/api/v1/profile?from=now-1h&format=folded",
        "/api/v1/top?from=now-1h&sort=total",
        "/api/v1/diff?from=now-3m&format=svg",
        "/api/v1/timeline?from=now-1h&filter=comm=manystacks1",
    ];
    let next = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let (tx, rx) = mpsc::channel::<(bool, u16, Duration)>();
    let started = Instant::now();
    let workers: Vec<_> = (0..in_flight)
        .map(|_| {
            let (next, tx) = (next.clone(), tx.clone());
            std::thread::spawn(move || {
                loop {
                    let i = next.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    if i >= requests {
                        return;
                    }
                    // Every fourth request is light.
                    let (light, path) = if i % 4 == 0 {
                        (true, "/api/v1/labels?from=now-15m")
                    } else {
                        (false, heavy[i % heavy.len()])
                    };
                    let t = Instant::now();
                    let status = get_status(port, path);
                    let _ = tx.send((light, status, t.elapsed()));
                }
            })
        })
        .collect();
    drop(tx);
    for w in workers {
        w.join().expect("a load thread");
    }
    (rx.iter().collect(), started.elapsed())
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

#[test]
fn under_a_burst_labels_stay_fast_and_memory_comes_back() {
    let Some(_p) = privileged("under_a_burst_labels_stay_fast_and_memory_comes_back") else {
        return;
    };
    let dir = tempdir();
    let store = dir.path().join("store");
    seed_store(&store, 12, 250);
    let agent = Agent::start(&store, &["--listen", "127.0.0.1:0"], &[]);
    let port = agent.port();
    // Warm up: one of each query, so caches and connections exist before the baseline.
    for path in [
        "/api/v1/labels?from=now-1h",
        "/api/v1/profile?from=now-1h&format=svg&width=1200",
        "/api/v1/top?from=now-1h",
    ] {
        let t = Instant::now();
        assert_eq!(get_status(port, path), 200, "{path}");
        println!("warm-up {path}: {:?}", t.elapsed());
    }
    // And a first, smaller burst: the agent samples itself and the load threads while it
    // answers, and the symbolizer's cache of their (debug, 100+ MB) binaries is not what
    // this test measures. Then the drain that names those samples.
    burst(port, 48, 32);
    wait_idle(port);
    std::thread::sleep(Duration::from_secs(3));
    let rss_before = agent.status_kib("VmRSS");
    let anon_before = agent.status_kib("RssAnon");
    let cache_before = gauge(&metrics_text(port), "ember_binary_cache_bytes");

    let (results, burst) = burst(port, 200, 32);
    let (requests, in_flight) = (200, 32);
    assert_eq!(results.len(), requests);
    let mut light: Vec<Duration> = results
        .iter()
        .filter(|r| r.0)
        .map(|r| {
            assert_eq!(r.1, 200, "/labels must never be refused");
            r.2
        })
        .collect();
    light.sort();
    let mut heavy_times: Vec<Duration> = results.iter().filter(|r| !r.0).map(|r| r.2).collect();
    heavy_times.sort();
    let count = |code| results.iter().filter(|r| !r.0 && r.1 == code).count();
    let (ok, busy, large) = (count(200), count(503), count(413));
    assert_eq!(
        ok + busy + large,
        requests - light.len(),
        "heavy answers other than 200/503/413: {:?}",
        results
            .iter()
            .filter(|r| !r.0)
            .map(|r| r.1)
            .collect::<Vec<_>>()
    );
    assert!(ok > 0, "no heavy query answered");
    // Queries that ran past their budget still finish their work; wait for the last.
    let idle_by = Instant::now() + Duration::from_secs(90);
    while !metrics_text(port).contains("ember_api_heavy_queries_running 0\n") {
        assert!(
            Instant::now() < idle_by,
            "heavy queries still running 90 s after the burst"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    std::thread::sleep(Duration::from_secs(1));
    let rss_after = agent.status_kib("VmRSS");
    let anon_after = agent.status_kib("RssAnon");
    let cache_after = gauge(&metrics_text(port), "ember_binary_cache_bytes");
    let rss_peak = agent.status_kib("VmHWM");
    let p99 = percentile(&light, 0.99);
    println!(
        "burst of {requests} at {in_flight} in flight in {burst:?}: heavy 200 {ok}, 503 {busy}, \
         413 {large}; heavy p50 {:?} p99 {:?}; /labels p50 {:?} p99 {p99:?} max {:?}; RSS before \
         {rss_before} KiB (heap {anon_before}), after {rss_after} KiB (heap {anon_after}), peak \
         {rss_peak} KiB; symbolizer's binary cache \
         {cache_before} -> {cache_after} bytes",
        percentile(&heavy_times, 0.5),
        percentile(&heavy_times, 0.99),
        percentile(&light, 0.5),
        light.last().copied().unwrap_or_default(),
    );
    // Generous for a busy 2-core CI machine; the probe saw 7.5 s before the budgets.
    assert!(
        p99 < Duration::from_secs(2),
        "/labels p99 {p99:?} under load"
    );
    // The heap is what the queries use (the probe saw 134 -> 699 MB, staying at 600);
    // the whole RSS also moves with the symbolizer's mapped binaries.
    assert!(
        anon_after < anon_before + 64 * 1024,
        "the heap grew from {anon_before} KiB to {anon_after} KiB after the burst"
    );
    assert!(
        rss_after < rss_before + 128 * 1024,
        "RSS grew from {rss_before} KiB to {rss_after} KiB after the burst"
    );
}
