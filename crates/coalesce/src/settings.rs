//! [`CoalesceConfig`]: the layer's settings as data, for configuration files (feature
//! `serde`).

use http::HeaderName;
use serde::Deserialize;
use tower_bulwark_core::ConfigError;

use crate::{CoalesceBuilder, CoalesceLayer};

/// A coalescing layer's settings as plain data, deserializable from TOML, JSON or YAML.
/// Missing fields take the builder's defaults; unknown fields are an error. A key
/// function is code, so it is set on the [`builder`](Self::builder).
///
/// ```
/// use tower_bulwark_coalesce::CoalesceConfig;
///
/// let config: CoalesceConfig = serde_json::from_str(r#"{
///     "name": "catalog",
///     "max_keys": 1000,
///     "max_waiters": 500,
///     "max_body_bytes": 65536,
///     "user_headers": ["authorization", "x-tenant"]
/// }"#).unwrap();
/// let layer = config.into_layer().expect("valid settings");
/// assert_eq!(layer.handle().snapshot().max_waiters, 500);
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct CoalesceConfig {
    /// The layer's name.
    pub name: Option<String>,
    /// Calls in flight at once (one per key).
    pub max_keys: Option<usize>,
    /// Callers that may join one call.
    pub max_waiters: Option<usize>,
    /// The largest body shared, in bytes.
    pub max_body_bytes: Option<usize>,
    /// The headers whose values are part of every key; `[]` for none. Default
    /// `["authorization", "cookie"]`.
    pub user_headers: Option<Vec<String>>,
    /// The headers the answer varies by, part of every key; `[]` for none. Default
    /// `["accept", "accept-encoding", "accept-language"]`.
    pub vary_headers: Option<Vec<String>>,
}

impl CoalesceConfig {
    /// A builder with these settings, for adding a key function or listeners. A header
    /// name that is not valid is an error naming `user_headers`.
    pub fn builder(&self) -> Result<CoalesceBuilder, ConfigError> {
        let mut builder = CoalesceLayer::builder();
        if let Some(name) = &self.name {
            builder = builder.name(name.clone());
        }
        if let Some(n) = self.max_keys {
            builder = builder.max_keys(n);
        }
        if let Some(n) = self.max_waiters {
            builder = builder.max_waiters(n);
        }
        if let Some(n) = self.max_body_bytes {
            builder = builder.max_body_bytes(n);
        }
        if let Some(names) = &self.user_headers {
            builder = builder.user_headers(header_names("user_headers", names)?);
        }
        if let Some(names) = &self.vary_headers {
            builder = builder.vary_headers(header_names("vary_headers", names)?);
        }
        Ok(builder)
    }

    /// Checks the settings and builds the layer.
    pub fn into_layer(&self) -> Result<CoalesceLayer, ConfigError> {
        self.builder()?.build()
    }
}

/// Header names from strings, a bad one an error naming `field`.
fn header_names(field: &'static str, names: &[String]) -> Result<Vec<HeaderName>, ConfigError> {
    names
        .iter()
        .map(|name| {
            HeaderName::from_bytes(name.as_bytes()).map_err(|_| {
                ConfigError::new(field, format!("`{name}` is not a valid header name"))
            })
        })
        .collect()
}

#[cfg(all(test, not(bulwark_loom)))]
mod tests {
    use super::*;

    #[test]
    fn empty_is_default_and_bad_values_name_their_field() {
        let config: CoalesceConfig = serde_json::from_str("{}").unwrap();
        let snapshot = config.into_layer().unwrap().handle().snapshot();
        assert_eq!(snapshot.max_keys, crate::DEFAULT_MAX_KEYS);
        assert_eq!(snapshot.max_body_bytes, crate::DEFAULT_MAX_BODY_BYTES);
        assert!(serde_json::from_str::<CoalesceConfig>(r#"{"max_key": 1}"#).is_err());
        assert!(serde_json::from_str::<CoalesceConfig>(r#"{"max_keys": -1}"#).is_err());
        for field in ["max_keys", "max_waiters", "max_body_bytes"] {
            let config: CoalesceConfig =
                serde_json::from_str(&format!(r#"{{"{field}": 0}}"#)).unwrap();
            assert_eq!(config.into_layer().unwrap_err().field(), field);
        }
        let config: CoalesceConfig =
            serde_json::from_str(r#"{"user_headers": ["bad header"]}"#).unwrap();
        assert_eq!(config.into_layer().unwrap_err().field(), "user_headers");
        let config: CoalesceConfig = serde_json::from_str(r#"{"user_headers": []}"#).unwrap();
        assert!(config.into_layer().is_ok());
        for bad in [r#"["bad header"]"#, r#"["origin", "Origin"]"#] {
            let config: CoalesceConfig =
                serde_json::from_str(&format!(r#"{{"vary_headers": {bad}}}"#)).unwrap();
            assert_eq!(config.into_layer().unwrap_err().field(), "vary_headers");
        }
        let config: CoalesceConfig =
            serde_json::from_str(r#"{"vary_headers": ["origin"]}"#).unwrap();
        assert!(config.into_layer().is_ok());
    }
}
