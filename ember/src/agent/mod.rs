//! `ember agent`: the always-on sampler of a node.
//!
//! The agent samples every CPU continuously, drains the kernel's maps every second (so
//! processes are symbolized while they live), and closes a window every `window` (10 s by
//! default): the window's profile goes to the [`Store`] in one transaction. The loop is
//! [`crate::pipeline`]'s; the agent's sink ([`AgentSink`]) closes the windows and keeps
//! the metrics. Threads beside the loop (the API's) start before it and stop after it. SIGINT and
//! SIGTERM flush the open window before exit, so a clean stop loses nothing and a `kill -9`
//! loses at most the window in progress. A stop is honoured within about a second after
//! `--stop-grace` even mid-drain: the last drain is named for up to the grace (1 s by
//! default, enough when its binaries are cached, as they nearly always are), then
//! symbolization is abandoned at the next stack ([`OnStop::Abandon`]; what was not named
//! yet is stored as `[unsymbolized: stopping]`, with its labels and counts).
//!
//! The HTTP API (`web::api`) runs on its own thread with a small tokio runtime and reads
//! the store through connections of its own, so a slow query never delays sampling. It
//! listens on loopback unless told otherwise, and refuses any other address without a
//! token (`--api-token-file` or `EMBER_API_TOKEN`) unless `--insecure-listen` says the
//! exposure is wanted; see [`ApiAccess`].
//!
//! Memory stays bounded whatever the workload: the kernel maps have fixed sizes (overflow
//! is counted, never silent), a window's profile holds at most the distinct stacks of 10 s,
//! the symbolizer's result memo is capped, and what is cached about a process is dropped
//! when it exits.

mod backend;
mod metrics;
mod push;
mod writer;

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use profiler_model::ProfileMeta;
use tracing::{info, warn};

use crate::aggregate::Aggregator;
use crate::pipeline::{End, OnStop, Pipeline, PipelineConfig, Sink, Ticks};
use profiler_sampler::{LossLog, RawSample, Sampler, SamplerConfig, SamplerStats, Target};
use profiler_store::{Store, StoreConfig, Window};

pub(crate) use backend::StoreBackend;
pub(crate) use metrics::AgentMetrics;
pub(crate) use push::{PushMetrics, PushSettings, PushSetupError};
pub(crate) use writer::{WindowWriter, WriteCounts};

