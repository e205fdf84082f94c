//! The agent's own metrics, as `/metrics` shows them.
//!
//! The agent loop owns the sampler, the symbolizer and the writing store; after every drain
//! and every window it publishes a [`AgentMetrics`] snapshot behind a mutex, and the HTTP
//! API formats the latest snapshot. Nothing on the sampling path waits for a scrape.

use profiler_common::Stat;
use web::prometheus::{Kind, Text};

use profiler_sampler::SamplerStats;
use profiler_store::StoreStats;

/// A snapshot of what the agent has done since it started.
#[derive(Clone, Debug, Default)]
pub(crate) struct AgentMetrics {
    /// The eBPF program's counters.
    pub sampler: SamplerStats,
    /// The symbolizer's counters.
    pub symbolizer: symbolizer::Stats,
    /// Windows written, waiting and lost, and failed writes.
    pub writes: super::WriteCounts,
    /// Why the store does not take windows (`None`: it does); `/healthz` says it.
    pub store_degraded: Option<String>,
    /// The writing store's counters and sizes.
    pub store: StoreStats,
    /// Start time of the agent, seconds since the Unix epoch.
    pub start_time_seconds: f64,
    /// The unwind tables in the kernel (zero with `--unwinder fp`).
    pub unwind: profiler_sampler::UnwindGauges,
    /// The push threads' counters (read at each scrape).
    pub push: super::PushMetrics,
    /// Whether off-CPU time is recorded (`--off-cpu`): its metrics are shown only then.
    pub off_cpu: bool,
    /// Microseconds off CPU charged to stacks so far.
    pub off_cpu_us: u64,
}

