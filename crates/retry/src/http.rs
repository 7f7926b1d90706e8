//! HTTP and gRPC retry rules (feature `http`).

mod grpc;

use std::time::Duration;

use http::{Request, Response, StatusCode};
use tower_bulwark_core::repeat::{is_idempotent, never_sent};
use tower_bulwark_core::{is_shed_for_overload, Deadline};

pub use self::grpc::GrpcRetry;
use crate::decide::retry_error;
use crate::{pushback, Decision, Pushback, RetryClassify};

/// The request header that makes a non-idempotent request safe to retry.
pub use tower_bulwark_core::repeat::IDEMPOTENCY_KEY;

/// The request header that numbers retried attempts (2 for the first retry), when
/// [`HttpRetry::attempt_header`] is on.
pub const ATTEMPT_HEADER: &str = "x-request-attempt";

/// The rules HTTP clients follow.
///
/// - Only requests that are safe to repeat are retried: idempotent methods (`GET`, `HEAD`,
///   `OPTIONS`, `PUT`, `DELETE`, `TRACE`), or any request carrying an `Idempotency-Key`
///   header ([`HttpRetry::any_method`] lifts this). Other requests are retried only when
///   they provably never reached the server (a connection refused: see
///   [`never_sent`](tower_bulwark_core::repeat::never_sent)), as `GrpcRetry` and
///   `BackupLayer` do.
/// - Retried: transport errors (`Err`: connection refused or reset, timeouts, a bulwark
///   layer's own attempt timeout), and 408, 429,
///   502, 503 and 504, honouring the response's `Retry-After` (or
///   `grpc-retry-pushback-ms`) as [`pushback`](crate::pushback()) reads it: a wait beyond
///   the policy's maximum (an overflowing `Retry-After` included) means no retry, a
///   malformed `Retry-After` is ignored, and a negative or unparseable
///   `grpc-retry-pushback-ms` means no retry.
/// - Never retried: refusals by bulwark layers below (an `Err` carrying a core `Rejection`
///   whose kind is not [retryable](tower_bulwark_core::RejectionKind::is_retryable): an open
///   breaker, a full bulkhead, a passed deadline), any other status, other 4xx included,
///   and responses marked as shed for
///   overload ([`OVERLOADED_HEADER`](tower_bulwark_core::OVERLOADED_HEADER) or Envoy's
///   `x-envoy-overloaded`): the server refused because it is overloaded, and retrying at
///   every hop of a call chain would multiply its load.
/// - The `Deadline` in the request's extensions is honoured like the task's current one.
///
/// ```
/// use http::{Request, Response};
/// use tower_bulwark_retry::{Decision, HttpRetry, RetryClassify};
///
/// let get = Request::get("/").body(()).unwrap();
/// let post = Request::post("/").body(()).unwrap();
/// let busy: Result<Response<()>, ()> = Ok(Response::builder().status(503).body(()).unwrap());
/// assert!(matches!(HttpRetry::default().decide(&get, &busy), Decision::Retry { .. }));
/// assert_eq!(HttpRetry::default().decide(&post, &busy), Decision::Done);
/// ```
#[derive(Debug, Clone, Copy, Default)]
pub struct HttpRetry {
    any_method: bool,
    attempt_header: bool,
}

impl HttpRetry {
    /// Also retries non-idempotent requests (`POST`, `PATCH`) without an `Idempotency-Key`:
    /// only for services known to deduplicate.
    pub fn any_method(mut self) -> Self {
        self.any_method = true;
        self
    }

    /// Numbers retried attempts in the `x-request-attempt` header, so the server can tell a
    /// retry from a first try.
    pub fn attempt_header(mut self) -> Self {
        self.attempt_header = true;
        self
    }

    fn repeatable<B>(&self, request: &Request<B>) -> bool {
        self.any_method || is_idempotent(request)
    }
}

