//! The `grpc-timeout` header: strict parsing and encoding, as the gRPC wire spec defines it.
//!
//! `grpc-timeout` = 1 to 8 ASCII digits, then a unit: `H` (hours), `M` (minutes), `S`
//! (seconds), `m` (milliseconds), `u` (microseconds), `n` (nanoseconds).

use std::time::Duration;

use http::HeaderValue;

use crate::InvalidHeader;

/// The largest value the 8 digits can hold.
const MAX_VALUE: u64 = 99_999_999;

/// The units, finest first, with their length in nanoseconds.
const UNITS: [(u8, u64); 6] = [
    (b'n', 1),
    (b'u', 1_000),
    (b'm', 1_000_000),
    (b'S', 1_000_000_000),
    (b'M', 60_000_000_000),
    (b'H', 3_600_000_000_000),
];

/// Parses a `grpc-timeout` value.
///
/// Anything but 1-8 ASCII digits followed by one of `H M S m u n` is an error, and so is
/// a zero timeout (the spec asks for a positive value).
///
/// ```
/// use std::time::Duration;
/// use tower_bulwark_deadline::{parse_grpc_timeout, InvalidHeader};
///
/// assert_eq!(parse_grpc_timeout(b"250m"), Ok(Duration::from_millis(250)));
/// assert_eq!(parse_grpc_timeout(b"3S"), Ok(Duration::from_secs(3)));
/// assert_eq!(parse_grpc_timeout(b"123456789S"), Err(InvalidHeader::TooLong));
/// assert_eq!(parse_grpc_timeout(b"10s"), Err(InvalidHeader::NotANumber));
/// ```
pub fn parse_grpc_timeout(value: &[u8]) -> Result<Duration, InvalidHeader> {
    let Some((&unit, digits)) = value.split_last() else {
        return Err(InvalidHeader::Empty);
    };
    let Some(&(_, unit_nanos)) = UNITS.iter().find(|(symbol, _)| *symbol == unit) else {
        return Err(InvalidHeader::NotANumber);
    };
    if digits.len() > 8 {
        return Err(InvalidHeader::TooLong);
    }
    let value = parse_digits(digits)?;
    if value == 0 {
        return Err(InvalidHeader::Zero);
    }
    // At most 99,999,999 hours: fits a `Duration` exactly.
    let nanos = u128::from(value) * u128::from(unit_nanos);
    Ok(Duration::new(
        u64::try_from(nanos / 1_000_000_000).unwrap_or(u64::MAX),
        (nanos % 1_000_000_000) as u32,
    ))
}

/// Encodes a timeout as `grpc-timeout`, in the finest unit whose value fits in 8 digits
/// (as tonic and grpc-go do). The value is rounded down, so the receiver never gets more
/// time than the sender has; the result is at least `1n` (the spec has no zero) and at most
/// `99999999H`.
///
/// ```
/// use std::time::Duration;
/// use tower_bulwark_deadline::encode_grpc_timeout;
///
/// assert_eq!(encode_grpc_timeout(Duration::from_millis(50)), "50000000n");
/// assert_eq!(encode_grpc_timeout(Duration::from_millis(250)), "250000u");
/// assert_eq!(encode_grpc_timeout(Duration::from_secs(30)), "30000000u");
/// assert_eq!(encode_grpc_timeout(Duration::from_secs(3600)), "3600000m");
/// ```
pub fn encode_grpc_timeout(timeout: Duration) -> HeaderValue {
    let Ok(nanos) = u64::try_from(timeout.as_nanos()) else {
        // Beyond 584 years: hours, capped at the largest value.
        return header(b'H', (timeout.as_secs() / 3600).min(MAX_VALUE));
    };
    let nanos = nanos.max(1);
    let (unit, length) = UNITS
        .iter()
        .copied()
        .find(|&(_, length)| nanos / length <= MAX_VALUE)
        .unwrap_or(UNITS[UNITS.len() - 1]);
    header(unit, (nanos / length).min(MAX_VALUE))
}

/// `value` (at most 8 digits) and `unit` as a header value.
fn header(unit: u8, value: u64) -> HeaderValue {
    let mut text = [0u8; 9];
    let len = write_digits(value, &mut text);
    text[len] = unit;
    HeaderValue::from_bytes(&text[..=len])
        .expect("digits and a unit letter are a valid header value")
}

/// Writes `value` (at most 8 digits) in ASCII at the start of `buffer`; returns its length.
fn write_digits(value: u64, buffer: &mut [u8; 9]) -> usize {
    let mut digits = [0u8; 8];
    let mut rest = value;
    let mut len = 0;
    loop {
        digits[len] = b'0' + (rest % 10) as u8;
        len += 1;
        rest /= 10;
        if rest == 0 || len == digits.len() {
            break;
        }
    }
    for (i, digit) in digits[..len].iter().rev().enumerate() {
        buffer[i] = *digit;
    }
    len
}

