//! The command line: clap types and the parsers of their values (durations, sizes, times,
//! filters, gates). Validation into a run configuration lives with the command that runs
//! it (`record::RecordConfig::from_args`), which imports this module; this module imports
//! no command.

use std::ffi::OsString;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};
use profiler_model::{Format, LabelFilter};

/// Ember: a node-wide continuous CPU profiler.
///
/// Ember samples the CPU of every process with an eBPF program (kernel and user stacks,
/// no change to any application), names the frames, and writes flame graphs and folded
/// stacks.
#[derive(Debug, Parser)]
#[command(
    name = "ember",
    version,
    propagate_version = true,
    max_term_width = 100
)]
pub(crate) struct Cli {
    /// Options for every command.
    #[command(flatten)]
    pub global: GlobalArgs,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Options for every command.
#[derive(Debug, Args)]
pub(crate) struct GlobalArgs {
    /// More log output on stderr (-v info, -vv debug, -vvv trace); RUST_LOG overrides it.
    #[arg(short, long, action = clap::ArgAction::Count, global = true, conflicts_with = "quiet")]
    pub verbose: u8,
    /// Less output on stderr: errors only, no live status line.
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    pub quiet: u8,
}

/// Ember's commands.
#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Profile a command, some processes, or the whole machine, and write a flame graph.
    #[command(after_help = RECORD_EXAMPLES)]
    Record(RecordArgs),
    /// Sample every process continuously and keep the profiles on disk, window by window.
    #[command(after_help = AGENT_EXAMPLES)]
    Agent(AgentArgs),
    /// Write the stored profile of a time range as folded stacks, pprof, an SVG or speedscope
    /// JSON, from the agent's store on disk or through a running agent's API.
    #[command(after_help = EXPORT_EXAMPLES)]
    Export(ExportArgs),
    /// Compare two profiles (folded or pprof): a differential flame graph, the functions
    /// whose share changed most, and regression gates for CI.
    #[command(after_help = DIFF_EXAMPLES)]
    Diff(DiffArgs),
    /// Check whether Ember can run on this node: kernel features, privileges, and what
    /// Ember will use (exits 1 when it cannot sample here).
    #[command(after_help = DOCTOR_EXAMPLES)]
    Doctor(DoctorArgs),
}

const DOCTOR_EXAMPLES: &str = "\
Examples:
  ember doctor                       a report for a person
  ember doctor --json | jq .ready    the same for scripts

Nothing is changed or mounted: the kernel is asked directly (test programs are loaded and
unloaded, a perf event is opened and closed), so run it with the privileges the agent gets.";

/// `ember doctor`.
#[derive(Debug, Args)]
pub(crate) struct DoctorArgs {
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,

    /// The store directory the agent would use.
    #[arg(long, env = "EMBER_DATA_DIR", default_value = "/var/lib/ember")]
    pub data_dir: PathBuf,

    /// Directory searched for separate debug files; repeat for several.
    #[arg(long = "debug-dir", default_value = symbolizer::DEFAULT_DEBUG_DIR)]
    pub debug_dirs: Vec<PathBuf>,
}

const AGENT_EXAMPLES: &str = "\
Examples:
  ember agent                                     19 Hz, 10 s windows, /var/lib/ember, 7 days
  ember agent --data-dir /tmp/ember --retention 1h --store-max-size 200MiB

SIGINT and SIGTERM write the open window before the agent exits.";

/// `ember agent`.
#[derive(Debug, Args)]
pub(crate) struct AgentArgs {
    /// Samples per second on each CPU.
    #[arg(
        short = 'F',
        long,
        default_value_t = 19,
        value_parser = clap::value_parser!(u64).range(1..=20_000),
        help_heading = "Sampling"
    )]
    pub frequency: u64,

    /// Length of one stored window (profiles are kept at this resolution); at least 1s.
    #[arg(long, default_value = "10s", value_parser = parse_window, help_heading = "Sampling")]
    pub window: Duration,

    /// On SIGTERM/SIGINT, how long the last drain is still named (0s to 60s); stacks not
    /// named by then are stored as `[unsymbolized: stopping]` with their labels and counts,
    /// so a service manager's stop timeout is never reached mid-symbolization.
    #[arg(long, default_value = "1s", value_parser = parse_stop_grace, help_heading = "Advanced")]
    pub stop_grace: Duration,

    /// Directory of the profile store.
    #[arg(
        long,
        env = "EMBER_DATA_DIR",
        default_value = "/var/lib/ember",
        help_heading = "Store"
    )]
    pub data_dir: PathBuf,

    /// Address of the HTTP API (loopback by default; `none` to run without it).
    #[arg(long, env = "EMBER_LISTEN", default_value = "127.0.0.1:7070", value_parser = parse_listen, help_heading = "API")]
    pub listen: Listen,

    /// File holding the API's bearer token; every endpoint but /healthz then needs
    /// `Authorization: Bearer TOKEN` (the UI asks for it once). The token can come from
    /// the EMBER_API_TOKEN environment variable instead; never from a flag, which `ps`
    /// would show.
    #[arg(
        long,
        env = "EMBER_API_TOKEN_FILE",
        value_name = "PATH",
        help_heading = "API"
    )]
    pub api_token_file: Option<PathBuf>,

    /// A name the API answers to in the Host header besides localhost, loopback
    /// addresses and the listen address (e.g. the node's DNS name); repeat for several.
    #[arg(long = "api-allowed-host", value_name = "NAME", help_heading = "API")]
    pub api_allowed_hosts: Vec<String>,

    /// Serve the API over HTTPS with this PEM certificate chain (with --tls-key).
    #[arg(
        long,
        env = "EMBER_TLS_CERT",
        value_name = "PATH",
        requires = "tls_key",
        help_heading = "API"
    )]
    pub tls_cert: Option<PathBuf>,

    /// The PEM private key of --tls-cert.
    #[arg(
        long,
        env = "EMBER_TLS_KEY",
        value_name = "PATH",
        requires = "tls_cert",
        help_heading = "API"
    )]
    pub tls_key: Option<PathBuf>,

    /// Serve the API on a non-loopback --listen address without a token (anyone who
    /// reaches it reads every process's names, paths and stacks).
    #[arg(long, help_heading = "API")]
    pub insecure_listen: bool,

    /// Keep windows this long.
    #[arg(long, env = "EMBER_STORE_RETENTION", default_value = "7d", value_parser = parse_duration, help_heading = "Store")]
    pub retention: Duration,

    /// Keep the store under this size (e.g. 2GiB, 500MiB, 1G): the database, its
    /// write-ahead log and its index (`-wal`, `-shm`), checked after every window; over it,
    /// the oldest windows are deleted. Set it below the file system's free space.
    #[arg(long, env = "EMBER_STORE_MAX_SIZE", default_value = "2GiB", value_parser = parse_size, help_heading = "Store")]
    pub store_max_size: u64,

    /// Memory budget of the symbolizer's cache of opened binaries (e.g. 256MiB); least
    /// recently used binaries are evicted past it.
    #[arg(long, env = "EMBER_SYMBOL_CACHE", default_value = "256MiB", value_parser = parse_size, help_heading = "Symbols")]
    pub symbol_cache: u64,

    /// Directory searched for separate debug files (by build-id and debug link); repeat for
    /// several.
    #[arg(long = "debug-dir", default_value = symbolizer::DEFAULT_DEBUG_DIR, help_heading = "Symbols")]
    pub debug_dirs: Vec<PathBuf>,

    /// Off-CPU windows beside the CPU windows.
    #[command(flatten)]
    pub off_cpu: OffCpuArgs,

    /// Drain interval and kernel map sizes.
    #[command(flatten)]
    pub drain: DrainArgs,

    /// Debug files fetched from debuginfod servers.
    #[command(flatten)]
    pub debuginfod: DebuginfodArgs,

    /// Pushing windows to Grafana Pyroscope and OTLP backends (boxed: the agent's
    /// arguments would otherwise dwarf the other commands').
    #[command(flatten)]
    pub push: Box<PushArgs>,
}

