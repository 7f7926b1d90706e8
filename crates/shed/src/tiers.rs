//! How much of the limit each criticality tier may use: a fixed cap per tier
//! ([`TierShares`]) and room kept for the tiers above it while they want it ([`Demand`]).

use tower_bulwark_core::{ConfigError, Criticality};

use tower_bulwark_core::stripes::{Padded, PerCore};
use tower_bulwark_core::sync::{AtomicUsize, Ordering::*};

/// A fixed cap on the share of the concurrency limit each [`Criticality`] tier may fill,
/// on top of the priority every layer keeps.
///
/// Without caps (the default, [`TierShares::flat`]) a tier may use all of the limit that
/// the tiers above it are not using: sheddable traffic alone gets the whole limit, and
/// under contention the least important calls are refused first (see
/// [`ShedLayer`](crate::ShedLayer)). A cap keeps a tier within its share even when nothing
/// else wants the rest, e.g. `sheddable: 0.5` for batch work that must never take more
/// than half. Shares must not decrease with importance.
#[derive(Debug, Clone, Copy, PartialEq)]
#[cfg_attr(feature = "serde", derive(serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(deny_unknown_fields, default))]
pub struct TierShares {
    /// `sheddable`: batch and prefetch work.
    pub sheddable: f64,
    /// `sheddable-plus`: retried later at no great cost.
    pub sheddable_plus: f64,
    /// `critical`: the default for user-facing calls.
    pub critical: f64,
    /// `critical-plus`: the calls that must get through.
    pub critical_plus: f64,
}

impl Default for TierShares {
    fn default() -> Self {
        TierShares::flat()
    }
}

impl TierShares {
    /// No caps: every tier may use the whole limit that the tiers above it leave.
    pub fn flat() -> Self {
        TierShares {
            sheddable: 1.0,
            sheddable_plus: 1.0,
            critical: 1.0,
            critical_plus: 1.0,
        }
    }

    /// The share of `criticality`.
    pub fn of(&self, criticality: Criticality) -> f64 {
        match criticality {
            Criticality::Sheddable => self.sheddable,
            Criticality::SheddablePlus => self.sheddable_plus,
            Criticality::Critical => self.critical,
            Criticality::CriticalPlus => self.critical_plus,
        }
    }

    /// Checks each share is in (0, 1] and that they do not decrease with importance.
    pub fn check(self) -> Result<Self, ConfigError> {
        let shares = [
            ("tiers.sheddable", self.sheddable),
            ("tiers.sheddable_plus", self.sheddable_plus),
            ("tiers.critical", self.critical),
            ("tiers.critical_plus", self.critical_plus),
        ];
        let mut below = 0.0;
        for (field, share) in shares {
            if !(share > 0.0 && share <= 1.0) {
                return Err(ConfigError::new(
                    field,
                    format!("must be above 0 and at most 1, got {share}"),
                ));
            }
            if share < below {
                return Err(ConfigError::new(
                    field,
                    format!("must be at least the share of the tier below ({below}), got {share}"),
                ));
            }
            below = share;
        }
        Ok(self)
    }

    /// The shares in thousandths, least important tier first: admission then needs only
    /// integer arithmetic.
    pub(crate) fn permille(&self) -> [usize; 4] {
        Criticality::ALL.map(|tier| (self.of(tier) * 1000.0).round() as usize)
    }
}

/// How many calls a tier with `permille` of the limit may have in flight (at least 1).
#[inline]
pub(crate) fn allowed(permille: usize, limit: usize) -> usize {
    (limit.saturating_mul(permille) / 1000).max(1)
}

