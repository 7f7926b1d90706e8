//! [`HedgeLayer`]: hedged calls, one shared state per layer value.

use std::fmt;
use std::sync::Arc;

use tower_layer::Layer;

use crate::handle::HedgeHandle;
use crate::service::Hedge;
use crate::shared::Shared;
use crate::{HedgeBuilder, Idempotent, OverloadSignals};

/// Sends a second attempt (a hedge) when the first has not answered within a delay; the
/// first good answer wins and the others are cancelled. See the [crate docs](crate).
///
/// Clones of the layer, and every service it builds, share one state: one budget, one
/// learned delay, one overload pause. A new layer value is new state.
pub struct HedgeLayer<M = Idempotent, O = OverloadSignals> {
    pub(crate) shared: Arc<Shared<M, O>>,
}

impl HedgeLayer {
    /// A builder with the defaults: HTTP requests with an idempotent method or an
    /// `Idempotency-Key` may be hedged, HTTP and gRPC overload signals pause hedging, one
    /// hedge per call, a budget of 5% of calls plus 1 a second. A delay (or a percentile)
    /// must be given.
    pub fn builder() -> HedgeBuilder {
        HedgeBuilder::new()
    }
}

impl<M, O> HedgeLayer<M, O>
where
    M: Send + Sync + 'static,
    O: Send + Sync + 'static,
{
    /// The handle: the layer's name and a [`Snapshot`](crate::Snapshot) of its counters.
    pub fn handle(&self) -> HedgeHandle {
        HedgeHandle::new(self.shared.clone())
    }
}

impl<M, O> Clone for HedgeLayer<M, O> {
    fn clone(&self) -> Self {
        HedgeLayer {
            shared: self.shared.clone(),
        }
    }
}

impl<M, O> fmt::Debug for HedgeLayer<M, O> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HedgeLayer")
            .field("name", &self.shared.state.reporter.name)
            .field("max_hedges", &self.shared.state.max_hedges)
            .finish_non_exhaustive()
    }
}

impl<S, M, O> Layer<S> for HedgeLayer<M, O> {
    type Service = Hedge<S, M, O>;

    fn layer(&self, inner: S) -> Self::Service {
        Hedge::new(inner, self.shared.clone())
    }
}
