//! The deadline headers: which ones are read, and how each is parsed.

use std::fmt;
use std::time::{Duration, SystemTime};

use http::{HeaderMap, HeaderName};

use crate::grpc_timeout::{parse_digits, parse_grpc_timeout};

/// `grpc-timeout`: the gRPC deadline, relative (`250m`, `3S`, ...).
pub const GRPC_TIMEOUT: &str = "grpc-timeout";
/// The relative HTTP deadline: milliseconds remaining.
pub const TIMEOUT_MS_HEADER: &str = "x-request-timeout-ms";
/// The absolute HTTP deadline: Unix epoch milliseconds (opt-in).
pub const DEADLINE_HEADER: &str = "x-request-deadline";
/// Envoy's expected request timeout in milliseconds (opt-in).
pub const ENVOY_TIMEOUT_HEADER: &str = "x-envoy-expected-rq-timeout-ms";

/// The header names as `HeaderName`s: looking them up or inserting them then needs no
/// parsing.
pub(crate) const GRPC_TIMEOUT_NAME: HeaderName = HeaderName::from_static(GRPC_TIMEOUT);
const ENVOY_TIMEOUT_NAME: HeaderName = HeaderName::from_static(ENVOY_TIMEOUT_HEADER);

/// The longest millisecond value read: 20 digits (`u64::MAX` has 20).
const MAX_MS_DIGITS: usize = 20;

/// Why a deadline header was not used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum InvalidHeader {
    /// No value at all.
    Empty,
    /// Not the digits (and unit) the header's format asks for.
    NotANumber,
    /// A negative number.
    Negative,
    /// More digits than the format allows (8 for `grpc-timeout`).
    TooLong,
    /// More than a `u64` holds.
    Overflow,
    /// A zero timeout: the sender had no time left to give, or sent garbage.
    Zero,
}

impl fmt::Display for InvalidHeader {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            InvalidHeader::Empty => "empty",
            InvalidHeader::NotANumber => "not a number in the expected format",
            InvalidHeader::Negative => "negative",
            InvalidHeader::TooLong => "too many digits",
            InvalidHeader::Overflow => "too large",
            InvalidHeader::Zero => "zero",
        })
    }
}

impl std::error::Error for InvalidHeader {}

/// A header a server reads its caller's deadline from.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum DeadlineHeader {
    /// `grpc-timeout` ([`GRPC_TIMEOUT`]).
    GrpcTimeout,
    /// Milliseconds remaining, in the named header ([`TIMEOUT_MS_HEADER`] by default).
    TimeoutMs(HeaderName),
    /// An absolute deadline in Unix epoch milliseconds ([`DEADLINE_HEADER`]), read against
    /// this host's wall clock and clamped for clock skew: the caller's clock may run ahead
    /// of this one by up to `max_clock_skew`, so that much is taken off the time left (a
    /// fast clock must not make this server work after the caller gave up). A deadline
    /// that has passed, or is nearer than the skew, has expired.
    AbsoluteMs {
        /// The header.
        header: HeaderName,
        /// How far ahead of this host's clock the caller's may be.
        max_clock_skew: Duration,
    },
    /// Envoy's `x-envoy-expected-rq-timeout-ms` ([`ENVOY_TIMEOUT_HEADER`]).
    EnvoyExpectedTimeout,
}

impl DeadlineHeader {
    /// [`DeadlineHeader::TimeoutMs`] with the default header name.
    pub fn timeout_ms() -> Self {
        DeadlineHeader::TimeoutMs(HeaderName::from_static(TIMEOUT_MS_HEADER))
    }

    /// [`DeadlineHeader::AbsoluteMs`] with the default header name.
    pub fn absolute_ms(max_clock_skew: Duration) -> Self {
        DeadlineHeader::AbsoluteMs {
            header: HeaderName::from_static(DEADLINE_HEADER),
            max_clock_skew,
        }
    }

    /// The header's name.
    pub fn name(&self) -> &str {
        match self {
            DeadlineHeader::GrpcTimeout => GRPC_TIMEOUT,
            DeadlineHeader::TimeoutMs(header) | DeadlineHeader::AbsoluteMs { header, .. } => {
                header.as_str()
            }
            DeadlineHeader::EnvoyExpectedTimeout => ENVOY_TIMEOUT_HEADER,
        }
    }

