//! Time parameters: unix seconds (`1764136800`, `1764136800.25`), RFC 3339
//! (`2026-11-26T06:00:00Z`, `2026-11-26T07:00:00.5+01:00`) and times relative to now
//! (`now`, `now-5m`, `now-1h`, `now-2d`; units `s`, `m`, `h`, `d`).
//!
//! RFC 3339 is parsed by hand (a few lines of calendar arithmetic) rather than with a date
//! crate, which the API needs for nothing else.

const NS_PER_S: u64 = 1_000_000_000;

/// Parses `input` into nanoseconds since the Unix epoch; `now_ns` anchors relative times.
/// The error says what is wrong, without the parameter's name (the caller adds it).
pub fn parse_time(input: &str, now_ns: u64) -> Result<u64, String> {
    let s = input.trim();
    if s.is_empty() {
        return Err("empty time".to_owned());
    }
    if let Some(rest) = s.strip_prefix("now") {
        return parse_relative(rest, now_ns);
    }
    // `-15m` is short for `now-15m`.
    if s.starts_with('-') {
        return parse_relative(s, now_ns);
    }
    if s.bytes().all(|b| b.is_ascii_digit() || b == b'.') {
        return parse_unix_seconds(s);
    }
    if s.len() >= 10 && s.as_bytes()[4] == b'-' {
        return parse_rfc3339(s);
    }
    Err(format!(
        "`{s}` is not a time: use unix seconds, RFC 3339 (`2026-11-26T06:00:00Z`), `now-15m` or `-15m`"
    ))
}

fn parse_relative(rest: &str, now_ns: u64) -> Result<u64, String> {
    if rest.is_empty() {
        return Ok(now_ns);
    }
    let Some(offset) = rest.strip_prefix('-') else {
        return Err(format!(
            "expected `now` or `now-<number><s|m|h|d>`, got `now{rest}`"
        ));
    };
    let duration = parse_duration_ns(offset).map_err(|e| format!("`now{rest}`: {e}"))?;
    now_ns
        .checked_sub(duration)
        .ok_or_else(|| format!("`now{rest}` is before 1970"))
}

/// `5m`, `90s`, `1h`, `2d` in nanoseconds.
fn parse_duration_ns(s: &str) -> Result<u64, String> {
    let unit_at = s
        .find(|c: char| !c.is_ascii_digit())
        .ok_or_else(|| "missing unit (s, m, h or d)".to_owned())?;
    let (number, unit) = s.split_at(unit_at);
    let n: u64 = number
        .parse()
        .map_err(|_| format!("`{number}` is not a whole number"))?;
    let seconds = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => return Err(format!("unknown unit `{unit}` (use s, m, h or d)")),
    };
    n.checked_mul(seconds)
        .and_then(|s| s.checked_mul(NS_PER_S))
        .ok_or_else(|| "duration too large".to_owned())
}

/// `secs[.fraction]` in nanoseconds; digits past nanoseconds are dropped.
fn parse_unix_seconds(s: &str) -> Result<u64, String> {
    let (whole, frac) = s.split_once('.').unwrap_or((s, ""));
    if whole.is_empty() || frac.contains('.') {
        return Err(format!("`{s}` is not a number of seconds"));
    }
    let secs: u64 = whole
        .parse()
        .map_err(|_| format!("`{s}` is not a number of seconds"))?;
    let frac_ns = fraction_ns(frac).ok_or_else(|| format!("`{s}` is not a number of seconds"))?;
    secs.checked_mul(NS_PER_S)
        .and_then(|ns| ns.checked_add(frac_ns))
        .ok_or_else(|| format!("`{s}` is too far in the future"))
}

/// The nanoseconds of a decimal fraction's digits (`"25"` → 250 ms).
fn fraction_ns(digits: &str) -> Option<u64> {
    if !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let mut ns = 0;
    let mut scale = NS_PER_S / 10;
    for b in digits.bytes().take(9) {
        ns += u64::from(b - b'0') * scale;
        scale /= 10;
    }
    Some(ns)
}

/// `YYYY-MM-DDTHH:MM:SS[.frac](Z|±HH:MM)`; `t` and a space are accepted for `T`.
fn parse_rfc3339(s: &str) -> Result<u64, String> {
    let bad = || format!("`{s}` is not an RFC 3339 time like `2026-11-26T06:00:00Z`");
    let b = s.as_bytes();
    if b.len() < 20 || b[4] != b'-' || b[7] != b'-' || !matches!(b[10], b'T' | b't' | b' ') {
        return Err(bad());
    }
    if b[13] != b':' || b[16] != b':' {
        return Err(bad());
    }
    let num = |r: std::ops::Range<usize>| -> Result<u64, String> {
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
        return Err(format!("`{s}` is not a valid date and time"));
    }
    let days = days_from_civil(year, month, day);
    let local =
        days * 86_400 + i64::try_from(hour * 3600 + minute * 60 + second).map_err(|_| bad())?;
    let utc = local - offset_s;
    let secs = u64::try_from(utc).map_err(|_| format!("`{s}` is before 1970"))?;
    secs.checked_mul(NS_PER_S)
        .and_then(|ns| ns.checked_add(frac_ns))
        .ok_or_else(|| format!("`{s}` is too far in the future"))
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
