//! The compartment: a bounded number of permits and a bounded FIFO queue of waiters.
//!
//! The permits in use and the waiters still waiting live in one atomic word, so every
//! decision (take a free permit, join the queue, hand a released permit on) is one
//! read-modify-write of one location: no call can miss another's release. A call that finds
//! a free permit and nobody waiting takes it with one compare-and-swap and no lock.
//! Queueing and handing a released permit to the next waiter take the queue's mutex; the
//! waiter is woken after it is unlocked. Cancelling is one compare-and-swap. A released
//! permit goes straight to the waiter at the front, so newcomers cannot overtake the queue.
//!
//! Far below the limit (in the fast zone: nobody waiting, and the permits out, with a
//! batch more, at most half the limit; limits of 16 a core and more) each core keeps spare
//! permits taken from the count a batch at a time, and its calls take and give back
//! those: calls on different cores then write different cache lines. The count's low
//! half is the permits out of the pool (held by calls or spare), so it never undercounts
//! and the limit holds exactly; a call that would queue first takes every core's spares
//! back, and a permit given back as a spare while a waiter arrives is found by the
//! waiter's second look (see `release`).

use std::collections::VecDeque;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use tower_bulwark_core::stripes::{thread_index, PerCore, Stripe};
use tower_bulwark_core::{BoxError, Listeners, Name, Rejection, RejectionKind};

use crate::{BulkheadEvent, BulkheadFull, FullReason};
use tower_bulwark_core::sync::{AtomicU64, AtomicU8, AtomicUsize, Mutex, MutexGuard, Ordering::*};

/// One waiter in the `queued` half of the counter word.
const ONE_QUEUED: u64 = 1 << 32;

/// One call in flight in the `calls` half of a core's word.
const ONE_CALL: u64 = 1 << 32;

/// A core's spare permits, in the low half of its word.
fn spare_of(word: u64) -> usize {
    (word & u64::from(u32::MAX)) as usize
}

/// A core's calls in flight, in the high half of its word.
fn calls_of(word: u64) -> usize {
    (word >> 32) as usize
}

fn in_flight_of(word: u64) -> usize {
    (word & u64::from(u32::MAX)) as usize
}

fn queued_of(word: u64) -> usize {
    (word >> 32) as usize
}

#[derive(Debug)]
pub(crate) struct Compartment {
    pub(crate) name: Name,
    max_concurrent: AtomicUsize,
    max_queue: AtomicUsize,
    /// Permits out (low 32 bits: held by calls, or spare in a core's stripe) and waiters
    /// still waiting (high 32 bits). Cancelled waiters may linger in `queue` until they
    /// reach its front or are swept, but are not counted.
    counts: AtomicU64,
    /// Each core's spare permits and calls in flight (see [`Core`]).
    cores: PerCore<Core>,
    queue: Mutex<VecDeque<Arc<Waiter>>>,
    pub(crate) stats: Stats,
    listeners: Listeners<BulkheadEvent>,
    /// Queue entries visited by sweeps, so tests can bound the work per call.
    #[cfg(test)]
    swept: std::sync::atomic::AtomicUsize,
}

/// Counters for the handle.
#[derive(Debug)]
pub(crate) struct Stats {
    /// The most calls in flight at once, raised when a core passes its high-water mark
    /// and to the calls in flight whenever it is read.
    pub(crate) peak_in_flight: AtomicUsize,
    pub(crate) rejected_queue_full: AtomicU64,
    pub(crate) rejected_wait_timeout: AtomicU64,
    pub(crate) rejected_deadline: AtomicU64,
    /// Mean time granted waiters waited, as an exponentially weighted average (nanoseconds).
    pub(crate) mean_wait_nanos: AtomicU64,
}

