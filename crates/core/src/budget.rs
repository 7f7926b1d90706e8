//! [`RatioLedger`]: the balance of a ratio budget, the one behind the retry budget
//! (`tower_bulwark_retry::RatioBudget`) and the hedge budget (`HedgeBuilder::budget_ratio`).
//!
//! Every call deposits `ratio` of an extra attempt (a retry, a hedge), every extra attempt
//! withdraws one, and both expire after the window; `min_per_sec` extra attempts a second
//! are always there (a reserve, so a quiet service can still retry). It is the model of
//! Finagle's and tower's `TpsBudget`, kept as a *running balance* rather than a sum over a
//! window: a withdrawal must take the last unit in one compare-and-swap, so two racing
//! callers can never both take it, which a sum read and then written cannot give (the
//! reason this is not [`SlidingCounts`](crate::window::SlidingCounts)).
//!
//! - Units are fixed-point, a thousandth of an attempt: a 0.6 ratio allows 3 extra attempts
//!   per 5 calls, not 1 per call.
//! - The window is kept in 10 slices, a ring of one word each: the slice's net (deposits
//!   − withdrawals) tagged with the slice's number, so a slot's tag and net change in one
//!   atomic step. When a slice leaves the window, its slot is given to the new slice
//!   (tag swapped, net taken back out of the balance) by whichever caller gets there
//!   first: the one that claimed the new slice (one compare-and-swap on the newest slice's
//!   number), or a deposit or withdrawal into the new slice that finds the slot still
//!   holding the old one. Each slice expires exactly once however many callers race.
//!   After an idle gap of a whole window, one claim expires every slice.
//! - So a deposit or withdrawal is recorded in its own slice (or, for a caller whose slice
//!   left the window between its clock read and its write, a withdrawal in the newer slice
//!   and a deposit not at all), and leaves the balance with that slice, a window later:
//!   never early. The balance always equals the reserve plus the nets of the live slices
//!   (loom-checked), and a withdrawal never takes a unit the balance did not hold at its
//!   compare-and-swap. A withdrawal gives its slice its slot before it reads the
//!   balance, and the old slice's net leaves the balance before its slot changes hands,
//!   so no withdrawal is paid by a slice that has left the window. The balance errs the
//!   cautious way only: for an instant it lacks a deposit between its slot write and its
//!   balance add, or, when two callers race to hand over one slot, the loser's copy of the
//!   old net (put back at once), which can refuse a withdrawal made in that instant.
//! - The balance goes below zero while withdrawals outlive the deposits that paid for them
//!   (a deposit early in the window paying a withdrawal late in it leaves first): every
//!   withdrawal, at its compare-and-swap, had the reserve plus the live deposits behind it.
//! - Tags are the low 24 bits of the slice number; nets are 40-bit (half a billion extra
//!   attempts a slice; a deposit beyond that is not counted, a withdrawal refused). Tags
//!   wrap after 2^24 slices (19 days of 100 ms slices): only a caller stalled between its
//!   clock read and its write for half of that, or a write racing the first claim after an
//!   idle gap within a window of a multiple of it, can be expired early.
//! - Deposits and withdrawals are lock-free; each does one read of the slice number on the
//!   happy path, and the time is the caller's (`now`, tokio's clock, so paused-time tests
//!   step it exactly).
//!
//! Bad values never panic: `ratio` is clamped to `0..=1000` (NaN is 0), the window to at
//! least 10 ns and the reserve to what the balance can hold. Callers validate their own
//! settings and name the field (CONTRIBUTING.md, rule 6).
//!
//! ```
//! use std::time::Duration;
//! use tokio::time::Instant;
//! use tower_bulwark_core::budget::RatioLedger;
//!
//! // 20% of calls may be retried, nothing for free, over 10 s.
//! let ledger = RatioLedger::new(Duration::from_secs(10), 0, 0.2);
//! let now = Instant::now();
//! for _ in 0..10 {
//!     ledger.deposit(now);
//! }
//! assert!(ledger.withdraw(now));
//! assert!(ledger.withdraw(now));
//! assert!(!ledger.withdraw(now), "10 calls at 20% buy 2 retries");
//! assert_eq!(ledger.balance(now), 0.0);
//! // Ten seconds on, the deposits and withdrawals have left the window.
//! assert_eq!(ledger.balance(now + Duration::from_secs(10)), 0.0);
//! ```

