//! One reading of a component, typed by its kind: the numbers of its object in the state
//! document and of its series.

#[cfg(feature = "degrade")]
use tokio::time::Instant;

use crate::json::Value;
use crate::kind::Kind;
use crate::Status;

/// A component's numbers now.
pub(super) enum Reading {
    Check,
    #[cfg(feature = "breaker")]
    Breaker(tower_bulwark_breaker::Snapshot),
    #[cfg(feature = "breaker")]
    KeyedBreaker(Keys),
    #[cfg(feature = "bulkhead")]
    Bulkhead(tower_bulwark_bulkhead::Snapshot),
    #[cfg(feature = "shed")]
    Shed(tower_bulwark_shed::Snapshot),
    #[cfg(feature = "retry")]
    Budget {
        balance: f64,
        allowed: u64,
        refused: u64,
    },
    #[cfg(feature = "degrade")]
    Switch {
        switches: String,
        switch: String,
        /// `None` once the switches are dropped.
        status: Option<tower_bulwark_degrade::SwitchStatus>,
    },
}

/// The breakers of a keyed breaker.
#[cfg(feature = "breaker")]
pub(super) struct Keys {
    /// Breakers alive.
    keys: usize,
    /// Of them, those not closed.
    not_closed: usize,
    /// The most notable: not closed first, then the busiest.
    shown: Vec<(String, tower_bulwark_breaker::Snapshot)>,
}

/// A number a series is drawn from.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) enum Measure {
    /// Drawn as read.
    Gauge(f64),
    /// A count since start, drawn as its growth per second.
    #[cfg_attr(
        not(any(feature = "bulkhead", feature = "shed", feature = "retry")),
        allow(dead_code)
    )]
    Counter(u64),
}

impl Reading {
    /// Reads `kind`, showing at most `top_keys` breakers of a keyed breaker (none: only
    /// their states are read).
    #[cfg_attr(not(feature = "breaker"), allow(unused_variables))]
    pub(super) fn of(kind: &Kind, top_keys: usize) -> Reading {
        match kind {
            Kind::Check => Reading::Check,
            #[cfg(feature = "breaker")]
            Kind::Breaker(handle) => Reading::Breaker(handle.snapshot()),
            #[cfg(feature = "breaker")]
            Kind::KeyedBreaker(keyed) => {
                Reading::KeyedBreaker(Keys::of(keyed.breakers(), top_keys))
            }
            #[cfg(feature = "bulkhead")]
            Kind::Bulkhead(handle) => Reading::Bulkhead(handle.snapshot()),
            #[cfg(feature = "shed")]
            Kind::Shed(handle) => Reading::Shed(handle.snapshot()),
            #[cfg(feature = "retry")]
            Kind::Budget(budget) => {
                let (allowed, refused) = budget.counts();
                Reading::Budget {
                    balance: budget.balance(),
                    allowed,
                    refused,
                }
            }
            #[cfg(feature = "degrade")]
            Kind::Switch {
                switches,
                switch,
                handle,
            } => Reading::Switch {
                switches: switches.clone(),
                switch: switch.clone(),
                status: handle.upgrade().map(|switch| switch.status()),
            },
        }
    }

    /// The numbers of the component's series, labelled; `status` is its report's.
    pub(super) fn measures(&self, status: Status) -> Vec<(&'static str, Measure)> {
        use Measure::*;
        match self {
            Reading::Check => vec![("status", Gauge(status_number(status)))],
            #[cfg(feature = "breaker")]
            Reading::Breaker(snapshot) if snapshot.windowed => vec![(
                "failure rate %",
                Gauge(snapshot.failure_rate.unwrap_or(0.0) * 100.0),
            )],
            // No window, so no rate: it trips on failures in a row.
            #[cfg(feature = "breaker")]
            Reading::Breaker(snapshot) => vec![(
                "failures in a row",
                Gauge(f64::from(snapshot.consecutive_failures)),
            )],
            #[cfg(feature = "breaker")]
            Reading::KeyedBreaker(keys) => {
                vec![("keys not closed", Gauge(keys.not_closed as f64))]
            }
            #[cfg(feature = "bulkhead")]
            Reading::Bulkhead(snapshot) => vec![
                ("in flight", Gauge(snapshot.in_flight as f64)),
                (
                    "refused/s",
                    Counter(
                        snapshot
                            .rejected_queue_full
                            .saturating_add(snapshot.rejected_wait_timeout)
                            .saturating_add(snapshot.rejected_deadline),
                    ),
                ),
            ],
            #[cfg(feature = "shed")]
            Reading::Shed(snapshot) => vec![
                ("limit", Gauge(snapshot.limit as f64)),
                ("in flight", Gauge(snapshot.in_flight as f64)),
                (
                    "shed/s",
                    Counter(snapshot.shed.iter().fold(0u64, |a, n| a.saturating_add(*n))),
                ),
            ],
            #[cfg(feature = "retry")]
            Reading::Budget {
                balance, refused, ..
            } => vec![
                ("balance", Gauge(*balance)),
                ("refused/s", Counter(*refused)),
            ],
            #[cfg(feature = "degrade")]
            Reading::Switch { status, .. } => vec![(
                "level",
                // Points are numbers: switches dropped draw as on.
                Gauge(status.as_ref().map_or(0.0, |s| f64::from(s.level))),
            )],
        }
    }