/// Where `ember agent` pushes closed windows (Grafana Pyroscope, OTLP profiles); see the
/// README's "Push to a fleet backend". Secrets come from files or environment variables,
/// never from flags, which `ps` shows.
#[derive(Debug, Default, Args)]
pub(crate) struct PushArgs {
    /// Grafana Pyroscope's base URL (http://HOST:PORT or https://HOST); each closed window
    /// is sent to URL/push.v1.PusherService/Push.
    #[arg(
        long,
        env = "EMBER_PYROSCOPE_ENDPOINT",
        value_name = "URL",
        help_heading = "Push"
    )]
    pub pyroscope_endpoint: Option<String>,

    /// Pyroscope tenant, sent as X-Scope-OrgID.
    #[arg(
        long,
        env = "EMBER_PYROSCOPE_TENANT",
        value_name = "ID",
        help_heading = "Push"
    )]
    pub pyroscope_tenant: Option<String>,

    /// Basic-auth user for Pyroscope; the password comes from --pyroscope-password-file
    /// or EMBER_PYROSCOPE_PASSWORD.
    #[arg(
        long,
        env = "EMBER_PYROSCOPE_USER",
        value_name = "USER",
        help_heading = "Push"
    )]
    pub pyroscope_user: Option<String>,

    /// File holding the Pyroscope basic-auth password.
    #[arg(
        long,
        env = "EMBER_PYROSCOPE_PASSWORD_FILE",
        value_name = "PATH",
        help_heading = "Push"
    )]
    pub pyroscope_password_file: Option<PathBuf>,

    /// File holding a bearer token for Pyroscope (or EMBER_PYROSCOPE_TOKEN).
    #[arg(
        long,
        env = "EMBER_PYROSCOPE_TOKEN_FILE",
        value_name = "PATH",
        help_heading = "Push"
    )]
    pub pyroscope_token_file: Option<PathBuf>,

    /// OTLP/HTTP base URL (http://HOST:4318 or https://HOST); windows go to
    /// URL/v1development/profiles, gzip-compressed. Without it,
    /// OTEL_EXPORTER_OTLP_PROFILES_ENDPOINT (the full URL) or OTEL_EXPORTER_OTLP_ENDPOINT (a
    /// base URL) is used; OTEL_EXPORTER_OTLP_HEADERS and OTEL_EXPORTER_OTLP_PROFILES_HEADERS
    /// add headers; `OTEL_EXPORTER_OTLP_[PROFILES_]COMPRESSION=none` sends bodies as they are.
    #[arg(long, value_name = "URL", help_heading = "Push")]
    pub otlp_endpoint: Option<String>,

    /// File of OTLP headers in the OTEL_EXPORTER_OTLP_HEADERS format (name=value,...),
    /// for credentials kept out of the environment.
    #[arg(
        long,
        env = "EMBER_OTLP_HEADERS_FILE",
        value_name = "PATH",
        help_heading = "Push"
    )]
    pub otlp_headers_file: Option<PathBuf>,

    /// The node's name in pushed series (`hostname`, `host.name`); the kernel's host name
    /// by default (in a DaemonSet, give the node's name through the downward API).
    #[arg(
        long,
        env = "EMBER_NODE_NAME",
        value_name = "NAME",
        help_heading = "Push"
    )]
    pub push_host_name: Option<String>,

    /// At most this many windows per request when a backlog is sent.
    #[arg(
        long,
        default_value_t = 6,
        value_parser = clap::value_parser!(u64).range(1..=360),
        help_heading = "Push"
    )]
    pub push_batch_windows: u64,

    /// The least time between two requests to one backend (paces a backlog).
    #[arg(long, default_value = "500ms", value_parser = parse_duration, help_heading = "Push")]
    pub push_interval: Duration,

    /// The longest wait between two tries while a backend is down (the wait doubles from
    /// 1s up to this, with jitter).
    #[arg(long, default_value = "60s", value_parser = parse_duration, help_heading = "Push")]
    pub push_max_backoff: Duration,

    /// Time limit of one request, from connecting to the response's last byte.
    #[arg(long, default_value = "30s", value_parser = parse_duration, help_heading = "Push")]
    pub push_timeout: Duration,

    /// PEM file of a private CA trusted for https:// push endpoints, besides the system's
    /// CA bundle (SSL_CERT_FILE, else /etc/ssl/certs/ca-certificates.crt). Server
    /// certificates and host names are always verified.
    #[arg(
        long,
        env = "EMBER_PUSH_CA_FILE",
        value_name = "PATH",
        help_heading = "Push"
    )]
    pub push_ca_file: Option<PathBuf>,
}

/// How the kernel's maps are sized and drained (`record` and `agent` alike).
#[derive(Debug, Args)]
pub(crate) struct DrainArgs {
    /// How often samples are read from the kernel and named (10ms to 60s; for the agent,
    /// at most --window).
    #[arg(long, default_value = "1s", value_parser = parse_drain_interval, help_heading = "Advanced")]
    pub drain_interval: Duration,

