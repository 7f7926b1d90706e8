//! Half-open admission: probe slots reserved atomically across every clone, and the
//! success count of the current half-open phase.

use crate::sync::{AtomicU32, AtomicU64, Ordering};

#[derive(Debug)]
pub(crate) struct Probes {
    max_in_flight: u32,
    in_flight: AtomicU32,
    /// The generation of the half-open phase in the high 32 bits, its successes in the low.
    successes: AtomicU64,
}

impl Probes {
    pub(crate) fn new(max_in_flight: u32) -> Self {
        Probes {
            max_in_flight,
            in_flight: AtomicU32::new(0),
            successes: AtomicU64::new(0),
        }
    }

    /// Reserves a probe slot; never more than `max_in_flight` are held at once.
    pub(crate) fn try_acquire(&self) -> bool {
        self.in_flight
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < self.max_in_flight).then_some(n + 1)
            })
            .is_ok()
    }

    /// Gives back a slot taken by [`Probes::try_acquire`].
    pub(crate) fn release(&self) {
        self.in_flight.fetch_sub(1, Ordering::AcqRel);
    }

    pub(crate) fn in_flight(&self) -> u32 {
        self.in_flight.load(Ordering::Acquire)
    }

    /// Starts counting successes for the half-open phase of `generation`.
    pub(crate) fn start(&self, generation: u64) {
        // A read-modify-write, like every other change of this word, so it is ordered with
        // a racing `succeed` (loom finds a plain store reordered after one).
        self.successes.swap(tag(generation) << 32, Ordering::AcqRel);
    }

    /// Counts a probe success of the phase `generation`; returns the phase's successes so
    /// far, or `None` if that phase is over.
    pub(crate) fn succeed(&self, generation: u64) -> Option<u32> {
        self.successes
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |word| {
                (word >> 32 == tag(generation)).then_some(word + 1)
            })
            .ok()
            .map(|before| (before as u32).saturating_add(1))
    }
}

fn tag(generation: u64) -> u64 {
    generation & u64::from(u32::MAX)
}

#[cfg(all(test, not(bulwark_loom)))]
mod tests {
    use super::*;

    #[test]
    fn slots_are_bounded_and_come_back() {
        let probes = Probes::new(2);
        assert!(probes.try_acquire());
        assert!(probes.try_acquire());
        assert!(!probes.try_acquire());
        probes.release();
        assert_eq!(probes.in_flight(), 1);
        assert!(probes.try_acquire());
    }

    #[test]
    fn successes_of_an_ended_phase_do_not_count() {
        let probes = Probes::new(1);
        probes.start(7);
        assert_eq!(probes.succeed(7), Some(1));
        assert_eq!(probes.succeed(7), Some(2));
        probes.start(9);
        assert_eq!(probes.succeed(7), None);
        assert_eq!(probes.succeed(9), Some(1));
    }

    #[test]
    fn racing_threads_never_hold_more_than_the_maximum() {
        use std::sync::atomic::{AtomicU32 as StdAtomic, Ordering::SeqCst};
        use std::sync::Arc;
        let probes = Arc::new(Probes::new(3));
        let peak = Arc::new(StdAtomic::new(0));
        let threads: Vec<_> = (0..8)
            .map(|_| {
                let (probes, peak) = (probes.clone(), peak.clone());
                std::thread::spawn(move || {
                    for _ in 0..20_000 {
                        if probes.try_acquire() {
                            peak.fetch_max(probes.in_flight(), SeqCst);
                            probes.release();
                        }
                    }
                })
            })
            .collect();
        for thread in threads {
            thread.join().unwrap();
        }
        assert!(peak.load(SeqCst) <= 3);
        assert_eq!(probes.in_flight(), 0);
    }
}

#[cfg(all(test, bulwark_loom))]
mod loom_model {
    use super::*;
    use loom::sync::Arc;

    /// Three callers race for two probe slots, each releasing what it took: at no point do
    /// more than two hold a slot, and all slots come back.
    #[test]
    fn probe_slots_never_exceed_the_maximum() {
        let mut model = loom::model::Builder::new();
        // Bounding preemptions keeps three threads tractable; races of probe admission
        // need at most two preemptions to show.
        model.preemption_bound = Some(3);
        model.check(|| {
            let probes = Arc::new(Probes::new(2));
            let holders = Arc::new(AtomicU32::new(0));
            let threads: Vec<_> = (0..3)
                .map(|_| {
                    let (probes, holders) = (probes.clone(), holders.clone());
                    loom::thread::spawn(move || {
                        if probes.try_acquire() {
                            let now = holders.fetch_add(1, Ordering::SeqCst) + 1;
                            assert!(now <= 2, "{now} probes in flight");
                            holders.fetch_sub(1, Ordering::SeqCst);
                            probes.release();
                        }
                    })
                })
                .collect();
            for thread in threads {
                thread.join().unwrap();
            }
            assert_eq!(probes.in_flight(), 0);
        });
    }

    /// A success counted for a phase that a concurrent transition ended is dropped, never
    /// credited to the new phase.
    #[test]
    fn stale_successes_never_reach_the_next_phase() {
        loom::model(|| {
            let probes = Arc::new(Probes::new(1));
            probes.start(1);
            let stale = {
                let probes = probes.clone();
                loom::thread::spawn(move || probes.succeed(1))
            };
            probes.start(2);
            stale.join().unwrap();
            assert_eq!(probes.succeed(2), Some(1));
        });
    }
}