/// Why the agent stopped with an error.
#[derive(Debug, thiserror::Error)]
pub(crate) enum AgentError {
    /// Sampling failed.
    #[error(transparent)]
    Sample(#[from] profiler_sampler::SampleError),
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
    /// A non-loopback address without a token, and without `--insecure-listen`.
    #[error(
        "refusing to serve the API on {addr} without a token: anyone who reaches it could \
         read every process's names, paths and stacks; give a token with --api-token-file \
         PATH (or the EMBER_API_TOKEN environment variable), or pass --insecure-listen to \
         serve it to anyone anyway"
    )]
    Exposed {
        /// The address.
        addr: SocketAddr,
    },
    /// The token cannot be read or used.
    #[error(transparent)]
    Token(#[from] web::api::TokenError),
    /// Both a token file and `EMBER_API_TOKEN` were given.
    #[error("give the API token once: with --api-token-file or with EMBER_API_TOKEN, not both")]
    TwoTokens,
    /// The TLS certificate or key cannot be used.
    #[error(transparent)]
    Tls(#[from] web::tls::TlsError),
    /// Pushing to a fleet backend cannot be set up.
    #[error(transparent)]
    Push(#[from] PushSetupError),
    /// An `--api-allowed-host` value is not a host name or address.
    #[error("invalid --api-allowed-host `{0}`: expected a name or address such as node-7.example")]
    AllowedHost(String),
}

/// Who may use the API and how it is reached (the `API` flags of `ember agent`).
#[derive(Clone, Debug, Default)]
pub(crate) struct ApiAccess {
    /// A file holding the bearer token (`--api-token-file`).
    pub token_file: Option<PathBuf>,
    /// The token from the environment (`EMBER_API_TOKEN`): never a flag, which `ps` shows.
    pub token_env: Option<String>,
    /// Names accepted in `Host` besides loopback and the listen address.
    pub allowed_hosts: Vec<String>,
    /// PEM certificate chain and private key, to serve HTTPS.
    pub tls: Option<(PathBuf, PathBuf)>,
    /// Serve a non-loopback address without a token.
    pub insecure_listen: bool,
}

impl ApiAccess {
    /// The API's configuration for listening on `addr`: the token read, the certificate
    /// loaded, the exposure checked.
    ///
    /// # Errors
    /// [`AgentError::Exposed`], [`AgentError::TwoTokens`], [`AgentError::Token`] or
    /// [`AgentError::Tls`].
    pub(crate) fn api_config(&self, addr: SocketAddr) -> Result<web::ApiConfig, AgentError> {
        let token = match (&self.token_file, &self.token_env) {
            (Some(_), Some(_)) => return Err(AgentError::TwoTokens),
            (Some(path), None) => Some(web::api::Token::from_file(path)?),
            (None, Some(text)) => Some(web::api::Token::new(text, "EMBER_API_TOKEN")?),
            (None, None) => None,
        };
        if let Some(bad) = self
            .allowed_hosts
            .iter()
            .find(|h| web::api::access::host_part(h).is_none())
        {
            return Err(AgentError::AllowedHost(bad.clone()));
        }
        let loopback = addr.ip().is_loopback();
        if !loopback && token.is_none() && !self.insecure_listen {
            return Err(AgentError::Exposed { addr });
        }
        let tls = match &self.tls {
            Some((cert, key)) => Some(web::tls::TlsConfig::from_pem_files(cert, key)?),
            None => None,
        };
        if !loopback && token.is_some() && tls.is_none() {
            warn!(
                %addr,
                "the API token crosses the network in clear text: give --tls-cert and --tls-key"
            );
        }
        if !loopback && token.is_none() {
            warn!(%addr, "--insecure-listen: the API answers anyone who reaches {addr}");
        }
        Ok(web::ApiConfig {
            token,
            allowed_hosts: self.allowed_hosts.clone(),
            listen: Some(addr),
            tls,
            after_burst: Some(Arc::new(return_freed_memory)),
            ..web::ApiConfig::default()
        })
    }
}

/// Hands the heap's free pages back to the system after a burst of queries: glibc keeps
/// them in its arenas otherwise (a burst of 2,000 queries left the agent at 600 MB). In
/// `tests/it/api.rs`'s burst the heap ended 27 MB above where it started without this,
/// 12 MB with it. Trimming when a burst ends costs nothing while queries run, which
/// capping arenas (`M_ARENA_MAX`) for the whole process would not.
fn return_freed_memory() {
    #[cfg(target_env = "gnu")]
    // SAFETY: malloc_trim has no preconditions; it only releases free memory.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// Makes glibc serve allocations of 1 MiB and more from their own mappings, which go back
/// to the system when freed. By default glibc raises that threshold to the largest block
/// freed so far (up to 32 MiB) and then serves such blocks from its arenas, which keep the
/// pages: the unwind table of one large library (about 30 MB of rows while it is built)
/// stayed in the unwinder thread's arena for good.
fn map_large_allocations() {
    #[cfg(target_env = "gnu")]
    // SAFETY: mallopt has no preconditions; a refused setting leaves glibc's default.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 1 << 20);
    }
}

/// A validated agent configuration.
#[derive(Clone, Debug)]
pub(crate) struct AgentConfig {
    /// Samples per second per CPU.
    pub frequency_hz: u64,
    /// Length of a stored window.
    pub window: Duration,
    /// How often the kernel's maps are drained and symbolized.
    pub drain_interval: Duration,
    /// How long a stop waits for the last drain's names.
    pub stop_grace: Duration,
    /// Where the store lives.
    pub data_dir: PathBuf,
    /// Store settings (retention, size).
    pub store: StoreConfig,
    /// Count map size.
    pub counts_entries: u32,
    /// Stack map size.
    pub stacks_entries: u32,
    /// How user stacks are walked (`--unwinder`, `--unwind-table-mem`).
    pub unwind: profiler_sampler::UnwindConfig,
    /// Off-CPU time (`--off-cpu`): an off-CPU window is stored beside each CPU window.
    pub off_cpu: Option<profiler_sampler::OffCpuConfig>,
    /// Where the HTTP API listens; `None` runs without it.
    pub listen: Option<SocketAddr>,
    /// Who may use the API, and over what.
    pub api: ApiAccess,
    /// Symbolizer settings (binary cache budget, debug directories).
    pub symbolizer: symbolizer::Config,
    /// Where closed windows are pushed (Pyroscope, OTLP); see `push.rs`.
    pub push: PushSettings,
}

/// What the agent did, for its final log line and tests.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct AgentSummary {
    /// Windows written.
    pub windows: u64,
    /// Samples written.
    pub samples: u64,
    /// Windows and samples the store did not take (waiting, lost).
    pub writes: WriteCounts,
    /// The program's counters at the end.
    pub stats: SamplerStats,
}

/// The least time between two warnings about lost samples.
const LOSS_WARNING_EVERY: Duration = Duration::from_secs(60);

/// Runs the agent until SIGINT or SIGTERM.
///
/// # Errors
/// If sampling cannot start or the store cannot be opened or written.
pub(crate) fn run(config: &AgentConfig) -> Result<AgentSummary, AgentError> {
    map_large_allocations();
    // Refuse a bad exposure before anything is opened or sampled.
    let api_config = match config.listen {
        Some(addr) => Some((addr, config.api.api_config(addr)?)),
        None => None,
    };
    // The writer takes the data directory's lock: a second agent stops here.
    let writer = WindowWriter::new(Store::open(&config.data_dir, config.store.clone())?);
    let metrics = Arc::new(Mutex::new(AgentMetrics {
        start_time_seconds: crate::now_unix_ns() as f64 / 1e9,
        ..AgentMetrics::default()
    }));
    let api = match api_config {
        Some((addr, api_config)) => Some(Api::start(
            addr,
            StoreBackend::new(
                Store::open_read_only(&config.data_dir, config.store.clone())?,
                metrics.clone(),
            ),
            api_config,
        )?),
        None => None,
    };
    // The push threads read the store beside the API: they never wait on sampling.
    let pusher = push::start(&config.push, &config.data_dir, &config.store, &metrics)?;
    let pipeline = Pipeline::start(
        &SamplerConfig {
            frequency_hz: config.frequency_hz,
            target: Target::All,
            kernel_stacks: true,
            counts_entries: config.counts_entries,
            stacks_entries: config.stacks_entries,
            unwind: config.unwind,
            off_cpu: config.off_cpu,
        },
        PipelineConfig {
            frequency_hz: config.frequency_hz,
            kernel: true,
            drain_interval: config.drain_interval,
            ticks: Ticks::MACHINE_WIDE,
            exclude_tgid: None,
            // The agent's threads wait for their next tick, drain or request nearly all
            // the time: that is not the node's waiting (its CPU samples are kept).
            exclude_off_cpu_tgid: Some(std::process::id()),
            on_stop: OnStop::Abandon {
                grace: config.stop_grace,
            },
            symbolizer: config.symbolizer.clone(),
        },
    )?;
    info!(
        data_dir = %config.data_dir.display(),
        frequency_hz = config.frequency_hz,
        window = ?config.window,
        off_cpu = config.off_cpu.is_some(),
        "agent started"
    );
    let (writer, stats) = pipeline.run(AgentSink {
        window: config.window,
        off_cpu: config.off_cpu.is_some(),
        window_clock: Instant::now(),
        writer,
        metrics,
        pids_seen: BTreeSet::new(),
        losses: LossLog::new(LOSS_WARNING_EVERY),
    })?;
    if let Some(api) = api {
        api.stop();
    }
    let mut summary = AgentSummary {
        stats,
        writes: writer.finish(),
        ..AgentSummary::default()
    };
    if let Some(pusher) = pusher {
        pusher.stop();
    }
    summary.windows = summary.writes.windows_written;
    summary.samples = summary.writes.samples_written;
    let stopped = "agent stopped";
    let (windows, samples) = (summary.windows, summary.samples);
    let (sampler_lost, windows_lost) = (summary.stats.lost(), summary.writes.windows_lost);
    let samples_in_lost_windows = summary.writes.samples_lost;
    // Every sample the kernel took for the agent, and the losses among them by reason.
    let taken = summary.stats.taken();
    let losses = summary.stats.losses_by_reason();
    if windows_lost > 0 {
        warn!(
            windows,
            samples,
            taken,
            sampler_lost,
            losses = %losses,
            windows_lost,
            samples_in_lost_windows,
            "{stopped}"
        );
    } else {
        info!(
            windows,
            samples,
            taken,
            sampler_lost,
            losses = %losses,
            windows_lost,
            "{stopped}"
        );
    }
    Ok(summary)
}

/// The agent's end of the pipeline: a window closed every `window` into the store, the
/// metrics the API serves updated at every drain and window.
struct AgentSink {
    window: Duration,
    /// Whether an off-CPU window is written beside each CPU window.
    off_cpu: bool,
    /// When the open window started, on the monotonic clock.
    window_clock: Instant,
    writer: WindowWriter,
    metrics: Arc<Mutex<AgentMetrics>>,
    /// Processes sampled since the last window close, whose caches go once they exit.
    pids_seen: BTreeSet<u32>,
    losses: LossLog,
}

impl Sink for AgentSink {
    /// The writer (still holding the windows it could not write) and the sampler's last
    /// counters.
    type Output = (WindowWriter, SamplerStats);
    type Error = AgentError;

    fn poll(&mut self, _signal: Option<i32>, _elapsed: Duration) -> bool {
        // Only a signal stops the agent.
        false
    }

    fn drained(
        &mut self,
        sampler: &Sampler,
        aggregator: &Aggregator,
        samples: &[RawSample],
    ) -> Result<(), AgentError> {
        self.pids_seen.extend(samples.iter().map(|s| s.tgid));
        let stats = sampler.stats()?;
        self.losses.observe(&stats);
        let unwind = sampler.unwind_stats().map(|u| u.gauges());
        let mut m = self.metrics.lock().unwrap_or_else(PoisonError::into_inner);
        m.sampler = stats;
        m.off_cpu = self.off_cpu;
        m.off_cpu_us = aggregator.stats().off_cpu_us;
        m.symbolizer = aggregator.symbolizer().stats();
        m.unwind = unwind.unwrap_or_default();
        drop(m);
        aggregator.release_file_pages();
        Ok(())
    }

    fn window_due(&self) -> bool {
        self.window_clock.elapsed() >= self.window
    }

    fn close_window(&mut self, aggregator: &mut Aggregator) {
        let meta = &aggregator.profile().meta;
        let (start, frequency_hz) = (meta.start_unix_ns, meta.frequency_hz);
        let end = crate::now_unix_ns().max(start + 1);
        let mut profile = aggregator.take_profile(ProfileMeta {
            start_unix_ns: end,
            duration_ns: 0,
            frequency_hz,
            ..ProfileMeta::default()
        });
        profile.meta.duration_ns = end - start;
        // The off-CPU time of the same period, written right after its CPU twin (same
        // start and end, its own kind), even when empty: a window with no wait says the
        // period was recorded.
        let off_cpu = self.off_cpu.then(|| {
            let mut waits = aggregator.take_off_cpu_profile();
            waits.meta.start_unix_ns = start;
            waits.meta.duration_ns = end - start;
            Window {
                start_unix_ns: start,
                end_unix_ns: end,
                profile: waits,
            }
        });
        let window = Window {
            start_unix_ns: start,
            end_unix_ns: end,
            profile,
        };
        let now = crate::now_unix_ns();
        self.writer.close(window, now);
        if let Some(waits) = off_cpu {
            self.writer.close(waits, now);
        }
        aggregator.forget_exited(std::mem::take(&mut self.pids_seen));
        self.window_clock = Instant::now();
        let mut m = self.metrics.lock().unwrap_or_else(PoisonError::into_inner);
        m.writes = self.writer.counts();
        m.store_degraded = self.writer.degraded().map(str::to_owned);
        m.store = self.writer.store_stats();
    }

    fn finish(self, end: End) -> Result<Self::Output, AgentError> {
        Ok((self.writer, end.stats))
    }
}

/// The HTTP API's thread.
struct Api {
    shutdown: tokio::sync::oneshot::Sender<()>,
    thread: std::thread::JoinHandle<()>,
}

impl Api {
    /// Binds `addr` (so a bad address fails the start, not a later thread) and serves the
    /// API on a thread of its own.
    fn start(
        addr: SocketAddr,
        backend: StoreBackend,
        config: web::ApiConfig,
    ) -> Result<Api, AgentError> {
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
        let scheme = if config.tls.is_some() {
            "https"
        } else {
            "http"
        };
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
                    if let Err(e) = web::api::serve(listener, backend, config, stop).await {
                        tracing::error!(error = %e, "the HTTP API stopped");
                    }
                });
            })
            .map_err(AgentError::Api)?;
        // The one line a person starting the agent needs: where to point the browser.
        eprintln!("ember: API listening on {scheme}://{local}");
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

