//! A debuginfod client: separate debug files fetched by build-id from the servers the
//! operator names (`--debuginfod URL`, or the standard `DEBUGINFOD_URLS` variable), for
//! binaries the node has no symbols for.
//!
//! Nothing here runs on the drain thread. The symbolizer asks ([`Debuginfod::request`])
//! when a frame of a binary with a build-id comes out unnamed (`module+0xoffset`); the
//! request is queued to a few worker threads ([`DebuginfodConfig::concurrency`]), which look
//! in the disk cache (`cache.rs`) and otherwise `GET URL/buildid/HEX/debuginfo` from each
//! server in turn, with a deadline per request ([`DebuginfodConfig::timeout`]) and a size
//! bound per file (the cache's bound). The symbolizer collects what arrived at its next
//! stack ([`Debuginfod::arrived`]) and names from then on; frames already in a profile are
//! renamed by [`crate::Symbolizer::rename_fetched`].
//!
//! A file is used only if its build-id is the one asked for. A 404 from every server is
//! cached on disk too, for [`DebuginfodConfig::negative_ttl`]: a binary no server has
//! costs one round of requests per TTL, however many processes run it. Timeouts and
//! other failures are not cached; the first failure of each server is logged as a warning,
//! later ones at debug level, and all are counted ([`DebuginfodStats`]).

mod cache;
mod fetch;

use std::collections::{HashMap, HashSet, VecDeque};
use std::fmt::Write as _;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, PoisonError, mpsc};
use std::time::{Duration, Instant};

pub(crate) use cache::DiskCache;
use cache::{Cached, InsertError};
pub(crate) use fetch::{Answer, FetchError, Fetcher, http as http_fetcher};

/// Default for [`DebuginfodConfig::cache_bytes`]: 1 GiB.
pub const DEFAULT_DEBUGINFOD_CACHE_BYTES: u64 = 1 << 30;

/// Default for [`DebuginfodConfig::timeout`]: 10 s.
pub const DEFAULT_DEBUGINFOD_TIMEOUT: Duration = Duration::from_secs(10);

/// Default for [`DebuginfodConfig::negative_ttl`]: 10 minutes, as elfutils' client.
pub const DEFAULT_DEBUGINFOD_NEGATIVE_TTL: Duration = Duration::from_secs(600);

/// Default for [`DebuginfodConfig::concurrency`].
pub const DEFAULT_DEBUGINFOD_CONCURRENCY: usize = 2;

/// The standard variable naming debuginfod servers, space-separated.
pub const DEBUGINFOD_URLS: &str = "DEBUGINFOD_URLS";

/// Where and how debug files are fetched.
///
/// ```
/// let config = symbolizer::DebuginfodConfig::new(
///     symbolizer::DebuginfodConfig::urls_from("http://a:8002  http://b:8002/"),
///     "/var/cache/ember/debuginfod".into(),
/// );
/// assert_eq!(config.urls, ["http://a:8002", "http://b:8002"]);
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct DebuginfodConfig {
    /// Server base URLs, asked in order until one has the file.
    pub urls: Vec<String>,
    /// The disk cache's directory.
    pub cache_dir: PathBuf,
    /// The bound on the cached debug files' total size; also the largest file fetched.
    pub cache_bytes: u64,
    /// The longest one request may take, from connecting to its last byte.
    pub timeout: Duration,
    /// How long a 404 from every server is believed.
    pub negative_ttl: Duration,
    /// Requests in flight at once.
    pub concurrency: usize,
}

impl DebuginfodConfig {
    /// Servers `urls`, cache in `cache_dir`, everything else by default.
    #[must_use]
    pub fn new(urls: Vec<String>, cache_dir: PathBuf) -> Self {
        DebuginfodConfig {
            urls,
            cache_dir,
            cache_bytes: DEFAULT_DEBUGINFOD_CACHE_BYTES,
            timeout: DEFAULT_DEBUGINFOD_TIMEOUT,
            negative_ttl: DEFAULT_DEBUGINFOD_NEGATIVE_TTL,
            concurrency: DEFAULT_DEBUGINFOD_CONCURRENCY,
        }
    }

