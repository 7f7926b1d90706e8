//! The copies of a [`ReplayBody`](super::ReplayBody) waiting for the original body.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Wake, Waker};

/// The wakers of the copies waiting for the original body, one per copy.
///
/// The original body keeps only the waker it was last polled with, so it is always polled
/// with the waker of this list ([`Wake`]), which wakes every copy waiting: whichever copy
/// reads the next frame, the others replay it.
#[derive(Debug, Default)]
pub(super) struct Waiters {
    wakers: Mutex<Vec<(u64, Waker)>>,
    next_copy: AtomicU64,
}

impl Waiters {
    /// A number for a new copy, to find its waker by.
    pub(super) fn new_copy(&self) -> u64 {
        self.next_copy.fetch_add(1, Relaxed)
    }

    /// Wakes `copy` with `waker` the next time the original body is ready.
    pub(super) fn wait(&self, copy: u64, waker: &Waker) {
        let mut wakers = self.lock();
        match wakers.iter_mut().find(|(id, _)| *id == copy) {
            Some((_, known)) => known.clone_from(waker),
            None => wakers.push((copy, waker.clone())),
        }
    }

    /// Forgets the waker of `copy` (dropped).
    pub(super) fn forget(&self, copy: u64) {
        self.lock().retain(|(id, _)| *id != copy);
    }

    fn lock(&self) -> MutexGuard<'_, Vec<(u64, Waker)>> {
        self.wakers.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Wake for Waiters {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        // Woken outside the lock, in case a waker polls a copy at once.
        let mut woken = std::mem::take(&mut *self.lock());
        for (_, waker) in woken.drain(..) {
            waker.wake();
        }
        // Keep the allocation for the next waiters.
        let mut wakers = self.lock();
        if wakers.is_empty() {
            *wakers = woken;
        }
    }
}

#[cfg(all(test, not(bulwark_loom)))]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};

    use super::*;

    #[derive(Default)]
    struct Counter(AtomicUsize);

    impl Wake for Counter {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, SeqCst);
        }
    }

    #[test]
    fn one_waker_per_copy_every_one_woken_once_dropped_copies_forgotten() {
        let waiters = Arc::new(Waiters::default());
        let (a, b, c) = (waiters.new_copy(), waiters.new_copy(), waiters.new_copy());
        let counters: Vec<Arc<Counter>> = (0..4).map(|_| Arc::default()).collect();
        let waker = |i: usize| Waker::from(counters[i].clone());
        waiters.wait(a, &waker(0));
        waiters.wait(a, &waker(1)); // polled again from another task: only the last counts
        waiters.wait(b, &waker(2));
        waiters.wait(c, &waker(3));
        waiters.forget(c);
        assert_eq!(waiters.lock().len(), 2);

        Waker::from(waiters.clone()).wake_by_ref();
        let woken: Vec<usize> = counters.iter().map(|c| c.0.load(SeqCst)).collect();
        assert_eq!(woken, [0, 1, 1, 0]);
        assert!(
            waiters.lock().is_empty(),
            "woken copies wait again when polled"
        );
        Waker::from(waiters.clone()).wake_by_ref();
        assert_eq!(counters[1].0.load(SeqCst), 1, "woken once");
    }
}
