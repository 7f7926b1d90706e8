//! The validated configuration of a breaker and its builder.

use std::time::Duration;

use tower_bulwark_core::config::{at_most, non_zero, non_zero_duration, ratio};
use tower_bulwark_core::{ConfigError, ErrorsAreFailures, Listener, Listeners, Name, SeededRng};

use crate::backoff::OpenDuration;
use crate::events::BreakerEvent;
use crate::layer::CircuitBreakerLayer;

/// Where the failure-rate and slow-call-rate conditions count calls.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WindowKind {
    /// The last `n` calls.
    Count(u32),
    /// The calls of the last `length`, kept in `buckets` slices that expire one at a time.
    Time {
        /// How far back the window reaches.
        length: Duration,
        /// How many slices it is kept in (more: smoother expiry, more memory).
        buckets: u32,
    },
}

/// What the service does when the breaker refuses a call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Admission {
    /// `poll_ready` is ready; `call` returns the `CircuitOpen` rejection at once without
    /// touching the inner service. For clients and servers that want to fail fast.
    #[default]
    FailFast,
    /// `poll_ready` is `Pending` while the breaker refuses, and wakes the task when a probe
    /// may go. For load balancers (`tower::balance::p2c`) that route to ready endpoints.
    ///
    /// The wait never outlasts the task's current deadline
    /// ([`Deadline::current`](tower_bulwark_core::Deadline::current)): when it passes,
    /// `poll_ready` is ready and `call` refuses with `CircuitOpen`, as in fail-fast
    /// admission. Keyed breakers ([`KeyedCircuitBreakerLayer`](crate::KeyedCircuitBreakerLayer))
    /// know their key only in `call`, so they refuse this mode with a
    /// [`ConfigError`] naming `admission`.
    Readiness,
}

/// The largest count window: one byte per call, so 1 MiB.
const MAX_COUNT_WINDOW: u32 = 1 << 20;

/// The largest success threshold (the half-open tally counts up to 2^20 - 1).
const MAX_SUCCESS_THRESHOLD: u32 = 1_000_000;

/// The checked settings a breaker runs with.
#[derive(Debug, Clone)]
pub(crate) struct Config {
    pub(crate) name: Name,
    pub(crate) consecutive_failures: Option<u32>,
    pub(crate) failure_rate: Option<f64>,
    pub(crate) slow_call: Option<(Duration, f64)>,
    pub(crate) window: WindowKind,
    pub(crate) minimum_calls: u32,
    pub(crate) open: OpenDuration,
    pub(crate) half_open_probes: u32,
    pub(crate) success_threshold: u32,
    pub(crate) half_open_max_wait: Duration,
    pub(crate) ramp: Option<Duration>,
    pub(crate) admission: Admission,
    pub(crate) seed: u64,
}

/// Builds a [`CircuitBreakerLayer`]; every setting is checked by [`Builder::build`].
///
/// Defaults: trip after 5 consecutive failures; no rate conditions; a count window of 100
/// calls with a minimum of 20 once a rate condition is enabled; open for 30 s; one probe at
/// a time, one success to close, at most a minute in half-open; no ramp; fail-fast
/// admission; every `Err` is a failure.
///
/// ```
/// use std::time::Duration;
/// use tower_bulwark_breaker::{CircuitBreakerLayer, WindowKind};
///
/// let layer = CircuitBreakerLayer::builder()
///     .name("payments")
///     .failure_rate(0.5)
///     .slow_calls(Duration::from_secs(2), 0.8)
///     .window(WindowKind::Time { length: Duration::from_secs(60), buckets: 10 })
///     .minimum_calls(20)
///     .half_open_probes(3)
///     .success_threshold(3)
///     .build()
///     .expect("valid configuration");
/// # let _ = layer;
///
/// let err = CircuitBreakerLayer::builder().failure_rate(1.5).build().unwrap_err();
/// assert_eq!(err.field(), "failure_rate");
/// ```
#[derive(Debug)]
pub struct Builder<C = ErrorsAreFailures> {
    config: Config,
    classifier: C,
    listeners: Listeners<BreakerEvent>,
}

