//! The tests' [`Backend`]: the real profile store (`profiler-store`) in memory, holding
//! hand-made windows, so the API's tests exercise the store's own overlap, filter and
//! label logic rather than a second copy of it. Behind a mutex, so a test can add windows
//! while requests run.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use axum::body::{Body, Bytes};
use axum::http::{Request, StatusCode, header};
use http_body_util::BodyExt as _;
use profiler_model::{Frame, FrameKind, Labels, Profile, ProfileKind, ProfileMeta, keys};
pub(crate) use profiler_store::Window;
use profiler_store::{Query, Store, StoreConfig};
use tower::ServiceExt as _;

use super::backend::{Backend, BackendError, Health, LabelValues, ProfileQuery, TimelinePoint};

/// Start of the first test window, unix seconds.
pub(crate) const T0: u64 = 1_800_000_000;
pub(crate) const NS: u64 = 1_000_000_000;

/// A [`Backend`] over an in-memory [`Store`]; "fake" only in what it holds.
pub(crate) struct FakeBackend {
    store: Mutex<Store>,
    /// When set, every call fails.
    pub(crate) fail: AtomicBool,
    /// What `/healthz` is told.
    pub(crate) health: Mutex<Health>,
    /// Milliseconds each profile and timeline query sleeps first: a slow store.
    pub(crate) delay_ms: AtomicU64,
}

impl Default for FakeBackend {
    fn default() -> Self {
        FakeBackend {
            store: Mutex::new(
                Store::open_in_memory(StoreConfig::default().with_downsample(None))
                    .expect("in-memory store"),
            ),
            fail: AtomicBool::new(false),
            health: Mutex::new(Health::Ok),
            delay_ms: AtomicU64::new(0),
        }
    }
}

fn frames(names: &[&str]) -> Vec<Frame> {
    names
        .iter()
        .map(|n| match n.strip_suffix("_[k]") {
            Some(k) => Frame::named(k, FrameKind::Kernel),
            None => Frame::named(*n, FrameKind::User),
        })
        .collect()
}

pub(crate) fn labels(comm: &str, pid: &str) -> Labels {
    Labels::new().with(keys::COMM, comm).with(keys::PID, pid)
}

/// A window of 10 s starting `offset_s` after [`T0`].
pub(crate) fn window(offset_s: u64, stacks: &[(&Labels, &[&str], u64)]) -> Window {
    let start = (T0 + offset_s) * NS;
    let mut profile = Profile::new(ProfileMeta {
        start_unix_ns: start,
        duration_ns: 10 * NS,
        frequency_hz: 99,
        ..ProfileMeta::default()
    });
    for (l, s, c) in stacks {
        profile.add(l, &frames(s), *c);
    }
    Window {
        start_unix_ns: start,
        end_unix_ns: start + 10 * NS,
        profile,
    }
}

impl FakeBackend {
    /// Two windows:
    /// - A `[T0, T0+10)`: split(42) `main;work;fn_a` 60 and `main;work;fn_b` 30, idle(0)
    ///   `cpu_idle_[k]` 100, cat(7) `main;read` 10;
    /// - B `[T0+10, T0+20)`: split(42) `fn_a` 20 and `fn_b` 80, idle 50.
    pub(crate) fn standard() -> Arc<Self> {
        let split = labels("split", "42");
        let idle = labels("swapper", "0");
        let cat = labels("cat", "7");
        let b = FakeBackend::default();
        b.push(window(
            0,
            &[
                (&split, &["main", "work", "fn_a"], 60),
                (&split, &["main", "work", "fn_b"], 30),
                (&idle, &["cpu_idle_[k]"], 100),
                (&cat, &["main", "read"], 10),
            ],
        ));
        b.push(window(
            10,
            &[
                (&split, &["main", "work", "fn_a"], 20),
                (&split, &["main", "work", "fn_b"], 80),
                (&idle, &["cpu_idle_[k]"], 50),
            ],
        ));
        Arc::new(b)
    }

    pub(crate) fn push(&self, w: Window) {
        self.store().write_window(&w).expect("in-memory write");
    }

