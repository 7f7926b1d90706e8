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
