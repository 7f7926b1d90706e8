//! [`ChaosLayer`]: faults for any tower service.

use std::fmt;
use std::sync::Arc;
use std::task::{Context, Poll};

use tower_bulwark_core::{BoxError, ConfigError, Listener, Listeners};
use tower_layer::Layer;
use tower_service::Service;

use crate::injector::{Fault, Injector};
use crate::{ChaosEvent, ChaosFuture, ChaosHandle, Latency};

/// The error of an injected fault.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ChaosError {
    /// An injected error.
    Injected,
    /// An injected abort: the call failed as a broken connection would.
    Aborted,
}

impl fmt::Display for ChaosError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ChaosError::Injected => "injected fault",
            ChaosError::Aborted => "injected abort",
        })
    }
}

impl std::error::Error for ChaosError {}

/// Injects faults into calls of any tower service, for tests and game days: errors and
/// aborts at a rate (both fail with a [`ChaosError`] without calling the inner service),
/// and latency at a rate with a [`Latency`] distribution. A seeded generator makes a run
/// exact to replay; the [`ChaosHandle`] is a kill switch. While disabled, a call costs one
/// relaxed atomic load.
///
/// For HTTP services, `HttpChaosLayer` (feature `http`) answers with a chosen status or
/// gRPC code instead, and can be targeted per request by header.
///
/// ```
/// use std::time::Duration;
/// use tower::{service_fn, Layer, ServiceExt};
/// use tower_bulwark_chaos::{ChaosLayer, Latency};
///
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() {
/// let chaos = ChaosLayer::builder()
///     .error_rate(0.1)
///     .latency(0.2, Latency::Fixed(Duration::from_millis(100)))
///     .seed(7)
///     .build()
///     .unwrap();
/// let kill_switch = chaos.handle();
/// let service = chaos.layer(service_fn(|n: u32| async move { Ok::<_, std::io::Error>(n) }));
/// kill_switch.disable();
/// assert_eq!(service.oneshot(1).await.unwrap(), 1);
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct ChaosLayer {
    injector: Arc<Injector>,
}

/// Builds a [`ChaosLayer`] (and, with feature `http`, an `HttpChaosLayer`). Defaults: no
/// fault at all, enabled, seeded from entropy.
#[derive(Debug, Clone)]
pub struct ChaosBuilder {
    pub(crate) error_rate: f64,
    pub(crate) abort_rate: f64,
    pub(crate) latency: Option<(f64, Latency)>,
    pub(crate) seed: Option<u64>,
    pub(crate) enabled: bool,
    pub(crate) listeners: Listeners<ChaosEvent>,
}

impl ChaosLayer {
    /// Starts configuring faults.
    pub fn builder() -> ChaosBuilder {
        ChaosBuilder {
            error_rate: 0.0,
            abort_rate: 0.0,
            latency: None,
            seed: None,
            enabled: true,
            listeners: Listeners::new(),
        }
    }

    /// The kill switch and counters.
    pub fn handle(&self) -> ChaosHandle {
        ChaosHandle::new(self.injector.clone())
    }
}

impl ChaosBuilder {
    /// The share of calls that fail (0 to 1).
    pub fn error_rate(mut self, rate: f64) -> Self {
        self.error_rate = rate;
        self
    }

    /// The share of calls aborted (0 to 1; with `error_rate`, at most 1 in all).
    pub fn abort_rate(mut self, rate: f64) -> Self {
        self.abort_rate = rate;
        self
    }

    /// The share of calls delayed (0 to 1), and by how much.
    pub fn latency(mut self, rate: f64, latency: Latency) -> Self {
        self.latency = Some((rate, latency));
        self
    }

    /// Seeds the generator, so a run replays exactly.
    pub fn seed(mut self, seed: u64) -> Self {
        self.seed = Some(seed);
        self
    }

    /// Starts disabled (turn on with the handle).
    pub fn disabled(mut self) -> Self {
        self.enabled = false;
        self
    }

    /// Calls `listener` with every fault injected ([`ChaosEvent`]); `TracingListener`
    /// logs them at `DEBUG`.
    pub fn on_event(mut self, listener: impl Listener<ChaosEvent> + 'static) -> Self {
        self.listeners.push(listener);
        self
    }

    pub(crate) fn injector(&self) -> Result<Injector, ConfigError> {
        let seed = self
            .seed
            .unwrap_or_else(|| tower_bulwark_core::SeededRng::from_entropy().next_u64());
        Injector::new(
            self.error_rate,
            self.abort_rate,
            self.latency,
            seed,
            self.enabled,
            self.listeners.clone(),
        )
    }

    /// Checks the settings: rates in 0..=1, errors and aborts at most 1 together, a uniform
    /// latency's `max >= min`.
    pub fn build(self) -> Result<ChaosLayer, ConfigError> {
        Ok(ChaosLayer {
            injector: Arc::new(self.injector()?),
        })
    }
}

impl<S> Layer<S> for ChaosLayer {
    type Service = Chaos<S>;

    fn layer(&self, inner: S) -> Chaos<S> {
        Chaos {
            inner,
            injector: self.injector.clone(),
        }
    }
}

/// The service of a [`ChaosLayer`].
#[derive(Debug, Clone)]
pub struct Chaos<S> {
    inner: S,
    injector: Arc<Injector>,
}

impl<S, Req> Service<Req> for Chaos<S>
where
    S: Service<Req>,
    S::Error: Into<BoxError>,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = ChaosFuture<S::Future, S::Response>;

    #[inline(always)]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    #[inline(always)]
    fn call(&mut self, request: Req) -> Self::Future {
        match self.injector.decide() {
            Fault::None => ChaosFuture::pass(self.inner.call(request)),
            Fault::Delay(delay) => ChaosFuture::delayed(self.inner.call(request), delay),
            Fault::Error => ChaosFuture::done(Err(ChaosError::Injected.into())),
            Fault::Abort => ChaosFuture::done(Err(ChaosError::Aborted.into())),
        }
    }
}
