//! Times, durations and CPU amounts as people read them, for the texts the API writes
//! into its answers (SVG subtitles, download names). The server does not know the
//! reader's time zone, so times are UTC and say so; the web UI shows local times itself.

/// Nanoseconds per second.
const NS: u64 = 1_000_000_000;

/// `(year, month, day)` of the day `days` after 1970-01-01 (Howard Hinnant's
/// `civil_from_days`, for days on or after the epoch).
fn civil(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + u64::from(month <= 2);
    (year, month, day)
}

/// The parts of a time: date and time of day, UTC, to the second.
fn parts(ns: u64) -> ((u64, u64, u64), (u64, u64, u64)) {
    let s = ns / NS;
    let (days, rest) = (s / 86_400, s % 86_400);
    (civil(days), (rest / 3600, rest % 3600 / 60, rest % 60))
}

/// `2027-01-15 08:00:00 UTC`.
pub(crate) fn utc(ns: u64) -> String {
    let ((y, mo, d), (h, mi, s)) = parts(ns);
    format!("{y:04}-{mo:02}-{d:02} {h:02}:{mi:02}:{s:02} UTC")
}

/// `2027-01-15 08:00:00 to 08:15:00 UTC (15 min)`: the date once when both ends share it.
pub(crate) fn range(from: u64, to: u64) -> String {
    let ((y, mo, d), (h, mi, s)) = parts(from);
    let (date2, (h2, mi2, s2)) = parts(to);
    let end = if date2 == (y, mo, d) {
        format!("{h2:02}:{mi2:02}:{s2:02} UTC")
    } else {
        utc(to)
    };
    format!(
        "{y:04}-{mo:02}-{d:02} {h:02}:{mi:02}:{s:02} to {end} ({})",
        duration(to.saturating_sub(from))
    )
}

/// `20270115T080000Z`: a time for file names.
pub(crate) fn file_stamp(ns: u64) -> String {
    let ((y, mo, d), (h, mi, s)) = parts(ns);
    format!("{y:04}{mo:02}{d:02}T{h:02}{mi:02}{s:02}Z")
}

/// `850 ms`, `45 s`, `15 min`, `2.5 h`, `3 d`: rounded to what matters at that size.
pub(crate) fn duration(ns: u64) -> String {
    #[expect(
        clippy::cast_precision_loss,
        reason = "a duration for reading needs three digits, not 64 bits"
    )]
    let s = ns as f64 / 1e9;
    let trim = |x: f64| {
        let t = format!("{x:.1}");
        t.strip_suffix(".0").map(str::to_owned).unwrap_or(t)
    };
    if s < 1.0 {
        format!("{:.0} ms", s * 1e3)
    } else if s < 120.0 {
        format!("{} s", trim(s))
    } else if s < 7200.0 {
        format!("{} min", trim(s / 60.0))
    } else if s < 172_800.0 {
        format!("{} h", trim(s / 3600.0))
    } else {
        format!("{} d", trim(s / 86_400.0))
    }
}

/// `samples` at `frequency_hz` as CPU seconds (`None` when the frequency is unknown).
pub(crate) fn cpu_seconds(samples: u64, frequency_hz: u32) -> Option<f64> {
    #[expect(
        clippy::cast_precision_loss,
        reason = "CPU seconds are shown to three digits"
    )]
    let s = samples as f64 / f64::from(frequency_hz);
    (frequency_hz > 0).then_some(s)
}

/// `1,234 samples (12.5 CPU s)`, or only the samples when the frequency is unknown.
pub(crate) fn samples(samples: u64, frequency_hz: u32) -> String {
    let mut digits = samples.to_string();
    let mut i = digits.len();
    while i > 3 {
        i -= 3;
        digits.insert(i, ',');
    }
    let noun = if samples == 1 { "sample" } else { "samples" };
    match cpu_seconds(samples, frequency_hz) {
        Some(s) if s >= 100.0 => format!("{digits} {noun} ({s:.0} CPU s)"),
        Some(s) => format!("{digits} {noun} ({s:.2} CPU s)"),
        None => format!("{digits} {noun}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_are_utc_calendar_dates() {
        assert_eq!(utc(0), "1970-01-01 00:00:00 UTC");
        // 2027-01-15T08:00:00Z, the API tests' T0.
        assert_eq!(utc(1_800_000_000 * NS), "2027-01-15 08:00:00 UTC");
        assert_eq!(utc(951_782_400 * NS), "2000-02-29 00:00:00 UTC");
        assert_eq!(file_stamp(1_800_000_000 * NS + 5), "20270115T080000Z");
        assert_eq!(
            range(1_800_000_000 * NS, 1_800_000_900 * NS),
            "2027-01-15 08:00:00 to 08:15:00 UTC (15 min)"
        );
        assert_eq!(
            range(1_800_000_000 * NS, 1_800_100_000 * NS),
            "2027-01-15 08:00:00 to 2027-01-16 11:46:40 UTC (27.8 h)"
        );
    }

    #[test]
    fn durations_and_cpu_read_like_words() {
        assert_eq!(duration(850_000_000), "850 ms");
        assert_eq!(duration(20 * NS), "20 s");
        assert_eq!(duration(90 * NS / 4), "22.5 s");
        assert_eq!(duration(900 * NS), "15 min");
        assert_eq!(duration(3 * 3600 * NS), "3 h");
        assert_eq!(duration(3 * 86_400 * NS), "3 d");
        assert_eq!(samples(150, 99), "150 samples (1.52 CPU s)");
        assert_eq!(samples(123_456, 99), "123,456 samples (1247 CPU s)");
        assert_eq!(samples(1, 0), "1 sample");
        assert_eq!(cpu_seconds(99, 99), Some(1.0));
    }
}