    /// Distinct (process, thread, stack) keys the kernel can hold between two drains
    /// (64 to 1048576); samples past them are lost and reported as a
    /// `[lost: counts map full]` stack.
    #[arg(
        long,
        default_value_t = profiler_common::DEFAULT_COUNTS_ENTRIES,
        value_parser = clap::value_parser!(u32).range(MIN_MAP_ENTRIES..=MAX_COUNTS_ENTRIES),
        help_heading = "Advanced"
    )]
    pub counts_map_entries: u32,

    /// Distinct stacks the kernel can hold between two drains (64 to 262144).
    #[arg(
        long,
        default_value_t = profiler_common::DEFAULT_STACKS_ENTRIES,
        value_parser = clap::value_parser!(u32).range(MIN_MAP_ENTRIES..=MAX_STACKS_ENTRIES),
        help_heading = "Advanced"
    )]
    pub stacks_map_entries: u32,

    /// How user stacks are walked: `dwarf` with the binaries' .eh_frame unwind tables
    /// (complete stacks without frame pointers), `fp` with frame pointers only, `auto`
    /// with tables where they can be built and frame pointers elsewhere.
    #[arg(long, value_enum, default_value_t = UnwinderArg::Auto, help_heading = "Sampling")]
    pub unwinder: UnwinderArg,

    /// Kernel memory for unwind tables (all binaries together), preallocated at start;
    /// binaries that do not fit use frame pointers and are named in a warning. At most
    /// 1GiB and 1/16 of the node's memory: a larger value is an error that names the cap.
    #[arg(long, default_value = "16MiB", value_parser = parse_unwind_table_mem, help_heading = "Advanced")]
    pub unwind_table_mem: u64,
}

/// The fewest entries a kernel map may be given: below this a single busy process
/// overflows it at every drain.
pub(crate) const MIN_MAP_ENTRIES: i64 = 64;
/// The most entries of each count map (about 100 MiB of kernel memory per generation).
pub(crate) const MAX_COUNTS_ENTRIES: i64 = 1 << 20;
/// The most entries of each stack map (1 KiB each, four maps).
pub(crate) const MAX_STACKS_ENTRIES: i64 = 1 << 18;

/// The shortest `--window`.
pub(crate) const MIN_WINDOW: Duration = Duration::from_secs(1);
/// The shortest and longest `--drain-interval`.
pub(crate) const DRAIN_INTERVAL_RANGE: std::ops::RangeInclusive<Duration> =
    Duration::from_millis(10)..=Duration::from_secs(60);

/// Parses `--window`: a duration of at least [`MIN_WINDOW`].
///
/// # Errors
/// The duration's own message, or that it is too short.
pub(crate) fn parse_window(s: &str) -> Result<Duration, String> {
    let d = parse_duration(s)?;
    if d < MIN_WINDOW {
        return Err(format!(
            "invalid window `{s}`: it must be at least 1s (a window is one stored profile)"
        ));
    }
    Ok(d)
}

/// Parses `--stop-grace`: a duration of at most a minute.
///
/// # Errors
/// The duration's own message, or that it is out of range.
pub(crate) fn parse_stop_grace(s: &str) -> Result<Duration, String> {
    if profiler_model::time::parse_duration(s.trim()).is_ok_and(|d| d.is_zero()) {
        return Ok(Duration::ZERO);
    }
    let d = parse_duration(s)?;
    if d > Duration::from_secs(60) {
        return Err(format!(
            "invalid stop grace `{s}`: it must be between 0s and 60s"
        ));
    }
    Ok(d)
}

/// Parses `--drain-interval`: a duration in [`DRAIN_INTERVAL_RANGE`].
///
/// # Errors
/// The duration's own message, or that it is out of range.
pub(crate) fn parse_drain_interval(s: &str) -> Result<Duration, String> {
    let d = parse_duration(s)?;
    if !DRAIN_INTERVAL_RANGE.contains(&d) {
        return Err(format!(
            "invalid drain interval `{s}`: it must be between 10ms and 60s"
        ));
    }
    Ok(d)
}

/// Parses `--unwind-table-mem`: a size within what this node can preallocate
/// ([`profiler_sampler::unwind_table_mem_cap`]).
///
/// # Errors
/// The size's own message, or one that names the cap.
pub(crate) fn parse_unwind_table_mem(s: &str) -> Result<u64, String> {
    let bytes = parse_size(s)?;
    profiler_sampler::check_unwind_table_mem(bytes).map_err(|e| format!("`{s}`: {e}"))
}

/// `--unwinder`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub(crate) enum UnwinderArg {
    /// Frame pointers only (the kernel's walk).
    Fp,
    /// .eh_frame unwind tables; binaries without them are named in a warning.
    Dwarf,
    /// Tables where they exist, frame pointers elsewhere.
    Auto,
}

impl DrainArgs {
    /// The unwinder settings these options ask for.
    #[must_use]
    pub(crate) fn unwind_config(&self) -> profiler_sampler::UnwindConfig {
        use profiler_sampler::UnwinderMode;
        profiler_sampler::UnwindConfig {
            mode: match self.unwinder {
                UnwinderArg::Fp => UnwinderMode::Fp,
                UnwinderArg::Dwarf => UnwinderMode::Dwarf,
                UnwinderArg::Auto => UnwinderMode::Auto,
            },
            table_mem: self.unwind_table_mem,
        }
    }
}

/// Where debug files of stripped binaries are fetched from (`record` and `agent` alike).
#[derive(Debug, Args)]
pub(crate) struct DebuginfodArgs {
    /// A debuginfod server to fetch the debug files of stripped binaries from, by build-id
    /// (e.g. `http://debuginfod.example:8002`), in the background; repeat for several, asked
    /// in order. Without it, the servers of the standard DEBUGINFOD_URLS variable
    /// (space-separated) are used.
    #[arg(long = "debuginfod", value_name = "URL", help_heading = "Symbols")]
    pub urls: Vec<String>,

    /// Disk space for fetched debug files (the agent's under --data-dir, record's and
    /// export's under $XDG_CACHE_HOME/ember); the least recently used are deleted past it.
    /// Also the largest file fetched.
    #[arg(long = "debuginfod-cache-size", value_name = "SIZE", default_value = "1GiB", value_parser = parse_size, help_heading = "Symbols")]
    pub cache_size: u64,

    /// The longest one request to a debuginfod server may take; `record` (at the end) and
    /// `export` wait at most this long for files still on their way.
    #[arg(long = "debuginfod-timeout", value_name = "DURATION", default_value = "10s", value_parser = parse_duration, help_heading = "Symbols")]
    pub timeout: Duration,
}

impl DebuginfodArgs {
    /// The client settings these options ask for, with the cache in `cache_dir`; `env` is
    /// the value of `DEBUGINFOD_URLS`, used when no --debuginfod is given. `None` when no
    /// server is named.
    #[must_use]
    pub(crate) fn config(
        &self,
        env: Option<&str>,
        cache_dir: PathBuf,
    ) -> Option<symbolizer::DebuginfodConfig> {
        let urls = if self.urls.is_empty() {
            symbolizer::DebuginfodConfig::urls_from(env.unwrap_or_default())
        } else {
            symbolizer::DebuginfodConfig::urls_from(&self.urls.join(" "))
        };
        (!urls.is_empty()).then(|| {
            symbolizer::DebuginfodConfig::new(urls, cache_dir)
                .with_cache_bytes(self.cache_size)
                .with_timeout(self.timeout)
        })
    }
}

