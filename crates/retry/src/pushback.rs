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
    /// Do not retry (a negative `grpc-retry-pushback-ms`, or a wait beyond the maximum).
    Never,
}

/// Reads the pushback of a response's headers, `grpc-retry-pushback-ms` first, then
/// `Retry-After`.
///
/// | header value | result |
/// |---|---|
/// | `grpc-retry-pushback-ms: 250` | `After(250 ms)` |
/// | `grpc-retry-pushback-ms: -1` (any negative) | `Never` (the gRPC spec: do not retry) |
/// | `Retry-After: 120` (delay-seconds) | `After(120 s)` |
/// | `Retry-After: Wed, 21 Oct 2026 07:28:00 GMT` (HTTP-date) | `After(time until then)`; a date in the past is `After(0)` |
/// | a wait longer than `max` | `Never`: the server asks for more than this caller will wait |
/// | missing, empty, garbage, overlong, non-UTF-8 | `None` (ignored, logged at debug) |
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
/// ```
pub fn pushback(headers: &HeaderMap, max: Duration) -> Pushback {
    let found = headers
        .get(GRPC_RETRY_PUSHBACK_MS)
        .map(|value| grpc_pushback(value.as_bytes()))
        .or_else(|| {
            headers
                .get(http::header::RETRY_AFTER)
                .map(|value| retry_after(value.as_bytes(), SystemTime::now()))
        });
    match found {
        Some(Pushback::After(wait)) if wait > max => Pushback::Never,
        Some(pushback) => pushback,
        None => Pushback::None,
    }
}

/// `grpc-retry-pushback-ms`: an integer of milliseconds; negative means "do not retry".
fn grpc_pushback(value: &[u8]) -> Pushback {
    let parsed = std::str::from_utf8(value)
        .ok()
        .filter(|text| text.len() <= 20)
        .and_then(|text| text.trim().parse::<i64>().ok());
    match parsed {
        Some(ms) if ms < 0 => Pushback::Never,
        Some(ms) => Pushback::After(Duration::from_millis(ms.unsigned_abs())),
        None => {
            tracing_debug("grpc-retry-pushback-ms", value);
            Pushback::None
        }
    }
}

/// `Retry-After`: delay-seconds, or an HTTP-date (in the past: retry now).
fn retry_after(value: &[u8], now: SystemTime) -> Pushback {
    let Some(text) = std::str::from_utf8(value).ok().map(str::trim) else {
        tracing_debug("retry-after", value);
        return Pushback::None;
    };
    if !text.is_empty() && text.len() <= 20 && text.bytes().all(|b| b.is_ascii_digit()) {
        return match text.parse::<u64>() {
            Ok(seconds) => Pushback::After(Duration::from_secs(seconds)),
            Err(_) => Pushback::None,
        };
    }
    match httpdate::parse_http_date(text) {
        Ok(when) => Pushback::After(when.duration_since(now).unwrap_or(Duration::ZERO)),
        Err(_) => {
            tracing_debug("retry-after", value);
            Pushback::None
        }
    }
}

fn tracing_debug(header: &str, value: &[u8]) {
    tracing::debug!(header, value = %String::from_utf8_lossy(value), "ignoring a malformed pushback header");
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
        assert_eq!(of(b"0"), Pushback::After(Duration::ZERO));
        assert_eq!(of(b"-1"), Pushback::Never);
        assert_eq!(of(b"-99999"), Pushback::Never);
        assert_eq!(of(b"999999999"), Pushback::Never, "beyond the maximum");
        for garbage in [
            &b""[..],
            b"abc",
            b"1.5",
            b"12ms",
            b"99999999999999999999999",
            b"\xff",
        ] {
            assert_eq!(of(garbage), Pushback::None, "{garbage:?}");
        }
    }

    #[test]
    fn retry_after_values() {
        let of = |v: &[u8]| pushback(&headers(&[("retry-after", v)]), MAX);
        assert_eq!(of(b"120"), Pushback::After(Duration::from_secs(120)));
        assert_eq!(of(b"0"), Pushback::After(Duration::ZERO));
        assert_eq!(of(b"301"), Pushback::Never, "beyond the maximum");
        assert_eq!(of(b"184467440737095516150"), Pushback::None, "overlong");
        for garbage in [
            &b""[..],
            b"-5",
            b"soon",
            b"1e3",
            b"Mon, 32 Foo 2026 99:99:99 GMT",
            b"\xfe",
        ] {
            assert_eq!(of(garbage), Pushback::None, "{garbage:?}");
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
