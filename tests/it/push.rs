//! `ember agent` pushing to fleet backends, checked by a receiver that decodes with the
//! official schemas (tests/push/receiver.py: PyPI `opentelemetry-proto`, Pyroscope's
//! `push.proto` compiled by grpcio-tools) and by `go tool pprof`.
//!
//! The receiver's venv comes from `scripts/bootstrap.sh --test`; without it a test skips
//! (loudly), except in CI, where it fails.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use profiler_store::{Store, StoreConfig};
use serde_json::Value;

use crate::common::{
    ember, example, go, privileged, repo_root, share_agrees, share_bound, skip, tempdir,
};

/// The receiver's python, or `None` (after a skip message) without the venv.
fn receiver_python(test: &str) -> Option<PathBuf> {
    let venv = repo_root().join("tests/push/.venv");
    let python = venv.join("bin/python");
    if python.exists() && venv.join("gen/pyroscope/push/v1/push_pb2.py").exists() {
        return Some(python);
    }
    assert!(
        std::env::var_os("CI").is_none(),
        "{test}: CI is set but tests/push/.venv is missing (scripts/bootstrap.sh --test makes it)"
    );
    skip(
        test,
        "no tests/push/.venv (run scripts/bootstrap.sh --test)",
    );
    None
}

/// A free loopback port (nothing listens on it afterwards: connections are refused).
fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("addr").port()
}

/// The test receiver on `port`, writing to `dir`.
struct Receiver {
    child: Child,
    out: PathBuf,
}

impl Receiver {
    fn start(python: &Path, dir: &Path, port: u16, reject_window: u32) -> Receiver {
        Receiver::start_with(python, dir, port, reject_window, &[])
    }

    /// [`Receiver::start`] with more arguments (`--tls-cert`, `--tls-key`).
    fn start_with(
        python: &Path,
        dir: &Path,
        port: u16,
        reject_window: u32,
        extra: &[&std::ffi::OsStr],
    ) -> Receiver {
        let out = dir.join("received.jsonl");
        let pprof_dir = dir.join("pprof");
        let mut child = Command::new(python)
            .arg(repo_root().join("tests/push/receiver.py"))
            .args(["--port", &port.to_string(), "--out"])
            .arg(&out)
            .arg("--pprof-dir")
            .arg(&pprof_dir)
            .args(["--reject-window", &reject_window.to_string()])
            .args(extra)
            .stdout(Stdio::piped())
            .spawn()
            .expect("starting the receiver");
        let mut line = String::new();
        BufReader::new(child.stdout.take().expect("stdout"))
            .read_line(&mut line)
            .expect("the receiver's first line");
        assert!(line.starts_with("listening"), "receiver said `{line}`");
        Receiver { child, out }
    }

    /// Every request line so far.
    fn lines(&self) -> Vec<Value> {
        std::fs::read_to_string(&self.out)
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).expect("a JSON line"))
            .collect()
    }

    /// The accepted windows of `kind` in arrival order.
    fn windows(&self, kind: &str) -> Vec<Value> {
        self.lines()
            .into_iter()
            .filter(|l| l["kind"] == kind && l.get("windows").is_some())
            .flat_map(|l| l["windows"].as_array().cloned().unwrap_or_default())
            .collect()
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts the agent (99 Hz) with `args`; its stderr is drained into a shared buffer.
fn start_agent(
    data_dir: &Path,
    args: &[&str],
) -> (Child, std::sync::Arc<std::sync::Mutex<String>>) {
    let mut child = ember()
        .args([
            "agent",
            "-F",
            "99",
            "--push-host-name",
            "test-node",
            "--data-dir",
        ])
        .arg(data_dir)
        .args(args)
        .env("RUST_LOG", "info")
        .stderr(Stdio::piped())
        .spawn()
        .expect("starting ember agent");
    let log = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
    let sink = log.clone();
    let stderr = child.stderr.take().expect("stderr");
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let mut s = sink.lock().expect("log lock");
            s.push_str(&line);
            s.push('\n');
        }
    });
    (child, log)
}

fn stop(mut agent: Child, log: &std::sync::Mutex<String>) -> String {
    // SAFETY: kill(2) on our own child.
    unsafe { libc::kill(agent.id() as i32, libc::SIGTERM) };
    let status = agent.wait().expect("waiting for the agent");
    std::thread::sleep(Duration::from_millis(100));
    let log = log.lock().expect("log lock").clone();
    assert!(status.success(), "{log}");
    log
}

