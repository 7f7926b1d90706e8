//! [`PropagateDeadlineLayer`]: a client passes what is left of its deadline downstream.

use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use http::{HeaderName, HeaderValue, Request};
use tokio::time::Instant;
use tower_bulwark_core::config::ratio;
use tower_bulwark_core::{is_grpc_request, ConfigError, Deadline, Name, Rejection, RejectionKind};
use tower_layer::Layer;
use tower_service::Service;

use crate::events::{DeadlineEvent, Reporter};
use crate::latency::LatencyRecord;
use crate::wire::GRPC_TIMEOUT_NAME;
use crate::{encode_grpc_timeout, ResponseFuture, TIMEOUT_MS_HEADER};
use tower_bulwark_core::events::Listener;

/// Which headers carry the deadline to the next service.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum WriteHeaders {
    /// `grpc-timeout` on gRPC requests (by `content-type`), `x-request-timeout-ms` on
    /// others.
    #[default]
    Auto,
    /// `grpc-timeout` only.
    Grpc,
    /// `x-request-timeout-ms` (or the configured name) only.
    TimeoutMs,
    /// Both.
    Both,
    /// None: the deadline is only enforced locally.
    None,
}

/// Passes the caller's remaining deadline to the service it calls.
///
/// For each request:
///
/// 1. The deadline is the request's own (a [`Deadline`] in its extensions, set by the
///    caller for this request) or the task's current one (the handler's, set by
///    `AcceptDeadlineLayer`), the earlier if both (a call cannot outlive the handler that
///    makes it), else the client's default ([`PropagateBuilder::default_timeout`]), else
///    none: the request goes out untouched.
/// 2. A safety margin comes off what is left ([`PropagateBuilder::keep`] a fraction, then
///    [`PropagateBuilder::margin`] a fixed amount), so the downstream service gives up
///    slightly before the caller does and its answer still arrives.
/// 3. With less than [`PropagateBuilder::min_budget`] left (1 ms by default), or, with
///    [`PropagateBuilder::predictive_admission`], less than this dependency's recent median
///    latency, the call fails at once with a `DeadlineExceeded` [`Rejection`] and the inner
///    service is not called.
/// 4. The headers are written (`grpc-timeout` in the finest unit that fits, rounded down;
///    `x-request-timeout-ms` rounded down, at least 1), replacing any already there; the
///    deadline headers not written are removed, so a forwarded value cannot overstate.
/// 5. Inner layers see the time passed on as the task's current deadline. Locally the call
///    is held to the deadline itself: when it passes, the call is dropped and fails with
///    `DeadlineExceeded`. (The margin is the downstream's head start: its own "deadline
///    exceeded" answer arrives before this side gives up, with its details.)
///
/// Place it inside a retry layer so each attempt sends the time actually left; the retry
/// layer outside still sees the caller's deadline as the task's current one.
///
/// ```
/// use std::time::Duration;
/// use tower::{service_fn, Layer, ServiceExt};
/// use tower_bulwark_core::Deadline;
/// use tower_bulwark_deadline::PropagateDeadlineLayer;
///
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() {
/// let layer = PropagateDeadlineLayer::builder()
///     .margin(Duration::from_millis(20))
///     .build()
///     .unwrap();
/// let transport = service_fn(|request: http::Request<()>| async move {
///     Ok::<_, std::convert::Infallible>(request.headers()["x-request-timeout-ms"].clone())
/// });
/// let client = layer.layer(transport);
/// // Inside a handler with 500 ms left:
/// let sent = Deadline::after(Duration::from_millis(500))
///     .scope(client.oneshot(http::Request::get("/").body(()).unwrap()))
///     .await
///     .unwrap();
/// assert_eq!(sent, "480");
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct PropagateDeadlineLayer {
    config: Arc<PropagateConfig>,
}

#[derive(Debug)]
struct PropagateConfig {
    layer: Reporter,
    keep: f64,
    margin: Duration,
    min_budget: Duration,
    default: Option<Duration>,
    write: WriteHeaders,
    timeout_header: HeaderName,
    /// The median latency of this dependency, with predictive admission.
    latencies: Option<Arc<LatencyRecord>>,
}

/// Builds a [`PropagateDeadlineLayer`]. Defaults: keep all the time left, no margin, a
/// 1 ms minimum budget, no default deadline, headers chosen by protocol, no predictive
/// admission.
#[derive(Debug)]
pub struct PropagateBuilder {
    layer: Reporter,
    keep: f64,
    margin: Duration,
    min_budget: Duration,
    default: Option<Duration>,
    write: WriteHeaders,
    timeout_header: HeaderName,
    predictive: Option<Duration>,
}

impl PropagateDeadlineLayer {
    /// Starts configuring the layer.
    pub fn builder() -> PropagateBuilder {
        PropagateBuilder {
            layer: Reporter::new("propagate-deadline"),
            keep: 1.0,
            margin: Duration::ZERO,
            min_budget: Duration::from_millis(1),
            default: None,
            write: WriteHeaders::Auto,
            timeout_header: HeaderName::from_static(TIMEOUT_MS_HEADER),
            predictive: None,
        }
    }
}

impl PropagateBuilder {
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

    /// The fraction of the time left that is passed on (above 0, at most 1): `0.9` keeps 90%.
    pub fn keep(mut self, fraction: f64) -> Self {
        self.keep = fraction;
        self
    }

    /// A fixed amount taken off the time left (after [`keep`](Self::keep)), for the network
    /// and the work this side does with the answer.
    pub fn margin(mut self, margin: Duration) -> Self {
        self.margin = margin;
        self
    }

    /// The least time worth sending a call with; below it the call fails at once.
    pub fn min_budget(mut self, budget: Duration) -> Self {
        self.min_budget = budget;
        self
    }

    /// The deadline of a call made with none (no request deadline, no current one).
    pub fn default_timeout(mut self, timeout: Duration) -> Self {
        self.default = Some(timeout);
        self
    }

    /// Which headers carry the deadline.
    pub fn write_headers(mut self, write: WriteHeaders) -> Self {
        self.write = write;
        self
    }

    /// The name of the relative header (`x-request-timeout-ms` by default).
    pub fn timeout_header(mut self, name: HeaderName) -> Self {
        self.timeout_header = name;
        self
    }

    /// Also fails a call at once when the time left is below the median latency of this
    /// dependency's calls over the last `window` (learned from the calls that succeed
    /// with a deadline, once there are 20 of them): it would very likely time out anyway.
    /// A median not refreshed for a whole window is forgotten, so refusing calls cannot
    /// keep an old median alive.
    pub fn predictive_admission(mut self, window: Duration) -> Self {
        self.predictive = Some(window);
        self
    }

    /// Checks the settings.
    pub fn build(self) -> Result<PropagateDeadlineLayer, ConfigError> {
        let keep = ratio("keep", self.keep)?;
        if keep == 0.0 {
            return Err(ConfigError::new("keep", "must be above 0"));
        }
        if let Some(default) = self.default {
            tower_bulwark_core::config::non_zero_duration("default_timeout", default)?;
        }
        if let Some(window) = self.predictive {
            if window < Duration::from_secs(1) {
                return Err(ConfigError::new(
                    "predictive_admission",
                    format!("the window must be at least 1s, got {window:?}"),
                ));
            }
        }
        Ok(PropagateDeadlineLayer {
            config: Arc::new(PropagateConfig {
                layer: self.layer,
                keep,
                margin: self.margin,
                min_budget: self.min_budget,
                default: self.default,
                write: self.write,
                timeout_header: self.timeout_header,
                latencies: self
                    .predictive
                    .map(|window| Arc::new(LatencyRecord::new(window, 0.5, 20))),
            }),
        })
    }
}

impl<S> Layer<S> for PropagateDeadlineLayer {
    type Service = PropagateDeadline<S>;

    fn layer(&self, inner: S) -> PropagateDeadline<S> {
        PropagateDeadline {
            inner,
            config: self.config.clone(),
        }
    }
}

/// The service of a [`PropagateDeadlineLayer`].
#[derive(Debug, Clone)]
pub struct PropagateDeadline<S> {
    inner: S,
    config: Arc<PropagateConfig>,
}

impl PropagateConfig {
    /// What is passed on of `remaining`.
    fn outgoing(&self, remaining: Duration) -> Duration {
        let kept = if self.keep < 1.0 {
            remaining.mul_f64(self.keep)
        } else {
            remaining
        };
        kept.saturating_sub(self.margin)
    }

    fn too_late(&self, reason: &'static str) -> Rejection {
        self.layer.refuse(RejectionKind::DeadlineExceeded, reason)
    }

    fn write<B>(&self, request: &mut Request<B>, outgoing: Duration) {
        let (grpc, millis) = match self.write {
            WriteHeaders::Auto => {
                let grpc = is_grpc_request(request.headers());
                (grpc, !grpc)
            }
            WriteHeaders::Grpc => (true, false),
            WriteHeaders::TimeoutMs => (false, true),
            WriteHeaders::Both => (true, true),
            WriteHeaders::None => (false, false),
        };
        let headers = request.headers_mut();
        // A header not written is removed: a value forwarded from upstream would promise
        // the next service more time than is left.
        if grpc {
            headers.insert(GRPC_TIMEOUT_NAME, encode_grpc_timeout(outgoing));
        } else {
            headers.remove(GRPC_TIMEOUT_NAME);
        }
        if millis {
            let millis = u64::try_from(outgoing.as_millis())
                .unwrap_or(u64::MAX)
                .max(1);
            headers.insert(self.timeout_header.clone(), HeaderValue::from(millis));
        } else {
            headers.remove(&self.timeout_header);
        }
    }
}

impl<S, B> Service<Request<B>> for PropagateDeadline<S>
where
    S: Service<Request<B>>,
    S::Error: Into<tower_bulwark_core::BoxError>,
{
    type Response = S::Response;
    type Error = tower_bulwark_core::BoxError;
    type Future = ResponseFuture<S::Future>;

    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, mut request: Request<B>) -> Self::Future {
        let config = &self.config;
        let now = Instant::now();
        let deadline = Deadline::of_request(request.extensions())
            .or_else(|| config.default.map(|t| Deadline::after_from(now, t)));
        let Some(deadline) = deadline else {
            return ResponseFuture::unbounded(self.inner.call(request));
        };
        let outgoing = config.outgoing(deadline.instant().saturating_duration_since(now));
        if outgoing < config.min_budget || outgoing.is_zero() {
            return ResponseFuture::refused(config.too_late("too little time left"));
        }
        if let Some(latencies) = &config.latencies {
            if latencies
                .estimate(now)
                .is_some_and(|median| outgoing < median)
            {
                return ResponseFuture::refused(
                    config.too_late("less time left than the dependency's median latency"),
                );
            }
        }
        config.write(&mut request, outgoing);
        let outgoing = Deadline::after_from(now, outgoing);
        let future = outgoing.in_scope(|| self.inner.call(request));
        // Held to the deadline itself: the margin is the downstream's head start, so its
        // own "deadline exceeded" answer arrives before this side gives up.
        let future = ResponseFuture::bounded_at(
            future,
            outgoing,
            deadline,
            config.layer.clone(),
            "deadline passed",
        );
        match &config.latencies {
            Some(latencies) => future.recording(latencies.clone(), now, false),
            None => future,
        }
    }
}
