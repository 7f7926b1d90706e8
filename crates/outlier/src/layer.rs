//! [`OutlierLayer`]: wraps one endpoint's service.

use std::fmt;
use std::sync::Arc;

use tower_bulwark_core::{ErrorsAreFailures, Name};
use tower_layer::Layer;

use crate::classify::NoGateway;
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
/// by `G` ([`NoGateway`] by default: none; `GatewayErrors` with feature `http`).
pub struct OutlierLayer<C = ErrorsAreFailures, G = NoGateway> {
    endpoint: Arc<Endpoint>,
    classify: C,
    gateway: G,
}

impl OutlierLayer {
    pub(crate) fn new(endpoint: Arc<Endpoint>) -> Self {
        OutlierLayer {
            endpoint,
            classify: ErrorsAreFailures,
            gateway: NoGateway,
        }
    }
}

impl<C, G> OutlierLayer<C, G> {
    /// Reads outcomes with `classify` instead.
    pub fn classify<C2>(self, classify: C2) -> OutlierLayer<C2, G> {
        OutlierLayer {
            endpoint: self.endpoint,
            classify,
            gateway: self.gateway,
        }
    }

    /// Reads gateway failures with `gateway` (a failure by its `classify` is a gateway
    /// failure, a success ends a run of them, ignored results count for neither).
    pub fn gateway<G2>(self, gateway: G2) -> OutlierLayer<C, G2> {
        OutlierLayer {
            endpoint: self.endpoint,
            classify: self.classify,
            gateway,
        }
    }

    /// The HTTP readings: outcomes by core's `HttpClassifier`, gateway failures by
    /// [`GatewayErrors`](crate::GatewayErrors).
    #[cfg(feature = "http")]
    pub fn http(
        self,
    ) -> OutlierLayer<tower_bulwark_core::HttpClassifier, crate::classify::GatewayErrors> {
        self.classify(tower_bulwark_core::HttpClassifier)
            .gateway(crate::classify::GatewayErrors)
    }

    /// The endpoint's key.
    pub fn key(&self) -> &Name {
        self.endpoint.key()
    }
}

impl<C: Clone, G: Clone> Clone for OutlierLayer<C, G> {
    fn clone(&self) -> Self {
        OutlierLayer {
            endpoint: self.endpoint.clone(),
            classify: self.classify.clone(),
            gateway: self.gateway.clone(),
        }
    }
}

impl<S, C: Clone, G: Clone> Layer<S> for OutlierLayer<C, G> {
    type Service = Outlier<S, C, G>;

    fn layer(&self, inner: S) -> Self::Service {
        Outlier::new(
            inner,
            self.endpoint.clone(),
            self.classify.clone(),
            self.gateway.clone(),
        )
    }
}

impl<C, G> fmt::Debug for OutlierLayer<C, G> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OutlierLayer")
            .field("endpoint", &self.endpoint)
            .field("classify", &std::any::type_name::<C>())
            .field("gateway", &std::any::type_name::<G>())
            .finish()
    }
}
