//! Timestamps and durations with CEL's ranges, formats and accessors.
//!
//! Timestamps span `0001-01-01T00:00:00Z` to `9999-12-30T22:00:00.999999999Z`:
//! CEL's range ends a day later, but `jiff::Timestamp` (the value model's
//! timestamp) stops there.
//! Durations are limited to what fits in a signed 64-bit count of
//! nanoseconds (about ±292 years), as in the reference implementation.

use jiff::tz::{Offset, TimeZone};
use jiff::{SignedDuration, Timestamp};

/// Seconds of `0001-01-01T00:00:00Z` and of `9999-12-30T22:00:00Z`.
const MIN_SECOND: i64 = -62_135_596_800;
const MAX_SECOND: i64 = 253_402_207_200;
const NANOS: i128 = 1_000_000_000;

fn range_err() -> String {
    "range error: timestamp out of range".into()
}

pub(crate) fn check_ts(t: Timestamp) -> Result<Timestamp, String> {
    let s = t.as_second();
    if (MIN_SECOND..=MAX_SECOND).contains(&s) {
        Ok(t)
    } else {
        Err(range_err())
    }
}

pub(crate) fn ts_from_nanos(n: i128) -> Result<Timestamp, String> {
    if n < i128::from(MIN_SECOND) * NANOS || n >= (i128::from(MAX_SECOND) + 1) * NANOS {
        return Err(range_err());
    }
    Timestamp::from_nanosecond(n).map_err(|_| range_err())
}

pub(crate) fn ts_add(t: Timestamp, nanos: i128) -> Result<Timestamp, String> {
    ts_from_nanos(t.as_nanosecond() + nanos)
}

pub(crate) fn ts_from_seconds(s: i64) -> Result<Timestamp, String> {
    ts_from_nanos(i128::from(s) * NANOS)
}

pub(crate) fn dur_from_nanos(n: i128) -> Result<SignedDuration, String> {
    i64::try_from(n)
        .map(SignedDuration::from_nanos)
        .map_err(|_| "range error: duration out of range".to_string())
}

/// RFC 3339 text, e.g. `2009-02-13T23:31:30Z`; an offset is required.
pub(crate) fn parse_timestamp(s: &str) -> Result<Timestamp, String> {
    let t: Timestamp = s.parse().map_err(|e| format!("invalid timestamp `{s}`: {e}"))?;
    check_ts(t).map_err(|_| format!("range error: timestamp `{s}` out of range"))
}

/// A Go-style duration: `1h2m3s`, `-1.5h`, `300ms`, `10us`, `0`.
pub(crate) fn parse_duration(text: &str) -> Result<SignedDuration, String> {
    let bad = || format!("invalid duration `{text}`");
    let (neg, mut rest) = match text.as_bytes().first() {
        Some(b'-') => (true, text.get(1..).unwrap_or("")),
        Some(b'+') => (false, text.get(1..).unwrap_or("")),
        _ => (false, text),
    };
    if rest == "0" {
        return Ok(SignedDuration::ZERO);
    }
    if rest.is_empty() {
        return Err(bad());
    }
    let mut total: i128 = 0;
    while !rest.is_empty() {
        let num_len = rest.bytes().take_while(|b| b.is_ascii_digit() || *b == b'.').count();
        let (num, tail) = rest.split_at(num_len);
        if num.is_empty() || num == "." {
            return Err(bad());
        }
        let unit_len = tail.bytes().take_while(|b| !(b.is_ascii_digit() || *b == b'.')).count();
        let (unit, tail) = tail.split_at(unit_len);
        let scale: i128 = match unit {
            "ns" => 1,
            "us" | "µs" | "μs" => 1_000,
            "ms" => 1_000_000,
            "s" => NANOS,
            "m" => 60 * NANOS,
            "h" => 3600 * NANOS,
            _ => return Err(bad()),
        };
        let (int_part, frac_part) = match num.split_once('.') {
            Some((i, f)) => (i, f),
            None => (num, ""),
        };
        if frac_part.contains('.') {
            return Err(bad());
        }
        let whole: i128 = if int_part.is_empty() {
            0
        } else {
            int_part.parse::<i128>().map_err(|_| bad())?
        };
        let mut add = whole.checked_mul(scale).ok_or_else(bad)?;
        // Fraction: digits beyond nanosecond precision are dropped.
        let mut denom: i128 = 1;
        let mut frac: i128 = 0;
        for d in frac_part.bytes().take(18) {
            frac = frac * 10 + i128::from(d - b'0');
            denom *= 10;
        }
        add = add.checked_add(frac * scale / denom).ok_or_else(bad)?;
        total = total.checked_add(add).ok_or_else(bad)?;
        if total > i128::from(i64::MAX) + 1 {
            return Err(format!("range error: duration `{text}` out of range"));
        }
        rest = tail;
    }
    if neg {
        total = -total;
    }
    dur_from_nanos(total).map_err(|_| format!("range error: duration `{text}` out of range"))
}

