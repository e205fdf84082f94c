//! `ember agent`: the always-on sampler of a node.
//!
//! The agent samples every CPU continuously, drains the kernel's maps every second (so
//! processes are symbolized while they live), and closes a window every `window` (10 s by
//! default): the window's profile goes to the [`Store`] in one transaction. SIGINT and
//! SIGTERM flush the open window before exit, so a clean stop loses nothing and a `kill -9`
//! loses at most the window in progress.
//!
//! The HTTP API (`web::api`) runs on its own thread with a small tokio runtime and reads
//! the store through a second connection, so a slow query never delays sampling.
//!
//! Memory stays bounded whatever the workload: the kernel maps have fixed sizes (overflow
//! is counted, never silent), a window's profile holds at most the distinct stacks of 10 s,
//! the symbolizer's result memo is capped, and what is cached about a process is dropped
//! when it exits.

mod backend;
mod metrics;
mod writer;

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use profiler_model::ProfileMeta;
use tracing::{info, warn};

use crate::aggregate::Aggregator;
use crate::sample::{Sampler, SamplerConfig, SamplerStats, Target};
use crate::signals;
use profiler_store::{Store, StoreConfig, Window};

pub use backend::StoreBackend;
pub use metrics::AgentMetrics;
pub use writer::{WindowWriter, WriteCounts};