/// One core's part of the books, on its own cache line.
///
/// Its spare permits (low half of `word`) are for its threads' next calls in the fast
/// zone. Its calls in flight (high half) are those admitted on it: a call leaves, and gives
/// its permit back, where it entered, wherever its task went. A call in the fast zone
/// takes a spare and counts itself in one step, and gives both back in one. With the
/// high-water mark of its calls, the peak in flight needs no line that every core writes.
#[derive(Debug, Default)]
struct Core {
    word: AtomicU64,
    high: AtomicUsize,
}

#[derive(Debug)]
struct Waiter {
    state: AtomicU8,
    waker: Mutex<Option<Waker>>,
}

const WAITING: u8 = 0;
const GRANTED: u8 = 1;
const CANCELLED: u8 = 2;

/// Where a call stands after asking for a permit.
#[derive(Debug)]
pub(crate) enum Admission {
    Admitted(Permit),
    Queued(Ticket),
    QueueFull,
}

impl Compartment {
    pub(crate) fn new(
        name: Name,
        max_concurrent: usize,
        max_queue: usize,
        listeners: Listeners<BulkheadEvent>,
    ) -> Self {
        Compartment {
            listeners,
            name,
            max_concurrent: AtomicUsize::new(max_concurrent.min(u32::MAX as usize)),
            max_queue: AtomicUsize::new(max_queue.min(u32::MAX as usize)),
            counts: AtomicU64::new(0),
            cores: PerCore::new(Core::default),
            queue: Mutex::new(VecDeque::new()),
            stats: Stats {
                peak_in_flight: AtomicUsize::new(0),
                rejected_queue_full: AtomicU64::new(0),
                rejected_wait_timeout: AtomicU64::new(0),
                rejected_deadline: AtomicU64::new(0),
                mean_wait_nanos: AtomicU64::new(0),
            },
            #[cfg(test)]
            swept: std::sync::atomic::AtomicUsize::new(0),
        }
    }

    /// The same with `stripes` cores' spares, for tests and models that choose.
    #[cfg(test)]
    fn with_stripes(mut self, stripes: usize) -> Self {
        self.cores = PerCore::with_stripes(stripes, Core::default);
        self
    }