/// What each tier wants: its calls in flight and its recent peak of them, refused calls
/// included. A tier must leave the tiers above it room for their recent peak plus a
/// quarter: lower tiers borrow what higher ones do not use, and give it back when they
/// come, without fixed shares (Netflix's partitioned limiter and Google's criticality
/// work this way too).
///
/// Peaks decay by an eighth every `limit` calls arriving on a core (at full load, a round
/// trip or less; with calls on several cores, that many times sooner), so a burst of
/// important calls reserves room for a while, not for ever: every core's too.
///
/// Kept so that a call writes only its core's lines: each core counts the calls that
/// entered on it (a call leaves on the core it entered on, wherever its task went), the
/// arrivals left before its next decay, and each tier's high-water mark on it since the
/// last decay. Only when a core's count of a tier passes its high-water mark is the
/// tier's total read (every core's line) and its peak raised: with calls on one core every
/// rise is seen. With calls on several, a total that grows while no core passes its own
/// mark is seen by the next admission of a lower tier, which reads the total anyway (see
/// `reserved_above`), or after the next decay resets the marks.
/// Only the tiers below one that is in use read its counts.
#[derive(Debug)]
pub(crate) struct Demand {
    /// Per core: the calls in flight by tier that entered on it, their high-water marks
    /// since the last decay, and its countdown to the next decay.
    local: PerCore<Local>,
    /// Each tier's recent peak of calls in flight (every core's): written when it rises
    /// or decays, read by every admission of a tier below.
    peak: Padded<[AtomicUsize; 4]>,
}

#[derive(Debug)]
struct Local {
    in_flight: [AtomicUsize; 4],
    high: [AtomicUsize; 4],
    /// Arrivals left before the next decay (capped by the current limit when read).
    until_decay: AtomicUsize,
}

impl Default for Local {
    fn default() -> Self {
        Local {
            in_flight: Default::default(),
            high: Default::default(),
            until_decay: AtomicUsize::new(usize::MAX),
        }
    }
}

impl Default for Demand {
    fn default() -> Self {
        Demand {
            local: PerCore::new(Local::default),
            peak: Padded(Default::default()),
        }
    }
}

impl Demand {
    /// Notes that a call of `tier` on core `stripe` wants a place, admitted or not; every
    /// `limit` arrivals on the core, peaks decay. Counted on arrivals, not completions: a
    /// reservation must fade even when everything else is refused and nothing finishes.
    #[inline]
    pub(crate) fn want(&self, stripe: usize, tier: usize, limit: usize) {
        let local = self.local.get(stripe);
        let here = local.in_flight[tier].load(Relaxed) + 1;
        if here > local.high[tier].load(Relaxed) {
            local.high[tier].store(here, Relaxed);
            self.raise_peak(tier, here);
        }
        // A countdown, read and written without a locked instruction or a division: two
        // threads sharing a core's line may lose a step, which delays a decay. The last
        // step is a compare-and-swap (one per period), so two threads reading it decay
        // once, not twice. A thread's step stored late (read before another's reset) can
        // still bring the next decay forward, once.
        let period = limit.max(8);
        let read = local.until_decay.load(Relaxed);
        let left = read.min(period);
        if left > 1 {
            local.until_decay.store(left - 1, Relaxed);
        } else if local
            .until_decay
            .compare_exchange(read, period, Relaxed, Relaxed)
            .is_ok()
        {
            self.decay();
        }
    }

    /// Raises the tier's peak to its calls in flight on every core, with this one (at
    /// least the `here` this core's count rose to, whatever left meanwhile).
    #[cold]
    fn raise_peak(&self, tier: usize, here: usize) {
        let wanted = (self.tier_in_flight(tier) + 1).max(here);
        if self.peak[tier].load(Relaxed) < wanted {
            self.peak[tier].fetch_max(wanted, Relaxed);
        }
    }

    /// The free places `tier` must leave for the tiers above it: their recent peak plus a
    /// quarter, less what they already hold (their calls in flight count in the total the
    /// reservation is taken from).
    #[inline]
    pub(crate) fn reserved_above(&self, tier: usize) -> usize {
        (tier + 1..4)
            .map(|above| {
                // A tier never used keeps no room; its counts are not read.
                let peak = self.peak[above].load(Relaxed);
                if peak == 0 {
                    return 0;
                }
                // Its calls on several cores may have risen with no core passing its own
                // mark: what it holds now is a peak too, kept until it decays.
                let in_flight = self.tier_in_flight(above);
                let peak = if in_flight > peak {
                    self.peak[above].fetch_max(in_flight, Relaxed);
                    in_flight
                } else {
                    peak
                };
                (peak + peak.div_ceil(4)).saturating_sub(in_flight)
            })
            .sum()
    }

