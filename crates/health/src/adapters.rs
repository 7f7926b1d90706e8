//! Probes for bulwark components' handles (features `breaker`, `bulkhead`, `shed`).

#[cfg(any(feature = "breaker", feature = "bulkhead", feature = "shed"))]
use crate::{Health, Report, Status};

#[cfg(any(feature = "breaker", feature = "bulkhead", feature = "shed"))]
impl Health {
    /// Reports a circuit breaker: `Up` closed, `Degraded` half-open or disabled, `Down`
    /// open (as a required component, an open breaker makes the process not ready).
    #[cfg(feature = "breaker")]
    pub fn add_breaker(
        &self,
        name: impl Into<String>,
        required: bool,
        handle: tower_bulwark_breaker::BreakerHandle,
    ) {
        use tower_bulwark_breaker::State;
        self.add_probe(name, required, move || {
            let state = handle.snapshot().state;
            let status = match state {
                State::Closed => Status::Up,
                State::HalfOpen | State::Disabled => Status::Degraded,
                _ => Status::Down,
            };
            Report::new(status, format!("circuit {state}"))
        });
    }

    /// Reports a bulkhead: `Up` with free permits, `Degraded` when full or queueing.
    #[cfg(feature = "bulkhead")]
    pub fn add_bulkhead(
        &self,
        name: impl Into<String>,
        handle: tower_bulwark_bulkhead::BulkheadHandle,
    ) {
        self.add_probe(name, false, move || {
            let snapshot = handle.snapshot();
            let status = if snapshot.available == 0 || snapshot.queued > 0 {
                Status::Degraded
            } else {
                Status::Up
            };
            Report::new(
                status,
                format!(
                    "{} of {} in flight, {} queued",
                    snapshot.in_flight, snapshot.max_concurrent, snapshot.queued
                ),
            )
        });
    }

    /// Reports a shedding layer: `Degraded` while it is at its limit.
    #[cfg(feature = "shed")]
    pub fn add_shed(&self, name: impl Into<String>, handle: tower_bulwark_shed::ShedHandle) {
        self.add_probe(name, false, move || {
            let snapshot = handle.snapshot();
            let status = if snapshot.in_flight >= snapshot.limit {
                Status::Degraded
            } else {
                Status::Up
            };
            Report::new(
                status,
                format!("{} in flight, limit {}", snapshot.in_flight, snapshot.limit),
            )
        });
    }
}
