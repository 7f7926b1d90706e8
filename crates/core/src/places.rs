//! [`Places`]: calls in flight against a limit, counted so that calls far below the limit
//! write only their own core's cache line.
//!
//! One shared in-flight count is two writes of one cache line per call (take, give back),
//! and cores calling together take turns owning it: a limit that is nowhere near reached
//! still serialises every core. `Places` keeps the exact count (`taken`) for when it
//! matters and, while the pool is far from full, lets each core hold a few spare places
//! taken from it in one batch, so that most calls take and give back a spare of their own
//! stripe. It is the idea of Linux's per-CPU counters, kept exact where it counts:
//!
//! - `taken` counts every place out of the pool, held by a call or spare in a stripe, so
//!   it is never below the calls in flight. It grows by one place checked against the
//!   caller's ceiling, or by a batch that fits under half the limit: the limit is never
//!   exceeded.
//! - Spares are used only in the *fast zone*, while `taken` plus a batch is under half the
//!   limit and at most the call's ceiling: there, no tier is near its share, and an
//!   algorithm told "fewer than half the limit in use" decides as it would on the exact
//!   count.
//! - Out of the fast zone a call gives its stripe's spares back and counts exactly (the
//!   count it returns leaves out the spares other cores still hold); a call that would be
//!   refused first takes back every stripe's spares (a thread that went quiet holding
//!   some), again if a busy core took a batch meanwhile, a few times at most. Only a
//!   batch taken at the very instant a call at its ceiling looks (counted, not yet in its
//!   stripe) can refuse that call.

use std::fmt;

use crate::stripes::{thread_index, Padded, PerCore};
use crate::sync::{AtomicUsize, Ordering::*};

/// The most places a stripe takes from the pool at once.
const MAX_BATCH: usize = 64;

/// The places (permits) a core takes from a pool of `limit` at once, with `stripes` cores
/// (a power of two): an eighth of the limit spread over the cores, at most 64; zero (every
/// place counted) when that is under two (limits under 16 a core, where a core's share is
/// a call or two and the count is best exact) or with one core. [`Places`] and the
/// bulkhead's permits take their batches so.
#[inline]
pub fn batch(limit: usize, stripes: usize) -> usize {
    if stripes <= 1 {
        return 0;
    }
    // A power of two: a shift, not a division.
    match limit >> (3 + stripes.trailing_zeros()) {
        0 | 1 => 0,
        batch => batch.min(MAX_BATCH),
    }
}

/// How many times a call at its ceiling takes spares back before it is refused.
const MAX_RECLAIMS: usize = 8;

/// Whether `batch` more places out of `taken` stay under half of `limit`: spares are used
/// only there, so the bound a fast take returns is under half the limit, where the
/// algorithms' "is the limit in use?" tests answer as they would on the exact count.
#[inline]
fn in_fast_zone(taken: usize, batch: usize, limit: usize) -> bool {
    taken.saturating_add(batch) < limit / 2
}

/// Calls in flight against a limit (see the [module](self) docs): exact where a limit or a
/// tier's share is near, spread over the cores far below it.
///
/// ```
/// use tower_bulwark_core::places::Places;
///
/// let places = Places::new();
/// let limit = 2;
/// assert_eq!(places.try_take(limit, limit), Some(1));
/// assert_eq!(places.try_take(limit, limit), Some(2));
/// assert_eq!(places.try_take(limit, limit), None, "full");
/// places.give(limit);
/// assert_eq!(places.in_use(), 1);
/// ```
pub struct Places {
    /// Places out of the pool: held by calls, or spare in a stripe.
    taken: Padded<AtomicUsize>,
    /// Each stripe's spare places, for its thread's next calls.
    spare: PerCore<AtomicUsize>,
}

impl Default for Places {
    fn default() -> Self {
        Places::new()
    }
}

impl fmt::Debug for Places {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Places")
            .field("in_use", &self.in_use())
            .finish_non_exhaustive()
    }
}

impl Places {
    /// An empty pool with a stripe per core.
    pub fn new() -> Self {
        Places {
            taken: Padded(AtomicUsize::new(0)),
            spare: PerCore::new(|| AtomicUsize::new(0)),
        }
    }