    fn store(&self) -> std::sync::MutexGuard<'_, Store> {
        self.store.lock().expect("test backend lock")
    }

    fn slow(&self) {
        let ms = self.delay_ms.load(Ordering::SeqCst);
        if ms > 0 {
            std::thread::sleep(std::time::Duration::from_millis(ms));
        }
    }

    fn check(&self) -> Result<(), BackendError> {
        if self.fail.load(Ordering::SeqCst) {
            Err(BackendError("store unreadable: disk on fire".to_owned()))
        } else {
            Ok(())
        }
    }
}

fn err(e: impl std::fmt::Display) -> BackendError {
    BackendError(e.to_string())
}

impl Backend for FakeBackend {
    fn profile(&self, query: &ProfileQuery) -> Result<Profile, BackendError> {
        self.check()?;
        self.slow();
        let q = Query::new(query.from_unix_ns, query.to_unix_ns)
            .with_filter(query.filter.clone())
            .with_kind(query.kind);
        self.store().query(&q).map_err(err)
    }

    fn timeline(&self, query: &ProfileQuery) -> Result<Vec<TimelinePoint>, BackendError> {
        self.check()?;
        self.slow();
        let windows = self
            .store()
            .timeline(
                &Query::new(query.from_unix_ns, query.to_unix_ns)
                    .with_filter(query.filter.clone())
                    .with_kind(query.kind),
            )
            .map_err(err)?;
        Ok(windows
            .into_iter()
            .map(|w| TimelinePoint {
                start_unix_ns: w.start_unix_ns,
                end_unix_ns: w.end_unix_ns,
                samples: w.samples,
            })
            .collect())
    }

    fn label_values(
        &self,
        kind: ProfileKind,
        from: u64,
        to: u64,
    ) -> Result<LabelValues, BackendError> {
        self.check()?;
        self.store().label_values(kind, from, to).map_err(err)
    }

    fn kinds(&self) -> Result<Vec<ProfileKind>, BackendError> {
        self.check()?;
        let mut kinds = self.store().kinds().map_err(err)?;
        if !kinds.contains(&ProfileKind::Cpu) {
            kinds.insert(0, ProfileKind::Cpu);
        }
        Ok(kinds)
    }

    fn metrics(&self) -> String {
        let n = self.store().stats().windows;
        format!(
            "# HELP ember_store_windows Stored windows.\n# TYPE ember_store_windows gauge\nember_store_windows {n}\n"
        )
    }

    fn health(&self) -> Health {
        self.health.lock().expect("test backend lock").clone()
    }
}

/// One answer, read whole.
pub(crate) struct Answer {
    pub(crate) status: StatusCode,
    pub(crate) content_type: String,
    pub(crate) headers: axum::http::HeaderMap,
    pub(crate) body: Bytes,
}

impl Answer {
    pub(crate) fn text(&self) -> &str {
        std::str::from_utf8(&self.body).expect("UTF-8 body")
    }

    pub(crate) fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "body is not JSON ({e}): {}",
                String::from_utf8_lossy(&self.body)
            )
        })
    }
}

/// `GET uri` through the router, no socket.
pub(crate) async fn get(app: &axum::Router, uri: &str) -> Answer {
    get_with(app, uri, &[]).await
}

/// `GET uri` with `headers`, through the router.
pub(crate) async fn get_with(app: &axum::Router, uri: &str, headers: &[(&str, &str)]) -> Answer {
    let mut req = Request::builder().uri(uri);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    send(app, req.body(Body::empty()).expect("valid request")).await
}

/// Any request through the router, the answer read whole.
pub(crate) async fn send(app: &axum::Router, req: Request<Body>) -> Answer {
    let res = app.clone().oneshot(req).await.expect("infallible router");
    let status = res.status();
    let headers = res.headers().clone();
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .map(|v| v.to_str().expect("ASCII content type").to_owned())
        .unwrap_or_default();
    let body = res
        .into_body()
        .collect()
        .await
        .expect("body reads")
        .to_bytes();
    Answer {
        status,
        content_type,
        headers,
        body,
    }
}

/// `from=T0+a&to=T0+b` (seconds).
pub(crate) fn range(a: u64, b: u64) -> String {
    format!("from={}&to={}", T0 + a, T0 + b)
}