/// Waits until both kinds received a window starting after `after_ns` (windows arrive in
/// order, so every window before it has arrived too); a loaded machine closes windows late.
fn wait_past(receiver: &Receiver, kinds: &[&str], after_ns: u64, log: &std::sync::Mutex<String>) {
    let deadline = Instant::now() + Duration::from_secs(300);
    while !kinds.iter().all(|kind| {
        receiver
            .windows(kind)
            .iter()
            .any(|w| w["start_ns"].as_u64() > Some(after_ns))
    }) {
        assert!(
            Instant::now() < deadline,
            "no window after the workload arrived: {}",
            log.lock().expect("log lock")
        );
        std::thread::sleep(Duration::from_millis(300));
    }
}

fn now_ns() -> u64 {
    profiler_model::time::now_unix_ns()
}

fn run_split(seconds: &str) {
    let status = Command::new(example("split"))
        .arg(seconds)
        .stderr(Stdio::null())
        .status()
        .expect("running split");
    assert!(status.success());
}

/// Shares of `fn_a` and `fn_b` among OTLP samples of the `split` executable.
fn otlp_split(windows: &[Value]) -> (u64, f64, f64) {
    let (mut total, mut a, mut b) = (0u64, 0u64, 0u64);
    for w in windows {
        for s in w["samples"].as_array().expect("samples") {
            if s["attrs"]["process.executable.name"] != "split" {
                continue;
            }
            let v = s["value"].as_u64().expect("value");
            let stack: Vec<&str> = s["stack"]
                .as_array()
                .expect("stack")
                .iter()
                .filter_map(Value::as_str)
                .collect();
            total += v;
            if stack.contains(&"fn_a") {
                a += v;
            }
            if stack.contains(&"fn_b") {
                b += v;
            }
        }
    }
    assert!(total > 0, "no split samples arrived over OTLP");
    (total, a as f64 / total as f64, b as f64 / total as f64)
}

