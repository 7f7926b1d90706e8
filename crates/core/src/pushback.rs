//! Server pushback: what a response's `grpc-retry-pushback-ms` or `Retry-After` header says
//! about sending the call again. One reading for every layer that reads it: the retry
//! policy (how long to wait, or whether to stop) and the hedge layer (how long to pause
//! hedging while the dependency sheds).
//!
//! | header value | result |
//! |---|---|
//! | `grpc-retry-pushback-ms: 250` | `After(250 ms)` |
//! | `grpc-retry-pushback-ms: -1` (any negative; `-0` is zero) | `Never` (gRFC A6: do not retry) |
//! | `grpc-retry-pushback-ms` digits beyond `u64` | `Never`: no gRPC client can read it as a number, and an unparseable pushback means do not retry (gRFC A6) |
//! | `grpc-retry-pushback-ms` empty, garbage (`1.5`, `12ms`, `--1`), non-UTF-8 | `Never` (gRFC A6: an unparseable pushback means do not retry) |
//! | `Retry-After: 120` (delay-seconds) | `After(120 s)` |
//! | `Retry-After` delay-seconds beyond `u64` | `After(u64::MAX s)`: the longest wait (RFC 9111 1.2.2) |
//! | `Retry-After: Wed, 21 Oct 2026 07:28:00 GMT` (HTTP-date, or the obsolete RFC 850 and asctime forms) | `After(time until then)` |
//! | `Retry-After` HTTP-date in the past | `After(0)`: the same as `Retry-After: 0` |
//! | `Retry-After` empty, garbage, signed (`-5`, `+5`), non-UTF-8 | `None`: ignored (logged at debug) |
//! | neither header | `None` |
//! | a wait longer than `max` ([`pushback`] only) | `Never`: the server asks for more than this caller will wait |
//!
//! Blanks (spaces, tabs) around a value are ignored. No header bytes make it panic.
//! `grpc-retry-pushback-ms` is read first when both are present.
//!
//! How the layers use it:
//!
//! - retry ([`pushback`] with the policy's maximum wait): `After` is the least wait before
//!   the next attempt, `Never` ends the retries, `None` leaves the wait to the backoff;
//! - hedge (on an answer that already says the dependency sheds: a 503 or 429 with
//!   `Retry-After`, a gRPC `RESOURCE_EXHAUSTED` with pushback): `After` is how long hedging
//!   pauses (up to the hedge layer's cap; `After(0)` pauses nothing, as the server allows an
//!   attempt at once); `Never` and `None` carry no duration, so the hedge layer's default
//!   pause applies. A "do not retry" is not a longer pause: this workspace's own servers
//!   answer every gRPC shed with `-1`.
//!
//! ```
//! use std::time::Duration;
//! use http::HeaderMap;
//! use tower_bulwark_core::pushback::{pushback, Pushback};
//!
//! let max = Duration::from_secs(60);
//! let mut headers = HeaderMap::new();
//! assert_eq!(pushback(&headers, max), Pushback::None);
//! headers.insert("retry-after", "3".parse().unwrap());
//! assert_eq!(pushback(&headers, max), Pushback::After(Duration::from_secs(3)));
//! headers.insert("retry-after", "3600".parse().unwrap());
//! assert_eq!(pushback(&headers, max), Pushback::Never, "longer than this caller waits");
//! headers.insert("grpc-retry-pushback-ms", "-1".parse().unwrap());
//! assert_eq!(pushback(&headers, max), Pushback::Never);
//! headers.insert("grpc-retry-pushback-ms", "250".parse().unwrap());
//! assert_eq!(pushback(&headers, max), Pushback::After(Duration::from_millis(250)));
//! ```

use std::time::{Duration, SystemTime};

use http::HeaderMap;

use crate::grpc::GRPC_RETRY_PUSHBACK_MS;

