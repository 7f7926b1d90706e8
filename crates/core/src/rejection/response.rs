//! Turning a [`Rejection`] into an HTTP or gRPC response.

use std::borrow::Cow;
use std::time::Duration;

use http::header::{HeaderMap, HeaderValue, CONTENT_TYPE, RETRY_AFTER};
use http::{Response, StatusCode};

use super::shed::mark_shed;
use super::Rejection;
use crate::grpc::{GrpcCode, GRPC_MESSAGE, GRPC_RETRY_PUSHBACK_MS, GRPC_STATUS};

/// The largest pushback written to `grpc-retry-pushback-ms`, which gRPC reads as a 32-bit
/// integer (about 24.8 days).
const MAX_PUSHBACK_MS: u128 = i32::MAX as u128;

/// gRPC's "do not retry": any negative `grpc-retry-pushback-ms` (gRFC A6).
const NO_RETRY_PUSHBACK: &str = "-1";

/// The largest `Retry-After` written, in seconds (about 68 years), so clients that read it
/// into 32 bits do not overflow.
const MAX_RETRY_AFTER_SECS: u64 = i32::MAX as u64;

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
/// headers.insert("content-type", "application/grpcfoo".parse().unwrap());
/// assert!(!is_grpc_request(&headers));
/// ```
pub fn is_grpc_request(headers: &HeaderMap) -> bool {
    Protocol::of(headers) != Protocol::Http
}

/// How a request wants its errors: by its `content-type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Protocol {
    Http,
    Grpc,
    GrpcWeb,
    GrpcWebText,
}

impl Protocol {
    pub(crate) fn of(headers: &HeaderMap) -> Protocol {
        let Some(value) = headers.get(CONTENT_TYPE) else {
            return Protocol::Http;
        };
        let value = value.as_bytes();
        let prefix = b"application/grpc";
        if value.len() < prefix.len() || !value[..prefix.len()].eq_ignore_ascii_case(prefix) {
            return Protocol::Http;
        }
        // What may follow: nothing, a `+codec`, parameters, or the grpc-web variants.
        let rest = &value[prefix.len()..];
        let starts =
            |with: &[u8]| rest.len() >= with.len() && rest[..with.len()].eq_ignore_ascii_case(with);
        if starts(b"-web-text") {
            Protocol::GrpcWebText
        } else if starts(b"-web") {
            Protocol::GrpcWeb
        } else if rest.is_empty() || rest[0] == b'+' || rest[0] == b';' {
            Protocol::Grpc
        } else {
            Protocol::Http
        }
    }

    /// The content type of an error response in this protocol; `None` for plain HTTP.
    pub(crate) fn grpc_content_type(self) -> Option<&'static str> {
        match self {
            Protocol::Http => None,
            Protocol::Grpc => Some("application/grpc"),
            Protocol::GrpcWeb => Some("application/grpc-web"),
            Protocol::GrpcWebText => Some("application/grpc-web-text"),
        }
    }
}

impl Rejection {
    /// The rejection a response answers, if a layer in this process made the response from
    /// one: [`HandleRejectionsLayer`](crate::HandleRejectionsLayer) and the layers that
    /// answer their refusals themselves (a rate limit's 429) leave it in the response's
    /// extensions. A response that came over the wire has none. The classifiers read a
    /// response that carries one as its kind says, as they read the same rejection in an
    /// error: a refusal made here says nothing about the dependency.
    ///
    /// ```
    /// use tower_bulwark_core::{Rejection, RejectionKind};
    ///
    /// let rejection = Rejection::new(RejectionKind::Throttled, "ratelimit");
    /// let mut response: http::Response<()> = rejection.to_http_response();
    /// assert_eq!(Rejection::in_response(&response), None, "made, not yet left");
    /// response.extensions_mut().insert(rejection.clone());
    /// assert_eq!(Rejection::in_response(&response), Some(&rejection));
    /// ```
    pub fn in_response<B>(response: &Response<B>) -> Option<&Rejection> {
        response.extensions().get::<Rejection>()
    }

    /// The HTTP status this rejection is reported as (see [`RejectionKind`](super::RejectionKind)).
    pub fn http_status(&self) -> StatusCode {
        self.kind.http_status()
    }

