//! Losses made visible: what the program counted as lost, by reason, for the profile and
//! for the log.
//!
//! A sample whose stack was lost still has an entry in a count map, and the aggregator
//! names it `[lost: …]`. A sample the program could not record at all (the count map full,
//! no control block) has no entry: [`SamplerStats::unrecorded`] gives those counts per
//! drain, so they reach the profile too. [`LossLog`] warns about every kind of loss, at
//! most once per interval, with the counts by reason since its last warning.

use std::time::{Duration, Instant};

use profiler_common::Stat;
use tracing::warn;

use crate::SamplerStats;

/// Counters that count samples the program took but could not put in a count map.
pub const UNRECORDED: [Stat; 2] = [Stat::CountsFull, Stat::NoControl];

impl SamplerStats {
    /// How much each counter grew from `earlier` to `self`.
    #[must_use]
    pub fn since(&self, earlier: &SamplerStats) -> SamplerStats {
        let mut out = SamplerStats::default();
        for (o, (now, then)) in out
            .counters
            .iter_mut()
            .zip(self.counters.iter().zip(&earlier.counters))
        {
            *o = now.saturating_sub(*then);
        }
        out
    }

    /// Samples taken for a target: every run of the program but those it skipped on
    /// purpose (not a target, paused). Each ends recorded or [unrecorded](Self::unrecorded).
    #[must_use]
    pub fn taken(&self) -> u64 {
        self.get(Stat::Samples)
            .saturating_sub(self.get(Stat::Filtered))
    }

    /// Samples taken but in no count map, by reason (only reasons with a count).
    #[must_use]
    pub fn unrecorded(&self) -> Vec<(Stat, u64)> {
        UNRECORDED
            .iter()
            .map(|&s| (s, self.get(s)))
            .filter(|&(_, n)| n > 0)
            .collect()
    }

    /// The loss counters with a count, as `name count` pairs for a log line.
    #[must_use]
    pub fn losses_by_reason(&self) -> String {
        Stat::ALL
            .iter()
            .filter(|s| s.is_loss() && self.get(**s) > 0)
            .map(|s| format!("{} {}", self.get(*s), s.name()))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// A rate-limited warning about losses: the first loss is reported at once, later ones at
/// most once per interval, each time with what was lost since the previous warning.
#[derive(Debug)]
pub struct LossLog {
    interval: Duration,
    last_warning: Option<Instant>,
    /// The counters as of the last warning.
    reported: SamplerStats,
}

impl LossLog {
    /// A log that warns at most once per `interval`.
    #[must_use]
    pub fn new(interval: Duration) -> LossLog {
        LossLog {
            interval,
            last_warning: None,
            reported: SamplerStats::default(),
        }
    }

    /// Warns if the counters show losses not reported yet and a warning is due.
    pub fn observe(&mut self, stats: &SamplerStats) {
        if let Some(message) = self.due(stats, Instant::now()) {
            warn!("{message}");
        }
    }

    /// The warning due at `now` for the cumulative counters `stats`, if any.
    fn due(&mut self, stats: &SamplerStats, now: Instant) -> Option<String> {
        if self
            .last_warning
            .is_some_and(|t| now.duration_since(t) < self.interval)
        {
            return None;
        }
        let delta = stats.since(&self.reported);
        let lost = delta.lost();
        if lost == 0 {
            return None;
        }
        let taken = delta.taken().max(1);
        let message = format!(
            "{lost} samples lost in part or whole since {} ({:.1} % of {} taken): {}; they \
             are stored as `[lost: …]` stacks; larger --counts-map-entries and \
             --stacks-map-entries, or a lower -F, lose fewer",
            if self.last_warning.is_some() {
                "the last warning"
            } else {
                "the start"
            },
            lost as f64 * 100.0 / taken as f64,
            delta.taken(),
            delta.losses_by_reason(),
        );
        self.last_warning = Some(now);
        self.reported = *stats;
        Some(message)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stats(pairs: &[(Stat, u64)]) -> SamplerStats {
        let mut s = SamplerStats::default();
        for &(stat, n) in pairs {
            s.counters[stat as usize] = n;
        }
        s
    }

    #[test]
    fn unrecorded_samples_are_the_full_count_map_and_the_missing_control_block() {
        let s = stats(&[
            (Stat::Samples, 100),
            (Stat::Filtered, 10),
            (Stat::Recorded, 80),
            (Stat::CountsFull, 7),
            (Stat::NoControl, 3),
            (Stat::UserStackCollision, 5),
        ]);
        assert_eq!(s.taken(), 90);
        assert_eq!(
            s.unrecorded(),
            vec![(Stat::CountsFull, 7), (Stat::NoControl, 3)]
        );
        let later = stats(&[(Stat::CountsFull, 9), (Stat::NoControl, 3)]);
        assert_eq!(later.since(&s).unrecorded(), vec![(Stat::CountsFull, 2)]);
        assert_eq!(s.since(&later).get(Stat::CountsFull), 0, "never negative");
    }

    #[test]
    fn the_loss_warning_is_rate_limited_and_counts_by_reason_since_the_last() {
        let t0 = Instant::now();
        let mut log = LossLog::new(Duration::from_secs(60));
        assert_eq!(log.due(&stats(&[(Stat::Samples, 10)]), t0), None);
        let first = stats(&[
            (Stat::Samples, 100),
            (Stat::Recorded, 70),
            (Stat::CountsFull, 30),
            (Stat::UnwindStackLost, 5),
        ]);
        let m = log
            .due(&first, t0)
            .expect("the first loss is reported at once");
        assert!(m.starts_with("35 samples lost"), "{m}");
        assert!(m.contains("30 counts_full, 5 unwind_stack_lost"), "{m}");
        assert!(m.contains("35.0 % of 100 taken"), "{m}");
        let second = stats(&[
            (Stat::Samples, 200),
            (Stat::Recorded, 160),
            (Stat::CountsFull, 40),
            (Stat::UnwindStackLost, 5),
        ]);
        assert_eq!(log.due(&second, t0 + Duration::from_secs(59)), None);
        let m = log
            .due(&second, t0 + Duration::from_secs(60))
            .expect("due again after the interval");
        assert!(m.starts_with("10 samples lost"), "{m}");
        assert!(m.contains(": 10 counts_full;"), "{m}");
        assert_eq!(log.due(&second, t0 + Duration::from_secs(200)), None);
    }
}