    /// The URLs of a `DEBUGINFOD_URLS` value: separated by white space, trailing slashes
    /// dropped.
    #[must_use]
    pub fn urls_from(value: &str) -> Vec<String> {
        value
            .split_whitespace()
            .map(|u| u.trim_end_matches('/').to_owned())
            .filter(|u| !u.is_empty())
            .collect()
    }

    /// Sets [`DebuginfodConfig::cache_bytes`].
    #[must_use]
    pub fn with_cache_bytes(mut self, bytes: u64) -> Self {
        self.cache_bytes = bytes;
        self
    }

    /// Sets [`DebuginfodConfig::timeout`].
    #[must_use]
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }
}

/// What the debuginfod client did, for metrics.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct DebuginfodStats {
    /// Build-ids asked for (each once, or again after a 404 expired).
    pub requests: u64,
    /// HTTP requests sent to servers.
    pub fetches: u64,
    /// Debug files downloaded, verified and cached.
    pub fetched: u64,
    /// Requests answered from the disk cache's debug files.
    pub cache_hits: u64,
    /// Requests answered by a cached 404.
    pub negative_hits: u64,
    /// Build-ids that no server has (every server answered 404).
    pub misses: u64,
    /// HTTP requests that failed: timeouts, refused connections, other statuses, a file
    /// too large or with another build-id.
    pub failures: u64,
    /// Build-ids asked for whose answer has not arrived (a gauge).
    pub outstanding: u64,
}

/// How a build-id's request ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// Its debug file, in the cache.
    Found(PathBuf),
    /// No server has it.
    NotFound,
    /// No file, and not every server said so: what went wrong, per server.
    Failed(Vec<String>),
}

/// What is known of a build-id in this process.
#[derive(Clone, Debug)]
enum Want {
    /// Queued or in flight.
    Asked,
    /// Its file arrived.
    Arrived(PathBuf),
    /// Nobody had it, as of then.
    Missing(Instant),
    /// It failed, then; asked again only after the negative TTL (failures are often
    /// timeouts, and a hanging server would hold a worker per request).
    Failed(Instant),
}

/// What `Debuginfod::wait` saw.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct WaitReport {
    /// How long it waited.
    pub waited: Duration,
    /// Debug files that arrived (during the whole run).
    pub found: u64,
    /// Build-ids no server has (during the whole run).
    pub not_found: u64,
    /// Failures, one line each: the build-id and, per server, what went wrong
    /// (`http://host:port/buildid/HEX/debuginfo: timed out after 2 s`).
    pub failed: Vec<String>,
    /// Build-ids still being fetched when the wait ended, with their URLs.
    pub outstanding: Vec<String>,
}

/// Counters shared with the workers.
#[derive(Debug, Default)]
struct Counters {
    fetches: AtomicU64,
    fetched: AtomicU64,
    cache_hits: AtomicU64,
    negative_hits: AtomicU64,
    misses: AtomicU64,
    failures: AtomicU64,
}

/// What the workers share.
#[derive(Debug)]
struct Shared {
    queue: Mutex<VecDeque<Arc<[u8]>>>,
    ready: Condvar,
    urls: Vec<String>,
    cache: DiskCache,
    timeout: Duration,
    fetcher: Fetcher,
    counters: Counters,
    /// Servers whose first failure was logged.
    logged: Mutex<HashSet<String>>,
    /// The client was dropped: workers stop at their next look at the queue.
    stopped: AtomicBool,
}

/// The client: a queue, its workers and what arrived. Dropping it stops the workers after
/// their current request.
#[derive(Debug)]
pub(crate) struct Debuginfod {
    shared: Arc<Shared>,
    results: mpsc::Receiver<(Arc<[u8]>, Outcome)>,
    wants: HashMap<Arc<[u8]>, Want>,
    negative_ttl: Duration,
    requests: u64,
    found: u64,
    not_found: u64,
    failed: Vec<String>,
}

