//! [`Tiers`]: switches flipped in order by one signal, with hysteresis.

use tower_bulwark_core::{ConfigError, Name};

use crate::Signal;

/// When a tier degrades and when it is restored: at a reading of `degrade_at` or more it
/// switches its feature off, at `restore_at` or less back on; in between it stays as it
/// is. `restore_at` must be below `degrade_at`: the gap is what keeps a signal hovering
/// near one threshold from flipping the switch back and forth.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Threshold {
    pub(crate) degrade_at: f64,
    pub(crate) restore_at: f64,
}

impl Threshold {
    /// Degrade at a reading of `degrade_at` or more, restore at `restore_at` or less.
    /// Checked when the switches are built.
    pub fn new(degrade_at: f64, restore_at: f64) -> Self {
        Threshold {
            degrade_at,
            restore_at,
        }
    }
}

/// Ordered tiers of degradation on one [`Signal`]: as it rises, the first tier switches its
/// feature off, then the second, ...; as it falls, they come back in reverse order.
///
/// List the least important feature first. Each tier has a [`Threshold`]; thresholds may
/// not decrease from one tier to the next (equal ones make an explicit ordered list: the
/// tiers go one per evaluation while the signal stays over the threshold). Whatever the
/// signal does, the order holds: a tier degrades only once every tier before it has,
/// is restored only once every tier after it is, and at most one tier of a list moves per
/// evaluation. A tier whose switch changed less than `min_dwell` ago waits (and the tiers
/// after it wait with it): no switch flips more than once per `min_dwell`.
///
/// A tier turns its switch fully off ([`Tiers::tier`]) or to a level
/// ([`Tiers::tier_level`]: a switch with levels, "recommendations from cache" before
/// "no recommendations"). A switch driven by several tiers (of one list or several) is at
/// the highest level any of them asks for.
///
/// ```
/// use std::time::Duration;
/// use tower_bulwark_degrade::{Recorder, Threshold, Tiers};
///
/// # fn main() -> Result<(), tower_bulwark_core::ConfigError> {
/// let latency = Recorder::builder().name("shop").window(Duration::from_secs(30)).build()?;
/// let tiers = Tiers::new(latency.latency(0.99)?)
///     .tier("reviews", Threshold::new(300.0, 150.0)) // p99 >= 300 ms: off; <= 150 ms: on
///     .tier("recommendations", Threshold::new(500.0, 250.0));
/// # let _ = tiers; Ok(()) }
/// ```
#[derive(Debug)]
pub struct Tiers {
    pub(crate) signal: Signal,
    pub(crate) tiers: Vec<TierSpec>,
}

#[derive(Debug, Clone)]
pub(crate) struct TierSpec {
    pub(crate) switch: Name,
    /// `None`: the switch's highest level (fully off).
    pub(crate) level: Option<u8>,
    pub(crate) threshold: Threshold,
}

impl Tiers {
    /// No tiers yet, on `signal`.
    pub fn new(signal: Signal) -> Self {
        Tiers {
            signal,
            tiers: Vec::new(),
        }
    }

    /// The next tier: switch `switch` fully off at `threshold`.
    pub fn tier(mut self, switch: impl Into<Name>, threshold: Threshold) -> Self {
        self.tiers.push(TierSpec {
            switch: switch.into(),
            level: None,
            threshold,
        });
        self
    }

    /// The next tier: switch `switch` to `level` (1 or more) at `threshold`. A switch's
    /// highest level is the highest any tier or [`Builder::switch_levels`] names for it.
    ///
    /// [`Builder::switch_levels`]: crate::Builder::switch_levels
    pub fn tier_level(mut self, switch: impl Into<Name>, level: u8, threshold: Threshold) -> Self {
        self.tiers.push(TierSpec {
            switch: switch.into(),
            level: Some(level),
            threshold,
        });
        self
    }

    /// Checks everything that does not depend on the other lists.
    pub(crate) fn validate(&self) -> Result<(), ConfigError> {
        if self.tiers.is_empty() {
            return Err(ConfigError::new(
                "tiers",
                "a list of tiers needs at least one tier",
            ));
        }
        let mut previous: Option<&Threshold> = None;
        for tier in &self.tiers {
            if tier.switch.is_empty() {
                return Err(ConfigError::new("switch", "a switch needs a name"));
            }
            if tier.level == Some(0) {
                return Err(ConfigError::new(
                    "level",
                    format!(
                        "tier of `{}`: level 0 is on; degrade to 1 or more",
                        tier.switch
                    ),
                ));
            }
            let Threshold {
                degrade_at,
                restore_at,
            } = tier.threshold;
            if !degrade_at.is_finite() {
                return Err(ConfigError::new(
                    "degrade_at",
                    format!(
                        "tier of `{}`: must be a finite number, got {degrade_at}",
                        tier.switch
                    ),
                ));
            }
            if !restore_at.is_finite() || restore_at >= degrade_at {
                return Err(ConfigError::new(
                    "restore_at",
                    format!(
                        "tier of `{}`: must be a finite number below `degrade_at` ({degrade_at}), got {restore_at}",
                        tier.switch
                    ),
                ));
            }
            if let Some(previous) = previous {
                if degrade_at < previous.degrade_at {
                    return Err(ConfigError::new(
                        "degrade_at",
                        format!(
                            "tier of `{}`: tiers' thresholds may not decrease, got {degrade_at} after {}",
                            tier.switch, previous.degrade_at
                        ),
                    ));
                }
                if restore_at < previous.restore_at {
                    return Err(ConfigError::new(
                        "restore_at",
                        format!(
                            "tier of `{}`: tiers' thresholds may not decrease, got {restore_at} after {}",
                            tier.switch, previous.restore_at
                        ),
                    ));
                }
            }
            previous = Some(&tier.threshold);
        }
        Ok(())
    }
}
