//! [`ShedConfig`]: the shedding layer's settings as data, for configuration files (feature
//! `serde`).

use std::time::Duration;

use serde::Deserialize;
use tower_bulwark_core::ConfigError;

use crate::{
    Aimd, AimdBuilder, Builder, Fixed, Gradient2, Gradient2Builder, MinRtt, MinRttBuilder,
    ShedLayer, TierShares, Vegas, WindowSize,
};

/// A shedding layer's settings as plain data, deserializable from TOML, JSON or YAML.
/// Missing fields take the builder's defaults (an algorithm's missing fields take
/// Netflix's); unknown fields are an error. Durations are in milliseconds.
///
/// ```
/// use tower_bulwark_shed::ShedConfig;
///
/// let config: ShedConfig = serde_json::from_str(r#"{
///     "name": "api",
///     "algorithm": { "kind": "gradient2", "max": 500 },
///     "tiers": { "sheddable": 0.4 },
///     "retry_after_ms": 2000,
///     "shadow": true
/// }"#).unwrap();
/// let layer = config.into_layer().expect("valid settings");
/// assert_eq!(layer.handle().snapshot().limit, 20);
/// ```
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct ShedConfig {
    /// The layer's name.
    pub name: Option<String>,
    /// The limit algorithm and its settings.
    pub algorithm: Option<AlgorithmSetting>,
    /// Caps on each tier's share of the limit.
    pub tiers: Option<TierShares>,
    /// The least number of calls in a learning window (default 10).
    pub window_min_calls: Option<usize>,
    /// The shortest learning window, in milliseconds (default 50).
    pub window_min_ms: Option<u64>,
    /// The pushback given with a shed, in milliseconds (0: none).
    pub retry_after_ms: Option<u64>,
    /// Shadow mode.
    pub shadow: Option<bool>,
}

/// A limit algorithm and its settings; see [`MinRtt`], [`Vegas`], [`Aimd`], [`Gradient2`],
/// [`Fixed`].
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
#[allow(missing_docs)]
#[non_exhaustive]
pub enum AlgorithmSetting {
    MinRtt {
        initial: Option<usize>,
        min: Option<usize>,
        max: Option<usize>,
        buffer: Option<f64>,
        probe_every: Option<u32>,
    },
    Vegas {
        initial: Option<usize>,
        max: Option<usize>,
        smoothing: Option<f64>,
    },
    Aimd {
        initial: Option<usize>,
        min: Option<usize>,
        max: Option<usize>,
        backoff_ratio: Option<f64>,
        timeout_ms: Option<u64>,
    },
    Gradient2 {
        initial: Option<usize>,
        min: Option<usize>,
        max: Option<usize>,
        smoothing: Option<f64>,
        queue_size: Option<usize>,
        rtt_tolerance: Option<f64>,
        long_window: Option<usize>,
    },
    Fixed {
        limit: usize,
    },
}

/// `builder` with `set` applied to the value given, if any.
fn given<B, T>(builder: B, value: Option<T>, set: fn(B, T) -> B) -> B {
    match value {
        Some(value) => set(builder, value),
        None => builder,
    }
}

impl ShedConfig {
    /// A builder with these settings (for adding listeners, a criticality source or a
    /// classifier), or the error of an algorithm setting.
    pub fn builder(&self) -> Result<Builder, ConfigError> {
        let mut builder = ShedLayer::builder();
        if let Some(name) = &self.name {
            builder = builder.name(name.clone());
        }
        builder = match &self.algorithm {
            None => builder,
            Some(AlgorithmSetting::MinRtt {
                initial,
                min,
                max,
                buffer,
                probe_every,
            }) => {
                let algorithm = MinRtt::builder();
                let algorithm = given(algorithm, *initial, MinRttBuilder::initial);
                let algorithm = given(algorithm, *min, MinRttBuilder::min);
                let algorithm = given(algorithm, *max, MinRttBuilder::max);
                let algorithm = given(algorithm, *buffer, MinRttBuilder::buffer);
                let algorithm = given(algorithm, *probe_every, MinRttBuilder::probe_every);
                builder.algorithm(algorithm.build()?)
            }
            Some(AlgorithmSetting::Vegas {
                initial,
                max,
                smoothing,
            }) => builder.algorithm(Vegas::new(
                initial.unwrap_or(20),
                max.unwrap_or(1000),
                smoothing.unwrap_or(1.0),
            )?),
            Some(AlgorithmSetting::Aimd {
                initial,
                min,
                max,
                backoff_ratio,
                timeout_ms,
            }) => {
                let algorithm = Aimd::builder();
                let algorithm = given(algorithm, *initial, AimdBuilder::initial);
                let algorithm = given(algorithm, *min, AimdBuilder::min);
                let algorithm = given(algorithm, *max, AimdBuilder::max);
                let algorithm = given(algorithm, *backoff_ratio, AimdBuilder::backoff_ratio);
                let timeout = timeout_ms.map(Duration::from_millis);
                let algorithm = given(algorithm, timeout, AimdBuilder::timeout);
                builder.algorithm(algorithm.build()?)
            }
            Some(AlgorithmSetting::Gradient2 {
                initial,
                min,
                max,
                smoothing,
                queue_size,
                rtt_tolerance,
                long_window,
            }) => {
                let algorithm = Gradient2::builder();
                let algorithm = given(algorithm, *initial, Gradient2Builder::initial);
                let algorithm = given(algorithm, *min, Gradient2Builder::min);
                let algorithm = given(algorithm, *max, Gradient2Builder::max);
                let algorithm = given(algorithm, *smoothing, Gradient2Builder::smoothing);
                let algorithm = given(algorithm, *queue_size, Gradient2Builder::queue_size);
                let algorithm = given(algorithm, *rtt_tolerance, Gradient2Builder::rtt_tolerance);
                let algorithm = given(algorithm, *long_window, Gradient2Builder::long_window);
                builder.algorithm(algorithm.build()?)
            }
            Some(AlgorithmSetting::Fixed { limit }) => builder.fixed(Fixed::new(*limit)?),
        };
        if let Some(tiers) = self.tiers {
            builder = builder.tiers(tiers);
        }
        if self.window_min_calls.is_some() || self.window_min_ms.is_some() {
            let default = WindowSize::default();
            builder = builder.window(WindowSize::new(
                self.window_min_calls.unwrap_or(default.min_calls()),
                self.window_min_ms
                    .map_or(default.min_time(), Duration::from_millis),
            )?);
        }
        if let Some(ms) = self.retry_after_ms {
            builder = builder.retry_after((ms > 0).then(|| Duration::from_millis(ms)));
        }
        if let Some(shadow) = self.shadow {
            builder = builder.shadow(shadow);
        }
        Ok(builder)
    }

