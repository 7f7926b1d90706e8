//! [`Striped`]: one shared value behind a handle per thread, so that the futures holding it
//! on different cores do not all write one reference count.
//!
//! A response future that reaches its layer's state after the call (a breaker recording the
//! outcome, a limiter giving back its permit) holds an `Arc` of that state, and cloning and
//! dropping an `Arc` writes its count. Two cores calling through one layer then take turns
//! owning the count's cache line, twice a call, and a success path that otherwise only
//! reads shared state stops scaling. A [`Stripe`] is a handle to the shared value in an
//! allocation of its own, on cache lines of its own; [`Striped::local`] gives each thread
//! always the same one, so threads on different stripes write different lines. This is the
//! per-call half of Java's `LongAdder` idea: spread the writes, share the reads.

use std::fmt;
use std::ops::Deref;
use std::sync::{Arc, OnceLock};

/// One handle to a [`Striped`] value: derefs to it. It sits on cache lines of its own (128
/// bytes: a line and the neighbour x86's spatial prefetcher pulls in with it), so the
/// reference count of its `Arc` shares a line with nothing another stripe writes.
#[derive(Debug)]
#[repr(align(128))]
pub struct Stripe<T> {
    shared: Arc<T>,
}

impl<T> Stripe<T> {
    /// A handle of its own to `shared` (a stripe of one, for a value few calls share).
    pub fn new(shared: Arc<T>) -> Arc<Self> {
        Arc::new(Stripe { shared })
    }

    /// The shared value's `Arc`.
    pub fn shared(&self) -> &Arc<T> {
        &self.shared
    }
}

impl<T> Deref for Stripe<T> {
    type Target = T;

    #[inline(always)]
    fn deref(&self) -> &T {
        &self.shared
    }
}

/// A shared value with a [`Stripe`] per core (the machine's parallelism rounded up to a
/// power of two, at most 64): a thread takes its stripe with [`local`](Striped::local) and
/// clones that `Arc` for each call's future. Cloning a `Striped` shares the stripes.
///
/// ```
/// use std::sync::Arc;
/// use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
/// use tower_bulwark_core::stripes::Striped;
///
/// let calls = Striped::new(Arc::new(AtomicU64::new(0)));
/// // What a call's future would hold: this thread's handle, not the shared `Arc`.
/// let held = calls.local().clone();
/// held.fetch_add(1, Relaxed);
/// assert_eq!(calls.shared().load(Relaxed), 1);
/// ```
pub struct Striped<T> {
    stripes: Arc<[Arc<Stripe<T>>]>,
}

/// The shared value, once (not once per stripe).
impl<T: fmt::Debug> fmt::Debug for Striped<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Striped").field(&**self.shared()).finish()
    }
}

impl<T> Clone for Striped<T> {
    fn clone(&self) -> Self {
        Striped {
            stripes: self.stripes.clone(),
        }
    }
}

impl<T> Striped<T> {
    /// A stripe per core, each a handle to `shared`.
    pub fn new(shared: Arc<T>) -> Self {
        let stripes = (0..stripe_count())
            .map(|_| Stripe::new(shared.clone()))
            .collect();
        Striped { stripes }
    }

    /// This thread's stripe.
    #[inline]
    pub fn local(&self) -> &Arc<Stripe<T>> {
        self.get(thread_index())
    }

    /// The stripe of thread number `index` ([`thread_index`]), for a call that keeps it.
    #[inline]
    pub fn get(&self, index: usize) -> &Arc<Stripe<T>> {
        // The count is a power of two and never zero.
        &self.stripes[index & (self.stripes.len() - 1)]
    }

    /// The shared value's `Arc`.
    pub fn shared(&self) -> &Arc<T> {
        &self.stripes[0].shared
    }
}

impl<T> Deref for Striped<T> {
    type Target = T;

    #[inline(always)]
    fn deref(&self) -> &T {
        &self.stripes[0].shared
    }
}