    /// An empty pool with `stripes` stripes (a power of two; the models and tests choose).
    #[doc(hidden)]
    pub fn with_stripes(stripes: usize) -> Self {
        Places {
            taken: Padded(AtomicUsize::new(0)),
            spare: PerCore::with_stripes(stripes, || AtomicUsize::new(0)),
        }
    }

    /// Takes a place for a call that may have one while fewer than `ceiling` places are in
    /// use, of a pool of `limit` (`ceiling <= limit`: a tier's share). Returns the places
    /// in use with this one: exact when counted, and an upper bound under half the limit
    /// in the fast zone; `None` when the call must be refused.
    #[inline]
    pub fn try_take(&self, ceiling: usize, limit: usize) -> Option<usize> {
        self.try_take_on(thread_index(), ceiling, limit)
    }

    /// [`try_take`](Self::try_take)'s fast half: a spare of this core's (or a batch of
    /// them), if the pool is in the fast zone for `ceiling`; `None` says "take a counted
    /// place", not "refused". Returns an upper bound of the places in use, under half the
    /// limit: exact when other cores hold no spares.
    #[inline]
    pub fn try_take_fast(&self, ceiling: usize, limit: usize) -> Option<usize> {
        self.try_take_fast_on(thread_index(), ceiling, limit)
    }

    /// [`try_take`](Self::try_take)'s exact half: a place against the exact count, after
    /// this core's spares go back to the pool; before refusing, every core's spares come
    /// back, once. Returns the places in use with this one.
    pub fn take_counted(&self, ceiling: usize) -> Option<usize> {
        self.take_counted_on(thread_index(), ceiling)
    }

    /// Takes a place whatever the limit (a shadow mode admits everything); returns the
    /// places in use with it, counted exactly.
    pub fn take_anyway(&self) -> usize {
        self.taken.fetch_add(1, AcqRel) + 1
    }

    /// Gives back a place taken by [`try_take`](Self::try_take) or
    /// [`take_anyway`](Self::take_anyway), from any thread.
    #[inline]
    pub fn give(&self, limit: usize) {
        self.give_on(thread_index(), limit)
    }

    /// The places in use: those out of the pool less the spares (a moment's reading while
    /// calls come and go).
    pub fn in_use(&self) -> usize {
        // Spares move in two steps (out of a stripe then out of the count, or into the
        // count then into a stripe): read between two equal readings of the count, the
        // spares are never subtracted twice, so a call in flight throughout is seen.
        let mut taken = self.taken.load(Acquire);
        for _ in 0..4 {
            let spares = self.spares();
            let again = self.taken.load(Acquire);
            if again == taken {
                return taken.saturating_sub(spares);
            }
            taken = again;
        }
        taken.saturating_sub(self.spares())
    }

    /// The places a stripe takes at once for `limit` (see [`batch`]).
    #[inline]
    fn batch(&self, limit: usize) -> usize {
        batch(limit, self.spare.len())
    }

    #[inline]
    fn stripe(&self, index: usize) -> &AtomicUsize {
        self.spare.get(index)
    }

    /// [`try_take`](Self::try_take) on stripe `index`.
    #[inline]
    #[doc(hidden)]
    pub fn try_take_on(&self, index: usize, ceiling: usize, limit: usize) -> Option<usize> {
        self.try_take_fast_on(index, ceiling, limit)
            .or_else(|| self.take_counted_on(index, ceiling))
    }

    /// [`try_take_fast`](Self::try_take_fast) on stripe `index`.
    #[inline]
    #[doc(hidden)]
    pub fn try_take_fast_on(&self, index: usize, ceiling: usize, limit: usize) -> Option<usize> {
        let batch = self.batch(limit);
        if batch == 0 {
            return None;
        }
        let taken = self.taken.load(Acquire);
        if !in_fast_zone(taken, batch, limit) || taken + batch > ceiling {
            return None;
        }
        // What is out of the pool, less this stripe's spares, is in use (or spare in
        // another stripe): the bound returned, under half the limit.
        let spare = self.stripe(index);
        if let Ok(held) = spare.fetch_update(AcqRel, Acquire, |n| n.checked_sub(1)) {
            return Some(taken.saturating_sub(held - 1));
        }
        // Racing another batch or a counted place: counted, then.
        self.taken
            .compare_exchange(taken, taken + batch, AcqRel, Acquire)
            .ok()?;
        spare.fetch_add(batch - 1, AcqRel);
        Some(taken + 1)
    }