/// CEL's string form of a duration: seconds with a fraction, `1.5s`.
pub(crate) fn format_duration(d: SignedDuration) -> String {
    let n = d.as_nanos();
    let sign = if n < 0 { "-" } else { "" };
    let a = n.unsigned_abs();
    let secs = a / 1_000_000_000;
    let frac = a % 1_000_000_000;
    if frac == 0 {
        format!("{sign}{secs}s")
    } else {
        let f = format!("{frac:09}");
        format!("{sign}{secs}.{}s", f.trim_end_matches('0'))
    }
}

/// RFC 3339 in UTC with as many fractional digits as needed.
pub(crate) fn format_timestamp(t: Timestamp) -> String {
    let base = t.strftime("%Y-%m-%dT%H:%M:%S").to_string();
    let ns = t.subsec_nanosecond();
    if ns == 0 {
        format!("{base}Z")
    } else {
        let f = format!("{:09}", ns.unsigned_abs());
        format!("{base}.{}Z", f.trim_end_matches('0'))
    }
}

/// A time zone argument: an IANA name (`America/Los_Angeles`, `UTC`) or a
/// fixed offset (`+05:30`, `-02:30`, `02:00`).
pub(crate) fn parse_tz(s: &str) -> Result<TimeZone, String> {
    if let Some(off) = parse_offset(s) {
        return Ok(TimeZone::fixed(off));
    }
    TimeZone::get(s).map_err(|_| format!("unknown time zone `{s}`"))
}

fn parse_offset(s: &str) -> Option<Offset> {
    let (sign, rest) = match s.as_bytes().first()? {
        b'+' => (1, s.get(1..)?),
        b'-' => (-1, s.get(1..)?),
        b'0'..=b'9' => (1, s),
        _ => return None,
    };
    let (h, m) = rest.split_once(':')?;
    if h.len() != 2 || m.len() != 2 || !h.bytes().chain(m.bytes()).all(|b| b.is_ascii_digit()) {
        return None;
    }
    let h: i32 = h.parse().ok()?;
    let m: i32 = m.parse().ok()?;
    if h > 23 || m > 59 {
        return None;
    }
    Offset::from_seconds(sign * (h * 3600 + m * 60)).ok()
}

/// Timestamp accessors, named as in CEL.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum TsPart {
    FullYear,
    Month,
    Date,
    DayOfMonth,
    DayOfWeek,
    DayOfYear,
    Hours,
    Minutes,
    Seconds,
    Milliseconds,
}

impl TsPart {
    pub(crate) fn from_name(name: &str) -> Option<TsPart> {
        Some(match name {
            "getFullYear" => TsPart::FullYear,
            "getMonth" => TsPart::Month,
            "getDate" => TsPart::Date,
            "getDayOfMonth" => TsPart::DayOfMonth,
            "getDayOfWeek" => TsPart::DayOfWeek,
            "getDayOfYear" => TsPart::DayOfYear,
            "getHours" => TsPart::Hours,
            "getMinutes" => TsPart::Minutes,
            "getSeconds" => TsPart::Seconds,
            "getMilliseconds" => TsPart::Milliseconds,
            _ => return None,
        })
    }

