//! [`CoalesceLayer`].

use std::fmt;
use std::sync::Arc;

use tower_layer::Layer;

use crate::config::Shared;
use crate::{Coalesce, CoalesceHandle};

/// Makes identical requests in flight share one upstream call: see the
/// [crate docs](crate). Build it with [`CoalesceLayer::builder`].
///
/// Every service built from one layer value (and its clones) shares one map of calls in
/// flight: requests through any of them coalesce. A new layer value is a new map.
#[derive(Clone)]
pub struct CoalesceLayer {
    pub(crate) shared: Arc<Shared>,
}

impl CoalesceLayer {
    /// A handle to read the layer's state (calls in flight, waiters).
    pub fn handle(&self) -> CoalesceHandle {
        CoalesceHandle::new(self.shared.clone())
    }
}

impl fmt::Debug for CoalesceLayer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("CoalesceLayer").field(&self.shared).finish()
    }
}

impl<S> Layer<S> for CoalesceLayer {
    type Service = Coalesce<S>;

    fn layer(&self, inner: S) -> Coalesce<S> {
        Coalesce {
            inner,
            shared: self.shared.clone(),
        }
    }
}