/// Where `record` and `export` keep what outlives a run (debug files fetched from
/// debuginfod, the kernel's symbols for this boot): `$XDG_CACHE_HOME/ember`, else
/// `~/.cache/ember`, else (no home) `/var/cache/ember`.
pub(crate) fn user_cache_dir() -> PathBuf {
    let base = std::env::var_os("XDG_CACHE_HOME")
        .filter(|d| !d.is_empty())
        .map(PathBuf::from)
        .or_else(|| {
            std::env::var_os("HOME")
                .filter(|h| !h.is_empty())
                .map(|h| PathBuf::from(h).join(".cache"))
        })
        .unwrap_or_else(|| PathBuf::from("/var/cache"));
    base.join("ember")
}

/// `--listen`: an address, or no API at all.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Listen(pub Option<std::net::SocketAddr>);

/// Parses `HOST:PORT` (an IP address) or `none`.
///
/// # Errors
/// A message with an example of a valid address.
pub(crate) fn parse_listen(s: &str) -> Result<Listen, String> {
    if s.eq_ignore_ascii_case("none") {
        return Ok(Listen(None));
    }
    s.parse().map(|a| Listen(Some(a))).map_err(|_| {
        format!("invalid address `{s}`: expected IP:PORT such as 127.0.0.1:7070, or `none`")
    })
}

/// The largest size a flag takes, in bytes: well inside `u64` and exact in `f64`.
const MAX_SIZE: f64 = 1e18;

/// Parses a size: `2GiB`, `500MiB`, `64KiB`, `1G`, `10MB` (decimal), or bytes.
///
/// # Errors
/// A message that says what a valid size looks like.
pub(crate) fn parse_size(s: &str) -> Result<u64, String> {
    let bad =
        || format!("invalid size `{s}`: expected a number with a unit, such as 2GiB, 500MiB or 1G");
    let t = s.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let value: f64 = num.parse().map_err(|_| bad())?;
    let mult: f64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1.0,
        "k" | "kib" => 1024.0,
        "kb" => 1e3,
        "m" | "mib" => 1024.0 * 1024.0,
        "mb" => 1e6,
        "g" | "gib" => 1024.0 * 1024.0 * 1024.0,
        "gb" => 1e9,
        "t" | "tib" => 1024.0 * 1024.0 * 1024.0 * 1024.0,
        "tb" => 1e12,
        _ => return Err(bad()),
    };
    let bytes = value * mult;
    if !bytes.is_finite() || bytes > MAX_SIZE {
        return Err(format!(
            "invalid size `{s}`: it is too large (at most 1e18 bytes, 1 EB)"
        ));
    }
    if bytes < 1.0 {
        return Err(format!("invalid size `{s}`: it must be at least one byte"));
    }
    #[expect(
        clippy::cast_possible_truncation,
        clippy::cast_sign_loss,
        reason = "checked range above"
    )]
    Ok(bytes as u64)
}

const RECORD_EXAMPLES: &str = "\
Examples:
  ember record -- ./my-server --port 8080     profile a command and its children until it exits
  ember record --pid 1234 --duration 30s      profile a running process for 30 seconds
  ember record --all -d 10s -o node.svg       profile every process for 10 seconds
  ember record --all -o - | grep my_function  folded stacks on stdout, until Ctrl-C
  ember record -p 1234 -d 30s -o cpu.pb.gz    pprof for go tool pprof (.json: speedscope)

Exit status: with a command, the command's own status; otherwise 0 when a profile was
written and 1 on error. Ctrl-C (SIGINT) and SIGTERM stop recording and still write the
output.";

/// `--format` of `ember record` and `ember export`: one of the file formats of
/// [`Format`] (Ember's own JSON is the API's).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct FormatArg(pub Format);

impl ValueEnum for FormatArg {
    fn value_variants<'a>() -> &'a [Self] {
        &[
            FormatArg(Format::Folded),
            FormatArg(Format::Svg),
            FormatArg(Format::Pprof),
            FormatArg(Format::Speedscope),
        ]
    }

    fn to_possible_value(&self) -> Option<clap::builder::PossibleValue> {
        Some(clap::builder::PossibleValue::new(self.0.name()).help(self.0.description()))
    }
}

/// `ember record`.
#[derive(Debug, Args)]
#[command(group(
    clap::ArgGroup::new("target").required(true).args(["pid", "all", "command"])
))]
pub(crate) struct RecordArgs {
    /// Profile these running processes (comma-separated), their threads, and the children
    /// they fork while recording.
    #[arg(
        short,
        long,
        value_name = "PID[,PID...]",
        value_delimiter = ',',
        help_heading = "Target"
    )]
    pub pid: Vec<u32>,

    /// Profile every process on every CPU (system-wide).
    #[arg(short, long, help_heading = "Target")]
    pub all: bool,

    /// The command to run and profile, with its arguments, after `--`.
    #[arg(last = true, value_name = "COMMAND", help_heading = "Target")]
    pub command: Vec<OsString>,

    /// Stop after this long (e.g. 30s, 500ms, 2m, 1h; a bare number is seconds). Without
    /// it, record until the command exits or Ctrl-C.
    #[arg(short, long, value_parser = parse_duration, help_heading = "Sampling")]
    pub duration: Option<Duration>,

    /// Samples per second on each CPU.
    #[arg(
        short = 'F',
        long,
        default_value_t = 99,
        value_parser = clap::value_parser!(u64).range(1..=20_000),
        help_heading = "Sampling"
    )]
    pub frequency: u64,

    /// Leave kernel frames out (they are recorded by default, suffixed `_[k]`).
    #[arg(long, help_heading = "Sampling")]
    pub no_kernel: bool,

    /// Keep the idle task (`swapper`, pid 0) in the output; it is left out by default.
    #[arg(long, help_heading = "Output")]
    pub include_idle: bool,

    /// Where to write the profile; `-` is stdout (folded unless --format says otherwise).
    #[arg(short, long, default_value = "ember.svg", help_heading = "Output")]
    pub output: PathBuf,

    /// Output format; by default taken from the output's extension (.svg, .folded, .txt,
    /// .pb.gz/.pprof, .json).
    #[arg(short, long, value_enum, help_heading = "Output")]
    pub format: Option<FormatArg>,

    /// Off-CPU time beside CPU samples.
    #[command(flatten)]
    pub off_cpu: OffCpuArgs,

    /// Drain interval and kernel map sizes.
    #[command(flatten)]
    pub drain: DrainArgs,

    /// Debug files fetched from debuginfod servers.
    #[command(flatten)]
    pub debuginfod: DebuginfodArgs,
}