    /// [`take_counted`](Self::take_counted) on stripe `index`.
    #[doc(hidden)]
    pub fn take_counted_on(&self, index: usize, ceiling: usize) -> Option<usize> {
        let spare = self.stripe(index);
        if spare.load(Relaxed) != 0 {
            self.return_spares(spare);
        }
        // Spares taken back may be taken again by a busy core's next batch before this
        // call looks again: it takes them back again, a few times at most.
        let mut reclaims = 0;
        let mut current = self.taken.load(Acquire);
        loop {
            if current >= ceiling {
                if reclaims == MAX_RECLAIMS || !self.reclaim() {
                    return None;
                }
                reclaims += 1;
                current = self.taken.load(Acquire);
                continue;
            }
            match self
                .taken
                .compare_exchange_weak(current, current + 1, AcqRel, Acquire)
            {
                // Near the limit cores hold few spares, if any: their lines are read, not
                // moved, and the count handed to an algorithm does not hold them.
                Ok(_) => return Some((current + 1).saturating_sub(self.spares())),
                Err(actual) => current = actual,
            }
        }
    }

    /// [`give`](Self::give) on stripe `index`.
    #[inline]
    #[doc(hidden)]
    pub fn give_on(&self, index: usize, limit: usize) {
        let batch = self.batch(limit);
        if batch != 0 && in_fast_zone(self.taken.load(Acquire), batch, limit) {
            // Kept for this stripe's next call; a stripe holds at most two batches.
            let spare = self.stripe(index);
            if spare.fetch_add(1, AcqRel) + 1 > 2 * batch
                && spare
                    .fetch_update(AcqRel, Acquire, |n| (n > 2 * batch).then(|| n - batch))
                    .is_ok()
            {
                self.taken.fetch_sub(batch, AcqRel);
            }
            return;
        }
        self.taken.fetch_sub(1, AcqRel);
    }

    /// Every stripe's spares (a moment's reading).
    fn spares(&self) -> usize {
        self.spare
            .iter()
            .fold(0usize, |sum, spare| sum.saturating_add(spare.load(Acquire)))
    }

    /// Gives a stripe's spares back to the pool; whether it held any.
    fn return_spares(&self, spare: &AtomicUsize) -> bool {
        let spares = spare.swap(0, AcqRel);
        if spares != 0 {
            self.taken.fetch_sub(spares, AcqRel);
        }
        spares != 0
    }

    /// Gives every stripe's spares back; whether any were held.
    #[cold]
    fn reclaim(&self) -> bool {
        self.spare
            .iter()
            .fold(false, |any, spare| self.return_spares(spare) | any)
    }
}

#[cfg(all(test, not(bulwark_loom)))]
mod tests {
    use super::*;

    /// Every place back: nothing in use and nothing out of the pool.
    fn assert_empty(places: &Places) {
        assert_eq!(places.in_use(), 0);
        places.reclaim();
        assert_eq!(places.taken.load(Relaxed), 0);
    }

    #[test]
    fn one_stripe_counts_every_place() {
        let places = Places::with_stripes(1);
        for n in 1..=1000 {
            assert_eq!(places.try_take_on(0, 1000, 1000), Some(n));
        }
        assert_eq!(places.try_take_on(0, 1000, 1000), None);
        for _ in 0..1000 {
            places.give_on(0, 1000);
        }
        assert_eq!(places.taken.load(Relaxed), 0);
    }

    #[test]
    fn batches_are_an_eighth_of_the_limit_over_the_stripes() {
        let places = Places::with_stripes(2);
        assert_eq!(places.batch(0), 0);
        assert_eq!(
            places.batch(31),
            0,
            "under two a stripe: every place counted"
        );
        assert_eq!(places.batch(32), 2);
        assert_eq!(places.batch(1024), 64);
        assert_eq!(places.batch(usize::MAX), MAX_BATCH);
        assert_eq!(Places::with_stripes(1).batch(usize::MAX), 0);
    }