#[test]
fn windows_reach_pyroscope_and_otlp_with_the_split_and_their_labels() {
    let test = "windows_reach_pyroscope_and_otlp_with_the_split_and_their_labels";
    let Some(_p) = privileged(test) else { return };
    let Some(python) = receiver_python(test) else {
        return;
    };
    let Some(go) = go(test) else { return };
    let dir = tempdir();
    let port = free_port();
    let receiver = Receiver::start(&python, dir.path(), port, 0);
    let url = format!("http://127.0.0.1:{port}");
    let (agent, log) = start_agent(
        &dir.path().join("store"),
        &[
            "--window",
            "2s",
            "--listen",
            "none",
            "--pyroscope-endpoint",
            &url,
            "--otlp-endpoint",
            &url,
        ],
    );
    std::thread::sleep(Duration::from_millis(800));
    // 10 s rather than 6: on a busy machine split gets a share of a CPU, and the ±5-point
    // tolerance needs some 300 samples.
    run_split("10");
    wait_past(&receiver, &["otlp", "pyroscope"], now_ns(), &log);
    let log = stop(agent, &log);
    assert!(log.contains("pushing windows"), "{log}");

    // OTLP bodies go gzip-compressed, as the OTel SDKs send them by default.
    let (wire, decoded) = receiver
        .lines()
        .iter()
        .filter(|l| l["kind"] == "otlp" && l.get("windows").is_some())
        .fold((0, 0), |(w, d), l| {
            assert_eq!(l["headers"]["content-encoding"], "gzip", "{l}");
            (
                w + l["bytes"].as_u64().expect("bytes"),
                d + l["decoded_bytes"].as_u64().expect("decoded bytes"),
            )
        });
    eprintln!("otlp: {wire} bytes on the wire for {decoded} bytes of protobuf");
    // Compressed, not a bound on gzip's ratio: one run's windows shrank only to 0.501 of
    // their protobuf.
    assert!(wire > 0 && wire * 4 < decoded * 3, "{wire} of {decoded}");

    // OTLP: the split, the semantic-convention attributes, the resource, the types.
    let otlp = receiver.windows("otlp");
    let (total, a, b) = otlp_split(&otlp);
    eprintln!("otlp: {total} split samples, fn_a {a:.3}, fn_b {b:.3}");
    assert!(total > 300, "too few split samples: {total}");
    assert!(
        share_agrees(a, 0.70, total) && share_agrees(b, 0.30, total),
        "fn_a {a} fn_b {b} (± {:.3})",
        share_bound(0.70, total)
    );
    let split = otlp
        .iter()
        .find(|w| w["service"] == "split")
        .expect("a split profile");
    assert_eq!(split["resource"]["host.name"], "test-node");
    assert_eq!(
        split["sample_type"],
        serde_json::json!(["samples", "count"])
    );
    assert_eq!(
        split["period_type"],
        serde_json::json!(["cpu", "nanoseconds"])
    );
    assert_eq!(split["period"], 1_000_000_000 / 99);
    assert!(
        !split["build_ids"].as_array().expect("ids").is_empty(),
        "{split}"
    );
    let attrs = &split["samples"][0]["attrs"];
    for key in [
        "process.pid",
        "thread.id",
        "thread.name",
        "process.executable.name",
    ] {
        assert!(attrs.get(key).is_some(), "{key} missing in {attrs}");
    }
    assert!(attrs["process.pid"].is_i64() || attrs["process.pid"].is_string());

    // Pyroscope: series labels, and the pprofs read by `go tool pprof` with the same split.
    let pyro = receiver.windows("pyroscope");
    let split_series: Vec<&Value> = pyro.iter().filter(|w| w["service"] == "split").collect();
    assert!(!split_series.is_empty(), "no split series: {pyro:?}");
    let labels = &split_series[0]["labels"];
    assert_eq!(labels["__name__"], "process_cpu");
    assert_eq!(labels["hostname"], "test-node");
    assert!(
        labels.get("pid").is_none(),
        "pid is a sample label, not a series label"
    );
    let files: Vec<String> = split_series
        .iter()
        .map(|w| w["pprof"].as_str().expect("path").to_owned())
        .collect();
    let top = Command::new(&go)
        .args([
            "tool",
            "pprof",
            "-top",
            "-cum",
            "-nodecount=1000",
            "-sample_index=samples",
        ])
        .args(&files)
        .output()
        .expect("go tool pprof");
    let text = String::from_utf8_lossy(&top.stdout);
    assert!(
        top.status.success(),
        "{}",
        String::from_utf8_lossy(&top.stderr)
    );
    let total: f64 = text
        .lines()
        .find_map(|l| {
            let (_, rest) = l.split_once(" of ")?;
            rest.split_whitespace().next()?.parse().ok()
        })
        .unwrap_or_else(|| panic!("no total in {text}"));
    let cum = |name: &str| -> f64 {
        text.lines()
            .find_map(|l| {
                let f: Vec<&str> = l.split_whitespace().collect();
                (f.last() == Some(&name)).then(|| f[3].parse().ok())?
            })
            .unwrap_or_else(|| panic!("no {name} in {text}"))
    };
    let (pa, pb) = (cum("fn_a") / total, cum("fn_b") / total);
    eprintln!("pyroscope pprof: {total} samples, fn_a {pa:.3}, fn_b {pb:.3}");
    let n = total as u64;
    assert!(
        share_agrees(pa, 0.70, n) && share_agrees(pb, 0.30, n),
        "± {:.3}: {text}",
        share_bound(0.70, n)
    );
    let tags = Command::new(&go)
        .args(["tool", "pprof", "-tags"])
        .arg(&files[0])
        .output()
        .expect("go tool pprof -tags");
    let tags = String::from_utf8_lossy(&tags.stdout);
    for tag in ["pid", "thread", "comm"] {
        assert!(
            tags.contains(&format!(" {tag}:")),
            "no {tag} sample label in {tags}"
        );
    }
    let raw = Command::new(&go)
        .args(["tool", "pprof", "-raw"])
        .arg(&files[0])
        .output()
        .expect("go tool pprof -raw");
    let raw = String::from_utf8_lossy(&raw.stdout);
    let mappings = raw.split("Mappings").nth(1).unwrap_or_default();
    assert!(
        mappings
            .lines()
            .any(|l| l.contains("split") && l.split_whitespace().count() >= 5),
        "no split mapping with a build-id in {mappings}"
    );
    assert!(pyro.iter().all(|w| w["pprof_bytes"].as_u64() > Some(0)));
}

/// Start times of the store's windows that hold samples of something else than the idle
/// task (a window of idle CPU only has no service to send).
fn stored_windows(dir: &Path) -> BTreeSet<u64> {
    let store = Store::open_read_only(dir, StoreConfig::default()).expect("read the store");
    store
        .windows_after(None, 100_000)
        .expect("list")
        .into_iter()
        .filter(|w| {
            store
                .window(w.id)
                .expect("window")
                .is_some_and(|w| w.profile.without_idle().total() > 0)
        })
        .map(|w| w.start_unix_ns)
        .collect()
}

