//! [`CircuitOpen`]: the error of a refused call.

use std::fmt;
use std::time::Duration;

use tower_bulwark_core::Rejection;

use crate::State;

/// The breaker refused the call; the inner service was not called.
///
/// Carries a core [`Rejection`] (kind `CircuitOpen`, with `retry_after` = time until the
/// next probe when known) in its [`source`](std::error::Error::source), so
/// `tower_bulwark_core::find_rejection` and `HandleRejectionsLayer` see it.
#[derive(Debug, Clone, PartialEq)]
pub struct CircuitOpen {
    state: State,
    rejection: Rejection,
}

impl CircuitOpen {
    pub(crate) fn new(state: State, rejection: Rejection) -> Self {
        CircuitOpen { state, rejection }
    }

    /// The state that refused the call: `Open`, `HalfOpen` (all probe slots busy),
    /// `ForcedOpen`, or `Closed` (refused by the recovery ramp).
    pub fn state(&self) -> State {
        self.state
    }

    /// Time until the breaker lets a probe through, when known.
    pub fn retry_after(&self) -> Option<Duration> {
        self.rejection.retry_after()
    }

    /// The common view of the refusal.
    pub fn rejection(&self) -> &Rejection {
        &self.rejection
    }
}

impl fmt::Display for CircuitOpen {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "circuit breaker `{}` refused the call ({})",
            self.rejection.layer(),
            self.state
        )
    }
}

impl std::error::Error for CircuitOpen {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.rejection)
    }
}