#[cfg(test)]
mod tests {
    use super::*;

    const TOKEN: &str = "unit-token-0123456789";

    #[test]
    fn a_wide_listen_needs_a_token_or_insecure_listen() {
        let wide: SocketAddr = "0.0.0.0:7070".parse().unwrap();
        let loopback: SocketAddr = "127.0.0.1:7070".parse().unwrap();
        let none = ApiAccess::default();
        let config = none.api_config(loopback).expect("loopback needs nothing");
        assert!(config.token.is_none() && config.tls.is_none());
        assert!(
            config.after_burst.is_some(),
            "memory is returned after bursts"
        );
        let err = none.api_config(wide).expect_err("refused").to_string();
        for part in [
            "0.0.0.0:7070",
            "--api-token-file",
            "EMBER_API_TOKEN",
            "--insecure-listen",
        ] {
            assert!(err.contains(part), "{err}");
        }
        let insecure = ApiAccess {
            insecure_listen: true,
            ..ApiAccess::default()
        };
        assert!(insecure.api_config(wide).is_ok());
        let with_env = ApiAccess {
            token_env: Some(TOKEN.to_owned()),
            ..ApiAccess::default()
        };
        let config = with_env.api_config(wide).expect("a token allows it");
        assert!(config.token.is_some());
        assert_eq!(config.listen, Some(wide));
    }

