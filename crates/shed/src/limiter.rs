//! The shared state of a shedding layer: the limit, the calls in flight, the algorithm.

use std::sync::{PoisonError, TryLockError};
use std::time::Duration;

use tokio::time::Instant;
use tower_bulwark_core::places::Places;
use tower_bulwark_core::{Criticality, Listeners, Name, Outcome};

use crate::tiers::{allowed, Demand};
use crate::window::{micros, Window};
use crate::{LimitAlgorithm, RttEstimates, ShedEvent, TierShares, WindowSize};
use tower_bulwark_core::sync::{AtomicU64, AtomicUsize, Mutex, Ordering::*};

/// The limit and the calls in flight, shared by every service a layer makes.
///
/// Admission takes a place ([`Places`]) against what the call's tier may use: lock-free, no
/// allocation; far below the limit a place is one of the caller's core's spares, near it
/// one compare-and-swap on the exact count. Finished calls add to a lock-free [`Window`]; the one
/// that closes it updates the algorithm under a mutex it only tries (never waits for), and
/// publishes and announces the new limit before letting go of it, so the limit and its
/// `LimitChanged` events follow the order of the updates.
pub(crate) struct Limiter {
    pub(crate) name: Name,
    limit: AtomicUsize,
    places: Places,
    demand: Demand,
    window: Window,
    /// When the limiter started: window times are microseconds since.
    epoch: Instant,
    algorithm: Mutex<Box<dyn LimitAlgorithm>>,
    /// The algorithm's latest latency estimates, copied out of its lock so that reading
    /// them (the handle, even from a listener) never waits on learning.
    rtt: Mutex<RttEstimates>,
    /// Whether the algorithm needs samples (a fixed limit does not: no clock, no lock).
    learns: bool,
    /// Each tier's share of the limit, in thousandths.
    permille: [usize; 4],
    pub(crate) listeners: Listeners<ShedEvent>,
    /// Calls shed (or, in shadow mode, that would have been), by tier.
    shed: [AtomicU64; 4],
}

impl Limiter {
    pub(crate) fn new(
        name: Name,
        algorithm: Box<dyn LimitAlgorithm>,
        learns: bool,
        window: WindowSize,
        tiers: TierShares,
        listeners: Listeners<ShedEvent>,
    ) -> Self {
        Limiter {
            name,
            limit: AtomicUsize::new(algorithm.initial().max(1)),
            places: Places::new(),
            demand: Demand::default(),
            window: Window::new(window),
            epoch: Instant::now(),
            rtt: Mutex::new(algorithm.rtt()),
            algorithm: Mutex::new(algorithm),
            learns,
            permille: tiers.permille(),
            listeners,
            shed: Default::default(),
        }
    }

    /// Takes a place for a call of `criticality` on core `stripe` (core's `thread_index`,
    /// kept by the call to give the place back) if its tier may use one: within its cap,
    /// and leaving the tiers above it the room they recently wanted. Returns the calls in
    /// flight with it (an upper bound under half the limit far below it).
    #[inline]
    pub(crate) fn try_acquire(&self, criticality: Criticality, stripe: usize) -> Option<usize> {
        let tier = tier_index(criticality);
        let limit = self.limit.load(Relaxed);
        self.demand.want(stripe, tier, limit);
        let ceiling = self.ceiling(tier, limit);
        // Far below the limit and the tier's share, the place is one of this core's spares.
        let in_flight = self
            .places
            .try_take_fast_on(stripe, ceiling, limit)
            .or_else(|| self.places.take_counted_on(stripe, ceiling))?;
        self.demand.enter(stripe, tier);
        Some(in_flight)
    }

    /// How many calls in flight a call of `tier` may join: its cap, less the room the tiers
    /// above it keep.
    #[inline]
    fn ceiling(&self, tier: usize, limit: usize) -> usize {
        allowed(self.permille[tier], limit)
            .min(limit.saturating_sub(self.demand.reserved_above(tier)))
    }

    /// Takes a place whatever the limit (shadow mode admits everything).
    pub(crate) fn acquire_anyway(&self, criticality: Criticality, stripe: usize) -> usize {
        self.demand.enter(stripe, tier_index(criticality));
        self.places.take_anyway()
    }

    /// Counts a call shed (or that would have been) in its tier.
    pub(crate) fn count_shed(&self, criticality: Criticality) {
        self.shed[tier_index(criticality)].fetch_add(1, Relaxed);
    }

