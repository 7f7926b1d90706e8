//! [`ShedLayer`] and its [`Builder`].

use std::time::Duration;

use tower_bulwark_core::{ConfigError, ErrorsAreFailures, Listener, Listeners, Name};
use tower_layer::Layer;

use crate::limiter::Limiter;
use crate::source::AllCritical;
use crate::{
    Aimd, Fixed, LimitAlgorithm, MinRtt, Shed, ShedEvent, ShedHandle, TierShares, WindowSize,
};
use std::sync::Arc;
use tower_bulwark_core::stripes::Striped;

/// Sheds load beyond an adaptive concurrency limit, least important calls first.
///
/// - The limit follows latency and drops through a [`LimitAlgorithm`] ([`MinRtt`] by
///   default; [`Vegas`](crate::Vegas), [`Aimd`](crate::Aimd),
///   [`Gradient2`](crate::Gradient2) or a [`Fixed`] limit), taught a window of finished
///   calls at a time ([`WindowSize`]). Outcomes come from the classifier: a failure counts
///   as a drop, an ignored outcome does not move the limit, and a call dropped before it
///   finished (the caller's deadline, a disconnect) is a drop.
/// - Criticality tiers borrow: a call may use any place the more important tiers are not
///   using. Each tier leaves the tiers above it room for what they recently wanted (their
///   peak in flight, refused calls included, plus a quarter), so under contention the
///   least important calls are refused first, and alone they may fill the whole limit.
///   [`TierShares`] can cap a tier further.
/// - A call its tier may not have is refused at once, never queued, with an `Overloaded`
///   [`Rejection`](tower_bulwark_core::Rejection)
///   carrying a `Retry-After` (1 s by default): through `HandleRejectionsLayer`, HTTP 503 or
///   gRPC `RESOURCE_EXHAUSTED` with `grpc-retry-pushback-ms`, and the
///   `x-bulwark-overloaded: true` marker that stops retry layers upstream from amplifying it.
/// - Shadow mode ([`Builder::shadow`]) counts and reports what would be shed, and sheds
///   nothing.
/// - Admission is lock-free and allocates nothing; every service the layer makes (and every
///   clone) shares one limit. Far below the limit, calls on different cores write
///   different cache lines (each core takes its places from the limit a batch at a time,
///   and its calls hold its own handle to the shared state), so the layer scales across
///   cores; near the limit every place is counted exactly.
///
/// ```
/// use tower::{service_fn, Layer, ServiceExt};
/// use tower_bulwark_shed::{FromRequest, ShedLayer};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let shed = ShedLayer::builder()
///     .name("api")
///     .criticality(FromRequest::default())
///     .build()
///     .unwrap();
/// let handle = shed.handle();
/// let service = shed.layer(service_fn(|_: http::Request<()>| async {
///     Ok::<_, std::convert::Infallible>("ok")
/// }));
/// let request = http::Request::get("/").header("x-request-criticality", "sheddable").body(()).unwrap();
/// assert_eq!(service.oneshot(request).await.unwrap(), "ok");
/// assert_eq!(handle.snapshot().limit, 20);
/// # }
/// ```
#[derive(Debug)]
pub struct ShedLayer<Q = AllCritical, C = ErrorsAreFailures> {
    limiter: Striped<Limiter>,
    criticality: Q,
    classify: C,
    retry_after: Option<Duration>,
    shadow: bool,
}

impl<Q: Clone, C: Clone> Clone for ShedLayer<Q, C> {
    fn clone(&self) -> Self {
        ShedLayer {
            limiter: self.limiter.clone(),
            criticality: self.criticality.clone(),
            classify: self.classify.clone(),
            retry_after: self.retry_after,
            shadow: self.shadow,
        }
    }
}

/// Builds a [`ShedLayer`]. Defaults: [`MinRtt`], the default [`WindowSize`], no tier caps,
/// every request `Critical`, every `Err` a drop, `Retry-After: 1`, no shadow mode.
pub struct Builder<Q = AllCritical, C = ErrorsAreFailures> {
    name: Name,
    algorithm: Box<dyn LimitAlgorithm>,
    learns: bool,
    window: WindowSize,
    tiers: TierShares,
    criticality: Q,
    classify: C,
    retry_after: Option<Duration>,
    shadow: bool,
    listeners: Listeners<ShedEvent>,
}

impl ShedLayer {
    /// Starts configuring a layer.
    pub fn builder() -> Builder {
        Builder {
            name: Name::from("shed"),
            algorithm: Box::new(MinRtt::default()),
            learns: true,
            window: WindowSize::default(),
            tiers: TierShares::default(),
            criticality: AllCritical,
            classify: ErrorsAreFailures,
            retry_after: Some(Duration::from_secs(1)),
            shadow: false,
            listeners: Listeners::new(),
        }
    }
}

