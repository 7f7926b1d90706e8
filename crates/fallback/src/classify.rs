//! The fallback layers' default classifier.

use http::Response;
use tower_bulwark_core::{is_grpc_request, Classify, GrpcClassifier, HttpClassifier, Outcome};

/// Classifies a gRPC response (a `content-type` of `application/grpc...`) with
/// [`GrpcClassifier`], so a trailers-only error status is a failure whatever its HTTP
/// status, and any other response with [`HttpClassifier`]: 5xx and 429 are failures, other
/// 4xx ignored, the rest successes. The default of [`FallbackLayer`](crate::FallbackLayer),
/// which reads its `classify_load`: there a dependency's shed (a marked 503 or 429, a
/// `RESOURCE_EXHAUSTED` with pushback) is a failure too, since the call was not served.
///
/// ```
/// use http::Response;
/// use tower_bulwark_core::{Classify, Outcome};
/// use tower_bulwark_fallback::HttpOrGrpc;
///
/// let unavailable = Response::builder()
///     .header("content-type", "application/grpc")
///     .header("grpc-status", "14")
///     .body(())
///     .unwrap();
/// assert_eq!(HttpOrGrpc.classify(&Ok::<_, ()>(unavailable)), Outcome::Failure);
/// let busy = Response::builder().status(503).body(()).unwrap();
/// assert_eq!(HttpOrGrpc.classify(&Ok::<_, ()>(busy)), Outcome::Failure);
/// let shed = Response::builder()
///     .status(503)
///     .header("x-bulwark-overloaded", "true")
///     .body(())
///     .unwrap();
/// assert_eq!(HttpOrGrpc.classify_load(&Ok::<_, ()>(shed)), Outcome::Failure);
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct HttpOrGrpc;

impl<B, E> Classify<Response<B>, E> for HttpOrGrpc
where
    HttpClassifier: Classify<Response<B>, E>,
    GrpcClassifier: Classify<Response<B>, E>,
{
    fn classify(&self, result: &Result<Response<B>, E>) -> Outcome {
        match result {
            Ok(response) if is_grpc_request(response.headers()) => GrpcClassifier.classify(result),
            _ => HttpClassifier.classify(result),
        }
    }

    fn classify_load(&self, result: &Result<Response<B>, E>) -> Outcome {
        match result {
            Ok(response) if is_grpc_request(response.headers()) => {
                GrpcClassifier.classify_load(result)
            }
            _ => HttpClassifier.classify_load(result),
        }
    }
}