impl Default for Builder {
    fn default() -> Self {
        Builder {
            config: Config {
                name: Name::new_static("circuit-breaker"),
                consecutive_failures: Some(5),
                failure_rate: None,
                slow_call: None,
                window: WindowKind::Count(100),
                minimum_calls: 20,
                open: OpenDuration::Fixed(Duration::from_secs(30)),
                half_open_probes: 1,
                success_threshold: 1,
                half_open_max_wait: Duration::from_secs(60),
                ramp: None,
                admission: Admission::FailFast,
                seed: SeededRng::from_entropy().next_u64(),
            },
            classifier: ErrorsAreFailures,
            listeners: Listeners::new(),
        }
    }
}

/// Presets for common cases; each is a starting point whose every setting can still be
/// changed before [`Builder::build`].
impl Builder {
    /// The defaults: trip after 5 consecutive failures, open for 30 s, one probe. Simple and
    /// predictable; fits low-traffic dependencies where rates mean little.
    pub fn standard() -> Self {
        Builder::default()
    }

    /// For busy dependencies: trip when half the calls of the last minute failed (10 time
    /// buckets, at least 20 calls); open 30 s, then 1, 2, 4, 5 min with 10% jitter while it
    /// keeps failing; 3 probes at a time, 3 successes to close.
    ///
    /// ```
    /// use tower_bulwark_breaker::CircuitBreakerLayer;
    /// use tower_bulwark_breaker::Builder;
    ///
    /// let layer: CircuitBreakerLayer = Builder::rate_based().name("search").build().unwrap();
    /// # let _ = layer;
    /// ```
    pub fn rate_based() -> Self {
        Builder::default()
            .no_consecutive_failures()
            .failure_rate(0.5)
            .window(WindowKind::Time {
                length: Duration::from_secs(60),
                buckets: 10,
            })
            .minimum_calls(20)
            .open_duration(OpenDuration::STANDARD_EXPONENTIAL)
            .half_open_probes(3)
            .success_threshold(3)
    }

    /// [`Builder::rate_based`], plus: trip when half the calls take `slow` or longer, for
    /// dependencies that degrade by slowing down before they fail.
    pub fn latency_sensitive(slow: Duration) -> Self {
        Builder::rate_based().slow_calls(slow, 0.5)
    }
}

impl<C> Builder<C> {
    /// The name in rejections, events, logs and metric labels.
    pub fn name(mut self, name: impl Into<Name>) -> Self {
        self.config.name = name.into();
        self
    }

    /// Trip after this many failures in a row (default 5).
    pub fn consecutive_failures(mut self, failures: u32) -> Self {
        self.config.consecutive_failures = Some(failures);
        self
    }

    /// Do not trip on consecutive failures (use the rate conditions only).
    pub fn no_consecutive_failures(mut self) -> Self {
        self.config.consecutive_failures = None;
        self
    }

    /// Trip when at least this fraction (`0 < rate <= 1`) of the calls in the window failed,
    /// once the window holds [`minimum_calls`](Builder::minimum_calls).
    pub fn failure_rate(mut self, rate: f64) -> Self {
        self.config.failure_rate = Some(rate);
        self
    }

    /// Trip when at least `rate` of the calls in the window took `threshold` or longer,
    /// whatever their outcome.
    pub fn slow_calls(mut self, threshold: Duration, rate: f64) -> Self {
        self.config.slow_call = Some((threshold, rate));
        self
    }

    /// The window the rate conditions read (default: the last 100 calls).
    pub fn window(mut self, window: WindowKind) -> Self {
        self.config.window = window;
        self
    }

    /// How many calls the window must hold before its rates are trusted (default 20).
    pub fn minimum_calls(mut self, calls: u32) -> Self {
        self.config.minimum_calls = calls;
        self
    }

    /// How long the breaker stays open (default: 30 s, fixed).
    pub fn open_duration(mut self, open: OpenDuration) -> Self {
        self.config.open = open;
        self
    }

    /// At most this many probe calls in flight while half-open, across every clone
    /// (default 1).
    pub fn half_open_probes(mut self, probes: u32) -> Self {
        self.config.half_open_probes = probes;
        self
    }

