//! How much of the limit each criticality tier may use.

use tower_bulwark_core::{ConfigError, Criticality};

/// The share of the concurrency limit each [`Criticality`] tier may fill.
///
/// A call of a tier is admitted while the calls in flight stay within its share of the
/// limit. Shares must not decrease with importance, so as load rises the least important
/// tier is refused first, and a tier is only refused once every tier below it already is.
///
/// Defaults: `Sheddable` 50%, `SheddablePlus` 70%, `Critical` 90%, `CriticalPlus` 100%.
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
        TierShares {
            sheddable: 0.5,
            sheddable_plus: 0.7,
            critical: 0.9,
            critical_plus: 1.0,
        }
    }
}

impl TierShares {
    /// Every tier may use the whole limit (no tiering).
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

impl TierShares {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_nest_from_least_to_most_important() {
        let shares = TierShares::default().check().unwrap();
        let allowed = shares.permille().map(|permille| allowed(permille, 100));
        assert_eq!(allowed, [50, 70, 90, 100]);
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
            let mut shares = TierShares::default();
            f(&mut shares);
            shares.check().unwrap_err().field()
        };
        assert_eq!(with(|s| s.sheddable = 0.0), "tiers.sheddable");
        assert_eq!(with(|s| s.critical_plus = 1.5), "tiers.critical_plus");
        assert_eq!(with(|s| s.critical = f64::NAN), "tiers.critical");
        assert_eq!(with(|s| s.sheddable_plus = 0.4), "tiers.sheddable_plus");
    }
}
