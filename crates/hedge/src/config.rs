//! [`HedgeBuilder`]: the layer's settings, validated.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use tower_bulwark_core::budget::RatioLedger;
use tower_bulwark_core::config::{non_zero, non_zero_duration, ratio};
use tower_bulwark_core::{ConfigError, Listener, Listeners, Name};

use crate::events::{HedgeEvent, Reporter};
use crate::histogram::{Learned, LearnedSettings};
use crate::shared::{DelayRule, Shared, State, MAX_PAUSE};
use crate::{HedgeLayer, Idempotent, OverloadSignals};

/// The default budget: hedges may add 5% to the calls.
pub const DEFAULT_BUDGET_RATIO: f64 = 0.05;
/// The default hedges always allowed per second, whatever the ratio.
pub const DEFAULT_MIN_PER_SEC: u32 = 1;
/// The default window of the budget and of the learned latencies.
pub const DEFAULT_WINDOW: Duration = Duration::from_secs(10);
/// The default pause after an overloaded answer that gave no pushback.
pub const DEFAULT_PAUSE: Duration = Duration::from_secs(1);
/// The default margin: no hedge when the caller's deadline is nearer than this.
pub const DEFAULT_DEADLINE_MARGIN: Duration = Duration::from_millis(5);
/// The default floor of a learned delay.
pub const DEFAULT_MIN_DELAY: Duration = Duration::from_millis(1);
/// The default ceiling of a learned delay (and its warm-up delay, unless
/// [`delay`](HedgeBuilder::delay) is given).
pub const DEFAULT_MAX_DELAY: Duration = Duration::from_secs(1);
/// The default number of latencies a learned delay needs before it is trusted.
pub const DEFAULT_MIN_SAMPLES: u64 = 100;
/// The most hedges per call.
pub const MAX_HEDGES: u32 = 8;

/// Builds a [`HedgeLayer`]; every setting is checked by [`build`](Self::build), whose
/// [`ConfigError`] names the field. Made by [`HedgeLayer::builder`].
///
/// Give the delay as a fixed [`delay`](Self::delay), or a [`percentile`](Self::percentile)
/// of recent latencies (then `delay`, if given, is the delay used until
/// [`min_samples`](Self::min_samples) latencies are known; otherwise the ceiling
/// [`max_delay`](Self::max_delay) is).
pub struct HedgeBuilder<M = Idempotent, O = OverloadSignals> {
    settings: Settings,
    may_hedge: M,
    overload: O,
}

/// The builder's values, kept apart from its type parameters so that `may_hedge` and
/// `overload` carry them over whole.
struct Settings {
    name: Name,
    delay: Option<Duration>,
    percentile: Option<f64>,
    min_delay: Duration,
    max_delay: Duration,
    min_samples: u64,
    window: Duration,
    max_hedges: u32,
    budget_ratio: f64,
    min_per_sec: u32,
    budget_window: Duration,
    pause: Duration,
    deadline_margin: Duration,
    listeners: Listeners<HedgeEvent>,
}

impl HedgeBuilder {
    pub(crate) fn new() -> Self {
        HedgeBuilder {
            settings: Settings {
                name: Name::new_static("hedge"),
                delay: None,
                percentile: None,
                min_delay: DEFAULT_MIN_DELAY,
                max_delay: DEFAULT_MAX_DELAY,
                min_samples: DEFAULT_MIN_SAMPLES,
                window: DEFAULT_WINDOW,
                max_hedges: 1,
                budget_ratio: DEFAULT_BUDGET_RATIO,
                min_per_sec: DEFAULT_MIN_PER_SEC,
                budget_window: DEFAULT_WINDOW,
                pause: DEFAULT_PAUSE,
                deadline_margin: DEFAULT_DEADLINE_MARGIN,
                listeners: Listeners::new(),
            },
            may_hedge: Idempotent,
            overload: OverloadSignals,
        }
    }
}

impl<M, O> HedgeBuilder<M, O> {
    /// The layer's name, in events, metrics (label `hedge`) and its handle. Default
    /// `"hedge"`.
    pub fn name(mut self, name: impl Into<Name>) -> Self {
        self.settings.name = name.into();
        self
    }