    /// The gRPC code this rejection is reported as (see [`RejectionKind`](super::RejectionKind)).
    pub fn grpc_code(&self) -> GrpcCode {
        self.kind.grpc_code()
    }

    /// An HTTP response for this rejection: 503, 429 or 504 by kind, with `Retry-After` in
    /// whole seconds (rounded up, so clients never come back early; capped at `i32::MAX`)
    /// when the layer gave a wait, and the [`OVERLOADED_HEADER`](crate::OVERLOADED_HEADER)
    /// marker when the server shed the call ([`RejectionKind::is_shed`](super::RejectionKind::is_shed)). The body is `B::default()` (empty for axum's and hyper's
    /// bodies). A layer that answers with it in this process also puts the rejection in
    /// the response's extensions (see [`in_response`](Self::in_response)), so that the
    /// layers above read it as a refusal, not as the dependency's answer.
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
        if self.kind.is_shed() {
            mark_shed(response.headers_mut());
        }
        if self.kind == super::RejectionKind::Draining {
            // The client should take its next request elsewhere. (HTTP/1 only: HTTP/2
            // forbids the header, and gRPC rejections take the other path.)
            response
                .headers_mut()
                .insert(http::header::CONNECTION, HeaderValue::from_static("close"));
        }
        response
    }

    /// A gRPC *trailers-only* response for this rejection: HTTP 200 with `grpc-status`
    /// (`UNAVAILABLE`, `RESOURCE_EXHAUSTED` or `DEADLINE_EXCEEDED` by kind), `grpc-message`
    /// (the kind and reason, such as `bulkhead full (queue full)`; the layer's name stays
    /// on the server, like the text of other errors) and `grpc-retry-pushback-ms`:
    ///
    /// - for a shed ([`RejectionKind::is_shed`](super::RejectionKind::is_shed): overloaded,
    ///   bulkhead full), `-1`, gRPC's "do not retry" (gRFC A6), with the
    ///   [`OVERLOADED_HEADER`](crate::OVERLOADED_HEADER) marker as on HTTP. Standard gRPC
    ///   clients with a `retryPolicy` know nothing of the marker and would retry every shed
    ///   call up to their attempt limit, at every hop: pushback is the tool gRFC A6 gives a
    ///   server to stop that. An overloaded server is better served by a client that goes
    ///   elsewhere or fails than by one that comes back after a wait.
    ///   [`HandleRejectionsLayer::allow_grpc_shed_retries`](crate::HandleRejectionsLayer::allow_grpc_shed_retries)
    ///   sends the layer's wait instead, as for other kinds.
    /// - otherwise, when the layer gave a wait, that wait (rounded up, capped at `i32::MAX`).
    ///
    /// As for [`to_http_response`](Self::to_http_response), a layer answering with it in
    /// this process puts the rejection in the response's extensions too.
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
    ///
    /// let shed: http::Response<()> = Rejection::new(RejectionKind::Overloaded, "server")
    ///     .with_retry_after(Duration::from_millis(250))
    ///     .to_grpc_response();
    /// assert_eq!(shed.headers()["grpc-status"], "8");
    /// assert_eq!(shed.headers()["grpc-retry-pushback-ms"], "-1");
    /// ```
    pub fn to_grpc_response<B: Default>(&self) -> Response<B> {
        self.to_response_for(Protocol::Grpc, ShedRetries::Refused)
    }

    /// The response for a request of `protocol`.
    pub(crate) fn to_response_for<B: Default>(
        &self,
        protocol: Protocol,
        sheds: ShedRetries,
    ) -> Response<B> {
        let Some(content_type) = protocol.grpc_content_type() else {
            return self.to_http_response();
        };
        let mut response = grpc_error_response(
            self.grpc_code(),
            &percent_encode(&self.grpc_message()),
            content_type,
        );
        self.write_grpc_metadata(response.headers_mut(), sheds);
        response
    }

    /// The text of a gRPC answer: the kind, and the reason when it adds something
    /// (`bulkhead full (queue full)`, `timed out`). Never the layer's name.
    pub(crate) fn grpc_message(&self) -> Cow<'static, str> {
        match self.reason {
            Some(reason) if reason != self.kind.as_str() => {
                Cow::Owned(format!("{} ({reason})", self.kind))
            }
            _ => Cow::Borrowed(self.kind.as_str()),
        }
    }

    /// The metadata of a gRPC answer, besides status and message: the pushback and, for
    /// sheds, the overload marker (see [`to_grpc_response`](Self::to_grpc_response)).
    pub(crate) fn write_grpc_metadata(&self, headers: &mut HeaderMap, sheds: ShedRetries) {
        if self.kind.is_shed() {
            mark_shed(headers);
            if sheds == ShedRetries::Refused {
                headers.insert(
                    GRPC_RETRY_PUSHBACK_MS,
                    HeaderValue::from_static(NO_RETRY_PUSHBACK),
                );
                return;
            }
        }
        if let Some(wait) = self.retry_after {
            headers.insert(
                GRPC_RETRY_PUSHBACK_MS,
                HeaderValue::from(pushback_millis(wait)),
            );
        }
    }
}