    #[test]
    fn far_below_the_limit_a_stripe_takes_a_batch_and_then_its_spares() {
        let places = Places::with_stripes(2);
        assert_eq!(places.try_take_on(0, 1024, 1024), Some(1), "a batch");
        assert_eq!(places.spare.get(0).load(Relaxed), 63);
        assert_eq!(places.taken.load(Relaxed), 64);
        assert_eq!(places.try_take_on(0, 1024, 1024), Some(2), "a spare");
        assert_eq!(places.spare.get(0).load(Relaxed), 62);
        assert_eq!(places.in_use(), 2);
        // The other stripe takes its own batch; the bound counts the first one's spares.
        assert_eq!(places.try_take_on(1, 1024, 1024), Some(65));
        assert_eq!(places.in_use(), 3);
        for stripe in [0, 0, 1] {
            places.give_on(stripe, 1024);
        }
        assert_empty(&places);
    }

    #[test]
    fn a_stripe_holds_at_most_two_batches() {
        let places = Places::with_stripes(2);
        // Taken on stripe 0, given back on stripe 1 (a task that moved threads).
        let taken: Vec<_> = (0..200)
            .map(|_| places.try_take_on(0, 1024, 1024).unwrap())
            .collect();
        assert!(taken.iter().all(|&n| n <= 512), "{taken:?}");
        for _ in 0..200 {
            places.give_on(1, 1024);
        }
        assert!(places.spare.get(1).load(Relaxed) <= 128);
        assert_eq!(places.in_use(), 0);
        assert_empty(&places);
    }

    /// The limit is exact: whatever the stripes hold, no more than `ceiling` calls are in,
    /// and a full pool's spares held by quiet stripes do not refuse a call, not even the
    /// one that finds the count at the ceiling and takes them back.
    #[test]
    fn the_ceiling_is_exact_and_idle_spares_do_not_refuse() {
        let places = Places::with_stripes(4);
        let limit = 1000;
        // Two quiet stripes hold a batch's spares each.
        for quiet in [2, 3] {
            assert!(places.try_take_on(quiet, limit, limit).is_some());
            places.give_on(quiet, limit);
            assert!(places.spare.get(quiet).load(Relaxed) > 0);
        }
        for i in 0..limit {
            assert!(
                places.try_take_on(i % 2, limit, limit).is_some(),
                "call {i} refused with {} in use",
                places.in_use()
            );
        }
        assert_eq!(places.try_take_on(0, limit, limit), None, "not one more");
        assert_eq!(places.try_take_on(3, limit, limit), None);
        assert_eq!(places.in_use(), limit);
        assert_eq!(
            places.spare.iter().map(|s| s.load(Relaxed)).sum::<usize>(),
            0
        );
        for i in 0..limit {
            places.give_on(i % 4, limit);
        }
        assert_empty(&places);
    }

    /// A call at its ceiling takes the quiet stripes' spares back, and is refused when
    /// what is left is still at the ceiling (not looked at again and again).
    #[test]
    fn a_call_at_its_ceiling_with_only_spares_out_is_refused_once_they_are_back() {
        let places = Places::with_stripes(2);
        let limit = 1024; // batches of 64
        places.try_take_on(1, limit, limit).unwrap();
        assert_eq!(places.spare.get(1).load(Relaxed), 63);
        assert_eq!(
            places.take_counted_on(0, 1),
            None,
            "one in use, ceiling one"
        );
        assert_eq!(places.spare.get(1).load(Relaxed), 0, "taken back");
        assert_eq!(places.take_counted_on(0, 2), Some(2));
    }

    /// `try_take`, `take_counted`, `try_take_fast` and `give` on this thread's stripe.
    #[test]
    fn the_calls_on_this_threads_stripe() {
        let places = Places::new();
        let limit = 3;
        assert_eq!(places.take_counted(limit), Some(1));
        assert_eq!(places.try_take(limit, limit), Some(2));
        assert_eq!(places.try_take(limit, limit), Some(3));
        assert_eq!(places.try_take(limit, limit), None, "full");
        assert_eq!(places.take_counted(limit), None, "full");
        for _ in 0..3 {
            places.give(limit);
        }
        assert_empty(&places);
        // Far below a large limit a fast take uses a batch, with more than one stripe.
        let limit = 1024;
        if places.spare.len() > 1 {
            assert_eq!(places.try_take_fast(limit, limit), Some(1));
            assert_eq!(places.try_take_fast(limit, limit), Some(2));
            places.give(limit);
            places.give(limit);
        } else {
            assert_eq!(places.try_take_fast(limit, limit), None, "one stripe");
        }
        assert_empty(&places);
    }