    /// A call of `tier` took a place on core `stripe`.
    #[inline]
    pub(crate) fn enter(&self, stripe: usize, tier: usize) {
        self.local.get(stripe).in_flight[tier].fetch_add(1, Relaxed);
    }

    /// A call of `tier` that entered on core `stripe` gave its place back.
    #[inline]
    pub(crate) fn leave(&self, stripe: usize, tier: usize) {
        self.local.get(stripe).in_flight[tier].fetch_sub(1, Relaxed);
    }

    /// Lowers each peak by an eighth, not below the tier's calls in flight, and starts the
    /// cores' high-water marks again from their counts (so a total that rises from here is
    /// seen, until a core's mark moves again). A racing `want` may be lost; the tier's next
    /// rise notes it again.
    #[cold]
    fn decay(&self) {
        for (tier, peak) in self.peak.iter().enumerate() {
            let old = peak.load(Relaxed);
            let new = (old - old.div_ceil(8)).max(self.tier_in_flight(tier));
            if new < old {
                let _ = peak.compare_exchange(old, new, Relaxed, Relaxed);
            }
        }
        for local in self.local.iter() {
            for (high, in_flight) in local.high.iter().zip(&local.in_flight) {
                high.store(in_flight.load(Relaxed), Relaxed);
            }
        }
    }

    fn tier_in_flight(&self, tier: usize) -> usize {
        self.local
            .iter()
            .map(|local| local.in_flight[tier].load(Relaxed))
            .sum()
    }

    /// Calls in flight by tier, least important first.
    pub(crate) fn in_flight(&self) -> [usize; 4] {
        [0, 1, 2, 3].map(|tier| self.tier_in_flight(tier))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shares_nest_from_least_to_most_important() {
        let shares = TierShares {
            sheddable: 0.5,
            sheddable_plus: 0.7,
            critical: 0.9,
            critical_plus: 1.0,
        }
        .check()
        .unwrap();
        let allowed = shares.permille().map(|permille| allowed(permille, 100));
        assert_eq!(allowed, [50, 70, 90, 100]);
        assert_eq!(
            TierShares::default(),
            TierShares::flat(),
            "no caps by default"
        );
        assert_eq!(super::allowed(shares.permille()[0], 1), 1, "never zero");
        assert_eq!(
            super::allowed(1000, usize::MAX),
            usize::MAX / 1000,
            "no overflow"
        );
    }

    #[test]
    fn bad_shares_name_their_field() {
        let with = |f: fn(&mut TierShares)| {
            let mut shares = TierShares::flat();
            shares.sheddable = 0.5;
            f(&mut shares);
            shares.check().unwrap_err().field()
        };
        assert_eq!(with(|s| s.sheddable = 0.0), "tiers.sheddable");
        assert_eq!(with(|s| s.critical_plus = 1.5), "tiers.critical_plus");
        assert_eq!(with(|s| s.critical = f64::NAN), "tiers.critical");
        assert_eq!(with(|s| s.sheddable_plus = 0.4), "tiers.sheddable_plus");
    }
}

#[cfg(all(test, not(bulwark_loom)))]
mod demand_tests {
    use super::*;

    /// Review: a tier's calls on two cores in turn, then on both at once. Each core's
    /// count stays at or below its own high-water mark, so the total (60, the tier's
    /// peak at this very moment) is never read: the tier's "recent peak" is 30, half what
    /// it holds, and it keeps no room at all (60 plus a quarter, less 60, is 15).
    #[test]
    fn a_tier_keeps_room_for_the_calls_it_holds_on_several_cores_at_once() {
        let demand = Demand {
            local: PerCore::with_stripes(2, Local::default),
            peak: Padded(Default::default()),
        };
        // 30 critical calls on core 0, all finished; then 30 on core 1, all finished.
        for stripe in [0, 1] {
            for _ in 0..30 {
                demand.want(stripe, 2, 1000);
                demand.enter(stripe, 2);
            }
            for _ in 0..30 {
                demand.leave(stripe, 2);
            }
        }
        assert_eq!(demand.reserved_above(0), 30 + 8, "peak 30 plus a quarter");
        // Now 30 on each at once.
        for stripe in [0, 1] {
            for _ in 0..30 {
                demand.want(stripe, 2, 1000);
                demand.enter(stripe, 2);
            }
        }
        assert_eq!(demand.in_flight(), [0, 0, 60, 0]);
        assert_eq!(
            demand.reserved_above(0),
            60 + 15 - 60,
            "60 critical calls in flight keep no room for more"
        );
        // And the peak, once seen, stays after they finish (until it decays).
        for stripe in [0, 1] {
            for _ in 0..30 {
                demand.leave(stripe, 2);
            }
        }
        assert_eq!(demand.reserved_above(0), 75, "peak 60 plus a quarter");
    }

