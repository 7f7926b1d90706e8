//! Server pushback: how long a server asked the caller to wait before retrying.

use std::time::{Duration, SystemTime};

use http::HeaderMap;
use tower_bulwark_core::grpc::GRPC_RETRY_PUSHBACK_MS;

/// What a response said about retrying it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pushback {
    /// Nothing usable: retry on the caller's own schedule.
    None,
    /// Wait at least this long (already capped by the caller's maximum).
    After(Duration),
    /// Do not retry (a negative or unparseable `grpc-retry-pushback-ms`, or a wait beyond
    /// the maximum).
    Never,
}

/// Reads the pushback of a response's headers, `grpc-retry-pushback-ms` first, then
/// `Retry-After`.
///
/// | header value | result |
/// |---|---|
/// | `grpc-retry-pushback-ms: 250` | `After(250 ms)` |
/// | `grpc-retry-pushback-ms: -1` (any negative) | `Never` (gRFC A6: do not retry) |
/// | `grpc-retry-pushback-ms` empty, garbage, out of `i64` range, non-UTF-8 | `Never` (gRFC A6: an unparseable pushback means do not retry) |
/// | `Retry-After: 120` (delay-seconds) | `After(120 s)` |
/// | `Retry-After` delay-seconds beyond `u64` | `After(u64::MAX s)`: the longest wait (RFC 9111 1.2.2), so `Never` under any real maximum |
/// | `Retry-After: Wed, 21 Oct 2026 07:28:00 GMT` (HTTP-date) | `After(time until then)`; a date in the past is `After(0)` |
/// | `Retry-After` empty, garbage, signed, non-UTF-8 | `None` (ignored, logged at debug) |
/// | a wait longer than `max` | `Never`: the server asks for more than this caller will wait |
/// | neither header | `None` |
///
/// Blanks around a value are ignored. No header bytes make it panic.
///
/// ```
/// use std::time::Duration;
/// use http::HeaderMap;
/// use tower_bulwark_retry::{pushback, Pushback};
///
/// let mut headers = HeaderMap::new();
/// headers.insert("retry-after", "3".parse().unwrap());
/// assert_eq!(pushback(&headers, Duration::from_secs(60)), Pushback::After(Duration::from_secs(3)));
/// headers.insert("grpc-retry-pushback-ms", "-1".parse().unwrap());
/// assert_eq!(pushback(&headers, Duration::from_secs(60)), Pushback::Never);
/// headers.insert("grpc-retry-pushback-ms", "soon".parse().unwrap());
/// assert_eq!(pushback(&headers, Duration::from_secs(60)), Pushback::Never);
/// ```
pub fn pushback(headers: &HeaderMap, max: Duration) -> Pushback {
    let found = match headers.get(GRPC_RETRY_PUSHBACK_MS) {
        Some(value) => grpc_pushback(value.as_bytes()),
        None => match headers.get(http::header::RETRY_AFTER) {
            Some(value) => retry_after(value.as_bytes(), SystemTime::now()),
            None => Pushback::None,
        },
    };
    match found {
        Pushback::After(wait) if wait > max => Pushback::Never,
        pushback => pushback,
    }
}

/// `grpc-retry-pushback-ms`: an integer of milliseconds. gRFC A6: a negative or unparseable
/// value means "do not retry".
fn grpc_pushback(value: &[u8]) -> Pushback {
    let parsed = std::str::from_utf8(value.trim_ascii())
        .ok()
        .and_then(|text| text.parse::<i64>().ok());
    match parsed {
        Some(ms) if ms >= 0 => Pushback::After(Duration::from_millis(ms.unsigned_abs())),
        Some(_) => Pushback::Never,
        None => {
            tracing_debug("grpc-retry-pushback-ms", value);
            Pushback::Never
        }
    }
}

/// `Retry-After`: delay-seconds, or an HTTP-date (in the past: retry now).
fn retry_after(value: &[u8], now: SystemTime) -> Pushback {
    let value = value.trim_ascii();
    if !value.is_empty() && value.iter().all(u8::is_ascii_digit) {
        // RFC 9111 1.2.2: delta-seconds too large to represent are the largest value.
        let seconds = value.iter().try_fold(0u64, |seconds, digit| {
            seconds
                .checked_mul(10)?
                .checked_add(u64::from(digit - b'0'))
        });
        return Pushback::After(Duration::from_secs(seconds.unwrap_or(u64::MAX)));
    }
    let date = std::str::from_utf8(value)
        .ok()
        .and_then(|text| httpdate::parse_http_date(text).ok());
    match date {
        Some(when) => Pushback::After(when.duration_since(now).unwrap_or(Duration::ZERO)),
        None => {
            tracing_debug("retry-after", value);
            Pushback::None
        }
    }
}

fn tracing_debug(header: &str, value: &[u8]) {
    tracing::debug!(header, value = %String::from_utf8_lossy(value), "malformed pushback header");
}

#[cfg(all(test, not(bulwark_loom)))]
mod tests {
    use super::*;
    use http::HeaderValue;

    const MAX: Duration = Duration::from_secs(300);