    #[test]
    fn the_fast_zone_ends_a_batch_before_half_the_limit() {
        assert!(in_fast_zone(13, 2, 32));
        assert!(!in_fast_zone(14, 2, 32), "14 and a batch of 2 reach half");
        assert!(!in_fast_zone(usize::MAX, 2, 32), "no overflow");
    }

    /// A batch that brings the places out exactly to the call's ceiling is taken.
    #[test]
    fn a_batch_may_reach_the_ceiling() {
        let places = Places::with_stripes(2);
        let limit = 1024; // batches of 64
        assert_eq!(places.try_take_fast_on(0, 64, limit), Some(1));
        assert_eq!(places.spare.get(0).load(Relaxed), 63);
        assert_eq!(
            places.try_take_fast_on(1, 127, limit),
            None,
            "64 out and a batch more pass 127"
        );
    }

    /// A stripe given back more than two batches of spares returns one batch to the pool.
    #[test]
    fn a_stripe_past_two_batches_gives_one_back() {
        let places = Places::with_stripes(2);
        let limit = 1024; // batches of 64
        for _ in 0..200 {
            places.try_take_on(0, limit, limit).unwrap();
        }
        assert_eq!(places.taken.load(Relaxed), 256, "four batches");
        // Given back on stripe 1 (tasks that moved threads).
        for _ in 0..128 {
            places.give_on(1, limit);
        }
        assert_eq!(places.spare.get(1).load(Relaxed), 128, "two batches kept");
        assert_eq!(places.taken.load(Relaxed), 256);
        places.give_on(1, limit);
        assert_eq!(places.spare.get(1).load(Relaxed), 65, "one batch back");
        assert_eq!(places.taken.load(Relaxed), 192);
        assert_eq!(places.in_use(), 71);
    }

    /// A tier's ceiling under half the limit: the fast zone ends below it, and the count
    /// above it is exact.
    #[test]
    fn a_lower_ceiling_is_exact_too() {
        let places = Places::with_stripes(2);
        let (ceiling, limit) = (100, 1024);
        let admitted = (0..500)
            .filter(|i| places.try_take_on(i % 2, ceiling, limit).is_some())
            .count();
        assert_eq!(admitted, ceiling);
        assert_eq!(places.in_use(), ceiling);
    }

    /// Out of the fast zone, a stripe's spares go back when its thread next takes a place,
    /// so the count the algorithms see is near the truth.
    #[test]
    fn out_of_the_fast_zone_spares_go_back() {
        let places = Places::with_stripes(2);
        let limit = 1024;
        places.try_take_on(0, limit, limit).unwrap();
        assert_eq!(places.spare.get(0).load(Relaxed), 63);
        // Other calls fill the pool past half.
        for _ in 0..600 {
            places.try_take_on(1, limit, limit).unwrap();
        }
        let in_use = places.try_take_on(0, limit, limit).unwrap();
        assert_eq!(places.spare.get(0).load(Relaxed), 0);
        assert_eq!(in_use, places.taken.load(Relaxed));
        assert!(in_use <= 602 + 2 * 64, "{in_use}");
    }

    #[test]
    fn shadow_places_are_counted() {
        let places = Places::with_stripes(2);
        assert_eq!(places.take_anyway(), 1);
        assert_eq!(places.try_take_on(0, 1, 1024), None, "its place is in use");
        places.give_on(1, 1024);
        assert_empty(&places);
    }

