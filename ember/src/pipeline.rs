//! The one loop `ember record` and `ember agent` both drive: **sample → aggregate →
//! symbolize → sink**.
//!
//! [`Pipeline::start`] loads the sampler, installs the SIGINT/SIGTERM handlers
//! ([`crate::signals`]) and starts the process captures; the caller may then prepare its
//! targets through [`Pipeline::sampler_mut`] (record launches its command there).
//! [`Pipeline::run`] then ticks until a signal arrives or the [`Sink`] asks to stop. Each
//! tick, in this order:
//!
//! 1. the sink is polled ([`Sink::poll`]: record checks its command, its duration and its
//!    target processes) and does its sampler upkeep ([`Sink::upkeep`]);
//! 2. on a stop the sampler is paused, so the last drain holds everything recorded;
//! 3. every `drain_interval`, and on a stop, the kernel's maps are drained and the drain is
//!    symbolized and added to the [`Aggregator`] while its processes are still alive, then
//!    handed to [`Sink::drained`];
//! 4. when the sink's window is due, and on a stop, the sink closes it
//!    ([`Sink::close_window`]: the agent writes it to the store; record keeps one profile
//!    for the whole run);
//! 5. [`Sink::ticked`] ends the tick (record's status line).
//!
//! When the loop ends, the sampler's last counters are read and it is detached; the sink
//! gets the aggregator in [`Sink::finish`].
//!
//! A stop request (SIGINT, SIGTERM) is seen at the next tick, and, with
//! [`OnStop::Abandon`], also between two stacks of a drain being symbolized, so the agent
//! stops within about a second even while it names a large binary for the first time.
//!
//! The tick lengths are [`Ticks`]; drains and windows are timed on their own clocks, so a
//! tick only bounds how late a stop, a drain or a window close is noticed.

use std::time::{Duration, Instant};

use profiler_model::ProfileMeta;
use profiler_sampler::{CaptureFeed, RawSample, SampleError, Sampler, SamplerConfig, SamplerStats};

use tracing::warn;

use crate::aggregate::Aggregator;
use crate::signals;

/// How long the loop sleeps between two ticks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Ticks {
    /// The tick during the first [`Ticks::startup`] of a run.
    pub startup_tick: Duration,
    /// How long the startup ticks last.
    pub startup: Duration,
    /// The tick afterwards.
    pub steady: Duration,
}

impl Ticks {
    /// `ember record`: 5 ms ticks for the first 500 ms, so a command's unwind tables are
    /// loaded right after its exec rather than a tick later, then 50 ms, so the command's
    /// exit, the end of `--duration` or a signal end the capture within 50 ms.
    pub(crate) const RECORD: Ticks = Ticks {
        startup_tick: Duration::from_millis(5),
        startup: Duration::from_millis(500),
        steady: Duration::from_millis(50),
    };

    /// `ember agent` and `ember record --all`: 100 ms throughout. A machine-wide run
    /// follows no command and loads tables from its drains, so short startup ticks would
    /// have nothing to do; drains (every `--drain-interval`) and windows (every `--window`)
    /// are timed separately, and the tick only bounds how late a stop or the end of
    /// `--duration` is seen. Each tick is a wake-up: a 30 s recording's 20 a second were a
    /// third of its CPU after start-up.
    pub(crate) const MACHINE_WIDE: Ticks = Ticks {
        startup_tick: Duration::from_millis(100),
        startup: Duration::ZERO,
        steady: Duration::from_millis(100),
    };

    /// The tick to sleep `elapsed` into a run.
    fn at(&self, elapsed: Duration) -> Duration {
        if elapsed < self.startup {
            self.startup_tick
        } else {
            self.steady
        }
    }
}

/// What a stop request does to a drain being symbolized.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum OnStop {
    /// Symbolize everything, however long it takes: `ember record`, whose one profile is
    /// the point of the run (a Ctrl-C is how `record --all` is meant to end).
    Symbolize,
    /// Stop symbolizing at the next stack once `grace` has passed since the stop request:
    /// `ember agent`, which a service manager stops
    /// with SIGTERM and kills if it lingers. Symbolizing a new large binary (a 200 MB
    /// debug build) takes seconds per drain, up to tens of seconds on a busy machine, and
    /// the stop was seen only after it. The stacks not yet named are kept, with their
    /// labels and counts, as [`crate::aggregate::UNSYMBOLIZED_FRAME`], and the window is
    /// closed and written as usual. The grace lets the last drain be named where that is
    /// quick (its binaries cached), as it nearly always is.
    Abandon {
        /// How long after the stop request stacks are still named.
        grace: Duration,
    },
}