impl<ReqB, ResB, E: 'static> RetryClassify<Request<ReqB>, Response<ResB>, E> for HttpRetry {
    fn decide(&self, request: &Request<ReqB>, result: &Result<Response<ResB>, E>) -> Decision {
        if !self.repeatable(request) {
            return match result {
                Err(error) if never_sent(error) => retry_error(error),
                _ => Decision::Done,
            };
        }
        match result {
            Err(error) => retry_error(error),
            Ok(response) => match response.status() {
                StatusCode::REQUEST_TIMEOUT
                | StatusCode::TOO_MANY_REQUESTS
                | StatusCode::BAD_GATEWAY
                | StatusCode::SERVICE_UNAVAILABLE
                | StatusCode::GATEWAY_TIMEOUT => with_pushback(response),
                _ => Decision::Done,
            },
        }
    }

    fn request_deadline(&self, request: &Request<ReqB>) -> Option<Deadline> {
        request.extensions().get::<Deadline>().copied()
    }

    fn prepare_retry(&self, request: &mut Request<ReqB>, attempt: u32) {
        if self.attempt_header {
            request
                .headers_mut()
                .insert(ATTEMPT_HEADER, http::HeaderValue::from(attempt));
        }
    }
}

/// A retry that waits what the response asks, if anything; no retry if it says never or
/// marks itself as shed for overload. The policy applies its own maximum wait, so the cap
/// here only needs to be "any".
fn with_pushback<B>(response: &Response<B>) -> Decision {
    if is_shed_for_overload(response.headers()) {
        return Decision::Done;
    }
    match pushback(response.headers(), Duration::MAX) {
        Pushback::Never => Decision::Done,
        Pushback::After(wait) => Decision::Retry {
            pushback: Some(wait),
        },
        Pushback::None => Decision::Retry { pushback: None },
    }
}

#[cfg(all(test, not(bulwark_loom)))]
mod tests {
    use super::*;

    fn response(status: u16, headers: &[(&str, &str)]) -> Result<Response<()>, ()> {
        let mut builder = Response::builder().status(status);
        for (name, value) in headers {
            builder = builder.header(*name, *value);
        }
        Ok(builder.body(()).unwrap())
    }

    fn request(method: &str, key: bool) -> Request<()> {
        let mut builder = Request::builder().method(method).uri("/");
        if key {
            builder = builder.header(IDEMPOTENCY_KEY, "k-1");
        }
        builder.body(()).unwrap()
    }

    #[test]
    fn http_statuses() {
        let get = request("GET", false);
        for status in [408, 429, 502, 503, 504] {
            assert!(
                matches!(
                    HttpRetry::default().decide(&get, &response(status, &[])),
                    Decision::Retry { .. }
                ),
                "{status}"
            );
        }
        for status in [200, 201, 301, 400, 401, 403, 404, 409, 422, 500, 501] {
            assert_eq!(
                HttpRetry::default().decide(&get, &response(status, &[])),
                Decision::Done,
                "{status}"
            );
        }
        assert_eq!(
            HttpRetry::default().decide(&get, &Err::<Response<()>, ()>(())),
            Decision::Retry { pushback: None }
        );
    }

    #[test]
    fn idempotency_rules() {
        let busy = response(503, &[]);
        for method in ["GET", "HEAD", "OPTIONS", "PUT", "DELETE", "TRACE"] {
            assert_ne!(
                HttpRetry::default().decide(&request(method, false), &busy),
                Decision::Done,
                "{method}"
            );
        }
        for method in ["POST", "PATCH"] {
            assert_eq!(
                HttpRetry::default().decide(&request(method, false), &busy),
                Decision::Done,
                "{method}"
            );
            assert_ne!(
                HttpRetry::default().decide(&request(method, true), &busy),
                Decision::Done,
                "{method} with a key"
            );
            assert_ne!(
                HttpRetry::default()
                    .any_method()
                    .decide(&request(method, false), &busy),
                Decision::Done
            );
        }
    }

