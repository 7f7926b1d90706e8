//! [`Injector`]: decides, call by call, which fault to inject.

use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use tower_bulwark_core::config::ratio;
use tower_bulwark_core::{ConfigError, Listeners, SharedRng};

use crate::ChaosEvent;

/// How long injected latency lasts.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Latency {
    /// Always this long.
    Fixed(Duration),
    /// Uniformly between `min` and `max`.
    Uniform {
        /// The shortest.
        min: Duration,
        /// The longest.
        max: Duration,
    },
    /// Exponentially distributed with this mean (a long tail), capped at 20 times it.
    Exponential {
        /// The mean.
        mean: Duration,
    },
}

/// The fault chosen for one call.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Fault {
    /// None: the call goes through untouched.
    None,
    /// Answer with the configured error (or status) without calling the inner service.
    Error,
    /// Fail as a broken connection would, without calling the inner service.
    Abort,
    /// Call the inner service, and hold its answer this much longer.
    Delay(Duration),
}

/// The shared state of a chaos layer: rates, the seeded generator, the kill switch.
pub(crate) struct Injector {
    error_rate: f64,
    abort_rate: f64,
    latency_rate: f64,
    latency: Latency,
    enabled: AtomicBool,
    draws: SharedRng,
    injected: [AtomicU64; 3],
    listeners: Listeners<ChaosEvent>,
}

impl Injector {
    pub(crate) fn new(
        error_rate: f64,
        abort_rate: f64,
        latency: Option<(f64, Latency)>,
        seed: u64,
        enabled: bool,
        listeners: Listeners<ChaosEvent>,
    ) -> Result<Self, ConfigError> {
        let error_rate = ratio("error_rate", error_rate)?;
        let abort_rate = ratio("abort_rate", abort_rate)?;
        if error_rate + abort_rate > 1.0 {
            return Err(ConfigError::new(
                "abort_rate",
                format!(
                    "error_rate + abort_rate must be at most 1, got {}",
                    error_rate + abort_rate
                ),
            ));
        }
        let (latency_rate, latency) = latency.unwrap_or((0.0, Latency::Fixed(Duration::ZERO)));
        let latency_rate = ratio("latency_rate", latency_rate)?;
        if let Latency::Uniform { min, max } = latency {
            if max < min {
                return Err(ConfigError::new(
                    "latency",
                    format!("max ({max:?}) must be at least min ({min:?})"),
                ));
            }
        }
        Ok(Injector {
            error_rate,
            abort_rate,
            latency_rate,
            latency,
            enabled: AtomicBool::new(enabled),
            draws: SharedRng::new(seed),
            injected: Default::default(),
            listeners,
        })
    }

    /// The fault for the next call: errors and aborts first (by one draw), then latency
    /// (by another). Nothing, and no draw, while disabled.
    #[inline(always)]
    pub(crate) fn decide(&self) -> Fault {
        if !self.enabled.load(Relaxed) {
            return Fault::None;
        }
        let draw = self.draw();
        if draw < self.error_rate {
            return self.count(Fault::Error);
        }
        if draw < self.error_rate + self.abort_rate {
            return self.count(Fault::Abort);
        }
        if self.latency_rate > 0.0 && self.draw() < self.latency_rate {
            return self.count(Fault::Delay(self.latency()));
        }
        Fault::None
    }

    /// Counts `fault` as injected (drawn or asked for by header), and returns it.
    #[inline(always)]
    pub(crate) fn count(&self, fault: Fault) -> Fault {
        let (counter, event) = match fault {
            Fault::None => return fault,
            Fault::Error => (&self.injected[0], ChaosEvent::ErrorInjected),
            Fault::Abort => (&self.injected[1], ChaosEvent::Aborted),
            Fault::Delay(delay) => (&self.injected[2], ChaosEvent::Delayed { delay }),
        };
        counter.fetch_add(1, Relaxed);
        self.listeners.emit(|| event);
        fault
    }

    fn latency(&self) -> Duration {
        match self.latency {
            Latency::Fixed(wait) => wait,
            Latency::Uniform { min, max } => min + (max - min).mul_f64(self.draw()),
            Latency::Exponential { mean } => {
                let draw = self.draw().max(f64::MIN_POSITIVE);
                // Saturates instead of overflowing for an enormous mean.
                Duration::try_from_secs_f64(mean.as_secs_f64() * (-draw.ln()).min(20.0))
                    .unwrap_or(Duration::MAX)
            }
        }
    }

    /// A uniform draw in [0, 1) (exact for a seed when calls come one at a time).
    #[inline(always)]
    pub(crate) fn draw(&self) -> f64 {
        self.draws.next_unit()
    }

    pub(crate) fn set_enabled(&self, enabled: bool) {
        self.enabled.store(enabled, Relaxed);
    }

    pub(crate) fn is_enabled(&self) -> bool {
        self.enabled.load(Relaxed)
    }

    /// Errors, aborts and delays injected so far.
    pub(crate) fn injected(&self) -> [u64; 3] {
        [0, 1, 2].map(|i| self.injected[i].load(Relaxed))
    }
}

impl fmt::Debug for Injector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Injector")
            .field("error_rate", &self.error_rate)
            .field("abort_rate", &self.abort_rate)
            .field("latency_rate", &self.latency_rate)
            .field("enabled", &self.is_enabled())
            .finish_non_exhaustive()
    }
}