    /// A fixed delay: a hedge is sent when the first attempt has not answered after it
    /// (hedge `n` after `n` delays). With [`percentile`](Self::percentile), the delay used
    /// until enough latencies are known. More than zero.
    pub fn delay(mut self, delay: Duration) -> Self {
        self.settings.delay = Some(delay);
        self
    }

    /// A learned delay: this percentile (within `0..1`, such as `0.95`) of the latencies of
    /// recent first attempts, within [`min_delay`](Self::min_delay) and
    /// [`max_delay`](Self::max_delay), recomputed at most every 100 ms.
    pub fn percentile(mut self, percentile: f64) -> Self {
        self.settings.percentile = Some(percentile);
        self
    }

    /// The floor of a learned delay. Default 1 ms; more than zero.
    pub fn min_delay(mut self, floor: Duration) -> Self {
        self.settings.min_delay = floor;
        self
    }

    /// The ceiling of a learned delay, and the delay until it is learned when no
    /// [`delay`](Self::delay) is given. Default 1 s; at least `min_delay`.
    pub fn max_delay(mut self, ceiling: Duration) -> Self {
        self.settings.max_delay = ceiling;
        self
    }

    /// Latencies needed before a learned delay is trusted. Default 100; at least 1.
    pub fn min_samples(mut self, samples: u64) -> Self {
        self.settings.min_samples = samples;
        self
    }

    /// The window of learned latencies: the percentile is of the current and the previous
    /// window (the last one to two windows). Default 10 s; 1 s to 10 min.
    pub fn window(mut self, window: Duration) -> Self {
        self.settings.window = window;
        self
    }

    /// The most hedges per call: hedge `n` is sent `n` delays after the first attempt.
    /// Default 1; 1 to 8.
    pub fn max_hedges(mut self, hedges: u32) -> Self {
        self.settings.max_hedges = hedges;
        self
    }

    /// The budget: hedges may add at most this share of the calls (each call deposits
    /// it, each hedge withdraws one), plus [`min_per_sec`](Self::min_per_sec). Default
    /// 0.05; within `0..=1`.
    pub fn budget_ratio(mut self, ratio: f64) -> Self {
        self.settings.budget_ratio = ratio;
        self
    }

    /// Hedges per second always allowed, whatever the ratio, so a quiet service can hedge.
    /// Default 1.
    pub fn min_per_sec(mut self, hedges: u32) -> Self {
        self.settings.min_per_sec = hedges;
        self
    }

    /// The budget's window: deposits and withdrawals older than this expire. Default
    /// 10 s; 1 s to 60 s.
    pub fn budget_window(mut self, window: Duration) -> Self {
        self.settings.budget_window = window;
        self
    }

    /// How long hedging pauses after an overloaded answer that gave no pushback. Default
    /// 1 s; more than zero, at most 60 s (a pushback is honoured up to 60 s too).
    pub fn pause(mut self, pause: Duration) -> Self {
        self.settings.pause = pause;
        self
    }

    /// No hedge is sent when the caller's deadline is nearer than this. Default 5 ms.
    pub fn deadline_margin(mut self, margin: Duration) -> Self {
        self.settings.deadline_margin = margin;
        self
    }

    /// Adds a listener of [`HedgeEvent`]s.
    pub fn on_event(mut self, listener: impl Listener<HedgeEvent> + 'static) -> Self {
        self.settings.listeners.push(listener);
        self
    }

    /// Records the events through the `metrics` facade (`bulwark_hedge_*`, see the crate
    /// docs), each series registered once.
    #[cfg(feature = "metrics")]
    pub fn with_metrics(self) -> Self {
        self.on_event(crate::events::HedgeMetricsListener::new())
    }

    /// Which requests may be hedged. Default [`Idempotent`]: HTTP requests with an
    /// idempotent method or an `Idempotency-Key`.
    pub fn may_hedge<M2>(self, may_hedge: M2) -> HedgeBuilder<M2, O> {
        HedgeBuilder {
            settings: self.settings,
            may_hedge,
            overload: self.overload,
        }
    }

