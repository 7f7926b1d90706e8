//! [`CoalescedError`]: the error of a shared upstream call, as each waiter gets it.

use std::error::Error;
use std::fmt;
use std::sync::Arc;

use tower_bulwark_core::BoxError;

/// The error of an upstream call that several callers waited for. Errors are not `Clone`,
/// so the error is kept once and each waiter gets this wrapper; the last waiter gets the
/// original error itself when no other waiter still holds a copy (always, for a caller
/// that waited alone).
///
/// Its [`source`](Error::source) is the original error, so a refusal from a layer below
/// (a core `Rejection`) is found by `tower_bulwark_core::find_rejection` through it, and
/// the composition contract holds for every waiter.
#[derive(Debug, Clone)]
pub struct CoalescedError {
    inner: Arc<BoxError>,
}

impl CoalescedError {
    pub(crate) fn new(inner: Arc<BoxError>) -> Self {
        CoalescedError { inner }
    }

    /// The original error of the upstream call.
    pub fn original(&self) -> &(dyn Error + Send + Sync + 'static) {
        &**self.inner
    }
}

impl fmt::Display for CoalescedError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "coalesced upstream call failed: {}", self.inner)
    }
}

impl Error for CoalescedError {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        Some(&**self.inner)
    }
}

/// An error for a state the layer's own code rules out, answered instead of a panic
/// (CONTRIBUTING.md, rule 5).
pub(crate) fn broken(what: &'static str) -> BoxError {
    format!("coalesce: internal invariant broken ({what})").into()
}

#[cfg(all(test, not(bulwark_loom)))]
mod tests {
    use super::*;
    use tower_bulwark_core::{find_rejection, Rejection, RejectionKind};

    #[test]
    fn the_rejection_is_found_through_the_wrapper() {
        let original: BoxError = Rejection::new(RejectionKind::CircuitOpen, "upstream").into();
        let shared: BoxError = Box::new(CoalescedError::new(Arc::new(original)));
        let rejection = find_rejection(&shared).expect("found through source()");
        assert_eq!(rejection.kind(), RejectionKind::CircuitOpen);
        assert!(shared.to_string().contains("circuit"), "{shared}");
    }
}
