//! [`StackConfig`]: the settings of whole stacks as data (feature `serde`), so operators
//! tune them without recompiling.

use std::collections::BTreeMap;
use std::time::Duration;

use std::sync::Arc;

use serde::Deserialize;
use tower_bulwark_core::{ConfigError, GrpcClassifier, HttpClassifier};

use crate::breaker::BreakerConfig;
use crate::bulkhead::BulkheadConfig;
use crate::deadline::TimeoutLayer;
use crate::presets::{
    ClientPreset, ServerPreset, BUDGET_MIN_PER_SEC, BUDGET_RATIO, BUDGET_WINDOW,
    CLIENT_MAX_CONCURRENT, SERVER_SHED_NAME,
};
use crate::retry::{Backoff, GrpcRetry, HttpRetry, Jitter, RatioBudget};
use crate::shed::{FromRequest, ShedConfig};

/// A server stack and any number of named client stacks, from TOML, JSON or YAML, built on
/// the presets, HTTP or gRPC ([`ServerPreset::http`], [`ClientPreset::http`] and their
/// gRPC twins: their docs list the defaults). Every field is optional: what is missing
/// keeps the preset's default (the same builders the presets start from, so there is one
/// copy of each default), also inside a section given in part (a `bulkhead` with only
/// `max_queue` keeps 100 calls in flight; a `shed` without `algorithm` keeps `MinRtt`). A
/// section replaces its layer, with its own listeners (none). Unknown fields are an error,
/// a value a builder refuses is a [`ConfigError`] whose [`path`](ConfigError::path) names
/// the file's key (`clients.inventory.retry.budget_ratio`), and
/// [`expect_clients`](Self::expect_clients) reports a client section no program part
/// builds (a misspelt name). `"metrics": true` makes every layer built record metrics
/// (feature `metrics`; without it, an error). Durations are in milliseconds. The presets built register
/// with a health registry as the presets do (`register`), a configured retry budget
/// included.
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
/// config.expect_clients(["inventory"]).expect("no misspelt client");
/// let server = config.http_server().expect("valid settings");
/// let inventory = config.http_client("inventory").expect("valid settings");
/// # let _ = (server.layer(), inventory.layer());
/// ```
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct StackConfig {
    /// Every layer built records metrics (feature `metrics`; the presets' `with_metrics`).
    #[serde(default)]
    pub metrics: bool,
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

/// The breaker builder's fields under the keys of its settings in the file.
const BREAKER_KEYS: &[(&str, &str)] = &[
    ("half_open_max_wait", "half_open_max_wait_ms"),
    ("recovery_ramp", "recovery_ramp_ms"),
    ("open_duration", "open.ms"),
    ("slow_call_threshold", "slow_call.threshold_ms"),
    ("slow_call_rate", "slow_call.rate"),
    ("window_buckets", "window.buckets"),
];

fn ms(value: u64) -> Duration {
    Duration::from_millis(value)
}

/// Places a builder's error at `section` of the file, naming the file's key for the
/// builder's field (`keys`: builder field → file key; a field not listed keeps its name,
/// as the settings types that mirror their builder do).
fn at<'a>(
    section: &'a str,
    keys: &'static [(&'static str, &'static str)],
) -> impl Fn(ConfigError) -> ConfigError + 'a {
    move |error| {
        let key = keys
            .iter()
            .find(|(field, _)| *field == error.field())
            .map_or(error.field(), |(_, key)| key);
        error.at(format!("{section}.{key}"))
    }
}

impl StackConfig {
    /// The HTTP server preset with these settings (the defaults if there is no `server`).
    /// An error names the file's key: `server.deadline.max_ms`.
    pub fn http_server(&self) -> Result<ServerPreset<HttpClassifier>, ConfigError> {
        self.server(ServerPreset::http()?, HttpClassifier)
    }

    /// The gRPC server preset with these settings (the same keys as
    /// [`http_server`](Self::http_server)).
    pub fn grpc_server(&self) -> Result<ServerPreset<GrpcClassifier>, ConfigError> {
        self.server(ServerPreset::grpc()?, GrpcClassifier)
    }

