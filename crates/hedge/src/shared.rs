//! The state shared by every service one [`HedgeLayer`](crate::HedgeLayer) builds: the delay,
//! the budget, the overload pause, the counters.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use tokio::time::Instant;
use tower_bulwark_core::budget::RatioLedger;

use crate::events::{HedgeEvent, NotSent, Reporter, Winner};
use crate::histogram::Learned;

/// The longest pause an answer can ask for: a `Retry-After` of a day pauses hedging for
/// this long, then the next overloaded answer pauses it again.
pub const MAX_PAUSE: Duration = Duration::from_secs(60);

/// When hedges are sent.
pub(crate) enum DelayRule {
    Fixed(Duration),
    Learned(Learned),
}

/// The layer's counters (std atomics: counts, not decisions; relaxed).
#[derive(Default)]
pub(crate) struct Counters {
    pub(crate) calls: AtomicU64,
    pub(crate) in_flight: AtomicU64,
    pub(crate) sent: AtomicU64,
    pub(crate) primary_wins: AtomicU64,
    pub(crate) hedge_wins: AtomicU64,
    pub(crate) cancelled: AtomicU64,
    pub(crate) not_sent: [AtomicU64; 5],
    pub(crate) pauses: AtomicU64,
}

/// Everything but the request and answer rules.
pub(crate) struct State {
    pub(crate) reporter: Reporter,
    pub(crate) delay: DelayRule,
    pub(crate) max_hedges: u32,
    /// The hedge budget: core's ratio ledger (the retry budget's), one CAS per hedge.
    pub(crate) budget: RatioLedger,
    pub(crate) default_pause: Duration,
    pub(crate) margin: Duration,
    start: Instant,
    /// Nanoseconds after `start` until which hedging is paused.
    paused_until: AtomicU64,
    pub(crate) counters: Counters,
}

/// The state plus the rules.
pub(crate) struct Shared<M, O> {
    pub(crate) state: State,
    pub(crate) may_hedge: M,
    pub(crate) overload: O,
}

/// The state, seen without the rules' types (the handle).
pub(crate) trait View: Send + Sync {
    fn state(&self) -> &State;
}

impl<M: Send + Sync, O: Send + Sync> View for Shared<M, O> {
    fn state(&self) -> &State {
        &self.state
    }
}

fn nanos(duration: Duration) -> u64 {
    u64::try_from(duration.as_nanos()).unwrap_or(u64::MAX)
}

impl State {
    pub(crate) fn new(
        reporter: Reporter,
        delay: DelayRule,
        max_hedges: u32,
        budget: RatioLedger,
        default_pause: Duration,
        margin: Duration,
    ) -> Self {
        State {
            reporter,
            delay,
            max_hedges,
            budget,
            default_pause,
            margin,
            start: Instant::now(),
            paused_until: AtomicU64::new(0),
            counters: Counters::default(),
        }
    }

    /// The delay in force.
    #[inline]
    pub(crate) fn delay(&self) -> Duration {
        match &self.delay {
            DelayRule::Fixed(delay) => *delay,
            DelayRule::Learned(learned) => learned.delay(),
        }
    }

    /// Records a first attempt's latency (learned delays only).
    #[inline]
    pub(crate) fn record(&self, now: Instant, latency: Duration) {
        if let DelayRule::Learned(learned) = &self.delay {
            learned.record(now, latency);
        }
    }

    fn since_start(&self, now: Instant) -> u64 {
        nanos(now.saturating_duration_since(self.start))
    }

    /// Whether hedging is paused at `now`.
    #[inline]
    pub(crate) fn is_paused(&self, now: Instant) -> bool {
        self.since_start(now) < self.paused_until.load(Relaxed)
    }

    /// How much longer hedging is paused.
    pub(crate) fn paused_for(&self, now: Instant) -> Duration {
        Duration::from_nanos(
            self.paused_until
                .load(Relaxed)
                .saturating_sub(self.since_start(now)),
        )
    }

    /// An answer said the dependency is overloaded: pause hedging for its pushback (at most
    /// [`MAX_PAUSE`]) or the default pause, unless already paused longer.
    #[cold]
    pub(crate) fn pause(&self, now: Instant, pushback: Option<Duration>) {
        let pause = pushback.unwrap_or(self.default_pause).min(MAX_PAUSE);
        let at = self.since_start(now);
        let until = at.saturating_add(nanos(pause));
        let before = self.paused_until.fetch_max(until, Relaxed);
        // Reported once per pause begun: an answer that only extends a pause in force
        // is not a new one (the handle's count and the metric agree), and a pushback of
        // zero (`Retry-After: 0`, a date in the past) begins none.
        if before <= at && before < until && until > at {
            self.counters.pauses.fetch_add(1, Relaxed);
            self.reporter.listeners.emit(|| HedgeEvent::Paused {
                hedge: self.reporter.name.clone(),
                pause,
            });
        }
    }

    #[cold]
    pub(crate) fn not_sent(&self, reason: NotSent) {
        self.counters.not_sent[reason.index()].fetch_add(1, Relaxed);
        self.reporter.listeners.emit(|| HedgeEvent::NotSent {
            hedge: self.reporter.name.clone(),
            reason,
        });
    }

    #[cold]
    pub(crate) fn sent(&self, number: u32, after: Duration) {
        self.counters.sent.fetch_add(1, Relaxed);
        self.reporter.listeners.emit(|| HedgeEvent::Sent {
            hedge: self.reporter.name.clone(),
            number,
            after,
        });
    }

    /// A hedged call answered.
    #[cold]
    pub(crate) fn answered(&self, winner: Winner, cancelled: u32, latency: Duration) {
        let wins = match winner {
            Winner::Primary => &self.counters.primary_wins,
            Winner::Hedge(_) => &self.counters.hedge_wins,
        };
        wins.fetch_add(1, Relaxed);
        self.counters
            .cancelled
            .fetch_add(u64::from(cancelled), Relaxed);
        self.reporter.listeners.emit(|| HedgeEvent::Answered {
            hedge: self.reporter.name.clone(),
            winner,
            cancelled,
            latency,
        });
    }
}
