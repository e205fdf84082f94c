//! The push loop: one thread per destination reads closed windows after its cursor, sends
//! them, and moves the cursor once the backend said yes.
//!
//! - **In order, once.** Windows go out in the order they were written; the cursor moves
//!   (in the store, one transaction) only after a 2xx, so a window is sent again only if the
//!   agent died between the backend's answer and the cursor's write. Each window carries a
//!   stable id ([`crate::profile_id`]) so a backend (or a test) can recognize a retry.
//! - **Retried without limit.** A refused connection, a timeout, a 5xx, 408 or 429 is
//!   retried with exponential backoff (1 s doubling to 60 s, each wait drawn between half
//!   and all of it: jitter, so a fleet coming back does not knock in step), for as long as
//!   the window is in the store; a window retention deleted meanwhile is skipped and
//!   counted as expired. The first failure is logged as a warning and the recovery as
//!   info; the retries between are debug.
//! - **A 4xx is final.** A batch answered 4xx is resent one window at a time, and a single
//!   window answered 4xx is logged once with the backend's message, counted as failed and
//!   skipped, so one bad window never stalls the ones after it.
//! - **Bounded backlog.** At most [`PushConfig::batch_windows`] windows and about
//!   [`PushConfig::max_request_bytes`] per request, and at least
//!   [`PushConfig::min_interval`] between requests: an agent back from an hour offline
//!   drains its 360 windows in about a minute rather than at once.
//! - **Out of the way.** The threads read the store through a connection of their own;
//!   nothing here touches the sampling loop or the API, and a slow backend only delays its
//!   own destination.
//! - **A new destination starts now.** A destination without a cursor gets one at the last
//!   window stored when it is first seen (and kept): adding a backend to an agent with a
//!   week of history does not send the week.

use std::path::Path;
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use std::io::Write as _;

use profiler_http::{Client, HttpError, Limits, Response, Timeouts, TlsConfig};
use profiler_store::{PushCursor, Store, StoreConfig, StoreError};
use tracing::{debug, info, warn};

use crate::destination::{Compression, Destination};
use crate::encode::StoredWindow;

/// What a backend's answer may bring back: its message, or an OTLP partial-success
/// answer; anything larger is a misbehaving peer, and the request is retried.
const RESPONSE_LIMITS: Limits = Limits { max_body: 1 << 20 };

/// How the push loop paces itself.
#[derive(Clone, Debug)]
pub struct PushConfig {
    /// The node's name (`hostname` label, `host.name` attribute).
    pub host_name: String,
    /// At most this many windows per request (a backlog is sent in batches).
    pub batch_windows: usize,
    /// A batch stops growing once its body passes this many bytes.
    pub max_request_bytes: usize,
    /// The least time between two requests of one destination.
    pub min_interval: Duration,
    /// How often the store is looked at when nothing is pending.
    pub poll_interval: Duration,
    /// The first wait after a failure.
    pub backoff_initial: Duration,
    /// The longest wait after failures.
    pub backoff_max: Duration,
    /// Time limits of one request.
    pub timeouts: Timeouts,
    /// The roots `https://` backends are verified with; `None`: the system's.
    pub tls: Option<TlsConfig>,
}

impl Default for PushConfig {
    fn default() -> Self {
        PushConfig {
            host_name: String::new(),
            batch_windows: 6,
            max_request_bytes: 4 << 20,
            min_interval: Duration::from_millis(500),
            poll_interval: Duration::from_secs(1),
            backoff_initial: Duration::from_secs(1),
            backoff_max: Duration::from_secs(60),
            timeouts: Timeouts::default(),
            tls: None,
        }
    }
}

/// What one destination has done, for `/metrics`.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct DestinationStats {
    /// `pyroscope` or `otlp`.
    pub name: String,
    /// Where requests go.
    pub url: String,
    /// Windows the backend accepted.
    pub pushed: u64,
    /// Windows the backend refused with a 4xx (skipped).
    pub failed: u64,
    /// Requests that failed and were retried later.
    pub retried: u64,
    /// Windows retention deleted before they could be sent.
    pub expired: u64,
    /// Closed windows not sent yet.
    pub pending: u64,
    /// Age of the oldest window not sent yet (0 when none is pending).
    pub lag_seconds: f64,
    /// Request bodies sent (accepted or not), bytes on the wire (compressed).
    pub bytes_sent: u64,
    /// Whether the last request reached the backend (any HTTP answer but 5xx).
    pub up: bool,
}

