//! `ember record`: one capture, from start to written flame graph.
//!
//! The [`crate::pipeline`] loop drains the sampler every `drain_interval` and symbolizes
//! each drain while the processes are still alive; record's sink ([`RecordSink`]) stops it
//! when the duration is up, the command exits or every target process is gone (a
//! SIGINT/SIGTERM stops it too, and is passed on to the command). The loop drains once
//! more and the sink writes the one profile of the run. A signal never loses the capture:
//! the last drain is symbolized in full, however long that takes.

use std::ffi::OsString;
use std::io::{self, IsTerminal as _, Write};
use std::os::unix::process::ExitStatusExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus};
use std::time::{Duration, Instant};

use std::fmt::Write as _;

use profiler_common::Stat;
use profiler_model::{Format, Profile, ProfileKind, folded};
use profiler_render::RenderOptions;
use tracing::{debug, warn};

use crate::aggregate::{Aggregator, COUNTS_FULL_FRAME, LOST_COMM};
use crate::cli::RecordArgs;
use crate::pipeline::{End, OnStop, Pipeline, PipelineConfig, Sink, Ticks};
use profiler_sampler::{Sampler, SamplerConfig, SamplerStats, Target};

/// Why a recording could not be made.
#[derive(Debug, thiserror::Error)]
pub(crate) enum RecordError {
    /// Sampling failed to start or broke down.
    #[error(transparent)]
    Sample(#[from] profiler_sampler::SampleError),
    /// The output format cannot be told from the file name.
    #[error(transparent)]
    UnknownFormat(#[from] crate::output::UnknownFormat),
    /// `-o -` with stdout closed.
    #[error(transparent)]
    StdoutClosed(#[from] crate::output::StdoutClosed),
    /// The command could not be started.
    #[error("cannot run `{command}`")]
    Spawn {
        /// The command's name.
        command: String,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// Writing the output failed.
    #[error("cannot write `{path}`")]
    Write {
        /// The output path.
        path: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// Nothing was sampled.
    #[error("nothing sampled from {target} in {seconds:.1} s: {hint}")]
    NothingSampled {
        /// What was profiled.
        target: String,
        /// How long.
        seconds: f64,
        /// Why that may be, and what to try, for this kind of target.
        hint: &'static str,
    },
}

/// A validated `ember record` run.
#[derive(Debug, Clone)]
pub(crate) struct RecordConfig {
    /// What to sample.
    pub target: RecordTarget,
    /// Stop after this long.
    pub duration: Option<Duration>,
    /// Samples per second per CPU.
    pub frequency_hz: u64,
    /// Keep kernel frames.
    pub kernel: bool,
    /// Keep the idle task.
    pub include_idle: bool,
    /// Output path; `-` is stdout.
    pub output: PathBuf,
    /// Output format.
    pub format: Format,
    /// How often to drain the kernel's maps.
    pub drain_interval: Duration,
    /// Count map size.
    pub counts_entries: u32,
    /// Stack map size.
    pub stacks_entries: u32,
    /// How user stacks are walked (`--unwinder`, `--unwind-table-mem`).
    pub unwind: profiler_sampler::UnwindConfig,
    /// Show a live status line on stderr.
    pub status_line: bool,
    /// Where debug files of stripped binaries are fetched from (`--debuginfod`).
    pub debuginfod: Option<symbolizer::DebuginfodConfig>,
    /// Where copies that outlive the run are kept (the kernel's symbols for this boot,
    /// decompressed debug files).
    pub copy_dir: Option<PathBuf>,
    /// Record off-CPU time instead of CPU samples (`--off-cpu`).
    pub off_cpu: Option<profiler_sampler::OffCpuConfig>,
}

/// What `ember record` profiles.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum RecordTarget {
    /// The whole machine.
    All,
    /// Running processes.
    Pids(Vec<u32>),
    /// A command to run, with its arguments.
    Command(Vec<OsString>),
}

impl RecordTarget {
    /// Why a run of this target can sample nothing, and what to try.
    fn nothing_sampled_hint(&self) -> &'static str {
        match self {
            RecordTarget::All => {
                "the node was idle; try a longer --duration, or --include-idle to see the \
                 idle task"
            }
            RecordTarget::Pids(_) => {
                "the target did not use the CPU (is it idle or blocked?); try a longer \
                 --duration, --off-cpu to see where it waits, or check the PID"
            }
            RecordTarget::Command(_) => {
                "the command did not use the CPU (is it idle or blocked?); try a longer \
                 --duration, or --off-cpu to see where it waits"
            }
        }
    }

    fn describe(&self) -> String {
        match self {
            RecordTarget::All => "all processes".to_owned(),
            RecordTarget::Pids(p) => {
                let list: Vec<String> = p.iter().map(ToString::to_string).collect();
                format!("pid {}", list.join(","))
            }
            RecordTarget::Command(c) => c
                .iter()
                .map(|a| a.to_string_lossy().into_owned())
                .collect::<Vec<_>>()
                .join(" "),
        }
    }
}

impl RecordConfig {
    /// Validates the command line.
    ///
    /// # Errors
    /// When the output format cannot be told.
    pub(crate) fn from_args(args: RecordArgs, quiet: bool) -> Result<Self, RecordError> {
        let target = if args.all {
            RecordTarget::All
        } else if !args.pid.is_empty() {
            RecordTarget::Pids(args.pid)
        } else {
            RecordTarget::Command(args.command)
        };
        let format = crate::output::format_for(&args.output, args.format)?;
        crate::output::check_writable(&args.output)?;
        Ok(RecordConfig {
            target,
            duration: args.duration,
            frequency_hz: args.frequency,
            kernel: !args.no_kernel,
            include_idle: args.include_idle,
            output: args.output,
            format,
            drain_interval: args.drain.drain_interval,
            counts_entries: args.drain.counts_map_entries,
            stacks_entries: args.drain.stacks_map_entries,
            unwind: args.drain.unwind_config(),
            status_line: !quiet && io::stderr().is_terminal(),
            debuginfod: args.debuginfod.config(
                std::env::var(symbolizer::DEBUGINFOD_URLS).ok().as_deref(),
                crate::cli::user_cache_dir().join("debuginfod"),
            ),
            copy_dir: Some(crate::cli::user_cache_dir()),
            off_cpu: args.off_cpu.config(),
        })
    }
}

/// What a finished recording produced.
#[derive(Debug)]
pub(crate) struct RecordOutcome {
    /// The profile as written (idle removed unless asked for).
    pub profile: Profile,
    /// The command's exit status, when a command was run.
    pub exit_status: Option<ExitStatus>,
}

struct Status {
    enabled: bool,
    last: Instant,
}

impl Status {
    /// Whether the line is shown and due for an update.
    fn due(&self) -> bool {
        self.enabled && self.last.elapsed() >= Duration::from_millis(250)
    }

    fn show(&mut self, elapsed: Duration, samples: u64, lost: u64) {
        self.last = Instant::now();
        let mut err = io::stderr().lock();
        let _ = write!(
            err,
            "\r\x1b[2Kember: recording {:>6.1} s  {samples} samples  {lost} lost",
            elapsed.as_secs_f64()
        );
        let _ = err.flush();
    }

    fn clear(&self) {
        if self.enabled {
            let _ = write!(io::stderr().lock(), "\r\x1b[2K");
        }
    }
}

/// Runs a recording to the end and writes its output.
///
/// # Errors
/// [`RecordError`] with what to do about it.
pub(crate) fn run(config: &RecordConfig) -> Result<RecordOutcome, RecordError> {
    let own_pid = std::process::id();
    let sampler_target = match &config.target {
        RecordTarget::All => Target::All,
        RecordTarget::Pids(p) => Target::Pids(p.clone()),
        RecordTarget::Command(_) => Target::ChildrenOf(own_pid),
    };
    let mut pipeline = Pipeline::start(
        &SamplerConfig {
            frequency_hz: config.frequency_hz,
            target: sampler_target,
            kernel_stacks: config.kernel,
            counts_entries: config.counts_entries,
            stacks_entries: config.stacks_entries,
            unwind: config.unwind,
            off_cpu: config.off_cpu,
        },
        PipelineConfig {
            frequency_hz: config.frequency_hz,
            kernel: config.kernel,
            drain_interval: config.drain_interval,
            ticks: if matches!(config.target, RecordTarget::All) {
                Ticks::MACHINE_WIDE
            } else {
                Ticks::RECORD
            },
            // Ember's own samples taken while it forked the command.
            exclude_tgid: Some(own_pid),
            exclude_off_cpu_tgid: None,
            on_stop: OnStop::Symbolize,
            symbolizer: symbolizer::Config::default()
                .with_debuginfod(config.debuginfod.clone())
                .with_copy_dir(config.copy_dir.clone()),
        },
    )?;
    let child = match &config.target {
        RecordTarget::Command(argv) => Some(launch(pipeline.sampler_mut(), argv, own_pid)?),
        _ => None,
    };
    pipeline.run(RecordSink {
        config,
        child,
        exit_status: None,
        status: Status {
            enabled: config.status_line,
            last: Instant::now() - Duration::from_secs(1),
        },
    })
}

/// Starts the command as a target of `sampler`, ember itself not one.
fn launch(sampler: &mut Sampler, argv: &[OsString], own_pid: u32) -> Result<Child, RecordError> {
    let (program, args) = argv.split_first().ok_or_else(|| RecordError::Spawn {
        command: String::new(),
        source: io::Error::new(io::ErrorKind::InvalidInput, "empty command"),
    })?;
    // The command most likely maps the same libc and loader as ember: their tables are
    // ready before it starts.
    sampler.preload_unwind_libraries(own_pid);
    // And the command's own binary: it is known before it runs.
    if let Some(exe) = command_path(program) {
        sampler.preload_unwind_executable(&exe);
    }
    let mut command = Command::new(program);
    command.args(args);
    let spawned = if sampler.follows_forks() {
        command.spawn()
    } else {
        // No fork hook: the child is held before its exec until it is a target.
        crate::launch::spawn_admitted(&mut command, |pid| sampler.add_target(pid))?
    };
    // The child is a target now (the fork hook or the admission added it); ember is not.
    sampler.remove_target(own_pid)?;
    spawned.map_err(|source| RecordError::Spawn {
        command: program.to_string_lossy().into_owned(),
        source,
    })
}

/// The file `execvp` would run for `program`: the path itself when it has a `/`, else the
/// first executable regular file of that name in `PATH`.
fn command_path(program: &std::ffi::OsStr) -> Option<std::path::PathBuf> {
    use std::os::unix::ffi::OsStrExt as _;
    use std::os::unix::fs::PermissionsExt as _;
    if program.as_bytes().contains(&b'/') {
        return Some(program.into());
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(program))
        .find(|p| {
            std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
}

/// `ember record`'s end of the pipeline: one profile for the whole run, written when it
/// ends; the run ends with the command, the duration or the target processes.
struct RecordSink<'a> {
    config: &'a RecordConfig,
    child: Option<Child>,
    exit_status: Option<ExitStatus>,
    status: Status,
}

impl Sink for RecordSink<'_> {
    type Output = RecordOutcome;
    type Error = RecordError;

    fn poll(&mut self, signal: Option<i32>, elapsed: Duration) -> bool {
        let mut stop = false;
        if let Some(signal) = signal
            && let Some(c) = &self.child
        {
            // Pass the signal on (a terminal's Ctrl-C already did; `kill` to ember did
            // not) and wait for the command in `finish`.
            debug!(signal, "forwarding to the command");
            // SAFETY: plain kill(2) on our own child's pid.
            unsafe { libc::kill(i32::try_from(c.id()).unwrap_or(0), signal) };
        }
        if let Some(c) = &mut self.child
            && let Ok(Some(s)) = c.try_wait()
        {
            self.exit_status = Some(s);
            stop = true;
        }
        if self.config.duration.is_some_and(|d| elapsed >= d) {
            stop = true;
        }
        if let RecordTarget::Pids(pids) = &self.config.target
            && !pids
                .iter()
                .any(|&p| profiler_sampler::procinfo::process_exists(p))
        {
            debug!("every target process has exited");
            stop = true;
        }
        stop
    }

    fn upkeep(&mut self, sampler: &mut Sampler) {
        // A forked or exec'd child gets its unwind tables within a tick (and, without the
        // fork hook, becomes a target within one).
        sampler.adopt_children();
        sampler.refresh_unwind_targets();
    }

    fn ticked(&mut self, sampler: &Sampler, aggregator: &Aggregator, elapsed: Duration) {
        if self.status.due() {
            // Ten map reads: only when the status line is shown.
            let lost = sampler.stats().map(|s| s.lost()).unwrap_or(0);
            self.status.show(elapsed, aggregator.stats().samples, lost);
        }
    }

    fn finish(self, end: End) -> Result<RecordOutcome, RecordError> {
        let RecordSink {
            config,
            child,
            mut exit_status,
            status,
        } = self;
        let End {
            mut aggregator,
            stats,
            elapsed,
        } = end;
        status.clear();
        if let Some(mut c) = child
            && exit_status.is_none()
        {
            // Stopped by --duration or a signal: the command goes on until it exits by
            // itself (signals were forwarded); wait for it so its status is ours.
            exit_status = c.wait().ok();
        }
        aggregator.meta_mut().duration_ns = u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX);
        report_losses(&stats, &aggregator, config.counts_entries);
        if let Some(debuginfod) = &config.debuginfod {
            finish_debuginfod(&mut aggregator, debuginfod.timeout);
        }
        if config.off_cpu.is_some() {
            tracing::info!(
                switches = stats.get(Stat::OffCpuSwitches),
                recorded = stats.get(Stat::OffCpuRecorded),
                shorter_than_min = stats.get(Stat::OffCpuShort),
                sampled_out = stats.get(Stat::OffCpuSampledOut),
                dropped_counts_full = stats.get(Stat::OffCpuCountsFull),
                dropped_evicted = stats.get(Stat::OffCpuEvicted),
                waited_us = aggregator.stats().off_cpu_us,
                "off-CPU switch-outs of the targets"
            );
        }
        let sym = aggregator.symbolizer().stats();
        debug!(?sym, "symbolizer");

        let (mut cpu, off_cpu) = aggregator.into_profiles();
        if !config.include_idle {
            cpu = cpu.without_idle();
        }
        // The off-CPU profile has no idle task: the kernel side leaves it out.
        let (profile, companion) = if config.off_cpu.is_some() {
            (off_cpu, Some(cpu))
        } else {
            (cpu, None)
        };
        if profile.is_empty() {
            let err = RecordError::NothingSampled {
                target: config.target.describe(),
                seconds: elapsed.as_secs_f64(),
                hint: config.target.nothing_sampled_hint(),
            };
            if exit_status.is_some() {
                // The command ran too briefly to be sampled: not our failure; its status
                // stands, and an empty profile is still written.
                warn!("{err}");
            } else {
                return Err(err);
            }
        }
        write_output(config, &profile, companion.as_ref(), elapsed)?;
        Ok(RecordOutcome {
            profile,
            exit_status,
        })
    }
}

/// Waits (at most `bound`) for the debug files still being fetched, names the frames they
/// cover, and says what happened: the wait, what timed out or failed, what was named.
fn finish_debuginfod(aggregator: &mut Aggregator, bound: Duration) {
    // Files asked for at the last drain come from the disk cache or a nearby server in
    // milliseconds: a moment's wait, without a word, before saying the run waits.
    let quick = bound.min(Duration::from_millis(200));
    let Some(mut report) = aggregator.wait_for_debuginfod(quick) else {
        return;
    };
    if !report.outstanding.is_empty() {
        warn!(
            "waiting up to {:.1} s (--debuginfod-timeout) for {} debug file(s) \
             still being fetched from debuginfod",
            bound.as_secs_f64(),
            report.outstanding.len()
        );
        let waited = report.waited;
        report = aggregator
            .wait_for_debuginfod(bound.saturating_sub(waited))
            .unwrap_or(report);
        report.waited += waited;
    }
    let renamed = aggregator.rename_fetched();
    for line in &report.failed {
        warn!("debuginfod: no debug file for build-id {line}; its frames stay `module+0x...`");
    }
    for urls in &report.outstanding {
        warn!(
            "debuginfod: timed out after waiting {:.1} s for {urls}; its frames stay \
             `module+0x...`",
            report.waited.as_secs_f64()
        );
    }
    if report.found > 0 || report.not_found > 0 {
        tracing::info!(
            found = report.found,
            not_found = report.not_found,
            renamed,
            "debuginfod: {} debug file(s) found, {} build-id(s) unknown to the servers; \
             {renamed} frame(s) named from them after sampling",
            report.found,
            report.not_found
        );
    }
}

/// The warning about lost samples, or `None` when nothing was lost.
fn loss_warning(stats: &SamplerStats, recorded: u64, counts_entries: u32) -> Option<String> {
    let lost = stats.lost();
    if lost == 0 {
        return None;
    }
    let detail: Vec<String> = Stat::ALL
        .iter()
        .filter(|s| s.is_loss() && stats.get(**s) > 0)
        .map(|s| format!("{} {}", stats.get(*s), s.name()))
        .collect();
    let mut msg = format!(
        "{lost} samples lost in part or whole ({}; {recorded} samples recorded)",
        detail.join(", ")
    );
    let stacks = lost - stats.get(Stat::CountsFull);
    if stacks > 0 {
        msg.push_str("; samples whose stack was lost are in the output under `[lost: ...]` frames");
    }
    let full = stats.get(Stat::CountsFull);
    if full > 0 {
        let _ = write!(
            msg,
            "; the {full} samples dropped because the counts map was full (its \
             {counts_entries} entries hold the distinct process, thread and stack keys of one \
             drain) are in the output as one `{LOST_COMM};{COUNTS_FULL_FRAME}` stack, \
             whatever process they came from: raise --counts-map-entries or shorten \
             --drain-interval"
        );
    }
    Some(msg)
}

fn report_losses(stats: &SamplerStats, aggregator: &Aggregator, counts_entries: u32) {
    if let Some(msg) = loss_warning(stats, aggregator.stats().samples, counts_entries) {
        warn!("{msg}");
    }
}

/// The flame graph's title and subtitle.
fn titles(config: &RecordConfig, profile: &Profile, elapsed: Duration) -> (String, String) {
    if profile.meta.kind == ProfileKind::OffCpu {
        let title = format!("ember record: off-CPU time of {}", config.target.describe());
        let subtitle = format!(
            "{:.1} s recorded, {:.3} s waited in all{}",
            elapsed.as_secs_f64(),
            profile.total() as f64 / 1e6,
            if config.kernel {
                ""
            } else {
                ", user frames only"
            }
        );
        return (title, subtitle);
    }
    let title = format!("ember record: {}", config.target.describe());
    let subtitle = format!(
        "{:.1} s at {} Hz, {} samples{}",
        elapsed.as_secs_f64(),
        config.frequency_hz,
        profile.total(),
        if config.kernel {
            ""
        } else {
            ", user frames only"
        }
    );
    (title, subtitle)
}

/// Writes `profile`; `cpu` is the CPU profile of an off-CPU capture, which pprof carries
/// beside it.
fn write_output(
    config: &RecordConfig,
    profile: &Profile,
    cpu: Option<&Profile>,
    elapsed: Duration,
) -> Result<(), RecordError> {
    let (title, subtitle) = titles(config, profile, elapsed);
    let options = RenderOptions::titled(title)
        .with_subtitle(subtitle)
        .with_folded(folded::Options::default().with_no_kernel(!config.kernel));
    let written = match cpu {
        Some(cpu) => {
            crate::output::write_off_cpu_file(&config.output, config.format, profile, cpu, &options)
        }
        None => crate::output::write_file(&config.output, config.format, profile, &options),
    };
    written.map_err(|source| RecordError::Write {
        path: config.output.clone(),
        source,
    })?;
    if config.output != Path::new("-") {
        tracing::info!(
            path = %config.output.display(),
            samples = profile.total(),
            "profile written"
        );
    }
    Ok(())
}

/// The process exit code for a command's status: its code, or 128 + the signal.
#[must_use]
pub(crate) fn exit_code_of(status: ExitStatus) -> u8 {
    if let Some(code) = status.code() {
        u8::try_from(code & 0xff).unwrap_or(1)
    } else if let Some(sig) = status.signal() {
        u8::try_from((128 + sig) & 0xff).unwrap_or(1)
    } else {
        1
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_command_is_found_as_execvp_finds_it() {
        let sh = command_path(std::ffi::OsStr::new("sh")).expect("sh in PATH");
        assert!(sh.is_absolute() && sh.ends_with("sh"), "{}", sh.display());
        assert_eq!(
            command_path(std::ffi::OsStr::new("./x/y")),
            Some(std::path::PathBuf::from("./x/y"))
        );
        assert_eq!(
            command_path(std::ffi::OsStr::new("no-such-command-ember")),
            None
        );
    }

    #[test]
    fn samples_lost_to_a_full_counts_map_are_named_in_the_warning() {
        let mut stats = SamplerStats::default();
        stats.counters[Stat::CountsFull as usize] = 700;
        stats.counters[Stat::UserStackCollision as usize] = 2;
        let msg = loss_warning(&stats, 300, 64).unwrap();
        assert!(
            msg.starts_with("702 samples lost in part or whole"),
            "{msg}"
        );
        assert!(msg.contains("counts_full"), "{msg}");
        assert!(msg.contains("the 700 samples dropped"), "{msg}");
        assert!(
            msg.contains("`[lost];[lost: counts map full]` stack"),
            "{msg}"
        );
        assert!(msg.contains("raise --counts-map-entries"), "{msg}");
        assert!(msg.contains("its 64 entries"), "{msg}");
        // Nothing lost: no warning.
        assert_eq!(loss_warning(&SamplerStats::default(), 5, 64), None);
    }

    #[test]
    fn exit_codes_follow_the_shell() {
        use std::os::unix::process::ExitStatusExt;
        assert_eq!(exit_code_of(ExitStatus::from_raw(0)), 0);
        assert_eq!(exit_code_of(ExitStatus::from_raw(1 << 8)), 1);
        assert_eq!(exit_code_of(ExitStatus::from_raw(libc::SIGKILL)), 137);
    }
}