/// Debug files that arrived: the build-id and where the file is in the cache.
pub(crate) type Arrivals = Vec<(Arc<[u8]>, PathBuf)>;

/// The path of `build_id`'s debug file on a server.
pub(crate) fn url_path(build_id: &[u8]) -> String {
    format!("/buildid/{}/debuginfo", hex(build_id))
}

/// Lower-case hex of `bytes`.
pub(crate) fn hex(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(out, "{b:02x}");
    }
    out
}

impl Debuginfod {
    /// A client for `config`, fetching with `fetcher`.
    ///
    /// # Errors
    /// When the cache directory cannot be created.
    pub(crate) fn new(config: &DebuginfodConfig, fetcher: Fetcher) -> std::io::Result<Self> {
        let cache = DiskCache::open(&config.cache_dir, config.cache_bytes, config.negative_ttl)?;
        let shared = Arc::new(Shared {
            queue: Mutex::new(VecDeque::new()),
            ready: Condvar::new(),
            urls: config.urls.clone(),
            cache,
            timeout: config.timeout,
            fetcher,
            counters: Counters::default(),
            logged: Mutex::new(HashSet::new()),
            stopped: AtomicBool::new(false),
        });
        let (tx, results) = mpsc::channel();
        for n in 0..config.concurrency.max(1) {
            let shared = Arc::clone(&shared);
            let tx = tx.clone();
            std::thread::Builder::new()
                .name(format!("ember-debuginfod-{n}"))
                .spawn(move || worker(&shared, &tx))?;
        }
        Ok(Debuginfod {
            shared,
            results,
            wants: HashMap::new(),
            negative_ttl: config.negative_ttl,
            requests: 0,
            found: 0,
            not_found: 0,
            failed: Vec::new(),
        })
    }

    /// Asks for `build_id`'s debug file, without waiting: the path if it arrived already,
    /// else `None` (and it is queued, unless asked before).
    pub(crate) fn request(&mut self, build_id: &[u8]) -> Option<PathBuf> {
        match self.wants.get(build_id) {
            Some(Want::Arrived(path)) => return Some(path.clone()),
            Some(Want::Asked) => return None,
            Some(Want::Missing(at) | Want::Failed(at)) if at.elapsed() < self.negative_ttl => {
                return None;
            }
            Some(Want::Missing(_) | Want::Failed(_)) | None => {}
        }
        let build_id: Arc<[u8]> = build_id.into();
        self.requests += 1;
        self.wants.insert(Arc::clone(&build_id), Want::Asked);
        self.shared
            .queue
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push_back(build_id);
        self.shared.ready.notify_one();
        None
    }

    /// The debug files that arrived since the last call, by build-id.
    pub(crate) fn arrived(&mut self) -> Arrivals {
        let mut out = Vec::new();
        while let Ok((build_id, outcome)) = self.results.try_recv() {
            if let Some(found) = self.settle(build_id, outcome) {
                out.push(found);
            }
        }
        out
    }

    /// Records how `build_id`'s request ended; the file if one arrived.
    fn settle(&mut self, build_id: Arc<[u8]>, outcome: Outcome) -> Option<(Arc<[u8]>, PathBuf)> {
        let want = match outcome {
            Outcome::Found(path) => {
                self.found += 1;
                self.wants
                    .insert(Arc::clone(&build_id), Want::Arrived(path.clone()));
                return Some((build_id, path));
            }
            Outcome::NotFound => {
                self.not_found += 1;
                Want::Missing(Instant::now())
            }
            Outcome::Failed(reasons) => {
                self.failed
                    .push(format!("{}: {}", hex(&build_id), reasons.join("; ")));
                Want::Failed(Instant::now())
            }
        };
        self.wants.insert(build_id, want);
        None
    }

    /// Build-ids asked for whose answer has not arrived.
    fn outstanding(&self) -> impl Iterator<Item = &Arc<[u8]>> {
        self.wants
            .iter()
            .filter(|(_, w)| matches!(w, Want::Asked))
            .map(|(id, _)| id)
    }