/// Whether gRPC answers to sheds tell clients not to retry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) enum ShedRetries {
    /// `grpc-retry-pushback-ms: -1` (the default).
    #[default]
    Refused,
    /// The layer's wait, if it gave one, as for other kinds.
    Allowed,
}

/// A trailers-only gRPC response with `code` and an already percent-encoded message.
pub(crate) fn grpc_error_response<B: Default>(
    code: GrpcCode,
    message: &str,
    content_type: &'static str,
) -> Response<B> {
    let mut response = Response::new(B::default());
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(GRPC_STATUS, HeaderValue::from_static(code.as_header_str()));
    // Percent-encoding leaves only visible ASCII, which is always a valid header value.
    if let Ok(message) = HeaderValue::from_str(message) {
        headers.insert(GRPC_MESSAGE, message);
    }
    response
}

pub(crate) fn retry_after_seconds(wait: Duration) -> u64 {
    wait.as_secs()
        .saturating_add(u64::from(wait.subsec_nanos() > 0))
        .min(MAX_RETRY_AFTER_SECS)
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
            (RejectionKind::TimedOut, 504),
            (RejectionKind::InvalidRequest, 400),
            (RejectionKind::Draining, 503),
        ];
        for (kind, status) in cases {
            let response: Response<()> = Rejection::new(kind, "x").to_http_response();
            assert_eq!(response.status(), status, "{kind:?}");
            assert!(response.headers().get(RETRY_AFTER).is_none());
            assert_eq!(
                crate::is_shed_for_overload(response.headers()),
                kind.is_shed(),
                "{kind:?}"
            );
            let grpc: Response<()> = Rejection::new(kind, "x").to_grpc_response();
            assert_eq!(
                crate::is_shed_for_overload(grpc.headers()),
                kind.is_shed(),
                "{kind:?}"
            );
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
            (Duration::MAX, "2147483647"),
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
        assert_eq!(headers[GRPC_MESSAGE], "deadline exceeded");
        assert_eq!(headers[GRPC_RETRY_PUSHBACK_MS], "2");
    }

    #[test]
    fn sheds_tell_grpc_clients_not_to_retry_unless_allowed() {
        let pushback = |kind, wait: Option<u64>, sheds| {
            let mut rejection = Rejection::new(kind, "x");
            if let Some(ms) = wait {
                rejection = rejection.with_retry_after(Duration::from_millis(ms));
            }
            let response: Response<()> = rejection.to_response_for(Protocol::Grpc, sheds);
            let header = response.headers().get(GRPC_RETRY_PUSHBACK_MS);
            header.map(|v| v.to_str().unwrap().to_string())
        };
        for kind in [RejectionKind::Overloaded, RejectionKind::BulkheadFull] {
            for wait in [None, Some(0), Some(250)] {
                let refused = pushback(kind, wait, ShedRetries::Refused);
                assert_eq!(refused.as_deref(), Some("-1"), "{kind:?} {wait:?}");
                let allowed = pushback(kind, wait, ShedRetries::Allowed);
                let expected = wait.map(|ms| ms.to_string());
                assert_eq!(allowed, expected, "{kind:?} {wait:?}");
            }
            // The public default refuses; HTTP keeps the wait in `Retry-After`.
            let rejection = Rejection::new(kind, "x").with_retry_after(Duration::from_secs(2));
            let grpc: Response<()> = rejection.to_grpc_response();
            assert_eq!(grpc.headers()[GRPC_RETRY_PUSHBACK_MS], "-1");
            assert!(crate::is_shed_for_overload(grpc.headers()));
            let http: Response<()> = rejection.to_http_response();
            assert_eq!(http.headers()[RETRY_AFTER], "2");
            assert!(http.headers().get(GRPC_RETRY_PUSHBACK_MS).is_none());
        }
        // Other kinds are not sheds: their wait, or nothing, whatever the setting.
        for kind in [
            RejectionKind::CircuitOpen,
            RejectionKind::Throttled,
            RejectionKind::Draining,
            RejectionKind::TimedOut,
        ] {
            for sheds in [ShedRetries::Refused, ShedRetries::Allowed] {
                assert_eq!(pushback(kind, Some(250), sheds).as_deref(), Some("250"));
                assert_eq!(pushback(kind, None, sheds), None, "{kind:?}");
            }
        }
    }

    #[test]
    fn a_reason_that_repeats_the_kind_is_not_repeated() {
        let message = |rejection: Rejection| {
            let response: Response<()> = rejection.to_grpc_response();
            response.headers()[GRPC_MESSAGE]
                .to_str()
                .unwrap()
                .to_string()
        };
        let timed_out = Rejection::new(RejectionKind::TimedOut, "t").with_reason("timed out");
        assert_eq!(message(timed_out), "timed out");
        let full = Rejection::new(RejectionKind::BulkheadFull, "b").with_reason("queue full");
        assert_eq!(message(full), "bulkhead full (queue full)");
    }

    #[test]
    fn pushback_is_capped_at_i32_max() {
        assert_eq!(pushback_millis(Duration::MAX), i32::MAX as u32);
        assert_eq!(pushback_millis(Duration::ZERO), 0);
        assert_eq!(pushback_millis(Duration::from_nanos(1)), 1);
    }

    #[test]
    fn grpc_message_names_the_kind_and_reason_not_the_layer() {
        let response: Response<()> = Rejection::new(RejectionKind::BulkheadFull, "payments-db")
            .with_reason("queue full")
            .to_grpc_response();
        assert_eq!(
            response.headers()[GRPC_MESSAGE],
            "bulkhead full (queue full)"
        );
    }

    #[test]
    fn percent_encoding_covers_non_ascii_percent_and_controls() {
        assert_eq!(percent_encode("naïve 100%\nok"), "na%C3%AFve 100%25%0Aok");
    }

    #[test]
    fn protocols_by_content_type() {
        let of = |value: &str| {
            let mut headers = HeaderMap::new();
            headers.insert(CONTENT_TYPE, HeaderValue::from_str(value).unwrap());
            Protocol::of(&headers)
        };
        assert_eq!(of("application/grpc"), Protocol::Grpc);
        assert_eq!(of("application/grpc+proto"), Protocol::Grpc);
        assert_eq!(of("Application/GRPC;charset=utf-8"), Protocol::Grpc);
        assert_eq!(of("application/grpc-web"), Protocol::GrpcWeb);
        assert_eq!(of("application/grpc-web+proto"), Protocol::GrpcWeb);
        assert_eq!(of("application/grpc-web-text+proto"), Protocol::GrpcWebText);
        assert_eq!(of("application/grpcfoo"), Protocol::Http);
        assert_eq!(of("application/json"), Protocol::Http);
        assert_eq!(of("application/grp"), Protocol::Http);
        assert_eq!(Protocol::of(&HeaderMap::new()), Protocol::Http);
        let web: Response<()> = Rejection::new(RejectionKind::Overloaded, "x")
            .to_response_for(Protocol::GrpcWeb, ShedRetries::Refused);
        assert_eq!(web.headers()[CONTENT_TYPE], "application/grpc-web");
    }
}
