//! [`AdaptiveTimeoutLayer`]: a timeout that follows the latency the dependency shows.

use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::time::Instant;
use tower_bulwark_core::config::non_zero_duration;
use tower_bulwark_core::{ConfigError, Name};
use tower_layer::Layer;
use tower_service::Service;

use crate::events::{DeadlineEvent, Reporter};
use crate::latency::LatencyRecord;
use crate::timeout::call_within;
use crate::ResponseFuture;
use tower_bulwark_core::events::Listener;

/// A per-call timeout set from observed latency: a high percentile of recent calls times a
/// multiplier, clamped between a minimum and a maximum, and never beyond the caller's
/// deadline (as [`TimeoutLayer`](crate::TimeoutLayer)).
///
/// Expiry is reported as for [`TimeoutLayer`](crate::TimeoutLayer): `TimedOut` when this
/// timeout ran out (a failure, retryable), `DeadlineExceeded` when the caller's deadline
/// was the earlier bound.
///
/// Until `min_samples` calls have been seen (and again after a window without calls), the
/// timeout is the maximum. Calls cut off by this timeout are recorded with the time they
/// ran, so when the dependency slows down the percentile rises with it instead of seeing
/// only the calls that were fast; calls cut short by a caller's earlier deadline are not. Latencies are
/// kept in a bounded ring of histograms over `window` (O(1) per call, fixed memory), shared
/// by every service the layer makes.
///
/// ```
/// use std::time::Duration;
/// use tower::{service_fn, Layer, ServiceExt};
/// use tower_bulwark_deadline::AdaptiveTimeoutLayer;
///
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() {
/// let layer = AdaptiveTimeoutLayer::builder()
///     .percentile(0.99)
///     .multiplier(2.0)
///     .bounds(Duration::from_millis(50), Duration::from_secs(5))
///     .min_samples(10)
///     .build()
///     .unwrap();
/// let service = layer.layer(service_fn(|_: ()| async {
///     tokio::time::sleep(Duration::from_millis(100)).await;
///     Ok::<_, std::convert::Infallible>(())
/// }));
/// assert_eq!(layer.current_timeout(), Duration::from_secs(5), "the maximum until it learns");
/// for _ in 0..10 {
///     service.clone().oneshot(()).await.unwrap();
/// }
/// let timeout = layer.current_timeout();
/// assert!(timeout > Duration::from_millis(190) && timeout < Duration::from_millis(210));
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct AdaptiveTimeoutLayer {
    shared: Arc<Adaptive>,
}

#[derive(Debug)]
struct Adaptive {
    layer: Reporter,
    multiplier: f64,
    min: Duration,
    max: Duration,
    latencies: Arc<LatencyRecord>,
}

/// Builds an [`AdaptiveTimeoutLayer`]. Defaults: the 99th percentile times 2, between
/// 10 ms and 10 s, over the last 60 s, after 100 samples.
#[derive(Debug)]
pub struct AdaptiveBuilder {
    layer: Reporter,
    percentile: f64,
    multiplier: f64,
    min: Duration,
    max: Duration,
    window: Duration,
    min_samples: u64,
}

impl AdaptiveTimeoutLayer {
    /// Starts configuring the layer.
    pub fn builder() -> AdaptiveBuilder {
        AdaptiveBuilder {
            layer: Reporter::new("adaptive-timeout"),
            percentile: 0.99,
            multiplier: 2.0,
            min: Duration::from_millis(10),
            max: Duration::from_secs(10),
            window: Duration::from_secs(60),
            min_samples: 100,
        }
    }

    /// The timeout a call starting now gets (before the caller's deadline shortens it).
    pub fn current_timeout(&self) -> Duration {
        self.shared.timeout(Instant::now())
    }
}

impl Adaptive {
    fn timeout(&self, now: Instant) -> Duration {
        match self.latencies.estimate(now) {
            Some(percentile) => {
                Duration::try_from_secs_f64(percentile.as_secs_f64() * self.multiplier)
                    .unwrap_or(self.max)
                    .clamp(self.min, self.max)
            }
            None => self.max,
        }
    }
}

impl AdaptiveBuilder {
    /// Names the layer in its rejections and events.
    pub fn name(mut self, name: impl Into<Name>) -> Self {
        self.layer.name = name.into();
        self
    }

    /// Adds a listener for the calls the layer refuses or cuts off (see [`DeadlineEvent`]).
    pub fn on_event(mut self, listener: impl Listener<DeadlineEvent> + 'static) -> Self {
        self.layer.push(listener);
        self
    }

    /// Records the refusals through the `metrics` facade
    /// (`bulwark_deadline_refusals_total`; see [`DeadlineEvent`]).
    #[cfg(feature = "metrics")]
    pub fn with_metrics(self) -> Self {
        self.on_event(crate::events::DeadlineMetricsListener::new())
    }

    /// The percentile of recent latencies followed (above 0, at most 1).
    pub fn percentile(mut self, percentile: f64) -> Self {
        self.percentile = percentile;
        self
    }

    /// How many times the percentile a call may take (1 to 1000).
    pub fn multiplier(mut self, multiplier: f64) -> Self {
        self.multiplier = multiplier;
        self
    }

    /// The shortest and longest timeout.
    pub fn bounds(mut self, min: Duration, max: Duration) -> Self {
        self.min = min;
        self.max = max;
        self
    }

    /// How far back latencies count (1 s to 1 hour).
    pub fn window(mut self, window: Duration) -> Self {
        self.window = window;
        self
    }

    /// How many calls are seen before the timeout adapts (at least 1).
    pub fn min_samples(mut self, samples: u64) -> Self {
        self.min_samples = samples;
        self
    }

    /// Checks the settings.
    pub fn build(self) -> Result<AdaptiveTimeoutLayer, ConfigError> {
        if !(self.percentile > 0.0 && self.percentile <= 1.0) {
            return Err(ConfigError::new(
                "percentile",
                format!("must be above 0 and at most 1, got {}", self.percentile),
            ));
        }
        if !(1.0..=1000.0).contains(&self.multiplier) {
            return Err(ConfigError::new(
                "multiplier",
                format!("must be within 1..=1000, got {}", self.multiplier),
            ));
        }
        non_zero_duration("min", self.min)?;
        if self.max < self.min {
            return Err(ConfigError::new(
                "max",
                format!("must be at least min ({:?}), got {:?}", self.min, self.max),
            ));
        }
        if !(Duration::from_secs(1)..=Duration::from_secs(3600)).contains(&self.window) {
            return Err(ConfigError::new(
                "window",
                format!("must be within 1s..=1h, got {:?}", self.window),
            ));
        }
        tower_bulwark_core::config::non_zero("min_samples", self.min_samples as usize)?;
        Ok(AdaptiveTimeoutLayer {
            shared: Arc::new(Adaptive {
                layer: self.layer,
                multiplier: self.multiplier,
                min: self.min,
                max: self.max,
                latencies: Arc::new(LatencyRecord::new(
                    self.window,
                    self.percentile,
                    self.min_samples,
                )),
            }),
        })
    }
}

impl<S> Layer<S> for AdaptiveTimeoutLayer {
    type Service = AdaptiveTimeout<S>;

    fn layer(&self, inner: S) -> AdaptiveTimeout<S> {
        AdaptiveTimeout {
            inner,
            shared: self.shared.clone(),
        }
    }
}

/// The service of an [`AdaptiveTimeoutLayer`].
#[derive(Debug, Clone)]
pub struct AdaptiveTimeout<S> {
    inner: S,
    shared: Arc<Adaptive>,
}

impl<S, Req> Service<Req> for AdaptiveTimeout<S>
where
    S: Service<Req>,
    S::Error: Into<tower_bulwark_core::BoxError>,
{
    type Response = S::Response;
    type Error = tower_bulwark_core::BoxError;
    type Future = ResponseFuture<S::Future>;

    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, request: Req) -> Self::Future {
        let shared = &self.shared;
        let now = Instant::now();
        call_within(
            &mut self.inner,
            request,
            shared.timeout(now),
            &shared.layer,
            now,
            Some(&shared.latencies),
        )
    }
}
