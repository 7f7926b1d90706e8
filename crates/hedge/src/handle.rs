//! [`HedgeHandle`] and its [`Snapshot`].

use std::fmt;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;
use tower_bulwark_core::Name;

use crate::events::NotSent;
use crate::shared::{DelayRule, View};

/// A handle on a [`HedgeLayer`](crate::HedgeLayer)'s state: its name and a snapshot of its
/// counters. Cheap to clone.
#[derive(Clone)]
pub struct HedgeHandle {
    shared: Arc<dyn View>,
}

/// The counters of a hedge layer, since it was built.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct Snapshot {
    /// Calls made.
    pub calls: u64,
    /// Calls whose future is still alive.
    pub in_flight: u64,
    /// Hedges sent.
    pub sent: u64,
    /// Hedged calls the first attempt answered.
    pub primary_wins: u64,
    /// Hedged calls a hedge answered.
    pub hedge_wins: u64,
    /// Attempts cancelled because another won.
    pub cancelled: u64,
    /// Hedges not sent, by reason (see [`NotSent`]).
    pub not_sent: Vec<(NotSent, u64)>,
    /// Pauses begun after overloaded answers.
    pub pauses: u64,
    /// The delay in force.
    pub delay: Duration,
    /// Whether the delay was learned from enough latencies (always `true` for a fixed
    /// delay).
    pub delay_learned: bool,
    /// Hedges the budget holds now (fractional).
    pub budget: f64,
    /// How much longer hedging is paused.
    pub paused_for: Duration,
}

impl Snapshot {
    /// Hedges not sent for `reason`.
    pub fn not_sent(&self, reason: NotSent) -> u64 {
        self.not_sent
            .iter()
            .find(|(r, _)| *r == reason)
            .map_or(0, |(_, n)| *n)
    }
}

impl HedgeHandle {
    pub(crate) fn new(shared: Arc<dyn View>) -> Self {
        HedgeHandle { shared }
    }

    /// The layer's name.
    pub fn name(&self) -> &Name {
        &self.shared.state().reporter.name
    }

    /// The counters now.
    pub fn snapshot(&self) -> Snapshot {
        let state = self.shared.state();
        let counters = &state.counters;
        let now = Instant::now();
        Snapshot {
            calls: counters.calls.load(Relaxed),
            in_flight: counters.in_flight.load(Relaxed),
            sent: counters.sent.load(Relaxed),
            primary_wins: counters.primary_wins.load(Relaxed),
            hedge_wins: counters.hedge_wins.load(Relaxed),
            cancelled: counters.cancelled.load(Relaxed),
            not_sent: NotSent::ALL
                .iter()
                .map(|reason| (*reason, counters.not_sent[reason.index()].load(Relaxed)))
                .collect(),
            pauses: counters.pauses.load(Relaxed),
            delay: state.delay(),
            delay_learned: match &state.delay {
                DelayRule::Fixed(_) => true,
                DelayRule::Learned(learned) => learned.trusted(),
            },
            budget: state.budget.balance(now),
            paused_for: state.paused_for(now),
        }
    }
}

impl fmt::Debug for HedgeHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HedgeHandle")
            .field("name", self.name())
            .finish_non_exhaustive()
    }
}