    /// A counted place reports the places in use, not the spares quiet stripes hold: the
    /// shed layer hands it to the algorithm, whose "is the limit in use?" tests (AIMD:
    /// `in_flight * 2 >= limit`) would pass at far lower use.
    #[test]
    fn a_counted_place_reports_the_places_in_use_exactly() {
        let places = Places::with_stripes(4);
        let limit = 1024; // batches of 32, the fast zone up to 512
                          // Three quiet stripes each keep two batches of spares from calls now finished.
        for stripe in 1..4 {
            for _ in 0..64 {
                places.try_take_on(stripe, limit, limit).unwrap();
            }
            for _ in 0..64 {
                places.give_on(stripe, limit);
            }
        }
        assert_eq!(places.in_use(), 0);
        let mut last = 0;
        for _ in 0..330 {
            last = places.try_take_on(0, limit, limit).unwrap();
        }
        // Out of the fast zone now: counted.
        assert!(places.try_take_fast_on(0, limit, limit).is_none());
        assert_eq!(places.in_use(), 330);
        assert_eq!(last, 330, "counted, yet {last} reported with 330 in use");
    }

    /// The fast zone's bound stays under half the limit, other stripes' spares included:
    /// AIMD (`in_flight * 2 >= limit`), Vegas and Gradient2 (`in_flight < limit / 2` is
    /// idle) would read half as "the limit is in use".
    #[test]
    fn the_fast_zone_bound_is_under_half_the_limit() {
        let places = Places::with_stripes(2);
        let limit = 40; // batches of two, the fast zone under 20
                        // A quiet stripe keeps two spares.
        places.try_take_on(1, limit, limit).unwrap();
        places.try_take_on(1, limit, limit).unwrap();
        places.give_on(1, limit);
        places.give_on(1, limit);
        let mut bounds = Vec::new();
        while let Some(bound) = places.try_take_fast_on(0, limit, limit) {
            bounds.push(bound);
        }
        assert_eq!(places.in_use(), bounds.len());
        assert!(
            bounds.iter().all(|&bound| bound < limit / 2),
            "{bounds:?} with {} in flight",
            places.in_use()
        );
    }

    /// Two threads taking and giving back far below the limit: every place comes back.
    #[test]
    fn threads_leave_the_pool_whole() {
        let places = std::sync::Arc::new(Places::with_stripes(2));
        let threads: Vec<_> = (0..2)
            .map(|stripe| {
                let places = places.clone();
                std::thread::spawn(move || {
                    for _ in 0..10_000 {
                        let in_use = places.try_take_on(stripe, 1024, 1024).unwrap();
                        assert!(in_use <= 512);
                        places.give_on(stripe, 1024);
                    }
                })
            })
            .collect();
        for thread in threads {
            thread.join().unwrap();
        }
        assert_empty(&places);
    }
}

#[cfg(all(test, bulwark_loom))]
mod loom_model {
    use super::*;
    use loom::sync::Arc;

    /// Two stripes take their last places near the ceiling while one's spares are out:
    /// never more than the ceiling in use, and every place comes back.
    #[test]
    fn racing_takes_never_pass_the_ceiling() {
        loom::model(|| {
            // limit 32, two stripes: batches of 2, the fast zone up to 16.
            let places = Arc::new(Places::with_stripes(2));
            let ceiling = 4;
            // Three in use: stripe 0 holds no spare, stripe 1 one.
            places.try_take_on(0, 32, 32).unwrap();
            places.try_take_on(0, 32, 32).unwrap();
            places.try_take_on(1, 32, 32).unwrap();
            assert_eq!(places.in_use(), 3);
            let other = {
                let places = places.clone();
                loom::thread::spawn(move || places.try_take_on(1, ceiling, 32).is_some())
            };
            let mine = places.try_take_on(0, ceiling, 32).is_some();
            let theirs = other.join().unwrap();
            // Three in use, ceiling four: exactly one more gets in.
            assert!(mine ^ theirs, "mine {mine}, theirs {theirs}");
            assert_eq!(places.in_use(), 4);
        });
    }

    /// A give racing a reclaim: the place is counted once.
    #[test]
    fn a_give_racing_a_reclaim_is_counted_once() {
        loom::model(|| {
            let places = Arc::new(Places::with_stripes(2));
            places.try_take_on(0, 32, 32).unwrap();
            places.try_take_on(1, 32, 32).unwrap();
            let giver = {
                let places = places.clone();
                loom::thread::spawn(move || places.give_on(0, 32))
            };
            places.reclaim();
            giver.join().unwrap();
            assert_eq!(places.in_use(), 1);
            places.give_on(1, 32);
            places.reclaim();
            assert_eq!(places.taken.load(Relaxed), 0);
        });
    }