    /// The HTTP client preset named `name`, with its settings (the defaults if it is not
    /// configured). An error names the file's key: `clients.inventory.retry.budget_ratio`.
    pub fn http_client(
        &self,
        name: &str,
    ) -> Result<ClientPreset<HttpRetry, HttpClassifier>, ConfigError> {
        let preset = ClientPreset::http(name.to_string())?;
        self.client(name, preset, HttpRetry::default(), HttpClassifier)
    }

    /// The gRPC client preset named `name`, with its settings (the same keys as
    /// [`http_client`](Self::http_client)); `retry` marks the methods that may be retried,
    /// as for [`ClientPreset::grpc_with`].
    pub fn grpc_client(
        &self,
        name: &str,
        retry: GrpcRetry,
    ) -> Result<ClientPreset<GrpcRetry, GrpcClassifier>, ConfigError> {
        let preset = ClientPreset::grpc_with(name.to_string(), retry.clone())?;
        self.client(name, preset, retry, GrpcClassifier)
    }

    /// Checks that every client section of the file is one the program builds: a section
    /// under a misspelt name would otherwise be ignored, its client left at the defaults.
    /// The error names the first unknown section (`clients.inventroy`).
    ///
    /// ```
    /// use tower_bulwark::StackConfig;
    ///
    /// let config: StackConfig =
    ///     serde_json::from_str(r#"{"clients": {"inventroy": {"attempt_timeout_ms": 300}}}"#).unwrap();
    /// let error = config.expect_clients(["inventory", "payments"]).unwrap_err();
    /// assert_eq!(error.path(), Some("clients.inventroy"));
    /// ```
    pub fn expect_clients<'a>(
        &self,
        names: impl IntoIterator<Item = &'a str>,
    ) -> Result<(), ConfigError> {
        let known: Vec<&str> = names.into_iter().collect();
        match self
            .clients
            .keys()
            .find(|name| !known.contains(&name.as_str()))
        {
            None => Ok(()),
            Some(unknown) => Err(ConfigError::new(
                "clients",
                format!(
                    "no client of this name is built (the clients are: {})",
                    known.join(", ")
                ),
            )
            .at(format!("clients.{unknown}"))),
        }
    }

    /// Refuses `metrics: true` without the `metrics` feature, which would record nothing.
    fn check_metrics(&self) -> Result<(), ConfigError> {
        if self.metrics && !cfg!(feature = "metrics") {
            return Err(ConfigError::new(
                "metrics",
                "needs the `metrics` feature of tower-bulwark",
            )
            .at("metrics"));
        }
        Ok(())
    }

    fn server<C: Clone>(
        &self,
        preset: ServerPreset<C>,
        classify: C,
    ) -> Result<ServerPreset<C>, ConfigError> {
        self.check_metrics()?;
        #[cfg(feature = "metrics")]
        let preset = if self.metrics {
            preset.with_metrics()?
        } else {
            preset
        };
        let mut preset = preset;
        let Some(server) = &self.server else {
            return Ok(preset);
        };
        preset.configured = server.deadline.is_some() || server.shed.is_some();
        if let Some(deadline) = &server.deadline {
            let mut builder = ServerPreset::deadline_builder();
            #[cfg(feature = "metrics")]
            if self.metrics {
                builder = builder.with_metrics();
            }
            if let Some(max) = deadline.max_ms {
                builder = builder.max(ms(max));
            }
            if let Some(default) = deadline.default_ms {
                builder = builder.default_timeout(ms(default));
            }
            if let Some(headroom) = deadline.headroom_ms {
                builder = builder.headroom(ms(headroom));
            }
            const KEYS: &[(&str, &str)] = &[
                ("max", "max_ms"),
                ("default_timeout", "default_ms"),
                ("headroom", "headroom_ms"),
            ];
            preset.deadline = builder.build().map_err(at("server.deadline", KEYS))?;
        }
        if let Some(shed) = &server.shed {
            const KEYS: &[(&str, &str)] = &[
                ("limit", "algorithm.limit"),
                ("initial", "algorithm.initial"),
                ("min", "algorithm.min"),
                ("max", "algorithm.max"),
                ("timeout", "algorithm.timeout_ms"),
                ("buffer", "algorithm.buffer"),
                ("probe_every", "algorithm.probe_every"),
                ("backoff_ratio", "algorithm.backoff_ratio"),
                ("smoothing", "algorithm.smoothing"),
                ("queue_size", "algorithm.queue_size"),
                ("rtt_tolerance", "algorithm.rtt_tolerance"),
                ("long_window", "algorithm.long_window"),
                ("window.min_calls", "window_min_calls"),
                ("window.min_time", "window_min_ms"),
            ];
            let section = at("server.shed", KEYS);
            let builder = shed
                .builder()
                .map_err(&section)?
                .name(
                    shed.name
                        .clone()
                        .unwrap_or_else(|| SERVER_SHED_NAME.to_string()),
                )
                .criticality(FromRequest::default())
                .classify(classify);
            #[cfg(feature = "metrics")]
            let builder = if self.metrics {
                builder.with_metrics()
            } else {
                builder
            };
            preset.shed = builder.build().map_err(&section)?;
        }
        Ok(preset)
    }

    fn client<R: Clone, C: Clone>(
        &self,
        name: &str,
        preset: ClientPreset<R, C>,
        retry_classifier: R,
        classify: C,
    ) -> Result<ClientPreset<R, C>, ConfigError> {
        self.check_metrics()?;
        #[cfg(feature = "metrics")]
        let preset = if self.metrics {
            preset.with_metrics()?
        } else {
            preset
        };
        let mut preset = preset;
        let Some(client) = self.clients.get(name) else {
            return Ok(preset);
        };
        preset.configured = true;
        let section = |part: &str| format!("clients.{name}.{part}");
        if let Some(retry) = &client.retry {
            let place = section("retry");
            const BUDGET_KEYS: &[(&str, &str)] = &[
                ("retry_ratio", "budget_ratio"),
                ("min_per_sec", "budget_min_per_sec"),
            ];
            let budget = RatioBudget::new(
                BUDGET_WINDOW,
                retry.budget_min_per_sec.unwrap_or(BUDGET_MIN_PER_SEC),
                retry.budget_ratio.unwrap_or(BUDGET_RATIO),
            )
            .map(Arc::new)
            .map_err(at(&place, BUDGET_KEYS))?;
            let mut builder = ClientPreset::retry_builder(budget.clone(), retry_classifier);
            if let Some(attempts) = retry.max_attempts {
                builder = builder.max_attempts(attempts);
            }
            if let Some(initial) = retry.initial_backoff_ms {
                let doubling = Backoff::Exponential {
                    initial: ms(initial),
                    multiplier: 2.0,
                };
                builder = builder.backoff(doubling, Jitter::Full);
            }
            if let Some(max) = retry.max_backoff_ms {
                builder = builder.max_wait(ms(max));
            }
            #[cfg(feature = "metrics")]
            if self.metrics {
                builder = builder.with_metrics();
            }
            const KEYS: &[(&str, &str)] = &[
                ("backoff", "initial_backoff_ms"),
                ("max_wait", "max_backoff_ms"),
            ];
            preset.retry = builder.build().map_err(at(&place, KEYS))?;
            // What `register` shows is the budget the policy draws from.
            preset.budget = budget;
        }
        if let Some(deadline) = &client.deadline {
            let mut builder = ClientPreset::deadline_builder(preset.name.clone());
            #[cfg(feature = "metrics")]
            if self.metrics {
                builder = builder.with_metrics();
            }
            if let Some(keep) = deadline.keep {
                builder = builder.keep(keep);
            }
            if let Some(margin) = deadline.margin_ms {
                builder = builder.margin(ms(margin));
            }
            if let Some(min_budget) = deadline.min_budget_ms {
                builder = builder.min_budget(ms(min_budget));
            }
            if let Some(default) = deadline.default_ms {
                builder = builder.default_timeout(ms(default));
            }
            const KEYS: &[(&str, &str)] = &[
                ("margin", "margin_ms"),
                ("min_budget", "min_budget_ms"),
                ("default_timeout", "default_ms"),
            ];
            preset.deadline = builder.build().map_err(at(&section("deadline"), KEYS))?;
        }
        if let Some(breaker) = &client.breaker {
            let mut builder = breaker.builder();
            if breaker.name.is_none() {
                builder = builder.name(name.to_string());
            }
            #[cfg(feature = "metrics")]
            if self.metrics {
                builder = builder.with_metrics();
            }
            preset.breaker = builder
                .classify(classify)
                .build()
                .map_err(at(&section("breaker"), BREAKER_KEYS))?;
        }
        if let Some(bulkhead) = &client.bulkhead {
            let mut builder = bulkhead.builder();
            if bulkhead.name.is_none() {
                builder = builder.name(name.to_string());
            }
            if bulkhead.max_concurrent.is_none() {
                // The preset's, not the bulkhead's own default (25).
                builder = builder.max_concurrent(CLIENT_MAX_CONCURRENT);
            }
            #[cfg(feature = "metrics")]
            if self.metrics {
                builder = builder.with_metrics();
            }
            const KEYS: &[(&str, &str)] = &[("max_wait", "max_wait_ms")];
            preset.bulkhead = builder.build().map_err(at(&section("bulkhead"), KEYS))?;
        }
        if let Some(timeout) = client.attempt_timeout_ms {
            let timeout = TimeoutLayer::new(ms(timeout))
                .map_err(|error| error.at(section("attempt_timeout_ms")))?
                .name(preset.name.clone());
            #[cfg(feature = "metrics")]
            let timeout = if self.metrics {
                timeout.with_metrics()
            } else {
                timeout
            };
            preset.timeout = timeout;
        }
        Ok(preset)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The path of the file's key that holds the bad value, for HTTP and gRPC alike.
    fn error_path(json: &str) -> String {
        let config: StackConfig = serde_json::from_str(json).unwrap();
        let path = |error: ConfigError| error.path().expect("placed in the file").to_string();
        let http = match config.http_server() {
            Err(error) => path(error),
            Ok(_) => path(config.http_client("inventory").expect_err("an error")),
        };
        let grpc = match config.grpc_server() {
            Err(error) => path(error),
            Ok(_) => path(
                config
                    .grpc_client("inventory", GrpcRetry::new())
                    .expect_err("an error"),
            ),
        };
        assert_eq!(http, grpc, "{json}");
        http
    }

    #[test]
    fn bad_settings_name_the_files_key_and_where_it_is() {
        for (json, path) in [
            (
                r#"{"server":{"deadline":{"max_ms":0}}}"#,
                "server.deadline.max_ms",
            ),
            (
                r#"{"server":{"deadline":{"default_ms":0}}}"#,
                "server.deadline.default_ms",
            ),
            (
                r#"{"clients":{"inventory":{"retry":{"budget_ratio":-1}}}}"#,
                "clients.inventory.retry.budget_ratio",
            ),
            (
                r#"{"clients":{"inventory":{"retry":{"max_attempts":0}}}}"#,
                "clients.inventory.retry.max_attempts",
            ),
            (
                r#"{"clients":{"inventory":{"attempt_timeout_ms":0}}}"#,
                "clients.inventory.attempt_timeout_ms",
            ),
            (
                r#"{"clients":{"inventory":{"deadline":{"keep":2}}}}"#,
                "clients.inventory.deadline.keep",
            ),
            (
                r#"{"clients":{"inventory":{"breaker":{"consecutive_failures":0}}}}"#,
                "clients.inventory.breaker.consecutive_failures",
            ),
            (
                r#"{"clients":{"inventory":{"bulkhead":{"max_concurrent":0}}}}"#,
                "clients.inventory.bulkhead.max_concurrent",
            ),
        ] {
            assert_eq!(error_path(json), path);
        }
        let config: StackConfig =
            serde_json::from_str(r#"{"clients":{"inventory":{"retry":{"budget_ratio":-1}}}}"#)
                .unwrap();
        let message = config.http_client("inventory").unwrap_err().to_string();
        assert_eq!(
            message,
            "invalid `clients.inventory.retry.budget_ratio`: must be a finite number >= 0, got -1"
        );
        assert!(serde_json::from_str::<StackConfig>(r#"{"servers":{}}"#).is_err());
    }

    #[test]
    fn a_client_section_nobody_builds_is_reported() {
        let config: StackConfig = serde_json::from_str(
            r#"{"clients":{"inventory":{},"payment":{"attempt_timeout_ms":300}}}"#,
        )
        .unwrap();
        assert_eq!(
            config
                .expect_clients(["inventory", "payments"])
                .err()
                .unwrap()
                .path(),
            Some("clients.payment")
        );
        assert!(config
            .expect_clients(["payment", "inventory", "extra"])
            .is_ok());
        assert!(StackConfig::default().expect_clients([]).is_ok());
    }

    #[test]
    fn names_may_be_owned_and_grpc_stacks_take_their_settings() {
        let config: StackConfig =
            serde_json::from_str(r#"{"clients":{"users":{"bulkhead":{"max_concurrent":7}}}}"#)
                .unwrap();
        let name = String::from("users");
        let users = config.grpc_client(&name, GrpcRetry::new()).unwrap();
        assert_eq!(users.bulkhead.handle().snapshot().max_concurrent, 7);
        assert_eq!(users.breaker.handle().name(), "users");
        let health = crate::health::Health::new();
        users.register(&health);
        assert_eq!(health.reports()[0].0, "users breaker");
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

    /// The metrics one failing call through the client `inventory` and one through the
    /// server record, with the settings `json`.
    #[cfg(feature = "metrics")]
    fn recorded(json: &str) -> Vec<String> {
        use tower::{Layer, ServiceExt};

        let config: StackConfig = serde_json::from_str(json).unwrap();
        let recorder = metrics_util::debugging::DebuggingRecorder::new();
        let snapshotter = recorder.snapshotter();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap();
        metrics::with_local_recorder(&recorder, || {
            runtime.block_on(async {
                let failing = tower::service_fn(|_: http::Request<String>| async {
                    let mut response = http::Response::new(String::new());
                    *response.status_mut() = http::StatusCode::SERVICE_UNAVAILABLE;
                    Ok::<_, std::convert::Infallible>(response)
                });
                let client = config
                    .http_client("inventory")
                    .unwrap()
                    .layer()
                    .service(failing);
                let _ = client.oneshot(http::Request::new(String::new())).await;
                let server = config.http_server().unwrap();
                let answer = tower::service_fn(|_: http::Request<String>| async {
                    Ok::<_, std::convert::Infallible>(http::Response::new(String::new()))
                });
                // An operator's limit is published like a learned one: the gauge.
                server.shed.handle().set_limit(5);
                let _ = server
                    .shed
                    .layer(answer)
                    .oneshot(http::Request::new(String::new()))
                    .await;
            })
        });
        let names: std::collections::BTreeSet<String> = snapshotter
            .snapshot()
            .into_vec()
            .into_iter()
            .map(|(key, ..)| key.key().name().to_string())
            .collect();
        names.into_iter().collect()
    }

    #[cfg(feature = "metrics")]
    #[test]
    fn metrics_turn_on_every_part_configured_or_not() {
        assert_eq!(recorded("{}"), Vec::<String>::new(), "off by default");
        let on = recorded(r#"{"metrics": true}"#);
        for name in [
            "bulwark_breaker_calls_total",
            "bulwark_retries_total",
            "bulwark_shed_limit",
        ] {
            assert!(on.iter().any(|n| n == name), "{name} in {on:?}");
        }
        // A configured section keeps them on.
        let configured = recorded(
            r#"{"metrics": true,
                "server": {"shed": {"name": "edge"}},
                "clients": {"inventory": {"breaker": {"consecutive_failures": 9},
                                          "retry": {"max_attempts": 2}}}}"#,
        );
        assert_eq!(configured, on);
    }

    #[test]
    fn missing_parts_keep_the_defaults() {
        let config: StackConfig = serde_json::from_str("{}").unwrap();
        assert!(config.http_server().is_ok());
        assert!(config.http_client("anything").is_ok());
    }
}
