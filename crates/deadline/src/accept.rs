//! [`AcceptDeadlineLayer`]: a server reads its caller's deadline and holds its handler to it.

use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use http::{HeaderMap, Request};
use tokio::time::Instant;
use tower_bulwark_core::config::non_zero_duration;
use tower_bulwark_core::{ConfigError, Deadline, Name, Rejection, RejectionKind};
use tower_layer::Layer;
use tower_service::Service;

use crate::events::{DeadlineEvent, Reporter};
use crate::{DeadlineHeader, ResponseFuture};
use tower_bulwark_core::events::Listener;

/// What a server does with a deadline header it cannot parse.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OnInvalid {
    /// Ignore the header (logged at debug) and read the next source, or apply the default.
    #[default]
    Ignore,
    /// Refuse the request: HTTP 400, gRPC `INVALID_ARGUMENT` (through
    /// `HandleRejectionsLayer`).
    Reject,
}

/// Reads each request's deadline from its headers and holds the inner service to it.
///
/// - The deadline comes from the first header present among the sources, in order:
///   `grpc-timeout`, then `x-request-timeout-ms` by default; opt-in, the absolute
///   `x-request-deadline` and Envoy's `x-envoy-expected-rq-timeout-ms`
///   ([`AcceptBuilder::headers`]).
/// - The handler stops [`AcceptBuilder::headroom`] (5 ms) before the caller's deadline, so
///   the answer arrives in time. A request without one (or with only malformed ones) gets
///   the default ([`AcceptBuilder::default_timeout`]), else the maximum, else no deadline.
///   The maximum ([`AcceptBuilder::max`]) caps them all.
/// - The deadline is stored as core's [`Deadline`] in the request's extensions
///   ([`AcceptBuilder::store_in_extensions`]), and the inner service is called and its
///   future run with it as the task's current deadline, so client calls made by the
///   handler inherit it (see `PropagateDeadlineLayer`).
/// - A request whose deadline has already passed is refused without calling the inner
///   service; when the deadline passes mid-call, the inner future is dropped (its work
///   stops). Both fail with a `DeadlineExceeded` [`Rejection`]: HTTP 504, gRPC
///   `DEADLINE_EXCEEDED` through `HandleRejectionsLayer`.
/// - A malformed header (empty, not a number, too long, zero, negative, overflowing) is
///   never a panic: it is ignored by default, or refused with [`OnInvalid::Reject`].
///
/// ```
/// use std::time::Duration;
/// use tower::{service_fn, Layer, ServiceExt};
/// use tower_bulwark_core::Deadline;
/// use tower_bulwark_deadline::AcceptDeadlineLayer;
///
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() {
/// let layer = AcceptDeadlineLayer::builder()
///     .max(Duration::from_secs(10))
///     .default_timeout(Duration::from_secs(2))
///     .build()
///     .unwrap();
/// let handler = service_fn(|_request: http::Request<()>| async {
///     // The handler (and every client call it makes) sees the caller's deadline.
///     Ok::<_, std::convert::Infallible>(Deadline::current().unwrap().remaining())
/// });
/// let request = http::Request::get("/").header("grpc-timeout", "250m").body(()).unwrap();
/// let remaining = layer.layer(handler).oneshot(request).await.unwrap();
/// assert_eq!(remaining, Duration::from_millis(245), "250 ms, less 5 ms of headroom");
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct AcceptDeadlineLayer {
    config: Arc<AcceptConfig>,
}

#[derive(Debug)]
struct AcceptConfig {
    layer: Reporter,
    headers: Vec<DeadlineHeader>,
    max: Option<Duration>,
    default: Option<Duration>,
    on_invalid: OnInvalid,
    headroom: Duration,
    store_in_extensions: bool,
}

/// Builds an [`AcceptDeadlineLayer`]. Defaults: reads `grpc-timeout` then
/// `x-request-timeout-ms`; no maximum; no default; 5 ms of headroom; stored in extensions;
/// malformed headers ignored.
#[derive(Debug)]
pub struct AcceptBuilder {
    config: AcceptConfig,
}

impl AcceptDeadlineLayer {
    /// Starts configuring the layer.
    pub fn builder() -> AcceptBuilder {
        AcceptBuilder {
            config: AcceptConfig {
                layer: Reporter::new("deadline"),
                headers: vec![DeadlineHeader::GrpcTimeout, DeadlineHeader::timeout_ms()],
                max: None,
                default: None,
                on_invalid: OnInvalid::Ignore,
                headroom: Duration::from_millis(5),
                store_in_extensions: true,
            },
        }
    }
}

impl AcceptBuilder {
    /// Names the layer in its rejections, logs and events.
    pub fn name(mut self, name: impl Into<Name>) -> Self {
        self.config.layer.name = name.into();
        self
    }

    /// Adds a listener for the calls the layer refuses or cuts off (see [`DeadlineEvent`]).
    pub fn on_event(mut self, listener: impl Listener<DeadlineEvent> + 'static) -> Self {
        self.config.layer.push(listener);
        self
    }

    /// Records the refusals through the `metrics` facade
    /// (`bulwark_deadline_refusals_total`; see [`DeadlineEvent`]).
    #[cfg(feature = "metrics")]
    pub fn with_metrics(self) -> Self {
        self.on_event(crate::events::DeadlineMetricsListener::new())
    }

    /// The headers read, in order; the first one present wins.
    pub fn headers(mut self, headers: impl IntoIterator<Item = DeadlineHeader>) -> Self {
        self.config.headers = headers.into_iter().collect();
        self
    }

    /// The longest deadline this server grants (`min(incoming, max)`), also given to requests
    /// that bring none when there is no default.
    pub fn max(mut self, max: Duration) -> Self {
        self.config.max = Some(max);
        self
    }

    /// The deadline of a request that brings none (also capped by the maximum).
    pub fn default_timeout(mut self, timeout: Duration) -> Self {
        self.config.default = Some(timeout);
        self
    }

    /// How long before the caller's deadline the handler is stopped (5 ms by default; the
    /// server's own default and maximum are not shortened), so
    /// that the `DEADLINE_EXCEEDED` answer reaches the caller before its own timer fires:
    /// about one network round trip plus the timer's 1 ms granularity (raise it across slow
    /// links). tonic needs it on both ends: its `Server` runs its own `grpc-timeout` timer
    /// around every layer, and its `Channel` one on the client, and both answer `CANCELLED`.
    pub fn headroom(mut self, headroom: Duration) -> Self {
        self.config.headroom = headroom;
        self
    }

    /// Whether the deadline is also stored in the request's extensions (on by default).
    ///
    /// The handler and every layer inside this one see the deadline as the task's current
    /// one either way. The extension matters when the request leaves the task (tower's
    /// `Buffer`, a spawned task); storing it costs what `http` allocates for extensions
    /// (the boxed value, and on a request without extensions the boxed map and its table).
    /// Turned off, accepting a deadline allocates nothing.
    pub fn store_in_extensions(mut self, store: bool) -> Self {
        self.config.store_in_extensions = store;
        self
    }

    /// What to do with a malformed deadline header.
    pub fn on_invalid(mut self, on_invalid: OnInvalid) -> Self {
        self.config.on_invalid = on_invalid;
        self
    }

    /// Checks the settings: the maximum and the default must not be zero.
    pub fn build(self) -> Result<AcceptDeadlineLayer, ConfigError> {
        if let Some(max) = self.config.max {
            non_zero_duration("max", max)?;
        }
        if let Some(default) = self.config.default {
            non_zero_duration("default_timeout", default)?;
        }
        Ok(AcceptDeadlineLayer {
            config: Arc::new(self.config),
        })
    }
}

impl<S> Layer<S> for AcceptDeadlineLayer {
    type Service = AcceptDeadline<S>;

    fn layer(&self, inner: S) -> AcceptDeadline<S> {
        AcceptDeadline {
            inner,
            config: self.config.clone(),
        }
    }
}

/// The service of an [`AcceptDeadlineLayer`].
#[derive(Debug, Clone)]
pub struct AcceptDeadline<S> {
    inner: S,
    config: Arc<AcceptConfig>,
}

impl AcceptConfig {
    /// The time the request may take: what the caller gave (less the headroom), else the
    /// default, else the maximum; never more than the maximum.
    fn timeout(&self, headers: &HeaderMap) -> Result<Option<Duration>, Rejection> {
        let mut timeout = None;
        for header in &self.headers {
            match header.read(headers) {
                None => continue,
                Some(Ok(given)) => {
                    timeout = Some(given.saturating_sub(self.headroom));
                    break;
                }
                Some(Err(invalid)) => {
                    tracing::debug!(
                        layer = %self.layer.name,
                        header = header.name(),
                        reason = %invalid,
                        "malformed deadline header"
                    );
                    if self.on_invalid == OnInvalid::Reject {
                        return Err(self
                            .layer
                            .refuse(RejectionKind::InvalidRequest, "malformed deadline header"));
                    }
                }
            }
        }
        let timeout = timeout.or(self.default).or(self.max);
        Ok(match (timeout, self.max) {
            (Some(timeout), Some(max)) => Some(timeout.min(max)),
            (timeout, _) => timeout,
        })
    }
}

impl<S, B> Service<Request<B>> for AcceptDeadline<S>
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

    #[inline]
    fn call(&mut self, mut request: Request<B>) -> Self::Future {
        let config = &self.config;
        let timeout = match config.timeout(request.headers()) {
            Ok(timeout) => timeout,
            Err(rejection) => return ResponseFuture::refused(rejection),
        };
        let now = Instant::now();
        let given = timeout.map(|timeout| Deadline::after_from(now, timeout));
        // A deadline already on the request (an outer layer's) still holds.
        let existing = request.extensions().get::<Deadline>().copied();
        let deadline = match (given, existing) {
            (Some(given), existing) => given.earliest(existing),
            (None, Some(existing)) => existing,
            (None, None) => return ResponseFuture::unbounded(self.inner.call(request)),
        };
        if deadline.instant() <= now {
            return ResponseFuture::too_late(&config.layer);
        }
        if config.store_in_extensions {
            request.extensions_mut().insert(deadline);
        }
        let future = deadline.in_scope(|| self.inner.call(request));
        ResponseFuture::bounded(future, deadline, config.layer.clone(), "deadline passed")
    }
}