    /// Successful probes needed to close (default 1, at most 1,000,000). Any failed probe
    /// reopens. With a slow-call condition, the successes are also weighed against its rate
    /// (as resilience4j weighs half-open calls): if at least that share of them were slow,
    /// the breaker reopens instead of closing.
    pub fn success_threshold(mut self, successes: u32) -> Self {
        self.config.success_threshold = successes;
        self
    }

    /// The longest the breaker stays half-open (default 1 minute). If the probes have not
    /// concluded by then (stuck in flight, or their service stuck in `poll_ready`, as a
    /// client reconnecting to a dead host is), the breaker opens again, with the next open
    /// duration; probes of the ended phase hold no slot of the next one. Like
    /// resilience4j's `maxWaitDurationInHalfOpenState`, but checked when a call arrives (a
    /// waiting readiness-mode caller is woken for it). Set it above your slowest call;
    /// `Duration::MAX` never gives up on the probes.
    pub fn half_open_max_wait(mut self, wait: Duration) -> Self {
        self.config.half_open_max_wait = wait;
        self
    }

    /// After closing, admit a linearly growing share of calls over `ramp` instead of all at
    /// once. Calls refused by the ramp fail fast with `CircuitOpen` (reason
    /// `"recovery ramp"`), in either admission mode: the next call may well be admitted.
    pub fn recovery_ramp(mut self, ramp: Duration) -> Self {
        self.config.ramp = Some(ramp);
        self
    }

    /// Fail-fast (default) or readiness admission.
    pub fn admission(mut self, admission: Admission) -> Self {
        self.config.admission = admission;
        self
    }

    /// Seeds the jitter of [`OpenDuration::Exponential`], for exact tests.
    pub fn seed(mut self, seed: u64) -> Self {
        self.config.seed = seed;
        self
    }

    /// Adds a listener for the breaker's events. Listeners run inline: keep them quick.
    /// State changes are reported under the breaker's transition lock, so they arrive in
    /// the order they were made: a listener may read the breaker's handle, but must not
    /// steer it (`force_open`, `reset`, ...) nor call through the breaker, which would
    /// wait on that lock forever.
    pub fn on_event(mut self, listener: impl Listener<BreakerEvent> + 'static) -> Self {
        self.listeners.push(listener);
        self
    }

    /// Records events through the `metrics` facade (`bulwark_breaker_*`).
    #[cfg(feature = "metrics")]
    pub fn with_metrics(self) -> Self {
        self.on_event(crate::events::BreakerMetricsListener::new())
    }

    /// Decides which results are failures (default: every `Err`).
    pub fn classify<C2>(self, classifier: C2) -> Builder<C2> {
        Builder {
            config: self.config,
            classifier,
            listeners: self.listeners,
        }
    }

    /// Checks the settings and builds the layer.
    pub fn build(self) -> Result<CircuitBreakerLayer<C>, ConfigError> {
        let (config, classifier, listeners) = self.into_parts()?;
        Ok(CircuitBreakerLayer::from_parts(
            config, classifier, listeners,
        ))
    }

    /// The checked settings, the classifier and the listeners.
    pub(crate) fn into_parts(self) -> Result<(Config, C, Listeners<BreakerEvent>), ConfigError> {
        Ok((validate(self.config)?, self.classifier, self.listeners))
    }
}

fn threshold(field: &'static str, rate: f64) -> Result<f64, ConfigError> {
    let rate = ratio(field, rate)?;
    if rate == 0.0 {
        return Err(ConfigError::new(
            field,
            "must be above 0: a rate of 0 would always trip",
        ));
    }
    Ok(rate)
}