/// How the loop runs, besides the sampler's own configuration.
#[derive(Clone, Debug)]
pub(crate) struct PipelineConfig {
    /// Samples per second per CPU, for the profiles' metadata.
    pub frequency_hz: u64,
    /// Keep kernel frames.
    pub kernel: bool,
    /// How often the kernel's maps are drained and symbolized.
    pub drain_interval: Duration,
    /// The tick lengths.
    pub ticks: Ticks,
    /// A process whose samples are dropped at each drain (record leaves out its own, taken
    /// while it forked the command).
    pub exclude_tgid: Option<u32>,
    /// A process whose off-CPU time is dropped at each drain (the agent leaves out its
    /// own: its threads spend their lives waiting for the next tick).
    pub exclude_off_cpu_tgid: Option<u32>,
    /// The symbolizer's settings.
    pub symbolizer: symbolizer::Config,
    /// Whether a stop request cuts symbolization short.
    pub on_stop: OnStop,
}

/// Where the pipeline's output goes, and what ends a run besides a signal: `ember record`
/// writes one profile at the end, `ember agent` closes windows into its store.
pub(crate) trait Sink {
    /// What a finished run gives its caller.
    type Output;
    /// Why a run failed; the sampler's errors are among them.
    type Error: From<SampleError>;

    /// Once a tick, before anything is drained: whether the run ends now for a reason of the
    /// sink's own. `signal` is the SIGINT or SIGTERM received, if any (the run ends then
    /// whatever this returns); `elapsed` is the time since the run started.
    fn poll(&mut self, signal: Option<i32>, elapsed: Duration) -> bool;

    /// Once a tick, after [`Sink::poll`]: work on the sampler's targets.
    fn upkeep(&mut self, _sampler: &mut Sampler) {}

    /// After a drain was symbolized and added to `aggregator`.
    ///
    /// # Errors
    /// When the run cannot go on (the sampler's counters cannot be read).
    fn drained(
        &mut self,
        _sampler: &Sampler,
        _aggregator: &Aggregator,
        _samples: &[RawSample],
    ) -> Result<(), Self::Error> {
        Ok(())
    }

    /// Whether the window in progress ends now. Never, unless the sink has windows.
    fn window_due(&self) -> bool {
        false
    }

    /// Closes the window in progress: after its last drain, when [`Sink::window_due`] says
    /// so and once more when the run stops.
    fn close_window(&mut self, _aggregator: &mut Aggregator) {}

    /// The end of every tick.
    fn ticked(&mut self, _sampler: &Sampler, _aggregator: &Aggregator, _elapsed: Duration) {}

    /// The run is over and the sampler detached.
    ///
    /// # Errors
    /// The sink's own.
    fn finish(self, end: End) -> Result<Self::Output, Self::Error>;
}

/// What a run leaves for [`Sink::finish`].
#[derive(Debug)]
pub(crate) struct End {
    /// The aggregator, with what was added since the last window close.
    pub aggregator: Aggregator,
    /// The sampler's counters at the end.
    pub stats: SamplerStats,
    /// How long the run lasted.
    pub elapsed: Duration,
}

/// A started sampler, waiting for [`Pipeline::run`].
#[derive(Debug)]
pub(crate) struct Pipeline {
    sampler: Sampler,
    captures: Option<CaptureFeed>,
    config: PipelineConfig,
}

impl Pipeline {
    /// Loads and attaches the sampler, installs the signal handlers and starts the process
    /// captures.
    ///
    /// # Errors
    /// When sampling cannot start.
    pub(crate) fn start(
        sampler: &SamplerConfig,
        config: PipelineConfig,
    ) -> Result<Self, SampleError> {
        let mut sampler = Sampler::start(sampler)?;
        signals::install();
        let captures = sampler.start_captures();
        Ok(Pipeline {
            sampler,
            captures,
            config,
        })
    }