use std::fmt;
use std::time::Duration;

use tokio::time::Instant;

use crate::sync::{AtomicI64, AtomicU64, Ordering::*};

/// One extra attempt, in the ledger's fixed-point units: ratios are exact to a thousandth.
const UNIT: i64 = 1000;
/// How many slices the window is kept in.
const SLICES: u64 = 10;
/// The largest ratio kept: a thousand extra attempts per call.
const MAX_RATIO: f64 = 1000.0;
/// The largest reserve kept, in units: far from the balance's overflow.
const MAX_RESERVE: i64 = i64::MAX / 4;
/// A ring slot is one word: the low bits of its slice's number (the tag) above the slice's
/// net (deposits − withdrawals, in units, signed).
const NET_BITS: u32 = 40;
const TAG_BITS: u32 = 64 - NET_BITS;
const TAG_MASK: u64 = (1 << TAG_BITS) - 1;
const NET_MASK: u64 = (1 << NET_BITS) - 1;
/// The net a slot holds, either way: 2^39 units, half a billion extra attempts a slice.
const NET_MAX: i64 = (1 << (NET_BITS - 1)) - 1;
const NET_MIN: i64 = -(1 << (NET_BITS - 1));

/// A ratio budget's balance over a sliding window. See the [module docs](self).
pub struct RatioLedger {
    deposit: i64,
    reserve: i64,
    start: Instant,
    slice_nanos: u64,
    /// The newest slice whose expiry has been claimed.
    epoch: AtomicU64,
    /// Reserve + the nets of the live slices, in units.
    balance: AtomicI64,
    /// The ring of slices, each slot tagged with the slice it holds (see [`pack`]).
    slots: Box<[AtomicU64]>,
}

impl RatioLedger {
    /// A ledger over `window` (kept in 10 slices), where each call deposits `ratio` of an
    /// extra attempt and `min_per_sec` extra attempts a second are always available. Out of
    /// range values are clamped (see the [module docs](self)); it starts now.
    pub fn new(window: Duration, min_per_sec: u32, ratio: f64) -> Self {
        let ratio = if ratio.is_nan() {
            0.0
        } else {
            ratio.clamp(0.0, MAX_RATIO)
        };
        // Float to integer casts saturate.
        let reserve = ((f64::from(min_per_sec) * window.as_secs_f64() * UNIT as f64).round()
            as i64)
            .min(MAX_RESERVE);
        let slice_nanos = (u64::try_from(window.as_nanos()).unwrap_or(u64::MAX) / SLICES).max(1);
        RatioLedger {
            deposit: (ratio * UNIT as f64).round() as i64,
            reserve,
            start: Instant::now(),
            slice_nanos,
            epoch: AtomicU64::new(0),
            balance: AtomicI64::new(reserve),
            // Slice 0 is live; the other slots hold nothing, tagged as slice 0 too (older
            // than the slices that will reuse them).
            slots: (0..SLICES).map(|_| AtomicU64::new(pack(0, 0))).collect(),
        }
    }

    /// Records a call at `now`: deposits `ratio` of an extra attempt (nothing at all, not
    /// even a clock read of the slices, when the ratio is 0).
    #[inline]
    pub fn deposit(&self, now: Instant) {
        if self.deposit == 0 {
            return;
        }
        let slice = self.advance(now);
        // The slice first, then the balance: an expiry in between takes out of the balance
        // what is not in it yet, for an instant (the cautious way).
        let recorded = self.record(slice, self.deposit, false);
        if recorded != 0 {
            self.balance.fetch_add(recorded, AcqRel);
        }
    }

