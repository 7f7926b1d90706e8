//! The errors of refused calls: [`Overloaded`] (the shedding layer) and [`Throttled`] (the
//! adaptive client-side throttle).

use std::fmt;
use std::time::Duration;

use tower_bulwark_core::{Criticality, Rejection};

/// The shedding layer refused the call: its limit was reached for the call's tier; the
/// inner service was not called.
///
/// Carries a core [`Rejection`] (kind `Overloaded`, with the layer's `retry_after` when
/// set) in its [`source`](std::error::Error::source), so
/// `tower_bulwark_core::find_rejection` and `HandleRejectionsLayer` see it.
#[derive(Debug, Clone, PartialEq)]
pub struct Overloaded {
    criticality: Criticality,
    rejection: Rejection,
}

impl Overloaded {
    pub(crate) fn new(criticality: Criticality, rejection: Rejection) -> Self {
        Overloaded {
            criticality,
            rejection,
        }
    }

    /// The tier of the call that was shed.
    pub fn criticality(&self) -> Criticality {
        self.criticality
    }

    /// How long the layer asks callers to wait, when set.
    pub fn retry_after(&self) -> Option<Duration> {
        self.rejection.retry_after()
    }

    /// The common view of the refusal.
    pub fn rejection(&self) -> &Rejection {
        &self.rejection
    }
}

impl fmt::Display for Overloaded {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "load shedding layer `{}` refused a {} call (concurrency limit reached)",
            self.rejection.layer(),
            self.criticality
        )
    }
}

impl std::error::Error for Overloaded {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.rejection)
    }
}

/// The adaptive throttle refused the call locally, because the backend has been refusing
/// calls; the inner service was not called.
///
/// Carries a core [`Rejection`] (kind `Throttled`) in its
/// [`source`](std::error::Error::source).
#[derive(Debug, Clone, PartialEq)]
pub struct Throttled {
    rejection: Rejection,
}

impl Throttled {
    pub(crate) fn new(rejection: Rejection) -> Self {
        Throttled { rejection }
    }

    /// The common view of the refusal.
    pub fn rejection(&self) -> &Rejection {
        &self.rejection
    }
}

impl fmt::Display for Throttled {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "adaptive throttle `{}` refused the call locally (the backend has been refusing)",
            self.rejection.layer()
        )
    }
}

impl std::error::Error for Throttled {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.rejection)
    }
}
