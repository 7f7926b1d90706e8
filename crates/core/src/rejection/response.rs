//! Turning a [`Rejection`] into an HTTP or gRPC response.

use std::time::Duration;

use http::header::{HeaderMap, HeaderValue, CONTENT_TYPE, RETRY_AFTER};
use http::{Response, StatusCode};

use super::Rejection;
use crate::grpc::{GrpcCode, GRPC_MESSAGE, GRPC_RETRY_PUSHBACK_MS, GRPC_STATUS};

/// The largest pushback written to `grpc-retry-pushback-ms`, which gRPC reads as a 32-bit
/// integer (about 24.8 days).
const MAX_PUSHBACK_MS: u128 = i32::MAX as u128;

/// Whether a request is a gRPC call (`content-type: application/grpc`, `application/grpc+proto`,
/// `application/grpc-web`, ...), and so wants its errors as gRPC statuses.
///
/// ```
/// use http::HeaderMap;
/// use tower_bulwark_core::is_grpc_request;
///
/// let mut headers = HeaderMap::new();
/// assert!(!is_grpc_request(&headers));
/// headers.insert("content-type", "application/grpc+proto".parse().unwrap());
/// assert!(is_grpc_request(&headers));
/// ```
pub fn is_grpc_request(headers: &HeaderMap) -> bool {
    headers
        .get(CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/grpc"))
}

impl Rejection {
    /// The HTTP status this rejection is reported as (see [`RejectionKind`](super::RejectionKind)).
    pub fn http_status(&self) -> StatusCode {
        self.kind.http_status()
    }

    /// The gRPC code this rejection is reported as (see [`RejectionKind`](super::RejectionKind)).
    pub fn grpc_code(&self) -> GrpcCode {
        self.kind.grpc_code()
    }

    /// An HTTP response for this rejection: 503, 429 or 504 by kind, with `Retry-After` in
    /// whole seconds (rounded up, so clients never come back early) when the layer gave a
    /// wait. The body is `B::default()` (empty for axum's and hyper's bodies).
    ///
    /// ```
    /// use std::time::Duration;
    /// use tower_bulwark_core::{Rejection, RejectionKind};
    ///
    /// let response: http::Response<String> = Rejection::new(RejectionKind::Overloaded, "shed")
    ///     .with_retry_after(Duration::from_millis(2100))
    ///     .to_http_response();
    /// assert_eq!(response.status(), 503);
    /// assert_eq!(response.headers()["retry-after"], "3");
    /// ```
    pub fn to_http_response<B: Default>(&self) -> Response<B> {
        let mut response = Response::new(B::default());
        *response.status_mut() = self.http_status();
        if let Some(wait) = self.retry_after {
            response
                .headers_mut()
                .insert(RETRY_AFTER, HeaderValue::from(retry_after_seconds(wait)));
        }
        response
    }

    /// A gRPC *trailers-only* response for this rejection: HTTP 200 with `grpc-status`
    /// (`UNAVAILABLE`, `RESOURCE_EXHAUSTED` or `DEADLINE_EXCEEDED` by kind), `grpc-message`
    /// (percent-encoded as the gRPC spec requires) and, when the layer gave a wait,
    /// `grpc-retry-pushback-ms` (rounded up, capped at `i32::MAX`).
    ///
    /// ```
    /// use std::time::Duration;
    /// use tower_bulwark_core::{Rejection, RejectionKind};
    ///
    /// let response: http::Response<()> = Rejection::new(RejectionKind::CircuitOpen, "users")
    ///     .with_retry_after(Duration::from_millis(250))
    ///     .to_grpc_response();
    /// assert_eq!(response.headers()["grpc-status"], "14");
    /// assert_eq!(response.headers()["grpc-retry-pushback-ms"], "250");
    /// ```
    pub fn to_grpc_response<B: Default>(&self) -> Response<B> {
        let mut response =
            grpc_error_response(self.grpc_code(), &percent_encode(&self.to_string()));
        if let Some(wait) = self.retry_after {
            response.headers_mut().insert(
                GRPC_RETRY_PUSHBACK_MS,
                HeaderValue::from(pushback_millis(wait)),
            );
        }
        response
    }
}

/// A trailers-only gRPC response with `code` and an already percent-encoded message.
pub(crate) fn grpc_error_response<B: Default>(code: GrpcCode, message: &str) -> Response<B> {
    let mut response = Response::new(B::default());
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/grpc"));
    headers.insert(GRPC_STATUS, HeaderValue::from_static(code.as_header_str()));
    // Percent-encoding leaves only visible ASCII, which is always a valid header value.
    if let Ok(message) = HeaderValue::from_str(message) {
        headers.insert(GRPC_MESSAGE, message);
    }
    response
}

fn retry_after_seconds(wait: Duration) -> u64 {
    wait.as_secs()
        .saturating_add(u64::from(wait.subsec_nanos() > 0))
}

fn pushback_millis(wait: Duration) -> u32 {
    let millis = wait.as_nanos().div_ceil(1_000_000).min(MAX_PUSHBACK_MS);
    u32::try_from(millis).unwrap_or(i32::MAX as u32)
}

/// Percent-encodes a `grpc-message`: every byte outside visible ASCII, and `%` itself.
fn percent_encode(message: &str) -> String {
    use std::fmt::Write;
    let mut encoded = String::with_capacity(message.len());
    for byte in message.bytes() {
        if (0x20..=0x7e).contains(&byte) && byte != b'%' {
            encoded.push(char::from(byte));
        } else {
            let _ = write!(encoded, "%{byte:02X}");
        }
    }
    encoded
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::RejectionKind;

    #[test]
    fn http_status_by_kind() {
        let cases = [
            (RejectionKind::CircuitOpen, 503),
            (RejectionKind::BulkheadFull, 503),
            (RejectionKind::Overloaded, 503),
            (RejectionKind::Throttled, 429),
            (RejectionKind::DeadlineExceeded, 504),
        ];
        for (kind, status) in cases {
            let response: Response<()> = Rejection::new(kind, "x").to_http_response();
            assert_eq!(response.status(), status, "{kind:?}");
            assert!(response.headers().get(RETRY_AFTER).is_none());
        }
    }

    #[test]
    fn retry_after_rounds_up_to_whole_seconds() {
        let cases = [
            (Duration::ZERO, "0"),
            (Duration::from_nanos(1), "1"),
            (Duration::from_secs(1), "1"),
            (Duration::from_millis(1001), "2"),
            (Duration::from_secs(300), "300"),
            (Duration::MAX, "18446744073709551615"),
        ];
        for (wait, header) in cases {
            let response: Response<()> = Rejection::new(RejectionKind::Throttled, "x")
                .with_retry_after(wait)
                .to_http_response();
            assert_eq!(response.headers()[RETRY_AFTER], header, "{wait:?}");
        }
    }

    #[test]
    fn grpc_response_is_trailers_only_with_code_message_and_pushback() {
        let response: Response<()> = Rejection::new(RejectionKind::DeadlineExceeded, "edge")
            .with_retry_after(Duration::from_micros(1500))
            .to_grpc_response();
        assert_eq!(response.status(), 200);
        let headers = response.headers();
        assert_eq!(headers[CONTENT_TYPE], "application/grpc");
        assert_eq!(headers[GRPC_STATUS], "4");
        assert_eq!(
            headers[GRPC_MESSAGE],
            "deadline exceeded, rejected by `edge`; retry after 1.5ms"
        );
        assert_eq!(headers[GRPC_RETRY_PUSHBACK_MS], "2");
    }

    #[test]
    fn pushback_is_capped_at_i32_max() {
        assert_eq!(pushback_millis(Duration::MAX), i32::MAX as u32);
        assert_eq!(pushback_millis(Duration::ZERO), 0);
        assert_eq!(pushback_millis(Duration::from_nanos(1)), 1);
    }

    #[test]
    fn grpc_message_is_percent_encoded() {
        let layer = String::from("naïve 100%\nname");
        let response: Response<()> =
            Rejection::new(RejectionKind::CircuitOpen, layer).to_grpc_response();
        assert_eq!(
            response.headers()[GRPC_MESSAGE],
            "circuit open, rejected by `na%C3%AFve 100%25%0Aname`"
        );
    }
}