    /// Takes one extra attempt at `now`; `false` when the balance holds less than one.
    #[inline]
    pub fn withdraw(&self, now: Instant) -> bool {
        let slice = self.advance(now);
        // The slice's slot is given to it before the balance is read, so a slice that left
        // the window pays for nothing.
        self.reuse(slice, None);
        let taken = self
            .balance
            .fetch_update(AcqRel, Acquire, |balance| {
                (balance >= UNIT).then_some(balance - UNIT)
            })
            .is_ok();
        if !taken {
            return false;
        }
        let recorded = self.record(slice, -UNIT, true);
        if recorded == -UNIT {
            return true;
        }
        // The slot's net is at its floor (half a billion extra attempts in one slice):
        // refused, and the part of the unit the slot could not record is given back (a
        // part it did record stays spent, the cautious way).
        self.balance.fetch_add(UNIT + recorded, AcqRel);
        false
    }

    /// Extra attempts available at `now` (fractional). Below zero while withdrawals outlive
    /// the deposits that paid for them: a deposit made early in the window pays for a
    /// withdrawal made late in it, and leaves the window first.
    pub fn balance(&self, now: Instant) -> f64 {
        self.advance(now);
        self.balance.load(Acquire) as f64 / UNIT as f64
    }

    /// What each call deposits, in extra attempts (the ratio, to a thousandth).
    pub fn ratio(&self) -> f64 {
        self.deposit as f64 / UNIT as f64
    }

    /// The reserve, in extra attempts: `min_per_sec` times the window.
    pub fn reserve(&self) -> f64 {
        self.reserve as f64 / UNIT as f64
    }

    /// Expires the slices that left the window; returns the current slice's number.
    #[inline]
    fn advance(&self, now: Instant) -> u64 {
        let nanos =
            u64::try_from(now.saturating_duration_since(self.start).as_nanos()).unwrap_or(u64::MAX);
        let epoch = self.epoch.load(Acquire);
        // Still within the newest slice: no division, nothing to expire.
        if nanos < epoch.saturating_add(1).saturating_mul(self.slice_nanos) {
            return epoch;
        }
        self.expire_until(nanos / self.slice_nanos)
    }

    /// Expires every slice up to `current`, each exactly once however many callers race.
    #[cold]
    fn expire_until(&self, current: u64) -> u64 {
        loop {
            let seen = self.epoch.load(Acquire);
            if seen >= current {
                return seen;
            }
            // Claim one step (or, after a whole window idle, everything) so each slice
            // expires once.
            let whole = current - seen >= SLICES;
            let next = if whole { current } else { seen + 1 };
            if self
                .epoch
                .compare_exchange(seen, next, AcqRel, Acquire)
                .is_err()
            {
                continue;
            }
            let first = if whole { next - (SLICES - 1) } else { next };
            for slice in first..=next {
                self.reuse(slice, if whole { Some(seen) } else { None });
            }
        }
    }

    /// Gives `slice`'s ring slot to it, if the slot still holds an older slice: that slice
    /// leaves the window, its net leaves the balance. A slot already given to `slice` (a
    /// caller recorded into it first) or to a newer one is left alone. After an idle gap
    /// (`idle`: the newest slice before it), a tag of the window before the gap is old even
    /// where the tags wrap around to equal `slice`'s.
    ///
    /// The net leaves the balance *before* the slot changes hands (and comes back if
    /// another caller changed the slot first), so a caller that sees the slot given to
    /// `slice` sees the balance without the old slice: the balance is understated for an
    /// instant, never overstated.
    fn reuse(&self, slice: u64, idle: Option<u64>) {
        let tag = slice & TAG_MASK;
        // The window before the gap, and a few slices more for claims of it still
        // under way.
        let old_window = |found: u64| {
            idle.is_some_and(|before| (before.wrapping_sub(found) & TAG_MASK) < 2 * SLICES)
        };
        let slot = &self.slots[(slice % SLICES) as usize];
        let mut word = slot.load(Acquire);
        loop {
            let (found, net) = unpack(word);
            if !(is_older(found, tag) || old_window(found)) {
                return;
            }
            if net != 0 {
                self.balance.fetch_sub(net, AcqRel);
            }
            match slot.compare_exchange(word, pack(tag, 0), AcqRel, Acquire) {
                Ok(_) => return,
                Err(now) => {
                    if net != 0 {
                        self.balance.fetch_add(net, AcqRel);
                    }
                    word = now;
                }
            }
        }
    }