    /// Which answers say the dependency is overloaded. Default [`OverloadSignals`] (HTTP
    /// and gRPC responses); [`Rejections`](crate::Rejections) for other response types.
    pub fn overload<O2>(self, overload: O2) -> HedgeBuilder<M, O2> {
        HedgeBuilder {
            settings: self.settings,
            overload,
            may_hedge: self.may_hedge,
        }
    }

    /// The layer, or the first setting that is wrong.
    pub fn build(self) -> Result<HedgeLayer<M, O>, ConfigError> {
        let delay = match (self.settings.delay, self.settings.percentile) {
            (None, None) => {
                return Err(ConfigError::new(
                    "delay",
                    "give a fixed `delay` or a `percentile` of recent latencies",
                ))
            }
            (Some(delay), _) => Some(non_zero_duration("delay", delay)?),
            (None, Some(_)) => None,
        };
        let rule = match self.settings.percentile {
            None => DelayRule::Fixed(delay.expect("checked above: a delay or a percentile")),
            Some(percentile) => {
                let percentile = ratio("percentile", percentile)?;
                if percentile == 0.0 || percentile == 1.0 {
                    return Err(ConfigError::new(
                        "percentile",
                        format!("must be more than 0 and less than 1, got {percentile}"),
                    ));
                }
                let floor = non_zero_duration("min_delay", self.settings.min_delay)?;
                if self.settings.max_delay < floor {
                    return Err(ConfigError::new(
                        "max_delay",
                        format!(
                            "must be at least `min_delay` ({floor:?}), got {:?}",
                            self.settings.max_delay
                        ),
                    ));
                }
                non_zero("min_samples", self.settings.min_samples)?;
                within(
                    "window",
                    self.settings.window,
                    Duration::from_secs(1),
                    Duration::from_secs(600),
                )?;
                DelayRule::Learned(Learned::new(LearnedSettings {
                    percentile,
                    min_samples: self.settings.min_samples,
                    floor,
                    ceiling: self.settings.max_delay,
                    warm_up: delay.unwrap_or(self.settings.max_delay),
                    window: self.settings.window,
                }))
            }
        };
        if !(1..=MAX_HEDGES).contains(&self.settings.max_hedges) {
            return Err(ConfigError::new(
                "max_hedges",
                format!(
                    "must be within 1..={MAX_HEDGES}, got {}",
                    self.settings.max_hedges
                ),
            ));
        }
        let budget_ratio = ratio("budget_ratio", self.settings.budget_ratio)?;
        within(
            "budget_window",
            self.settings.budget_window,
            Duration::from_secs(1),
            Duration::from_secs(60),
        )?;
        let pause = non_zero_duration("pause", self.settings.pause)?;
        within("pause", pause, Duration::ZERO, MAX_PAUSE)?;
        let state = State::new(
            Reporter {
                name: self.settings.name,
                listeners: self.settings.listeners,
            },
            rule,
            self.settings.max_hedges,
            RatioLedger::new(
                self.settings.budget_window,
                self.settings.min_per_sec,
                budget_ratio,
            ),
            pause,
            self.settings.deadline_margin,
        );
        Ok(HedgeLayer {
            shared: Arc::new(Shared {
                state,
                may_hedge: self.may_hedge,
                overload: self.overload,
            }),
        })
    }
}

fn within(
    field: &'static str,
    value: Duration,
    min: Duration,
    max: Duration,
) -> Result<Duration, ConfigError> {
    if (min..=max).contains(&value) {
        Ok(value)
    } else {
        Err(ConfigError::new(
            field,
            format!("must be within {min:?}..={max:?}, got {value:?}"),
        ))
    }
}

impl<M, O> fmt::Debug for HedgeBuilder<M, O> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HedgeBuilder")
            .field("name", &self.settings.name)
            .field("delay", &self.settings.delay)
            .field("percentile", &self.settings.percentile)
            .field("max_hedges", &self.settings.max_hedges)
            .field("budget_ratio", &self.settings.budget_ratio)
            .finish_non_exhaustive()
    }
}