    fn lock(&self) -> MutexGuard<'_, VecDeque<Arc<Waiter>>> {
        self.queue.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A call admitted outside the fast zone counts itself on core `stripe` (core's
    /// `thread_index`).
    #[inline]
    fn enter(&self, stripe: usize) {
        let before = self.cores.get(stripe).word.fetch_add(ONE_CALL, Relaxed);
        self.entered(stripe, calls_of(before) + 1);
    }

    /// A call was admitted on core `stripe`, making `here` calls on it. When the core's
    /// count passes its own high-water mark, the calls in flight on every core are read
    /// and the peak raised: with calls on one core every rise is seen.
    #[inline]
    fn entered(&self, stripe: usize, here: usize) {
        let core = self.cores.get(stripe);
        if here > core.high.load(Relaxed) {
            core.high.store(here, Relaxed);
            self.raise_peak(here);
        }
    }

    /// Raises the peak to the calls in flight on every core, at least the `here` this
    /// core's count rose to (calls leaving meanwhile do not hide it); returns the peak.
    #[cold]
    fn raise_peak(&self, here: usize) -> usize {
        let in_flight = self.calls_in_flight().max(here);
        let peak = self.stats.peak_in_flight.load(Relaxed);
        if in_flight > peak {
            self.stats.peak_in_flight.fetch_max(in_flight, Relaxed);
            return in_flight;
        }
        peak
    }

    /// The calls in flight on every core. The cores are read one after another, so a call
    /// seen on one before it ended and its successor seen on a later one may both count:
    /// the sum is capped by the permits out (never fewer than the calls in flight) read
    /// just before and just after it. Far below the limit those include the cores' spares,
    /// so there the sum may still count such a pair twice.
    fn calls_in_flight(&self) -> usize {
        let before = in_flight_of(self.counts.load(SeqCst));
        let in_flight: usize = self
            .cores
            .iter()
            .map(|core| calls_of(core.word.load(SeqCst)))
            .sum();
        let after = in_flight_of(self.counts.load(SeqCst));
        in_flight.min(before.max(after))
    }

    /// The most calls in flight at once (see `enter`), and at least those in flight now:
    /// calls on several cores may rise together with no core passing its own mark.
    pub(crate) fn peak_in_flight(&self) -> usize {
        self.raise_peak(0)
    }

    /// The permits a core takes at once under `max` (core's `places::batch`: an eighth of
    /// the limit over the cores; none, every permit counted, under 16 a core).
    #[inline]
    fn batch(&self, max: usize) -> usize {
        tower_bulwark_core::places::batch(max, self.cores.len())
    }

    /// Whether the counts are in the fast zone for `batch` more permits under `max`: nobody
    /// waits and they stay at most half the limit.
    #[inline]
    fn in_fast_zone(word: u64, batch: usize, max: usize) -> bool {
        queued_of(word) == 0 && in_flight_of(word) + batch <= max / 2
    }

    /// In the fast zone, a spare permit of core `stripe`'s (or a batch of them), the call
    /// counted there; false out of it.
    #[inline(always)]
    fn try_fast(&self, max: usize, stripe: usize) -> bool {
        let batch = self.batch(max);
        if batch == 0 {
            return false;
        }
        let word = self.counts.load(Acquire);
        if !Self::in_fast_zone(word, batch, max) {
            return false;
        }
        let core = &self.cores.get(stripe).word;
        if let Ok(before) = core.fetch_update(AcqRel, Acquire, |word| {
            (spare_of(word) > 0).then(|| word - 1 + ONE_CALL)
        }) {
            self.entered(stripe, calls_of(before) + 1);
            return true;
        }
        if self
            .counts
            .compare_exchange(word, word + batch as u64, SeqCst, Acquire)
            .is_err()
        {
            return false;
        }
        // The batch's rest reaches the spares after the count: a call that queued in
        // between looked for spares too early. As a released spare does (see `release`),
        // look for a waiter after adding.
        let before = core.fetch_add(batch as u64 - 1 + ONE_CALL, SeqCst);
        if queued_of(self.counts.load(SeqCst)) > 0 {
            self.reclaim();
            self.grant(self.lock());
        }
        self.entered(stripe, calls_of(before) + 1);
        true
    }

    /// Every core's spare permits (a moment's reading).
    fn spares(&self) -> usize {
        self.cores
            .iter()
            .map(|core| spare_of(core.word.load(Acquire)))
            .sum()
    }

    /// Gives every core's spare permits back to the count.
    fn reclaim(&self) {
        let spares: usize = self
            .cores
            .iter()
            .map(|core| spare_of(core.word.fetch_and(!u64::from(u32::MAX), SeqCst)))
            .sum();
        if spares != 0 {
            self.counts.fetch_sub(spares as u64, SeqCst);
        }
    }

    /// A permit for a call on core `stripe`, counting it there.
    #[inline]
    fn admitted(holder: &Holder, stripe: usize) -> Admission {
        holder.enter(stripe);
        Admission::Admitted(Permit::new(holder, stripe))
    }

    #[cold]
    fn enqueue(holder: &Holder, bounded: bool, stripe: usize) -> Admission {
        let this: &Compartment = holder;
        let mut queue = this.lock();
        // Spares held by cores (one that went quiet keeps its own) are free permits.
        this.reclaim();
        let max = this.max_concurrent.load(Relaxed);
        let max_queue = this.max_queue.load(Relaxed);
        // One decision on one word: a permit if one came free, else a place if there is room.
        let decided = this.counts.fetch_update(SeqCst, SeqCst, |word| {
            if queued_of(word) == 0 && in_flight_of(word) < max {
                Some(word + 1)
            } else if bounded && queued_of(word) >= max_queue {
                None
            } else {
                Some(word + ONE_QUEUED)
            }
        });
        let before = match decided {
            Err(_) => return Admission::QueueFull,
            Ok(before) => before,
        };
        if queued_of(before) == 0 && in_flight_of(before) < max {
            return Self::admitted(holder, stripe);
        }
        // Cancelled waiters stay queued until they reach the front. Sweep them out once they
        // outnumber the live ones: a sweep then removes more than half of what it visits
        // (O(1) amortized per call) and the queue holds at most about twice its waiters.
        if queue.len() > 2 * queued_of(before) + 16 {
            #[cfg(test)]
            this.swept.fetch_add(queue.len(), Relaxed);
            queue.retain(|w| w.state.load(Acquire) == WAITING);
        }
        let waiter = Arc::new(Waiter {
            state: AtomicU8::new(WAITING),
            waker: Mutex::new(None),
        });
        queue.push_back(waiter.clone());
        // A spare given back by a call that saw nobody waiting, after the look above: with
        // this waiter counted first, the giver or this second look finds it.
        this.reclaim();
        // A permit released after the decision above saw this waiter counted and is
        // waiting for the lock to hand it on; one freed before is handed on here.
        this.grant(queue);
        Admission::Queued(Ticket {
            compartment: holder.clone(),
            stripe,
            waiter,
            done: false,
        })
    }

    /// Hands free permits to the waiters at the front of the queue, one at a time, waking
    /// each after unlocking the queue (a woken task may run at once on another thread and
    /// want the lock).
    fn grant<'a>(&'a self, mut queue: MutexGuard<'a, VecDeque<Arc<Waiter>>>) {
        while let Some(granted) = self.grant_front(&mut queue) {
            drop(queue);
            let waker = granted
                .waker
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .take();
            if let Some(waker) = waker {
                waker.wake();
            }
            // No free permit or nobody waiting: whoever frees a permit or queues later
            // grants it (both check the counts after changing them).
            let word = self.counts.load(Acquire);
            if queued_of(word) == 0 || in_flight_of(word) >= self.max_concurrent.load(Relaxed) {
                return;
            }
            queue = self.lock();
        }
    }

