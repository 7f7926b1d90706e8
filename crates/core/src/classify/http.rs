use super::{error_outcome, Classify, Outcome};
use crate::rejection::is_shed_response;
use crate::Rejection;

/// Classifies HTTP responses by status code.
///
/// | result | outcome |
/// |---|---|
/// | `Err(_)` carrying a bulwark [`Rejection`](crate::Rejection), or a response carrying one in its extensions (a refusal answered in this process: [`Rejection::in_response`](crate::Rejection::in_response)) | its kind's [`outcome`](crate::RejectionKind::outcome): `Failure` for an attempt timeout, `Ignored` for a refusal |
/// | any other `Err(_)` (connection refused, reset) | `Failure` |
/// | 503 or 429 marked as shed for overload ([`is_shed_for_overload`](crate::is_shed_for_overload)) | `Ignored` ([`classify_load`](Classify::classify_load): `Failure`) |
/// | other 5xx, and 429 Too Many Requests | `Failure` |
/// | other 4xx (the caller's mistake, not the server's health) | `Ignored` |
/// | 1xx, 2xx, 3xx | `Success` |
///
/// A marked shed means the dependency is alive and protecting itself: a breaker that opened
/// on it would turn a partial shed into a total outage, so breakers ignore it, while
/// throttles and adaptive limits (which read [`classify_load`](Classify::classify_load))
/// back off.
///
/// ```
/// use http::{Response, StatusCode};
/// use tower_bulwark_core::{Classify, HttpClassifier, Outcome};
///
/// let res = Response::builder().status(StatusCode::SERVICE_UNAVAILABLE).body(()).unwrap();
/// let result: Result<_, std::io::Error> = Ok(res);
/// assert_eq!(HttpClassifier.classify(&result), Outcome::Failure);
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct HttpClassifier;

impl HttpClassifier {
    /// The outcome of a response with this status (without its headers: a shed marker is
    /// not seen).
    pub fn classify_status(status: http::StatusCode) -> Outcome {
        if status.is_server_error() || status == http::StatusCode::TOO_MANY_REQUESTS {
            Outcome::Failure
        } else if status.is_client_error() {
            Outcome::Ignored
        } else {
            Outcome::Success
        }
    }

    /// The outcome of `result`, with `shed` for a marked shed.
    fn outcome<B, E: 'static>(result: &Result<http::Response<B>, E>, shed: Outcome) -> Outcome {
        let response = match result {
            Ok(response) => response,
            Err(error) => return error_outcome(error),
        };
        if let Some(rejection) = Rejection::in_response(response) {
            return rejection.kind().outcome();
        }
        match Self::classify_status(response.status()) {
            Outcome::Failure if is_shed_response(response) => shed,
            outcome => outcome,
        }
    }
}

