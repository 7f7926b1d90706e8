//! The chaos layer's events: each fault it injects, so a game day's log says what was
//! done to the service and when.

use std::fmt;
use std::time::Duration;

use tower_bulwark_core::Event;
use tracing::Level;

/// A fault a chaos layer injected into one call (drawn at its rates, or asked for by a
/// request's header with targeting enabled).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ChaosEvent {
    /// The call failed without reaching the service (an HTTP chaos layer answered its
    /// configured status or gRPC code instead).
    ErrorInjected,
    /// The call was aborted without reaching the service.
    Aborted,
    /// The call was held back before going on.
    Delayed {
        /// For how long.
        delay: Duration,
    },
}

impl fmt::Display for ChaosEvent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ChaosEvent::ErrorInjected => f.write_str("chaos: error injected"),
            ChaosEvent::Aborted => f.write_str("chaos: call aborted"),
            ChaosEvent::Delayed { delay } => write!(f, "chaos: call delayed by {delay:?}"),
        }
    }
}

impl Event for ChaosEvent {
    fn layer_kind(&self) -> &'static str {
        "chaos"
    }

    /// Per call: `DEBUG`.
    fn level(&self) -> Level {
        Level::DEBUG
    }
}
