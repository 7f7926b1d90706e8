use std::sync::Arc;

use tower_bulwark_core::stripes::Striped;

use tower_layer::Layer;

use crate::compartment::Compartment;
use crate::config::{Builder, Config};
use crate::{Bulkhead, BulkheadHandle, TaskDeadline};

/// Applies a bulkhead to services.
///
/// **One layer value is one compartment**: every service it builds, and every clone of
/// those, draws from the same permits and queue, so several services or routes can share
/// one bulkhead by sharing the layer. Build another layer for another compartment.
///
/// ```
/// use tower::{service_fn, ServiceBuilder, ServiceExt};
/// use tower_bulwark_bulkhead::BulkheadLayer;
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let layer = BulkheadLayer::builder().max_concurrent(10).build().unwrap();
/// let handle = layer.handle();
/// let service = ServiceBuilder::new()
///     .layer(layer)
///     .service(service_fn(|x: u32| async move { Ok::<_, std::io::Error>(x) }));
/// assert_eq!(service.oneshot(3).await.unwrap(), 3);
/// assert_eq!(handle.snapshot().in_flight, 0);
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct BulkheadLayer<D = TaskDeadline> {
    compartment: Striped<Compartment>,
    config: Arc<Config>,
    deadline: D,
}

impl BulkheadLayer {
    /// Starts configuring a bulkhead.
    pub fn builder() -> Builder {
        Builder::default()
    }
}

impl<D> BulkheadLayer<D> {
    pub(crate) fn from_parts(config: Config, deadline: D) -> Self {
        BulkheadLayer {
            compartment: Striped::new(Arc::new(Compartment::new(
                config.name.clone(),
                config.max_concurrent,
                config.max_queue,
                config.listeners.clone(),
            ))),
            config: Arc::new(config),
            deadline,
        }
    }

    /// A handle to read this bulkhead and change its limits at runtime.
    pub fn handle(&self) -> BulkheadHandle {
        BulkheadHandle::new(self.compartment.shared().clone())
    }
}

impl<S, D: Clone> Layer<S> for BulkheadLayer<D> {
    type Service = Bulkhead<S, D>;

    fn layer(&self, inner: S) -> Self::Service {
        Bulkhead::new(
            inner,
            self.compartment.clone(),
            self.config.clone(),
            self.deadline.clone(),
        )
    }
}