    /// The kind's own object in the state document, named after the kind; `None` for a
    /// check.
    pub(super) fn object(&self) -> Option<Value> {
        match self {
            Reading::Check => None,
            #[cfg(feature = "breaker")]
            Reading::Breaker(snapshot) => Some(breaker(snapshot, None)),
            #[cfg(feature = "breaker")]
            Reading::KeyedBreaker(keys) => Some(Value::Object(vec![
                ("keys", keys.keys.into()),
                ("not_closed", keys.not_closed.into()),
                (
                    "shown",
                    Value::Array(
                        keys.shown
                            .iter()
                            .map(|(key, snapshot)| breaker(snapshot, Some(key)))
                            .collect(),
                    ),
                ),
            ])),
            #[cfg(feature = "bulkhead")]
            Reading::Bulkhead(s) => Some(Value::Object(vec![
                ("in_flight", s.in_flight.into()),
                ("max_concurrent", s.max_concurrent.into()),
                ("queued", s.queued.into()),
                ("max_queue", s.max_queue.into()),
                ("available", s.available.into()),
                ("peak_in_flight", s.peak_in_flight.into()),
                (
                    "rejected",
                    Value::Object(vec![
                        ("queue_full", s.rejected_queue_full.into()),
                        ("wait_timeout", s.rejected_wait_timeout.into()),
                        ("deadline", s.rejected_deadline.into()),
                    ]),
                ),
                ("mean_wait_ms", (s.mean_wait.as_secs_f64() * 1000.0).into()),
            ])),
            #[cfg(feature = "shed")]
            Reading::Shed(s) => Some(Value::Object(vec![
                ("limit", s.limit.into()),
                ("in_flight", s.in_flight.into()),
                (
                    "in_flight_by_tier",
                    tiers(s.in_flight_by_tier.map(|n| n as u64)),
                ),
                ("shed_by_tier", tiers(s.shed)),
            ])),
            #[cfg(feature = "retry")]
            Reading::Budget {
                balance,
                allowed,
                refused,
            } => Some(Value::Object(vec![
                ("balance", (*balance).into()),
                ("allowed", (*allowed).into()),
                ("refused", (*refused).into()),
            ])),
            #[cfg(feature = "degrade")]
            Reading::Switch {
                switches,
                switch,
                status,
            } => Some(switch_object(switches, switch, status.as_ref())),
        }
    }

    /// A switch's status, whose level changes are events.
    #[cfg(feature = "degrade")]
    pub(super) fn switch_status(&self) -> Option<&tower_bulwark_degrade::SwitchStatus> {
        match self {
            Reading::Switch { status, .. } => status.as_ref(),
            _ => None,
        }
    }
}

/// 0 up, 1 degraded, 2 down.
fn status_number(status: Status) -> f64 {
    match status {
        Status::Up => 0.0,
        Status::Degraded => 1.0,
        Status::Down => 2.0,
    }
}

