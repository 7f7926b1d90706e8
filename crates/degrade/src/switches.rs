//! [`Switches`] and its [`Builder`].

use std::collections::HashMap;
use std::fmt;
use std::panic::catch_unwind;
use std::sync::atomic::{AtomicU8, Ordering::Relaxed};
use std::sync::{Arc, Mutex, OnceLock, PoisonError, Weak};
use std::time::Duration;

use tokio::task::AbortHandle;
use tokio::time::{Instant, Interval, MissedTickBehavior};
use tower_bulwark_core::config::non_zero_duration;
use tower_bulwark_core::{ConfigError, Listener, Listeners, Name};

use crate::config::at_most_a_day;
use crate::engine::{Auto, Engine, List, Tier};
use crate::events::Caught;
use crate::{DegradeEvent, Mode, Switch, SwitchStatus, Tiers};

/// A set of named degradation switches: features a handler serves in full, in part or not
/// at all, read with one atomic load ([`Switch::is_on`]) and flipped automatically by
/// [`Tiers`] of triggers, or by an operator.
///
/// - **Triggers** are [`Signal`](crate::Signal)s, read every `interval` by a background
///   task (or by [`Switches::evaluate`]): a circuit breaker's state, refusals of a bulkhead
///   or a shedding layer, a latency percentile or an error rate from a
///   [`Recorder`](crate::Recorder), a health check, a closure.
/// - **No flapping**: each tier degrades at one threshold and restores at a lower one, and a
///   switch's automatic level changes at most once per `min_dwell` (30 s by default).
/// - **Order**: tiers degrade the least important feature first and restore it last.
/// - **Overrides** ([`Switch::force_off`], [`Switch::force_on`], [`Switch::automatic`])
///   win over the tiers until handed back; the tiers keep evaluating meanwhile.
/// - **Visibility**: every switch's state, reason and last change ([`Switches::statuses`];
///   in the health JSON with `tower-bulwark-health`'s `add_switches`); an event for every
///   flip ([`Builder::on_event`]) and metrics `bulwark_degrade_*` ([`Builder::with_metrics`]).
///
/// Clones share the switches. The background task stops when the last `Switches` and
/// [`Switch`] handle are dropped.
///
/// ```
/// use std::time::Duration;
/// use tower_bulwark_degrade::{Recorder, Switches, Threshold, Tiers};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), tower_bulwark_core::ConfigError> {
/// let latency = Recorder::builder().name("shop").build()?;
/// let switches = Switches::builder()
///     .name("shop")
///     .switch("checkout") // never degraded automatically; an operator may
///     .tiers(
///         Tiers::new(latency.latency(0.99)?)
///             .tier("reviews", Threshold::new(300.0, 150.0))
///             .tier("recommendations", Threshold::new(500.0, 250.0)),
///     )
///     .interval(Duration::from_secs(1))
///     .min_dwell(Duration::from_secs(30))
///     .build()?;
/// let reviews = switches.switch("reviews").unwrap();
/// if reviews.is_on() {
///     // render the reviews
/// }
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Switches {
    inner: Arc<Inner>,
}

/// What every [`Switches`] clone and [`Switch`] handle share.
pub(crate) struct Inner {
    pub(crate) name: Name,
    pub(crate) slots: Box<[Slot]>,
    /// Each switch's slot, by name: a lookup by name costs the same however many there are.
    index: HashMap<Name, usize>,
    pub(crate) engine: Mutex<Engine>,
    pub(crate) min_dwell: Duration,
    pub(crate) listeners: Listeners<DegradeEvent>,
    task: OnceLock<AbortHandle>,
}

/// One switch: what handlers read, and what status readers read.
pub(crate) struct Slot {
    pub(crate) name: Name,
    pub(crate) max_level: u8,
    pub(crate) level: AtomicU8,
    pub(crate) status: Mutex<SwitchStatus>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        if let Some(task) = self.task.get() {
            task.abort();
        }
    }
}