    /// Adds `delta` to `slice`'s net in its ring slot; returns what it added (0 or less
    /// than `delta` when the slot's net would overflow).
    ///
    /// If the slot still holds an older slice, this caller first gives it to `slice`
    /// ([`reuse`](Self::reuse)). If it already holds a newer one, `slice` has left the
    /// window since this caller read the clock: a deposit is dropped, a withdrawal (`keep`)
    /// is kept in the newer slice, so it leaves later, never earlier.
    fn record(&self, slice: u64, delta: i64, keep: bool) -> i64 {
        let tag = slice & TAG_MASK;
        let slot = &self.slots[(slice % SLICES) as usize];
        let mut word = slot.load(Acquire);
        loop {
            let (found, net) = unpack(word);
            if is_older(found, tag) {
                self.reuse(slice, None);
                word = slot.load(Acquire);
                continue;
            }
            if found != tag && !keep {
                return 0;
            }
            let sum = net.saturating_add(delta).clamp(NET_MIN, NET_MAX);
            match slot.compare_exchange_weak(word, pack(found, sum), AcqRel, Acquire) {
                Ok(_) => return sum - net,
                Err(now) => word = now,
            }
        }
    }
}

/// A ring slot's word: `tag` (the low [`TAG_BITS`] of the slice's number) above `net`.
fn pack(tag: u64, net: i64) -> u64 {
    (tag << NET_BITS) | (net as u64 & NET_MASK)
}

/// A ring slot's tag and net.
fn unpack(word: u64) -> (u64, i64) {
    // Shifted up then back, the net's sign is extended.
    (word >> NET_BITS, ((word << TAG_BITS) as i64) >> TAG_BITS)
}

/// Whether the slice tagged `found` comes before the one tagged `tag`. Tags in the ring
/// stay within a window of the newest slice, so the wrapping difference says which is older
/// (see the [module docs](self) for the one case where tags could wrap).
fn is_older(found: u64, tag: u64) -> bool {
    let ahead = tag.wrapping_sub(found) & TAG_MASK;
    ahead != 0 && ahead < 1 << (TAG_BITS - 1)
}

impl fmt::Debug for RatioLedger {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RatioLedger")
            .field("ratio", &self.ratio())
            .field("reserve", &self.reserve())
            .field(
                "balance",
                &(self.balance.load(Relaxed) as f64 / UNIT as f64),
            )
            .finish()
    }
}

#[cfg(all(test, not(bulwark_loom)))]
mod tests {
    use super::*;
    use std::sync::Arc;
    use tokio::time::advance;

    fn ledger(ratio: f64) -> RatioLedger {
        RatioLedger::new(Duration::from_secs(10), 0, ratio)
    }

    fn extra_after(ledger: &RatioLedger, calls: usize) -> usize {
        for _ in 0..calls {
            ledger.deposit(Instant::now());
        }
        drain(ledger)
    }

    fn drain(ledger: &RatioLedger) -> usize {
        std::iter::from_fn(|| ledger.withdraw(Instant::now()).then_some(())).count()
    }

    fn balance(ledger: &RatioLedger) -> f64 {
        ledger.balance(Instant::now())
    }

    #[tokio::test(start_paused = true)]
    async fn ratios_are_exact() {
        assert_eq!(extra_after(&ledger(0.6), 5), 3, "0.6 per call, not 1");
        assert_eq!(extra_after(&ledger(0.6), 1), 0);
        assert_eq!(extra_after(&ledger(0.1), 100), 10);
        assert_eq!(extra_after(&ledger(0.1), 9), 0);
        assert_eq!(extra_after(&ledger(0.05), 100), 5);
        assert_eq!(extra_after(&ledger(0.0), 1_000), 0);
        assert_eq!(extra_after(&ledger(2.5), 4), 10);
    }

