use super::{error_outcome, Classify, Outcome};
use crate::grpc::{GrpcCode, GRPC_RETRY_PUSHBACK_MS, GRPC_STATUS};
use crate::is_shed_for_overload;
use crate::rejection::is_shed_response;
use crate::Rejection;

/// Classifies gRPC responses by status code.
///
/// The status is read from the `grpc-status` header of a *trailers-only* response (the form
/// gRPC servers use for errors raised before any message is sent, and the form every
/// bulwark rejection takes).
///
/// | code | outcome |
/// |---|---|
/// | `OK` | `Success` |
/// | `RESOURCE_EXHAUSTED` with `grpc-retry-pushback-ms` or a shed marker (`x-bulwark-overloaded`, `x-envoy-overloaded`) | `Ignored` ([`classify_load`](Classify::classify_load): `Failure`) |
/// | `UNAVAILABLE`, `DEADLINE_EXCEEDED`, `RESOURCE_EXHAUSTED`, `INTERNAL`, `UNKNOWN`, `DATA_LOSS` | `Failure` |
/// | any other code (the caller's mistake: `INVALID_ARGUMENT`, `NOT_FOUND`, ...) | `Ignored` |
/// | `Err(_)` carrying a bulwark [`Rejection`](crate::Rejection), or a response carrying one in its extensions (a refusal answered in this process: [`Rejection::in_response`](crate::Rejection::in_response)), whatever its code | its kind's [`outcome`](crate::RejectionKind::outcome): `Failure` for an attempt timeout, `Ignored` for a refusal |
/// | any other `Err(_)` from the transport | `Failure` |
///
/// A `RESOURCE_EXHAUSTED` with pushback is the server shedding or throttling to protect
/// itself and saying when to come back: breakers ignore it (opening would turn a partial
/// shed into a total outage), throttles and adaptive limits (which read
/// [`classify_load`](Classify::classify_load)) back off. Pushback on other codes is no such
/// signal: an `UNAVAILABLE` server is unavailable.
///
/// Responses without a usable `grpc-status` header:
///
/// - **No `grpc-status`, HTTP 200**: the status comes later, in the trailers after the
///   messages, which classifying the response head cannot see. Classified as `Success`: the
///   server answered and started a normal response.
/// - **No `grpc-status`, other HTTP status** (a proxy answered, not the gRPC server): the code
///   is inferred from the HTTP status as gRPC clients do (503 -> `UNAVAILABLE`, 404 ->
///   `UNIMPLEMENTED`, ...; see [`GrpcCode::from_http_status`]) and classified by the table;
///   a 503 or 429 with a shed marker is a shed, as for [`HttpClassifier`](crate::HttpClassifier).
/// - **A `grpc-status` that is not a defined code** (`"banana"`, `"99"`, `"-1"`): treated as
///   `UNKNOWN`, so `Failure`. A server that cannot state its status is not healthy.
///
/// ```
/// use http::Response;
/// use tower_bulwark_core::{Classify, GrpcClassifier, Outcome};
///
/// let res = Response::builder().header("grpc-status", "14").body(()).unwrap();
/// let result: Result<_, std::io::Error> = Ok(res);
/// assert_eq!(GrpcClassifier.classify(&result), Outcome::Failure);
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct GrpcClassifier;

impl GrpcClassifier {
    /// The outcome of a call that ended with this code (without the response's headers: a
    /// shed is not seen).
    pub fn classify_code(code: GrpcCode) -> Outcome {
        match code {
            GrpcCode::Ok => Outcome::Success,
            GrpcCode::Unavailable
            | GrpcCode::DeadlineExceeded
            | GrpcCode::ResourceExhausted
            | GrpcCode::Internal
            | GrpcCode::Unknown
            | GrpcCode::DataLoss => Outcome::Failure,
            _ => Outcome::Ignored,
        }
    }

    /// The code a response head carries, following the rules in the type's documentation.
    pub fn code_of<B>(response: &http::Response<B>) -> GrpcCode {
        // As a `HeaderName`: a lookup then needs no parsing (every response reads it).
        const STATUS: http::HeaderName = http::HeaderName::from_static(GRPC_STATUS);
        match response.headers().get(STATUS) {
            Some(value) => GrpcCode::parse(value.as_bytes()).unwrap_or(GrpcCode::Unknown),
            None => GrpcCode::from_http_status(response.status()),
        }
    }

