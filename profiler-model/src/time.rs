//! The one time and duration grammar: `ember record -d`, `ember agent --window` and
//! `--retention`, `ember export --from`/`--to` and the API's `from`/`to` all read theirs
//! here, so what one accepts the others do.
//!
//! - **Durations** ([`parse_duration_ns`], [`parse_duration`]): a decimal number and a
//!   unit, `500ms`, `30s`, `2m`, `1.5h`, `2d` (units `us`/`µs`, `ms`, `s`/`sec`/`secs`,
//!   `m`/`min`/`mins`, `h`/`hr`/`hrs`, `d`; blanks between number and unit are allowed).
//!   Command-line flags also take a bare number as seconds ([`parse_duration`]); a time
//!   offset needs its unit, so `-1` is refused rather than read as one second.
//! - **Times** ([`parse_time`]): unix seconds (`1764136800`, `1764136800.25`), RFC 3339
//!   (`2026-11-26T06:00:00Z`, `2026-11-26T07:00:00.5+01:00`) and times relative to now
//!   (`now`, `now-5m`, `now-1.5h`, and `-15m` short for `now-15m`), in nanoseconds since
//!   the Unix epoch.
//! - [`format_seconds`] writes nanoseconds back as seconds that [`parse_time`] reads to
//!   the nanosecond, for titles, file names and query strings.
//!
//! Values are computed exactly in integers (no float rounding), and one too large for
//! nanoseconds in a `u64` (about 584 years) says so. RFC 3339 is parsed by hand (a few
//! lines of calendar arithmetic) rather than with a date crate, which nothing else needs.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Nanoseconds per second.
pub const NS_PER_S: u64 = 1_000_000_000;

/// The accepted duration units, for messages.
const UNITS: &str = "us, ms, s, m, h or d";

/// Nanoseconds since the Unix epoch, now (0 if the clock is before it).
#[must_use]
pub fn now_unix_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}

/// `ns` as seconds, with the fraction only when there is one: `1764136800`,
/// `1764136800.25`, `0.000000005`. Exact: [`parse_time`] reads it back to the nanosecond.
#[must_use]
pub fn format_seconds(ns: u64) -> String {
    let (s, frac) = (ns / NS_PER_S, ns % NS_PER_S);
    if frac == 0 {
        s.to_string()
    } else {
        format!("{s}.{frac:09}").trim_end_matches('0').to_owned()
    }
}

/// A time range, nanoseconds since the Unix epoch, `[from, to)`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TimeRange {
    /// Start (inclusive).
    pub from_unix_ns: u64,
    /// End (exclusive).
    pub to_unix_ns: u64,
}

impl TimeRange {
    /// `[from, to)`.
    #[must_use]
    pub fn new(from_unix_ns: u64, to_unix_ns: u64) -> Self {
        TimeRange {
            from_unix_ns,
            to_unix_ns,
        }
    }

    /// The window `profile` says it covers.
    #[must_use]
    pub fn of(profile: &crate::Profile) -> Self {
        let start = profile.meta.start_unix_ns;
        TimeRange::new(start, start.saturating_add(profile.meta.duration_ns))
    }
}

/// A duration that does not parse. The message does not repeat the input; the caller
/// says which value it was.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DurationError {
    /// Nothing was given.
    #[error("empty duration")]
    Empty,
    /// There is no number before the unit.
    #[error("no number before the unit (such as 30s, 500ms or 1.5h)")]
    NoNumber,
    /// The number is malformed (`1.2.3s`).
    #[error("`{number}` is not a number")]
    NotANumber {
        /// The number as given.
        number: String,
    },
    /// A bare number where a unit is needed.
    #[error("missing unit ({UNITS})")]
    MissingUnit,
    /// A unit that is not one of the accepted ones.
    #[error("unknown unit `{unit}` (use {UNITS})")]
    UnknownUnit {
        /// The unit as given.
        unit: String,
    },
    /// More nanoseconds than a `u64` holds.
    #[error("too large (at most 213503d, about 584 years)")]
    TooLarge,
}

/// Parses a duration with its unit (`500ms`, `30s`, `1.5h`, `2d`) into nanoseconds.
///
/// # Errors
/// [`DurationError`]: no number, no or an unknown unit, or too large.
pub fn parse_duration_ns(s: &str) -> Result<u64, DurationError> {
    duration_ns(s, false)
}

