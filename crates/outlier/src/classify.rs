//! What counts as a gateway failure.

use tower_bulwark_core::{Classify, Outcome};

/// No result is a gateway failure: the default, for which
/// [`consecutive_gateway_failures`](crate::Builder::consecutive_gateway_failures) never
/// fires. Every result is `Ignored`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct NoGateway;

impl<Res, E> Classify<Res, E> for NoGateway {
    fn classify(&self, _: &Result<Res, E>) -> Outcome {
        Outcome::Ignored
    }
}

/// Envoy's gateway failures for HTTP (feature `http`): a 502, 503 or 504 answer and a
/// transport error are failures, any other answer a success. What core's
/// `HttpClassifier` ignores stays ignored (a refusal by a bulwark layer below, a 503
/// marked as a shed for overload: the composition contract, `docs/composition.md`).
///
/// ```
/// use tower_bulwark_core::{BoxError, Classify, Outcome};
/// use tower_bulwark_outlier::GatewayErrors;
///
/// let answer = |status: u16| -> Result<http::Response<()>, BoxError> {
///     Ok(http::Response::builder().status(status).body(()).unwrap())
/// };
/// assert_eq!(GatewayErrors.classify(&answer(503)), Outcome::Failure);
/// assert_eq!(GatewayErrors.classify(&answer(500)), Outcome::Success);
/// assert_eq!(GatewayErrors.classify(&answer(200)), Outcome::Success);
/// let reset: Result<http::Response<()>, BoxError> = Err("connection reset".into());
/// assert_eq!(GatewayErrors.classify(&reset), Outcome::Failure);
/// ```
#[cfg(feature = "http")]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct GatewayErrors;

#[cfg(feature = "http")]
impl<B, E: 'static> Classify<http::Response<B>, E> for GatewayErrors {
    fn classify(&self, result: &Result<http::Response<B>, E>) -> Outcome {
        match tower_bulwark_core::HttpClassifier.classify(result) {
            Outcome::Ignored => Outcome::Ignored,
            Outcome::Failure => match result {
                Err(_) => Outcome::Failure,
                Ok(response) if matches!(response.status().as_u16(), 502..=504) => Outcome::Failure,
                Ok(_) => Outcome::Success,
            },
            Outcome::Success => Outcome::Success,
        }
    }
}

/// Which failed calls the [slow-endpoint rule](crate::SlowEndpoint) times: the timeouts.
///
/// The rule times every call the outcome classifier calls a success, and a failure only
/// when this reading calls it a timeout: a timeout is the clearest sign of slowness,
/// while a fast failure (a refused connection, a reset, a quick 500) says nothing about
/// speed, and timed it would pull the median down until a healthy endpoint looked slow.
/// Results the classifier ignores are never timed. Closures
/// `Fn(&Result<Res, E>) -> bool` implement it.
pub trait Timeouts<Res, E> {
    /// Whether this failed call ended in a timeout (and so is timed, at its length).
    fn is_timeout(&self, result: &Result<Res, E>) -> bool;
}

impl<F, Res, E> Timeouts<Res, E> for F
where
    F: Fn(&Result<Res, E>) -> bool,
{
    fn is_timeout(&self, result: &Result<Res, E>) -> bool {
        self(result)
    }
}

/// The default timeout reading: an error carrying a core
/// [`Rejection`](tower_bulwark_core::Rejection) of kind
/// [`TimedOut`](tower_bulwark_core::RejectionKind::TimedOut), an attempt timeout under the
/// layer (core's `TimeoutLayer` or `AdaptiveTimeoutLayer`, or tower's `Timeout` with core's
/// feature `http`). Found by
/// [`Rejection::find_in`](tower_bulwark_core::Rejection::find_in), so in a `BoxError`, another
/// boxed error or a `Rejection`, anywhere in the `source()` chain.
///
/// ```
/// use tower_bulwark_core::{BoxError, Rejection, RejectionKind};
/// use tower_bulwark_outlier::{AttemptTimeouts, Timeouts};
///
/// let timed_out: Result<(), BoxError> = Err(Rejection::new(RejectionKind::TimedOut, "t").into());
/// let refused: Result<(), BoxError> = Err("connection refused".into());
/// assert!(AttemptTimeouts.is_timeout(&timed_out));
/// assert!(!AttemptTimeouts.is_timeout(&refused));
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AttemptTimeouts;

impl<Res, E: 'static> Timeouts<Res, E> for AttemptTimeouts {
    #[inline]
    fn is_timeout(&self, result: &Result<Res, E>) -> bool {
        match result {
            Ok(_) => false,
            Err(error) => is_attempt_timeout(error),
        }
    }
}

fn is_attempt_timeout<E: 'static>(error: &E) -> bool {
    tower_bulwark_core::Rejection::find_in(error)
        .is_some_and(|rejection| rejection.kind() == tower_bulwark_core::RejectionKind::TimedOut)
}

/// The timeout reading for HTTP and gRPC (feature `http`; what
/// [`OutlierLayer::http`](crate::OutlierLayer::http) sets): [`AttemptTimeouts`], and an
/// answer that says the endpoint ran out of time: HTTP 504 Gateway Timeout, or a
/// `grpc-status` of `DEADLINE_EXCEEDED` (4) in a trailers-only response. Those are timed
/// only when the outcome classifier calls them failures (core's `HttpClassifier` and
/// `GrpcClassifier` do, unless a bulwark refusal, such as the caller's deadline, is in the
/// response's extensions).
///
/// ```
/// use tower_bulwark_core::BoxError;
/// use tower_bulwark_outlier::{GatewayTimeouts, Timeouts};
///
/// let answer = |status: u16, grpc: Option<&str>| -> Result<http::Response<()>, BoxError> {
///     let mut response = http::Response::builder().status(status);
///     if let Some(code) = grpc {
///         response = response.header("grpc-status", code);
///     }
///     Ok(response.body(()).unwrap())
/// };
/// assert!(GatewayTimeouts.is_timeout(&answer(504, None)));
/// assert!(GatewayTimeouts.is_timeout(&answer(200, Some("4"))));
/// assert!(!GatewayTimeouts.is_timeout(&answer(503, None)));
/// assert!(!GatewayTimeouts.is_timeout(&answer(200, Some("14"))));
/// ```
#[cfg(feature = "http")]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct GatewayTimeouts;

#[cfg(feature = "http")]
impl<B, E: 'static> Timeouts<http::Response<B>, E> for GatewayTimeouts {
    fn is_timeout(&self, result: &Result<http::Response<B>, E>) -> bool {
        use tower_bulwark_core::grpc::GRPC_STATUS;
        use tower_bulwark_core::GrpcCode;
        match result {
            Err(error) => is_attempt_timeout(error),
            Ok(response) => {
                response.status() == http::StatusCode::GATEWAY_TIMEOUT
                    || response.headers().get(GRPC_STATUS).is_some_and(|value| {
                        GrpcCode::parse(value.as_bytes()) == Some(GrpcCode::DeadlineExceeded)
                    })
            }
        }
    }
}