fn validate(config: Config) -> Result<Config, ConfigError> {
    if let Some(failures) = config.consecutive_failures {
        non_zero("consecutive_failures", failures as usize)?;
    }
    if let Some(rate) = config.failure_rate {
        threshold("failure_rate", rate)?;
    }
    if let Some((duration, rate)) = config.slow_call {
        non_zero_duration("slow_call_threshold", duration)?;
        threshold("slow_call_rate", rate)?;
    }
    let rates = config.failure_rate.is_some() || config.slow_call.is_some();
    if config.consecutive_failures.is_none() && !rates {
        return Err(ConfigError::new(
            "consecutive_failures",
            "no trip condition is enabled: keep consecutive failures or set a failure or slow-call rate",
        ));
    }
    match config.window {
        WindowKind::Count(size) => {
            non_zero("window", size as usize)?;
            at_most("window", size, "limit", MAX_COUNT_WINDOW)?;
            if rates {
                at_most("minimum_calls", config.minimum_calls, "window", size)?;
            }
        }
        WindowKind::Time { length, buckets } => {
            non_zero_duration("window", length)?;
            non_zero("window_buckets", buckets as usize)?;
            at_most("window_buckets", buckets, "limit", 10_000)?;
            if length.as_nanos() < u128::from(buckets) {
                return Err(ConfigError::new(
                    "window_buckets",
                    "must be at most the window length in nanoseconds",
                ));
            }
        }
    }
    non_zero("minimum_calls", config.minimum_calls as usize)?;
    match config.open {
        OpenDuration::Fixed(wait) => {
            non_zero_duration("open_duration", wait)?;
        }
        OpenDuration::Exponential {
            initial,
            multiplier,
            max,
            jitter,
            reset_after,
        } => {
            non_zero_duration("open_duration.initial", initial)?;
            if !(multiplier.is_finite() && multiplier >= 1.0) {
                return Err(ConfigError::new(
                    "open_duration.multiplier",
                    format!("must be a finite number >= 1, got {multiplier}"),
                ));
            }
            at_most(
                "open_duration.initial",
                initial.as_secs_f64(),
                "open_duration.max",
                max.as_secs_f64(),
            )?;
            ratio("open_duration.jitter", jitter)?;
            non_zero_duration("open_duration.reset_after", reset_after)?;
        }
    }
    non_zero("half_open_probes", config.half_open_probes as usize)?;
    non_zero("success_threshold", config.success_threshold as usize)?;
    at_most(
        "success_threshold",
        config.success_threshold,
        "limit",
        MAX_SUCCESS_THRESHOLD,
    )?;
    non_zero_duration("half_open_max_wait", config.half_open_max_wait)?;
    if let Some(ramp) = config.ramp {
        non_zero_duration("recovery_ramp", ramp)?;
    }
    Ok(config)
}

#[cfg(all(test, not(bulwark_loom)))]
mod tests {
    use super::*;

    fn base() -> Builder {
        Builder::default()
    }

    #[test]
    fn minimum_calls_only_matters_with_a_rate_condition() {
        assert!(base().window(WindowKind::Count(10)).build().is_ok());
    }

    #[test]
    fn limits_are_inclusive() {
        assert!(base()
            .success_threshold(MAX_SUCCESS_THRESHOLD)
            .build()
            .is_ok());
        assert!(base().half_open_max_wait(Duration::MAX).build().is_ok());
        assert!(base()
            .half_open_max_wait(Duration::from_nanos(1))
            .build()
            .is_ok());
        // As many buckets as the window has nanoseconds: one nanosecond each.
        assert!(base()
            .window(WindowKind::Time {
                length: Duration::from_nanos(10),
                buckets: 10,
            })
            .build()
            .is_ok());
    }

    /// The presets are what their docs promise.
    #[test]
    fn presets_set_what_their_docs_say() {
        let standard = Builder::standard().config;
        assert_eq!(standard.consecutive_failures, Some(5));
        assert_eq!(standard.failure_rate, None);
        let rate_based = Builder::rate_based().config;
        assert_eq!(rate_based.consecutive_failures, None);
        assert_eq!(rate_based.failure_rate, Some(0.5));
        assert_eq!(rate_based.slow_call, None);
        assert_eq!(
            rate_based.window,
            WindowKind::Time {
                length: Duration::from_secs(60),
                buckets: 10
            }
        );
        assert_eq!(rate_based.minimum_calls, 20);
        assert_eq!(rate_based.open, OpenDuration::STANDARD_EXPONENTIAL);
        assert_eq!(
            (rate_based.half_open_probes, rate_based.success_threshold),
            (3, 3)
        );
        let slow = Duration::from_millis(500);
        let latency = Builder::latency_sensitive(slow).config;
        assert_eq!(latency.slow_call, Some((slow, 0.5)));
        assert_eq!(latency.failure_rate, Some(0.5));
        assert_eq!(latency.window, rate_based.window);
    }