/// Parses a duration as command-line flags take it: with a unit, or a bare number of
/// seconds (`1.5` is 1.5 s). Zero is a valid duration; flags that need more say so.
///
/// # Errors
/// [`DurationError`]: no number, an unknown unit, or too large.
pub fn parse_duration(s: &str) -> Result<Duration, DurationError> {
    duration_ns(s, true).map(Duration::from_nanos)
}

fn duration_ns(s: &str, bare_seconds: bool) -> Result<u64, DurationError> {
    let s = s.trim();
    if s.is_empty() {
        return Err(DurationError::Empty);
    }
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let (number, unit) = s.split_at(split);
    if number.is_empty() {
        return Err(DurationError::NoNumber);
    }
    let unit_ns = match unit.trim_start() {
        "" if bare_seconds => NS_PER_S,
        "" => return Err(DurationError::MissingUnit),
        "us" | "µs" => NS_PER_S / 1_000_000,
        "ms" => NS_PER_S / 1000,
        "s" | "sec" | "secs" => NS_PER_S,
        "m" | "min" | "mins" => 60 * NS_PER_S,
        "h" | "hr" | "hrs" => 3600 * NS_PER_S,
        "d" => 86_400 * NS_PER_S,
        other => {
            return Err(DurationError::UnknownUnit {
                unit: other.to_owned(),
            });
        }
    };
    match decimal_ns(number, unit_ns) {
        Ok(ns) => Ok(ns),
        Err(Decimal::Malformed) => Err(DurationError::NotANumber {
            number: number.to_owned(),
        }),
        Err(Decimal::TooLarge) => Err(DurationError::TooLarge),
    }
}

/// Why [`decimal_ns`] failed.
#[derive(Debug, PartialEq, Eq)]
enum Decimal {
    Malformed,
    TooLarge,
}

/// `whole[.fraction]` units of `unit_ns` nanoseconds each, exactly (digits below a
/// nanosecond are dropped). One of `whole` and `fraction` may be empty, not both.
fn decimal_ns(number: &str, unit_ns: u64) -> Result<u64, Decimal> {
    let (whole, frac) = number.split_once('.').unwrap_or((number, ""));
    parts_ns(whole, frac, unit_ns)
}

/// [`decimal_ns`] of the digits before and after the point.
fn parts_ns(whole: &str, frac: &str, unit_ns: u64) -> Result<u64, Decimal> {
    let digits = |d: &str| d.bytes().all(|b| b.is_ascii_digit());
    if (whole.is_empty() && frac.is_empty()) || !digits(whole) || !digits(frac) {
        return Err(Decimal::Malformed);
    }
    let whole = whole.trim_start_matches('0');
    // 21 digits are more than u64 nanoseconds of any unit can hold; u128 holds the rest.
    if whole.len() > 20 {
        return Err(Decimal::TooLarge);
    }
    let whole: u128 = if whole.is_empty() {
        0
    } else {
        whole.parse().map_err(|_| Decimal::Malformed)?
    };
    // 18 fraction digits are below a nanosecond of a day; more change nothing.
    let frac = &frac[..frac.len().min(18)];
    let frac_ns = if frac.is_empty() {
        0
    } else {
        let n: u128 = frac.parse().map_err(|_| Decimal::Malformed)?;
        let scale = 10u128.pow(u32::try_from(frac.len()).map_err(|_| Decimal::Malformed)?);
        n * u128::from(unit_ns) / scale
    };
    let ns = whole * u128::from(unit_ns) + frac_ns;
    u64::try_from(ns).map_err(|_| Decimal::TooLarge)
}