impl Switches {
    /// Starts configuring a set of switches.
    pub fn builder() -> Builder {
        Builder {
            name: Name::from("switches"),
            interval: Duration::from_secs(1),
            min_dwell: Duration::from_secs(30),
            background: true,
            declared: Vec::new(),
            lists: Vec::new(),
            listeners: Listeners::new(),
            #[cfg(feature = "metrics")]
            metrics: false,
        }
    }

    /// The name given with [`Builder::name`].
    pub fn name(&self) -> &str {
        &self.inner.name
    }

    /// The switch named `name`, if there is one.
    pub fn switch(&self, name: &str) -> Option<Switch> {
        self.index(name).map(|i| Switch::new(self.inner.clone(), i))
    }

    /// The level of the switch named `name` (0 on), if there is one: a lookup by name and
    /// one atomic load. On a hot path, keep the [`Switch`] instead (no lookup).
    pub fn level(&self, name: &str) -> Option<u8> {
        self.index(name)
            .map(|i| self.inner.slots[i].level.load(Relaxed))
    }

    /// Every switch's state, reason and last change, in the order they were declared
    /// (switches named only by tiers come after, in the order the tiers name them).
    pub fn statuses(&self) -> Vec<SwitchStatus> {
        self.inner
            .slots
            .iter()
            .map(|slot| {
                slot.status
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .clone()
            })
            .collect()
    }

    /// Reads every signal once and moves the tiers, as of `now`: what the background task
    /// does every `interval`. For tests and for [`Builder::manual_evaluation`].
    pub fn evaluate(&self, now: Instant) {
        self.inner.evaluate(now);
    }

    fn index(&self, name: &str) -> Option<usize> {
        self.inner.index.get(name).copied()
    }
}

impl fmt::Debug for Switches {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let levels: Vec<(&str, u8)> = self
            .inner
            .slots
            .iter()
            .map(|slot| (slot.name.as_str(), slot.level.load(Relaxed)))
            .collect();
        f.debug_struct("Switches")
            .field("name", &self.inner.name)
            .field("levels", &levels)
            .finish()
    }
}

/// Builds [`Switches`]. Defaults: evaluated every second in a background task, 30 s
/// minimum dwell, no switches.
pub struct Builder {
    name: Name,
    interval: Duration,
    min_dwell: Duration,
    background: bool,
    /// Switches declared by name, with their highest level.
    declared: Vec<(Name, u8)>,
    lists: Vec<Tiers>,
    listeners: Listeners<DegradeEvent>,
    /// Whether `with_metrics` was called: every switch's level gauge is set at build.
    #[cfg(feature = "metrics")]
    metrics: bool,
}

impl Builder {
    /// Names the switches in events, metrics and the health JSON.
    pub fn name(mut self, name: impl Into<Name>) -> Self {
        self.name = name.into();
        self
    }

    /// Declares an on/off switch. Switches named by tiers need no declaration; a switch
    /// declared and named by no tier is for operators only (it stays on unless forced).
    pub fn switch(self, name: impl Into<Name>) -> Self {
        self.switch_levels(name, 1)
    }

    /// Declares a switch with levels `0..=max_level` (0 on, `max_level` off).
    pub fn switch_levels(mut self, name: impl Into<Name>, max_level: u8) -> Self {
        self.declared.push((name.into(), max_level));
        self
    }

    /// Adds a list of ordered tiers on one signal.
    pub fn tiers(mut self, tiers: Tiers) -> Self {
        self.lists.push(tiers);
        self
    }

    /// How often the background task evaluates the tiers (at most 24 hours).
    pub fn interval(mut self, interval: Duration) -> Self {
        self.interval = interval;
        self
    }

    /// The least time a switch's automatic level stays as it is before it may change again
    /// (zero: hysteresis alone). Overrides are not held by it.
    pub fn min_dwell(mut self, min_dwell: Duration) -> Self {
        self.min_dwell = min_dwell;
        self
    }