    /// Waits at most `bound` for every outstanding request to end, collecting what arrives
    /// (returned by the next [`Debuginfod::arrived`] as usual), and reports on the run.
    pub(crate) fn wait(&mut self, bound: Duration) -> (WaitReport, Arrivals) {
        let start = Instant::now();
        let mut arrived = self.arrived();
        while self.outstanding().next().is_some() {
            let Some(left) = bound.checked_sub(start.elapsed()) else {
                break;
            };
            match self.results.recv_timeout(left) {
                Ok((build_id, outcome)) => arrived.extend(self.settle(build_id, outcome)),
                Err(_) => break,
            }
        }
        let mut outstanding: Vec<String> = self
            .outstanding()
            .map(|id| {
                let urls: Vec<String> = self
                    .shared
                    .urls
                    .iter()
                    .map(|u| format!("{u}{}", url_path(id)))
                    .collect();
                urls.join(", ")
            })
            .collect();
        outstanding.sort();
        let report = WaitReport {
            waited: start.elapsed(),
            found: self.found,
            not_found: self.not_found,
            failed: self.failed.clone(),
            outstanding,
        };
        (report, arrived)
    }

    /// A snapshot of the counters.
    pub(crate) fn stats(&self) -> DebuginfodStats {
        let c = &self.shared.counters;
        DebuginfodStats {
            requests: self.requests,
            fetches: c.fetches.load(Ordering::Relaxed),
            fetched: c.fetched.load(Ordering::Relaxed),
            cache_hits: c.cache_hits.load(Ordering::Relaxed),
            negative_hits: c.negative_hits.load(Ordering::Relaxed),
            misses: c.misses.load(Ordering::Relaxed),
            failures: c.failures.load(Ordering::Relaxed),
            outstanding: self.outstanding().count() as u64,
        }
    }
}

impl Drop for Debuginfod {
    fn drop(&mut self) {
        // Queued requests are dropped; a request in flight ends within its timeout, and
        // its worker then finds the results channel gone.
        self.shared.stopped.store(true, Ordering::Relaxed);
        self.shared
            .queue
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clear();
        self.shared.ready.notify_all();
    }
}

/// A worker: takes build-ids off the queue until the client is dropped.
fn worker(shared: &Shared, tx: &mpsc::Sender<(Arc<[u8]>, Outcome)>) {
    loop {
        let build_id = {
            let mut queue = shared.queue.lock().unwrap_or_else(PoisonError::into_inner);
            loop {
                if shared.stopped.load(Ordering::Relaxed) {
                    return;
                }
                if let Some(id) = queue.pop_front() {
                    break id;
                }
                queue = shared
                    .ready
                    .wait(queue)
                    .unwrap_or_else(PoisonError::into_inner);
            }
        };
        let outcome = resolve(shared, &build_id);
        if tx.send((build_id, outcome)).is_err() {
            return;
        }
    }
}