/// A time that does not parse. Messages quote the input as given.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum TimeError {
    /// Nothing was given.
    #[error("empty time")]
    Empty,
    /// None of the accepted forms.
    #[error(
        "`{input}` is not a time: use unix seconds, RFC 3339 (`2026-11-26T06:00:00Z`), \
         `now-15m` or `-15m`"
    )]
    NotATime {
        /// The time as given.
        input: String,
    },
    /// `now` followed by something other than `-DURATION`.
    #[error("expected `now` or `now-<number><unit>` such as `now-15m`, got `{input}`")]
    BadRelative {
        /// The time as given.
        input: String,
    },
    /// The offset of a relative time does not parse.
    #[error("`{input}`: {reason}")]
    Offset {
        /// The time as given.
        input: String,
        /// What is wrong with the offset.
        reason: DurationError,
    },
    /// A relative time that reaches before the epoch.
    #[error("`{input}` is before 1970")]
    BeforeEpoch {
        /// The time as given.
        input: String,
    },
    /// A malformed number of unix seconds.
    #[error("`{input}` is not a number of seconds")]
    NotSeconds {
        /// The time as given.
        input: String,
    },
    /// More nanoseconds than a `u64` holds.
    #[error("`{input}` is too far in the future")]
    TooLate {
        /// The time as given.
        input: String,
    },
    /// Not the shape of an RFC 3339 time.
    #[error("`{input}` is not an RFC 3339 time like `2026-11-26T06:00:00Z`")]
    NotRfc3339 {
        /// The time as given.
        input: String,
    },
    /// RFC 3339 in shape, but no such date or time of day.
    #[error("`{input}` is not a valid date and time")]
    InvalidDate {
        /// The time as given.
        input: String,
    },
}

/// Parses `input` into nanoseconds since the Unix epoch; `now_ns` anchors relative times.
///
/// # Errors
/// [`TimeError`], quoting the input; the caller adds the parameter's name.
pub fn parse_time(input: &str, now_ns: u64) -> Result<u64, TimeError> {
    let s = input.trim();
    if s.is_empty() {
        return Err(TimeError::Empty);
    }
    if let Some(rest) = s.strip_prefix("now") {
        if rest.is_empty() {
            return Ok(now_ns);
        }
        return match rest.strip_prefix('-') {
            Some(offset) => relative(s, offset, now_ns),
            None => Err(TimeError::BadRelative {
                input: s.to_owned(),
            }),
        };
    }
    // `-15m` is short for `now-15m`.
    if let Some(offset) = s.strip_prefix('-') {
        return relative(s, offset, now_ns);
    }
    if s.bytes().all(|b| b.is_ascii_digit() || b == b'.') {
        return parse_unix_seconds(s);
    }
    if s.len() >= 10 && s.as_bytes()[4] == b'-' {
        return parse_rfc3339(s);
    }
    Err(TimeError::NotATime {
        input: s.to_owned(),
    })
}

fn relative(input: &str, offset: &str, now_ns: u64) -> Result<u64, TimeError> {
    let duration = parse_duration_ns(offset).map_err(|reason| TimeError::Offset {
        input: input.to_owned(),
        reason,
    })?;
    now_ns
        .checked_sub(duration)
        .ok_or_else(|| TimeError::BeforeEpoch {
            input: input.to_owned(),
        })
}

/// `secs[.fraction]` in nanoseconds; digits past nanoseconds are dropped.
fn parse_unix_seconds(s: &str) -> Result<u64, TimeError> {
    if s.starts_with('.') {
        return Err(TimeError::NotSeconds {
            input: s.to_owned(),
        });
    }
    decimal_ns(s, NS_PER_S).map_err(|e| match e {
        Decimal::Malformed => TimeError::NotSeconds {
            input: s.to_owned(),
        },
        Decimal::TooLarge => TimeError::TooLate {
            input: s.to_owned(),
        },
    })
}

/// The nanoseconds of a decimal fraction's digits (`"25"` → 250 ms).
fn fraction_ns(digits: &str) -> Option<u64> {
    parts_ns("", digits, NS_PER_S).ok()
}

