//! [`BulkheadConfig`]: the bulkhead's settings as data, for configuration files (feature
//! `serde`).

use std::time::Duration;

use serde::Deserialize;
use tower_bulwark_core::ConfigError;

use crate::{Admission, Builder, BulkheadLayer};

/// A bulkhead's settings as plain data, deserializable from TOML, JSON or YAML. Missing
/// fields take the builder's defaults; unknown fields are an error. Durations are in
/// milliseconds.
///
/// ```
/// use tower_bulwark_bulkhead::BulkheadConfig;
///
/// let config: BulkheadConfig = serde_json::from_str(r#"{
///     "name": "payments",
///     "max_concurrent": 10,
///     "max_queue": 20,
///     "max_wait_ms": 200,
///     "admission": "reject"
/// }"#).unwrap();
/// let layer = config.into_layer().expect("valid settings");
/// assert_eq!(layer.handle().snapshot().max_queue, 20);
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct BulkheadConfig {
    /// The bulkhead's name.
    pub name: Option<String>,
    /// Calls in flight at once.
    pub max_concurrent: Option<usize>,
    /// Calls that may wait.
    pub max_queue: Option<usize>,
    /// The longest wait, in milliseconds.
    pub max_wait_ms: Option<u64>,
    /// `"reject"` or `"backpressure"`.
    pub admission: Option<AdmissionSetting>,
}

/// See [`Admission`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
#[allow(missing_docs)]
pub enum AdmissionSetting {
    Reject,
    Backpressure,
}

impl BulkheadConfig {
    /// A builder with these settings, for adding listeners or a deadline source.
    pub fn builder(&self) -> Builder {
        let mut builder = BulkheadLayer::builder();
        if let Some(name) = &self.name {
            builder = builder.name(name.clone());
        }
        if let Some(n) = self.max_concurrent {
            builder = builder.max_concurrent(n);
        }
        if let Some(n) = self.max_queue {
            builder = builder.max_queue(n);
        }
        if let Some(ms) = self.max_wait_ms {
            builder = builder.max_wait(Duration::from_millis(ms));
        }
        if let Some(admission) = self.admission {
            builder = builder.admission(match admission {
                AdmissionSetting::Reject => Admission::Reject,
                AdmissionSetting::Backpressure => Admission::Backpressure,
            });
        }
        builder
    }

    /// Checks the settings and builds the layer.
    pub fn into_layer(&self) -> Result<BulkheadLayer, ConfigError> {
        self.builder().build()
    }
}

#[cfg(all(test, not(bulwark_loom)))]
mod tests {
    use super::*;

    #[test]
    fn empty_is_default_and_bad_values_name_their_field() {
        let config: BulkheadConfig = serde_json::from_str("{}").unwrap();
        assert!(config.into_layer().is_ok());
        assert!(serde_json::from_str::<BulkheadConfig>(r#"{"max_concurent": 1}"#).is_err());
        assert!(serde_json::from_str::<BulkheadConfig>(r#"{"admission": "queue"}"#).is_err());
        let config: BulkheadConfig = serde_json::from_str(r#"{"max_concurrent": 0}"#).unwrap();
        assert_eq!(config.into_layer().unwrap_err().field(), "max_concurrent");
        let config: BulkheadConfig =
            serde_json::from_str(r#"{"max_queue": 5, "max_wait_ms": 0}"#).unwrap();
        assert_eq!(config.into_layer().unwrap_err().field(), "max_wait");
    }
}
