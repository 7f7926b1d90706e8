use std::sync::Arc;

use tower_bulwark_core::stripes::Striped;
use tower_bulwark_core::{ErrorsAreFailures, Listeners};
use tower_layer::Layer;

use crate::breaker::Breaker;
use crate::config::{Builder, Config};
use crate::events::BreakerEvent;
use crate::{BreakerHandle, CircuitBreaker};

/// Applies a circuit breaker to services.
///
/// **One layer value is one breaker.** Every service it builds, and every clone of those,
/// shares the same state: the window, the state machine, the probe slots. Build a second
/// layer for a second, independent breaker (or use [`KeyedCircuitBreakerLayer`] for one per
/// host or route).
///
/// [`KeyedCircuitBreakerLayer`]: crate::KeyedCircuitBreakerLayer
///
/// ```
/// use tower::{service_fn, ServiceBuilder, ServiceExt};
/// use tower_bulwark_breaker::{CircuitBreakerLayer, State};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let layer = CircuitBreakerLayer::builder()
///     .name("flaky")
///     .consecutive_failures(2)
///     .build()
///     .unwrap();
/// let handle = layer.handle();
/// let service = ServiceBuilder::new()
///     .layer(layer)
///     .service(service_fn(|_: ()| async { Err::<(), _>("down") }));
///
/// for _ in 0..2 {
///     assert!(service.clone().oneshot(()).await.is_err());
/// }
/// assert_eq!(handle.state(), State::Open);
/// // Now calls fail fast without reaching the inner service.
/// let err = service.oneshot(()).await.unwrap_err();
/// assert!(err.is::<tower_bulwark_breaker::CircuitOpen>());
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct CircuitBreakerLayer<C = ErrorsAreFailures> {
    breaker: Striped<Breaker>,
    classifier: C,
}

impl CircuitBreakerLayer {
    /// A breaker with the default settings (see [`Builder`]).
    pub fn new() -> Self {
        Builder::default()
            .build()
            .expect("the default configuration is valid")
    }

    /// Starts configuring a breaker.
    pub fn builder() -> Builder {
        Builder::default()
    }
}

impl Default for CircuitBreakerLayer {
    fn default() -> Self {
        CircuitBreakerLayer::new()
    }
}

impl<C> CircuitBreakerLayer<C> {
    pub(crate) fn from_parts(
        config: Config,
        classifier: C,
        listeners: Listeners<BreakerEvent>,
    ) -> Self {
        CircuitBreakerLayer {
            breaker: Striped::new(Arc::new(Breaker::new(config, listeners))),
            classifier,
        }
    }

    /// A handle to read and steer this breaker at runtime.
    pub fn handle(&self) -> BreakerHandle {
        BreakerHandle::new(self.breaker.shared().clone())
    }
}

impl<S, C: Clone> Layer<S> for CircuitBreakerLayer<C> {
    type Service = CircuitBreaker<S, C>;

    fn layer(&self, inner: S) -> Self::Service {
        CircuitBreaker::new(inner, self.breaker.clone(), self.classifier.clone())
    }
}
