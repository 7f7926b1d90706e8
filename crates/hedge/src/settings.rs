//! [`HedgeConfig`]: the layer's settings as data, for configuration files (feature `serde`).

use std::time::Duration;

use serde::Deserialize;
use tower_bulwark_core::ConfigError;

use crate::{HedgeBuilder, HedgeLayer};

/// A hedge layer's settings as plain data, deserializable from TOML, JSON or YAML. Missing
/// fields take the builder's defaults; unknown fields are an error. Durations are in
/// milliseconds. An error names the file's key ([`ConfigError::path`]).
///
/// ```
/// use tower_bulwark_hedge::HedgeConfig;
///
/// let config: HedgeConfig = serde_json::from_str(r#"{
///     "name": "inventory",
///     "percentile": 0.95,
///     "delay_ms": 50,
///     "min_delay_ms": 2,
///     "max_delay_ms": 500,
///     "min_samples": 200,
///     "window_ms": 10000,
///     "max_hedges": 1,
///     "budget_ratio": 0.05,
///     "min_per_sec": 1,
///     "budget_window_ms": 10000,
///     "pause_ms": 1000,
///     "deadline_margin_ms": 5
/// }"#).unwrap();
/// let layer = config.into_layer().expect("valid settings");
/// assert_eq!(layer.handle().name(), "inventory");
/// ```
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct HedgeConfig {
    /// The layer's name.
    pub name: Option<String>,
    /// The fixed delay (or the warm-up delay of a learned one).
    pub delay_ms: Option<u64>,
    /// The percentile of a learned delay.
    pub percentile: Option<f64>,
    /// The floor of a learned delay.
    pub min_delay_ms: Option<u64>,
    /// The ceiling of a learned delay.
    pub max_delay_ms: Option<u64>,
    /// Latencies before a learned delay is trusted.
    pub min_samples: Option<u64>,
    /// The window of learned latencies.
    pub window_ms: Option<u64>,
    /// The most hedges per call.
    pub max_hedges: Option<u32>,
    /// The budget's share of calls.
    pub budget_ratio: Option<f64>,
    /// Hedges per second always allowed.
    pub min_per_sec: Option<u32>,
    /// The budget's window.
    pub budget_window_ms: Option<u64>,
    /// The pause after an overloaded answer without pushback.
    pub pause_ms: Option<u64>,
    /// The deadline margin.
    pub deadline_margin_ms: Option<u64>,
}

impl HedgeConfig {
    /// These settings on `builder` (which keeps its rules and listeners).
    pub fn apply<M, O>(&self, mut builder: HedgeBuilder<M, O>) -> HedgeBuilder<M, O> {
        let ms = Duration::from_millis;
        if let Some(name) = &self.name {
            builder = builder.name(name.clone());
        }
        if let Some(v) = self.delay_ms {
            builder = builder.delay(ms(v));
        }
        if let Some(v) = self.percentile {
            builder = builder.percentile(v);
        }
        if let Some(v) = self.min_delay_ms {
            builder = builder.min_delay(ms(v));
        }
        if let Some(v) = self.max_delay_ms {
            builder = builder.max_delay(ms(v));
        }
        if let Some(v) = self.min_samples {
            builder = builder.min_samples(v);
        }
        if let Some(v) = self.window_ms {
            builder = builder.window(ms(v));
        }
        if let Some(v) = self.max_hedges {
            builder = builder.max_hedges(v);
        }
        if let Some(v) = self.budget_ratio {
            builder = builder.budget_ratio(v);
        }
        if let Some(v) = self.min_per_sec {
            builder = builder.min_per_sec(v);
        }
        if let Some(v) = self.budget_window_ms {
            builder = builder.budget_window(ms(v));
        }
        if let Some(v) = self.pause_ms {
            builder = builder.pause(ms(v));
        }
        if let Some(v) = self.deadline_margin_ms {
            builder = builder.deadline_margin(ms(v));
        }
        builder
    }

    /// The layer with the default rules (HTTP), or the setting that is wrong, named by its
    /// key in the file.
    pub fn into_layer(self) -> Result<HedgeLayer, ConfigError> {
        self.build(HedgeLayer::builder())
    }

    /// These settings on `builder`, built; an error names the file's key.
    pub fn build<M, O>(
        &self,
        builder: HedgeBuilder<M, O>,
    ) -> Result<HedgeLayer<M, O>, ConfigError> {
        self.apply(builder).build().map_err(|error| {
            let key = key_of(error.field());
            error.at(key)
        })
    }
}

/// The file's key of a builder field.
fn key_of(field: &'static str) -> &'static str {
    match field {
        "delay" => "delay_ms",
        "min_delay" => "min_delay_ms",
        "max_delay" => "max_delay_ms",
        "window" => "window_ms",
        "budget_window" => "budget_window_ms",
        "pause" => "pause_ms",
        "deadline_margin" => "deadline_margin_ms",
        other => other,
    }
}
