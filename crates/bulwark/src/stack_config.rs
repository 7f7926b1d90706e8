//! [`StackConfig`]: the settings of whole stacks as data (feature `serde`), so operators
//! tune them without recompiling.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Deserialize;
use tower_bulwark_core::{ConfigError, HttpClassifier};

use crate::breaker::BreakerConfig;
use crate::bulkhead::BulkheadConfig;
use crate::deadline::{AcceptDeadlineLayer, PropagateDeadlineLayer, TimeoutLayer};
use crate::presets::{ClientPreset, ServerPreset};
use crate::retry::{Backoff, HttpRetry, Jitter, RatioBudget, RetryPolicy, SkipRejections};
use crate::shed::{FromRequest, ShedConfig};

/// A server stack and any number of named client stacks, from TOML, JSON or YAML, built on
/// the presets ([`ServerPreset::http`], [`ClientPreset::http`]: their docs list the
/// defaults). Every field is optional: what is missing keeps the preset's default, also
/// inside a section given in part (a `bulkhead` with only `max_queue` keeps 100 calls in
/// flight; a `shed` without `algorithm` keeps `MinRtt`). A section replaces its layer,
/// with its own listeners (none). Unknown fields are an error; durations are in
/// milliseconds. The presets built register with a health registry as the presets do
/// (`register`), a configured retry budget included.
///
/// ```
/// use tower_bulwark::StackConfig;
///
/// let config: StackConfig = serde_json::from_str(r#"{
///     "server": {
///         "deadline": { "max_ms": 5000, "default_ms": 2000 },
///         "shed": { "algorithm": { "kind": "aimd", "timeout_ms": 40 } }
///     },
///     "clients": {
///         "inventory": {
///             "retry": { "max_attempts": 2, "budget_ratio": 0.1 },
///             "breaker": { "consecutive_failures": 3 },
///             "bulkhead": { "max_concurrent": 20 },
///             "attempt_timeout_ms": 300
///         }
///     }
/// }"#).unwrap();
/// let server = config.http_server().expect("valid settings");
/// let inventory = config.http_client("inventory").expect("valid settings");
/// # let _ = (server.layer(), inventory.layer());
/// ```
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct StackConfig {
    /// The server stack.
    pub server: Option<ServerSettings>,
    /// Client stacks by name.
    #[serde(default)]
    pub clients: BTreeMap<String, ClientSettings>,
}

/// A server stack's settings.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct ServerSettings {
    /// Deadline acceptance.
    pub deadline: Option<AcceptSettings>,
    /// Load shedding.
    pub shed: Option<ShedConfig>,
}

/// Deadline acceptance settings.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct AcceptSettings {
    /// The longest deadline granted.
    pub max_ms: Option<u64>,
    /// The deadline of a request that brings none.
    pub default_ms: Option<u64>,
    /// How long before the caller's deadline the handler stops.
    pub headroom_ms: Option<u64>,
}

/// A client stack's settings.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct ClientSettings {
    /// Retries.
    pub retry: Option<RetrySettings>,
    /// Deadline propagation.
    pub deadline: Option<PropagateSettings>,
    /// The circuit breaker.
    pub breaker: Option<BreakerConfig>,
    /// The bulkhead.
    pub bulkhead: Option<BulkheadConfig>,
    /// The timeout of each attempt.
    pub attempt_timeout_ms: Option<u64>,
}

/// Retry settings.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct RetrySettings {
    /// Attempts per call, the first included.
    pub max_attempts: Option<u32>,
    /// Retries allowed per request (budget ratio).
    pub budget_ratio: Option<f64>,
    /// Retries always allowed per second.
    pub budget_min_per_sec: Option<u32>,
    /// The first backoff (exponential, doubling, full jitter).
    pub initial_backoff_ms: Option<u64>,
    /// The longest wait between attempts.
    pub max_backoff_ms: Option<u64>,
}

/// Deadline propagation settings.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct PropagateSettings {
    /// The fraction of the time left passed on.
    pub keep: Option<f64>,
    /// A fixed amount taken off.
    pub margin_ms: Option<u64>,
    /// The least time worth sending a call with.
    pub min_budget_ms: Option<u64>,
    /// The deadline of a call made with none.
    pub default_ms: Option<u64>,
}

fn ms(value: u64) -> Duration {
    Duration::from_millis(value)
}

impl StackConfig {
    /// The HTTP server preset with these settings (the defaults if there is no `server`).
    pub fn http_server(&self) -> Result<ServerPreset<HttpClassifier>, ConfigError> {
        let mut preset = ServerPreset::http()?;
        let Some(server) = &self.server else {
            return Ok(preset);
        };
        if let Some(deadline) = &server.deadline {
            let mut builder = AcceptDeadlineLayer::builder()
                .max(ms(deadline.max_ms.unwrap_or(30_000)))
                .default_timeout(ms(deadline.default_ms.unwrap_or(10_000)));
            if let Some(headroom) = deadline.headroom_ms {
                builder = builder.headroom(ms(headroom));
            }
            preset.deadline = builder.build()?;
        }
        if let Some(shed) = &server.shed {
            preset.shed = shed
                .builder()?
                .name(shed.name.clone().unwrap_or_else(|| "server".to_string()))
                .criticality(FromRequest::default())
                .classify(HttpClassifier)
                .build()?;
        }
        Ok(preset)
    }