impl<Q, C> ShedLayer<Q, C> {
    /// Reads and steers the shared limit.
    pub fn handle(&self) -> ShedHandle {
        ShedHandle::new(self.limiter.shared().clone())
    }
}

impl<Q, C> Builder<Q, C> {
    /// Names the layer in its rejections, events and metrics.
    pub fn name(mut self, name: impl Into<Name>) -> Self {
        self.name = name.into();
        self
    }

    /// The algorithm that moves the limit.
    pub fn algorithm(mut self, algorithm: impl LimitAlgorithm) -> Self {
        self.algorithm = Box::new(algorithm);
        self.learns = true;
        self
    }

    /// A fixed limit (no latency measured, no lock taken when calls finish).
    pub fn fixed(mut self, limit: Fixed) -> Self {
        self.algorithm = Box::new(limit);
        self.learns = false;
        self
    }

    /// Preset: keep latency within twice `unloaded` (the service's latency without load).
    /// AIMD starting at 20, with a latency timeout of `2 x unloaded`, between 1 and 1000:
    /// the limit grows while calls stay under it and backs off when they do not. In
    /// the overload scenario (`benches/scenarios`) this keeps goodput near capacity at four
    /// times the load with the admitted p99 under twice the unloaded one.
    pub fn latency_target(self, unloaded: Duration) -> Self {
        let timeout = unloaded.saturating_mul(2).max(Duration::from_millis(1));
        let aimd = Aimd::new(20, 1, 1000, 0.9, timeout).expect("valid preset");
        self.algorithm(aimd)
    }

    /// How many finished calls the algorithm learns from at a time.
    pub fn window(mut self, window: WindowSize) -> Self {
        self.window = window;
        self
    }

    /// Caps on the share of the limit each criticality tier may use.
    pub fn tiers(mut self, tiers: TierShares) -> Self {
        self.tiers = tiers;
        self
    }

    /// The `Retry-After` / `grpc-retry-pushback-ms` given with a shed (`None`: none).
    pub fn retry_after(mut self, wait: Option<Duration>) -> Self {
        self.retry_after = wait;
        self
    }

    /// Shadow mode: compute, count and report what would be shed, and shed nothing.
    pub fn shadow(mut self, shadow: bool) -> Self {
        self.shadow = shadow;
        self
    }

    /// Adds a listener for the layer's events. `LimitChanged` comes in the order the
    /// algorithm moved the limit: it is reported while learning is held up, so a listener
    /// should be quick, and must not make calls through this layer nor call
    /// [`ShedHandle::set_limit`] (both would wait on that lock forever). Reading the
    /// [`ShedHandle`] is fine.
    pub fn on_event(mut self, listener: impl Listener<ShedEvent> + 'static) -> Self {
        self.listeners.push(listener);
        self
    }

    /// Records events through the `metrics` facade (`bulwark_shed_*`).
    #[cfg(feature = "metrics")]
    pub fn with_metrics(self) -> Self {
        self.on_event(crate::events::ShedMetricsListener::new())
    }

    /// Where each request's criticality comes from.
    pub fn criticality<Q2>(self, criticality: Q2) -> Builder<Q2, C> {
        Builder {
            name: self.name,
            algorithm: self.algorithm,
            learns: self.learns,
            window: self.window,
            tiers: self.tiers,
            criticality,
            classify: self.classify,
            retry_after: self.retry_after,
            shadow: self.shadow,
            listeners: self.listeners,
        }
    }

    /// Which results count as drops.
    pub fn classify<C2>(self, classify: C2) -> Builder<Q, C2> {
        Builder {
            name: self.name,
            algorithm: self.algorithm,
            learns: self.learns,
            window: self.window,
            tiers: self.tiers,
            criticality: self.criticality,
            classify,
            retry_after: self.retry_after,
            shadow: self.shadow,
            listeners: self.listeners,
        }
    }

    /// Checks the settings and builds the layer.
    pub fn build(self) -> Result<ShedLayer<Q, C>, ConfigError> {
        let tiers = self.tiers.check()?;
        Ok(ShedLayer {
            limiter: Striped::new(Arc::new(Limiter::new(
                self.name,
                self.algorithm,
                self.learns,
                self.window,
                tiers,
                self.listeners,
            ))),
            criticality: self.criticality,
            classify: self.classify,
            retry_after: self.retry_after,
            shadow: self.shadow,
        })
    }
}

impl<Q, C> std::fmt::Debug for Builder<Q, C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Builder")
            .field("name", &self.name)
            .field("tiers", &self.tiers)
            .field("shadow", &self.shadow)
            .finish_non_exhaustive()
    }
}

impl<S, Q: Clone, C: Clone> Layer<S> for ShedLayer<Q, C> {
    type Service = Shed<S, Q, C>;

    fn layer(&self, inner: S) -> Self::Service {
        Shed::new(
            inner,
            self.limiter.clone(),
            self.criticality.clone(),
            self.classify.clone(),
            self.retry_after,
            self.shadow,
        )
    }
}
