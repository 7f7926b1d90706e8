//! [`OutlierConfig`]: the detector's settings as data, for configuration files (feature
//! `serde`).

use std::time::Duration;

use serde::Deserialize;
use tower_bulwark_core::ConfigError;

use crate::{Builder, FailurePercentage, OutlierDetector, SlowEndpoint, SuccessRate};

/// A detector's settings as plain data, deserializable from TOML, JSON or YAML. Missing
/// fields take the builder's defaults; unknown fields are an error. Durations are in
/// milliseconds. `"success_rate": null` is not accepted: turn a rule off with
/// `"enabled": false`.
///
/// ```
/// use tower_bulwark_outlier::OutlierConfig;
///
/// let config: OutlierConfig = serde_json::from_str(r#"{
///     "name": "inventory",
///     "consecutive_failures": 5,
///     "consecutive_gateway_failures": 3,
///     "interval_ms": 10000,
///     "base_ejection_time_ms": 30000,
///     "max_ejection_time_ms": 300000,
///     "max_ejection_percent": 20,
///     "success_rate": { "minimum_hosts": 5, "request_volume": 100, "stdev_factor": 1.9 },
///     "failure_percentage": { "threshold": 0.85, "minimum_hosts": 5, "request_volume": 50 },
///     "slow_endpoint": { "minimum_hosts": 3, "request_volume": 50, "factor": 5.0,
///                        "minimum_excess_ms": 50 }
/// }"#).unwrap();
/// let detector = config.into_detector().expect("valid settings");
/// assert_eq!(detector.name(), "inventory");
/// ```
#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct OutlierConfig {
    /// The detector's name.
    pub name: Option<String>,
    /// Failures in a row that eject; `0` turns the rule off. Default 5.
    pub consecutive_failures: Option<u32>,
    /// Gateway failures in a row that eject; `0` (the default) turns the rule off.
    pub consecutive_gateway_failures: Option<u32>,
    /// How often the interval rules run, in milliseconds. Default 10 000.
    pub interval_ms: Option<u64>,
    /// The first ejection's length, in milliseconds. Default 30 000.
    pub base_ejection_time_ms: Option<u64>,
    /// The longest ejection, in milliseconds. Default 300 000.
    pub max_ejection_time_ms: Option<u64>,
    /// The largest share of endpoints ejected at once, in percent. Default 10.
    pub max_ejection_percent: Option<u32>,
    /// The success-rate rule (on by default).
    pub success_rate: Option<SuccessRateSettings>,
    /// The failure-percentage rule (off by default; given here, on unless `enabled` is
    /// false).
    pub failure_percentage: Option<FailurePercentageSettings>,
    /// The slow-endpoint rule (off by default; given here, on unless `enabled` is false).
    pub slow_endpoint: Option<SlowEndpointSettings>,
}

/// [`SuccessRate`] as data.
#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct SuccessRateSettings {
    /// Whether the rule runs. Default true.
    pub enabled: Option<bool>,
    /// Endpoints with enough calls the rule needs. Default 5.
    pub minimum_hosts: Option<usize>,
    /// Calls an endpoint needs in the interval. Default 100.
    pub request_volume: Option<u64>,
    /// Standard deviations below the mean. Default 1.9.
    pub stdev_factor: Option<f64>,
}

/// [`FailurePercentage`] as data.
#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct FailurePercentageSettings {
    /// Whether the rule runs. Default true when the section is given.
    pub enabled: Option<bool>,
    /// The share of failures (`0..=1`) that ejects. Default 0.85.
    pub threshold: Option<f64>,
    /// Endpoints with enough calls the rule needs. Default 5.
    pub minimum_hosts: Option<usize>,
    /// Calls an endpoint needs in the interval. Default 50.
    pub request_volume: Option<u64>,
}

/// [`SlowEndpoint`] as data.
#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct SlowEndpointSettings {
    /// Whether the rule runs. Default true when the section is given.
    pub enabled: Option<bool>,
    /// Endpoints with enough calls the rule needs. Default 3.
    pub minimum_hosts: Option<usize>,
    /// Answered calls an endpoint needs in the interval. Default 50.
    pub request_volume: Option<u64>,
    /// How many times the median an endpoint's mean latency must exceed (more than 1).
    /// Default 5.
    pub factor: Option<f64>,
    /// By how much, in milliseconds, an endpoint's mean must exceed the median at least.
    /// Default 50.
    pub minimum_excess_ms: Option<u64>,
}

impl OutlierConfig {
    /// The builder these settings describe (listeners and metrics can still be added).
    pub fn into_builder(self) -> Builder {
        let mut builder = OutlierDetector::builder();
        if let Some(name) = self.name {
            builder = builder.name(name);
        }
        if let Some(n) = self.consecutive_failures {
            builder = builder.consecutive_failures(n);
        }
        if let Some(n) = self.consecutive_gateway_failures {
            builder = builder.consecutive_gateway_failures(n);
        }
        if let Some(ms) = self.interval_ms {
            builder = builder.interval(Duration::from_millis(ms));
        }
        if let Some(ms) = self.base_ejection_time_ms {
            builder = builder.base_ejection_time(Duration::from_millis(ms));
        }
        if let Some(ms) = self.max_ejection_time_ms {
            builder = builder.max_ejection_time(Duration::from_millis(ms));
        }
        if let Some(percent) = self.max_ejection_percent {
            builder = builder.max_ejection_percent(percent);
        }
        if let Some(rule) = self.success_rate {
            if rule.enabled == Some(false) {
                builder = builder.no_success_rate();
            } else {
                let mut set = SuccessRate::new();
                if let Some(n) = rule.minimum_hosts {
                    set = set.minimum_hosts(n);
                }
                if let Some(n) = rule.request_volume {
                    set = set.request_volume(n);
                }
                if let Some(f) = rule.stdev_factor {
                    set = set.stdev_factor(f);
                }
                builder = builder.success_rate(set);
            }
        }
        if let Some(rule) = self.failure_percentage {
            if rule.enabled != Some(false) {
                let mut set = FailurePercentage::new();
                if let Some(t) = rule.threshold {
                    set = set.threshold(t);
                }
                if let Some(n) = rule.minimum_hosts {
                    set = set.minimum_hosts(n);
                }
                if let Some(n) = rule.request_volume {
                    set = set.request_volume(n);
                }
                builder = builder.failure_percentage(set);
            }
        }
        if let Some(rule) = self.slow_endpoint {
            if rule.enabled != Some(false) {
                let mut set = SlowEndpoint::new();
                if let Some(n) = rule.minimum_hosts {
                    set = set.minimum_hosts(n);
                }
                if let Some(n) = rule.request_volume {
                    set = set.request_volume(n);
                }
                if let Some(f) = rule.factor {
                    set = set.factor(f);
                }
                if let Some(ms) = rule.minimum_excess_ms {
                    set = set.minimum_excess(Duration::from_millis(ms));
                }
                builder = builder.slow_endpoint(set);
            }
        }
        builder
    }

    /// Checks the settings and builds the detector.
    pub fn into_detector(self) -> Result<OutlierDetector, ConfigError> {
        self.into_builder().build()
    }
}