impl<B, E: 'static> Classify<http::Response<B>, E> for HttpClassifier {
    fn classify(&self, result: &Result<http::Response<B>, E>) -> Outcome {
        Self::outcome(result, Outcome::Ignored)
    }

    fn classify_load(&self, result: &Result<http::Response<B>, E>) -> Outcome {
        Self::outcome(result, Outcome::Failure)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::{Response, StatusCode};
    use std::time::Duration;

    fn outcome(status: u16) -> Outcome {
        let response = Response::builder().status(status).body(()).unwrap();
        HttpClassifier.classify(&Ok::<_, ()>(response))
    }

    #[test]
    fn server_errors_and_429_are_failures() {
        for status in [500, 502, 503, 504, 599, 429] {
            assert_eq!(outcome(status), Outcome::Failure, "status {status}");
        }
    }

    #[test]
    fn other_client_errors_are_ignored() {
        for status in [400, 401, 403, 404, 408, 409, 422, 499] {
            assert_eq!(outcome(status), Outcome::Ignored, "status {status}");
        }
    }

    #[test]
    fn informational_success_and_redirects_are_successes() {
        for status in [100, 200, 201, 204, 301, 304, 399] {
            assert_eq!(outcome(status), Outcome::Success, "status {status}");
        }
    }

    fn marked(status: u16, name: &str, value: &str) -> Outcome {
        let response = Response::builder()
            .status(status)
            .header(name, value)
            .body(())
            .unwrap();
        HttpClassifier.classify(&Ok::<_, ()>(response))
    }

    #[test]
    fn a_shed_marked_503_or_429_is_ignored() {
        for name in ["x-bulwark-overloaded", "x-envoy-overloaded"] {
            for status in [503, 429] {
                assert_eq!(
                    marked(status, name, "true"),
                    Outcome::Ignored,
                    "{status} {name}"
                );
                let response = Response::builder()
                    .status(status)
                    .header(name, "true")
                    .body(())
                    .unwrap();
                assert_eq!(
                    HttpClassifier.classify_load(&Ok::<_, ()>(response)),
                    Outcome::Failure,
                    "load: {status} {name}"
                );
            }
            assert_eq!(
                marked(503, name, "false"),
                Outcome::Failure,
                "{name}: false"
            );
            assert_eq!(marked(500, name, "true"), Outcome::Failure, "{name}: 500");
            assert_eq!(marked(200, name, "true"), Outcome::Success, "{name}: 200");
        }
        // As our own server writes a shed, and a refusal that is not one.
        let shed: Response<()> =
            crate::Rejection::new(crate::RejectionKind::Overloaded, "s").to_http_response();
        assert_eq!(
            HttpClassifier.classify(&Ok::<_, ()>(shed)),
            Outcome::Ignored
        );
        let open: Response<()> =
            crate::Rejection::new(crate::RejectionKind::CircuitOpen, "s").to_http_response();
        assert_eq!(
            HttpClassifier.classify(&Ok::<_, ()>(open)),
            Outcome::Failure
        );
    }

    #[test]
    fn a_local_refusal_is_ignored() {
        let refused: Result<Response<()>, crate::BoxError> =
            Err(crate::Rejection::new(crate::RejectionKind::BulkheadFull, "db").into());
        assert_eq!(HttpClassifier.classify(&refused), Outcome::Ignored);
        assert_eq!(HttpClassifier.classify_load(&refused), Outcome::Ignored);
        let slow: Result<Response<()>, crate::BoxError> =
            Err(crate::Rejection::new(crate::RejectionKind::TimedOut, "t").into());
        assert_eq!(HttpClassifier.classify(&slow), Outcome::Failure);
        let late: Result<Response<()>, crate::BoxError> =
            Err(crate::Rejection::new(crate::RejectionKind::DeadlineExceeded, "t").into());
        assert_eq!(HttpClassifier.classify(&late), Outcome::Ignored);
    }

    /// Every kind, as a response made in this process (the rejection in its extensions)
    /// and as an error: the same outcome, in both views.
    #[test]
    fn a_refusal_answered_in_this_process_reads_as_its_kind() {
        use crate::{BoxError, Rejection, RejectionKind::*};
        for kind in [
            CircuitOpen,
            BulkheadFull,
            Overloaded,
            Throttled,
            DeadlineExceeded,
            TimedOut,
            InvalidRequest,
            Draining,
        ] {
            let rejection = Rejection::new(kind, "layer").with_retry_after(Duration::from_secs(1));
            let mut answered: Response<()> = rejection.to_http_response();
            answered.extensions_mut().insert(rejection.clone());
            let answered: Result<_, BoxError> = Ok(answered);
            let failed: Result<Response<()>, BoxError> = Err(rejection.into());
            for result in [&answered, &failed] {
                assert_eq!(HttpClassifier.classify(result), kind.outcome(), "{kind:?}");
                assert_eq!(
                    HttpClassifier.classify_load(result),
                    kind.outcome(),
                    "{kind:?}"
                );
            }
        }
        // The same 429 from over the wire (no extensions) is the dependency's answer.
        let remote: Response<()> = Rejection::new(Throttled, "remote").to_http_response();
        assert_eq!(
            HttpClassifier.classify(&Ok::<_, ()>(remote)),
            Outcome::Failure
        );
        // A rejection in extensions wins over the status: an attempt timeout is a failure
        // whatever status a layer gave it.
        let mut timed_out = Response::new(());
        timed_out
            .extensions_mut()
            .insert(Rejection::new(TimedOut, "timeout"));
        assert_eq!(
            HttpClassifier.classify(&Ok::<_, ()>(timed_out)),
            Outcome::Failure
        );
    }

    #[test]
    fn transport_errors_are_failures() {
        let result: Result<Response<()>, &str> = Err("connection reset");
        assert_eq!(HttpClassifier.classify(&result), Outcome::Failure);
        assert_eq!(
            HttpClassifier::classify_status(StatusCode::OK),
            Outcome::Success
        );
    }
}
