//! The layer's own answers: RFC 9457 problem details (`application/problem+json`).

use bytes::Bytes;
use http::header::{CONTENT_TYPE, RETRY_AFTER};
use http::{HeaderValue, Response, StatusCode};

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

    /// The response: status, `application/problem+json`, and `Retry-After: 1` where a
    /// retry with the same key can succeed (409 in progress, 503).
    pub(crate) fn response<B>(self) -> Response<ResponseBody<B>> {
        let (status, anchor, title, detail) = self.parts();
        let body = format!(
            r#"{{"type":"{DOCS}#{anchor}","title":"{title}","status":{},"detail":"{detail}"}}"#,
            status.as_u16()
        );
        let mut response = Response::new(ResponseBody::full(Bytes::from(body), None));
        *response.status_mut() = status;
        let headers = response.headers_mut();
        headers.insert(
            CONTENT_TYPE,
            HeaderValue::from_static("application/problem+json"),
        );
        if matches!(self, Problem::InProgress | Problem::StoreUnavailable) {
            headers.insert(RETRY_AFTER, HeaderValue::from_static("1"));
        }
        response
    }
}
