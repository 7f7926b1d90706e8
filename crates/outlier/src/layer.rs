//! [`OutlierLayer`]: wraps one endpoint's service.

use std::fmt;
use std::sync::Arc;

use tower_bulwark_core::{ErrorsAreFailures, Name};
use tower_layer::Layer;

use crate::classify::{AttemptTimeouts, NoGateway};
use crate::detector::Endpoint;
use crate::service::Outlier;

/// Wraps the service of one endpoint registered with an
/// [`OutlierDetector`](crate::OutlierDetector) (from
/// [`OutlierDetector::layer`](crate::OutlierDetector::layer)).
///
/// Every service it builds (and every clone of them) is the same endpoint: they record
/// into one state and are ejected together. Outcomes are read by `C`, a core
/// [`Classify`](tower_bulwark_core::Classify) ([`ErrorsAreFailures`] by default;
/// `HttpClassifier` or `GrpcClassifier` with feature `http`), so a refusal by a bulwark
/// layer below (a core `Rejection`) is not the endpoint's failure. Gateway failures, for
/// [`consecutive_gateway_failures`](crate::Builder::consecutive_gateway_failures), are read
/// by `G` ([`NoGateway`] by default: none; `GatewayErrors` with feature `http`). Which
/// failures are timeouts, the only failures the
/// [slow-endpoint rule](crate::SlowEndpoint) times, is read by `T` ([`AttemptTimeouts`]
/// by default: an attempt timeout under the layer; `GatewayTimeouts` with feature `http`
/// adds 504 and gRPC `DEADLINE_EXCEEDED` answers).
pub struct OutlierLayer<C = ErrorsAreFailures, G = NoGateway, T = AttemptTimeouts> {
    endpoint: Arc<Endpoint>,
    classify: C,
    gateway: G,
    timeouts: T,
}

impl OutlierLayer {
    pub(crate) fn new(endpoint: Arc<Endpoint>) -> Self {
        OutlierLayer {
            endpoint,
            classify: ErrorsAreFailures,
            gateway: NoGateway,
            timeouts: AttemptTimeouts,
        }
    }
}

impl<C, G, T> OutlierLayer<C, G, T> {
    /// Reads outcomes with `classify` instead.
    pub fn classify<C2>(self, classify: C2) -> OutlierLayer<C2, G, T> {
        OutlierLayer {
            endpoint: self.endpoint,
            classify,
            gateway: self.gateway,
            timeouts: self.timeouts,
        }
    }

    /// Reads gateway failures with `gateway` (a failure by its `classify` is a gateway
    /// failure, a success ends a run of them, ignored results count for neither).
    pub fn gateway<G2>(self, gateway: G2) -> OutlierLayer<C, G2, T> {
        OutlierLayer {
            endpoint: self.endpoint,
            classify: self.classify,
            gateway,
            timeouts: self.timeouts,
        }
    }

    /// Reads which failures are timeouts with `timeouts` (the failures the slow-endpoint
    /// rule times; see [`Timeouts`](crate::Timeouts)). With core's `GrpcClassifier`, set
    /// [`GatewayTimeouts`](crate::GatewayTimeouts) too, so a `DEADLINE_EXCEEDED` answer is
    /// timed.
    pub fn timeouts<T2>(self, timeouts: T2) -> OutlierLayer<C, G, T2> {
        OutlierLayer {
            endpoint: self.endpoint,
            classify: self.classify,
            gateway: self.gateway,
            timeouts,
        }
    }

    /// The HTTP readings: outcomes by core's `HttpClassifier`, gateway failures by
    /// [`GatewayErrors`](crate::GatewayErrors), timeouts by
    /// [`GatewayTimeouts`](crate::GatewayTimeouts).
    #[cfg(feature = "http")]
    pub fn http(
        self,
    ) -> OutlierLayer<
        tower_bulwark_core::HttpClassifier,
        crate::classify::GatewayErrors,
        crate::classify::GatewayTimeouts,
    > {
        self.classify(tower_bulwark_core::HttpClassifier)
            .gateway(crate::classify::GatewayErrors)
            .timeouts(crate::classify::GatewayTimeouts)
    }

    /// The endpoint's key.
    pub fn key(&self) -> &Name {
        self.endpoint.key()
    }
}

impl<C: Clone, G: Clone, T: Clone> Clone for OutlierLayer<C, G, T> {
    fn clone(&self) -> Self {
        OutlierLayer {
            endpoint: self.endpoint.clone(),
            classify: self.classify.clone(),
            gateway: self.gateway.clone(),
            timeouts: self.timeouts.clone(),
        }
    }
}

impl<S, C: Clone, G: Clone, T: Clone> Layer<S> for OutlierLayer<C, G, T> {
    type Service = Outlier<S, C, G, T>;

    fn layer(&self, inner: S) -> Self::Service {
        Outlier::new(
            inner,
            self.endpoint.clone(),
            self.classify.clone(),
            self.gateway.clone(),
            self.timeouts.clone(),
        )
    }
}

impl<C, G, T> fmt::Debug for OutlierLayer<C, G, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OutlierLayer")
            .field("endpoint", &self.endpoint)
            .field("classify", &std::any::type_name::<C>())
            .field("gateway", &std::any::type_name::<G>())
            .field("timeouts", &std::any::type_name::<T>())
            .finish()
    }
}