/// `YYYY-MM-DDTHH:MM:SS[.frac](Z|±HH:MM)`; `t` and a space are accepted for `T`.
fn parse_rfc3339(s: &str) -> Result<u64, TimeError> {
    let bad = || TimeError::NotRfc3339 {
        input: s.to_owned(),
    };
    let b = s.as_bytes();
    if b.len() < 20 || b[4] != b'-' || b[7] != b'-' || !matches!(b[10], b'T' | b't' | b' ') {
        return Err(bad());
    }
    if b[13] != b':' || b[16] != b':' {
        return Err(bad());
    }
    let num = |r: std::ops::Range<usize>| -> Result<u64, TimeError> {
        let part = s.get(r).ok_or_else(bad)?;
        if part.bytes().all(|c| c.is_ascii_digit()) {
            part.parse().map_err(|_| bad())
        } else {
            Err(bad())
        }
    };
    let (year, month, day) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (hour, minute, second) = (num(11..13)?, num(14..16)?, num(17..19)?);
    let mut rest = &s[19..];
    let mut frac_ns = 0;
    if let Some(r) = rest.strip_prefix('.') {
        let end = r.find(|c: char| !c.is_ascii_digit()).unwrap_or(r.len());
        if end == 0 {
            return Err(bad());
        }
        frac_ns = fraction_ns(&r[..end]).ok_or_else(bad)?;
        rest = &r[end..];
    }
    let offset_s: i64 = match rest {
        "Z" | "z" => 0,
        _ if rest.len() == 6 && rest.as_bytes()[3] == b':' => {
            let sign = match rest.as_bytes()[0] {
                b'+' => 1,
                b'-' => -1,
                _ => return Err(bad()),
            };
            let hh: i64 = rest[1..3].parse().map_err(|_| bad())?;
            let mm: i64 = rest[4..6].parse().map_err(|_| bad())?;
            if hh > 23 || mm > 59 {
                return Err(bad());
            }
            sign * (hh * 3600 + mm * 60)
        }
        _ => return Err(bad()),
    };
    if !(1..=12).contains(&month)
        || day == 0
        || day > days_in_month(year, month)
        || hour > 23
        || minute > 59
        || second > 60
    {
        return Err(TimeError::InvalidDate {
            input: s.to_owned(),
        });
    }
    let days = days_from_civil(year, month, day);
    let local =
        days * 86_400 + i64::try_from(hour * 3600 + minute * 60 + second).map_err(|_| bad())?;
    let utc = local - offset_s;
    let secs = u64::try_from(utc).map_err(|_| TimeError::BeforeEpoch {
        input: s.to_owned(),
    })?;
    secs.checked_mul(NS_PER_S)
        .and_then(|ns| ns.checked_add(frac_ns))
        .ok_or_else(|| TimeError::TooLate {
            input: s.to_owned(),
        })
}