    /// Gives a free permit to the first waiter still waiting and returns it, to be woken;
    /// `None` when nobody waits or no permit is free.
    fn grant_front(&self, queue: &mut VecDeque<Arc<Waiter>>) -> Option<Arc<Waiter>> {
        let max = self.max_concurrent.load(Relaxed);
        loop {
            if queue.front()?.state.load(Acquire) != WAITING {
                queue.pop_front();
                continue;
            }
            // Take a permit for it...
            self.counts
                .fetch_update(AcqRel, Acquire, |word| {
                    (in_flight_of(word) < max).then_some(word + 1)
                })
                .ok()?;
            let front = queue.pop_front()?;
            // ...unless it gave up meanwhile (then it already left the count of waiters).
            if front
                .state
                .compare_exchange(WAITING, GRANTED, AcqRel, Acquire)
                .is_err()
            {
                self.counts.fetch_sub(1, AcqRel);
                continue;
            }
            self.counts.fetch_sub(ONE_QUEUED, AcqRel);
            return Some(front);
        }
    }

    /// Gives a permit back on core `stripe`, with the call it counted there (`calls`: one,
    /// or none for a permit granted to a waiter that left): in the fast zone to the core's
    /// spares (at most two batches, the rest to the count), else to the count, handing it
    /// to the next waiter.
    #[inline]
    fn release(&self, stripe: usize, calls: u64) {
        let max = self.max_concurrent.load(Relaxed);
        let batch = self.batch(max);
        let core = &self.cores.get(stripe).word;
        if batch != 0 && Self::in_fast_zone(self.counts.load(Acquire), batch, max) {
            // One step: a spare more, the call less (wrapping: `calls` is in the high half,
            // which holds at least it).
            let held = spare_of(core.fetch_add(1u64.wrapping_sub(calls), SeqCst)) + 1;
            let surplus = held > 2 * batch
                && core
                    .fetch_update(AcqRel, Acquire, |word| {
                        (spare_of(word) > 2 * batch).then(|| word - batch as u64)
                    })
                    .is_ok();
            let before = if surplus {
                self.counts.fetch_sub(batch as u64, SeqCst)
            } else {
                // A waiter that came after the look above: its second look at the spares
                // (after counting itself) or this one finds the permit.
                self.counts.load(SeqCst)
            };
            if queued_of(before) > 0 {
                self.reclaim();
                self.grant(self.lock());
            }
            return;
        }
        if calls != 0 {
            core.fetch_sub(calls, Relaxed);
        }
        let before = self.counts.fetch_sub(1, SeqCst);
        if queued_of(before) > 0 {
            // Spares are free permits too: a waiter gets them before any core does.
            self.reclaim();
            self.grant(self.lock());
        }
    }