    /// No background task: the tiers move only when [`Switches::evaluate`] is called (tests,
    /// or an evaluation loop of your own). Needs no tokio runtime.
    pub fn manual_evaluation(mut self) -> Self {
        self.background = false;
        self
    }

    /// Adds a listener for flips. Listeners are called in order of the flips, while the
    /// switches are held for evaluation: they may read the switches, but must not
    /// override them or call [`Switches::evaluate`] (either would wait forever). A
    /// listener that panics is logged (at `ERROR`) and the evaluation goes on.
    ///
    /// The switches keep their listeners: a listener holding a [`Switches`] or a
    /// [`Switch`] keeps them, and their background task, alive for ever. Give it a
    /// [`WeakSwitch`](crate::WeakSwitch) instead:
    ///
    /// ```
    /// use std::sync::{Arc, OnceLock};
    /// use tower_bulwark_degrade::{DegradeEvent, Switches, WeakSwitch};
    ///
    /// let checkout: Arc<OnceLock<WeakSwitch>> = Arc::default();
    /// let seen = checkout.clone();
    /// let switches = Switches::builder()
    ///     .switch("checkout")
    ///     .switch("reviews")
    ///     .on_event(move |event: &DegradeEvent| {
    ///         if let Some(checkout) = seen.get().and_then(WeakSwitch::upgrade) {
    ///             println!("{event}; checkout {}", checkout.status());
    ///         }
    ///     })
    ///     .manual_evaluation()
    ///     .build()
    ///     .unwrap();
    /// checkout.set(switches.switch("checkout").unwrap().downgrade()).unwrap();
    /// switches.switch("reviews").unwrap().force_off();
    /// ```
    pub fn on_event(mut self, listener: impl Listener<DegradeEvent> + 'static) -> Self {
        self.listeners.push(Caught(listener));
        self
    }

    /// Records flips through the `metrics` facade (`bulwark_degrade_*`), and every
    /// switch's level (0) when the switches are built.
    #[cfg(feature = "metrics")]
    pub fn with_metrics(mut self) -> Self {
        self.metrics = true;
        self.on_event(tower_bulwark_core::metrics::MetricsListener)
    }

