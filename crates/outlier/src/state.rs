//! The lock-free part of ejection: how many endpoints are out (checked against the cap in
//! one compare-and-swap) and each endpoint's ejection end. Atomics from core's `sync` shim,
//! so the loom models (`--cfg bulwark_loom`) check them.

use tower_bulwark_core::sync::{AtomicU64, AtomicUsize, Ordering};

/// How many endpoints of a detector are ejected.
#[derive(Debug, Default)]
pub(crate) struct EjectedCount {
    count: AtomicUsize,
}

impl EjectedCount {
    pub(crate) fn get(&self) -> usize {
        self.count.load(Ordering::Acquire)
    }

    /// Takes a place if fewer than `max` are ejected; else the count there is.
    fn try_take(&self, max: usize) -> Result<(), usize> {
        self.count
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < max).then_some(n + 1)
            })
            .map(drop)
    }

    fn give_back(&self) {
        // Never below zero, whatever a bug elsewhere did.
        let _ = self
            .count
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| n.checked_sub(1));
    }
}

/// One endpoint's ejection: `0` while it is in rotation, else when it ends (nanoseconds
/// since the detector's epoch, at least 1).
#[derive(Debug, Default)]
pub(crate) struct Ejection {
    until: AtomicU64,
}

/// Why an ejection did not happen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum NotEjected {
    /// The endpoint already is.
    Already,
    /// The cap is full: this many are ejected.
    Capped(usize),
}

impl Ejection {
    /// When the ejection ends, if the endpoint is ejected.
    #[inline]
    pub(crate) fn until(&self) -> Option<u64> {
        match self.until.load(Ordering::Acquire) {
            0 => None,
            until => Some(until),
        }
    }

    /// Ejects the endpoint until `until` if it is not ejected and fewer than `max` are.
    pub(crate) fn start(
        &self,
        count: &EjectedCount,
        max: usize,
        until: u64,
    ) -> Result<(), NotEjected> {
        if self.until().is_some() {
            return Err(NotEjected::Already);
        }
        count.try_take(max).map_err(NotEjected::Capped)?;
        match self
            .until
            .compare_exchange(0, until.max(1), Ordering::AcqRel, Ordering::Acquire)
        {
            Ok(_) => Ok(()),
            Err(_) => {
                count.give_back();
                Err(NotEjected::Already)
            }
        }
    }

    /// Ends the ejection that was to end at `until`; false if another caller ended it (or
    /// it is another ejection now).
    pub(crate) fn end(&self, count: &EjectedCount, until: u64) -> bool {
        let ended = self
            .until
            .compare_exchange(until, 0, Ordering::AcqRel, Ordering::Acquire)
            .is_ok();
        if ended {
            count.give_back();
        }
        ended
    }
}

#[cfg(all(test, bulwark_loom))]
mod loom_model {
    use super::*;
    use loom::sync::Arc;

    /// Two endpoints ejected at once under a cap of one: exactly one goes, and the count
    /// says one.
    #[test]
    fn the_cap_holds_under_racing_ejections() {
        loom::model(|| {
            let count = Arc::new(EjectedCount::default());
            let a = Arc::new(Ejection::default());
            let b = Arc::new(Ejection::default());
            let (count2, b2) = (count.clone(), b.clone());
            let other = loom::thread::spawn(move || b2.start(&count2, 1, 10).is_ok());
            let first = a.start(&count, 1, 10).is_ok();
            let second = other.join().unwrap();
            assert!(first ^ second, "exactly one ejected: {first} {second}");
            assert_eq!(count.get(), 1);
            assert_eq!(a.until().is_some(), first);
            assert_eq!(b.until().is_some(), second);
        });
    }

    /// One endpoint's ejection ended by two callers at once (its service's `poll_ready`
    /// and the interval sweep) while another endpoint is ejected: the count is given back
    /// once, so the other ejection finds its place.
    #[test]
    fn a_return_is_counted_once() {
        loom::model(|| {
            let count = Arc::new(EjectedCount::default());
            let a = Arc::new(Ejection::default());
            let b = Arc::new(Ejection::default());
            a.start(&count, 1, 5).unwrap();
            let (count2, a2) = (count.clone(), a.clone());
            let sweeper = loom::thread::spawn(move || a2.end(&count2, 5));
            let (count3, b3) = (count.clone(), b.clone());
            let ejector = loom::thread::spawn(move || b3.start(&count3, 1, 9));
            let ended_here = a.end(&count, 5);
            let ended_there = sweeper.join().unwrap();
            let b_ejected = ejector.join().unwrap().is_ok();
            assert!(ended_here ^ ended_there);
            assert_eq!(a.until(), None);
            assert_eq!(count.get(), usize::from(b_ejected));
        });
    }

    /// The same endpoint ejected by two rules at once: one ejection, counted once.
    #[test]
    fn one_endpoint_is_ejected_once() {
        loom::model(|| {
            let count = Arc::new(EjectedCount::default());
            let a = Arc::new(Ejection::default());
            let (count2, a2) = (count.clone(), a.clone());
            let other = loom::thread::spawn(move || a2.start(&count2, 2, 7));
            let here = a.start(&count, 2, 8);
            let there = other.join().unwrap();
            assert!(here.is_ok() ^ there.is_ok());
            assert_eq!(count.get(), 1);
        });
    }
}

#[cfg(all(test, not(bulwark_loom)))]
mod tests {
    use super::*;

    #[test]
    fn the_cap_refuses_past_its_count_and_a_return_frees_a_place() {
        let count = EjectedCount::default();
        let (a, b) = (Ejection::default(), Ejection::default());
        assert_eq!(a.start(&count, 1, 10), Ok(()));
        assert_eq!(a.start(&count, 1, 10), Err(NotEjected::Already));
        assert_eq!(b.start(&count, 1, 10), Err(NotEjected::Capped(1)));
        assert!(
            !a.end(&count, 11),
            "another ejection's end does not end this one"
        );
        assert!(a.end(&count, 10));
        assert!(!a.end(&count, 10));
        assert_eq!(count.get(), 0);
        assert_eq!(b.start(&count, 1, 0), Ok(()));
        assert_eq!(b.until(), Some(1), "an end at 0 is stored as 1");
        count.give_back();
        count.give_back();
        assert_eq!(count.get(), 0, "never below zero");
    }
}