    /// Permits held by calls: those out less the cores' spares (a moment's reading).
    ///
    /// Spares move in two steps (out of a stripe, then out of the count): read between two
    /// equal readings of the count, they are never subtracted twice, so a call in flight
    /// throughout is seen. A batch being taken (in the count, not yet in its stripe) reads
    /// as calls for that moment.
    pub(crate) fn in_flight(&self) -> usize {
        let mut out = in_flight_of(self.counts.load(Acquire));
        for _ in 0..4 {
            let spares = self.spares();
            let again = in_flight_of(self.counts.load(Acquire));
            if again == out {
                return out.saturating_sub(spares);
            }
            out = again;
        }
        out.saturating_sub(self.spares())
    }

    pub(crate) fn queued(&self) -> usize {
        queued_of(self.counts.load(Acquire))
    }

    pub(crate) fn max_concurrent(&self) -> usize {
        self.max_concurrent.load(Relaxed)
    }

    pub(crate) fn max_queue(&self) -> usize {
        self.max_queue.load(Relaxed)
    }

    /// Changes the limits; calls in flight are not affected. A raised limit admits waiters
    /// at once.
    pub(crate) fn set_limits(&self, max_concurrent: usize, max_queue: usize) {
        self.max_concurrent
            .store(max_concurrent.min(u32::MAX as usize), SeqCst);
        self.max_queue
            .store(max_queue.min(u32::MAX as usize), SeqCst);
        self.grant(self.lock());
    }

    /// Counts a refusal and builds its error.
    #[cold]
    pub(crate) fn refuse(&self, reason: FullReason) -> BoxError {
        let counter = match reason {
            FullReason::QueueFull => &self.stats.rejected_queue_full,
            FullReason::WaitTimeout => &self.stats.rejected_wait_timeout,
            FullReason::Deadline => &self.stats.rejected_deadline,
        };
        counter.fetch_add(1, Relaxed);
        self.listeners.emit(|| BulkheadEvent::Rejected {
            bulkhead: self.name.clone(),
            reason,
        });
        let rejection = Rejection::new(RejectionKind::BulkheadFull, self.name.clone())
            .with_reason(reason.as_str());
        Box::new(BulkheadFull::new(reason, rejection))
    }

    pub(crate) fn record_wait(&self, waited: Duration) {
        self.listeners.emit(|| BulkheadEvent::Waited {
            bulkhead: self.name.clone(),
            wait: waited,
        });
        let sample = u64::try_from(waited.as_nanos()).unwrap_or(u64::MAX);
        let _ = self
            .stats
            .mean_wait_nanos
            .fetch_update(Relaxed, Relaxed, |mean| {
                Some(if mean == 0 {
                    sample
                } else {
                    mean - mean / 8 + sample / 8
                })
            });
    }

    /// Lowers the mean wait by an eighth: a call refused on the estimate never waits, so it
    /// never brings a fresh sample, and without this a mean learned in a burst of long
    /// waits would refuse short-deadline calls for ever after the queue got fast again.
    pub(crate) fn forget_some_wait(&self) {
        let _ = self
            .stats
            .mean_wait_nanos
            .fetch_update(Relaxed, Relaxed, |mean| Some(mean - mean.div_ceil(8)));
    }

