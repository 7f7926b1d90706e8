//! [`ShedHandle`]: reads and steers a shedding layer's limit.

use tower_bulwark_core::Criticality;

use crate::limiter::{tier_index, Limiter};
use crate::RttEstimates;
use std::sync::Arc;

/// Reads a shedding layer's state, for dashboards, health endpoints and tests; can set the
/// limit by hand (it moves again with the next sample, unless the limit is fixed).
#[derive(Debug, Clone)]
pub struct ShedHandle {
    limiter: Arc<Limiter>,
}

/// A reading of a shedding layer.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct Snapshot {
    /// The current concurrency limit.
    pub limit: usize,
    /// Calls in flight.
    pub in_flight: usize,
    /// Calls in flight by tier, least important first:
    /// `[sheddable, sheddable_plus, critical, critical_plus]`.
    pub in_flight_by_tier: [usize; 4],
    /// The algorithm's latency estimates.
    pub rtt: RttEstimates,
    /// Calls shed (in shadow mode: that would have been), by tier, least important first:
    /// `[sheddable, sheddable_plus, critical, critical_plus]`.
    pub shed: [u64; 4],
}

impl Snapshot {
    /// Calls of `criticality` shed so far.
    pub fn shed_of(&self, criticality: Criticality) -> u64 {
        self.shed[tier_index(criticality)]
    }
}

impl ShedHandle {
    pub(crate) fn new(limiter: Arc<Limiter>) -> Self {
        ShedHandle { limiter }
    }

    /// The layer's name (in its rejections, events and metric labels).
    pub fn name(&self) -> &str {
        &self.limiter.name
    }

    /// The layer's state now.
    pub fn snapshot(&self) -> Snapshot {
        Snapshot {
            limit: self.limiter.limit(),
            in_flight: self.limiter.in_flight(),
            in_flight_by_tier: self.limiter.in_flight_by_tier(),
            rtt: self.limiter.rtt(),
            shed: self.limiter.shed_by_tier(),
        }
    }

    /// Sets the limit (at least 1). A fixed limit keeps it; an adaptive algorithm replaces
    /// it with its own estimate at the next window it learns from. Announced as
    /// `ShedEvent::LimitChanged`, in order with the learned changes.
    pub fn set_limit(&self, limit: usize) {
        self.limiter.set_limit(limit);
    }
}