    /// Whether finished calls must report their latency.
    pub(crate) fn learns(&self) -> bool {
        self.learns
    }

    /// Gives back a place of `criticality`; with an outcome that says something, teaches
    /// the algorithm.
    #[inline]
    pub(crate) fn release(
        &self,
        criticality: Criticality,
        stripe: usize,
        in_flight: usize,
        started: Option<Instant>,
        outcome: Outcome,
    ) {
        self.places.give_on(stripe, self.limit.load(Relaxed));
        self.demand.leave(stripe, tier_index(criticality));
        if let Some(started) = started {
            self.learn(in_flight, started, outcome);
        }
    }

    /// Adds one finished call to the window (off the admission path) and, if that makes
    /// the window due, closes it.
    fn learn(&self, in_flight: usize, started: Instant, outcome: Outcome) {
        let dropped = match outcome {
            Outcome::Success => false,
            Outcome::Failure => true,
            Outcome::Ignored => return,
        };
        let now = Instant::now();
        self.teach(
            now.saturating_duration_since(started),
            in_flight,
            dropped,
            now,
        );
    }

    /// Adds a call that took `rtt` and ended at `now` to the window, closing it if due.
    fn teach(&self, rtt: Duration, in_flight: usize, dropped: bool, now: Instant) {
        let at = micros(now.saturating_duration_since(self.epoch));
        if self.window.add(rtt, in_flight, dropped, at) {
            self.close_window(at);
        }
    }

    /// Teaches the algorithm the window, if no other call is doing so. The new limit is
    /// published and announced under the algorithm's lock: done after it, a slower thread
    /// could publish an older limit over a newer one, and announce it out of order.
    fn close_window(&self, at: u64) {
        let mut algorithm = match self.algorithm.try_lock() {
            Ok(algorithm) => algorithm,
            Err(TryLockError::Poisoned(poisoned)) => poisoned.into_inner(),
            // Another call is teaching it; this window's calls go with the next one.
            Err(TryLockError::WouldBlock) => return,
        };
        let Some(sample) = self.window.close(at) else {
            return;
        };
        let new = algorithm.update(sample);
        *self.rtt.lock().unwrap_or_else(PoisonError::into_inner) = algorithm.rtt();
        self.publish(new);
    }

    /// Publishes a new limit (at least 1) and announces a change. Called with the
    /// algorithm's lock held, so limits are published and announced in one order.
    fn publish(&self, limit: usize) {
        let new = limit.max(1);
        let old = self.limit.swap(new, AcqRel);
        if old != new {
            self.listeners.emit(|| ShedEvent::LimitChanged {
                layer: self.name.clone(),
                from: old,
                to: new,
            });
        }
    }

    pub(crate) fn limit(&self) -> usize {
        self.limit.load(Relaxed)
    }

    pub(crate) fn in_flight(&self) -> usize {
        self.places.in_use()
    }

    pub(crate) fn in_flight_by_tier(&self) -> [usize; 4] {
        self.demand.in_flight()
    }

    pub(crate) fn shed_by_tier(&self) -> [u64; 4] {
        [0, 1, 2, 3].map(|i| self.shed[i].load(Relaxed))
    }

    pub(crate) fn rtt(&self) -> RttEstimates {
        *self.rtt.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Sets the limit by hand (an operator's override until the next sample moves it),
    /// published and announced under the algorithm's lock like a learned one, so the
    /// events stay in order and the `bulwark_shed_limit` gauge follows.
    pub(crate) fn set_limit(&self, limit: usize) {
        let _algorithm = self
            .algorithm
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        self.publish(limit);
    }
}

impl std::fmt::Debug for Limiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Limiter")
            .field("name", &self.name)
            .field("limit", &self.limit())
            .field("in_flight", &self.in_flight())
            .finish_non_exhaustive()
    }
}

/// Tiers in order of importance, least first.
#[inline]
pub(crate) fn tier_index(criticality: Criticality) -> usize {
    match criticality {
        Criticality::Sheddable => 0,
        Criticality::SheddablePlus => 1,
        Criticality::Critical => 2,
        Criticality::CriticalPlus => 3,
    }
}

#[cfg(all(test, bulwark_loom))]
mod loom_model {
    use super::*;
    use crate::{Fixed, Sample};
    use loom::sync::Arc;

