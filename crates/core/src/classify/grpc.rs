use super::{Classify, Outcome};
use crate::grpc::{GrpcCode, GRPC_STATUS};

/// Classifies gRPC responses by status code.
///
/// The status is read from the `grpc-status` header of a *trailers-only* response (the form
/// gRPC servers use for errors raised before any message is sent, and the form every
/// bulwark rejection takes).
///
/// | code | outcome |
/// |---|---|
/// | `OK` | `Success` |
/// | `UNAVAILABLE`, `DEADLINE_EXCEEDED`, `RESOURCE_EXHAUSTED`, `INTERNAL`, `UNKNOWN`, `DATA_LOSS` | `Failure` |
/// | any other code (the caller's mistake: `INVALID_ARGUMENT`, `NOT_FOUND`, ...) | `Ignored` |
/// | `Err(_)` from the transport | `Failure` |
///
/// Responses without a usable `grpc-status` header:
///
/// - **No `grpc-status`, HTTP 200**: the status comes later, in the trailers after the
///   messages, which classifying the response head cannot see. Classified as `Success`: the
///   server answered and started a normal response.
/// - **No `grpc-status`, other HTTP status** (a proxy answered, not the gRPC server): the code
///   is inferred from the HTTP status as gRPC clients do (503 -> `UNAVAILABLE`, 404 ->
///   `UNIMPLEMENTED`, ...; see [`GrpcCode::from_http_status`]) and classified by the table.
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
    /// The outcome of a call that ended with this code.
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
        match response.headers().get(GRPC_STATUS) {
            Some(value) => GrpcCode::parse(value.as_bytes()).unwrap_or(GrpcCode::Unknown),
            None => GrpcCode::from_http_status(response.status()),
        }
    }
}

impl<B, E> Classify<http::Response<B>, E> for GrpcClassifier {
    fn classify(&self, result: &Result<http::Response<B>, E>) -> Outcome {
        match result {
            Ok(response) => Self::classify_code(Self::code_of(response)),
            Err(_) => Outcome::Failure,
        }
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

    #[test]
    fn transport_errors_are_failures() {
        let result: Result<Response<()>, &str> = Err("h2 protocol error");
        assert_eq!(GrpcClassifier.classify(&result), Outcome::Failure);
    }
}