    #[test]
    fn pushback_is_passed_on() {
        let get = request("GET", false);
        assert_eq!(
            HttpRetry::default().decide(&get, &response(429, &[("retry-after", "7")])),
            Decision::Retry {
                pushback: Some(Duration::from_secs(7))
            }
        );
        assert_eq!(
            HttpRetry::default().decide(&get, &response(503, &[("retry-after", "garbage")])),
            Decision::Retry { pushback: None }
        );
        // An overflowing delay is the longest wait (the policy's maximum then says no), not
        // "retry soon".
        assert_eq!(
            HttpRetry::default().decide(
                &get,
                &response(503, &[("retry-after", "99999999999999999999999")])
            ),
            Decision::Retry {
                pushback: Some(Duration::from_secs(u64::MAX))
            }
        );
    }

    #[test]
    fn a_shed_for_overload_is_not_retried() {
        let get = request("GET", false);
        for marker in ["x-bulwark-overloaded", "x-envoy-overloaded"] {
            for status in [503, 429] {
                assert_eq!(
                    HttpRetry::default().decide(&get, &response(status, &[(marker, "true")])),
                    Decision::Done,
                    "{status} {marker}"
                );
            }
        }
        // A shed response as our own rejection writes it.
        let shed = tower_bulwark_core::Rejection::new(
            tower_bulwark_core::RejectionKind::Overloaded,
            "server",
        );
        assert_eq!(
            HttpRetry::default().decide(&get, &Ok::<_, ()>(shed.to_http_response::<()>())),
            Decision::Done
        );
        // An open circuit on the server is not a shed: the call may go elsewhere next time.
        let open = tower_bulwark_core::Rejection::new(
            tower_bulwark_core::RejectionKind::CircuitOpen,
            "server",
        );
        assert_ne!(
            HttpRetry::default().decide(&get, &Ok::<_, ()>(open.to_http_response::<()>())),
            Decision::Done
        );
    }

    #[test]
    fn refusals_by_layers_below_are_not_retried() {
        use tower_bulwark_core::{BoxError, Rejection, RejectionKind};
        let get = request("GET", false);
        let refused: Result<Response<()>, BoxError> =
            Err(Rejection::new(RejectionKind::BulkheadFull, "db").into());
        assert_eq!(HttpRetry::default().decide(&get, &refused), Decision::Done);
        let reset: Result<Response<()>, BoxError> = Err("connection reset".into());
        assert_eq!(
            HttpRetry::default().decide(&get, &reset),
            Decision::Retry { pushback: None }
        );
        let slow: Result<Response<()>, BoxError> =
            Err(Rejection::new(RejectionKind::TimedOut, "timeout").into());
        assert_eq!(
            HttpRetry::default().decide(&get, &slow),
            Decision::Retry { pushback: None }
        );
        let post = request("POST", false);
        assert_eq!(
            HttpRetry::default().decide(&post, &slow),
            Decision::Done,
            "not a request safe to repeat"
        );
    }

    #[test]
    fn the_attempt_header_numbers_retries_only_when_asked() {
        fn prepare(retry: HttpRetry, request: &mut Request<()>, attempt: u32) {
            RetryClassify::<Request<()>, Response<()>, ()>::prepare_retry(&retry, request, attempt);
        }
        let mut request = request("GET", false);
        prepare(HttpRetry::default(), &mut request, 2);
        assert!(request.headers().get(ATTEMPT_HEADER).is_none());
        prepare(HttpRetry::default().attempt_header(), &mut request, 3);
        assert_eq!(request.headers()[ATTEMPT_HEADER], "3");
    }

    #[test]
    fn the_request_deadline_comes_from_extensions() {
        let mut get = request("GET", false);
        let retry = HttpRetry::default();
        let of = |r: &Request<()>| {
            RetryClassify::<Request<()>, Response<()>, ()>::request_deadline(&retry, r)
        };
        assert_eq!(of(&get), None);
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap();
        let deadline = rt.block_on(async { Deadline::after(Duration::from_secs(1)) });
        get.extensions_mut().insert(deadline);
        assert_eq!(of(&get), Some(deadline));
    }
}