impl AgentMetrics {
    /// The off-CPU families (`--off-cpu`): switch-outs seen, waits charged and the time
    /// they add up to, and the waits dropped by reason. Each switch-out of a target
    /// thread is either sampled out (`--off-cpu-every`) or becomes a pending wait, which
    /// at switch-in is charged, or dropped for being shorter than `--off-cpu-min` or for a
    /// full count map; a pending wait can also be pushed out of the full pending map by a
    /// newer one (`evicted`, a lower bound; see the eBPF program's `OFFCPU_LIVE`).
    fn write_off_cpu(&self, out: &mut Text) {
        let s = &self.sampler;
        out.family(
            "ember_off_cpu_switches_total",
            Kind::Counter,
            "Switch-outs of profiled threads seen by the off-CPU program.",
        )
        .sample(&[], s.get(Stat::OffCpuSwitches));
        out.family(
            "ember_off_cpu_recorded_total",
            Kind::Counter,
            "Off-CPU waits charged to a stack.",
        )
        .sample(&[], s.get(Stat::OffCpuRecorded));
        #[expect(
            clippy::cast_precision_loss,
            reason = "seconds are shown to the microsecond; f64 is exact to 2^53 µs"
        )]
        let seconds = self.off_cpu_us as f64 / 1e6;
        out.family(
            "ember_off_cpu_seconds_total",
            Kind::Counter,
            "Time off CPU charged to stacks (stored in the off-CPU windows).",
        )
        .sample(&[], seconds);
        out.family(
            "ember_off_cpu_dropped_total",
            Kind::Counter,
            "Off-CPU switches or waits not charged, by reason: below_min (shorter than \
             --off-cpu-min), sampled_out (--off-cpu-every), counts_full (the count map was \
             full), evicted (pushed out of the full pending-wait map by a newer one; a lower \
             bound).",
        )
        .sample(&[("reason", "below_min")], s.get(Stat::OffCpuShort))
        .sample(&[("reason", "sampled_out")], s.get(Stat::OffCpuSampledOut))
        .sample(&[("reason", "counts_full")], s.get(Stat::OffCpuCountsFull))
        .sample(&[("reason", "evicted")], s.get(Stat::OffCpuEvicted));
    }

    /// The snapshot in Prometheus text format.
    #[must_use]
    pub(crate) fn prometheus(&self) -> String {
        let mut out = Text::new();
        let s = &self.sampler;
        out.family(
            "ember_samples_total",
            Kind::Counter,
            "Times the eBPF sampler ran.",
        )
        .sample(&[], s.get(Stat::Samples));
        out.family(
            "ember_samples_recorded_total",
            Kind::Counter,
            "Samples counted into the kernel's maps.",
        )
        .sample(&[], s.get(Stat::Recorded));
        out.family(
            "ember_process_announcements_lost_total",
            Kind::Counter,
            "Process announcements (first sample, exec) lost to a full ring buffer: such \
             processes may stay unnamed if they exit before their samples are drained.",
        )
        .sample(&[], s.get(Stat::AnnouncementsLost));
        let mut lost = out.family(
            "ember_samples_lost_total",
            Kind::Counter,
            "Samples lost in whole or in part, by reason.",
        );
        for st in Stat::ALL.iter().filter(|st| st.is_loss()) {
            lost.sample(&[("reason", st.name())], s.get(*st));
        }
        if self.off_cpu {
            self.write_off_cpu(&mut out);
        }
        out.family(
            "ember_samples_written_total",
            Kind::Counter,
            "Samples in windows written to the store.",
        )
        .sample(&[], self.writes.samples_written);
        out.family(
            "ember_windows_written_total",
            Kind::Counter,
            "Windows written to the store.",
        )
        .sample(&[], self.writes.windows_written);
        out.family(
            "ember_window_write_errors_total",
            Kind::Counter,
            "Failed window writes (a window retried three times counts three).",
        )
        .sample(&[], self.writes.write_errors);
        out.family(
            "ember_windows_pending",
            Kind::Gauge,
            "Closed windows kept in memory because the store did not take them; retried at each window.",
        )
        .sample(&[], self.writes.windows_pending);
        out.family(
            "ember_windows_lost_total",
            Kind::Counter,
            "Closed windows dropped unwritten (over the memory bound for waiting windows, or invalid).",
        )
        .sample(&[], self.writes.windows_lost);
        out.family(
            "ember_samples_in_lost_windows_total",
            Kind::Counter,
            "Samples in windows dropped unwritten.",
        )
        .sample(&[], self.writes.samples_lost);
        out.family(
            "ember_store_degraded",
            Kind::Gauge,
            "1 while the store does not take windows (a full disk, an unwritable store); /healthz says why.",
        )
        .sample(&[], u64::from(self.store_degraded.is_some()));
        let st = &self.store;
        out.family(
            "ember_store_bytes",
            Kind::Gauge,
            "Size of the store on disk.",
        )
        .sample(&[], st.bytes_on_disk);
        out.family("ember_store_windows", Kind::Gauge, "Windows in the store.")
            .sample(&[], st.windows);
        out.family(
            "ember_store_stacks",
            Kind::Gauge,
            "Distinct stacks in the store.",
        )
        .sample(&[], st.stacks);
        out.family(
            "ember_store_corrupt_skipped_total",
            Kind::Counter,
            "Damaged store rows detected and skipped.",
        )
        .sample(&[], st.corrupt_skipped);
        let y = &self.symbolizer;
        out.family(
            "ember_symbol_cache_requests_total",
            Kind::Counter,
            "Symbol cache lookups, by result.",
        )
        .sample(
            &[("result", "hit")],
            y.offset_cache_hits + y.kernel_cache_hits,
        )
        .sample(
            &[("result", "miss")],
            y.offset_cache_misses + y.kernel_cache_misses,
        );
        out.family(
            "ember_symbol_cache_clears_total",
            Kind::Counter,
            "Times the symbol cache was full and cleared.",
        )
        .sample(&[], y.cache_clears);
        let mut refused = out.family(
            "ember_symbolizer_files_refused_total",
            Kind::Counter,
            "Files read on behalf of a process (perf maps, debug files) that were refused, by reason.",
        );
        for (reason, n) in y.files_refused.by_reason() {
            refused.sample(&[("reason", reason)], n);
        }
        out.family(
            "ember_binaries_opened_total",
            Kind::Counter,
            "Binaries opened and parsed for symbols.",
        )
        .sample(&[], y.binaries_opened);
        out.family(
            "ember_binary_cache_requests_total",
            Kind::Counter,
            "Binary cache lookups when a mapping needs its binary, by result.",
        )
        .sample(&[("result", "hit")], y.binary_cache_hits)
        .sample(&[("result", "miss")], y.binary_cache_misses);
        out.family(
            "ember_binary_cache_evictions_total",
            Kind::Counter,
            "Binaries evicted from the cache to stay within --symbol-cache.",
        )
        .sample(&[], y.binary_cache_evictions);
        out.family(
            "ember_binary_cache_stale_total",
            Kind::Counter,
            "Cached binaries dropped because the file changed on disk.",
        )
        .sample(&[], y.binary_cache_stale);
        out.family("ember_binary_cache_bytes", Kind::Gauge, "Estimated bytes held by the binary cache (symbol and DWARF section sizes of cached binaries and debug files).")
            .sample(&[], y.binary_cache_bytes);
        out.family(
            "ember_binary_cache_entries",
            Kind::Gauge,
            "Binaries held in the cache.",
        )
        .sample(&[], y.binary_cache_entries);
        out.family("ember_process_captures_total", Kind::Counter, "Short-lived process captures (maps and binaries taken at first sample or exec) adopted.")
            .sample(&[], y.captures_adopted);
        let d = &y.debuginfod;
        out.family(
            "ember_debuginfod_requests_total",
            Kind::Counter,
            "Debug files asked of debuginfod (--debuginfod), by result: fetched from a server, \
             found in the disk cache, a 404 from every server (miss) or a cached one, or failed \
             (each failed HTTP request: timeouts, errors, unusable files).",
        )
        .sample(&[("result", "fetched")], d.fetched)
        .sample(&[("result", "cache_hit")], d.cache_hits)
        .sample(&[("result", "miss")], d.misses)
        .sample(&[("result", "negative_hit")], d.negative_hits)
        .sample(&[("result", "failure")], d.failures);
        out.family(
            "ember_debuginfod_fetches_total",
            Kind::Counter,
            "HTTP requests sent to debuginfod servers.",
        )
        .sample(&[], d.fetches);
        out.family(
            "ember_debuginfod_outstanding",
            Kind::Gauge,
            "Debug files being fetched from debuginfod now.",
        )
        .sample(&[], d.outstanding);
        out.family(
            "ember_frames_unnamed_total",
            Kind::Counter,
            "Frames left without a function name.",
        )
        .sample(&[], y.frames_unnamed);
        let u = &self.unwind;
        out.family(
            "ember_unwind_table_bytes",
            Kind::Gauge,
            "Kernel memory used by unwind tables.",
        )
        .sample(&[], u.table_bytes);
        out.family(
            "ember_unwind_table_limit_bytes",
            Kind::Gauge,
            "Kernel memory unwind tables may use (--unwind-table-mem).",
        )
        .sample(&[], u.table_capacity_bytes);
        out.family(
            "ember_unwind_tables_loaded",
            Kind::Gauge,
            "Binaries whose unwind tables are loaded.",
        )
        .sample(&[], u.tables_loaded);
        out.family(
            "ember_unwind_processes",
            Kind::Gauge,
            "Processes whose stacks are walked with unwind tables.",
        )
        .sample(&[], u.processes);
        out.family(
            "ember_unwind_binaries_fell_back",
            Kind::Gauge,
            "Binaries stepped with frame pointers: no unwind table, or over the memory limit.",
        )
        .sample(&[], u.binaries_fell_back);
        out.family(
            "ember_start_time_seconds",
            Kind::Gauge,
            "Start time of the agent since the Unix epoch.",
        )
        .sample(&[], (self.start_time_seconds * 1000.0).round() / 1000.0);
        self.push.write(&mut out);
        out.finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_metric_has_help_and_type_and_values() {
        let mut m = AgentMetrics::default();
        m.sampler.counters[Stat::UserStackCollision as usize] = 4;
        m.writes.windows_written = 7;
        m.writes.windows_pending = 2;
        m.writes.windows_lost = 1;
        m.store_degraded = Some("disk full".to_owned());
        m.symbolizer.binary_cache_hits = 11;
        m.symbolizer.binary_cache_evictions = 3;
        m.symbolizer.binary_cache_bytes = 1 << 20;
        m.symbolizer.debuginfod.fetched = 2;
        m.symbolizer.debuginfod.misses = 5;
        m.symbolizer.debuginfod.failures = 1;
        m.symbolizer.debuginfod.fetches = 8;
        let text = m.prometheus();
        assert!(text.contains("ember_debuginfod_requests_total{result=\"fetched\"} 2"));
        assert!(text.contains("ember_debuginfod_requests_total{result=\"miss\"} 5"));
        assert!(text.contains("ember_debuginfod_requests_total{result=\"failure\"} 1"));
        assert!(text.contains("ember_debuginfod_fetches_total 8"));
        assert!(text.contains("ember_debuginfod_outstanding 0"));
        assert!(text.contains("ember_binary_cache_requests_total{result=\"hit\"} 11"));
        assert!(text.contains("ember_binary_cache_evictions_total 3"));
        assert!(text.contains("ember_binary_cache_bytes 1048576"));
        assert!(text.contains("ember_symbolizer_files_refused_total{reason=\"symlink\"} 0"));
        m.unwind.table_bytes = 226_192;
        let text = m.prometheus();
        assert!(text.contains("ember_unwind_table_bytes 226192"));
        assert!(text.contains("ember_samples_lost_total{reason=\"user_stack_collision\"} 4"));
        assert!(text.contains("ember_windows_written_total 7"));
        assert!(text.contains("ember_windows_pending 2\n"));
        assert!(text.contains("ember_windows_lost_total 1\n"));
        assert!(text.contains("ember_store_degraded 1\n"));
        assert!(
            !text.contains("ember_off_cpu_"),
            "no off-CPU families without --off-cpu"
        );
        m.off_cpu = true;
        m.off_cpu_us = 2_500_000;
        m.sampler.counters[Stat::OffCpuSwitches as usize] = 100;
        m.sampler.counters[Stat::OffCpuRecorded as usize] = 60;
        m.sampler.counters[Stat::OffCpuShort as usize] = 30;
        m.sampler.counters[Stat::OffCpuEvicted as usize] = 2;
        let text = m.prometheus();
        assert!(
            text.contains("ember_off_cpu_switches_total 100\n"),
            "{text}"
        );
        assert!(text.contains("ember_off_cpu_recorded_total 60\n"));
        assert!(text.contains("ember_off_cpu_seconds_total 2.5\n"));
        assert!(text.contains("ember_off_cpu_dropped_total{reason=\"below_min\"} 30\n"));
        assert!(text.contains("ember_off_cpu_dropped_total{reason=\"sampled_out\"} 0\n"));
        assert!(text.contains("ember_off_cpu_dropped_total{reason=\"evicted\"} 2\n"));
        assert!(text.contains("ember_samples_lost_total{reason=\"off_cpu_evicted\"} 2\n"));
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            let name = line.split(['{', ' ']).next().unwrap();
            assert!(
                text.contains(&format!("# TYPE {name} ")),
                "{name} has no TYPE"
            );
            assert!(
                line.rsplit(' ').next().unwrap().parse::<f64>().is_ok(),
                "{line}"
            );
        }
    }
}
