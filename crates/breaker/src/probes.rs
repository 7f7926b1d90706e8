//! Half-open admission: the probe slots of the current half-open phase, reserved atomically
//! across every clone, and the outcomes of its probes.
//!
//! Both words are tagged with the generation of the phase they belong to, and every
//! transition retags them. A probe can only take a slot of the phase it decided in, so none
//! is admitted once that phase is over (a failing probe that reopened the breaker and freed
//! its slot cannot let another call through), and probes of an ended phase, still stuck in
//! flight, hold no slot of the next one.

use tower_bulwark_core::sync::{AtomicU64, Ordering};

/// The slots word: the generation's low 32 bits, then the probes in flight.
const IN_FLIGHT: u64 = u32::MAX as u64;
/// The outcomes word: the generation's low 24 bits, then slow successes and successes, 20
/// bits each (saturating; `success_threshold` is at most 1,000,000).
const COUNT_BITS: u32 = 20;
const COUNT_MAX: u64 = (1 << COUNT_BITS) - 1;
const COUNTS: u64 = (1 << (2 * COUNT_BITS)) - 1;

#[derive(Debug)]
pub(crate) struct Probes {
    max_in_flight: u32,
    slots: AtomicU64,
    outcomes: AtomicU64,
}

/// The successful probes of a half-open phase so far.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Tally {
    pub(crate) successes: u32,
    /// Successes that took the slow-call threshold or longer.
    pub(crate) slow: u32,
}

impl Probes {
    pub(crate) fn new(max_in_flight: u32) -> Self {
        Probes {
            max_in_flight,
            slots: AtomicU64::new(0),
            outcomes: AtomicU64::new(0),
        }
    }

    /// Starts the phase of `generation`: no slot taken, no success counted. Slots and
    /// successes of earlier phases no longer count.
    pub(crate) fn start(&self, generation: u64) {
        // Read-modify-writes, like every other change of these words, so they are ordered
        // with a racing acquire or success (loom finds a plain store reordered after one).
        self.slots.swap(generation << 32, Ordering::AcqRel);
        self.outcomes
            .swap(generation << (2 * COUNT_BITS), Ordering::AcqRel);
    }

    /// Reserves a slot of the phase `generation`, if that phase is current and fewer than
    /// `max_in_flight` are taken.
    pub(crate) fn try_acquire(&self, generation: u64) -> bool {
        let tag = generation << 32;
        self.slots
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |word| {
                (word & !IN_FLIGHT == tag && word & IN_FLIGHT < u64::from(self.max_in_flight))
                    .then_some(word + 1)
            })
            .is_ok()
    }

    /// Gives back a slot taken by [`Probes::try_acquire`]; nothing if its phase is over.
    pub(crate) fn release(&self, generation: u64) {
        let tag = generation << 32;
        let _ = self
            .slots
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |word| {
                (word & !IN_FLIGHT == tag && word & IN_FLIGHT > 0).then_some(word - 1)
            });
    }

    /// Probes in flight in the current phase.
    pub(crate) fn in_flight(&self) -> u32 {
        (self.slots.load(Ordering::Acquire) & IN_FLIGHT) as u32
    }

    /// Counts a successful probe of the phase `generation`; returns the phase's tally so
    /// far, or `None` if that phase is over.
    pub(crate) fn succeed(&self, generation: u64, slow: bool) -> Option<Tally> {
        let tag = generation << (2 * COUNT_BITS);
        let next = |word: u64| {
            let successes = (word & COUNT_MAX) + 1;
            let slow = ((word >> COUNT_BITS) & COUNT_MAX) + u64::from(slow);
            tag | successes.min(COUNT_MAX) | (slow.min(COUNT_MAX) << COUNT_BITS)
        };
        self.outcomes
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |word| {
                (word & !COUNTS == tag).then(|| next(word))
            })
            .ok()
            .map(|before| {
                let after = next(before);
                Tally {
                    successes: (after & COUNT_MAX) as u32,
                    slow: ((after >> COUNT_BITS) & COUNT_MAX) as u32,
                }
            })
    }
}

#[cfg(all(test, not(bulwark_loom)))]
mod tests {
    use super::*;

    #[test]
    fn slots_are_bounded_and_come_back() {
        let probes = Probes::new(2);
        probes.start(4);
        assert!(probes.try_acquire(4));
        assert!(probes.try_acquire(4));
        assert!(!probes.try_acquire(4));
        probes.release(4);
        assert_eq!(probes.in_flight(), 1);
        assert!(probes.try_acquire(4));
    }

