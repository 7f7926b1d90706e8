//! [`BreakerConfig`]: the breaker's settings as data, for configuration files (feature
//! `serde`).

use std::time::Duration;

use serde::Deserialize;
use tower_bulwark_core::ConfigError;

use crate::{Admission, Builder, CircuitBreakerLayer, OpenDuration, WindowKind};

/// A breaker's settings as plain data, deserializable from TOML, JSON or YAML, so operators
/// can tune without recompiling. Missing fields take the builder's defaults; unknown fields
/// are an error. Durations are in milliseconds.
///
/// ```
/// use tower_bulwark_breaker::BreakerConfig;
///
/// let config: BreakerConfig = serde_json::from_str(r#"{
///     "name": "payments",
///     "consecutive_failures": 0,
///     "failure_rate": 0.5,
///     "minimum_calls": 20,
///     "window": { "kind": "time", "length_ms": 60000, "buckets": 10 },
///     "slow_call": { "threshold_ms": 2000, "rate": 0.8 },
///     "open": { "kind": "exponential", "initial_ms": 30000, "multiplier": 2.0,
///               "max_ms": 300000, "jitter": 0.1, "reset_after_ms": 600000 },
///     "half_open_probes": 3,
///     "success_threshold": 3,
///     "half_open_max_wait_ms": 60000,
///     "recovery_ramp_ms": 10000,
///     "admission": "readiness"
/// }"#).unwrap();
/// let layer = config.into_layer().expect("valid settings");
/// # let _ = layer;
/// ```
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct BreakerConfig {
    /// The breaker's name.
    pub name: Option<String>,
    /// Failures in a row that trip it; `0` turns the condition off. Default 5.
    pub consecutive_failures: Option<u32>,
    /// Failure rate of the window that trips it.
    pub failure_rate: Option<f64>,
    /// Calls the window must hold before its rates count.
    pub minimum_calls: Option<u32>,
    /// The window of the rate conditions.
    pub window: Option<WindowSettings>,
    /// The slow-call condition.
    pub slow_call: Option<SlowCallSettings>,
    /// How long it stays open.
    pub open: Option<OpenSettings>,
    /// Probes in flight while half-open.
    pub half_open_probes: Option<u32>,
    /// Successful probes that close it.
    pub success_threshold: Option<u32>,
    /// The longest it stays half-open, in milliseconds (see
    /// [`Builder::half_open_max_wait`]).
    pub half_open_max_wait_ms: Option<u64>,
    /// The recovery ramp after closing, in milliseconds.
    pub recovery_ramp_ms: Option<u64>,
    /// `"fail_fast"` or `"readiness"`.
    pub admission: Option<AdmissionSetting>,
}

/// The window of the rate conditions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum WindowSettings {
    /// The last `size` calls.
    Count {
        /// How many calls.
        size: u32,
    },
    /// The calls of the last `length_ms`, in `buckets` slices.
    Time {
        /// How far back, in milliseconds.
        length_ms: u64,
        /// How many slices.
        buckets: u32,
    },
}

/// The slow-call condition.
#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SlowCallSettings {
    /// A call this slow or slower, in milliseconds, is slow.
    pub threshold_ms: u64,
    /// The share of slow calls that trips the breaker.
    pub rate: f64,
}

/// How long the breaker stays open.
#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
#[allow(missing_docs)] // the fields mirror `OpenDuration`, in milliseconds
pub enum OpenSettings {
    /// See [`OpenDuration::Fixed`].
    Fixed { ms: u64 },
    /// See [`OpenDuration::Exponential`].
    Exponential {
        initial_ms: u64,
        multiplier: f64,
        max_ms: u64,
        jitter: f64,
        reset_after_ms: u64,
    },
}

/// See [`Admission`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
#[allow(missing_docs)]
pub enum AdmissionSetting {
    FailFast,
    Readiness,
}

