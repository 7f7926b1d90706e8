//! [`Switch`]: one named switch, read by handlers and steered by operators.

use std::fmt;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, PoisonError, Weak};

use tokio::time::Instant;
use tower_bulwark_core::{ConfigError, Name};

use crate::switches::Inner;

/// Who decides a switch's level.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Mode {
    /// Its tiers (a switch no tier drives stays on).
    Automatic,
    /// An operator, at this level (0 on), whatever the tiers say.
    Forced(u8),
}

/// A switch as it is now, for dashboards and the health JSON.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct SwitchStatus {
    /// The switch's name.
    pub name: Name,
    /// The level handlers see: 0 on (the feature fully served), `max_level` off.
    pub level: u8,
    /// The highest level (1 for an on/off switch).
    pub max_level: u8,
    /// Automatic or forced.
    pub mode: Mode,
    /// The level the tiers ask for (the level once back in automatic mode).
    pub automatic_level: u8,
    /// Why it is at this level: an operator; the reading that degraded the tier holding
    /// it there (`"p99 latency 812 ms >= 500 ms"`; when that tier lets go and another
    /// still holds it, the other's); the reading that restored it; or `"initial state"`.
    pub reason: Arc<str>,
    /// When the level handlers see last changed; `None` if it never has.
    pub changed_at: Option<Instant>,
}

impl SwitchStatus {
    /// Level 0: the feature is served in full.
    pub fn is_on(&self) -> bool {
        self.level == 0
    }

    /// `"on"`, `"off"` (the highest level) or `"level 1 of 2"`.
    pub fn state(&self) -> String {
        match self.level {
            0 => "on".into(),
            level if level == self.max_level => "off".into(),
            level => format!("level {level} of {}", self.max_level),
        }
    }
}

/// `"off (automatic): p99 latency 812 ms >= 500 ms"`.
impl fmt::Display for SwitchStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mode = match self.mode {
            Mode::Automatic => "automatic",
            Mode::Forced(_) => "forced",
        };
        write!(f, "{} ({mode}): {}", self.state(), self.reason)
    }
}

/// A handle on one switch of a [`Switches`](crate::Switches): cheap to clone, read with
/// one atomic load. Keeps the switches (and their evaluation) alive.
///
/// ```
/// use tower_bulwark_degrade::{Mode, Switches};
///
/// let switches = Switches::builder().switch("reviews").manual_evaluation().build().unwrap();
/// let reviews = switches.switch("reviews").unwrap();
/// assert!(reviews.is_on());
/// reviews.force_off();
/// assert!(!reviews.is_on());
/// assert_eq!(reviews.status().mode, Mode::Forced(1));
/// reviews.automatic();
/// assert!(reviews.is_on());
/// ```
#[derive(Clone)]
pub struct Switch {
    inner: Arc<Inner>,
    index: usize,
}

impl Switch {
    pub(crate) fn new(inner: Arc<Inner>, index: usize) -> Self {
        Switch { inner, index }
    }

    /// The switch's name.
    pub fn name(&self) -> &str {
        &self.inner.slots[self.index].name
    }

    /// Whether the feature is served in full (level 0).
    #[inline]
    pub fn is_on(&self) -> bool {
        self.level() == 0
    }

    /// The level: 0 on, higher is more degraded, the highest off.
    #[inline]
    pub fn level(&self) -> u8 {
        self.inner.slots[self.index].level.load(Relaxed)
    }

    /// The state, reason and last change.
    pub fn status(&self) -> SwitchStatus {
        self.inner.slots[self.index]
            .status
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Forces the switch on until [`automatic`](Switch::automatic) or another override.
    pub fn force_on(&self) {
        self.inner.set_mode(self.index, Mode::Forced(0));
    }

    /// Forces the switch off (its highest level) until [`automatic`](Switch::automatic) or
    /// another override.
    pub fn force_off(&self) {
        let max = self.inner.slots[self.index].max_level;
        self.inner.set_mode(self.index, Mode::Forced(max));
    }

    /// Forces the switch to `level`; above its highest level is a [`ConfigError`] naming
    /// `level`, and changes nothing.
    pub fn force_level(&self, level: u8) -> Result<(), ConfigError> {
        let max = self.inner.slots[self.index].max_level;
        if level > max {
            return Err(ConfigError::new(
                "level",
                format!("switch `{}` has levels 0..={max}, got {level}", self.name()),
            ));
        }
        self.inner.set_mode(self.index, Mode::Forced(level));
        Ok(())
    }

    /// A handle that does not keep the switches alive.
    pub fn downgrade(&self) -> WeakSwitch {
        WeakSwitch {
            inner: Arc::downgrade(&self.inner),
            index: self.index,
        }
    }

    /// Hands the switch back to its tiers: it takes at once the level they ask for now
    /// (no change if it is not forced).
    pub fn automatic(&self) {
        self.inner.set_mode(self.index, Mode::Automatic);
    }
}

/// A [`Switch`] that does not keep the switches alive ([`Switch::downgrade`]): for
/// readers such as health probes, which should not hold the switches' evaluation running.
#[derive(Clone)]
pub struct WeakSwitch {
    inner: Weak<Inner>,
    index: usize,
}

impl WeakSwitch {
    /// The switch, while any [`Switches`](crate::Switches) or [`Switch`] handle lives.
    pub fn upgrade(&self) -> Option<Switch> {
        self.inner
            .upgrade()
            .map(|inner| Switch::new(inner, self.index))
    }
}

impl fmt::Debug for WeakSwitch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WeakSwitch")
            .field("index", &self.index)
            .finish()
    }
}

impl fmt::Debug for Switch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Switch")
            .field("name", &self.name())
            .field("level", &self.level())
            .finish()
    }
}