const EXPORT_EXAMPLES: &str = "\
Examples:
  ember export --from -1h -o last-hour.pb.gz                 pprof of the last hour (all processes)
  ember export --from -15m --filter comm=my-server -o ci.folded
  ember export --from 2026-11-26T06:00:00Z --to 2026-11-26T07:00:00Z -f speedscope -o p.json
  ember export --agent http://10.0.0.7:7070 --filter container=4f8a1c2b3d4e -o c.svg
  ember export --from -1d --resymbolize -o day.folded       name stripped frames from
                                                           debug files installed since
  ember export --from -1d --debuginfod https://debuginfod.debian.net -o day.folded
                                                           ...or fetched by build-id

Times: `now`, `now-15m` or `-1.5h` (a number and a unit: ms, s, m, h, d), RFC 3339, or unix
seconds.
--filter: comma-separated label=value (comm, pid, tid, container, pod_uid, ...); different
names must all match, a repeated name is an alternative. The store is read while an agent
keeps writing it. Exit status: 0 when a profile was written, 1 on error (no store, no
samples in the range, agent unreachable), 2 for bad arguments.";

/// Off-CPU time (`--off-cpu`), for `record` and `agent`.
#[derive(Debug, Clone, Args)]
pub(crate) struct OffCpuArgs {
    /// Record off-CPU time: how long threads waited (blocked in a lock, a read, a sleep,
    /// a page fault, or runnable but not running), charged to the stack they left the CPU
    /// in, in microseconds. CPU samples are taken too. `record` writes the off-CPU profile
    /// (a pprof output carries the CPU samples as a second sample type; other formats
    /// hold the off-CPU time only); `agent` stores an off-CPU window beside each CPU
    /// window (`type=off-cpu` in the API).
    #[arg(long, help_heading = "Off-CPU")]
    pub off_cpu: bool,

    /// Leave out waits shorter than this (e.g. 100us, 1ms, 0 for every one): they are
    /// counted (`off_cpu_short`) but not charged to a stack, so the flame graph is not
    /// buried in futex hand-offs and short preemptions.
    #[arg(
        long,
        value_name = "DURATION",
        default_value = "100us",
        value_parser = parse_off_cpu_min,
        help_heading = "Off-CPU"
    )]
    pub off_cpu_min: Duration,

    /// Take the stack at one in N switch-outs, chosen at random, and weight its wait N
    /// times: for nodes that switch too often to take a stack at every switch (the cost
    /// of --off-cpu is mostly that stack walk, which --off-cpu-min does not save).
    #[arg(
        long,
        value_name = "N",
        default_value_t = 1,
        value_parser = clap::value_parser!(u32).range(1..=1_000_000),
        help_heading = "Off-CPU"
    )]
    pub off_cpu_every: u32,
}

impl OffCpuArgs {
    /// The sampler's off-CPU settings, `None` without `--off-cpu`.
    #[must_use]
    pub(crate) fn config(&self) -> Option<profiler_sampler::OffCpuConfig> {
        self.off_cpu.then_some(profiler_sampler::OffCpuConfig {
            min: self.off_cpu_min,
            every: self.off_cpu_every,
        })
    }
}

/// `--off-cpu-min`: a duration that may be zero, at most an hour.
fn parse_off_cpu_min(s: &str) -> Result<Duration, String> {
    if s.trim() == "0" {
        return Ok(Duration::ZERO);
    }
    let d = profiler_model::time::parse_duration(s.trim())
        .map_err(|e| format!("invalid duration `{s}`: {e}"))?;
    if d > Duration::from_secs(3600) {
        return Err(format!("invalid duration `{s}`: at most 1h"));
    }
    Ok(d)
}

/// Where `ember export` reads, what it selects, and what it writes.
#[derive(Debug, Args)]
pub(crate) struct ExportArgs {
    /// Start of the range (inclusive).
    #[arg(
        long,
        default_value = "now-15m",
        value_name = "TIME",
        value_parser = parse_time_arg,
        allow_hyphen_values = true,
        help_heading = "Selection"
    )]
    pub from: TimeArg,

    /// End of the range (exclusive).
    #[arg(
        long,
        default_value = "now",
        value_name = "TIME",
        value_parser = parse_time_arg,
        allow_hyphen_values = true,
        help_heading = "Selection"
    )]
    pub to: TimeArg,

    /// Keep only samples whose labels match, e.g. `comm=nginx,pid=1234` or
    /// `container=4f8a1c2b3d4e`.
    #[arg(long, value_name = "LABEL=VALUE,...", value_parser = parse_filter_arg, help_heading = "Selection")]
    pub filter: Option<LabelFilter>,

    /// Keep the idle task (`swapper`, pid 0); it is left out by default.
    #[arg(long, help_heading = "Selection")]
    pub include_idle: bool,

    /// Leave kernel frames out.
    #[arg(long, help_heading = "Selection")]
    pub no_kernel: bool,

    /// Which profile: `cpu` (samples) or `off-cpu` (microseconds waited, stored by
    /// `ember agent --off-cpu`).
    #[arg(
        long = "type",
        value_name = "TYPE",
        default_value = "cpu",
        value_parser = parse_profile_kind,
        help_heading = "Selection"
    )]
    pub profile_type: profiler_model::ProfileKind,

    /// Directory of the agent's store (read directly; nothing is written to it).
    #[arg(
        long,
        env = "EMBER_DATA_DIR",
        default_value = "/var/lib/ember",
        help_heading = "Source"
    )]
    pub data_dir: PathBuf,

    /// Ask a running agent's HTTP API instead of reading the store (http://HOST:PORT).
    /// --data-dir is ignored when this is given.
    #[arg(long, value_name = "URL", help_heading = "Source")]
    pub agent: Option<String>,

    /// With --agent: a file holding the agent's API token, sent as `Authorization: Bearer`.
    /// The token can come from the EMBER_API_TOKEN environment variable instead; never
    /// from a flag, which `ps` would show.
    #[arg(
        long,
        env = "EMBER_API_TOKEN_FILE",
        value_name = "PATH",
        help_heading = "Source"
    )]
    pub api_token_file: Option<PathBuf>,

    /// With --agent: how long connecting may take.
    #[arg(long, default_value = "10s", value_name = "DURATION", value_parser = parse_duration, help_heading = "Source")]
    pub agent_connect_timeout: Duration,

    /// With --agent: the longest the agent may stay silent (before its answer starts, or
    /// in the middle of it).
    #[arg(long, default_value = "60s", value_name = "DURATION", value_parser = parse_duration, help_heading = "Source")]
    pub agent_read_timeout: Duration,

    /// With --agent: how long the whole request may take, however the agent trickles.
    #[arg(long, default_value = "5m", value_name = "DURATION", value_parser = parse_duration, help_heading = "Source")]
    pub agent_timeout: Duration,

    /// With --agent: the largest answer accepted, and the largest profile it may
    /// decompress to (e.g. 256MiB, 1GiB).
    #[arg(long, default_value = "256MiB", value_name = "SIZE", value_parser = parse_size, help_heading = "Source")]
    pub agent_max_response: u64,

    /// Where to write the profile; `-` is stdout.
    #[arg(short, long, default_value = "-", help_heading = "Output")]
    pub output: PathBuf,

    /// Output format; by default taken from the output's extension (.folded, .svg,
    /// .pb.gz/.pprof, .json), folded on stdout.
    #[arg(short, long, value_enum, help_heading = "Output")]
    pub format: Option<FormatArg>,

    /// Name frames stored without a name (`module+0xOFFSET`) again, from debug files that
    /// appeared since (found by the binary's build-id under each --debug-dir).
    #[arg(long, help_heading = "Symbols")]
    pub resymbolize: bool,

    /// Directory searched for debug files by --resymbolize (`.build-id/xx/rest.debug`
    /// layout, as Debian's -dbgsym packages install); repeat for several.
    #[arg(long = "debug-dir", value_name = "DIR", default_value = symbolizer::DEFAULT_DEBUG_DIR, help_heading = "Symbols")]
    pub debug_dirs: Vec<PathBuf>,

    /// With --resymbolize (which --debuginfod implies), debug files no --debug-dir holds
    /// are fetched from these servers (or DEBUGINFOD_URLS's), waiting at most
    /// --debuginfod-timeout for them.
    #[command(flatten)]
    pub debuginfod: DebuginfodArgs,
}

