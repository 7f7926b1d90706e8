//! The drain's events: when it started, how it is going, how it ended, so a shutdown's
//! log says why it took the time it took.

use std::fmt;
use std::time::Duration;

use tower_bulwark_core::Event;
use tracing::Level;

/// What a [`DrainLayer`](crate::DrainLayer) reports to the listeners of
/// [`DrainLayer::on_event`](crate::DrainLayer::on_event).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum DrainEvent {
    /// [`DrainHandle::drain`](crate::DrainHandle::drain) was called (the first time).
    Started {
        /// Requests in flight then.
        in_flight: usize,
    },
    /// [`DrainHandle::drained`](crate::DrainHandle::drained) is still waiting: once a
    /// second.
    Waiting {
        /// Requests still in flight.
        in_flight: usize,
        /// How long it has waited so far.
        waited: Duration,
    },
    /// `drained` returned.
    Finished {
        /// Requests still in flight when the grace period ended (0: all finished).
        cut: usize,
        /// How long it waited.
        waited: Duration,
    },
}

impl fmt::Display for DrainEvent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DrainEvent::Started { in_flight } => {
                write!(f, "drain started with {in_flight} requests in flight")
            }
            DrainEvent::Waiting { in_flight, waited } => {
                write!(
                    f,
                    "draining: {in_flight} requests in flight after {waited:?}"
                )
            }
            DrainEvent::Finished { cut: 0, waited } => write!(f, "drained in {waited:?}"),
            DrainEvent::Finished { cut, waited } => {
                write!(f, "drain ended after {waited:?} with {cut} requests cut")
            }
        }
    }
}

impl Event for DrainEvent {
    fn layer_kind(&self) -> &'static str {
        "drain"
    }

    /// `INFO`; `WARN` when requests were cut.
    fn level(&self) -> Level {
        match self {
            DrainEvent::Finished { cut, .. } if *cut > 0 => Level::WARN,
            _ => Level::INFO,
        }
    }
}