/// Reads the push threads' counters; cheap to clone.
#[derive(Clone, Debug, Default)]
pub struct StatsHandle(Vec<Arc<Mutex<DestinationStats>>>);

impl StatsHandle {
    /// A handle over counters kept elsewhere (tests of what shows them).
    #[must_use]
    pub fn from_shared(stats: Vec<Arc<Mutex<DestinationStats>>>) -> Self {
        StatsHandle(stats)
    }

    /// A snapshot of every destination's counters, in the order they were given.
    #[must_use]
    pub fn snapshot(&self) -> Vec<DestinationStats> {
        self.0
            .iter()
            .map(|s| s.lock().unwrap_or_else(PoisonError::into_inner).clone())
            .collect()
    }
}

/// Why pushing cannot start.
#[derive(Debug, thiserror::Error)]
pub enum PushError {
    /// The store cannot be opened as an outbox.
    #[error("cannot open the store as a push outbox")]
    Store(#[from] StoreError),
    /// A push thread could not be started.
    #[error("cannot start the push thread of `{destination}`")]
    Thread {
        /// The destination.
        destination: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
}

/// A stop request shared with the threads; waits end early when it is set.
#[derive(Debug, Default)]
struct Stop {
    stopped: Mutex<bool>,
    wake: Condvar,
}

impl Stop {
    /// Waits up to `d`; true if stopped.
    fn wait(&self, d: Duration) -> bool {
        let guard = self.stopped.lock().unwrap_or_else(PoisonError::into_inner);
        let (guard, _) = self
            .wake
            .wait_timeout_while(guard, d, |stopped| !*stopped)
            .unwrap_or_else(PoisonError::into_inner);
        *guard
    }

    fn is_set(&self) -> bool {
        *self.stopped.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn set(&self) {
        *self.stopped.lock().unwrap_or_else(PoisonError::into_inner) = true;
        self.wake.notify_all();
    }
}

/// The running push threads.
#[derive(Debug)]
pub struct Pusher {
    stop: Arc<Stop>,
    threads: Vec<JoinHandle<()>>,
    stats: Vec<Arc<Mutex<DestinationStats>>>,
}

impl Pusher {
    /// Starts one thread per destination, each with its own outbox connection to the store
    /// in `dir`.
    ///
    /// # Errors
    /// [`PushError`] if the store cannot be opened or a thread not started.
    pub fn start(
        dir: &Path,
        store_config: &StoreConfig,
        destinations: Vec<Destination>,
        config: &PushConfig,
    ) -> Result<Pusher, PushError> {
        let stop = Arc::new(Stop::default());
        let mut pusher = Pusher {
            stop: stop.clone(),
            threads: Vec::new(),
            stats: Vec::new(),
        };
        for dest in destinations {
            let store = Store::open_outbox(dir, store_config.clone())?;
            let stats = Arc::new(Mutex::new(DestinationStats {
                name: dest.protocol.name().to_owned(),
                url: dest.url(),
                up: true,
                ..DestinationStats::default()
            }));
            let name = dest.protocol.name().to_owned();
            let mut worker = Worker {
                store,
                dest,
                config: config.clone(),
                stats: stats.clone(),
                stop: stop.clone(),
                rng: seed(),
                client: match &config.tls {
                    Some(tls) => {
                        Client::new(config.timeouts, RESPONSE_LIMITS).with_tls(tls.clone())
                    }
                    None => Client::new(config.timeouts, RESPONSE_LIMITS),
                },
            };
            let thread = std::thread::Builder::new()
                .name(format!("ember-push-{name}"))
                .spawn(move || worker.run())
                .map_err(|source| PushError::Thread {
                    destination: name,
                    source,
                })?;
            pusher.threads.push(thread);
            pusher.stats.push(stats);
        }
        Ok(pusher)
    }

    /// A snapshot of every destination's counters.
    #[must_use]
    pub fn stats(&self) -> Vec<DestinationStats> {
        self.stats_handle().snapshot()
    }

    /// A handle reading the counters from elsewhere (the metrics endpoint).
    #[must_use]
    pub fn stats_handle(&self) -> StatsHandle {
        StatsHandle(self.stats.clone())
    }

    /// Stops the threads (a request in flight ends within its timeouts) and joins them.
    pub fn stop(self) {
        self.stop.set();
        for t in self.threads {
            if t.join().is_err() {
                warn!("a push thread panicked");
            }
        }
    }
}

fn now_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}

fn seed() -> u64 {
    let t = now_ns();
    let addr = std::ptr::from_ref(&t) as u64;
    (t ^ addr.rotate_left(32)) | 1
}

/// What became of one request.
enum Outcome {
    /// 2xx.
    Accepted,
    /// 4xx other than 408 and 429: the backend will never take it.
    Refused { status: u16, message: String },
    /// Worth trying again.
    Retry { reason: String },
}

struct Worker {
    store: Store,
    dest: Destination,
    config: PushConfig,
    stats: Arc<Mutex<DestinationStats>>,
    stop: Arc<Stop>,
    rng: u64,
    client: Client,
}

impl Worker {
    fn stats(&self) -> std::sync::MutexGuard<'_, DestinationStats> {
        self.stats.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn run(&mut self) {
        let name = self.dest.protocol.name();
        let url = self.dest.url();
        let Some(mut cursor) = self.start_cursor() else {
            return;
        };
        info!(destination = name, %url, after = cursor.window_id.0, "pushing windows");
        let mut backoff = self.config.backoff_initial;
        let mut failing: Option<(Instant, u64)> = None;
        // After a 4xx for a batch, this many windows go one at a time.
        let mut singly = 0usize;
        let mut store_error_logged = false;
        while !self.stop.is_set() {
            let limit = if singly > 0 {
                1
            } else {
                self.config.batch_windows.max(1)
            };
            let batch = match self.next_batch(&mut cursor, limit) {
                Ok(b) => {
                    store_error_logged = false;
                    b
                }
                Err(e) => {
                    if !store_error_logged {
                        warn!(destination = name, error = %e, "cannot read the outbox; retrying");
                        store_error_logged = true;
                    }
                    self.stop.wait(self.config.poll_interval);
                    continue;
                }
            };
            let Some((windows, next)) = batch else {
                self.stop.wait(self.config.poll_interval);
                continue;
            };
            if windows.is_empty() {
                // Only expired windows: step over them.
                self.advance(&mut cursor, next);
                continue;
            }
            let body = self.dest.encode(&windows, &self.config.host_name);
            let n = windows.len() as u64;
            match self.send(&body) {
                Outcome::Accepted => {
                    self.advance(&mut cursor, next);
                    self.stats().pushed += n;
                    singly = singly.saturating_sub(windows.len());
                    backoff = self.config.backoff_initial;
                    if let Some((since, retries)) = failing.take() {
                        info!(
                            destination = name,
                            %url,
                            down_for = ?since.elapsed(),
                            retries,
                            "push recovered"
                        );
                    }
                }
                Outcome::Refused { status, message } if windows.len() > 1 => {
                    debug!(destination = name, status, %message, "batch refused; sending its windows one at a time");
                    singly = windows.len();
                    continue;
                }
                Outcome::Refused { status, message } => {
                    warn!(
                        destination = name,
                        %url,
                        window = windows[0].id.0,
                        status,
                        message = %message,
                        "the backend refused a window; it is skipped"
                    );
                    self.advance(&mut cursor, next);
                    self.stats().failed += 1;
                    singly = singly.saturating_sub(1);
                }
                Outcome::Retry { reason } => {
                    self.stats().retried += 1;
                    match &mut failing {
                        None => {
                            warn!(destination = name, %url, error = %reason, "push failed; retrying with backoff until the backend answers");
                            failing = Some((Instant::now(), 1));
                        }
                        Some((_, retries)) => {
                            *retries += 1;
                            debug!(destination = name, error = %reason, ?backoff, "push retry failed");
                        }
                    }
                    let wait = self.jitter(backoff);
                    backoff = (backoff * 2).min(self.config.backoff_max);
                    self.stop.wait(wait);
                    continue;
                }
            }
            self.refresh_pending(&cursor);
            if self.stats().pending > 0 {
                self.stop.wait(self.config.min_interval);
            }
        }
    }

    /// The stored cursor, or a new one at the last window (persisted).
    fn start_cursor(&mut self) -> Option<PushCursor> {
        let key = self.dest.cursor_key();
        let found = self.store.push_cursor(&key).and_then(|c| match c {
            Some(c) => Ok(c),
            None => {
                // Everything stored is behind a new destination's cursor, both kinds'
                // merges of it included.
                let c = match self.store.last_window()? {
                    Some(w) => PushCursor {
                        window_id: w.id,
                        end_unix_ns: w.end_unix_ns,
                        off_cpu_end_unix_ns: w.end_unix_ns,
                    },
                    None => PushCursor::default(),
                };
                self.store.set_push_cursor(&key, c, now_ns())?;
                Ok(c)
            }
        });
        match found {
            Ok(c) => {
                self.refresh_pending(&c);
                Some(c)
            }
            Err(e) => {
                warn!(destination = self.dest.protocol.name(), error = %e, "cannot read the push cursor; not pushing");
                None
            }
        }
    }

    /// The next windows to send (expired ones left out) and the cursor once they are
    /// taken (past every window they cover, each kind's end moved by its own windows), or
    /// `None` when nothing is pending.
    fn next_batch(
        &mut self,
        cursor: &mut PushCursor,
        limit: usize,
    ) -> Result<Option<(Vec<StoredWindow>, PushCursor)>, StoreError> {
        let listed = self.store.windows_after(Some(cursor.window_id), limit)?;
        if listed.is_empty() {
            self.refresh_pending(cursor);
            return Ok(None);
        }
        let mut windows = Vec::new();
        let mut bytes = 0usize;
        let mut next = *cursor;
        for s in listed {
            // Covered by the cursor as it was before this batch: a window of the batch
            // never covers another of it (a CPU window and its off-CPU twin share an end).
            if cursor.covers(&s) {
                next = next.past(&s);
                continue;
            }
            match self.store.window(s.id)? {
                Some(window) => {
                    // A rough size: a pprof costs about 40 bytes per distinct stack.
                    bytes += window.profile.stacks().count() * 40;
                    windows.push(StoredWindow { id: s.id, window });
                }
                None => self.stats().expired += 1,
            }
            next = next.past(&s);
            if bytes >= self.config.max_request_bytes {
                break;
            }
        }
        Ok(Some((windows, next)))
    }

    fn advance(&mut self, cursor: &mut PushCursor, next: PushCursor) {
        *cursor = next;
        if let Err(e) = self
            .store
            .set_push_cursor(&self.dest.cursor_key(), *cursor, now_ns())
        {
            // The window was delivered; if the cursor cannot be kept it is sent again
            // after a restart, which the window id makes recognizable.
            warn!(destination = self.dest.protocol.name(), error = %e, "cannot keep the push cursor");
        }
        self.refresh_pending(cursor);
    }

    fn refresh_pending(&self, cursor: &PushCursor) {
        let pending = self.store.windows_after_count(Some(cursor.window_id));
        let oldest = self.store.windows_after(Some(cursor.window_id), 1);
        let mut s = self.stats();
        if let Ok(p) = pending {
            s.pending = p;
        }
        if let Ok(oldest) = oldest {
            s.lag_seconds = oldest
                .first()
                .map_or(0.0, |w| now_ns().saturating_sub(w.end_unix_ns) as f64 / 1e9);
        }
    }

    fn send(&mut self, body: &[u8]) -> Outcome {
        let mut headers = vec![("Content-Type", self.dest.content_type())];
        if self.dest.protocol == crate::Protocol::Pyroscope {
            headers.push(("Connect-Protocol-Version", "1"));
        }
        let gzipped;
        let body = match self.dest.compression {
            Compression::None => body,
            Compression::Gzip => {
                gzipped = gzip(body);
                headers.push(("Content-Encoding", "gzip"));
                &gzipped
            }
        };
        headers.extend(
            self.dest
                .headers
                .iter()
                .map(|(k, v)| (k.as_str(), v.expose())),
        );
        self.stats().bytes_sent += body.len() as u64;
        let result = self
            .client
            .post(&self.dest.endpoint, &self.dest.path, &headers, body);
        let outcome = classify(result);
        self.stats().up = !matches!(outcome, Outcome::Retry { .. });
        outcome
    }

    /// A wait between half and all of `d`.
    fn jitter(&mut self, d: Duration) -> Duration {
        // xorshift64: statistical quality is beside the point, spreading retries is not.
        self.rng ^= self.rng << 13;
        self.rng ^= self.rng >> 7;
        self.rng ^= self.rng << 17;
        let frac = (self.rng % 1000) as f64 / 1000.0;
        d.mul_f64(0.5 + frac / 2.0)
    }
}

/// `body` gzip-compressed (a `Vec` cannot fail to take writes).
fn gzip(body: &[u8]) -> Vec<u8> {
    let mut gz = flate2::write::GzEncoder::new(
        Vec::with_capacity(body.len() / 4),
        flate2::Compression::default(),
    );
    gz.write_all(body)
        .and_then(|()| gz.finish())
        .expect("writing to a Vec does not fail")
}

fn classify(result: Result<Response, HttpError>) -> Outcome {
    match result {
        Ok(r) if (200..300).contains(&r.status) => Outcome::Accepted,
        Ok(r) if r.status == 408 || r.status == 429 || r.status >= 500 => Outcome::Retry {
            reason: format!("HTTP {}: {}", r.status, message(&r.body)),
        },
        Ok(r) => Outcome::Refused {
            status: r.status,
            message: message(&r.body),
        },
        Err(e) => {
            let mut reason = e.to_string();
            let mut source = std::error::Error::source(&e);
            while let Some(s) = source {
                reason.push_str(": ");
                reason.push_str(&s.to_string());
                source = s.source();
            }
            Outcome::Retry { reason }
        }
    }
}

/// The backend's message: the body as text, trimmed to 300 characters.
fn message(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let text = text.trim();
    match text.char_indices().nth(300) {
        Some((i, _)) => format!("{}...", &text[..i]),
        None => text.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use std::io::{BufRead, BufReader, Read, Write};
    use std::net::TcpListener;
    use std::sync::mpsc;

    use prost::Message as _;

    use super::*;
    use crate::Endpoint;
    use crate::encode::testutil;
    use crate::proto::pyroscope::PushRequest;

    /// A receiver answering each request with the next status of `script` (then 200),
    /// reporting each request's series ids.
    fn receiver(script: Vec<u16>) -> (Endpoint, mpsc::Receiver<(u16, Vec<String>)>) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut script = script.into_iter();
            for conn in listener.incoming() {
                let Ok(s) = conn else { return };
                let mut r = BufReader::new(s);
                let mut len = 0;
                loop {
                    let mut line = String::new();
                    if r.read_line(&mut line).unwrap_or(0) == 0 {
                        break;
                    }
                    if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                        len = v.trim().parse().unwrap();
                    }
                    if line == "\r\n" {
                        break;
                    }
                }
                let mut body = vec![0; len];
                r.read_exact(&mut body).unwrap();
                let req = PushRequest::decode(body.as_slice()).unwrap();
                let ids = req.series.iter().map(|s| s.samples[0].id.clone()).collect();
                let status = script.next().unwrap_or(200);
                let reply = format!(
                    "HTTP/1.1 {status} X\r\nContent-Length: 9\r\nConnection: close\r\n\r\nbad input"
                );
                let _ = r.get_mut().write_all(reply.as_bytes());
                if tx.send((status, ids)).is_err() {
                    return;
                }
            }
        });
        (
            Endpoint::parse(&format!("http://127.0.0.1:{port}")).unwrap(),
            rx,
        )
    }

    fn fast() -> PushConfig {
        PushConfig {
            host_name: "node-7".to_owned(),
            batch_windows: 3,
            min_interval: Duration::from_millis(1),
            poll_interval: Duration::from_millis(20),
            backoff_initial: Duration::from_millis(10),
            backoff_max: Duration::from_millis(40),
            ..PushConfig::default()
        }
    }

    #[test]
    fn windows_go_out_in_batches_a_4xx_is_skipped_and_a_5xx_retried() {
        let dir = tempfile::tempdir().unwrap();
        let mut writer = Store::open(dir.path(), StoreConfig::default()).unwrap();
        // One window before the destination exists: never sent.
        writer.write_window(&testutil::window(0).window).unwrap();
        // 503 first (retried), then a 400 for the batch, then each of its windows alone:
        // the first of them 400 again (skipped), the rest accepted.
        let (endpoint, rx) = receiver(vec![503, 400, 400]);
        let pusher = Pusher::start(
            dir.path(),
            &StoreConfig::default(),
            vec![Destination::pyroscope(endpoint)],
            &fast(),
        )
        .unwrap();
        std::thread::sleep(Duration::from_millis(100));
        for i in 1..=5 {
            writer.write_window(&testutil::window(i).window).unwrap();
        }
        let mut accepted = Vec::new();
        let mut statuses = Vec::new();
        while accepted.len() < 4 * 2 {
            let (status, ids) = rx.recv_timeout(Duration::from_secs(10)).expect("a request");
            statuses.push(status);
            if status == 200 {
                accepted.extend(ids);
            }
        }
        assert_eq!(statuses[..3], [503, 400, 400], "{statuses:?}");
        let mut unique = accepted.clone();
        unique.dedup();
        assert_eq!(unique.len(), accepted.len(), "each window once");
        let start = std::time::Instant::now();
        loop {
            let s = pusher.stats().remove(0);
            if s.pending == 0 && s.pushed == 4 {
                assert_eq!((s.failed, s.retried), (1, 1), "{s:?}");
                assert!(s.bytes_sent > 0 && s.up);
                break;
            }
            assert!(start.elapsed() < Duration::from_secs(5), "{s:?}");
            std::thread::sleep(Duration::from_millis(20));
        }
        pusher.stop();
        let outbox = Store::open_outbox(dir.path(), StoreConfig::default()).unwrap();
        let key = Destination::pyroscope(Endpoint::parse("http://x").unwrap()).cursor_key();
        assert_eq!(
            outbox.push_cursor(&key).unwrap(),
            None,
            "cursors are per URL"
        );
    }

    #[test]
    fn messages_are_trimmed_and_statuses_classified() {
        let long = "x".repeat(400);
        assert_eq!(message(long.as_bytes()).len(), 303);
        let r = |status| {
            classify(Ok(Response {
                status,
                headers: Vec::new(),
                body: b"no".to_vec(),
            }))
        };
        assert!(matches!(r(204), Outcome::Accepted));
        assert!(matches!(r(400), Outcome::Refused { status: 400, .. }));
        assert!(matches!(r(429), Outcome::Retry { .. }));
        assert!(matches!(r(502), Outcome::Retry { .. }));
    }

    #[test]
    fn otlp_bodies_go_gzipped_with_their_header() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let server = std::thread::spawn(move || {
            let (s, _) = listener.accept().unwrap();
            let mut r = BufReader::new(s);
            let (mut len, mut gzip_header) = (0, false);
            loop {
                let mut line = String::new();
                r.read_line(&mut line).unwrap();
                let lower = line.to_ascii_lowercase();
                if let Some(v) = lower.strip_prefix("content-length:") {
                    len = v.trim().parse().unwrap();
                }
                gzip_header |= lower == "content-encoding: gzip\r\n";
                if line == "\r\n" {
                    break;
                }
            }
            let mut body = vec![0; len];
            r.read_exact(&mut body).unwrap();
            r.get_mut()
                .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
                .unwrap();
            (gzip_header, body)
        });
        let dir = tempfile::tempdir().unwrap();
        let mut writer = Store::open(dir.path(), StoreConfig::default()).unwrap();
        let endpoint = Endpoint::parse(&format!("http://127.0.0.1:{port}")).unwrap();
        let pusher = Pusher::start(
            dir.path(),
            &StoreConfig::default(),
            vec![Destination::otlp(endpoint, false)],
            &fast(),
        )
        .unwrap();
        std::thread::sleep(Duration::from_millis(100));
        let window = testutil::window(1);
        writer.write_window(&window.window).unwrap();
        let (gzip_header, body) = server.join().unwrap();
        let mut plain = Vec::new();
        flate2::read::GzDecoder::new(body.as_slice())
            .read_to_end(&mut plain)
            .unwrap();
        assert!(gzip_header);
        let request = crate::proto::otlp::ExportProfilesServiceRequest::decode(plain.as_slice());
        assert!(
            request.is_ok(),
            "the body is an OTLP request once gunzipped"
        );
        let start = std::time::Instant::now();
        while pusher.stats()[0].pushed == 0 {
            assert!(start.elapsed() < Duration::from_secs(5));
            std::thread::sleep(Duration::from_millis(20));
        }
        assert_eq!(
            pusher.stats()[0].bytes_sent,
            body.len() as u64,
            "bytes on the wire"
        );
        pusher.stop();
    }
}