    fn headers(pairs: &[(&'static str, &[u8])]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for (name, value) in pairs {
            headers.insert(*name, HeaderValue::from_bytes(value).unwrap());
        }
        headers
    }

    #[test]
    fn grpc_pushback_values() {
        let of = |v: &[u8]| pushback(&headers(&[("grpc-retry-pushback-ms", v)]), MAX);
        assert_eq!(of(b"250"), Pushback::After(Duration::from_millis(250)));
        assert_eq!(of(b" 250\t"), Pushback::After(Duration::from_millis(250)));
        assert_eq!(of(b"0"), Pushback::After(Duration::ZERO));
        assert_eq!(of(b"-0"), Pushback::After(Duration::ZERO), "not negative");
        assert_eq!(of(b"-1"), Pushback::Never);
        assert_eq!(of(b"-99999"), Pushback::Never);
        assert_eq!(of(b"999999999"), Pushback::Never, "beyond the maximum");
        // gRFC A6: an unparseable value means "do not retry", like a negative one.
        for garbage in [
            &b""[..],
            b" ",
            b"abc",
            b"1.5",
            b"12ms",
            b"1 2",
            b"--1",
            b"99999999999999999999999",
            b"-99999999999999999999999",
            b"\xff",
        ] {
            assert_eq!(of(garbage), Pushback::Never, "{garbage:?}");
        }
    }

    #[test]
    fn retry_after_values() {
        let of = |v: &[u8]| pushback(&headers(&[("retry-after", v)]), MAX);
        assert_eq!(of(b"120"), Pushback::After(Duration::from_secs(120)));
        assert_eq!(of(b" 120 "), Pushback::After(Duration::from_secs(120)));
        assert_eq!(of(b"0"), Pushback::After(Duration::ZERO));
        assert_eq!(of(b"300"), Pushback::After(MAX), "at the maximum");
        assert_eq!(of(b"301"), Pushback::Never, "beyond the maximum");
        // Garbage is ignored: retry on the caller's own schedule.
        for garbage in [
            &b""[..],
            b" ",
            b"-5",
            b"+5",
            b"soon",
            b"1e3",
            b"1 2",
            b"Mon, 32 Foo 2026 99:99:99 GMT",
            b"\xfe",
        ] {
            assert_eq!(of(garbage), Pushback::None, "{garbage:?}");
        }
    }

    #[test]
    fn delay_seconds_that_overflow_are_the_longest_wait() {
        // RFC 9111 1.2.2: an overflowing delta-seconds is the greatest value, not garbage.
        for huge in [
            &b"18446744073709551616"[..],
            b"184467440737095516150",
            &[b'9'; 400],
        ] {
            assert_eq!(
                retry_after(huge, SystemTime::UNIX_EPOCH),
                Pushback::After(Duration::from_secs(u64::MAX)),
                "{huge:?}"
            );
            let headers = headers(&[("retry-after", huge)]);
            assert_eq!(
                pushback(&headers, MAX),
                Pushback::Never,
                "beyond any maximum"
            );
            assert_eq!(
                pushback(&headers, Duration::MAX),
                Pushback::After(Duration::from_secs(u64::MAX))
            );
        }
        assert_eq!(
            retry_after(b"18446744073709551615", SystemTime::UNIX_EPOCH),
            Pushback::After(Duration::from_secs(u64::MAX))
        );
    }

    proptest::proptest! {
        /// Any header bytes at all: a defined answer, never a panic.
        #[test]
        fn any_header_bytes_are_answered_without_panicking(
            value in proptest::collection::vec(proptest::num::u8::ANY, 0..64),
            max_ms in proptest::num::u64::ANY,
        ) {
            let max = Duration::from_millis(max_ms);
            let Ok(value) = HeaderValue::from_bytes(&value) else { return Ok(()) };
            for name in ["grpc-retry-pushback-ms", "retry-after"] {
                let mut headers = HeaderMap::new();
                headers.insert(name, value.clone());
                if let Pushback::After(wait) = pushback(&headers, max) {
                    proptest::prop_assert!(wait <= max);
                }
            }
        }

        /// Digits, a sign and blanks in any order, against a reference reading of each spec.
        #[test]
        fn numbers_are_read_as_the_specs_say(text in "[ \t]?[+-]?[0-9]{0,25}[ \t]?") {
            let trimmed = text.trim_matches([' ', '\t']);
            let grpc = pushback(&headers(&[("grpc-retry-pushback-ms", text.as_bytes())]), Duration::MAX);
            let expected = match trimmed.parse::<i64>() {
                Ok(ms) if ms >= 0 => Pushback::After(Duration::from_millis(ms.unsigned_abs())),
                _ => Pushback::Never,
            };
            proptest::prop_assert_eq!(grpc, expected);

            let http = pushback(&headers(&[("retry-after", text.as_bytes())]), Duration::MAX);
            let digits = !trimmed.is_empty() && trimmed.bytes().all(|b| b.is_ascii_digit());
            let expected = match trimmed.parse::<u64>() {
                Ok(seconds) if digits => Pushback::After(Duration::from_secs(seconds)),
                Err(_) if digits => Pushback::After(Duration::from_secs(u64::MAX)),
                _ => Pushback::None,
            };
            proptest::prop_assert_eq!(http, expected);
        }
    }

    #[test]
    fn http_dates_in_the_future_and_the_past() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let future = httpdate::fmt_http_date(now + Duration::from_secs(90));
        assert_eq!(
            retry_after(future.as_bytes(), now),
            Pushback::After(Duration::from_secs(90))
        );
        let past = httpdate::fmt_http_date(now - Duration::from_secs(3600));
        assert_eq!(
            retry_after(past.as_bytes(), now),
            Pushback::After(Duration::ZERO)
        );
        // The obsolete RFC 850 and asctime forms are accepted too.
        assert!(matches!(
            retry_after(b"Sunday, 06-Nov-94 08:49:37 GMT", now),
            Pushback::After(_)
        ));
    }

    #[test]
    fn grpc_pushback_wins_over_retry_after() {
        let both = headers(&[("grpc-retry-pushback-ms", b"100"), ("retry-after", b"50")]);
        assert_eq!(
            pushback(&both, MAX),
            Pushback::After(Duration::from_millis(100))
        );
        assert_eq!(pushback(&HeaderMap::new(), MAX), Pushback::None);
    }
}