/// A value per core, each on cache lines of its own: a thread works on its own
/// ([`local`](PerCore::local)), a reader goes through all of them ([`iter`](PerCore::iter)).
/// The shed layer's tier counts and window tallies, the cores' spares of its places and of
/// the bulkhead's permits.
///
/// ```
/// use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
/// use tower_bulwark_core::stripes::PerCore;
///
/// let tallies = PerCore::new(|| AtomicU64::new(0));
/// tallies.local().fetch_add(5, Relaxed);
/// assert_eq!(tallies.iter().map(|t| t.load(Relaxed)).sum::<u64>(), 5);
/// ```
#[derive(Debug)]
pub struct PerCore<T> {
    stripes: Box<[Padded<T>]>,
}

impl<T> PerCore<T> {
    /// A value per core (see [`Striped`] for how many), each made by `make`.
    pub fn new(make: impl FnMut() -> T) -> Self {
        PerCore::with_stripes(stripe_count(), make)
    }

    /// `stripes` values (a power of two: one is used if it is not), for models and tests
    /// that choose.
    #[doc(hidden)]
    pub fn with_stripes(stripes: usize, mut make: impl FnMut() -> T) -> Self {
        let stripes = if stripes.is_power_of_two() {
            stripes
        } else {
            1
        };
        PerCore {
            stripes: (0..stripes).map(|_| Padded(make())).collect(),
        }
    }

    /// This thread's value.
    #[inline]
    pub fn local(&self) -> &T {
        self.get(thread_index())
    }

    /// The value of stripe `index` (taken modulo the stripes), for models that choose.
    #[inline]
    #[doc(hidden)]
    pub fn get(&self, index: usize) -> &T {
        &self.stripes[index & (self.stripes.len() - 1)]
    }

    /// Every core's value.
    pub fn iter(&self) -> impl Iterator<Item = &T> {
        self.stripes.iter().map(|stripe| &stripe.0)
    }

    /// How many values there are.
    pub fn len(&self) -> usize {
        self.stripes.len()
    }

    /// Never: there is at least one value.
    pub fn is_empty(&self) -> bool {
        false
    }
}

/// A value on cache lines of its own: 128 bytes, a line and the neighbour that x86's
/// spatial prefetcher pulls in with it. Counters that calls write go in one, so their
/// writes do not keep invalidating the lines other calls read or write (false sharing).
#[derive(Debug, Default)]
#[repr(align(128))]
pub struct Padded<T>(pub T);

impl<T> Deref for Padded<T> {
    type Target = T;

    #[inline(always)]
    fn deref(&self) -> &T {
        &self.0
    }
}

/// The number of stripes: the machine's parallelism, rounded up to a power of two, at most
/// 64 (a stripe per core; more would be memory no core writes). Read once: it can read
/// cgroup files.
pub(crate) fn stripe_count() -> usize {
    static COUNT: OnceLock<usize> = OnceLock::new();
    if cfg!(bulwark_loom) {
        // The models are about the shared state, not which handle a thread holds.
        return 1;
    }
    *COUNT.get_or_init(|| {
        std::thread::available_parallelism()
            .map_or(1, usize::from)
            .next_power_of_two()
            .min(64)
    })
}

/// This thread's number, the index [`PerCore::get`] takes (what [`PerCore::local`] uses):
/// threads are numbered in the order they first ask, so a runtime's workers, started
/// together, take consecutive stripes. A call that must undo on the core it started on
/// (its task may move) keeps this number.
#[inline]
pub fn thread_index() -> usize {
    use std::cell::Cell;

    if cfg!(bulwark_loom) {
        // Deterministic under the models: they choose stripes explicitly.
        return 0;
    }
    use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};

    static NEXT: AtomicUsize = AtomicUsize::new(0);
    thread_local! {
        static INDEX: Cell<usize> = const { Cell::new(usize::MAX) };
    }
    INDEX.with(|index| {
        let mut value = index.get();
        if value == usize::MAX {
            value = NEXT.fetch_add(1, Relaxed) & (usize::MAX >> 1);
            index.set(value);
        }
        value
    })
}