    #[tokio::test(start_paused = true)]
    async fn fractions_accumulate_across_calls() {
        let ledger = ledger(0.6);
        ledger.deposit(Instant::now());
        assert!(!ledger.withdraw(Instant::now()));
        ledger.deposit(Instant::now());
        assert!(ledger.withdraw(Instant::now()), "1.2 banked");
        assert!((balance(&ledger) - 0.2).abs() < 1e-9);

        let hedges = self::ledger(0.05);
        assert_eq!(extra_after(&hedges, 100), 5);
        assert_eq!(extra_after(&hedges, 19), 0, "0.95 of one");
        assert_eq!(extra_after(&hedges, 1), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn deposits_and_withdrawals_expire_after_the_window() {
        let ledger = ledger(1.0);
        for _ in 0..5 {
            ledger.deposit(Instant::now());
        }
        assert!(ledger.withdraw(Instant::now()));
        assert_eq!(balance(&ledger), 4.0);
        advance(Duration::from_secs(5)).await;
        ledger.deposit(Instant::now());
        assert_eq!(balance(&ledger), 5.0);
        // The first five deposits (and the withdrawal) leave the window; the sixth stays.
        advance(Duration::from_secs(6)).await;
        assert_eq!(balance(&ledger), 1.0);
        advance(Duration::from_secs(60)).await;
        assert_eq!(balance(&ledger), 0.0);
    }

    #[tokio::test(start_paused = true)]
    async fn slices_expire_exactly_at_their_boundaries() {
        // A 10 s window kept in 1 s slices.
        let ledger = ledger(1.0);
        ledger.deposit(Instant::now());
        advance(Duration::from_millis(999)).await;
        ledger.deposit(Instant::now()); // still the first slice
        advance(Duration::from_millis(1)).await;
        ledger.deposit(Instant::now()); // the second slice
        assert_eq!(balance(&ledger), 3.0);
        advance(Duration::from_millis(8_999)).await; // 9.999 s
        assert_eq!(balance(&ledger), 3.0);
        advance(Duration::from_millis(1)).await; // 10 s: the first slice leaves
        assert_eq!(balance(&ledger), 1.0);
        advance(Duration::from_millis(999)).await;
        assert_eq!(balance(&ledger), 1.0);
        advance(Duration::from_millis(1)).await; // 11 s: the second slice leaves
        assert_eq!(balance(&ledger), 0.0);
    }

    #[tokio::test(start_paused = true)]
    async fn the_reserve_is_always_there_and_refills() {
        let ledger = RatioLedger::new(Duration::from_secs(2), 3, 0.0);
        assert_eq!(ledger.reserve(), 6.0);
        assert_eq!(drain(&ledger), 6, "3 per second over a 2 s window");
        advance(Duration::from_secs(3)).await;
        assert_eq!(
            drain(&ledger),
            6,
            "the withdrawals expired with their window"
        );
        assert_eq!(balance(&ledger), 0.0);
    }

    #[tokio::test(start_paused = true)]
    async fn a_clock_behind_the_start_is_the_start() {
        let ledger = ledger(1.0);
        let before = Instant::now() - Duration::from_secs(5);
        ledger.deposit(before);
        assert!(ledger.withdraw(before));
        assert_eq!(ledger.balance(before), 0.0);
    }

    #[test]
    fn bad_values_are_clamped_not_panics() {
        let now = Instant::now();
        for ratio in [f64::NAN, -1.0, f64::NEG_INFINITY] {
            let ledger = RatioLedger::new(Duration::from_secs(1), 0, ratio);
            assert_eq!(ledger.ratio(), 0.0, "{ratio}");
            ledger.deposit(now);
            assert!(!ledger.withdraw(now));
        }
        for ratio in [1e9, f64::INFINITY] {
            assert_eq!(
                RatioLedger::new(Duration::from_secs(1), 0, ratio).ratio(),
                1000.0
            );
        }
        for window in [Duration::ZERO, Duration::from_nanos(1), Duration::MAX] {
            let ledger = RatioLedger::new(window, u32::MAX, 1000.0);
            for _ in 0..100 {
                ledger.deposit(now);
                ledger.withdraw(now);
            }
            let later = now + Duration::from_secs(3600);
            ledger.deposit(later);
            assert!(ledger.balance(later).is_finite(), "{window:?}");
        }
        assert!(format!("{:?}", ledger(0.2)).contains("ratio: 0.2"));
    }

    #[tokio::test(start_paused = true)]
    async fn a_withdrawal_past_the_slots_floor_is_refused_and_partly_given_back() {
        // A reserve of 10 extra attempts, and slice 0's slot half a unit above its floor
        // (as after half a billion withdrawals in one slice).
        let ledger = RatioLedger::new(Duration::from_secs(10), 1, 0.0);
        let now = Instant::now();
        ledger.slots[0].store(pack(0, NET_MIN + UNIT / 2), Release);
        assert!(!ledger.withdraw(now), "the slot cannot record a whole unit");
        // The half the slot recorded stays spent; the other half is given back.
        assert_eq!(ledger.balance.load(Acquire), 10 * UNIT - UNIT / 2);
        assert_eq!(unpack(ledger.slots[0].load(Acquire)), (0, NET_MIN));
        assert!(!ledger.withdraw(now), "nothing more fits in the slot");
        assert_eq!(
            ledger.balance(now),
            9.5,
            "a refusal at the floor spends nothing"
        );
    }

    /// After an idle gap, the tags of the window before it, and of claims of it still
    /// under way, are old: 19 slices behind the last slice before the gap is one of them,
    /// 20 is not, so a slot a racing caller already gave to the new slice keeps its record
    /// even where the new slice's tag wraps round to 20 behind.
    #[test]
    fn after_an_idle_gap_the_old_window_reaches_back_twenty_slices() {
        // 1 ns slices; nothing recorded since slice 0, then slice 2^24 - 20, whose tag is
        // 20 slices behind slice 0's once the tags wrap.
        let ledger = RatioLedger::new(Duration::from_nanos(SLICES), 0, 1.0);
        let slice = (1 << TAG_BITS) - 2 * SLICES;
        let tag = |behind: u64| 0u64.wrapping_sub(behind) & TAG_MASK;
        assert_eq!(slice & TAG_MASK, tag(20));
        // The new slice's slot, already given to it and holding a unit; the slot of the
        // slice before it still tagged 15 behind slice 0 (a claim under way), holding one.
        ledger.slots[(slice % SLICES) as usize].store(pack(tag(20), UNIT), Release);
        ledger.slots[((slice - 1) % SLICES) as usize].store(pack(tag(15), UNIT), Release);
        ledger.balance.store(2 * UNIT, Release);
        let now = ledger.start + Duration::from_nanos(slice);
        assert_eq!(
            ledger.balance(now),
            1.0,
            "the stale unit leaves, the new one stays"
        );
        assert_eq!(
            unpack(ledger.slots[(slice % SLICES) as usize].load(Acquire)),
            (tag(20), UNIT)
        );
        assert_eq!(
            unpack(ledger.slots[((slice - 1) % SLICES) as usize].load(Acquire)),
            ((slice - 1) & TAG_MASK, 0)
        );
    }

    /// A caller that read the clock in slice 0 and writes after slice 10 took slice 0's
    /// slot (replayed by calling `record` with the stale slice): its deposit is dropped,
    /// its withdrawal is kept in slice 10, so it leaves later, never earlier.
    #[tokio::test(start_paused = true)]
    async fn a_stale_callers_deposit_is_dropped_and_its_withdrawal_kept_in_the_newer_slice() {
        let ledger = ledger(1.0);
        advance(Duration::from_secs(10)).await;
        ledger.deposit(Instant::now()); // slice 10, in slice 0's slot
        assert_eq!(unpack(ledger.slots[0].load(Acquire)), (10, UNIT));
        assert_eq!(
            ledger.record(0, UNIT, false),
            0,
            "slice 0 has left the window"
        );
        assert_eq!(unpack(ledger.slots[0].load(Acquire)), (10, UNIT));
        assert_eq!(ledger.record(0, -UNIT, true), -UNIT);
        assert_eq!(unpack(ledger.slots[0].load(Acquire)), (10, 0));
    }

    #[test]
    fn slot_words_round_trip() {
        for tag in [0, 1, TAG_MASK] {
            for net in [0, 1, -1, NET_MAX, NET_MIN, -UNIT, 123_456_789] {
                assert_eq!(unpack(pack(tag, net)), (tag, net));
            }
        }
        assert!(is_older(TAG_MASK, 0), "tags wrap");
        assert!(!is_older(0, TAG_MASK));
        assert!(!is_older(5, 5));
    }

    /// Against a plain model (every deposit and withdrawal kept with its slice, the balance
    /// summed over the last 10 slices), through time jumps of every size: within a slice,
    /// across a few, across whole windows, and around multiples of 2^24 slices, where the
    /// slots' tags wrap.
    #[test]
    fn balances_match_a_model_across_every_kind_of_time_jump() {
        use proptest::prelude::*;
        let wrap = 1u64 << TAG_BITS;
        let jump = prop_oneof![
            0u64..3,
            0u64..30,
            Just(SLICES),
            Just(SLICES - 1),
            (1u64..3).prop_flat_map(move |k| k * wrap - 2 * SLICES..k * wrap + 2 * SLICES),
        ];
        proptest!(|(steps in proptest::collection::vec((jump, any::<bool>(), 0usize..4), 1..80))| {
            // 1 ns slices: the tags wrap within a test's time.
            let ledger = RatioLedger::new(Duration::from_nanos(SLICES), 0, 0.5);
            let start = ledger.start;
            let mut slice = 0u64;
            let mut model: Vec<(u64, i64)> = Vec::new();
            for (jump, deposit, withdrawals) in steps {
                slice += jump;
                let now = start + Duration::from_nanos(slice);
                let live = |model: &[(u64, i64)]| -> i64 {
                    model.iter().filter(|(at, _)| slice - at < SLICES).map(|(_, n)| n).sum()
                };
                if deposit {
                    ledger.deposit(now);
                    model.push((slice, 500));
                }
                for _ in 0..withdrawals {
                    let expected = live(&model) >= UNIT;
                    prop_assert_eq!(ledger.withdraw(now), expected, "at slice {}", slice);
                    if expected {
                        model.push((slice, -UNIT));
                    }
                }
                let balance = ledger.balance(now);
                prop_assert_eq!(balance, live(&model) as f64 / UNIT as f64, "at slice {}", slice);
            }
        });
    }

    #[test]
    fn many_threads_never_overdraw() {
        let ledger = Arc::new(RatioLedger::new(Duration::from_secs(60), 0, 0.5));
        let now = Instant::now();
        for _ in 0..1_000 {
            ledger.deposit(now);
        }
        let threads: Vec<_> = (0..8)
            .map(|_| {
                let ledger = ledger.clone();
                std::thread::spawn(move || (0..1_000).filter(|_| ledger.withdraw(now)).count())
            })
            .collect();
        let taken: usize = threads.into_iter().map(|t| t.join().unwrap()).sum();
        assert_eq!(taken, 500);
        assert_eq!(ledger.balance(now), 0.0);
    }
}

#[cfg(all(test, bulwark_loom))]
mod loom_model {
    use super::*;
    use loom::sync::Arc;

    /// The balance equals the reserve plus what the slices still hold.
    fn consistent(ledger: &RatioLedger) {
        let held: i64 = ledger
            .slots
            .iter()
            .map(|slot| unpack(slot.load(Acquire)).1)
            .sum();
        assert_eq!(ledger.balance.load(Acquire), ledger.reserve + held);
    }

    /// Two callers race for the last unit in the ledger: exactly one gets it.
    #[test]
    fn racing_withdrawals_never_overdraw() {
        loom::model(|| {
            let ledger = Arc::new(RatioLedger::new(Duration::from_secs(10), 0, 1.0));
            let now = Instant::now();
            ledger.deposit(now);
            let other = {
                let ledger = ledger.clone();
                loom::thread::spawn(move || ledger.withdraw(now))
            };
            let mine = ledger.withdraw(now);
            let theirs = other.join().unwrap();
            assert!(mine ^ theirs, "exactly one withdrawal succeeds");
            assert_eq!(ledger.balance.load(Acquire), 0);
            consistent(&ledger);
        });
    }

    /// A deposit racing the expiry of its slot's old slice (claimed by another caller) is
    /// kept for the window or expired with the old slice, never counted twice or lost from
    /// the balance's bookkeeping; the slice expires once.
    #[test]
    fn a_deposit_racing_an_expiry_keeps_the_books_whole() {
        loom::model(|| {
            let ledger = Arc::new(RatioLedger::new(Duration::from_secs(10), 0, 1.0));
            let start = ledger.start;
            ledger.deposit(start); // slice 0
            ledger.deposit(start + Duration::from_secs(9)); // slice 9
            let at = start + Duration::from_secs(10); // slice 10 reuses slice 0's slot
            let depositor = {
                let ledger = ledger.clone();
                loom::thread::spawn(move || ledger.deposit(at))
            };
            let _ = ledger.balance(at);
            depositor.join().unwrap();
            // Slice 0 left; slices 9 and 10 are live. (Before the slots were tagged, the
            // racing deposit could leave with slice 0: 1 unit.)
            assert_eq!(ledger.balance.load(Acquire), 2 * UNIT);
            consistent(&ledger);
        });
    }

    /// A withdrawal made in the new slice while another caller expires that slot's old
    /// slice is kept for its window: it is never handed back with the old slice. (Before
    /// the slots were tagged with their slice, the expiry could swap the withdrawal out
    /// with the old slice's counts and refund it at once: balance 1 after taking the only
    /// live unit.)
    #[test]
    fn a_withdrawal_racing_an_expiry_is_not_refunded_early() {
        loom::model(|| {
            let ledger = Arc::new(RatioLedger::new(Duration::from_secs(10), 0, 1.0));
            let start = ledger.start;
            ledger.deposit(start); // slice 0
            ledger.deposit(start + Duration::from_secs(9)); // slice 9
            let at = start + Duration::from_secs(10); // slice 10 reuses slice 0's slot
            let expirer = {
                let ledger = ledger.clone();
                loom::thread::spawn(move || {
                    let _ = ledger.balance(at);
                })
            };
            let taken = ledger.withdraw(at);
            expirer.join().unwrap();
            // Slice 0's unit has left the window; slice 9's is live, less the withdrawal.
            let expected = if taken { 0 } else { UNIT };
            assert_eq!(ledger.balance.load(Acquire), expected, "taken: {taken}");
            // (Refused only in the instant both callers give slot 0 to slice 10: the loser
            // of that race takes its net out of the balance, then puts it back.)
            consistent(&ledger);
        });
    }

    /// Two withdrawals racing the expiry of the slice that paid for one of them: at most
    /// the units deposited are taken, and the books stay whole.
    #[test]
    fn withdrawals_racing_an_expiry_keep_the_books_whole() {
        loom::model(|| {
            let ledger = Arc::new(RatioLedger::new(Duration::from_secs(10), 0, 1.0));
            let start = ledger.start;
            ledger.deposit(start);
            ledger.deposit(start + Duration::from_secs(9));
            let at = start + Duration::from_secs(10);
            let other = {
                let ledger = ledger.clone();
                loom::thread::spawn(move || ledger.withdraw(at))
            };
            let mine = ledger.withdraw(at);
            let theirs = other.join().unwrap();
            assert!(mine ^ theirs, "slice 9's unit is live, slice 0's is not");
            assert_eq!(ledger.balance.load(Acquire), 0);
            consistent(&ledger);
        });
    }
}