/// The start of every window in the store, idle-only ones included.
fn every_stored_window(dir: &Path) -> BTreeSet<u64> {
    let store = Store::open_read_only(dir, StoreConfig::default()).expect("read the store");
    store
        .windows_after(None, 100_000)
        .expect("list")
        .into_iter()
        .map(|w| w.start_unix_ns)
        .collect()
}

/// Every window of `stored` arrived for `kind`, once per id, in order, and nothing arrived
/// that `in_store` (the store after the agent stopped: windows closed after `stored` was
/// read may arrive too) does not hold.
fn check_delivery(
    receiver: &Receiver,
    kind: &str,
    stored: &BTreeSet<u64>,
    in_store: &BTreeSet<u64>,
) {
    let windows = receiver.windows(kind);
    let mut ids = HashSet::new();
    let mut last = 0u64;
    for w in &windows {
        let id = w["id"].as_str().expect("id").to_owned();
        assert!(
            ids.insert(id.clone()),
            "{kind}: window id {id} arrived twice"
        );
        let start = w["start_ns"].as_u64().expect("start");
        assert!(start >= last, "{kind}: out of order ({start} after {last})");
        last = start;
    }
    let got: BTreeSet<u64> = windows
        .iter()
        .filter_map(|w| w["start_ns"].as_u64())
        .collect();
    let missing: Vec<&u64> = stored.difference(&got).collect();
    assert!(
        missing.is_empty(),
        "{kind}: windows never arrived: {missing:?} (got {})",
        got.len()
    );
    let foreign: Vec<&u64> = got.difference(in_store).collect();
    assert!(
        foreign.is_empty(),
        "{kind}: windows not in the store: {foreign:?}"
    );
}

