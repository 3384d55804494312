//! Timestamps as the original server wrote them: ISO 8601, UTC,
//! microseconds, `Z` (`2026-11-21T06:00:00.123456Z`).

/// Formats a timestamp as ISO 8601 UTC with microsecond precision, the
/// shape the original server used (`2026-11-21T06:00:00.123456Z`).
pub fn format_timestamp(ts: jiff::Timestamp) -> String {
    let micros = ts.as_microsecond();
    let second = micros.div_euclid(1_000_000);
    // This runs twice per decision, mostly within the same second as the
    // last call on the thread: the date and time of day are printed once
    // per second and thread, the fraction each time.
    thread_local! {
        static LAST_SECOND: std::cell::Cell<(i64, [u8; 19])> = const { std::cell::Cell::new((i64::MIN, [0; 19])) };
    }
    let prefix = LAST_SECOND.with(|last| {
        let (cached, prefix) = last.get();
        if cached == second {
            return Some(prefix);
        }
        let prefix = second_prefix(second)?;
        last.set((second, prefix));
        Some(prefix)
    });
    let Some(prefix) = prefix else {
        // Outside the years `second_prefix` prints: the strftime form.
        let whole = jiff::Timestamp::from_microsecond(micros).unwrap_or(ts);
        return whole.strftime("%Y-%m-%dT%H:%M:%S%.6fZ").to_string();
    };
    let mut out = [0u8; 27];
    out[..19].copy_from_slice(&prefix);
    out[19] = b'.';
    let mut fraction = micros.rem_euclid(1_000_000);
    for digit in out[20..26].iter_mut().rev() {
        // `fraction` is below 10^6: each digit fits in a byte.
        *digit = b'0' + u8::try_from(fraction % 10).unwrap_or(0);
        fraction /= 10;
    }
    out[26] = b'Z';
    String::from_utf8_lossy(&out).into_owned()
}

/// `YYYY-MM-DDTHH:MM:SS` of a Unix second in years 0000 to 9999 (Jiff's
/// RFC 3339 printer writes the same text as strftime there; 9999 is Jiff's
/// last year), `None` outside them.
fn second_prefix(second: i64) -> Option<[u8; 19]> {
    /// 0000-01-01T00:00:00Z.
    const YEAR_ZERO: i64 = -62_167_219_200;
    if second < YEAR_ZERO {
        return None;
    }
    const PRINTER: jiff::fmt::temporal::DateTimePrinter =
        jiff::fmt::temporal::DateTimePrinter::new().precision(Some(0));
    let whole = jiff::Timestamp::from_second(second).ok()?;
    let mut text = String::with_capacity(20);
    PRINTER.print_timestamp(&whole, &mut text).ok()?;
    text.as_bytes().get(..19)?.try_into().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_have_microseconds_and_z() {
        let ts: jiff::Timestamp = "2026-11-21T06:00:00.123456789Z".parse().unwrap();
        assert_eq!(format_timestamp(ts), "2026-11-21T06:00:00.123456Z");
        let ts: jiff::Timestamp = "2026-11-21T06:00:00Z".parse().unwrap();
        assert_eq!(format_timestamp(ts), "2026-11-21T06:00:00.000000Z");
    }

    #[test]
    fn the_fast_printer_writes_what_strftime_writes() {
        let strftime = |ts: jiff::Timestamp| {
            let whole = jiff::Timestamp::from_microsecond(ts.as_microsecond()).unwrap();
            whole.strftime("%Y-%m-%dT%H:%M:%S%.6fZ").to_string()
        };
        // Spread over the whole range (negative years and years past 9999
        // included), plus instants with trailing zeros in the fraction.
        let (lo, hi) = (jiff::Timestamp::MIN.as_second(), jiff::Timestamp::MAX.as_second());
        let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
        for i in 0..20_000i64 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let span = u64::try_from(hi - lo).unwrap();
            let secs = lo + i64::try_from(x % span).unwrap();
            let nanos =
                i32::try_from(x % 1_000_000_000).unwrap() / [1, 1000, 1_000_000][usize::try_from(i % 3).unwrap()];
            let ts = jiff::Timestamp::new(secs, nanos).unwrap();
            assert_eq!(format_timestamp(ts), strftime(ts), "{ts}");
        }
        // Runs of instants within one second and across second, day and
        // year boundaries (the per-second prefix is reused, then replaced).
        let start: jiff::Timestamp = "2026-12-31T23:59:58.999990Z".parse().unwrap();
        for step in 0..40_000i64 {
            let ts = start.checked_add(jiff::SignedDuration::from_micros(step * 73)).unwrap();
            assert_eq!(format_timestamp(ts), strftime(ts), "{ts}");
        }
        for text in [
            "0000-01-01T00:00:00Z",
            "9999-12-30T12:00:00.999999999Z",
            "1970-01-01T00:00:00.000001Z",
        ] {
            let ts: jiff::Timestamp = text.parse().unwrap();
            assert_eq!(format_timestamp(ts), strftime(ts), "{text}");
        }
    }
}