    /// The sampler, to prepare targets before the run.
    pub(crate) fn sampler_mut(&mut self) -> &mut Sampler {
        &mut self.sampler
    }

    /// Runs the loop until a signal or `sink` ends it, then finishes `sink`.
    ///
    /// # Errors
    /// The sampler's errors and the sink's.
    pub(crate) fn run<S: Sink>(self, mut sink: S) -> Result<S::Output, S::Error> {
        let Pipeline {
            mut sampler,
            captures,
            config,
        } = self;
        let start = Instant::now();
        let meta = ProfileMeta {
            start_unix_ns: crate::now_unix_ns(),
            duration_ns: 0,
            frequency_hz: u32::try_from(config.frequency_hz).unwrap_or(u32::MAX),
            ..ProfileMeta::default()
        };
        let mut aggregator = Aggregator::new(
            symbolizer::Symbolizer::new(config.symbolizer.clone()),
            meta,
            config.kernel,
        );
        if let Some(feed) = captures {
            aggregator.follow_captures(feed);
        }
        if let Some(python) = sampler.python() {
            aggregator.follow_python(python);
        }
        if let OnStop::Abandon { grace } = config.on_stop {
            // Asked before each stack: a stop is honoured within one stack's symbolization
            // (a few hundred milliseconds at worst, measured) after the grace, not one
            // drain's.
            let seen: std::cell::Cell<Option<Instant>> = std::cell::Cell::new(None);
            aggregator.abandon_when(move || {
                if signals::received().is_none() {
                    return false;
                }
                let at = seen.get().unwrap_or_else(|| {
                    let now = Instant::now();
                    seen.set(Some(now));
                    now
                });
                at.elapsed() >= grace
            });
        }
        loop {
            std::thread::sleep(config.ticks.at(start.elapsed()));
            let signal = signals::received();
            // The sink is polled even after a signal: record passes it on to its command.
            let stop = sink.poll(signal, start.elapsed()) || signal.is_some();
            sink.upkeep(&mut sampler);
            if stop {
                // Nothing is recorded after this, so the last drain is complete.
                sampler.pause()?;
            }
            if stop || sampler.since_last_drain() >= config.drain_interval {
                let mut samples = sampler.drain()?;
                if let Some(tgid) = config.exclude_tgid {
                    samples.retain(|s| s.tgid != tgid);
                }
                if let Some(tgid) = config.exclude_off_cpu_tgid {
                    samples.retain(|s| !(s.off_cpu && s.tgid == tgid));
                }
                aggregator.add_with_known(&samples, &|tgid| sampler.known_mappings(tgid));
                aggregator.add_unrecorded(sampler.unrecorded_in_last_drain());
                sink.drained(&sampler, &aggregator, &samples)?;
            }
            if stop || sink.window_due() {
                sink.close_window(&mut aggregator);
            }
            sink.ticked(&sampler, &aggregator, start.elapsed());
            if stop {
                break;
            }
        }
        let elapsed = start.elapsed();
        let unsymbolized = aggregator.stats().unsymbolized;
        if unsymbolized > 0 {
            warn!(
                unsymbolized,
                "stopping: {unsymbolized} samples were stored without function names \
                 (`{}`) rather than delay the stop",
                crate::aggregate::UNSYMBOLIZED_FRAME
            );
        }
        let stats = sampler.stats()?;
        drop(sampler);
        sink.finish(End {
            aggregator,
            stats,
            elapsed,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn record_ticks_short_at_first_and_the_agent_evenly() {
        let r = Ticks::RECORD;
        assert_eq!(r.at(Duration::ZERO), Duration::from_millis(5));
        assert_eq!(r.at(Duration::from_millis(499)), Duration::from_millis(5));
        assert_eq!(r.at(Duration::from_millis(500)), Duration::from_millis(50));
        let m = Ticks::MACHINE_WIDE;
        assert_eq!(m.at(Duration::ZERO), Duration::from_millis(100));
        assert_eq!(m.at(Duration::from_secs(30)), Duration::from_millis(100));
        assert_eq!(m.at(Duration::from_secs(3600)), Duration::from_millis(100));
    }
}
