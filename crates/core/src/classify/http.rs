use super::{Classify, Outcome};

/// Classifies HTTP responses by status code.
///
/// | result | outcome |
/// |---|---|
/// | `Err(_)` (connection refused, reset, timed out) | `Failure` |
/// | 5xx, and 429 Too Many Requests | `Failure` |
/// | other 4xx (the caller's mistake, not the server's health) | `Ignored` |
/// | 1xx, 2xx, 3xx | `Success` |
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
    /// The outcome of a response with this status.
    pub fn classify_status(status: http::StatusCode) -> Outcome {
        if status.is_server_error() || status == http::StatusCode::TOO_MANY_REQUESTS {
            Outcome::Failure
        } else if status.is_client_error() {
            Outcome::Ignored
        } else {
            Outcome::Success
        }
    }
}

impl<B, E> Classify<http::Response<B>, E> for HttpClassifier {
    fn classify(&self, result: &Result<http::Response<B>, E>) -> Outcome {
        match result {
            Ok(response) => Self::classify_status(response.status()),
            Err(_) => Outcome::Failure,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::{Response, StatusCode};

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
