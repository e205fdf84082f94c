//! The agent's own metrics, as `/metrics` shows them.
//!
//! The agent loop owns the sampler, the symbolizer and the writing store; after every drain
//! and every window it publishes a [`AgentMetrics`] snapshot behind a mutex, and the HTTP
//! API formats the latest snapshot. Nothing on the sampling path waits for a scrape.

use std::fmt::Write as _;

use profiler_common::Stat;

use crate::sample::SamplerStats;
use profiler_store::StoreStats;

/// A snapshot of what the agent has done since it started.
#[derive(Clone, Debug, Default)]
pub struct AgentMetrics {
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
    pub unwind: crate::sample::UnwindGauges,
}

fn metric(out: &mut String, name: &str, kind: &str, help: &str, samples: &[(&str, u64)]) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
    for (labels, value) in samples {
        if labels.is_empty() {
            let _ = writeln!(out, "{name} {value}");
        } else {
            let _ = writeln!(out, "{name}{{{labels}}} {value}");
        }
    }
}

impl AgentMetrics {
    /// The snapshot in Prometheus text format.
    #[must_use]
    pub fn prometheus(&self) -> String {
        let mut out = String::new();
        let s = &self.sampler;
        metric(
            &mut out,
            "ember_samples_total",
            "counter",
            "Times the eBPF sampler ran.",
            &[("", s.get(Stat::Samples))],
        );
        metric(
            &mut out,
            "ember_samples_recorded_total",
            "counter",
            "Samples counted into the kernel's maps.",
            &[("", s.get(Stat::Recorded))],
        );
        metric(
            &mut out,
            "ember_process_announcements_lost_total",
            "counter",
            "Process announcements (first sample, exec) lost to a full ring buffer: such \
             processes may stay unnamed if they exit before their samples are drained.",
            &[("", s.get(Stat::AnnouncementsLost))],
        );
        let lost: Vec<(String, u64)> = Stat::ALL
            .iter()
            .filter(|st| st.is_loss())
            .map(|st| (format!("reason=\"{}\"", st.name()), s.get(*st)))
            .collect();
        let lost_refs: Vec<(&str, u64)> = lost.iter().map(|(l, v)| (l.as_str(), *v)).collect();
        metric(
            &mut out,
            "ember_samples_lost_total",
            "counter",
            "Samples lost in whole or in part, by reason.",
            &lost_refs,
        );
        metric(
            &mut out,
            "ember_samples_written_total",
            "counter",
            "Samples in windows written to the store.",
            &[("", self.writes.samples_written)],
        );
        metric(
            &mut out,
            "ember_windows_written_total",
            "counter",
            "Windows written to the store.",
            &[("", self.writes.windows_written)],
        );
        metric(
            &mut out,
            "ember_window_write_errors_total",
            "counter",
            "Failed window writes (a window retried three times counts three).",
            &[("", self.writes.write_errors)],
        );
        metric(
            &mut out,
            "ember_windows_pending",
            "gauge",
            "Closed windows kept in memory because the store did not take them; retried at each window.",
            &[("", self.writes.windows_pending)],
        );
        metric(
            &mut out,
            "ember_windows_lost_total",
            "counter",
            "Closed windows dropped unwritten (over the memory bound for waiting windows, or invalid).",
            &[("", self.writes.windows_lost)],
        );
        metric(
            &mut out,
            "ember_samples_in_lost_windows_total",
            "counter",
            "Samples in windows dropped unwritten.",
            &[("", self.writes.samples_lost)],
        );
        metric(
            &mut out,
            "ember_store_degraded",
            "gauge",
            "1 while the store does not take windows (a full disk, an unwritable store); /healthz says why.",
            &[("", u64::from(self.store_degraded.is_some()))],
        );
        let st = &self.store;
        metric(
            &mut out,
            "ember_store_bytes",
            "gauge",
            "Size of the store on disk.",
            &[("", st.bytes_on_disk)],
        );
        metric(
            &mut out,
            "ember_store_windows",
            "gauge",
            "Windows in the store.",
            &[("", st.windows)],
        );
        metric(
            &mut out,
            "ember_store_stacks",
            "gauge",
            "Distinct stacks in the store.",
            &[("", st.stacks)],
        );
        metric(
            &mut out,
            "ember_store_corrupt_skipped_total",
            "counter",
            "Damaged store rows detected and skipped.",
            &[("", st.corrupt_skipped)],
        );
        let y = &self.symbolizer;
        metric(
            &mut out,
            "ember_symbol_cache_requests_total",
            "counter",
            "Symbol cache lookups, by result.",
            &[
                ("result=\"hit\"", y.offset_cache_hits + y.kernel_cache_hits),
                (
                    "result=\"miss\"",
                    y.offset_cache_misses + y.kernel_cache_misses,
                ),
            ],
        );
        metric(
            &mut out,
            "ember_symbol_cache_clears_total",
            "counter",
            "Times the symbol cache was full and cleared.",
            &[("", y.cache_clears)],
        );
        metric(
            &mut out,
            "ember_binaries_opened_total",
            "counter",
            "Binaries opened and parsed for symbols.",
            &[("", y.binaries_opened)],
        );
        metric(
            &mut out,
            "ember_binary_cache_requests_total",
            "counter",
            "Binary cache lookups when a mapping needs its binary, by result.",
            &[
                ("result=\"hit\"", y.binary_cache_hits),
                ("result=\"miss\"", y.binary_cache_misses),
            ],
        );
        metric(
            &mut out,
            "ember_binary_cache_evictions_total",
            "counter",
            "Binaries evicted from the cache to stay within --symbol-cache.",
            &[("", y.binary_cache_evictions)],
        );
        metric(
            &mut out,
            "ember_binary_cache_stale_total",
            "counter",
            "Cached binaries dropped because the file changed on disk.",
            &[("", y.binary_cache_stale)],
        );
        metric(
            &mut out,
            "ember_binary_cache_bytes",
            "gauge",
            "Estimated bytes held by the binary cache (symbol and DWARF section sizes of cached binaries and debug files).",
            &[("", y.binary_cache_bytes)],
        );
        metric(
            &mut out,
            "ember_binary_cache_entries",
            "gauge",
            "Binaries held in the cache.",
            &[("", y.binary_cache_entries)],
        );
        metric(
            &mut out,
            "ember_process_captures_total",
            "counter",
            "Short-lived process captures (maps and binaries taken at first sample or exec) adopted.",
            &[("", y.captures_adopted)],
        );
        metric(
            &mut out,
            "ember_frames_unnamed_total",
            "counter",
            "Frames left without a function name.",
            &[("", y.frames_unnamed)],
        );
        let u = &self.unwind;
        metric(
            &mut out,
            "ember_unwind_table_bytes",
            "gauge",
            "Kernel memory used by unwind tables.",
            &[("", u.table_bytes)],
        );
        metric(
            &mut out,
            "ember_unwind_table_limit_bytes",
            "gauge",
            "Kernel memory unwind tables may use (--unwind-table-mem).",
            &[("", u.table_capacity_bytes)],
        );
        metric(
            &mut out,
            "ember_unwind_tables_loaded",
            "gauge",
            "Binaries whose unwind tables are loaded.",
            &[("", u.tables_loaded)],
        );
        metric(
            &mut out,
            "ember_unwind_processes",
            "gauge",
            "Processes whose stacks are walked with unwind tables.",
            &[("", u.processes)],
        );
        metric(
            &mut out,
            "ember_unwind_binaries_fell_back",
            "gauge",
            "Binaries stepped with frame pointers: no unwind table, or over the memory limit.",
            &[("", u.binaries_fell_back)],
        );
        let _ = writeln!(
            out,
            "# HELP ember_start_time_seconds Start time of the agent since the Unix epoch."
        );
        let _ = writeln!(out, "# TYPE ember_start_time_seconds gauge");
        let _ = writeln!(
            out,
            "ember_start_time_seconds {:.3}",
            self.start_time_seconds
        );
        out
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
        let text = m.prometheus();
        assert!(text.contains("ember_binary_cache_requests_total{result=\"hit\"} 11"));
        assert!(text.contains("ember_binary_cache_evictions_total 3"));
        assert!(text.contains("ember_binary_cache_bytes 1048576"));
        m.unwind.table_bytes = 226_192;
        let text = m.prometheus();
        assert!(text.contains("ember_unwind_table_bytes 226192"));
        assert!(text.contains("ember_samples_lost_total{reason=\"user_stack_collision\"} 4"));
        assert!(text.contains("ember_windows_written_total 7"));
        assert!(text.contains("ember_windows_pending 2\n"));
        assert!(text.contains("ember_windows_lost_total 1\n"));
        assert!(text.contains("ember_store_degraded 1\n"));
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