    pub(crate) fn of_timestamp(self, t: Timestamp, tz: &TimeZone) -> i64 {
        let z = t.to_zoned(tz.clone());
        match self {
            TsPart::FullYear => i64::from(z.year()),
            TsPart::Month => i64::from(z.month()) - 1,
            TsPart::Date => i64::from(z.day()),
            TsPart::DayOfMonth => i64::from(z.day()) - 1,
            TsPart::DayOfWeek => i64::from(z.weekday().to_sunday_zero_offset()),
            TsPart::DayOfYear => i64::from(z.day_of_year()) - 1,
            TsPart::Hours => i64::from(z.hour()),
            TsPart::Minutes => i64::from(z.minute()),
            TsPart::Seconds => i64::from(z.second()),
            TsPart::Milliseconds => i64::from(z.millisecond()),
        }
    }

    /// Duration accessors convert the whole duration to the unit, except
    /// `getMilliseconds`, which is the milliseconds component.
    pub(crate) fn of_duration(self, d: SignedDuration) -> Option<i64> {
        let n = d.as_nanos();
        let v = match self {
            TsPart::Hours => n / (3600 * NANOS),
            TsPart::Minutes => n / (60 * NANOS),
            TsPart::Seconds => n / NANOS,
            // CEL: the milliseconds component, not the total.
            TsPart::Milliseconds => (n % NANOS) / 1_000_000,
            _ => return None,
        };
        i64::try_from(v).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_like_go() {
        let d = parse_duration("1h2m3s").unwrap();
        assert_eq!(d.as_secs(), 3723);
        assert_eq!(parse_duration("-1.5h").unwrap().as_secs(), -5400);
        assert_eq!(parse_duration("300ms").unwrap().as_millis(), 300);
        assert_eq!(parse_duration("10us").unwrap().as_nanos(), 10_000);
        assert_eq!(parse_duration("0").unwrap(), SignedDuration::ZERO);
        assert!(parse_duration("").is_err());
        assert!(parse_duration("1x").is_err());
        assert!(parse_duration("h").is_err());
        assert!(parse_duration("1..2s").is_err());
        assert!(parse_duration("320000000000s").unwrap_err().contains("range"));
    }

    #[test]
    fn durations_format_as_seconds() {
        assert_eq!(format_duration(SignedDuration::from_secs(1_000_000)), "1000000s");
        assert_eq!(format_duration(SignedDuration::from_millis(-1500)), "-1.5s");
        assert_eq!(format_duration(SignedDuration::from_nanos(1)), "0.000000001s");
    }

    #[test]
    fn timestamps_keep_cel_range() {
        assert!(parse_timestamp("0000-01-01T00:00:00Z").is_err());
        assert!(parse_timestamp("0001-01-01T00:00:00Z").is_ok());
        assert!(ts_from_seconds(253_402_300_800).is_err());
        let t = parse_timestamp("9999-12-30T22:00:00.999999999Z").unwrap();
        assert_eq!(format_timestamp(t), "9999-12-30T22:00:00.999999999Z");
        assert!(ts_add(t, 1).is_err());
    }

    #[test]
    fn offsets_and_zones() {
        let t = parse_timestamp("2009-02-13T23:31:30Z").unwrap();
        assert_eq!(TsPart::Hours.of_timestamp(t, &parse_tz("02:00").unwrap()), 1);
        assert_eq!(
            TsPart::Minutes.of_timestamp(t, &parse_tz("Asia/Kathmandu").unwrap()),
            16
        );
        assert_eq!(TsPart::Date.of_timestamp(t, &parse_tz("Australia/Sydney").unwrap()), 14);
        assert!(parse_tz("Not/AZone").is_err());
        assert!(parse_tz("+25:00").is_err());
    }
}
