//! gRPC status codes and the header names of the gRPC wire protocol.

use std::fmt;

/// The `grpc-status` header (or trailer).
pub const GRPC_STATUS: &str = "grpc-status";
/// The `grpc-message` header (or trailer), percent-encoded.
pub const GRPC_MESSAGE: &str = "grpc-message";
/// The server's pushback: how many milliseconds the client should wait before retrying.
/// A negative value means "do not retry".
pub const GRPC_RETRY_PUSHBACK_MS: &str = "grpc-retry-pushback-ms";

/// A gRPC status code, as defined by the gRPC protocol.
///
/// ```
/// use tower_bulwark_core::GrpcCode;
///
/// assert_eq!(GrpcCode::parse(b"14"), Some(GrpcCode::Unavailable));
/// assert_eq!(GrpcCode::parse(b"banana"), None);
/// assert_eq!(GrpcCode::Unavailable.as_i32(), 14);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[allow(missing_docs)] // the variants are the protocol's own names
pub enum GrpcCode {
    Ok = 0,
    Cancelled = 1,
    Unknown = 2,
    InvalidArgument = 3,
    DeadlineExceeded = 4,
    NotFound = 5,
    AlreadyExists = 6,
    PermissionDenied = 7,
    ResourceExhausted = 8,
    FailedPrecondition = 9,
    Aborted = 10,
    OutOfRange = 11,
    Unimplemented = 12,
    Internal = 13,
    Unavailable = 14,
    DataLoss = 15,
    Unauthenticated = 16,
}

impl GrpcCode {
    const ALL: [GrpcCode; 17] = [
        GrpcCode::Ok,
        GrpcCode::Cancelled,
        GrpcCode::Unknown,
        GrpcCode::InvalidArgument,
        GrpcCode::DeadlineExceeded,
        GrpcCode::NotFound,
        GrpcCode::AlreadyExists,
        GrpcCode::PermissionDenied,
        GrpcCode::ResourceExhausted,
        GrpcCode::FailedPrecondition,
        GrpcCode::Aborted,
        GrpcCode::OutOfRange,
        GrpcCode::Unimplemented,
        GrpcCode::Internal,
        GrpcCode::Unavailable,
        GrpcCode::DataLoss,
        GrpcCode::Unauthenticated,
    ];

    /// The code with this number, if the protocol defines one.
    pub fn from_i32(code: i32) -> Option<GrpcCode> {
        usize::try_from(code)
            .ok()
            .and_then(|i| Self::ALL.get(i).copied())
    }

    /// The code's number on the wire.
    pub fn as_i32(self) -> i32 {
        self as i32
    }

    /// Parses a `grpc-status` value: ASCII decimal digits naming a defined code.
    ///
    /// Anything else (empty, signs, spaces, unknown numbers, overlong input) is `None`; it
    /// never panics.
    pub fn parse(value: &[u8]) -> Option<GrpcCode> {
        if value.is_empty() || value.len() > 2 || !value.iter().all(u8::is_ascii_digit) {
            return None;
        }
        let number = value
            .iter()
            .fold(0i32, |n, digit| n * 10 + i32::from(digit - b'0'));
        Self::from_i32(number)
    }

    /// The code's number as header text (`"14"`), without allocating.
    pub fn as_header_str(self) -> &'static str {
        const TEXT: [&str; 17] = [
            "0", "1", "2", "3", "4", "5", "6", "7", "8", "9", "10", "11", "12", "13", "14", "15",
            "16",
        ];
        TEXT[self as usize]
    }

    /// The code a gRPC client infers from an HTTP status when no `grpc-status` came back
    /// (gRPC's "HTTP to gRPC status code mapping").
    #[cfg(feature = "http")]
    pub fn from_http_status(status: http::StatusCode) -> GrpcCode {
        match status.as_u16() {
            200 => GrpcCode::Ok,
            400 => GrpcCode::Internal,
            401 => GrpcCode::Unauthenticated,
            403 => GrpcCode::PermissionDenied,
            404 => GrpcCode::Unimplemented,
            429 | 502 | 503 | 504 => GrpcCode::Unavailable,
            _ => GrpcCode::Unknown,
        }
    }
}

impl fmt::Display for GrpcCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn every_code_round_trips_through_its_number_and_text() {
        for code in GrpcCode::ALL {
            assert_eq!(GrpcCode::from_i32(code.as_i32()), Some(code));
            assert_eq!(GrpcCode::parse(code.as_header_str().as_bytes()), Some(code));
        }
    }

    #[test]
    fn malformed_values_are_rejected() {
        for bad in [
            &b""[..],
            b"17",
            b"-1",
            b"+4",
            b" 4",
            b"4 ",
            b"04x",
            b"999",
            b"0x0e",
            b"\xff",
        ] {
            assert_eq!(GrpcCode::parse(bad), None, "{bad:?}");
        }
        assert_eq!(GrpcCode::parse(b"04"), Some(GrpcCode::DeadlineExceeded));
        assert_eq!(GrpcCode::from_i32(-1), None);
        assert_eq!(GrpcCode::from_i32(i32::MAX), None);
    }

    proptest! {
        #[test]
        fn every_code_parses_with_or_without_a_leading_zero(code in 0i32..=16, zero in any::<bool>()) {
            let text = if zero && code < 10 { format!("0{code}") } else { code.to_string() };
            prop_assert_eq!(GrpcCode::parse(text.as_bytes()).map(GrpcCode::as_i32), Some(code));
        }

        #[test]
        fn parse_never_panics_and_accepts_only_defined_codes(bytes in proptest::collection::vec(any::<u8>(), 0..12)) {
            if let Some(code) = GrpcCode::parse(&bytes) {
                let text = std::str::from_utf8(&bytes).unwrap();
                prop_assert_eq!(text.parse::<i32>().unwrap(), code.as_i32());
            }
        }
    }
}