    /// A call arriving on a core below its own mark, while the tier's calls on another
    /// core pass it: the peak counts the arriving call too.
    #[test]
    fn the_peak_counts_the_call_that_raises_it() {
        let demand = Demand {
            local: PerCore::with_stripes(2, Local::default),
            peak: Padded(Default::default()),
        };
        for _ in 0..30 {
            demand.want(1, 2, 1000);
            demand.enter(1, 2);
        }
        // Refused or not yet in: wanted all the same.
        demand.want(0, 2, 1000);
        assert_eq!(
            demand.reserved_above(0),
            31 + 8 - 30,
            "peak 31 plus a quarter"
        );
    }

    #[test]
    fn a_tier_leaves_room_for_the_recent_peak_of_the_tiers_above() {
        let demand = Demand::default();
        assert_eq!(demand.reserved_above(0), 0, "nothing above wants anything");
        for _ in 0..4 {
            demand.want(0, 2, 100);
            demand.enter(0, 2);
        }
        // A refused critical call still counts as wanting a place.
        demand.want(0, 2, 100);
        assert_eq!(demand.in_flight(), [0, 0, 4, 0]);
        assert_eq!(
            demand.reserved_above(0),
            5 + 2 - 4,
            "peak 5 plus a quarter, less the 4 it holds"
        );
        assert_eq!(demand.reserved_above(1), 3);
        assert_eq!(
            demand.reserved_above(2),
            0,
            "critical-plus is above critical"
        );
        assert_eq!(demand.reserved_above(3), 0);
    }

    #[test]
    fn peaks_decay_every_limit_arrivals_down_to_what_is_in_flight() {
        let demand = Demand::default();
        for _ in 0..16 {
            demand.want(0, 3, 1000);
            demand.enter(0, 3);
        }
        for _ in 0..8 {
            demand.leave(0, 3);
        }
        // 16 arrivals so far; the decay comes at the 24th with a limit of 8.
        for _ in 0..7 {
            demand.want(0, 0, 8);
        }
        assert_eq!(demand.reserved_above(2), 20 - 8, "no decay yet; 8 held");
        demand.want(0, 0, 8);
        assert_eq!(demand.reserved_above(2), 14 + 4 - 8, "16 less an eighth");
        for _ in 0..8 {
            demand.leave(0, 3);
        }
        // Refused calls alone (nothing finishing) wear the reservation down.
        for _ in 0..200 {
            demand.want(0, 0, 8);
        }
        assert_eq!(demand.in_flight(), [0, 0, 0, 0]);
        assert_eq!(demand.reserved_above(2), 0, "decayed to nothing");
    }
}

#[cfg(all(test, bulwark_loom))]
mod demand_loom_model {
    use super::*;

    /// Review: two calls on threads sharing a core arrive when its countdown is at its
    /// last step. The countdown is racy by design, but a race may only delay a decay:
    /// here both read the last step and both decay, lowering the peak by two eighths for
    /// one period's arrivals.
    #[test]
    fn a_race_on_the_countdown_never_decays_twice() {
        loom::model(|| {
            let demand = loom::sync::Arc::new(Demand {
                local: PerCore::with_stripes(1, Local::default),
                peak: Padded(Default::default()),
            });
            demand.peak[3].store(64, Relaxed);
            demand.local.get(0).until_decay.store(1, Relaxed);
            let other = {
                let demand = demand.clone();
                loom::thread::spawn(move || demand.want(0, 0, 1000))
            };
            demand.want(0, 0, 1000);
            other.join().unwrap();
            let peak = demand.peak[3].load(Relaxed);
            assert_eq!(peak, 56, "one decay (64 less an eighth), not two");
        });
    }
}
