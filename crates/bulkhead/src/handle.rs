use std::fmt;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Duration;

use tower_bulwark_core::config::non_zero;
use tower_bulwark_core::ConfigError;

use crate::compartment::Compartment;

/// Reads a bulkhead and changes its limits at runtime. Cheap to clone.
#[derive(Clone)]
pub struct BulkheadHandle {
    compartment: Arc<Compartment>,
}

/// A point-in-time view of a bulkhead.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct Snapshot {
    /// Calls holding a permit.
    pub in_flight: usize,
    /// Calls waiting for one.
    pub queued: usize,
    /// Free permits.
    pub available: usize,
    /// The limit on calls in flight.
    pub max_concurrent: usize,
    /// The limit on waiting calls.
    pub max_queue: usize,
    /// The most calls ever in flight at once: read on every core whenever one core's count
    /// passes its own high-water mark, and on each snapshot (exact while calls run on one
    /// core; with several, a total that grows while no core passes its mark is seen only
    /// if it still holds at the next snapshot).
    pub peak_in_flight: usize,
    /// Calls refused because the queue was full.
    pub rejected_queue_full: u64,
    /// Calls refused after waiting `max_wait`.
    pub rejected_wait_timeout: u64,
    /// Calls refused for their deadline.
    pub rejected_deadline: u64,
    /// The average wait of calls that got a permit after queueing (weighted to recent ones).
    pub mean_wait: Duration,
}

impl BulkheadHandle {
    pub(crate) fn new(compartment: Arc<Compartment>) -> Self {
        BulkheadHandle { compartment }
    }

    /// The bulkhead's name.
    pub fn name(&self) -> &str {
        &self.compartment.name
    }

    /// Counts and limits.
    pub fn snapshot(&self) -> Snapshot {
        let c = &self.compartment;
        let in_flight = c.in_flight();
        Snapshot {
            in_flight,
            queued: c.queued(),
            available: c.max_concurrent().saturating_sub(in_flight),
            max_concurrent: c.max_concurrent(),
            max_queue: c.max_queue(),
            peak_in_flight: c.peak_in_flight(),
            rejected_queue_full: c.stats.rejected_queue_full.load(Relaxed),
            rejected_wait_timeout: c.stats.rejected_wait_timeout.load(Relaxed),
            rejected_deadline: c.stats.rejected_deadline.load(Relaxed),
            mean_wait: c.mean_wait(),
        }
    }

    /// Changes the limits without dropping calls in flight or waiting: a raised limit
    /// admits waiters at once, a lowered one lets the calls in flight finish and admits no
    /// more until they are below it.
    pub fn set_limits(&self, max_concurrent: usize, max_queue: usize) -> Result<(), ConfigError> {
        non_zero("max_concurrent", max_concurrent)?;
        self.compartment.set_limits(max_concurrent, max_queue);
        Ok(())
    }
}

impl fmt::Debug for BulkheadHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BulkheadHandle")
            .field("name", &self.name())
            .field("in_flight", &self.compartment.in_flight())
            .finish()
    }
}
