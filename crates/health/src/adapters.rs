//! Probes for bulwark components' handles (features `breaker`, `bulkhead`, `shed`,
//! `retry`), and degradation switches (feature `degrade`).

#[cfg(any(
    feature = "breaker",
    feature = "bulkhead",
    feature = "shed",
    feature = "retry",
    feature = "degrade"
))]
use crate::{kind::Kind, Health, Report, Status};

#[cfg(any(
    feature = "breaker",
    feature = "bulkhead",
    feature = "shed",
    feature = "retry"
))]
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
        let kind = Kind::Breaker(handle.clone());
        self.add(name.into(), required, kind, move || {
            let state = handle.state();
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
        let kind = Kind::Bulkhead(handle.clone());
        self.add(name.into(), false, kind, move || {
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
        let kind = Kind::Shed(handle.clone());
        self.add(name.into(), false, kind, move || {
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

    /// Reports the breakers of a keyed breaker (one per host, route or tenant) as one
    /// component: `Up` while every key is closed, `Degraded` when any is not (never
    /// `Down` and never required: one key's dependency failing is not the process's), with
    /// the detail `"12 keys, 1 not closed"`. Keys are shown by their `Display`.
    ///
    /// ```
    /// use std::time::Duration;
    /// use tower_bulwark_breaker::{CircuitBreakerLayer, KeyedCircuitBreakerLayer};
    /// use tower_bulwark_health::{Health, Status};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let per_host = KeyedCircuitBreakerLayer::new(
    ///     CircuitBreakerLayer::builder().name("upstream"),
    ///     |host: &String| host.clone(),
    ///     1_000,
    ///     Duration::from_secs(600),
    /// )
    /// .unwrap();
    /// let health = Health::new();
    /// health.add_keyed_breaker("upstreams", per_host.handle());
    /// let (name, required, report) = &health.reports()[0];
    /// assert_eq!((name.as_str(), *required, report.status), ("upstreams", false, Status::Up));
    /// assert_eq!(report.detail, "0 keys, 0 not closed");
    /// # }
    /// ```
    #[cfg(feature = "breaker")]
    pub fn add_keyed_breaker<K>(
        &self,
        name: impl Into<String>,
        handle: tower_bulwark_breaker::KeyedHandle<K>,
    ) where
        K: std::fmt::Display + std::hash::Hash + Eq + Clone + Send + Sync + 'static,
    {
        use tower_bulwark_breaker::State;
        let kind = Kind::KeyedBreaker(Box::new(handle.clone()));
        self.add(name.into(), false, kind, move || {
            let keys = handle.keys();
            let not_closed = keys
                .iter()
                .filter_map(|key| handle.get(key))
                .filter(|breaker| breaker.state() != State::Closed)
                .count();
            let status = if not_closed > 0 {
                Status::Degraded
            } else {
                Status::Up
            };
            Report::new(
                status,
                format!("{} keys, {not_closed} not closed", keys.len()),
            )
        });
    }

    /// Reports a retry budget: `Up`, `Degraded` while less than one retry is left in it
    /// (retries are being refused), with the detail `"balance 12.5, 3 refused"`. Never
    /// required: a spent budget is the budget doing its job.
    ///
    /// ```
    /// use std::sync::Arc;
    /// use std::time::Duration;
    /// use tower_bulwark_health::{Health, Status};
    /// use tower_bulwark_retry::RatioBudget;
    ///
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() {
    /// let budget = Arc::new(RatioBudget::new(Duration::from_secs(10), 0, 0.2).unwrap());
    /// let health = Health::new();
    /// health.add_budget("retries", budget.clone());
    /// assert!(!budget.withdraw());
    /// let (_, _, report) = &health.reports()[0];
    /// assert_eq!((report.status, report.detail.as_str()), (Status::Degraded, "balance 0.0, 1 refused"));
    /// # }
    /// ```
    #[cfg(feature = "retry")]
    pub fn add_budget(
        &self,
        name: impl Into<String>,
        budget: std::sync::Arc<tower_bulwark_retry::RatioBudget>,
    ) {
        let kind = Kind::Budget(budget.clone());
        self.add(name.into(), false, kind, move || {
            let balance = budget.balance();
            let (_, refused) = budget.counts();
            let status = if balance < 1.0 {
                Status::Degraded
            } else {
                Status::Up
            };
            Report::new(status, format!("balance {balance:.1}, {refused} refused"))
        });
    }
}

#[cfg(feature = "degrade")]
impl Health {
    /// Reports every degradation switch of `switches`, each as a component named
    /// `"<switches>/<switch>"`: `Up` when on, `Degraded` when at any other level (never
    /// required: a feature switched off is the service degrading as designed), with its
    /// state, mode, reason and last change as the detail:
    /// `"off (automatic): shop p99 latency 812 ms >= 500 ms; changed 12.5s ago"`.
    ///
    /// The probes do not keep the switches alive; once they are dropped, each reports
    /// `Degraded` with the detail `"switches dropped"`.
    ///
    /// ```
    /// use tower_bulwark_degrade::Switches;
    /// use tower_bulwark_health::{Health, Status};
    ///
    /// let switches = Switches::builder().name("shop").switch("reviews").manual_evaluation().build().unwrap();
    /// let health = Health::new();
    /// health.add_switches(&switches);
    /// switches.switch("reviews").unwrap().force_off();
    /// let (name, required, report) = &health.reports()[0];
    /// assert_eq!((name.as_str(), *required, report.status), ("shop/reviews", false, Status::Degraded));
    /// assert!(report.detail.starts_with("off (forced): forced off by an operator; changed "));
    /// ```
    pub fn add_switches(&self, switches: &tower_bulwark_degrade::Switches) {
        for status in switches.statuses() {
            let Some(switch) = switches.switch(&status.name) else {
                continue;
            };
            let switch = switch.downgrade();
            let name = format!("{}/{}", switches.name(), status.name);
            let kind = Kind::Switch {
                switches: switches.name().to_string(),
                switch: status.name.to_string(),
                handle: switch.clone(),
            };
            self.add(name, false, kind, move || {
                let Some(switch) = switch.upgrade() else {
                    return Report::new(Status::Degraded, "switches dropped");
                };
                let status = switch.status();
                let changed = match status.changed_at {
                    Some(at) => format!("changed {:.1}s ago", at.elapsed().as_secs_f64()),
                    None => "never changed".to_string(),
                };
                let health = if status.is_on() {
                    Status::Up
                } else {
                    Status::Degraded
                };
                Report::new(health, format!("{status}; {changed}"))
            });
        }
    }

    /// A degradation [`Signal`](tower_bulwark_degrade::Signal) from the health of the
    /// component named `component` (a probe or a cached check): 0 up, 0.5 degraded, 1
    /// down. While no component has that name it reads NaN, which holds its tiers as they
    /// are. `Threshold::new(1.0, 0.0)` switches a feature off while the check is down and
    /// back on once it is up.
    ///
    /// The signal keeps this registry alive (it reads it); probes of
    /// [`add_switches`](Health::add_switches) do not keep switches alive, so reporting
    /// switches driven by this signal makes no cycle.
    pub fn status_signal(&self, component: impl Into<String>) -> tower_bulwark_degrade::Signal {
        let component = component.into();
        let label = format!("health of `{component}`");
        let health = self.clone();
        tower_bulwark_degrade::Signal::new(label, move || {
            let reports = health.reports();
            let Some((_, _, report)) = reports.iter().find(|(name, ..)| *name == component) else {
                return f64::NAN;
            };
            match report.status {
                Status::Up => 0.0,
                Status::Degraded => 0.5,
                Status::Down => 1.0,
            }
        })
    }
}