/// Answers one build-id: from the cache, else from each server in turn.
fn resolve(shared: &Shared, build_id: &[u8]) -> Outcome {
    let c = &shared.counters;
    match shared.cache.lookup(build_id) {
        Cached::Hit(path) => {
            c.cache_hits.fetch_add(1, Ordering::Relaxed);
            return Outcome::Found(path);
        }
        Cached::Missing => {
            c.negative_hits.fetch_add(1, Ordering::Relaxed);
            return Outcome::NotFound;
        }
        Cached::Unknown => {}
    }
    let path = url_path(build_id);
    let mut reasons = Vec::new();
    for url in &shared.urls {
        let shown = format!("{url}{path}");
        c.fetches.fetch_add(1, Ordering::Relaxed);
        let result = shared
            .cache
            .download()
            .map_err(FetchError::Download)
            .and_then(|mut file| {
                let answer = (shared.fetcher)(
                    url,
                    &path,
                    shared.timeout,
                    shared.cache.max_bytes,
                    file.as_file_mut(),
                )?;
                Ok((answer, file))
            });
        let err = match result {
            Ok((Answer::NotFound, _)) => continue,
            Ok((Answer::Found, file)) => match shared.cache.insert(build_id, file) {
                Ok(stored) => {
                    c.fetched.fetch_add(1, Ordering::Relaxed);
                    tracing::debug!(url = %shown, path = %stored.display(), "debug file fetched");
                    return Outcome::Found(stored);
                }
                Err(InsertError::Io(err)) => FetchError::Download(err),
                Err(err) => FetchError::Refused {
                    url: shown.clone(),
                    reason: crate::ErrorChain(&err).to_string(),
                },
            },
            Err(err) => err,
        };
        c.failures.fetch_add(1, Ordering::Relaxed);
        let first = shared
            .logged
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(url.clone());
        if first {
            tracing::warn!(
                server = %url,
                "debuginfod: {}; this server's later failures are logged at debug level",
                crate::ErrorChain(&err)
            );
        } else {
            tracing::debug!(url = %shown, error = %crate::ErrorChain(&err), "debuginfod request failed");
        }
        reasons.push(crate::ErrorChain(&err).to_string());
    }
    if reasons.is_empty() {
        c.misses.fetch_add(1, Ordering::Relaxed);
        if let Err(err) = shared.cache.insert_missing(build_id) {
            tracing::debug!(error = %err, "cannot cache a debuginfod 404");
        }
        Outcome::NotFound
    } else {
        Outcome::Failed(reasons)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs::File;
    use std::io::Write as _;
    use std::sync::atomic::AtomicUsize;

    /// The test binary's build-id: an ELF file the fake servers can serve.
    fn own_build_id() -> Vec<u8> {
        let info = unwinder::elf::parse(&File::open("/proc/self/exe").expect("open own exe"))
            .expect("parse own exe");
        info.build_id.expect("the test binary has a build-id")
    }

    fn config(dir: &std::path::Path, timeout: Duration) -> DebuginfodConfig {
        DebuginfodConfig::new(vec!["http://fake".into()], dir.to_owned()).with_timeout(timeout)
    }

    static SERVED: AtomicUsize = AtomicUsize::new(0);

    /// A server that has the test binary's file and nothing else.
    fn serves_own_exe(
        _url: &str,
        path: &str,
        _timeout: Duration,
        _max: u64,
        out: &mut File,
    ) -> Result<Answer, FetchError> {
        SERVED.fetch_add(1, Ordering::SeqCst);
        if path == url_path(&own_build_id()) {
            out.write_all(&std::fs::read("/proc/self/exe").expect("read own exe"))
                .map_err(FetchError::Download)?;
            Ok(Answer::Found)
        } else {
            Ok(Answer::NotFound)
        }
    }

    #[test]
    fn a_fetched_file_arrives_and_the_next_client_finds_it_and_the_404_cached() {
        let dir = tempfile::tempdir().expect("temp dir");
        let own = own_build_id();
        let unknown = vec![0xab; 20];
        let mut client =
            Debuginfod::new(&config(dir.path(), Duration::from_secs(5)), serves_own_exe)
                .expect("client");
        assert_eq!(client.request(&own), None, "never waits");
        assert_eq!(client.request(&unknown), None);
        assert_eq!(client.request(&own), None, "asked once");
        let (report, arrived) = client.wait(Duration::from_secs(10));
        assert_eq!(arrived.len(), 1, "{report:?}");
        assert_eq!(&*arrived[0].0, &own[..]);
        assert_eq!((report.found, report.not_found), (1, 1));
        assert!(report.outstanding.is_empty() && report.failed.is_empty());
        assert_eq!(client.request(&own), Some(arrived[0].1.clone()));
        let stats = client.stats();
        assert_eq!((stats.requests, stats.fetches, stats.fetched), (2, 2, 1));
        assert_eq!((stats.misses, stats.failures, stats.outstanding), (1, 0, 0));
        drop(client);

        // A new client (the next run): both answered from the disk cache, no request.
        let served = SERVED.load(Ordering::SeqCst);
        let mut client =
            Debuginfod::new(&config(dir.path(), Duration::from_secs(5)), serves_own_exe)
                .expect("client");
        client.request(&own);
        client.request(&unknown);
        let (report, arrived) = client.wait(Duration::from_secs(10));
        assert_eq!((report.found, report.not_found, arrived.len()), (1, 1, 1));
        let stats = client.stats();
        assert_eq!(
            (stats.cache_hits, stats.negative_hits, stats.fetches),
            (1, 1, 0)
        );
        assert_eq!(
            SERVED.load(Ordering::SeqCst),
            served,
            "no request reached the server"
        );
    }

    /// A server that accepts and never answers: the fetcher runs into its deadline.
    fn hangs(
        url: &str,
        path: &str,
        timeout: Duration,
        _max: u64,
        _out: &mut File,
    ) -> Result<Answer, FetchError> {
        std::thread::sleep(timeout);
        Err(FetchError::Status {
            url: format!("{url}{path}"),
            status: 504,
        })
    }

    #[test]
    fn a_hanging_server_is_reported_outstanding_then_failed_and_not_cached() {
        let dir = tempfile::tempdir().expect("temp dir");
        let own = own_build_id();
        let mut client = Debuginfod::new(&config(dir.path(), Duration::from_millis(300)), hangs)
            .expect("client");
        client.request(&own);
        let start = Instant::now();
        let (report, _) = client.wait(Duration::from_millis(50));
        assert!(start.elapsed() < Duration::from_secs(1));
        assert_eq!(report.outstanding.len(), 1, "{report:?}");
        assert!(
            report.outstanding[0].contains(&format!("http://fake/buildid/{}/debuginfo", hex(&own))),
            "{report:?}"
        );
        let (report, arrived) = client.wait(Duration::from_secs(5));
        assert!(arrived.is_empty() && report.outstanding.is_empty());
        assert_eq!(report.failed.len(), 1, "{report:?}");
        assert!(report.failed[0].contains("HTTP 504"), "{report:?}");
        assert_eq!(client.stats().failures, 1);
        // Not asked again before the negative TTL; not cached for the next process.
        assert_eq!(client.request(&own), None);
        assert_eq!(client.stats().requests, 1);
        let cache = DiskCache::open(dir.path(), u64::MAX, Duration::from_secs(600)).expect("cache");
        assert_eq!(cache.lookup(&own), Cached::Unknown);
    }

    /// A server that answers every build-id with the test binary's file.
    fn serves_the_wrong_file(
        _url: &str,
        _path: &str,
        _timeout: Duration,
        _max: u64,
        out: &mut File,
    ) -> Result<Answer, FetchError> {
        out.write_all(&std::fs::read("/proc/self/exe").expect("read own exe"))
            .map_err(FetchError::Download)?;
        Ok(Answer::Found)
    }

    #[test]
    fn a_file_with_another_build_id_is_refused() {
        let dir = tempfile::tempdir().expect("temp dir");
        let other = vec![0xcd; 20];
        let mut client = Debuginfod::new(
            &config(dir.path(), Duration::from_secs(5)),
            serves_the_wrong_file,
        )
        .expect("client");
        client.request(&other);
        let (report, arrived) = client.wait(Duration::from_secs(10));
        assert!(arrived.is_empty());
        assert_eq!(report.failed.len(), 1, "{report:?}");
        assert!(report.failed[0].contains("unusable file"), "{report:?}");
        assert!(report.failed[0].contains("build-id"), "{report:?}");
        let cache = DiskCache::open(dir.path(), u64::MAX, Duration::from_secs(600)).expect("cache");
        assert_eq!(cache.lookup(&other), Cached::Unknown);
        assert_eq!(
            std::fs::read_dir(dir.path().join("tmp"))
                .expect("tmp")
                .count(),
            0
        );
    }

    #[test]
    fn debuginfod_urls_are_split_on_white_space() {
        assert_eq!(
            DebuginfodConfig::urls_from(" http://a:1/\thttp://b:2  "),
            ["http://a:1", "http://b:2"]
        );
        assert!(DebuginfodConfig::urls_from("  ").is_empty());
    }
}