/// A point in time, nanoseconds since the Unix epoch, as `--from`/`--to` give it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct TimeArg(pub u64);

/// Parses `now`, `now-15m`, `-1.5h`, RFC 3339 or unix seconds: the HTTP API's grammar
/// ([`profiler_model::time::parse_time`]).
///
/// # Errors
/// A message that says what a valid time looks like.
pub(crate) fn parse_time_arg(s: &str) -> Result<TimeArg, String> {
    profiler_model::time::parse_time(s, crate::now_unix_ns())
        .map(TimeArg)
        .map_err(|e| e.to_string())
}

/// Parses a label filter; `container` is accepted for the agent's `container_id` label.
///
/// # Errors
/// The filter's own message, naming the bad part.
/// `--type`: a profile kind by its API name.
fn parse_profile_kind(s: &str) -> Result<profiler_model::ProfileKind, String> {
    profiler_model::ProfileKind::parse(s.trim())
}

pub(crate) fn parse_filter_arg(s: &str) -> Result<LabelFilter, String> {
    LabelFilter::parse(s).map_err(|e| e.to_string())
}

const DIFF_EXAMPLES: &str = "\
Examples:
  ember diff main.folded pr.folded                      the functions whose share changed most
  ember diff base.pb.gz new.pb.gz --svg diff.svg        differential flame graph (red grew)
  ember diff base.folded new.folded --fail-on-regression 5%
  ember diff base.folded new.folded --fail-on 'parse_request>+2%' --fail-on 'fn_b>+5%'

Inputs are folded stacks (`a;b;c 42` lines) or pprof (gzip or not), told apart by content.
Shares are fractions of each profile's own total, so captures of different lengths compare:
a function with 30 of 100 samples in BASE and 60 of 200 in NEW has not changed.
\"5%\" always means 5 percentage points of all samples: a share going from 30% to 35.1%
grows by 5.1 points and trips a 5% gate; 30% to 34% does not. A gate trips when growth is
strictly greater than its limit. --fail-on-regression checks every function's SELF share
(samples in its own code); --fail-on 'FUNC>+P%' checks FUNC's TOTAL share (it and all it
calls). FUNC is a name as folded stacks show it (kernel functions end in _[k]).
Sampling noise on a share p of n samples is about sqrt(p(1-p)/n): 2 points at n=500.

Exit status: 0 no gate tripped, 1 a gate tripped (each is explained on stderr),
2 bad arguments or unreadable input (the file, and line for folded input, is named).";

/// `ember diff`.
#[derive(Debug, Args)]
pub(crate) struct DiffArgs {
    /// The baseline profile (folded stacks or pprof).
    #[arg(value_name = "BASE")]
    pub base: PathBuf,

    /// The profile compared with it (folded stacks or pprof).
    #[arg(value_name = "NEW")]
    pub new: PathBuf,

    /// Write a differential flame graph SVG: widths are NEW, red frames grew, blue shrank.
    #[arg(long, value_name = "FILE", help_heading = "Output")]
    pub svg: Option<PathBuf>,

    /// Write the three-column differential folded file (`stack base new`, BASE scaled to
    /// NEW's total), what inferno-flamegraph and flamegraph.pl read.
    #[arg(long, value_name = "FILE", help_heading = "Output")]
    pub folded: Option<PathBuf>,

    /// Rows of the table of changed functions on stdout (0 for none).
    #[arg(long, default_value_t = 20, value_name = "N", help_heading = "Output")]
    pub top: usize,

    /// Exit 1 when any function's self share grows by more than this many percentage
    /// points (`5%`, `0.5%`; the % is optional).
    #[arg(long, value_name = "POINTS%", value_parser = parse_points, help_heading = "Gates")]
    pub fail_on_regression: Option<f64>,

    /// Exit 1 when a named function's total share grows too much: GATE is
    /// 'FUNC>+POINTS%', e.g. 'fn_b>+5%' (more than 5 percentage points). Repeatable.
    #[arg(long, value_name = "GATE", value_parser = parse_gate, help_heading = "Gates")]
    pub fail_on: Vec<FunctionGate>,

    /// The largest pprof input read, after decompression (e.g. 1GiB, 4GiB): a larger one,
    /// a gzip bomb say, is an error. Folded input is streamed and needs no limit.
    #[arg(long, default_value = "1GiB", value_name = "SIZE", value_parser = parse_size, help_heading = "Input")]
    pub max_input_size: u64,

    /// Which profile of pprof inputs to compare: `cpu` (samples) or `off-cpu` (time
    /// waited), for a pprof that carries both (`ember record --off-cpu` writes the off-CPU
    /// profile with the CPU samples beside it). By default the CPU samples, or the off-CPU
    /// time of a pprof that has only that. Folded input has one profile only: --type with
    /// it is an error.
    #[arg(long = "type", value_name = "TYPE", value_parser = parse_profile_kind, help_heading = "Input")]
    pub profile_type: Option<profiler_model::ProfileKind>,
}

/// Parses a gate limit in percentage points: `5%`, `0.5%`, `+5%`, `5`.
///
/// # Errors
/// A message that says what a limit looks like.
pub(crate) fn parse_points(s: &str) -> Result<f64, String> {
    let t = s.trim();
    let num = t.strip_suffix('%').unwrap_or(t).trim();
    let num = num.strip_prefix('+').unwrap_or(num);
    let bad = || {
        format!(
            "invalid limit `{s}`: expected percentage points of all samples, such as 5% or 0.5%"
        )
    };
    let v: f64 = num.parse().map_err(|_| bad())?;
    if !v.is_finite() || !(0.0..=100.0).contains(&v) || num.starts_with('-') {
        return Err(format!(
            "invalid limit `{s}`: it must be between 0% and 100% (percentage points of all samples)"
        ));
    }
    Ok(v)
}

