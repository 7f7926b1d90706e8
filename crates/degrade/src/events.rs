//! The switches' events: one per flip.

use std::fmt;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;

use tower_bulwark_core::{Event, Listener, Name};
use tracing::Level;

/// Who flipped a switch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Cause {
    /// Its tiers ([`Tiers`](crate::Tiers)).
    Automatic,
    /// An operator: an override ([`Switch::force_off`](crate::Switch::force_off), ...), or
    /// handing the switch back to its tiers ([`Switch::automatic`](crate::Switch::automatic)).
    Manual,
}

impl Cause {
    /// `"automatic"` or `"manual"`.
    pub fn as_str(self) -> &'static str {
        match self {
            Cause::Automatic => "automatic",
            Cause::Manual => "manual",
        }
    }
}

/// What a set of [`Switches`](crate::Switches) reports to its listeners: every change of a
/// switch's level, as handlers see it.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum DegradeEvent {
    /// A switch's level changed (0 is on, the feature fully served).
    Flipped {
        /// The name of the [`Switches`](crate::Switches).
        switches: Name,
        /// The switch's name.
        switch: Name,
        /// The level before.
        from: u8,
        /// The level now.
        to: u8,
        /// Triggers or an operator.
        cause: Cause,
        /// Why, for people: `"p99 latency 812 ms >= 500 ms"`, `"forced off by an operator"`.
        reason: Arc<str>,
    },
}

impl fmt::Display for DegradeEvent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DegradeEvent::Flipped {
                switches,
                switch,
                from,
                to,
                cause,
                reason,
            } => write!(
                f,
                "`{switches}` switch `{switch}` level {from} -> {to} ({}): {reason}",
                cause.as_str()
            ),
        }
    }
}

impl Event for DegradeEvent {
    fn layer_kind(&self) -> &'static str {
        "degrade"
    }

    /// `WARN` when a switch degrades further, `INFO` when it comes back.
    fn level(&self) -> Level {
        match self {
            DegradeEvent::Flipped { from, to, .. } if to > from => Level::WARN,
            DegradeEvent::Flipped { .. } => Level::INFO,
        }
    }

    /// Records `bulwark_degrade_flips_total` (labels `switches`, `switch`, `cause`:
    /// `automatic` or `manual`, `direction`: `degrade` or `restore`) and the gauge
    /// `bulwark_degrade_level` (labels `switches`, `switch`; set to 0 for every switch
    /// when the switches are built). Flips are rare: each registers its series anew.
    #[cfg(feature = "metrics")]
    fn record_metrics(&self) {
        use tower_bulwark_core::metric_name;
        match self {
            DegradeEvent::Flipped {
                switches,
                switch,
                from,
                to,
                cause,
                ..
            } => {
                set_level_gauge(switches, switch, *to);
                let direction = if to > from { "degrade" } else { "restore" };
                metrics::counter!(
                    metric_name!("degrade_flips_total"),
                    "switches" => switches.to_string(),
                    "switch" => switch.to_string(),
                    "cause" => cause.as_str(),
                    "direction" => direction
                )
                .increment(1);
            }
        }
    }
}

/// A listener whose panic is caught and logged: flips are announced from the evaluation
/// (the background task, or an operator's override), which one buggy listener must not
/// stop, nor keep the other listeners from hearing.
pub(crate) struct Caught<L>(pub(crate) L);

impl<L: Listener<DegradeEvent>> Listener<DegradeEvent> for Caught<L> {
    fn on_event(&self, event: &DegradeEvent) {
        if catch_unwind(AssertUnwindSafe(|| self.0.on_event(event))).is_err() {
            tracing::error!(target: "tower_bulwark", %event, "degrade listener panicked");
        }
    }
}

/// Sets the gauge `bulwark_degrade_level` of switch `switch`: at every flip, and to 0 for
/// every switch when the switches are built (so each series exists before its first flip).
#[cfg(feature = "metrics")]
pub(crate) fn set_level_gauge(switches: &Name, switch: &Name, level: u8) {
    let labels = [
        ("switches", switches.to_string()),
        ("switch", switch.to_string()),
    ];
    metrics::gauge!(tower_bulwark_core::metric_name!("degrade_level"), &labels)
        .set(f64::from(level));
}