/// Why the agent stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    /// Sampling failed.
    #[error(transparent)]
    Sample(#[from] crate::sample::SampleError),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] profiler_store::StoreError),
    /// The API's address cannot be used.
    #[error("cannot listen on {addr} (choose another address with --listen)")]
    Listen {
        /// The address.
        addr: SocketAddr,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The API's thread could not start.
    #[error("cannot start the HTTP API")]
    Api(#[source] std::io::Error),
}

/// A validated agent configuration.
#[derive(Clone, Debug)]
pub struct AgentConfig {
    /// Samples per second per CPU.
    pub frequency_hz: u64,
    /// Length of a stored window.
    pub window: Duration,
    /// How often the kernel's maps are drained and symbolized.
    pub drain_interval: Duration,
    /// Where the store lives.
    pub data_dir: PathBuf,
    /// Store settings (retention, size).
    pub store: StoreConfig,
    /// Count map size.
    pub counts_entries: u32,
    /// Stack map size.
    pub stacks_entries: u32,
    /// How user stacks are walked (`--unwinder`, `--unwind-table-mem`).
    pub unwind: crate::sample::UnwindConfig,
    /// Where the HTTP API listens; `None` runs without it.
    pub listen: Option<SocketAddr>,
    /// Symbolizer settings (binary cache budget, debug directories).
    pub symbolizer: symbolizer::Config,
}

/// What the agent did, for its final log line and tests.
#[derive(Clone, Copy, Debug, Default)]
pub struct AgentSummary {
    /// Windows written.
    pub windows: u64,
    /// Samples written.
    pub samples: u64,
    /// Windows and samples the store did not take (waiting, lost).
    pub writes: WriteCounts,
    /// The program's counters at the end.
    pub stats: SamplerStats,
}

/// Runs the agent until SIGINT or SIGTERM.
///
/// # Errors
/// If sampling cannot start or the store cannot be opened or written.
pub fn run(config: &AgentConfig) -> Result<AgentSummary, AgentError> {
    // The writer takes the data directory's lock: a second agent stops here.
    let mut writer = WindowWriter::new(Store::open(&config.data_dir, config.store.clone())?);
    let metrics = Arc::new(Mutex::new(AgentMetrics {
        start_time_seconds: crate::now_unix_ns() as f64 / 1e9,
        ..AgentMetrics::default()
    }));
    let api = match config.listen {
        Some(addr) => Some(Api::start(
            addr,
            StoreBackend::new(
                Store::open_read_only(&config.data_dir, config.store.clone())?,
                metrics.clone(),
            ),
        )?),
        None => None,
    };
    let mut sampler = Sampler::start(&SamplerConfig {
        frequency_hz: config.frequency_hz,
        target: Target::All,
        kernel_stacks: true,
        counts_entries: config.counts_entries,
        stacks_entries: config.stacks_entries,
        unwind: config.unwind,
    })?;
    signals::install();
    let captures = sampler.start_captures();
    info!(
        data_dir = %config.data_dir.display(),
        frequency_hz = config.frequency_hz,
        window = ?config.window,
        "agent started"
    );
    let frequency_hz = u32::try_from(config.frequency_hz).unwrap_or(u32::MAX);
    let meta_from = |start_unix_ns| ProfileMeta {
        start_unix_ns,
        duration_ns: 0,
        frequency_hz,
    };
    let mut window_start = crate::now_unix_ns();
    let mut window_clock = Instant::now();
    let mut aggregator = Aggregator::new(
        symbolizer::Symbolizer::new(config.symbolizer.clone()),
        meta_from(window_start),
        true,
    );
    if let Some(feed) = captures {
        aggregator.follow_captures(feed);
    }
    let mut pids_seen: BTreeSet<u32> = BTreeSet::new();
    let mut summary = AgentSummary::default();
    loop {
        std::thread::sleep(Duration::from_millis(100));
        let stop = signals::received().is_some();
        if stop {
            sampler.pause()?;
        }
        if stop || sampler.since_last_drain() >= config.drain_interval {
            let samples = sampler.drain()?;
            pids_seen.extend(samples.iter().map(|s| s.tgid));
            aggregator.add(&samples);
            let stats = sampler.stats()?;
            let unwind = sampler.unwind_stats().map(|u| u.gauges());
            let mut m = metrics.lock().unwrap_or_else(PoisonError::into_inner);
            m.sampler = stats;
            m.symbolizer = aggregator.symbolizer().stats();
            m.unwind = unwind.unwrap_or_default();
        }
        if stop || window_clock.elapsed() >= config.window {
            let end = crate::now_unix_ns().max(window_start + 1);
            let mut profile = aggregator.take_profile(meta_from(end));
            profile.meta.duration_ns = end - window_start;
            let window = Window {
                start_unix_ns: window_start,
                end_unix_ns: end,
                profile,
            };
            writer.close(window, crate::now_unix_ns());
            aggregator.forget_exited(std::mem::take(&mut pids_seen));
            window_start = end;
            window_clock = Instant::now();
            let mut m = metrics.lock().unwrap_or_else(PoisonError::into_inner);
            m.writes = writer.counts();
            m.store_degraded = writer.degraded().map(str::to_owned);
            m.store = writer.store_stats();
        }
        if stop {
            break;
        }
    }
    summary.stats = sampler.stats()?;
    if let Some(api) = api {
        api.stop();
    }
    summary.writes = writer.finish();
    summary.windows = summary.writes.windows_written;
    summary.samples = summary.writes.samples_written;
    let stopped = "agent stopped";
    let (windows, samples) = (summary.windows, summary.samples);
    let (sampler_lost, windows_lost) = (summary.stats.lost(), summary.writes.windows_lost);
    let samples_in_lost_windows = summary.writes.samples_lost;
    if windows_lost > 0 {
        warn!(
            windows,
            samples, sampler_lost, windows_lost, samples_in_lost_windows, "{stopped}"
        );
    } else {
        info!(windows, samples, sampler_lost, windows_lost, "{stopped}");
    }
    Ok(summary)
}

/// The HTTP API's thread.
struct Api {
    shutdown: tokio::sync::oneshot::Sender<()>,
    thread: std::thread::JoinHandle<()>,
}

impl Api {
    /// Binds `addr` (so a bad address fails the start, not a later thread) and serves the
    /// API on a thread of its own.
    fn start(addr: SocketAddr, backend: StoreBackend) -> Result<Api, AgentError> {
        let listener = std::net::TcpListener::bind(addr)
            .and_then(|l| l.set_nonblocking(true).map(|()| l))
            .map_err(|source| AgentError::Listen { addr, source })?;
        let local = listener.local_addr().map_err(AgentError::Api)?;
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("ember-api")
            .enable_all()
            .build()
            .map_err(AgentError::Api)?;
        let (shutdown, stopped) = tokio::sync::oneshot::channel::<()>();
        let backend: Arc<dyn web::api::Backend> = Arc::new(backend);
        let thread = std::thread::Builder::new()
            .name("ember-api".to_owned())
            .spawn(move || {
                runtime.block_on(async move {
                    let listener = match tokio::net::TcpListener::from_std(listener) {
                        Ok(l) => l,
                        Err(e) => {
                            tracing::error!(error = %e, "the HTTP API cannot use its socket");
                            return;
                        }
                    };
                    let stop = async move {
                        let _ = stopped.await;
                    };
                    if let Err(e) = web::api::serve(listener, backend, stop).await {
                        tracing::error!(error = %e, "the HTTP API stopped");
                    }
                });
            })
            .map_err(AgentError::Api)?;
        // The one line a person starting the agent needs: where to point the browser.
        eprintln!("ember: API listening on http://{local}");
        info!(%local, "HTTP API listening");
        Ok(Api { shutdown, thread })
    }

    /// Stops accepting, lets requests in flight finish, and joins the thread.
    fn stop(self) {
        let _ = self.shutdown.send(());
        if self.thread.join().is_err() {
            warn!("the HTTP API thread panicked");
        }
    }
}