    /// The time left that this header gives, if it is present: `Ok(Duration::ZERO)` for an
    /// absolute deadline that has passed.
    pub fn read(&self, headers: &HeaderMap) -> Option<Result<Duration, InvalidHeader>> {
        let name = match self {
            DeadlineHeader::GrpcTimeout => &GRPC_TIMEOUT_NAME,
            DeadlineHeader::TimeoutMs(header) | DeadlineHeader::AbsoluteMs { header, .. } => header,
            DeadlineHeader::EnvoyExpectedTimeout => &ENVOY_TIMEOUT_NAME,
        };
        let value = headers.get(name)?.as_bytes();
        Some(match self {
            DeadlineHeader::GrpcTimeout => parse_grpc_timeout(value),
            DeadlineHeader::TimeoutMs(_) | DeadlineHeader::EnvoyExpectedTimeout => {
                parse_millis(value)
            }
            DeadlineHeader::AbsoluteMs { max_clock_skew, .. } => {
                parse_absolute(value, SystemTime::now(), *max_clock_skew)
            }
        })
    }
}

/// A positive number of milliseconds.
pub(crate) fn parse_millis(value: &[u8]) -> Result<Duration, InvalidHeader> {
    if value.len() > MAX_MS_DIGITS {
        return Err(InvalidHeader::TooLong);
    }
    match parse_digits(value)? {
        0 => Err(InvalidHeader::Zero),
        millis => Ok(Duration::from_millis(millis)),
    }
}

/// The time from `now` until the Unix epoch milliseconds in `value`, less the clock skew;
/// zero once passed.
pub(crate) fn parse_absolute(
    value: &[u8],
    now: SystemTime,
    max_clock_skew: Duration,
) -> Result<Duration, InvalidHeader> {
    let Some(deadline) = SystemTime::UNIX_EPOCH.checked_add(parse_millis(value)?) else {
        // Beyond what this platform's clock holds: far future (the server maximum caps it).
        return Ok(Duration::MAX);
    };
    let remaining = deadline.duration_since(now).unwrap_or(Duration::ZERO);
    Ok(remaining.saturating_sub(max_clock_skew))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn milliseconds_and_their_bad_values() {
        assert_eq!(parse_millis(b"1500"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_millis(b"007"), Ok(Duration::from_millis(7)));
        let cases: [(&[u8], InvalidHeader); 9] = [
            (b"", InvalidHeader::Empty),
            (b"abc", InvalidHeader::NotANumber),
            (b"1.5", InvalidHeader::NotANumber),
            (b"100ms", InvalidHeader::NotANumber),
            (b" 100", InvalidHeader::NotANumber),
            (b"-100", InvalidHeader::Negative),
            (b"0", InvalidHeader::Zero),
            (b"18446744073709551616", InvalidHeader::Overflow),
            (b"123456789012345678901", InvalidHeader::TooLong),
        ];
        for (value, expected) in cases {
            assert_eq!(
                parse_millis(value),
                Err(expected),
                "{:?}",
                String::from_utf8_lossy(value)
            );
        }
        assert_eq!(
            parse_millis(b"18446744073709551615"),
            Ok(Duration::from_millis(u64::MAX))
        );
    }

    #[test]
    fn absolute_deadlines_against_the_wall_clock() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_millis(1_700_000_000_000);
        let skew = Duration::from_millis(100);
        let at = |millis: u64| parse_absolute(millis.to_string().as_bytes(), now, skew);
        assert_eq!(
            at(1_700_000_000_350),
            Ok(Duration::from_millis(250)),
            "less the skew"
        );
        assert_eq!(
            at(1_700_000_000_100),
            Ok(Duration::ZERO),
            "nearer than the skew"
        );
        assert_eq!(at(1_700_000_000_000), Ok(Duration::ZERO));
        assert_eq!(
            at(1_699_999_000_000),
            Ok(Duration::ZERO),
            "long passed: expired too"
        );
        assert_eq!(
            parse_absolute(b"-5", now, skew),
            Err(InvalidHeader::Negative)
        );
        assert_eq!(
            parse_absolute(b"18446744073709551615", now, skew).map(|d| d > Duration::ZERO),
            Ok(true),
            "the far future is fine; the server maximum caps it"
        );
    }

    #[test]
    fn headers_are_read_only_when_present() {
        let mut headers = HeaderMap::new();
        assert_eq!(DeadlineHeader::GrpcTimeout.read(&headers), None);
        headers.insert(GRPC_TIMEOUT, "2S".parse().unwrap());
        headers.insert(TIMEOUT_MS_HEADER, "garbage".parse().unwrap());
        headers.insert(ENVOY_TIMEOUT_HEADER, "300".parse().unwrap());
        assert_eq!(
            DeadlineHeader::GrpcTimeout.read(&headers),
            Some(Ok(Duration::from_secs(2)))
        );
        assert_eq!(
            DeadlineHeader::timeout_ms().read(&headers),
            Some(Err(InvalidHeader::NotANumber))
        );
        assert_eq!(
            DeadlineHeader::EnvoyExpectedTimeout.read(&headers),
            Some(Ok(Duration::from_millis(300)))
        );
        let renamed = DeadlineHeader::TimeoutMs(HeaderName::from_static("x-timeout"));
        assert_eq!(renamed.read(&headers), None);
    }
}
