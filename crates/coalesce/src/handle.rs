//! [`CoalesceHandle`] and its [`Snapshot`].

use std::sync::Arc;

use tower_bulwark_core::sync::Ordering;
use tower_bulwark_core::Name;

use crate::config::{lock_map, Shared};

/// Reads a coalescing layer's state; cheap to clone.
#[derive(Debug, Clone)]
pub struct CoalesceHandle {
    shared: Arc<Shared>,
}

/// The state of a coalescing layer at one moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct Snapshot {
    /// Upstream calls in flight that requests may join (one per key).
    pub keys: usize,
    /// Callers waiting for a shared call, the ones that started them included.
    pub waiters: usize,
    /// The bound on `keys`.
    pub max_keys: usize,
    /// The bound on the callers that may join one call.
    pub max_waiters: usize,
    /// The largest body shared.
    pub max_body_bytes: usize,
}

impl CoalesceHandle {
    pub(crate) fn new(shared: Arc<Shared>) -> Self {
        CoalesceHandle { shared }
    }

    /// The layer's name.
    pub fn name(&self) -> &Name {
        &self.shared.reporter.name
    }

    /// The state now (takes the map's lock for a moment).
    pub fn snapshot(&self) -> Snapshot {
        Snapshot {
            keys: lock_map(&self.shared).len(),
            waiters: self.shared.waiters.load(Ordering::Relaxed),
            max_keys: self.shared.max_keys,
            max_waiters: self.shared.max_waiters,
            max_body_bytes: self.shared.max_body,
        }
    }
}