    /// The switches, every one on, and (unless [`manual_evaluation`](Builder::manual_evaluation))
    /// the background task evaluating them, spawned on the current tokio runtime.
    ///
    /// Errors name the field: `interval` zero or over 24 hours; `switch` empty or
    /// declared twice; `levels` zero; `tiers` an empty list; `level` 0, or not rising
    /// along a list's tiers of one switch; `degrade_at` not finite or lower than the tier
    /// before; `restore_at` not finite, not below `degrade_at` or lower than the tier
    /// before; `runtime` with no tokio runtime to run the background task on, or one
    /// built without timers (`enable_time`).
    pub fn build(self) -> Result<Switches, ConfigError> {
        non_zero_duration("interval", self.interval)?;
        at_most_a_day("interval", self.interval)?;
        let mut names: Vec<Name> = Vec::new();
        let mut max_levels: Vec<u8> = Vec::new();
        for (name, levels) in &self.declared {
            if name.is_empty() {
                return Err(ConfigError::new("switch", "a switch needs a name"));
            }
            if *levels == 0 {
                return Err(ConfigError::new(
                    "levels",
                    format!("switch `{name}` needs at least level 1 (off)"),
                ));
            }
            if names.contains(name) {
                return Err(ConfigError::new(
                    "switch",
                    format!("`{name}` is declared twice"),
                ));
            }
            names.push(name.clone());
            max_levels.push(*levels);
        }
        for list in &self.lists {
            list.validate()?;
            for tier in &list.tiers {
                let i = match names.iter().position(|n| *n == tier.switch) {
                    Some(i) => i,
                    None => {
                        names.push(tier.switch.clone());
                        max_levels.push(1);
                        names.len() - 1
                    }
                };
                max_levels[i] = max_levels[i].max(tier.level.unwrap_or(1));
            }
        }
        let mut lists = Vec::with_capacity(self.lists.len());
        for list in self.lists {
            let mut tiers: Vec<Tier> = Vec::with_capacity(list.tiers.len());
            for spec in &list.tiers {
                let switch = names.iter().position(|n| *n == spec.switch).unwrap_or(0);
                let level = spec.level.unwrap_or(max_levels[switch]);
                if let Some(before) = tiers.iter().rev().find(|t| t.switch == switch) {
                    if before.level >= level {
                        return Err(ConfigError::new(
                            "level",
                            format!(
                                "switch `{}` must rise along the tiers, got level {level} after {}",
                                spec.switch, before.level
                            ),
                        ));
                    }
                }
                tiers.push(Tier {
                    switch,
                    level,
                    threshold: spec.threshold,
                });
            }
            lists.push(List::new(list.signal, tiers));
        }
        let background = if self.background {
            Some(background(self.interval)?)
        } else {
            None
        };
        let initial: Arc<str> = Arc::from("initial state");
        let slots = names
            .iter()
            .zip(&max_levels)
            .map(|(name, &max_level)| Slot {
                name: name.clone(),
                max_level,
                level: AtomicU8::new(0),
                status: Mutex::new(SwitchStatus {
                    name: name.clone(),
                    level: 0,
                    max_level,
                    mode: Mode::Automatic,
                    automatic_level: 0,
                    reason: initial.clone(),
                    changed_at: None,
                }),
            })
            .collect();
        let autos = names.iter().map(|_| Auto::new(initial.clone())).collect();
        #[cfg(feature = "metrics")]
        if self.metrics {
            for switch in &names {
                crate::events::set_level_gauge(&self.name, switch, 0);
            }
        }
        let index = names.into_iter().enumerate().map(|(i, n)| (n, i)).collect();
        let inner = Arc::new(Inner {
            name: self.name,
            slots,
            index,
            engine: Mutex::new(Engine { lists, autos }),
            min_dwell: self.min_dwell,
            listeners: self.listeners,
            task: OnceLock::new(),
        });
        if let Some((runtime, ticks)) = background {
            let task = runtime.spawn(run(Arc::downgrade(&inner), ticks));
            let _ = inner.task.set(task.abort_handle());
        }
        Ok(Switches { inner })
    }
}

impl fmt::Debug for Builder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Builder")
            .field("name", &self.name)
            .field("interval", &self.interval)
            .field("min_dwell", &self.min_dwell)
            .field("background", &self.background)
            .field("declared", &self.declared)
            .field("tiers", &self.lists)
            .finish()
    }
}

/// The runtime to run the background evaluation on, and its ticks. The ticks are made
/// here, not in the task: a runtime without timers panics making them (tokio offers no
/// other way to ask), which is a `ConfigError` now rather than a task dead unseen.
fn background(interval: Duration) -> Result<(tokio::runtime::Handle, Interval), ConfigError> {
    let runtime = tokio::runtime::Handle::try_current().map_err(|_| {
        ConfigError::new(
            "runtime",
            "the background evaluation needs a tokio runtime (or use `manual_evaluation`)",
        )
    })?;
    let mut ticks = catch_unwind(|| tokio::time::interval(interval)).map_err(|_| {
        ConfigError::new(
            "runtime",
            "the background evaluation needs a tokio runtime with timers (`enable_time`), or use `manual_evaluation`",
        )
    })?;
    ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
    Ok((runtime, ticks))
}

/// The background evaluation: every tick while the switches live. Holds them only while
/// evaluating, so dropping the last handle ends it (and `Inner`'s drop aborts it at once).
async fn run(inner: Weak<Inner>, mut ticks: Interval) {
    loop {
        ticks.tick().await;
        let Some(inner) = inner.upgrade() else {
            return;
        };
        inner.evaluate(Instant::now());
    }
}