    #[test]
    fn the_token_comes_from_one_place_and_must_be_usable() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("token");
        std::fs::write(&file, format!("{TOKEN}\n")).unwrap();
        let loopback: SocketAddr = "127.0.0.1:7070".parse().unwrap();
        let from_file = ApiAccess {
            token_file: Some(file.clone()),
            ..ApiAccess::default()
        };
        assert!(from_file.api_config(loopback).unwrap().token.is_some());
        let both = ApiAccess {
            token_env: Some(TOKEN.to_owned()),
            ..from_file
        };
        assert!(matches!(
            both.api_config(loopback),
            Err(AgentError::TwoTokens)
        ));
        let short = ApiAccess {
            token_env: Some("abc".to_owned()),
            ..ApiAccess::default()
        };
        let err = short.api_config(loopback).unwrap_err().to_string();
        assert!(
            err.contains("EMBER_API_TOKEN") && err.contains("16"),
            "{err}"
        );
        let missing = ApiAccess {
            token_file: Some(dir.path().join("nope")),
            ..ApiAccess::default()
        };
        let err = missing.api_config(loopback).unwrap_err().to_string();
        assert!(err.contains("nope"), "{err}");
        let bad_tls = ApiAccess {
            tls: Some((dir.path().join("cert.pem"), dir.path().join("key.pem"))),
            ..ApiAccess::default()
        };
        let err = bad_tls.api_config(loopback).unwrap_err().to_string();
        assert!(err.contains("cert.pem"), "{err}");
        let bad_host = ApiAccess {
            allowed_hosts: vec!["node-7:x".to_owned()],
            ..ApiAccess::default()
        };
        let err = bad_host.api_config(loopback).unwrap_err().to_string();
        assert!(err.contains("--api-allowed-host `node-7:x`"), "{err}");
    }
}