    /// The outcome of `result`, with `shed` for a shed.
    fn outcome<B, E: 'static>(result: &Result<http::Response<B>, E>, shed: Outcome) -> Outcome {
        let response = match result {
            Ok(response) => response,
            Err(error) => return error_outcome(error),
        };
        if let Some(rejection) = Rejection::in_response(response) {
            return rejection.kind().outcome();
        }
        let code = Self::code_of(response);
        let is_shed = || {
            let headers = response.headers();
            (code == GrpcCode::ResourceExhausted
                && (headers.contains_key(GRPC_RETRY_PUSHBACK_MS) || is_shed_for_overload(headers)))
                || is_shed_response(response)
        };
        match Self::classify_code(code) {
            Outcome::Failure if is_shed() => shed,
            outcome => outcome,
        }
    }
}

impl<B, E: 'static> Classify<http::Response<B>, E> for GrpcClassifier {
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
    use http::Response;

    fn outcome_of(response: Response<()>) -> Outcome {
        GrpcClassifier.classify(&Ok::<_, ()>(response))
    }

    fn with_status(code: &str) -> Outcome {
        outcome_of(
            Response::builder()
                .header("content-type", "application/grpc")
                .header(GRPC_STATUS, code)
                .body(())
                .unwrap(),
        )
    }

    #[test]
    fn failure_codes() {
        for code in ["14", "4", "8", "13", "2", "15"] {
            assert_eq!(with_status(code), Outcome::Failure, "code {code}");
        }
    }

    #[test]
    fn ok_is_success_and_caller_errors_are_ignored() {
        assert_eq!(with_status("0"), Outcome::Success);
        for code in ["1", "3", "5", "6", "7", "9", "10", "11", "12", "16"] {
            assert_eq!(with_status(code), Outcome::Ignored, "code {code}");
        }
    }

    #[test]
    fn malformed_status_is_unknown_and_a_failure() {
        for code in ["banana", "99", "-1", "", " 0", "0x0"] {
            assert_eq!(with_status(code), Outcome::Failure, "code {code:?}");
        }
        let response = Response::builder()
            .header(GRPC_STATUS, "nope")
            .body(())
            .unwrap();
        assert_eq!(GrpcClassifier::code_of(&response), GrpcCode::Unknown);
    }

    #[test]
    fn missing_status_on_200_is_a_success_because_it_comes_in_trailers() {
        let response = Response::builder()
            .header("content-type", "application/grpc")
            .body(())
            .unwrap();
        assert_eq!(GrpcClassifier::code_of(&response), GrpcCode::Ok);
        assert_eq!(outcome_of(response), Outcome::Success);
    }

    #[test]
    fn missing_status_on_other_http_statuses_follows_the_grpc_mapping() {
        let cases = [
            (503, GrpcCode::Unavailable, Outcome::Failure),
            (502, GrpcCode::Unavailable, Outcome::Failure),
            (429, GrpcCode::Unavailable, Outcome::Failure),
            (404, GrpcCode::Unimplemented, Outcome::Ignored),
            (401, GrpcCode::Unauthenticated, Outcome::Ignored),
            (403, GrpcCode::PermissionDenied, Outcome::Ignored),
            (400, GrpcCode::Internal, Outcome::Failure),
            (500, GrpcCode::Unknown, Outcome::Failure),
        ];
        for (status, code, outcome) in cases {
            let response = Response::builder().status(status).body(()).unwrap();
            assert_eq!(GrpcClassifier::code_of(&response), code, "status {status}");
            assert_eq!(outcome_of(response), outcome, "status {status}");
        }
    }

    fn headers(pairs: &[(&str, &str)]) -> Outcome {
        let mut builder = Response::builder().header("content-type", "application/grpc");
        for (name, value) in pairs {
            builder = builder.header(*name, *value);
        }
        outcome_of(builder.body(()).unwrap())
    }

    #[test]
    fn resource_exhausted_with_pushback_or_the_marker_is_ignored() {
        let pushback = "grpc-retry-pushback-ms";
        assert_eq!(
            headers(&[(GRPC_STATUS, "8"), (pushback, "250")]),
            Outcome::Ignored
        );
        let load = Response::builder()
            .header(GRPC_STATUS, "8")
            .header(pushback, "250")
            .body(())
            .unwrap();
        assert_eq!(
            GrpcClassifier.classify_load(&Ok::<_, ()>(load)),
            Outcome::Failure
        );
        assert_eq!(
            headers(&[(GRPC_STATUS, "8"), (pushback, "-1")]),
            Outcome::Ignored
        );
        for marker in ["x-bulwark-overloaded", "x-envoy-overloaded"] {
            assert_eq!(
                headers(&[(GRPC_STATUS, "8"), (marker, "true")]),
                Outcome::Ignored
            );
            assert_eq!(
                headers(&[(GRPC_STATUS, "8"), (marker, "no")]),
                Outcome::Failure
            );
        }
        assert_eq!(
            headers(&[(GRPC_STATUS, "8")]),
            Outcome::Failure,
            "no signal"
        );
        // Pushback on other codes is no overload signal: a server that is unavailable is.
        assert_eq!(
            headers(&[(GRPC_STATUS, "14"), (pushback, "250")]),
            Outcome::Failure
        );
        // A proxy's marked 503 without a gRPC status.
        let proxy = Response::builder()
            .status(503)
            .header("x-envoy-overloaded", "true")
            .body(())
            .unwrap();
        assert_eq!(outcome_of(proxy), Outcome::Ignored);
        // Our own rejections as a server writes them.
        let shed: Response<()> =
            crate::Rejection::new(crate::RejectionKind::BulkheadFull, "s").to_grpc_response();
        assert_eq!(outcome_of(shed), Outcome::Ignored);
        let open: Response<()> = crate::Rejection::new(crate::RejectionKind::CircuitOpen, "s")
            .with_retry_after(std::time::Duration::from_secs(1))
            .to_grpc_response();
        assert_eq!(outcome_of(open), Outcome::Failure);
    }

    #[test]
    fn a_local_refusal_is_ignored() {
        let refused: Result<Response<()>, crate::BoxError> =
            Err(crate::Rejection::new(crate::RejectionKind::CircuitOpen, "db").into());
        assert_eq!(GrpcClassifier.classify(&refused), Outcome::Ignored);
        let slow: Result<Response<()>, crate::BoxError> =
            Err(crate::Rejection::new(crate::RejectionKind::TimedOut, "t").into());
        assert_eq!(GrpcClassifier.classify(&slow), Outcome::Failure);
        assert_eq!(GrpcClassifier.classify_load(&slow), Outcome::Failure);
    }

    /// Every kind, as a trailers-only response made in this process (the rejection in its
    /// extensions) and as an error: the same outcome, in both views, whatever the code and
    /// pushback say.
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
            let rejection = Rejection::new(kind, "layer")
                .with_retry_after(std::time::Duration::from_millis(250));
            let mut answered: Response<()> = rejection.to_grpc_response();
            answered.extensions_mut().insert(rejection.clone());
            let answered: Result<_, BoxError> = Ok(answered);
            let failed: Result<Response<()>, BoxError> = Err(rejection.into());
            for result in [&answered, &failed] {
                assert_eq!(GrpcClassifier.classify(result), kind.outcome(), "{kind:?}");
                assert_eq!(
                    GrpcClassifier.classify_load(result),
                    kind.outcome(),
                    "{kind:?}"
                );
            }
        }
        // The rate limit's `RESOURCE_EXHAUSTED` with pushback from over the wire: a
        // dependency protecting itself, which the load view counts.
        let remote: Response<()> = Rejection::new(Throttled, "remote")
            .with_retry_after(std::time::Duration::from_millis(250))
            .to_grpc_response();
        assert_eq!(
            GrpcClassifier.classify_load(&Ok::<_, ()>(remote)),
            Outcome::Failure
        );
    }

    #[test]
    fn transport_errors_are_failures() {
        let result: Result<Response<()>, &str> = Err("h2 protocol error");
        assert_eq!(GrpcClassifier.classify(&result), Outcome::Failure);
    }
}