    /// The HTTP client preset named `name`, with its settings (the defaults if it is not
    /// configured).
    pub fn http_client(
        &self,
        name: &'static str,
    ) -> Result<ClientPreset<HttpRetry, HttpClassifier>, ConfigError> {
        let mut preset = ClientPreset::http(name)?;
        let Some(client) = self.clients.get(name) else {
            return Ok(preset);
        };
        if let Some(retry) = &client.retry {
            let budget = std::sync::Arc::new(RatioBudget::new(
                Duration::from_secs(10),
                retry.budget_min_per_sec.unwrap_or(10),
                retry.budget_ratio.unwrap_or(0.2),
            )?);
            preset.retry = RetryPolicy::builder()
                .max_attempts(retry.max_attempts.unwrap_or(3))
                .backoff(
                    Backoff::Exponential {
                        initial: ms(retry.initial_backoff_ms.unwrap_or(50)),
                        multiplier: 2.0,
                    },
                    Jitter::Full,
                )
                .max_wait(ms(retry.max_backoff_ms.unwrap_or(5_000)))
                .budget(budget.clone())
                .classify(SkipRejections(HttpRetry::default()))
                .build()?;
            // What `register` shows is the budget the policy draws from.
            preset.budget = budget;
        }
        if let Some(deadline) = &client.deadline {
            let mut builder = PropagateDeadlineLayer::builder()
                .keep(deadline.keep.unwrap_or(0.95))
                .margin(ms(deadline.margin_ms.unwrap_or(0)))
                .min_budget(ms(deadline.min_budget_ms.unwrap_or(1)));
            if let Some(default) = deadline.default_ms {
                builder = builder.default_timeout(ms(default));
            }
            preset.deadline = builder.build()?;
        }
        if let Some(breaker) = &client.breaker {
            let mut builder = breaker.builder();
            if breaker.name.is_none() {
                builder = builder.name(name);
            }
            preset.breaker = builder.classifier(HttpClassifier).build()?;
        }
        if let Some(bulkhead) = &client.bulkhead {
            let mut builder = bulkhead.builder();
            if bulkhead.name.is_none() {
                builder = builder.name(name);
            }
            if bulkhead.max_concurrent.is_none() {
                // The preset's, not the bulkhead's own default (25).
                builder = builder.max_concurrent(crate::presets::CLIENT_MAX_CONCURRENT);
            }
            preset.bulkhead = builder.build()?;
        }
        if let Some(timeout) = client.attempt_timeout_ms {
            preset.timeout = TimeoutLayer::new(ms(timeout))?;
        }
        Ok(preset)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_settings_name_their_field() {
        let error = |json: &str| {
            let config: StackConfig = serde_json::from_str(json).unwrap();
            match config.http_server() {
                Err(error) => error.field().to_string(),
                Ok(_) => config
                    .http_client("x")
                    .err()
                    .map(|e| e.field().to_string())
                    .unwrap_or_default(),
            }
        };
        assert_eq!(error(r#"{"server":{"deadline":{"max_ms":0}}}"#), "max");
        assert_eq!(
            error(r#"{"clients":{"x":{"retry":{"budget_ratio":-1}}}}"#),
            "retry_ratio"
        );
        assert_eq!(
            error(r#"{"clients":{"x":{"attempt_timeout_ms":0}}}"#),
            "timeout"
        );
        assert_eq!(
            error(r#"{"clients":{"x":{"deadline":{"keep":2}}}}"#),
            "keep"
        );
        assert!(serde_json::from_str::<StackConfig>(r#"{"servers":{}}"#).is_err());
    }

    /// A section given in part keeps the preset's defaults for the rest, not the layer's
    /// own (a bulkhead alone allows 25 calls in flight).
    #[tokio::test(start_paused = true)]
    async fn a_partial_section_keeps_the_presets_other_defaults() {
        use tower::{Layer, ServiceExt};

        let config: StackConfig = serde_json::from_str(
            r#"{
                "server": { "shed": { "name": "edge" } },
                "clients": { "x": { "bulkhead": { "max_queue": 5 } } }
            }"#,
        )
        .unwrap();
        let bulkhead = config.http_client("x").unwrap().bulkhead.handle();
        let snapshot = bulkhead.snapshot();
        assert_eq!((snapshot.max_concurrent, snapshot.max_queue), (100, 5));

        let shed = config.http_server().unwrap().shed;
        let answer = tower::service_fn(|_: http::Request<()>| async {
            Ok::<_, std::convert::Infallible>(http::Response::new(()))
        });
        let service = shed.layer(answer);
        for _ in 0..10 {
            tokio::time::advance(std::time::Duration::from_millis(10)).await;
            service
                .clone()
                .oneshot(http::Request::new(()))
                .await
                .unwrap();
        }
        // The preset's MinRtt learns a window (10 calls over 50 ms or more) and lets an
        // idle limit drift down towards twice the calls in use: 20 x 0.9. (Vegas and
        // Gradient2 would keep 20.)
        assert_eq!(shed.handle().snapshot().limit, 18);
    }

    #[test]
    fn missing_parts_keep_the_defaults() {
        let config: StackConfig = serde_json::from_str("{}").unwrap();
        assert!(config.http_server().is_ok());
        assert!(config.http_client("anything").is_ok());
    }
}
