//! [`ChaosHandle`]: the kill switch.

use std::sync::Arc;

use crate::injector::Injector;

/// Turns a chaos layer's faults off and on at run time, and counts what it injected.
#[derive(Debug, Clone)]
pub struct ChaosHandle {
    injector: Arc<Injector>,
}

impl ChaosHandle {
    pub(crate) fn new(injector: Arc<Injector>) -> Self {
        ChaosHandle { injector }
    }

    /// Stops injecting faults (rate-based ones; header targeting too).
    pub fn disable(&self) {
        self.injector.set_enabled(false);
    }

    /// Starts injecting faults again.
    pub fn enable(&self) {
        self.injector.set_enabled(true);
    }

    /// Whether faults are being injected.
    pub fn is_enabled(&self) -> bool {
        self.injector.is_enabled()
    }

    /// Errors, aborts and delays injected so far (by rate; header-targeted ones too).
    pub fn injected(&self) -> [u64; 3] {
        self.injector.injected()
    }
}