    #[test]
    fn defaults_and_presets_are_valid() {
        assert!(base().build().is_ok());
        assert!(Builder::standard().build().is_ok());
        assert!(Builder::rate_based().build().is_ok());
        assert!(Builder::latency_sensitive(Duration::from_millis(500))
            .build()
            .is_ok());
        assert_eq!(
            Builder::latency_sensitive(Duration::ZERO)
                .build()
                .unwrap_err()
                .field(),
            "slow_call_threshold"
        );
    }

    #[test]
    fn each_bad_field_is_named() {
        let exp = |initial: u64, multiplier: f64, max: u64, jitter: f64, reset: u64| {
            OpenDuration::Exponential {
                initial: Duration::from_secs(initial),
                multiplier,
                max: Duration::from_secs(max),
                jitter,
                reset_after: Duration::from_secs(reset),
            }
        };
        let cases: Vec<(Builder, &str)> = vec![
            (base().consecutive_failures(0), "consecutive_failures"),
            (base().failure_rate(0.0), "failure_rate"),
            (base().failure_rate(1.01), "failure_rate"),
            (base().failure_rate(f64::NAN), "failure_rate"),
            (base().failure_rate(-0.5), "failure_rate"),
            (
                base().slow_calls(Duration::ZERO, 0.5),
                "slow_call_threshold",
            ),
            (
                base().slow_calls(Duration::from_secs(1), f64::INFINITY),
                "slow_call_rate",
            ),
            (base().window(WindowKind::Count(0)), "window"),
            (
                base()
                    .failure_rate(0.5)
                    .window(WindowKind::Count(10))
                    .minimum_calls(11),
                "minimum_calls",
            ),
            (base().window(WindowKind::Count(u32::MAX)), "window"),
            (base().no_consecutive_failures(), "consecutive_failures"),
            (base().minimum_calls(0), "minimum_calls"),
            (
                base().window(WindowKind::Time {
                    length: Duration::ZERO,
                    buckets: 10,
                }),
                "window",
            ),
            (
                base().window(WindowKind::Time {
                    length: Duration::from_secs(1),
                    buckets: 0,
                }),
                "window_buckets",
            ),
            (
                base().window(WindowKind::Time {
                    length: Duration::from_nanos(5),
                    buckets: 10,
                }),
                "window_buckets",
            ),
            (
                base().window(WindowKind::Time {
                    length: Duration::from_secs(10),
                    buckets: 1_000_000,
                }),
                "window_buckets",
            ),
            (
                base().open_duration(OpenDuration::Fixed(Duration::ZERO)),
                "open_duration",
            ),
            (
                base().open_duration(exp(0, 2.0, 10, 0.1, 60)),
                "open_duration.initial",
            ),
            (
                base().open_duration(exp(1, 0.5, 10, 0.1, 60)),
                "open_duration.multiplier",
            ),
            (
                base().open_duration(exp(1, f64::NAN, 10, 0.1, 60)),
                "open_duration.multiplier",
            ),
            (
                base().open_duration(exp(20, 2.0, 10, 0.1, 60)),
                "open_duration.initial",
            ),
            (
                base().open_duration(exp(1, 2.0, 10, 1.5, 60)),
                "open_duration.jitter",
            ),
            (
                base().open_duration(exp(1, 2.0, 10, 0.1, 0)),
                "open_duration.reset_after",
            ),
            (base().half_open_probes(0), "half_open_probes"),
            (base().success_threshold(0), "success_threshold"),
            (
                base().success_threshold(MAX_SUCCESS_THRESHOLD + 1),
                "success_threshold",
            ),
            (
                base().half_open_max_wait(Duration::ZERO),
                "half_open_max_wait",
            ),
            (base().recovery_ramp(Duration::ZERO), "recovery_ramp"),
        ];
        for (i, (builder, field)) in cases.into_iter().enumerate() {
            let result = builder.build().map(|_| ());
            assert_eq!(result.map_err(|e| e.field()), Err(field), "case {i}");
        }
    }
}
