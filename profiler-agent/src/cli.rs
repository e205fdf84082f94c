//! The command line: clap types only. Validation into a run configuration lives with the
//! command that runs it (`record::RecordConfig::from_args`).

use std::ffi::OsString;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};

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
pub struct Cli {
    /// Options for every command.
    #[command(flatten)]
    pub global: GlobalArgs,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Options for every command.
#[derive(Debug, Args)]
pub struct GlobalArgs {
    /// More log output on stderr (-v info, -vv debug, -vvv trace); RUST_LOG overrides it.
    #[arg(short, long, action = clap::ArgAction::Count, global = true, conflicts_with = "quiet")]
    pub verbose: u8,
    /// Less output on stderr: errors only, no live status line.
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    pub quiet: u8,
}

/// Ember's commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Profile a command, some processes, or the whole machine, and write a flame graph.
    #[command(after_help = RECORD_EXAMPLES)]
    Record(RecordArgs),
    /// Sample every process continuously and keep the profiles on disk, window by window.
    #[command(after_help = AGENT_EXAMPLES)]
    Agent(AgentArgs),
}

const AGENT_EXAMPLES: &str = "\
Examples:
  ember agent                                     19 Hz, 10 s windows, /var/lib/ember, 7 days
  ember agent --data-dir /tmp/ember --retention 1h --store-max-size 200MiB

SIGINT and SIGTERM write the open window before the agent exits.";

/// `ember agent`.
#[derive(Debug, Args)]
pub struct AgentArgs {
    /// Samples per second on each CPU.
    #[arg(
        short = 'F',
        long,
        default_value_t = 19,
        value_parser = clap::value_parser!(u64).range(1..=20_000),
        help_heading = "Sampling"
    )]
    pub frequency: u64,

    /// Length of one stored window (profiles are kept at this resolution).
    #[arg(long, default_value = "10s", value_parser = parse_duration, help_heading = "Sampling")]
    pub window: Duration,

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

    /// Keep windows this long.
    #[arg(long, env = "EMBER_STORE_RETENTION", default_value = "7d", value_parser = parse_duration, help_heading = "Store")]
    pub retention: Duration,

    /// Keep the store under this size (e.g. 2GiB, 500MiB, 1G).
    #[arg(long, env = "EMBER_STORE_MAX_SIZE", default_value = "2GiB", value_parser = parse_size, help_heading = "Store")]
    pub store_max_size: u64,

    /// Drain interval and kernel map sizes.
    #[command(flatten)]
    pub drain: DrainArgs,
}

/// How the kernel's maps are sized and drained (`record` and `agent` alike).
#[derive(Debug, Args)]
pub struct DrainArgs {
    /// How often samples are read from the kernel and named.
    #[arg(long, default_value = "1s", value_parser = parse_duration, help_heading = "Advanced")]
    pub drain_interval: Duration,

    /// Distinct (process, thread, stack) keys the kernel can hold between two drains.
    #[arg(long, default_value_t = profiler_common::DEFAULT_COUNTS_ENTRIES, help_heading = "Advanced")]
    pub counts_map_entries: u32,

    /// Distinct stacks the kernel can hold between two drains.
    #[arg(long, default_value_t = profiler_common::DEFAULT_STACKS_ENTRIES, help_heading = "Advanced")]
    pub stacks_map_entries: u32,

    /// How user stacks are walked: `dwarf` with the binaries' .eh_frame unwind tables
    /// (complete stacks without frame pointers), `fp` with frame pointers only, `auto`
    /// with tables where they can be built and frame pointers elsewhere.
    #[arg(long, value_enum, default_value_t = UnwinderArg::Auto, help_heading = "Sampling")]
    pub unwinder: UnwinderArg,

    /// Kernel memory for unwind tables (all binaries together); binaries that do not fit
    /// use frame pointers and are named in a warning.
    #[arg(long, default_value = "16MiB", value_parser = parse_size, help_heading = "Advanced")]
    pub unwind_table_mem: u64,
}

/// `--unwinder`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum UnwinderArg {
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
    pub fn unwind_config(&self) -> crate::sample::UnwindConfig {
        use crate::sample::UnwinderMode;
        crate::sample::UnwindConfig {
            mode: match self.unwinder {
                UnwinderArg::Fp => UnwinderMode::Fp,
                UnwinderArg::Dwarf => UnwinderMode::Dwarf,
                UnwinderArg::Auto => UnwinderMode::Auto,
            },
            table_mem: self.unwind_table_mem,
        }
    }
}

/// `--listen`: an address, or no API at all.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Listen(pub Option<std::net::SocketAddr>);

/// Parses `HOST:PORT` (an IP address) or `none`.
///
/// # Errors
/// A message with an example of a valid address.
pub fn parse_listen(s: &str) -> Result<Listen, String> {
    if s.eq_ignore_ascii_case("none") {
        return Ok(Listen(None));
    }
    s.parse().map(|a| Listen(Some(a))).map_err(|_| {
        format!("invalid address `{s}`: expected IP:PORT such as 127.0.0.1:7070, or `none`")
    })
}

/// Parses a size: `2GiB`, `500MiB`, `64KiB`, `1G`, `10MB` (decimal), or bytes.
///
/// # Errors
/// A message that says what a valid size looks like.
pub fn parse_size(s: &str) -> Result<u64, String> {
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
    if !bytes.is_finite() || !(1.0..=1e18).contains(&bytes) {
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

Exit status: with a command, the command's own status; otherwise 0 when a profile was
written and 1 on error. Ctrl-C (SIGINT) and SIGTERM stop recording and still write the
output.";

/// Output formats of `ember record`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum OutputFormat {
    /// Folded stacks (`comm;main;work;fn_a 42`), what inferno and flamegraph.pl read.
    Folded,
    /// An interactive flame graph SVG (inferno).
    Svg,
}

/// `ember record`.
#[derive(Debug, Args)]
#[command(group(
    clap::ArgGroup::new("target").required(true).args(["pid", "all", "command"])
))]
pub struct RecordArgs {
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

    /// Output format; by default taken from the output's extension (.svg, .folded, .txt).
    #[arg(short, long, value_enum, help_heading = "Output")]
    pub format: Option<OutputFormat>,

    /// Drain interval and kernel map sizes.
    #[command(flatten)]
    pub drain: DrainArgs,
}

/// Parses `30s`, `500ms`, `2m`, `1h`, `1.5s` or a bare number of seconds.
///
/// # Errors
/// A message that says what a valid duration looks like.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let bad = || {
        format!(
            "invalid duration `{s}`: expected a number with a unit, such as 30s, 500ms, 2m or 1h"
        )
    };
    let s = s.trim();
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let value: f64 = num.parse().map_err(|_| bad())?;
    let secs = match unit.trim() {
        "" | "s" | "sec" | "secs" => value,
        "ms" => value / 1000.0,
        "m" | "min" | "mins" => value * 60.0,
        "h" | "hr" | "hrs" => value * 3600.0,
        "d" => value * 86_400.0,
        _ => return Err(bad()),
    };
    if !secs.is_finite() || secs <= 0.0 || secs > 1e9 {
        return Err(format!("invalid duration `{s}`: it must be more than zero"));
    }
    Ok(Duration::from_secs_f64(secs))
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
}
