//! The shared state of a shedding layer: the limit, the calls in flight, the algorithm.

use std::sync::PoisonError;

use tokio::time::Instant;
use tower_bulwark_core::{Criticality, Listeners, Name, Outcome};

use crate::sync::{AtomicU64, AtomicUsize, Mutex, Ordering::*};
use crate::tiers::allowed;
use crate::{LimitAlgorithm, RttEstimates, Sample, ShedEvent, TierShares};

/// The limit and the calls in flight, shared by every service a layer makes.
///
/// Admission is one compare-and-swap on the in-flight count against the tier's share of
/// the limit: lock-free, no allocation. Finished calls update the algorithm under a mutex,
/// off the admission path, and publish and announce its new limit before letting go of
/// it, so the limit and its `LimitChanged` events follow the order of the updates.
pub(crate) struct Limiter {
    pub(crate) name: Name,
    limit: AtomicUsize,
    in_flight: AtomicUsize,
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
        tiers: TierShares,
        listeners: Listeners<ShedEvent>,
    ) -> Self {
        Limiter {
            name,
            limit: AtomicUsize::new(algorithm.initial().max(1)),
            in_flight: AtomicUsize::new(0),
            rtt: Mutex::new(algorithm.rtt()),
            algorithm: Mutex::new(algorithm),
            learns,
            permille: tiers.permille(),
            listeners,
            shed: Default::default(),
        }
    }

    /// Takes a place for a call of `criticality` if its tier's share of the limit has room;
    /// returns the calls in flight with it.
    #[inline]
    pub(crate) fn try_acquire(&self, criticality: Criticality) -> Option<usize> {
        let allowed = allowed(
            self.permille[tier_index(criticality)],
            self.limit.load(Relaxed),
        );
        let mut current = self.in_flight.load(Relaxed);
        loop {
            if current >= allowed {
                return None;
            }
            match self
                .in_flight
                .compare_exchange_weak(current, current + 1, AcqRel, Relaxed)
            {
                Ok(_) => return Some(current + 1),
                Err(actual) => current = actual,
            }
        }
    }

    /// Takes a place whatever the limit (shadow mode admits everything).
    pub(crate) fn acquire_anyway(&self) -> usize {
        self.in_flight.fetch_add(1, AcqRel) + 1
    }

    /// Counts a call shed (or that would have been) in its tier.
    pub(crate) fn count_shed(&self, criticality: Criticality) {
        self.shed[tier_index(criticality)].fetch_add(1, Relaxed);
    }

    /// Whether finished calls must report their latency.
    pub(crate) fn learns(&self) -> bool {
        self.learns
    }

    /// Gives back a place; with an outcome that says something, teaches the algorithm.
    #[inline]
    pub(crate) fn release(&self, in_flight: usize, started: Option<Instant>, outcome: Outcome) {
        self.in_flight.fetch_sub(1, AcqRel);
        if let Some(started) = started {
            self.learn(in_flight, started, outcome);
        }
    }

    /// Teaches the algorithm one finished call (off the admission path). The new limit is
    /// published and announced under the algorithm's lock: done after it, a slower thread
    /// could publish an older limit over a newer one, and announce it out of order.
    fn learn(&self, in_flight: usize, started: Instant, outcome: Outcome) {
        let dropped = match outcome {
            Outcome::Success => false,
            Outcome::Failure => true,
            Outcome::Ignored => return,
        };
        let sample = Sample {
            rtt: started.elapsed(),
            in_flight,
            dropped,
        };
        let mut algorithm = self
            .algorithm
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
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
        self.in_flight.load(Relaxed)
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
    use crate::Fixed;
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
                TierShares::flat(),
                Listeners::new(),
            ));
            let call = |limiter: &Limiter| {
                let got = limiter.try_acquire(Criticality::Critical);
                if let Some(n) = got {
                    assert_eq!((n, limiter.in_flight()), (1, 1), "alone in the place");
                    limiter.release(n, None, Outcome::Ignored);
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

    /// Two calls finish at once and both teach the algorithm (through the same `release`
    /// a finished call uses): the limit published last is the algorithm's last, and the
    /// `LimitChanged` events come in the algorithm's order, each starting where the
    /// previous ended.
    #[test]
    fn concurrent_learning_publishes_the_latest_limit_in_order() {
        loom::model(|| {
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
                TierShares::flat(),
                listeners,
            ));
            let call = |limiter: &Limiter| {
                let n = limiter.try_acquire(Criticality::Critical).unwrap();
                limiter.release(n, Some(Instant::now()), Outcome::Success);
            };
            let other = {
                let limiter = limiter.clone();
                loom::thread::spawn(move || call(&limiter))
            };
            call(&limiter);
            other.join().unwrap();
            assert_eq!(limiter.limit(), 12, "the latest limit is the one published");
            assert_eq!(*events.lock().unwrap(), [(10, 11), (11, 12)]);
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
                TierShares::flat(),
                Listeners::new(),
            ));
            let other = {
                let limiter = limiter.clone();
                loom::thread::spawn(move || limiter.try_acquire(Criticality::Critical))
            };
            let mine = limiter.try_acquire(Criticality::Critical);
            let theirs = other.join().unwrap();
            assert!(mine.is_some() != theirs.is_some(), "exactly one holds it");
            assert_eq!(limiter.in_flight(), 1);
        });
    }
}