/// `--fail-on 'FUNC>+P%'`: FUNC's total share may grow by at most `points`.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct FunctionGate {
    /// The function, as folded stacks name it.
    pub name: String,
    /// The limit in percentage points.
    pub points: f64,
    /// The gate as written, for messages.
    pub text: String,
}

/// Parses `FUNC>+5%` (or `FUNC>5%`, `FUNC > +0.5%`). The limit follows the last `>`, so C++
/// names with templates work.
///
/// # Errors
/// A message with an example of a valid gate.
pub(crate) fn parse_gate(s: &str) -> Result<FunctionGate, String> {
    let (name, limit) = s
        .rsplit_once('>')
        .ok_or_else(|| format!("invalid gate `{s}`: expected FUNC>+POINTS%, such as 'fn_b>+5%'"))?;
    let name = name.trim();
    if name.is_empty() {
        return Err(format!(
            "invalid gate `{s}`: no function before `>` (expected FUNC>+POINTS%)"
        ));
    }
    let points = parse_points(limit).map_err(|e| format!("invalid gate `{s}`: {e}"))?;
    Ok(FunctionGate {
        name: name.to_owned(),
        points,
        text: s.to_owned(),
    })
}

/// The longest duration a flag takes: about 31 years, far beyond any recording, window
/// or retention, and short enough that no clock arithmetic on it overflows.
const MAX_FLAG_DURATION: Duration = Duration::from_secs(1_000_000_000);