/// ASCII digits as a number; anything else (a sign, spaces, nothing) is an error.
pub(crate) fn parse_digits(digits: &[u8]) -> Result<u64, InvalidHeader> {
    if digits.is_empty() {
        return Err(InvalidHeader::Empty);
    }
    if digits[0] == b'-' {
        return Err(InvalidHeader::Negative);
    }
    digits.iter().try_fold(0u64, |value, &digit| {
        if !digit.is_ascii_digit() {
            return Err(InvalidHeader::NotANumber);
        }
        value
            .checked_mul(10)
            .and_then(|value| value.checked_add(u64::from(digit - b'0')))
            .ok_or(InvalidHeader::Overflow)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn every_unit() {
        let cases: [(&[u8], Duration); 7] = [
            (b"2H", Duration::from_secs(7200)),
            (b"3M", Duration::from_secs(180)),
            (b"4S", Duration::from_secs(4)),
            (b"5m", Duration::from_millis(5)),
            (b"6u", Duration::from_micros(6)),
            (b"7n", Duration::from_nanos(7)),
            (b"00000010S", Duration::from_secs(10)),
        ];
        for (value, expected) in cases {
            assert_eq!(parse_grpc_timeout(value), Ok(expected));
        }
        assert_eq!(
            parse_grpc_timeout(b"99999999H"),
            Ok(Duration::from_secs(99_999_999 * 3600))
        );
    }

    #[test]
    fn bad_values_are_errors_never_panics() {
        let cases: [(&[u8], InvalidHeader); 12] = [
            (b"", InvalidHeader::Empty),
            (b"S", InvalidHeader::Empty),
            (b"10", InvalidHeader::NotANumber),
            (b"10x", InvalidHeader::NotANumber),
            (b"1.5S", InvalidHeader::NotANumber),
            (b" 1S", InvalidHeader::NotANumber),
            (b"+1S", InvalidHeader::NotANumber),
            (b"-1S", InvalidHeader::Negative),
            (b"0S", InvalidHeader::Zero),
            (b"00000000n", InvalidHeader::Zero),
            (b"123456789n", InvalidHeader::TooLong),
            (b"99999999999999999999999S", InvalidHeader::TooLong),
        ];
        for (value, expected) in cases {
            assert_eq!(
                parse_grpc_timeout(value),
                Err(expected),
                "{:?}",
                String::from_utf8_lossy(value)
            );
        }
    }

    #[test]
    fn encoding_picks_the_finest_unit_that_fits() {
        let cases = [
            (Duration::ZERO, "1n"),
            (Duration::from_nanos(1), "1n"),
            (Duration::from_nanos(99_999_999), "99999999n"),
            (Duration::from_nanos(100_000_000), "100000u"),
            (Duration::from_nanos(100_000_999), "100000u"),
            (Duration::from_secs(100), "100000m"),
            (Duration::from_secs(100_000), "100000S"),
            (Duration::from_secs(100_000_000), "1666666M"),
            (Duration::from_secs(6_000_000_000), "1666666H"),
            (Duration::MAX, "99999999H"),
        ];
        for (timeout, expected) in cases {
            assert_eq!(encode_grpc_timeout(timeout), expected, "{timeout:?}");
        }
    }

    proptest! {
        #[test]
        fn round_trips_within_one_unit(nanos in 1u64..u64::MAX) {
            let timeout = Duration::from_nanos(nanos);
            let encoded = encode_grpc_timeout(timeout);
            let parsed = parse_grpc_timeout(encoded.as_bytes()).unwrap();
            let unit = encoded.as_bytes()[encoded.len() - 1];
            let unit_nanos = UNITS.iter().find(|(u, _)| *u == unit).unwrap().1;
            prop_assert!(parsed <= timeout, "never more time than the sender has");
            prop_assert!(timeout - parsed < Duration::from_nanos(unit_nanos));
            prop_assert!(encoded.len() <= 9);
        }

        #[test]
        fn arbitrary_bytes_never_panic(value in proptest::collection::vec(any::<u8>(), 0..16)) {
            let _ = parse_grpc_timeout(&value);
        }

        #[test]
        fn valid_values_parse(value in 1u64..=MAX_VALUE, unit in proptest::sample::select(b"HMSmun".to_vec())) {
            let text = format!("{value}{}", char::from(unit));
            prop_assert!(parse_grpc_timeout(text.as_bytes()).is_ok());
        }
    }
}
