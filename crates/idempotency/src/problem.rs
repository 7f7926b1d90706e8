//! The layer's own answers: RFC 9457 problem details (`application/problem+json`).

use bytes::Bytes;
use http::header::{CONTENT_TYPE, RETRY_AFTER};
use http::{HeaderMap, HeaderValue, Response, StatusCode};
use tower_bulwark_core::grpc::{GRPC_MESSAGE, GRPC_RETRY_PUSHBACK_MS, GRPC_STATUS};
use tower_bulwark_core::{is_grpc_request, GrpcCode};

use crate::body::ResponseBody;
use crate::key::BadKey;

/// Where the problem types are described.
const DOCS: &str =
    "https://github.com/tower-bulwark/tower-bulwark/blob/main/crates/idempotency/README.md";

/// A refusal of the layer's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Problem {
    /// 400: the route requires a key.
    MissingKey,
    /// 400: the key cannot be read.
    BadKey(BadKey),
    /// 409: the first request with the key is still running.
    InProgress,
    /// 409: the first request ran, and its answer was not kept.
    Spent,
    /// 413: the body is over the limit for fingerprinting.
    BodyTooLarge,
    /// 400: the body could not be read (the client failed while sending it).
    BodyUnreadable,
    /// 422: the key was used for a different request.
    Mismatch,
    /// 503: the store failed.
    StoreUnavailable,
}

impl Problem {
    fn parts(self) -> (StatusCode, &'static str, &'static str, &'static str) {
        match self {
            Problem::MissingKey => (
                StatusCode::BAD_REQUEST,
                "missing-key",
                "Idempotency-Key required",
                "this request must carry an Idempotency-Key header",
            ),
            Problem::BadKey(why) => (
                StatusCode::BAD_REQUEST,
                "bad-key",
                "Invalid Idempotency-Key",
                why.detail(),
            ),
            Problem::InProgress => (
                StatusCode::CONFLICT,
                "in-progress",
                "Request in progress",
                "a request with this Idempotency-Key is still being processed; retry later",
            ),
            Problem::Spent => (
                StatusCode::CONFLICT,
                "answer-not-kept",
                "Idempotency-Key already used",
                "a request with this Idempotency-Key was processed, and its response was not kept; use a new key for a new request",
            ),
            Problem::BodyTooLarge => (
                StatusCode::PAYLOAD_TOO_LARGE,
                "body-too-large",
                "Request body too large",
                "the body of a request with an Idempotency-Key is over the size this server fingerprints",
            ),
            Problem::BodyUnreadable => (
                StatusCode::BAD_REQUEST,
                "body-unreadable",
                "Request body unreadable",
                "the request's body could not be read",
            ),
            Problem::Mismatch => (
                StatusCode::UNPROCESSABLE_ENTITY,
                "key-reused",
                "Idempotency-Key reused",
                "this Idempotency-Key was used for a different request (method, path or body)",
            ),
            Problem::StoreUnavailable => (
                StatusCode::SERVICE_UNAVAILABLE,
                "store-unavailable",
                "Idempotency store unavailable",
                "the server cannot check this Idempotency-Key now; retry later",
            ),
        }
    }

    /// The gRPC status a gRPC client is refused with (HTTP statuses mean nothing to it).
    fn grpc_code(self) -> GrpcCode {
        match self {
            Problem::MissingKey | Problem::BadKey(_) | Problem::BodyUnreadable => {
                GrpcCode::InvalidArgument
            }
            Problem::InProgress => GrpcCode::Aborted,
            Problem::Spent => GrpcCode::AlreadyExists,
            Problem::BodyTooLarge => GrpcCode::ResourceExhausted,
            Problem::Mismatch => GrpcCode::FailedPrecondition,
            Problem::StoreUnavailable => GrpcCode::Unavailable,
        }
    }

    /// Whether a retry with the same key can succeed a second later (409 in progress, 503).
    fn retry_soon(self) -> bool {
        matches!(self, Problem::InProgress | Problem::StoreUnavailable)
    }

    /// The response in the request's protocol: for HTTP, the status and an
    /// `application/problem+json` body, with `Retry-After: 1` where a retry with the same
    /// key can succeed; for gRPC, a trailers-only answer with its `grpc-status` and
    /// `grpc-message` (and `grpc-retry-pushback-ms: 1000` where HTTP says `Retry-After`).
    pub(crate) fn response<B>(self, protocol: &Protocol) -> Response<ResponseBody<B>> {
        let (status, anchor, title, detail) = self.parts();
        match protocol {
            Protocol::Http => {
                let body = format!(
                    r#"{{"type":"{DOCS}#{anchor}","title":"{title}","status":{},"detail":"{detail}"}}"#,
                    status.as_u16()
                );
                let mut response = Response::new(ResponseBody::full(Bytes::from(body), None));
                *response.status_mut() = status;
                response.headers_mut().insert(
                    CONTENT_TYPE,
                    HeaderValue::from_static("application/problem+json"),
                );
                if self.retry_soon() {
                    response
                        .headers_mut()
                        .insert(RETRY_AFTER, HeaderValue::from_static("1"));
                }
                response
            }
            Protocol::Grpc(content_type) => {
                let mut response = Response::new(ResponseBody::full(Bytes::new(), None));
                let headers = response.headers_mut();
                headers.insert(CONTENT_TYPE, content_type.clone());
                headers.insert(
                    GRPC_STATUS,
                    HeaderValue::from_static(self.grpc_code().as_header_str()),
                );
                // The detail texts are visible ASCII without `%`: valid as they are.
                headers.insert(GRPC_MESSAGE, HeaderValue::from_static(detail));
                if self.retry_soon() {
                    headers.insert(GRPC_RETRY_PUSHBACK_MS, HeaderValue::from_static("1000"));
                }
                response
            }
        }
    }
}

/// How a request wants to be refused.
#[derive(Debug, Clone)]
pub(crate) enum Protocol {
    /// With an HTTP status and a problem+json body.
    Http,
    /// With a gRPC status, in the request's own content type (`application/grpc`,
    /// `application/grpc-web`, ...).
    Grpc(HeaderValue),
}

impl Protocol {
    pub(crate) fn of(headers: &HeaderMap) -> Protocol {
        match headers.get(CONTENT_TYPE) {
            Some(content_type) if is_grpc_request(headers) => Protocol::Grpc(content_type.clone()),
            _ => Protocol::Http,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_detail_is_a_valid_grpc_message_and_json_string() {
        let problems = [
            Problem::MissingKey,
            Problem::BadKey(BadKey::Repeated),
            Problem::BadKey(BadKey::Empty),
            Problem::BadKey(BadKey::TooLong),
            Problem::BadKey(BadKey::Malformed),
            Problem::InProgress,
            Problem::Spent,
            Problem::BodyTooLarge,
            Problem::BodyUnreadable,
            Problem::Mismatch,
            Problem::StoreUnavailable,
        ];
        for problem in problems {
            let (_, anchor, title, detail) = problem.parts();
            for text in [anchor, title, detail] {
                assert!(
                    text.bytes()
                        .all(|b| (0x20..=0x7e).contains(&b) && !b"%\\\"".contains(&b)),
                    "{text:?} needs escaping"
                );
            }
        }
    }
}