    pub(crate) fn mean_wait(&self) -> Duration {
        Duration::from_nanos(self.stats.mean_wait_nanos.load(Relaxed))
    }
}

/// What a call's permit or ticket holds of its compartment: its thread's handle, so that
/// permits on different cores write different reference counts.
pub(crate) type Holder = Arc<Stripe<Compartment>>;

/// Admission through a compartment, called on this thread's handle (which the permit keeps).
pub(crate) trait Admit {
    /// A permit now, a place in the queue, or a refusal because the queue is full.
    /// `bounded: false` queues without limit (backpressure admission).
    fn admit(&self, bounded: bool) -> Admission;
}

impl Admit for Holder {
    #[inline(always)]
    fn admit(&self, bounded: bool) -> Admission {
        let max = self.max_concurrent.load(Relaxed);
        let stripe = thread_index();
        if self.try_fast(max, stripe) {
            return Admission::Admitted(Permit::new(self, stripe));
        }
        let free = self.counts.fetch_update(SeqCst, Acquire, |word| {
            (queued_of(word) == 0 && in_flight_of(word) < max).then_some(word + 1)
        });
        match free {
            Ok(_) => Compartment::admitted(self, stripe),
            Err(_) => Compartment::enqueue(self, bounded, stripe),
        }
    }
}

/// One call's place in flight; released (and handed to the next waiter) when dropped.
#[derive(Debug)]
pub(crate) struct Permit {
    compartment: Holder,
    /// The core the call was admitted on: it leaves that core's count.
    stripe: usize,
}

impl Permit {
    /// The permit of a call counted on core `stripe`.
    #[inline]
    fn new(compartment: &Holder, stripe: usize) -> Self {
        Permit {
            compartment: compartment.clone(),
            stripe,
        }
    }
}

impl Drop for Permit {
    #[inline]
    fn drop(&mut self) {
        self.compartment.release(self.stripe, ONE_CALL);
    }
}

/// A place in the queue. Dropped before its permit is claimed, it leaves the queue (or
/// passes on a permit granted meanwhile).
#[derive(Debug)]
pub(crate) struct Ticket {
    compartment: Holder,
    /// The core the call asked on: its permit counts there.
    stripe: usize,
    waiter: Arc<Waiter>,
    done: bool,
}

impl Ticket {
    /// Ready with the permit once the ticket reaches the front and a permit frees up.
    pub(crate) fn poll_permit(&mut self, cx: &mut Context<'_>) -> Poll<Permit> {
        if self.waiter.state.load(Acquire) != GRANTED {
            *self.waiter.waker.lock().unwrap_or_else(|e| e.into_inner()) = Some(cx.waker().clone());
            // Granted between the check and the registration: the granter found no waker.
            if self.waiter.state.load(Acquire) != GRANTED {
                return Poll::Pending;
            }
        }
        self.done = true;
        self.compartment.enter(self.stripe);
        Poll::Ready(Permit::new(&self.compartment, self.stripe))
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        if self.done {
            return;
        }
        match self
            .waiter
            .state
            .compare_exchange(WAITING, CANCELLED, AcqRel, Acquire)
        {
            Ok(_) => {
                self.compartment.counts.fetch_sub(ONE_QUEUED, AcqRel);
                // It may stay queued until a grant or a sweep reaches it: the waker (which
                // keeps its task alive) goes now.
                let _waker = self
                    .waiter
                    .waker
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .take();
            }
            // Granted but never claimed: the permit is ours to give back.
            Err(_) => self.compartment.release(self.stripe, 0),
        }
    }
}

#[cfg(all(test, not(bulwark_loom)))]
mod tests;

#[cfg(all(test, bulwark_loom))]
mod loom_model;