    /// A release with no slot of the phase taken gives back nothing: it cannot borrow from
    /// the phase's tag.
    #[test]
    fn a_release_without_a_slot_taken_changes_nothing() {
        let probes = Probes::new(1);
        probes.start(4);
        probes.release(4);
        assert_eq!(probes.in_flight(), 0);
        assert!(probes.try_acquire(4));
        assert!(!probes.try_acquire(4));
    }

    #[test]
    fn slots_belong_to_their_phase() {
        let probes = Probes::new(2);
        probes.start(2);
        assert!(probes.try_acquire(2));
        assert!(probes.try_acquire(2));
        // The phase ends (the breaker reopens): no slot of it can be taken any more, even
        // once one is given back.
        probes.start(3);
        probes.release(2);
        assert!(!probes.try_acquire(2));
        assert_eq!(probes.in_flight(), 0);
        // The next half-open phase has every slot, whatever the old probes still hold,
        // and their late releases do not free its slots.
        probes.start(4);
        assert!(probes.try_acquire(4));
        assert!(probes.try_acquire(4));
        probes.release(2);
        assert_eq!(probes.in_flight(), 2);
        assert!(!probes.try_acquire(4));
    }

    #[test]
    fn successes_of_an_ended_phase_do_not_count() {
        let probes = Probes::new(1);
        probes.start(7);
        let tally = |successes, slow| Some(Tally { successes, slow });
        assert_eq!(probes.succeed(7, false), tally(1, 0));
        assert_eq!(probes.succeed(7, true), tally(2, 1));
        probes.start(9);
        assert_eq!(probes.succeed(7, true), None);
        assert_eq!(probes.succeed(9, true), tally(1, 1));
    }

    #[test]
    fn tallies_saturate_instead_of_spilling_into_the_tag() {
        let probes = Probes::new(1);
        probes.start(5);
        for _ in 0..COUNT_MAX + 10 {
            probes.succeed(5, true);
        }
        let max = COUNT_MAX as u32;
        assert_eq!(
            probes.succeed(5, true),
            Some(Tally {
                successes: max,
                slow: max
            })
        );
        assert_eq!(probes.succeed(6, false), None, "the tag is intact");
    }

    /// Threads race for three slots; each counts itself in a holder count of its own while
    /// it holds one. A slot handed out twice shows as a fourth holder.
    #[test]
    fn racing_threads_never_hold_more_than_the_maximum() {
        use std::sync::atomic::{AtomicU32 as StdAtomic, Ordering::SeqCst};
        use std::sync::Arc;
        let probes = Arc::new(Probes::new(3));
        probes.start(1);
        let holders = Arc::new(StdAtomic::new(0));
        let peak = Arc::new(StdAtomic::new(0));
        let threads: Vec<_> = (0..8)
            .map(|_| {
                let (probes, holders, peak) = (probes.clone(), holders.clone(), peak.clone());
                std::thread::spawn(move || {
                    for _ in 0..20_000 {
                        if probes.try_acquire(1) {
                            let now = holders.fetch_add(1, SeqCst) + 1;
                            peak.fetch_max(now, SeqCst);
                            std::hint::spin_loop();
                            holders.fetch_sub(1, SeqCst);
                            probes.release(1);
                        }
                    }
                })
            })
            .collect();
        for thread in threads {
            thread.join().unwrap();
        }
        assert!(peak.load(SeqCst) <= 3, "{} holders", peak.load(SeqCst));
        assert_eq!(probes.in_flight(), 0);
    }
}

#[cfg(all(test, bulwark_loom))]
mod loom_model {
    use super::*;
    use loom::sync::Arc;
    use tower_bulwark_core::sync::AtomicU32;

    /// Three callers race for two probe slots, each releasing what it took: at no point do
    /// more than two hold a slot, and all slots come back.
    #[test]
    fn probe_slots_never_exceed_the_maximum() {
        let mut model = loom::model::Builder::new();
        // Bounding preemptions keeps three threads tractable; races of probe admission
        // need at most two preemptions to show.
        model.preemption_bound = Some(2);
        model.check(|| {
            let probes = Arc::new(Probes::new(2));
            probes.start(1);
            let holders = Arc::new(AtomicU32::new(0));
            let threads: Vec<_> = (0..3)
                .map(|_| {
                    let (probes, holders) = (probes.clone(), holders.clone());
                    loom::thread::spawn(move || {
                        if probes.try_acquire(1) {
                            let now = holders.fetch_add(1, Ordering::SeqCst) + 1;
                            assert!(now <= 2, "{now} probes in flight");
                            holders.fetch_sub(1, Ordering::SeqCst);
                            probes.release(1);
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
                loom::thread::spawn(move || probes.succeed(1, false))
            };
            probes.start(2);
            stale.join().unwrap();
            assert_eq!(
                probes.succeed(2, false),
                Some(Tally {
                    successes: 1,
                    slow: 0
                })
            );
        });
    }
}