#[cfg(all(test, not(bulwark_loom)))]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};

    #[test]
    fn every_stripe_is_a_handle_to_the_one_value() {
        let striped = Striped::new(Arc::new(AtomicUsize::new(0)));
        assert!(striped.stripes.len().is_power_of_two());
        assert!(striped.stripes.len() <= 64);
        for stripe in striped.stripes.iter() {
            stripe.fetch_add(1, Relaxed);
            assert!(Arc::ptr_eq(stripe.shared(), striped.shared()));
        }
        assert_eq!(striped.load(Relaxed), striped.stripes.len());
        // The shared value has one reference per stripe, and stripes are allocations of
        // their own: a clone of one writes no other's count.
        assert_eq!(Arc::strong_count(striped.shared()), striped.stripes.len());
        let held = striped.local().clone();
        assert_eq!(Arc::strong_count(&held), 2);
        assert_eq!(Arc::strong_count(striped.shared()), striped.stripes.len());
    }

    #[test]
    fn a_thread_keeps_its_stripe_and_threads_take_turns() {
        let striped = Striped::new(Arc::new(()));
        let mine = Arc::as_ptr(striped.local());
        assert_eq!(
            Arc::as_ptr(striped.local()),
            mine,
            "the same stripe each time"
        );
        let index = thread_index();
        let others: Vec<usize> = (0..4)
            .map(|_| std::thread::spawn(thread_index).join().unwrap())
            .collect();
        // Later threads take later numbers (other tests' threads may come between).
        assert!(others.windows(2).all(|pair| pair[0] < pair[1]));
        assert!(others.iter().all(|&other| other != index));
    }

    #[test]
    fn stripes_sit_on_lines_of_their_own() {
        assert_eq!(std::mem::align_of::<Stripe<u8>>(), 128);
        let striped = Striped::new(Arc::new(0u8));
        for stripe in striped.stripes.iter() {
            assert_eq!(Arc::as_ptr(stripe) as usize % 128, 0);
        }
    }

    /// A stripe index wraps to the stripes, as thread numbers past the cores do.
    #[test]
    fn an_index_wraps_to_the_stripes() {
        let striped = Striped::new(Arc::new(AtomicUsize::new(0)));
        let n = striped.stripes.len();
        assert_eq!(n, stripe_count());
        for index in 0..4 * n + 3 {
            assert!(Arc::ptr_eq(striped.get(index), &striped.stripes[index % n]));
        }
        let per_core = PerCore::with_stripes(4, || AtomicUsize::new(0));
        assert_eq!(per_core.len(), 4);
        assert!(!per_core.is_empty());
        for index in 0..19 {
            assert!(std::ptr::eq(
                per_core.get(index),
                &per_core.stripes[index % 4].0
            ));
        }
        assert_eq!(
            PerCore::with_stripes(3, || 0u8).len(),
            1,
            "not a power of two: one"
        );
    }

    #[test]
    fn a_stripe_per_core_rounded_to_a_power_of_two() {
        let cores = std::thread::available_parallelism().map_or(1, usize::from);
        assert_eq!(stripe_count(), cores.next_power_of_two().min(64));
    }

    #[test]
    fn debug_prints_the_shared_value_once() {
        let striped = Striped::new(Arc::new("the-state"));
        let printed = format!("{striped:?}");
        assert_eq!(printed.matches("the-state").count(), 1, "{printed}");
    }

    #[test]
    fn dropping_every_handle_drops_the_value() {
        let value = Arc::new(());
        let striped = Striped::new(value.clone());
        let held = striped.local().clone();
        drop(striped);
        assert_eq!(
            Arc::strong_count(&value),
            2,
            "the held stripe keeps its handle"
        );
        drop(held);
        assert_eq!(Arc::strong_count(&value), 1);
    }
}