    /// A call at its ceiling takes every stripe's spares back and looks again; a fast take
    /// on another stripe in between (its spares just went back, so it takes a new batch)
    /// puts spares back in the count, and the call takes them back again. What is left: a
    /// batch taken at the very instant the call looks (counted, not yet in its stripe) can
    /// refuse it, once; with the batch in its stripe, the call gets in.
    #[test]
    fn a_batch_taken_again_does_not_refuse_a_call() {
        loom::model(|| {
            // limit 64, two stripes: batches of 4, the fast zone up to 32.
            let places = Arc::new(Places::with_stripes(2));
            let limit = 64;
            // One call in flight on stripe 1, which holds 3 spares.
            places.try_take_on(1, limit, limit).unwrap();
            let other = {
                let places = places.clone();
                // A second call on stripe 1 (a more important tier: the whole limit).
                loom::thread::spawn(move || places.try_take_on(1, limit, limit).unwrap())
            };
            // A call whose tier may join while fewer than 4 are in use.
            let mine = places.try_take_on(0, 4, limit);
            other.join().unwrap();
            let mine = mine.or_else(|| places.try_take_on(0, 4, limit));
            assert!(mine.is_some(), "refused with at most 2 of 4 in use");
            assert_eq!(places.in_use(), 3);
        });
    }

    /// `in_use` (the handle's `in_flight`) while a stripe's spares go back (`swap`, then
    /// `fetch_sub`): they are never subtracted twice, so a call in flight throughout is
    /// seen.
    #[test]
    fn in_use_never_misses_a_call_in_flight_throughout() {
        loom::model(|| {
            let places = Arc::new(Places::with_stripes(2));
            let limit = 64;
            // One call in flight throughout; stripe 1 holds 3 spares.
            places.try_take_on(1, limit, limit).unwrap();
            let other = {
                let places = places.clone();
                // Out of the fast zone for this ceiling: counted, its stripe's spares go back.
                loom::thread::spawn(move || places.take_counted_on(1, limit).unwrap())
            };
            let seen = places.in_use();
            other.join().unwrap();
            assert!(seen >= 1, "in_use read {seen} with a call in flight");
        });
    }

    /// `in_use` while another stripe takes a batch (the count first, then its spares): a
    /// count read before the batch and spares read after it would subtract spares the
    /// count never held. A call in flight throughout is seen.
    #[test]
    fn in_use_never_misses_a_call_in_flight_while_a_batch_is_taken() {
        loom::model(|| {
            // Limit 32 with two stripes: batches of 2, the fast zone under 16.
            let limit = 32;
            let places = Arc::new(Places::with_stripes(2));
            // One call counted on stripe 1: no spares anywhere.
            places.take_counted_on(1, limit).unwrap();
            let reader = {
                let places = places.clone();
                loom::thread::spawn(move || places.in_use())
            };
            places.try_take_fast_on(0, limit, limit).unwrap();
            let seen = reader.join().unwrap();
            // At most the places out: a batch being taken (counted, not yet in its
            // stripe) reads as calls for that moment.
            assert!(
                (1..=3).contains(&seen),
                "in_use read {seen} with one or two calls in flight"
            );
        });
    }

    /// Fast takes and gives on both stripes at once: the books stay whole.
    #[test]
    fn fast_takes_and_gives_keep_the_books() {
        loom::model(|| {
            let places = Arc::new(Places::with_stripes(2));
            let other = {
                let places = places.clone();
                loom::thread::spawn(move || {
                    places.try_take_on(1, 32, 32).unwrap();
                    places.give_on(1, 32);
                })
            };
            places.try_take_on(0, 32, 32).unwrap();
            places.give_on(0, 32);
            other.join().unwrap();
            assert_eq!(places.in_use(), 0);
            places.reclaim();
            assert_eq!(places.taken.load(Relaxed), 0);
        });
    }
}