/// What a response said about retrying it. See the [module docs](self) for each header
/// value's reading.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pushback {
    /// Nothing usable: retry on the caller's own schedule.
    None,
    /// Wait at least this long (from [`pushback`]: already within the caller's maximum).
    After(Duration),
    /// Do not retry (a negative or unparseable `grpc-retry-pushback-ms`, or, from
    /// [`pushback`], a wait beyond the maximum).
    Never,
}

impl Pushback {
    /// The wait asked for, if the server gave one: `After`'s duration, else `None`.
    ///
    /// ```
    /// use std::time::Duration;
    /// use tower_bulwark_core::pushback::Pushback;
    ///
    /// assert_eq!(Pushback::After(Duration::ZERO).wait(), Some(Duration::ZERO));
    /// assert_eq!(Pushback::Never.wait(), None);
    /// assert_eq!(Pushback::None.wait(), None);
    /// ```
    pub fn wait(self) -> Option<Duration> {
        match self {
            Pushback::After(wait) => Some(wait),
            Pushback::None | Pushback::Never => None,
        }
    }
}

/// Reads the pushback of a response's headers, `grpc-retry-pushback-ms` first, then
/// `Retry-After`, and refuses a wait longer than `max` (`Never`). See the
/// [module docs](self) for each value's reading.
///
/// ```
/// use std::time::Duration;
/// use http::HeaderMap;
/// use tower_bulwark_core::pushback::{pushback, Pushback};
///
/// let mut headers = HeaderMap::new();
/// headers.insert("grpc-retry-pushback-ms", "soon".parse().unwrap());
/// assert_eq!(pushback(&headers, Duration::MAX), Pushback::Never, "gRFC A6: unparseable");
/// ```
pub fn pushback(headers: &HeaderMap, max: Duration) -> Pushback {
    let found = match headers.get(GRPC_RETRY_PUSHBACK_MS) {
        Some(value) => grpc_retry_pushback(value.as_bytes()),
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

/// One `grpc-retry-pushback-ms` value: an integer of milliseconds, `After` when 0 or more
/// and within `u64`, `Never` when negative or unparseable, a number too large for any
/// integer type included (gRFC A6).
///
/// ```
/// use std::time::Duration;
/// use tower_bulwark_core::pushback::{grpc_retry_pushback, Pushback};
///
/// assert_eq!(grpc_retry_pushback(b" 250 "), Pushback::After(Duration::from_millis(250)));
/// assert_eq!(grpc_retry_pushback(b"-1"), Pushback::Never);
/// assert_eq!(grpc_retry_pushback(b"12ms"), Pushback::Never);
/// ```
pub fn grpc_retry_pushback(value: &[u8]) -> Pushback {
    let trimmed = trim(value);
    let (negative, digits) = match trimmed {
        [b'-', rest @ ..] => (true, rest),
        [b'+', rest @ ..] => (false, rest),
        _ => (false, trimmed),
    };
    match saturating_digits(digits) {
        Some(0) => Pushback::After(Duration::ZERO),
        Some(u64::MAX) if !negative && !fits(digits) => Pushback::Never,
        Some(_) if negative => Pushback::Never,
        Some(ms) => Pushback::After(Duration::from_millis(ms)),
        None => {
            malformed(GRPC_RETRY_PUSHBACK_MS, value);
            Pushback::Never
        }
    }
}

/// One `Retry-After` value read at `now`: delay-seconds (saturating at `u64::MAX` s,
/// RFC 9111 1.2.2) or an HTTP-date (the time until then; a date in the past is
/// `After(0)`), else `None` (ignored). Never `Never`.
///
/// ```
/// use std::time::{Duration, SystemTime};
/// use tower_bulwark_core::pushback::{retry_after, Pushback};
///
/// let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_445_412_470);
/// assert_eq!(retry_after(b"120", now), Pushback::After(Duration::from_secs(120)));
/// assert_eq!(
///     retry_after(b"Wed, 21 Oct 2015 07:28:00 GMT", now),
///     Pushback::After(Duration::from_secs(10)),
/// );
/// assert_eq!(retry_after(b"-5", now), Pushback::None);
/// ```
pub fn retry_after(value: &[u8], now: SystemTime) -> Pushback {
    let trimmed = trim(value);
    if let Some(seconds) = saturating_digits(trimmed) {
        return Pushback::After(Duration::from_secs(seconds));
    }
    let date = std::str::from_utf8(trimmed)
        .ok()
        .and_then(|text| httpdate::parse_http_date(text).ok());
    match date {
        Some(when) => Pushback::After(when.duration_since(now).unwrap_or(Duration::ZERO)),
        None => {
            malformed("retry-after", value);
            Pushback::None
        }
    }
}

/// Spaces and tabs (a header's optional whitespace) off both ends.
fn trim(value: &[u8]) -> &[u8] {
    let blank = |byte: &u8| matches!(byte, b' ' | b'\t');
    let start = value.iter().position(|b| !blank(b)).unwrap_or(value.len());
    let end = value
        .iter()
        .rposition(|b| !blank(b))
        .map_or(start, |end| end + 1);
    &value[start..end]
}

/// One or more ASCII digits as a `u64`, `u64::MAX` when they overflow it; `None` for
/// anything else.
fn saturating_digits(digits: &[u8]) -> Option<u64> {
    if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    Some(
        digits
            .iter()
            .try_fold(0u64, |n, digit| {
                n.checked_mul(10)?.checked_add(u64::from(digit - b'0'))
            })
            .unwrap_or(u64::MAX),
    )
}

/// Whether ASCII digits are a number within `u64` (`saturating_digits` saturates).
fn fits(digits: &[u8]) -> bool {
    digits
        .iter()
        .try_fold(0u64, |n, digit| {
            n.checked_mul(10)?.checked_add(u64::from(digit - b'0'))
        })
        .is_some()
}

#[cold]
fn malformed(header: &str, value: &[u8]) {
    tracing::debug!(header, value = %String::from_utf8_lossy(value), "malformed pushback header");
}

#[cfg(all(test, not(bulwark_loom)))]
mod tests {
    use super::*;
    use http::HeaderValue;

    const MAX: Duration = Duration::from_secs(300);
    const LONGEST_MS: Pushback = Pushback::After(Duration::from_millis(u64::MAX));
    const LONGEST_S: Pushback = Pushback::After(Duration::from_secs(u64::MAX));

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
        assert_eq!(of(b"+250"), Pushback::After(Duration::from_millis(250)));
        assert_eq!(of(b"0"), Pushback::After(Duration::ZERO));
        assert_eq!(of(b"-0"), Pushback::After(Duration::ZERO), "not negative");
        assert_eq!(of(b"-000"), Pushback::After(Duration::ZERO), "not negative");
        assert_eq!(of(b"-1"), Pushback::Never);
        assert_eq!(of(b"-99999"), Pushback::Never);
        assert_eq!(of(b"999999999"), Pushback::Never, "beyond the maximum");
        // gRFC A6: an unparseable value means "do not retry", like a negative one.
        for garbage in [
            &b""[..],
            b" ",
            b"-",
            b"+",
            b"abc",
            b"1.5",
            b"12ms",
            b"1 2",
            b"--1",
            b"+-1",
            b"1e3",
            b"\xff",
        ] {
            assert_eq!(of(garbage), Pushback::Never, "{garbage:?}");
            assert_eq!(grpc_retry_pushback(garbage), Pushback::Never, "{garbage:?}");
        }
    }

    #[test]
    fn grpc_pushback_out_of_range() {
        // The largest number of milliseconds is a wait; past it, no client reads a number:
        // do not retry (gRFC A6), as for any unparseable value.
        assert_eq!(grpc_retry_pushback(b"18446744073709551615"), LONGEST_MS);
        assert_eq!(
            grpc_retry_pushback(b"18446744073709551616"),
            Pushback::Never
        );
        assert_eq!(
            grpc_retry_pushback(b"99999999999999999999999"),
            Pushback::Never
        );
        assert_eq!(grpc_retry_pushback(&[b'9'; 400]), Pushback::Never);
        // Negative however large: do not retry.
        assert_eq!(
            grpc_retry_pushback(b"-99999999999999999999999"),
            Pushback::Never
        );
        let huge = headers(&[("grpc-retry-pushback-ms", b"99999999999999999999999")]);
        assert_eq!(pushback(&huge, MAX), Pushback::Never);
        assert_eq!(
            pushback(&huge, Duration::MAX),
            Pushback::Never,
            "whatever the maximum"
        );
        let largest = headers(&[("grpc-retry-pushback-ms", b"18446744073709551615")]);
        assert_eq!(pushback(&largest, Duration::MAX), LONGEST_MS);
    }

    #[test]
    fn retry_after_values() {
        let of = |v: &[u8]| pushback(&headers(&[("retry-after", v)]), MAX);
        assert_eq!(of(b"120"), Pushback::After(Duration::from_secs(120)));
        assert_eq!(of(b" 120 "), Pushback::After(Duration::from_secs(120)));
        assert_eq!(of(b"\t0120"), Pushback::After(Duration::from_secs(120)));
        assert_eq!(of(b"0"), Pushback::After(Duration::ZERO));
        assert_eq!(of(b"300"), Pushback::After(MAX), "at the maximum");
        assert_eq!(of(b"301"), Pushback::Never, "beyond the maximum");
        // Garbage is ignored: retry on the caller's own schedule.
        for garbage in [
            &b""[..],
            b" ",
            b"-5",
            b"-0",
            b"+5",
            b"soon",
            b"1e3",
            b"1.5",
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
                LONGEST_S,
                "{huge:?}"
            );
            let headers = headers(&[("retry-after", huge)]);
            assert_eq!(
                pushback(&headers, MAX),
                Pushback::Never,
                "beyond any maximum"
            );
            assert_eq!(pushback(&headers, Duration::MAX), LONGEST_S);
        }
        assert_eq!(
            retry_after(b"18446744073709551615", SystemTime::UNIX_EPOCH),
            LONGEST_S
        );
    }

    #[test]
    fn http_dates_in_the_future_and_the_past() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let future = httpdate::fmt_http_date(now + Duration::from_secs(90));
        assert_eq!(
            retry_after(future.as_bytes(), now),
            Pushback::After(Duration::from_secs(90))
        );
        let padded = format!("  {future}\t");
        assert_eq!(
            retry_after(padded.as_bytes(), now),
            Pushback::After(Duration::from_secs(90))
        );
        // A date in the past: retry now, as `Retry-After: 0` says.
        let past = httpdate::fmt_http_date(now - Duration::from_secs(3600));
        assert_eq!(
            retry_after(past.as_bytes(), now),
            Pushback::After(Duration::ZERO)
        );
        // The obsolete RFC 850 and asctime forms are accepted too.
        for obsolete in [
            &b"Sunday, 06-Nov-94 08:49:37 GMT"[..],
            b"Sun Nov  6 08:49:37 1994",
        ] {
            assert_eq!(
                retry_after(obsolete, now),
                Pushback::After(Duration::ZERO),
                "{obsolete:?} is in the past"
            );
        }
        // Through `pushback`, with the wall clock: a date far ahead is beyond the maximum.
        let far = httpdate::fmt_http_date(SystemTime::now() + Duration::from_secs(86_400));
        let far = headers(&[("retry-after", far.as_bytes())]);
        assert_eq!(pushback(&far, MAX), Pushback::Never);
        assert!(
            matches!(pushback(&far, Duration::MAX), Pushback::After(wait)
            if wait > Duration::from_secs(86_000))
        );
    }

    #[test]
    fn grpc_pushback_wins_over_retry_after() {
        let both = headers(&[("grpc-retry-pushback-ms", b"100"), ("retry-after", b"50")]);
        assert_eq!(
            pushback(&both, MAX),
            Pushback::After(Duration::from_millis(100))
        );
        let both = headers(&[("grpc-retry-pushback-ms", b"x"), ("retry-after", b"50")]);
        assert_eq!(pushback(&both, MAX), Pushback::Never);
        assert_eq!(pushback(&HeaderMap::new(), MAX), Pushback::None);
    }

    #[test]
    fn wait_is_the_duration_of_after_only() {
        let second = Duration::from_secs(1);
        assert_eq!(Pushback::After(second).wait(), Some(second));
        assert_eq!(Pushback::Never.wait(), None);
        assert_eq!(Pushback::None.wait(), None);
    }

    proptest::proptest! {
        /// What this workspace's refusals write, this reading reads back: the wait rounded
        /// up to the header's unit, or "do not retry" on a gRPC shed.
        #[test]
        fn refusals_written_by_core_read_back(millis in 0u64..10_000_000, kind in 0usize..4) {
            use crate::{Rejection, RejectionKind};
            let kind = [
                RejectionKind::Overloaded,
                RejectionKind::BulkheadFull,
                RejectionKind::CircuitOpen,
                RejectionKind::Throttled,
            ][kind];
            let wait = Duration::from_millis(millis);
            let rejection = Rejection::new(kind, "test").with_retry_after(wait);
            let http = rejection.to_http_response::<()>();
            proptest::prop_assert_eq!(
                pushback(http.headers(), Duration::MAX),
                Pushback::After(Duration::from_secs(millis.div_ceil(1000)))
            );
            let grpc = rejection.to_grpc_response::<()>();
            let read = pushback(grpc.headers(), Duration::MAX);
            proptest::prop_assert!(
                read == Pushback::After(wait) || read == Pushback::Never,
                "{:?}",
                read
            );
        }

        /// Any header bytes at all: a defined answer, never a panic.
        #[test]
        fn any_bytes_are_answered_without_panicking(
            value in proptest::collection::vec(proptest::num::u8::ANY, 0..64),
            max_ms in proptest::num::u64::ANY,
            now_secs in proptest::num::u64::ANY,
        ) {
            // The parsers take bytes no `HeaderValue` could hold too.
            let now = SystemTime::UNIX_EPOCH
                .checked_add(Duration::from_secs(now_secs))
                .unwrap_or(SystemTime::UNIX_EPOCH);
            proptest::prop_assert_ne!(retry_after(&value, now), Pushback::Never);
            proptest::prop_assert_ne!(grpc_retry_pushback(&value), Pushback::None);
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
            let unsigned = trimmed.trim_start_matches(['+', '-']);
            let digits = !unsigned.is_empty()
                && unsigned.bytes().all(|b| b.is_ascii_digit())
                && trimmed.len() <= unsigned.len() + 1;
            let grpc = pushback(&headers(&[("grpc-retry-pushback-ms", text.as_bytes())]), Duration::MAX);
            let expected = match (digits, unsigned.parse::<u64>()) {
                (false, _) => Pushback::Never,
                (true, Ok(0)) => Pushback::After(Duration::ZERO),
                (true, _) if trimmed.starts_with('-') => Pushback::Never,
                (true, Ok(ms)) => Pushback::After(Duration::from_millis(ms)),
                (true, Err(_)) => Pushback::Never,
            };
            proptest::prop_assert_eq!(grpc, expected);

            let http = pushback(&headers(&[("retry-after", text.as_bytes())]), Duration::MAX);
            let digits = !trimmed.is_empty() && trimmed.bytes().all(|b| b.is_ascii_digit());
            let expected = match trimmed.parse::<u64>() {
                Ok(seconds) if digits => Pushback::After(Duration::from_secs(seconds)),
                Err(_) if digits => LONGEST_S,
                _ => Pushback::None,
            };
            proptest::prop_assert_eq!(http, expected);
        }
    }
}