#[cfg(feature = "breaker")]
impl Keys {
    fn of(breakers: Vec<(String, tower_bulwark_breaker::BreakerHandle)>, top: usize) -> Keys {
        use tower_bulwark_breaker::{Snapshot, State};
        let keys = breakers.len();
        if top == 0 {
            let not_closed = breakers
                .iter()
                .filter(|(_, handle)| handle.state() != State::Closed)
                .count();
            return Keys {
                keys,
                not_closed,
                shown: Vec::new(),
            };
        }
        let mut shown: Vec<(String, Snapshot)> = breakers
            .into_iter()
            .map(|(key, handle)| (key, handle.snapshot()))
            .collect();
        let not_closed = shown
            .iter()
            .filter(|(_, s)| s.state != State::Closed)
            .count();
        // Not closed first, then the busiest (a breaker without a window counts no calls:
        // then the most failures in a row, the most refused), then by key.
        let notable = |(a_key, a): &(String, Snapshot), (b_key, b): &(String, Snapshot)| {
            (b.state != State::Closed)
                .cmp(&(a.state != State::Closed))
                .then(b.calls.cmp(&a.calls))
                .then(b.consecutive_failures.cmp(&a.consecutive_failures))
                .then(b.rejected.cmp(&a.rejected))
                .then_with(|| a_key.cmp(b_key))
        };
        // Only the top ones are ordered: a keyed breaker may hold thousands of keys.
        if shown.len() > top {
            shown.select_nth_unstable_by(top - 1, notable);
            shown.truncate(top);
        }
        shown.sort_by(notable);
        Keys {
            keys,
            not_closed,
            shown,
        }
    }
}

/// A breaker's object; with `key` for one breaker of a keyed breaker.
#[cfg(feature = "breaker")]
fn breaker(s: &tower_bulwark_breaker::Snapshot, key: Option<&str>) -> Value {
    let millis = |d: std::time::Duration| u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
    let mut fields = Vec::with_capacity(15);
    if let Some(key) = key {
        fields.push(("key", key.into()));
    }
    fields.extend([
        ("state", s.state.as_str().into()),
        ("windowed", s.windowed.into()),
        ("failure_rate", s.failure_rate.into()),
        ("slow_call_rate", s.slow_call_rate.into()),
        ("calls", s.calls.into()),
        ("failures", s.failures.into()),
        ("slow_calls", s.slow_calls.into()),
        ("consecutive_failures", s.consecutive_failures.into()),
        ("time_in_state_ms", millis(s.time_in_state).into()),
        ("next_probe_in_ms", s.next_probe_in.map(millis).into()),
        ("probes_in_flight", s.probes_in_flight.into()),
        ("rejected", s.rejected.into()),
        ("trips", s.trips.into()),
    ]);
    Value::Object(fields)
}

/// Counts by tier, named.
#[cfg(feature = "shed")]
fn tiers(counts: [u64; 4]) -> Value {
    Value::Object(vec![
        ("sheddable", counts[0].into()),
        ("sheddable_plus", counts[1].into()),
        ("critical", counts[2].into()),
        ("critical_plus", counts[3].into()),
    ])
}

#[cfg(feature = "degrade")]
fn switch_object(
    switches: &str,
    switch: &str,
    status: Option<&tower_bulwark_degrade::SwitchStatus>,
) -> Value {
    use tower_bulwark_degrade::Mode;
    let names = [("switches", switches.into()), ("switch", switch.into())];
    let Some(status) = status else {
        // The switches are gone: names only, so the page still has an object to read.
        return Value::Object(
            names
                .into_iter()
                .chain([
                    ("level", Value::Null),
                    ("max_level", Value::Null),
                    ("state", "dropped".into()),
                    ("mode", Value::Null),
                    ("automatic_level", Value::Null),
                    ("reason", "switches dropped".into()),
                    ("changed_ago_ms", Value::Null),
                ])
                .collect(),
        );
    };
    let mode = match status.mode {
        Mode::Automatic => "automatic",
        Mode::Forced(_) => "forced",
    };
    let changed_ago = status.changed_at.map(|at| {
        u64::try_from(Instant::now().saturating_duration_since(at).as_millis()).unwrap_or(u64::MAX)
    });
    Value::Object(
        names
            .into_iter()
            .chain([
                ("level", status.level.into()),
                ("max_level", status.max_level.into()),
                ("state", status.state().into()),
                ("mode", mode.into()),
                ("automatic_level", status.automatic_level.into()),
                ("reason", status.reason.to_string().into()),
                ("changed_ago_ms", changed_ago.into()),
            ])
            .collect(),
    )
}