/// Parses `30s`, `500ms`, `2m`, `1.5h` or a bare number of seconds (the grammar of
/// [`profiler_model::time`]); the duration must be more than zero.
///
/// # Errors
/// A message that says what a valid duration looks like, or that it is zero or too large.
pub(crate) fn parse_duration(s: &str) -> Result<Duration, String> {
    use profiler_model::time::DurationError;
    let s = s.trim();
    match profiler_model::time::parse_duration(s) {
        Ok(d) if d.is_zero() => Err(format!("invalid duration `{s}`: it must be more than zero")),
        Ok(d) if d > MAX_FLAG_DURATION => Err(format!(
            "invalid duration `{s}`: it is too large (at most {}s, about 31 years)",
            MAX_FLAG_DURATION.as_secs()
        )),
        Ok(d) => Ok(d),
        Err(DurationError::TooLarge) => Err(format!(
            "invalid duration `{s}`: it is too large (at most {}s, about 31 years)",
            MAX_FLAG_DURATION.as_secs()
        )),
        Err(_) => Err(format!(
            "invalid duration `{s}`: expected a number with a unit, such as 30s, 500ms, 2m or 1h"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_is_well_formed() {
        Cli::command().debug_assert();
    }

    #[test]
    fn durations_parse_with_units() {
        assert_eq!(parse_duration("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
        assert_eq!(parse_duration("1.5"), Ok(Duration::from_millis(1500)));
        assert!(parse_duration("abc").unwrap_err().contains("such as 30s"));
        assert!(parse_duration("10 parsecs").is_err());
        assert!(parse_duration("0s").unwrap_err().contains("more than zero"));
        assert!(parse_duration("").is_err());
    }

    #[test]
    fn overflowing_durations_and_sizes_are_too_large_not_zero() {
        for s in [
            "99999999999h",
            "18446744073709551615s",
            "1000000001s",
            "12000d",
        ] {
            let e = parse_duration(s).unwrap_err();
            assert!(e.contains("too large"), "{s}: {e}");
        }
        assert_eq!(parse_duration("1000000000s"), Ok(MAX_FLAG_DURATION));
        assert_eq!(parse_duration("1.5h"), Ok(Duration::from_secs(5400)));
        assert!(parse_size("1000000TiB").unwrap_err().contains("too large"));
        assert!(
            parse_size("18446744073709551616")
                .unwrap_err()
                .contains("too large")
        );
        assert!(parse_size("0.5").unwrap_err().contains("at least one byte"));
    }

    #[test]
    fn sizes_parse_with_units() {
        assert_eq!(parse_size("2GiB"), Ok(2 << 30));
        assert_eq!(parse_size("500MiB"), Ok(500 << 20));
        assert_eq!(parse_size("1G"), Ok(1 << 30));
        assert_eq!(parse_size("10MB"), Ok(10_000_000));
        assert_eq!(parse_size("4096"), Ok(4096));
        assert!(parse_size("lots").unwrap_err().contains("such as 2GiB"));
        assert!(parse_size("0").is_err());
    }

    #[test]
    fn limits_and_gates_parse() {
        assert_eq!(parse_points("5%"), Ok(5.0));
        assert_eq!(parse_points("+0.5%"), Ok(0.5));
        assert_eq!(parse_points("7"), Ok(7.0));
        assert!(
            parse_points("-5%")
                .unwrap_err()
                .contains("between 0% and 100%")
        );
        assert!(parse_points("150%").is_err());
        assert!(parse_points("five").unwrap_err().contains("such as 5%"));
        let g = parse_gate("std::vector<int>::push>+2%").unwrap();
        assert_eq!(g.name, "std::vector<int>::push");
        assert_eq!(g.points, 2.0);
        assert_eq!(parse_gate("fn_b > 5%").unwrap().name, "fn_b");
        assert!(parse_gate("fn_b+5%").unwrap_err().contains("FUNC>+POINTS%"));
        assert!(parse_gate(">+5%").unwrap_err().contains("no function"));
        assert!(parse_gate("f>+x%").unwrap_err().contains("invalid limit"));
    }

    #[test]
    fn record_needs_exactly_one_target() {
        let parse = |args: &[&str]| Cli::try_parse_from(args);
        assert!(parse(&["ember", "record"]).is_err());
        assert!(parse(&["ember", "record", "--all", "--pid", "1"]).is_err());
        assert!(parse(&["ember", "record", "--all"]).is_ok());
        assert!(parse(&["ember", "record", "--pid", "1,2"]).is_ok());
        let cli = parse(&["ember", "record", "--", "sleep", "1"]).unwrap();
        let Command::Record(r) = cli.command else {
            panic!("not record")
        };
        assert_eq!(r.command, ["sleep", "1"]);
        assert!(parse(&["ember", "record", "--all", "-F", "0"]).is_err());
    }

    #[test]
    fn record_and_export_take_the_same_duration_grammar() {
        let parse = |args: &[&str]| Cli::try_parse_from(args);
        let Command::Record(r) = parse(&["ember", "record", "--all", "-d", "1.5h"])
            .unwrap()
            .command
        else {
            panic!("not record")
        };
        assert_eq!(r.duration, Some(Duration::from_secs(5400)));
        let before = crate::now_unix_ns();
        let Command::Export(e) = parse(&["ember", "export", "--from", "-1.5h", "--to", "now-90m"])
            .unwrap()
            .command
        else {
            panic!("not export")
        };
        let after = crate::now_unix_ns();
        let span = 5400 * profiler_model::time::NS_PER_S;
        assert!((before - span..=after - span).contains(&e.from.0), "{e:?}");
        assert!((before - span..=after - span).contains(&e.to.0), "{e:?}");
        let err = parse(&["ember", "export", "--from", "-1"])
            .unwrap_err()
            .to_string();
        assert!(err.contains("`-1`: missing unit"), "{err}");
        let err = parse(&["ember", "record", "--all", "-d", "18446744073709551615s"])
            .unwrap_err()
            .to_string();
        assert!(err.contains("too large"), "{err}");
    }

    #[test]
    fn windows_drains_map_sizes_and_table_memory_are_bounded() {
        let parse = |args: &[&str]| {
            Cli::try_parse_from(args)
                .map(|_| ())
                .map_err(|e| e.to_string())
        };
        let err = parse(&["ember", "agent", "--window", "1ms"]).unwrap_err();
        assert!(err.contains("it must be at least 1s"), "{err}");
        assert!(parse(&["ember", "agent", "--window", "1s"]).is_ok());
        for bad in ["1ms", "2m"] {
            let err = parse(&["ember", "record", "--all", "--drain-interval", bad]).unwrap_err();
            assert!(err.contains("between 10ms and 60s"), "{bad}: {err}");
        }
        assert!(parse(&["ember", "record", "--all", "--drain-interval", "10ms"]).is_ok());
        for bad in ["0", "1", "63", "1048577"] {
            let err =
                parse(&["ember", "record", "--all", "--counts-map-entries", bad]).unwrap_err();
            assert!(
                err.contains("64..=1048576") || err.contains("64"),
                "{bad}: {err}"
            );
            assert!(parse(&["ember", "agent", "--stacks-map-entries", bad]).is_err());
        }
        assert!(parse(&["ember", "record", "--all", "--counts-map-entries", "64"]).is_ok());
        let err = parse(&["ember", "record", "--all", "--unwind-table-mem", "1TiB"]).unwrap_err();
        assert!(err.contains("more than this node allows: at most"), "{err}");
        assert!(parse(&["ember", "agent", "--unwind-table-mem", "64MiB"]).is_ok());
        // The cap: 1 GiB, or 1/16 of a small node's memory.
        use profiler_sampler::{MAX_TABLE_MEM, unwind_table_mem_cap};
        assert_eq!(unwind_table_mem_cap(None), MAX_TABLE_MEM);
        assert_eq!(unwind_table_mem_cap(Some(64 << 30)), MAX_TABLE_MEM);
        assert_eq!(unwind_table_mem_cap(Some(4 << 30)), 256 << 20);
    }

    #[test]
    fn debuginfod_flags_override_the_variable_on_record_and_agent() {
        let parse = |args: &[&str]| Cli::try_parse_from(args).unwrap().command;
        let Command::Record(r) = parse(&["ember", "record", "-a"]) else {
            panic!("not record")
        };
        let dir = PathBuf::from("/c");
        assert_eq!(r.debuginfod.config(None, dir.clone()), None);
        let from_env = r
            .debuginfod
            .config(Some("http://e:1/ http://f:2"), dir.clone())
            .expect("servers from DEBUGINFOD_URLS");
        assert_eq!(from_env.urls, ["http://e:1", "http://f:2"]);
        assert_eq!(from_env.cache_bytes, 1 << 30);
        assert_eq!(from_env.timeout, Duration::from_secs(10));
        assert_eq!(from_env.cache_dir, dir);
        let Command::Agent(a) = parse(&[
            "ember",
            "agent",
            "--debuginfod",
            "http://a:8002",
            "--debuginfod",
            "http://b:8002/",
            "--debuginfod-cache-size",
            "64MiB",
            "--debuginfod-timeout",
            "2s",
        ]) else {
            panic!("not agent")
        };
        let flags = a
            .debuginfod
            .config(Some("http://e:1"), dir)
            .expect("servers from the flags");
        assert_eq!(flags.urls, ["http://a:8002", "http://b:8002"]);
        assert_eq!(flags.cache_bytes, 64 << 20);
        assert_eq!(flags.timeout, Duration::from_secs(2));
    }

    #[test]
    fn agent_symbol_cache_and_debug_dirs() {
        let parse = |args: &[&str]| Cli::try_parse_from(args);
        let Command::Agent(a) = parse(&["ember", "agent"]).unwrap().command else {
            panic!("not agent")
        };
        assert_eq!(a.symbol_cache, 256 << 20);
        assert_eq!(a.debug_dirs, [PathBuf::from("/usr/lib/debug")]);
        let cli = parse(&[
            "ember",
            "agent",
            "--symbol-cache",
            "64MiB",
            "--debug-dir",
            "/a",
            "--debug-dir",
            "/b",
        ])
        .unwrap();
        let Command::Agent(a) = cli.command else {
            panic!("not agent")
        };
        assert_eq!(a.symbol_cache, 64 << 20);
        assert_eq!(a.debug_dirs, [PathBuf::from("/a"), PathBuf::from("/b")]);
        let err = parse(&["ember", "agent", "--symbol-cache", "lots"]).unwrap_err();
        assert!(err.to_string().contains("such as 2GiB"), "{err}");
    }

    #[test]
    fn agent_api_flags() {
        let parse = |args: &[&str]| Cli::try_parse_from(args);
        let cli = parse(&[
            "ember",
            "agent",
            "--api-token-file",
            "/etc/ember/token",
            "--api-allowed-host",
            "node-7",
            "--api-allowed-host",
            "node-7.example",
            "--tls-cert",
            "c.pem",
            "--tls-key",
            "k.pem",
            "--insecure-listen",
        ])
        .unwrap();
        let Command::Agent(a) = cli.command else {
            panic!("not agent")
        };
        assert_eq!(a.api_token_file, Some(PathBuf::from("/etc/ember/token")));
        assert_eq!(a.api_allowed_hosts, ["node-7", "node-7.example"]);
        assert_eq!(a.tls_cert, Some(PathBuf::from("c.pem")));
        assert!(a.insecure_listen);
        // A certificate without its key (or the other way round) is an error.
        let err = parse(&["ember", "agent", "--tls-cert", "c.pem"]).unwrap_err();
        assert!(err.to_string().contains("--tls-key"), "{err}");
        // There is no flag that takes the token itself.
        assert!(parse(&["ember", "agent", "--api-token", "x"]).is_err());
    }
}