fn days_in_month(year: u64, month: u64) -> u64 {
    match month {
        2 if year.is_multiple_of(4) && (!year.is_multiple_of(100) || year.is_multiple_of(400)) => {
            29
        }
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(year: u64, month: u64, day: u64) -> i64 {
    // Inputs are checked: year < 10000, month 1..=12, day 1..=31, so these fit.
    let y = i64::try_from(year).expect("four-digit year") - i64::from(month <= 2);
    let m = i64::try_from(month).expect("month 1..=12");
    let d = i64::try_from(day).expect("day 1..=31");
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: u64 = 1_800_000_000 * NS_PER_S;

    #[test]
    fn unix_seconds_whole_and_fractional() {
        assert_eq!(parse_time("1764136800", NOW), Ok(1_764_136_800 * NS_PER_S));
        assert_eq!(
            parse_time("1764136800.25", NOW),
            Ok(1_764_136_800 * NS_PER_S + 250_000_000)
        );
        assert_eq!(parse_time("0.000000001", NOW), Ok(1));
        assert!(parse_time("1.2.3", NOW).is_err());
        assert!(parse_time(".5", NOW).is_err());
        assert!(parse_time("99999999999999999999", NOW).is_err());
    }

    #[test]
    fn relative_times() {
        assert_eq!(parse_time("now", NOW), Ok(NOW));
        assert_eq!(parse_time("now-5m", NOW), Ok(NOW - 300 * NS_PER_S));
        assert_eq!(parse_time("now-1h", NOW), Ok(NOW - 3600 * NS_PER_S));
        assert_eq!(parse_time("now-24h", NOW), Ok(NOW - 86_400 * NS_PER_S));
        assert_eq!(parse_time("now-2d", NOW), Ok(NOW - 2 * 86_400 * NS_PER_S));
        assert_eq!(parse_time("now-30s", NOW), Ok(NOW - 30 * NS_PER_S));
        assert_eq!(parse_time("-15m", NOW), Ok(NOW - 900 * NS_PER_S));
        assert!(parse_time("-15", NOW).is_err());
        for bad in ["now+5m", "now-5", "now-5w", "now-m", "now-", "nowish"] {
            assert!(parse_time(bad, NOW).is_err(), "{bad}");
        }
        assert!(parse_time("now-100000d", NOW).is_err());
    }

    #[test]
    fn durations_are_exact_with_units() {
        let d = |s: &str| parse_duration_ns(s);
        assert_eq!(d("1.5h"), Ok(5400 * NS_PER_S));
        assert_eq!(d("500ms"), Ok(500_000_000));
        assert_eq!(d("0.1s"), Ok(100_000_000));
        assert_eq!(d("2 min"), Ok(120 * NS_PER_S));
        assert_eq!(d(".5d"), Ok(43_200 * NS_PER_S));
        assert_eq!(d("0s"), Ok(0));
        assert_eq!(d("1"), Err(DurationError::MissingUnit));
        assert_eq!(
            d("5w"),
            Err(DurationError::UnknownUnit {
                unit: "w".to_owned()
            })
        );
        assert_eq!(d("m"), Err(DurationError::NoNumber));
        assert_eq!(d(""), Err(DurationError::Empty));
        assert!(matches!(d("1.2.3s"), Err(DurationError::NotANumber { .. })));
        // A bare number is seconds where flags take it.
        assert_eq!(parse_duration("1.5"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_duration("30s"), Ok(Duration::from_secs(30)));
    }

    #[test]
    fn overflow_is_too_large_not_zero() {
        for s in [
            "99999999999h",
            "18446744073709551615s",
            "18446744073.709551616s",
            "213504d",
            "99999999999999999999999999999999999999999s",
        ] {
            assert_eq!(parse_duration(s), Err(DurationError::TooLarge), "{s}");
        }
        // The largest that fits.
        assert_eq!(parse_duration_ns("18446744073.709551615s"), Ok(u64::MAX));
        let e = parse_time("now-99999999999h", NOW).unwrap_err().to_string();
        assert_eq!(
            e,
            "`now-99999999999h`: too large (at most 213503d, about 584 years)"
        );
        assert_eq!(
            parse_time("99999999999999999999", NOW)
                .unwrap_err()
                .to_string(),
            "`99999999999999999999` is too far in the future"
        );
    }

    #[test]
    fn relative_times_take_the_duration_grammar() {
        assert_eq!(parse_time("-1.5h", NOW), Ok(NOW - 5400 * NS_PER_S));
        assert_eq!(parse_time("now-1.5h", NOW), Ok(NOW - 5400 * NS_PER_S));
        assert_eq!(parse_time("-500ms", NOW), Ok(NOW - 500_000_000));
        assert_eq!(parse_time("now-90min", NOW), Ok(NOW - 5400 * NS_PER_S));
        // Echoed as given, not rewritten to `now-1`.
        assert_eq!(
            parse_time("-1", NOW).unwrap_err().to_string(),
            "`-1`: missing unit (us, ms, s, m, h or d)"
        );
        assert_eq!(
            parse_time("now-5x", NOW).unwrap_err().to_string(),
            "`now-5x`: unknown unit `x` (use us, ms, s, m, h or d)"
        );
    }

    #[test]
    fn seconds_are_formatted_exactly() {
        assert_eq!(format_seconds(1_700_000_000 * NS_PER_S), "1700000000");
        assert_eq!(
            format_seconds(1_700_000_000_123_456_789),
            "1700000000.123456789"
        );
        assert_eq!(format_seconds(1_700_000_000_250_000_000), "1700000000.25");
        assert_eq!(format_seconds(5), "0.000000005");
        for ns in [0, 5, 1_700_000_000_123_456_789, u64::MAX] {
            assert_eq!(parse_time(&format_seconds(ns), NOW), Ok(ns));
        }
    }

    #[test]
    fn rfc3339() {
        assert_eq!(parse_time("1970-01-01T00:00:00Z", NOW), Ok(0));
        // date -d 2026-11-26T06:00:00Z +%s
        assert_eq!(
            parse_time("2026-11-26T06:00:00Z", NOW),
            Ok(1_795_672_800 * NS_PER_S)
        );
        assert_eq!(
            parse_time("2026-11-26T07:00:00.5+01:00", NOW),
            Ok(1_795_672_800 * NS_PER_S + 500_000_000)
        );
        assert_eq!(
            parse_time("2024-02-29T00:00:00-00:30", NOW),
            Ok((1_709_164_800 + 1800) * NS_PER_S)
        );
        for bad in [
            "2026-11-26",
            "2026-11-26T06:00:00",
            "2026-13-01T00:00:00Z",
            "2025-02-29T00:00:00Z",
            "2026-11-26T24:00:00Z",
            "2026-11-26T06:00:00+0100",
            "1969-12-31T23:59:59Z",
            "2026-11-26T06:00:00.Z",
            "yesterday",
        ] {
            assert!(parse_time(bad, NOW).is_err(), "{bad}");
        }
    }
}
