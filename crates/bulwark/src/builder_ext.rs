//! [`BulwarkExt`]: the layers as `ServiceBuilder` methods.

use tower::ServiceBuilder;

/// The bulwark layers as [`ServiceBuilder`] methods, so a stack reads top to bottom in the
/// order calls go through it.
///
/// ```
/// use std::time::Duration;
/// use tower::{service_fn, ServiceBuilder, ServiceExt};
/// use tower_bulwark::breaker::CircuitBreakerLayer;
/// use tower_bulwark::bulkhead::BulkheadLayer;
/// use tower_bulwark::BulwarkExt;
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let client = ServiceBuilder::new()
///     .circuit_breaker(CircuitBreakerLayer::builder().build().unwrap())
///     .bulkhead(BulkheadLayer::builder().max_concurrent(10).build().unwrap())
///     .service(service_fn(|n: u32| async move { Ok::<_, std::io::Error>(n) }));
/// assert_eq!(client.oneshot(3).await.unwrap(), 3);
/// # }
/// ```
pub trait BulwarkExt<L> {
    /// Turns bulwark rejections (and tower's `LoadShed` / `Timeout` errors) into HTTP or
    /// gRPC responses; the error type becomes `Infallible`, as axum and tonic want.
    #[cfg(feature = "http")]
    fn handle_rejections(
        self,
    ) -> ServiceBuilder<tower::layer::util::Stack<tower_bulwark_core::HandleRejectionsLayer, L>>;

    /// A circuit breaker.
    #[cfg(feature = "breaker")]
    fn circuit_breaker<C>(
        self,
        layer: crate::breaker::CircuitBreakerLayer<C>,
    ) -> ServiceBuilder<tower::layer::util::Stack<crate::breaker::CircuitBreakerLayer<C>, L>>;

    /// A bulkhead.
    #[cfg(feature = "bulkhead")]
    fn bulkhead<D>(
        self,
        layer: crate::bulkhead::BulkheadLayer<D>,
    ) -> ServiceBuilder<tower::layer::util::Stack<crate::bulkhead::BulkheadLayer<D>, L>>;

    /// Retries by `policy` (tower's `Retry` engine).
    #[cfg(feature = "retry")]
    fn retry_with<C>(
        self,
        policy: crate::retry::RetryPolicy<C>,
    ) -> ServiceBuilder<
        tower::layer::util::Stack<tower::retry::RetryLayer<crate::retry::RetryPolicy<C>>, L>,
    >;

    /// Accepts the caller's deadline (server side).
    #[cfg(feature = "deadline")]
    fn accept_deadline(
        self,
        layer: crate::deadline::AcceptDeadlineLayer,
    ) -> ServiceBuilder<tower::layer::util::Stack<crate::deadline::AcceptDeadlineLayer, L>>;

    /// Passes the time left on to the next service (client side).
    #[cfg(feature = "deadline")]
    fn propagate_deadline(
        self,
        layer: crate::deadline::PropagateDeadlineLayer,
    ) -> ServiceBuilder<tower::layer::util::Stack<crate::deadline::PropagateDeadlineLayer, L>>;

    /// A timeout that honours the caller's deadline.
    #[cfg(feature = "deadline")]
    fn deadline_timeout(
        self,
        layer: crate::deadline::TimeoutLayer,
    ) -> ServiceBuilder<tower::layer::util::Stack<crate::deadline::TimeoutLayer, L>>;

    /// Load shedding behind an adaptive limit.
    #[cfg(feature = "shed")]
    fn shed<Q, C>(
        self,
        layer: crate::shed::ShedLayer<Q, C>,
    ) -> ServiceBuilder<tower::layer::util::Stack<crate::shed::ShedLayer<Q, C>, L>>;

    /// Graceful drain.
    #[cfg(feature = "health")]
    fn drain(
        self,
        layer: crate::health::DrainLayer,
    ) -> ServiceBuilder<tower::layer::util::Stack<crate::health::DrainLayer, L>>;
}

impl<L> BulwarkExt<L> for ServiceBuilder<L> {
    #[cfg(feature = "http")]
    fn handle_rejections(
        self,
    ) -> ServiceBuilder<tower::layer::util::Stack<tower_bulwark_core::HandleRejectionsLayer, L>>
    {
        self.layer(tower_bulwark_core::HandleRejectionsLayer::new())
    }

    #[cfg(feature = "breaker")]
    fn circuit_breaker<C>(
        self,
        layer: crate::breaker::CircuitBreakerLayer<C>,
    ) -> ServiceBuilder<tower::layer::util::Stack<crate::breaker::CircuitBreakerLayer<C>, L>> {
        self.layer(layer)
    }

    #[cfg(feature = "bulkhead")]
    fn bulkhead<D>(
        self,
        layer: crate::bulkhead::BulkheadLayer<D>,
    ) -> ServiceBuilder<tower::layer::util::Stack<crate::bulkhead::BulkheadLayer<D>, L>> {
        self.layer(layer)
    }

    #[cfg(feature = "retry")]
    fn retry_with<C>(
        self,
        policy: crate::retry::RetryPolicy<C>,
    ) -> ServiceBuilder<
        tower::layer::util::Stack<tower::retry::RetryLayer<crate::retry::RetryPolicy<C>>, L>,
    > {
        self.layer(tower::retry::RetryLayer::new(policy))
    }

    #[cfg(feature = "deadline")]
    fn accept_deadline(
        self,
        layer: crate::deadline::AcceptDeadlineLayer,
    ) -> ServiceBuilder<tower::layer::util::Stack<crate::deadline::AcceptDeadlineLayer, L>> {
        self.layer(layer)
    }

    #[cfg(feature = "deadline")]
    fn propagate_deadline(
        self,
        layer: crate::deadline::PropagateDeadlineLayer,
    ) -> ServiceBuilder<tower::layer::util::Stack<crate::deadline::PropagateDeadlineLayer, L>> {
        self.layer(layer)
    }

    #[cfg(feature = "deadline")]
    fn deadline_timeout(
        self,
        layer: crate::deadline::TimeoutLayer,
    ) -> ServiceBuilder<tower::layer::util::Stack<crate::deadline::TimeoutLayer, L>> {
        self.layer(layer)
    }

    #[cfg(feature = "shed")]
    fn shed<Q, C>(
        self,
        layer: crate::shed::ShedLayer<Q, C>,
    ) -> ServiceBuilder<tower::layer::util::Stack<crate::shed::ShedLayer<Q, C>, L>> {
        self.layer(layer)
    }

    #[cfg(feature = "health")]
    fn drain(
        self,
        layer: crate::health::DrainLayer,
    ) -> ServiceBuilder<tower::layer::util::Stack<crate::health::DrainLayer, L>> {
        self.layer(layer)
    }
}