    /// Checks the settings and builds the layer.
    pub fn into_layer(&self) -> Result<ShedLayer, ConfigError> {
        self.builder()?.build()
    }
}

#[cfg(all(test, not(bulwark_loom)))]
mod tests {
    use super::*;

    /// The pushback of a call shed by a layer built from `json`, its one place held.
    async fn pushback(json: &str) -> Option<Duration> {
        use tower::{Layer, Service, ServiceExt};
        use tower_bulwark_core::find_rejection;
        use tower_bulwark_core::testing::controlled;

        let config: ShedConfig = serde_json::from_str(json).unwrap();
        let layer = config.into_layer().unwrap();
        let (inner, control) = controlled::<u32>();
        control.hang();
        let mut service = layer.layer(inner);
        let _held = service.ready().await.unwrap().call(1);
        let error = service.ready().await.unwrap().call(2).await.unwrap_err();
        find_rejection(&error).unwrap().retry_after()
    }

    #[tokio::test(start_paused = true)]
    async fn retry_after_ms_sets_the_pushback_and_zero_means_none() {
        let fixed = r#""algorithm": {"kind": "fixed", "limit": 1}"#;
        assert_eq!(
            pushback(&format!("{{{fixed}}}")).await,
            Some(Duration::from_secs(1)),
            "the default"
        );
        assert_eq!(
            pushback(&format!(r#"{{{fixed}, "retry_after_ms": 2500}}"#)).await,
            Some(Duration::from_millis(2500))
        );
        assert_eq!(
            pushback(&format!(r#"{{{fixed}, "retry_after_ms": 0}}"#)).await,
            None
        );
    }

    #[test]
    fn bad_settings_name_their_field() {
        let error = |json: &str| {
            serde_json::from_str::<ShedConfig>(json)
                .unwrap()
                .into_layer()
                .unwrap_err()
                .field()
        };
        assert_eq!(
            error(r#"{"algorithm": {"kind": "fixed", "limit": 0}}"#),
            "limit"
        );
        assert_eq!(
            error(r#"{"algorithm": {"kind": "aimd", "min": 50, "max": 10}}"#),
            "max"
        );
        assert_eq!(
            error(r#"{"algorithm": {"kind": "vegas", "smoothing": 2.0}}"#),
            "smoothing"
        );
        assert_eq!(
            error(r#"{"algorithm": {"kind": "min_rtt", "buffer": 0.0}}"#),
            "buffer"
        );
        assert_eq!(error(r#"{"window_min_calls": 0}"#), "window.min_calls");
        assert_eq!(
            error(r#"{"window_min_ms": 18446744073709551615}"#),
            "window.min_time"
        );
        let high_floor = r#"{"algorithm": {"kind": "min_rtt", "min": 50}}"#;
        let layer = serde_json::from_str::<ShedConfig>(high_floor)
            .unwrap()
            .into_layer();
        assert_eq!(
            layer.unwrap().handle().snapshot().limit,
            50,
            "initial moved to min"
        );
        assert_eq!(
            error(r#"{"tiers": {"sheddable": 0.95, "sheddable_plus": 0.5}}"#),
            "tiers.sheddable_plus"
        );
        assert!(serde_json::from_str::<ShedConfig>(r#"{"algorithm": {"kind": "magic"}}"#).is_err());
        assert!(serde_json::from_str::<ShedConfig>(r#"{"limit": 5}"#).is_err());
    }
}