    /// Two calls race for the last place, each giving it back when done. Not "exactly one
    /// gets it": the first may finish before the second tries, and then both do, one
    /// after the other. What holds: at least one gets it, a holder is alone in it, and the
    /// count is back to zero after both.
    #[test]
    fn racing_calls_take_the_last_place_one_at_a_time() {
        loom::model(|| {
            let limiter = Arc::new(Limiter::new(
                Name::from("loom"),
                Box::new(Fixed::new(1).unwrap()),
                false,
                WindowSize::per_call(),
                TierShares::flat(),
                Listeners::new(),
            ));
            let call = |limiter: &Limiter| {
                let got = limiter.try_acquire(Criticality::Critical, 0);
                if let Some(n) = got {
                    assert_eq!((n, limiter.in_flight()), (1, 1), "alone in the place");
                    limiter.release(Criticality::Critical, 0, n, None, Outcome::Ignored);
                }
                got.is_some()
            };
            let other = {
                let limiter = limiter.clone();
                loom::thread::spawn(move || call(&limiter))
            };
            let mine = call(&limiter);
            let theirs = other.join().unwrap();
            assert!(mine || theirs, "at least one got in");
            assert_eq!(limiter.in_flight(), 0);
        });
    }

    /// An algorithm whose every update raises the limit by one, so the order of its
    /// updates is plain in the values.
    struct Counting(usize);

    impl LimitAlgorithm for Counting {
        fn initial(&self) -> usize {
            self.0
        }

        fn update(&mut self, _sample: Sample) -> usize {
            self.0 += 1;
            self.0
        }
    }

    /// Two calls finish at once and both teach the algorithm (`teach`, what `release` does
    /// with a finished call's latency), then a third after them. Whichever closes a window, the
    /// `LimitChanged` events come in the algorithm's order, each starting where the
    /// previous ended, the limit published last is the algorithm's last, and no call is
    /// left unseen: a call whose closer found the lock taken goes with the next window.
    #[test]
    fn concurrent_learning_publishes_the_latest_limit_in_order() {
        // Admission is left out (its models are the others here): with it, each call was a
        // dozen atomic steps more and the model took many minutes. Bounding the
        // preemptions still interleaves the closers everywhere that matters.
        let mut model = loom::model::Builder::new();
        model.preemption_bound = Some(3);
        model.check(|| {
            let events = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
            let mut listeners = Listeners::new();
            let sink = events.clone();
            listeners.push(move |event: &ShedEvent| {
                if let ShedEvent::LimitChanged { from, to, .. } = event {
                    sink.lock().unwrap().push((*from, *to));
                }
            });
            let limiter = Arc::new(Limiter::new(
                Name::from("loom"),
                Box::new(Counting(10)),
                true,
                WindowSize::per_call(),
                TierShares::flat(),
                listeners,
            ));
            // A fixed latency (an hour, capped to the longest a window counts): with
            // windows of one call and no shortest time, the real clock changes no branch.
            let call = |limiter: &Limiter| {
                limiter.teach(Duration::from_secs(3600), 1, false, Instant::now());
            };
            let other = {
                let limiter = limiter.clone();
                loom::thread::spawn(move || call(&limiter))
            };
            call(&limiter);
            other.join().unwrap();
            call(&limiter);
            let events = events.lock().unwrap().clone();
            assert!(!events.is_empty() && events.len() <= 3, "{events:?}");
            let mut at = 10;
            for (from, to) in &events {
                assert_eq!((*from, *to), (at, at + 1), "in order: {events:?}");
                at = *to;
            }
            assert_eq!(limiter.limit(), at, "the latest limit is the one published");
            assert_eq!(limiter.window.close(0), None, "every call was taught");
        });
    }

    /// While one call holds the only place, a racing call is refused.
    #[test]
    fn a_held_place_is_never_given_twice() {
        loom::model(|| {
            let limiter = Arc::new(Limiter::new(
                Name::from("loom"),
                Box::new(Fixed::new(1).unwrap()),
                false,
                WindowSize::per_call(),
                TierShares::flat(),
                Listeners::new(),
            ));
            let other = {
                let limiter = limiter.clone();
                loom::thread::spawn(move || limiter.try_acquire(Criticality::Critical, 0))
            };
            let mine = limiter.try_acquire(Criticality::Critical, 0);
            let theirs = other.join().unwrap();
            assert!(mine.is_some() != theirs.is_some(), "exactly one holds it");
            assert_eq!(limiter.in_flight(), 1);
        });
    }
}