fn outage(test: &str, kill_during_outage: bool) {
    let Some(_p) = privileged(test) else { return };
    let Some(python) = receiver_python(test) else {
        return;
    };
    let dir = tempdir();
    let store = dir.path().join("store");
    let port = free_port();
    let url = format!("http://127.0.0.1:{port}");
    let args = [
        "--window",
        "2s",
        "--listen",
        "none",
        "--push-max-backoff",
        "3s",
        "--pyroscope-endpoint",
        &url,
        "--otlp-endpoint",
        &url,
    ];
    let outage_started = Instant::now();
    let (mut agent, mut log) = start_agent(&store, &args);
    let workload = Command::new(example("split"))
        .arg("24")
        .stderr(Stdio::null())
        .spawn()
        .expect("split");
    if kill_during_outage {
        std::thread::sleep(Duration::from_secs(12));
        agent.kill().expect("kill -9");
        agent.wait().expect("reap");
        let before = stored_windows(&store).len();
        assert!(before >= 2, "windows stored before the kill: {before}");
        std::thread::sleep(Duration::from_secs(2));
        (agent, log) = start_agent(&store, &args);
    }
    std::thread::sleep(Duration::from_secs(30).saturating_sub(outage_started.elapsed()));
    let receiver = Receiver::start(&python, dir.path(), port, 0);
    let mut workload = workload;
    workload.wait().expect("split");
    // Generous: on a loaded machine the agent closes its windows late, and the backoff
    // (at most 3 s here) adds to it.
    let deadline = Instant::now() + Duration::from_secs(240);
    loop {
        let stored = stored_windows(&store);
        let arrived = |kind| {
            let got: BTreeSet<u64> = receiver
                .windows(kind)
                .iter()
                .filter_map(|w| w["start_ns"].as_u64())
                .collect();
            stored.is_subset(&got)
        };
        if arrived("otlp") && arrived("pyroscope") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the backlog did not drain: {}",
            log.lock().expect("log lock")
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    let stored_before_stop = stored_windows(&store);
    let log = stop(agent, &log);
    assert!(
        stored_before_stop.len() >= 6,
        "windows: {}",
        stored_before_stop.len()
    );
    let in_store = every_stored_window(&store);
    for kind in ["otlp", "pyroscope"] {
        check_delivery(&receiver, kind, &stored_before_stop, &in_store);
    }
    // The first failure and the recovery are logged, not every retry.
    let failures = log.matches("push failed; retrying").count();
    assert!(
        (1..=4).contains(&failures),
        "{failures} failure lines:\n{log}"
    );
    assert!(log.contains("push recovered"), "{log}");
    // Backlog requests carried several windows each (bounded by --push-batch-windows).
    let per_request: BTreeMap<usize, usize> = receiver
        .lines()
        .iter()
        .filter(|l| l["kind"] == "otlp")
        .map(|l| {
            let starts: BTreeSet<u64> = l["windows"]
                .as_array()
                .map(|w| w.iter().filter_map(|w| w["start_ns"].as_u64()).collect())
                .unwrap_or_default();
            starts.len()
        })
        .fold(BTreeMap::new(), |mut m, n| {
            *m.entry(n).or_insert(0) += 1;
            m
        });
    assert!(per_request.keys().all(|&n| n <= 6), "{per_request:?}");
    assert!(
        per_request.keys().any(|&n| n > 1),
        "no batched backlog: {per_request:?}"
    );
}

#[test]
fn an_outage_then_recovery_delivers_every_window_once_in_order() {
    outage(
        "an_outage_then_recovery_delivers_every_window_once_in_order",
        false,
    );
}

#[test]
fn an_agent_killed_during_an_outage_resumes_from_its_cursor() {
    outage(
        "an_agent_killed_during_an_outage_resumes_from_its_cursor",
        true,
    );
}

/// A test CA (PEM) and a certificate and key (PEM) it signed for `localhost`.
fn test_pki(serial: u32) -> (String, String, String) {
    let ca_key = rcgen::KeyPair::generate().expect("a CA key");
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("CA params");
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    params.distinguished_name.push(
        rcgen::DnType::CommonName,
        format!("ember push test CA {serial}"),
    );
    let ca = rcgen::CertifiedIssuer::self_signed(params, ca_key).expect("a CA");
    let key = rcgen::KeyPair::generate().expect("a key");
    let cert = rcgen::CertificateParams::new(vec!["localhost".to_owned()])
        .expect("params")
        .signed_by(&key, &ca)
        .expect("a certificate");
    (ca.pem(), cert.pem(), key.serialize_pem())
}

/// Agents pushed to http only, and an https endpoint was refused at start. Now: with the
/// receiver's CA given by --push-ca-file the windows arrive over TLS; with another CA
/// every try fails on the certificate, is logged with the endpoint and the reason, counted
/// as a retry (not as a refused window) and nothing is skipped: the next agent on the same
/// store, given the right CA, sends what the first one could not.
#[test]
fn pushes_reach_an_https_receiver_and_a_wrong_ca_is_retried() {
    let test = "pushes_reach_an_https_receiver_and_a_wrong_ca_is_retried";
    let Some(_p) = privileged(test) else { return };
    let Some(python) = receiver_python(test) else {
        return;
    };
    let dir = tempdir();
    let (ca, cert, key) = test_pki(1);
    let (other_ca, _, _) = test_pki(2);
    let write = |name: &str, text: &str| {
        let path = dir.path().join(name);
        std::fs::write(&path, text).expect("writing a PEM file");
        path
    };
    let (ca, cert, key, other_ca) = (
        write("ca.pem", &ca),
        write("cert.pem", &cert),
        write("key.pem", &key),
        write("other-ca.pem", &other_ca),
    );
    let port = free_port();
    let receiver = Receiver::start_with(
        &python,
        dir.path(),
        port,
        0,
        &[
            "--tls-cert".as_ref(),
            cert.as_os_str(),
            "--tls-key".as_ref(),
            key.as_os_str(),
        ],
    );
    let url = format!("https://localhost:{port}");
    let store = dir.path().join("store");
    let api_port = free_port();
    let listen = format!("127.0.0.1:{api_port}");
    let args = |ca: &Path| -> Vec<String> {
        [
            "--window",
            "1s",
            "--listen",
            &listen,
            "--otlp-endpoint",
            &url,
            "--push-ca-file",
            ca.to_str().expect("UTF-8 path"),
        ]
        .map(str::to_owned)
        .to_vec()
    };

    // The wrong CA: retried, never skipped.
    let wrong = args(&other_ca);
    let (agent, log) = start_agent(&store, &as_strs(&wrong));
    let label = "{destination=\"otlp\",url=";
    let deadline = Instant::now() + Duration::from_secs(120);
    let metrics = loop {
        let out = Command::new("curl")
            .args(["-sS", &format!("http://{listen}/metrics")])
            .output()
            .expect("curl");
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let retries = text
            .lines()
            .find_map(|l| {
                l.strip_prefix(&format!("ember_push_retries_total{label}"))?
                    .rsplit(' ')
                    .next()?
                    .parse::<f64>()
                    .ok()
            })
            .unwrap_or(0.0);
        if retries >= 2.0 {
            break text;
        }
        assert!(
            Instant::now() < deadline,
            "{}",
            log.lock().expect("log lock")
        );
        std::thread::sleep(Duration::from_millis(300));
    };
    let log = stop(agent, &log);
    assert_eq!(
        metric(&metrics, &format!("ember_push_windows_failed_total{label}")),
        0.0,
        "a certificate error is not a refused window: {metrics}"
    );
    assert_eq!(
        metric(&metrics, &format!("ember_push_windows_pushed_total{label}")),
        0.0
    );
    assert_eq!(metric(&metrics, &format!("ember_push_up{label}")), 0.0);
    let reason = format!(
        "TLS with `https://localhost:{port}/v1development/profiles` failed: invalid peer \
         certificate: UnknownIssuer"
    );
    assert!(log.contains(&reason), "{log}");
    assert_eq!(log.matches("push failed; retrying").count(), 1, "{log}");
    assert!(receiver.windows("otlp").is_empty(), "nothing got through");

    // The right CA: the windows of the first run arrive too, in order.
    let right = args(&ca);
    let (agent, log) = start_agent(&store, &as_strs(&right));
    let first_run_end = now_ns();
    std::thread::sleep(Duration::from_millis(500));
    wait_past(&receiver, &["otlp"], first_run_end, &log);
    let log = stop(agent, &log);
    let starts: Vec<u64> = receiver
        .windows("otlp")
        .iter()
        .filter_map(|w| w["start_ns"].as_u64())
        .collect();
    assert!(
        starts.windows(2).all(|w| w[0] <= w[1]),
        "in order: {starts:?}"
    );
    assert!(
        starts
            .first()
            .is_some_and(|&s| s < first_run_end.saturating_sub(2_000_000_000)),
        "the first run's windows were sent: {starts:?}\n{log}"
    );
    for line in receiver.lines() {
        assert_eq!(line["headers"]["content-encoding"], "gzip", "{line}");
    }
}

fn as_strs(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

fn metric(text: &str, prefix: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(prefix)?.rsplit(' ').next()?.parse().ok())
        .unwrap_or_else(|| panic!("no metric {prefix} in {text}"))
}

#[test]
fn a_refused_window_is_skipped_and_counted_and_the_next_ones_flow() {
    let test = "a_refused_window_is_skipped_and_counted_and_the_next_ones_flow";
    let Some(_p) = privileged(test) else { return };
    let Some(python) = receiver_python(test) else {
        return;
    };
    let dir = tempdir();
    let port = free_port();
    let receiver = Receiver::start(&python, dir.path(), port, 2);
    let api_port = free_port();
    let url = format!("http://127.0.0.1:{port}");
    let listen = format!("127.0.0.1:{api_port}");
    let (agent, log) = start_agent(
        &dir.path().join("store"),
        &[
            "--window",
            "1s",
            "--listen",
            &listen,
            "--pyroscope-endpoint",
            &url,
        ],
    );
    let deadline = Instant::now() + Duration::from_secs(240);
    let rejected = loop {
        let lines = receiver.lines();
        let rejected: Vec<&Value> = lines
            .iter()
            .filter(|l| l.get("rejected").is_some())
            .collect();
        let after: BTreeSet<u64> = receiver
            .windows("pyroscope")
            .iter()
            .filter_map(|w| w["start_ns"].as_u64())
            .collect();
        if let Some(r) = rejected.first() {
            let start = r["rejected"][0].as_u64().expect("start");
            if after.iter().filter(|&&s| s > start).count() >= 3 {
                break start;
            }
        }
        assert!(
            Instant::now() < deadline,
            "{}",
            log.lock().expect("log lock")
        );
        std::thread::sleep(Duration::from_millis(300));
    };
    let metrics = Command::new("curl")
        .args(["-sS", &format!("http://{listen}/metrics")])
        .output()
        .expect("curl");
    let metrics = String::from_utf8_lossy(&metrics.stdout).into_owned();
    let log = stop(agent, &log);
    let received: BTreeSet<u64> = receiver
        .windows("pyroscope")
        .iter()
        .filter_map(|w| w["start_ns"].as_u64())
        .collect();
    assert!(
        !received.contains(&rejected),
        "the refused window was accepted later"
    );
    let label = "{destination=\"pyroscope\",url=";
    assert_eq!(
        metric(&metrics, &format!("ember_push_windows_failed_total{label}")),
        1.0,
        "{metrics}"
    );
    assert!(metric(&metrics, &format!("ember_push_windows_pushed_total{label}")) >= 3.0);
    assert!(metric(&metrics, &format!("ember_push_bytes_sent_total{label}")) > 0.0);
    assert!(metric(&metrics, &format!("ember_push_lag_seconds{label}")) < 10.0);
    for family in [
        "ember_push_retries_total",
        "ember_push_windows_pending",
        "ember_push_up",
    ] {
        metric(&metrics, &format!("{family}{label}"));
    }
    assert_eq!(
        log.matches("the backend refused a window").count(),
        1,
        "{log}"
    );
    assert!(
        log.contains("window refused by the test receiver"),
        "the backend's message is logged: {log}"
    );
}

#[test]
fn a_process_in_a_simulated_pod_is_pushed_with_its_pod_and_namespace() {
    let test = "a_process_in_a_simulated_pod_is_pushed_with_its_pod_and_namespace";
    let Some(_p) = privileged(test) else { return };
    let Some(python) = receiver_python(test) else {
        return;
    };
    let dir = tempdir();
    let port = free_port();
    let receiver = Receiver::start(&python, dir.path(), port, 0);
    let url = format!("http://127.0.0.1:{port}");
    let (agent, log) = start_agent(
        &dir.path().join("store"),
        &[
            "--window",
            "2s",
            "--listen",
            "none",
            "--pyroscope-endpoint",
            &url,
            "--otlp-endpoint",
            &url,
        ],
    );
    std::thread::sleep(Duration::from_millis(800));
    // A container as the kubelet makes one: its own mount namespace, the pod's name as
    // host name, the service account's namespace file under /var/run/secrets.
    let hostname = dir.path().join("hostname");
    std::fs::write(&hostname, "checkout-7d9f8b6c5-x2x4q\n").expect("hostname file");
    let script = format!(
        "set -e; mount -t tmpfs pod-run /run; \
         mkdir -p /run/secrets/kubernetes.io/serviceaccount; \
         echo shop > /run/secrets/kubernetes.io/serviceaccount/namespace; \
         mount --bind {hostname} /etc/hostname; exec {split} 4",
        hostname = hostname.display(),
        split = example("split").display()
    );
    let status = Command::new("unshare")
        .args([
            "--mount",
            "--propagation",
            "private",
            "--",
            "sh",
            "-c",
            &script,
        ])
        .stderr(Stdio::null())
        .status()
        .expect("unshare");
    assert!(status.success(), "the simulated container failed");
    wait_past(&receiver, &["otlp", "pyroscope"], now_ns(), &log);
    stop(agent, &log);
    let pyro = receiver.windows("pyroscope");
    let series = pyro
        .iter()
        .find(|w| w["service"] == "shop/checkout")
        .unwrap_or_else(|| {
            let services: BTreeSet<&str> =
                pyro.iter().filter_map(|w| w["service"].as_str()).collect();
            panic!("no shop/checkout series; services: {services:?}")
        });
    assert_eq!(series["labels"]["namespace"], "shop");
    assert_eq!(series["labels"]["pod"], "checkout-7d9f8b6c5-x2x4q");
    let otlp = receiver.windows("otlp");
    let attrs = otlp
        .iter()
        .filter(|w| w["service"] == "shop/checkout")
        .flat_map(|w| w["samples"].as_array().cloned().unwrap_or_default())
        .map(|s| s["attrs"].clone())
        .next()
        .expect("an OTLP sample of the pod");
    assert_eq!(attrs["k8s.namespace.name"], "shop", "{attrs}");
    assert_eq!(attrs["k8s.pod.name"], "checkout-7d9f8b6c5-x2x4q", "{attrs}");
    // The host's own processes keep the host's name and no pod.
    assert!(
        pyro.iter()
            .filter(|w| w["service"] != "shop/checkout")
            .all(|w| w["labels"].get("pod").is_none()),
        "a host process got a pod label"
    );
}

/// `ember agent --off-cpu` pushing `offcpu 4 sleep`: its off-CPU windows reach Pyroscope
/// as series named `off_cpu` (Pyroscope's name for the OpenTelemetry eBPF profiler's
/// off-CPU profiles) with an `off_cpu/nanoseconds` pprof, and OTLP as profiles of sample
/// type `off_cpu/nanoseconds` without a period (the OpenTelemetry eBPF profiler's
/// off-CPU type), each charging the time the program measured it waited; the CPU windows
/// keep their own types beside them.
#[test]
fn off_cpu_windows_are_pushed_as_their_own_profile_type() {
    let test = "off_cpu_windows_are_pushed_as_their_own_profile_type";
    let Some(_p) = privileged(test) else { return };
    let Some(python) = receiver_python(test) else {
        return;
    };
    let dir = tempdir();
    let port = free_port();
    let receiver = Receiver::start(&python, dir.path(), port, 0);
    let url = format!("http://127.0.0.1:{port}");
    let (agent, log) = start_agent(
        &dir.path().join("store"),
        &[
            "--window",
            "2s",
            "--listen",
            "none",
            "--off-cpu",
            "--counts-map-entries",
            "65536",
            "--pyroscope-endpoint",
            &url,
            "--otlp-endpoint",
            &url,
        ],
    );
    std::thread::sleep(Duration::from_millis(800));
    let out = Command::new(example("offcpu"))
        .args(["4", "sleep"])
        .stderr(Stdio::null())
        .output()
        .expect("running offcpu");
    assert!(out.status.success());
    let measured_us: f64 = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| {
            l.strip_prefix("blocked sleep_wait ")?
                .trim()
                .parse::<f64>()
                .ok()
        })
        .sum();
    assert!(measured_us > 500_000.0, "offcpu measured {measured_us} µs");
    wait_past(&receiver, &["otlp", "pyroscope"], now_ns(), &log);
    stop(agent, &log);
    // The wait in `clock_nanosleep` (the frame every walk of it has; see offcpu.rs).
    let in_sleep = |stack: &[&str]| stack.contains(&"__GI___clock_nanosleep");

    let otlp = receiver.windows("otlp");
    let types: BTreeSet<(String, String)> = otlp
        .iter()
        .map(|w| (w["sample_type"].to_string(), w["period_type"].to_string()))
        .collect();
    eprintln!("otlp types: {types:?}");
    let off: Vec<&Value> = otlp
        .iter()
        .filter(|w| w["sample_type"] == serde_json::json!(["off_cpu", "nanoseconds"]))
        .collect();
    assert!(!off.is_empty(), "no off-CPU profile over OTLP: {types:?}");
    assert!(
        off.iter()
            .all(|w| w["period"] == 0 && w["period_type"] == serde_json::json!(["", ""])),
        "off-CPU profiles have no period"
    );
    assert!(
        otlp.iter()
            .any(|w| w["sample_type"] == serde_json::json!(["samples", "count"])),
        "the CPU profiles are still sent"
    );
    let otlp_ns: u64 = off
        .iter()
        .flat_map(|w| w["samples"].as_array().cloned().unwrap_or_default())
        .filter(|s| s["attrs"]["process.executable.name"] == "offcpu")
        .filter(|s| {
            let stack: Vec<&str> = s["stack"]
                .as_array()
                .map(|a| a.iter().filter_map(Value::as_str).collect())
                .unwrap_or_default();
            in_sleep(&stack)
        })
        .map(|s| s["value"].as_u64().expect("value"))
        .sum();
    let ratio = otlp_ns as f64 / 1000.0 / measured_us;
    eprintln!(
        "otlp: {otlp_ns} ns off CPU in the sleep for {measured_us:.0} µs measured ({ratio:.3})"
    );
    assert!((0.85..=1.15).contains(&ratio), "{ratio}");

    // Pyroscope: an `off_cpu` series of the service, its pprof of type off_cpu/nanoseconds.
    let pyro = receiver.windows("pyroscope");
    let series: Vec<&Value> = pyro
        .iter()
        .filter(|w| w["service"] == "offcpu" && w["labels"]["__name__"] == "off_cpu")
        .collect();
    assert!(!series.is_empty(), "no off_cpu series of offcpu: {pyro:?}");
    assert!(
        pyro.iter()
            .any(|w| w["service"] == "offcpu" && w["labels"]["__name__"] == "process_cpu"),
        "the CPU series is still sent"
    );
    let mut pyro_us = 0;
    for w in &series {
        let path = w["pprof"].as_str().expect("pprof path");
        let file = std::fs::File::open(path).unwrap_or_else(|e| panic!("{path}: {e}"));
        let profile = profiler_model::pprof::decode_kind(file, profiler_model::ProfileKind::OffCpu)
            .unwrap_or_else(|e| panic!("{path}: {e}"));
        pyro_us += profile
            .stacks()
            .filter(|s| {
                let names: Vec<&str> = s
                    .frames
                    .iter()
                    .map(|&f| profile.frame(f).name.as_ref())
                    .collect();
                in_sleep(&names)
            })
            .map(|s| s.count)
            .sum::<u64>();
    }
    let ratio = pyro_us as f64 / measured_us;
    eprintln!("pyroscope: {pyro_us} µs off CPU in the sleep ({ratio:.3})");
    assert!((0.85..=1.15).contains(&ratio), "{ratio}");
}