impl BreakerConfig {
    /// A builder with these settings, for adding a classifier or listeners.
    pub fn builder(&self) -> Builder {
        let mut builder = CircuitBreakerLayer::builder();
        if let Some(name) = &self.name {
            builder = builder.name(name.clone());
        }
        builder = match self.consecutive_failures {
            Some(0) => builder.no_consecutive_failures(),
            Some(n) => builder.consecutive_failures(n),
            None => builder,
        };
        if let Some(rate) = self.failure_rate {
            builder = builder.failure_rate(rate);
        }
        if let Some(calls) = self.minimum_calls {
            builder = builder.minimum_calls(calls);
        }
        if let Some(window) = self.window {
            builder = builder.window(match window {
                WindowSettings::Count { size } => WindowKind::Count(size),
                WindowSettings::Time { length_ms, buckets } => WindowKind::Time {
                    length: Duration::from_millis(length_ms),
                    buckets,
                },
            });
        }
        if let Some(slow) = self.slow_call {
            builder = builder.slow_calls(Duration::from_millis(slow.threshold_ms), slow.rate);
        }
        if let Some(open) = self.open {
            builder = builder.open_duration(match open {
                OpenSettings::Fixed { ms } => OpenDuration::Fixed(Duration::from_millis(ms)),
                OpenSettings::Exponential {
                    initial_ms,
                    multiplier,
                    max_ms,
                    jitter,
                    reset_after_ms,
                } => OpenDuration::Exponential {
                    initial: Duration::from_millis(initial_ms),
                    multiplier,
                    max: Duration::from_millis(max_ms),
                    jitter,
                    reset_after: Duration::from_millis(reset_after_ms),
                },
            });
        }
        if let Some(probes) = self.half_open_probes {
            builder = builder.half_open_probes(probes);
        }
        if let Some(successes) = self.success_threshold {
            builder = builder.success_threshold(successes);
        }
        if let Some(wait) = self.half_open_max_wait_ms {
            builder = builder.half_open_max_wait(Duration::from_millis(wait));
        }
        if let Some(ramp) = self.recovery_ramp_ms {
            builder = builder.recovery_ramp(Duration::from_millis(ramp));
        }
        if let Some(admission) = self.admission {
            builder = builder.admission(match admission {
                AdmissionSetting::FailFast => Admission::FailFast,
                AdmissionSetting::Readiness => Admission::Readiness,
            });
        }
        builder
    }

    /// Checks the settings and builds the layer.
    pub fn into_layer(&self) -> Result<CircuitBreakerLayer, ConfigError> {
        self.builder().build()
    }
}

#[cfg(all(test, not(bulwark_loom)))]
mod tests {
    use super::*;

    #[test]
    fn an_empty_config_is_the_default_breaker() {
        let config: BreakerConfig = serde_json::from_str("{}").unwrap();
        assert!(config.into_layer().is_ok());
    }

    #[test]
    fn unknown_fields_and_bad_values_are_errors_naming_the_field() {
        assert!(serde_json::from_str::<BreakerConfig>(r#"{"failure_rat": 0.5}"#).is_err());
        assert!(
            serde_json::from_str::<BreakerConfig>(r#"{"window": {"kind": "sliding"}}"#).is_err()
        );
        let config: BreakerConfig = serde_json::from_str(r#"{"failure_rate": 1.5}"#).unwrap();
        assert_eq!(config.into_layer().unwrap_err().field(), "failure_rate");
        let config: BreakerConfig =
            serde_json::from_str(r#"{"window": {"kind": "count", "size": 0}}"#).unwrap();
        assert_eq!(config.into_layer().unwrap_err().field(), "window");
        let config: BreakerConfig =
            serde_json::from_str(r#"{"open": {"kind": "fixed", "ms": 0}}"#).unwrap();
        assert_eq!(config.into_layer().unwrap_err().field(), "open_duration");
        let config: BreakerConfig =
            serde_json::from_str(r#"{"half_open_max_wait_ms": 0}"#).unwrap();
        assert_eq!(
            config.into_layer().unwrap_err().field(),
            "half_open_max_wait"
        );
    }

    #[test]
    fn the_half_open_maximum_wait_is_read_in_milliseconds() {
        let config: BreakerConfig =
            serde_json::from_str(r#"{"half_open_max_wait_ms": 1500}"#).unwrap();
        assert_eq!(config.half_open_max_wait_ms, Some(1500));
        let (config, ..) = config.builder().into_parts().unwrap();
        assert_eq!(config.half_open_max_wait, Duration::from_millis(1500));
        let empty: BreakerConfig = serde_json::from_str("{}").unwrap();
        let (default, ..) = empty.builder().into_parts().unwrap();
        assert_eq!(default.half_open_max_wait, Duration::from_secs(60));
    }
}
