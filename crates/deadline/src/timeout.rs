//! [`TimeoutLayer`]: a per-request timeout that never outlives the caller's deadline.

use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::time::Instant;
use tower_bulwark_core::config::non_zero_duration;
use tower_bulwark_core::{ConfigError, Deadline, Name};
use tower_layer::Layer;
use tower_service::Service;

use crate::events::{DeadlineEvent, Reporter};
use crate::latency::LatencyRecord;
use crate::ResponseFuture;
use tower_bulwark_core::events::Listener;

/// A timeout on each call, shortened to the caller's deadline: each call gets
/// `min(timeout, time left)`, where the time left comes from the task's current
/// [`Deadline`].
///
/// Unlike tower's `Timeout`, the inner service runs with the resulting deadline as the
/// task's current one (so layers inside it, such as a bulkhead queue, never wait past it),
/// and expiry is a [`Rejection`](tower_bulwark_core::Rejection) (HTTP 504, gRPC
/// `DEADLINE_EXCEEDED`) whose kind says which ran out:
///
/// - [`TimedOut`](tower_bulwark_core::RejectionKind::TimedOut) (reason `"timed out"`): this layer's timeout,
///   so the dependency was too slow while the caller still had time. Breakers count it as a
///   failure and retry layers retry it (within their budget and the caller's deadline).
/// - [`DeadlineExceeded`](tower_bulwark_core::RejectionKind::DeadlineExceeded) (reason `"deadline passed"`):
///   the caller's deadline, which was the earlier bound (a tie included). Neither a
///   failure of the dependency nor worth a retry.
///
/// ```
/// use std::time::Duration;
/// use tower::{service_fn, Layer, ServiceExt};
/// use tower_bulwark_core::{find_rejection, Deadline, RejectionKind};
/// use tower_bulwark_deadline::TimeoutLayer;
///
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() {
/// let slow = service_fn(|_: ()| async {
///     tokio::time::sleep(Duration::from_secs(5)).await;
///     Ok::<_, std::convert::Infallible>(())
/// });
/// let service = TimeoutLayer::new(Duration::from_secs(1)).unwrap().layer(slow);
/// // The caller has only 200 ms left: the call gets 200 ms, not 1 s.
/// let started = tokio::time::Instant::now();
/// let error = Deadline::after(Duration::from_millis(200))
///     .scope(service.clone().oneshot(()))
///     .await
///     .unwrap_err();
/// assert_eq!(started.elapsed(), Duration::from_millis(200));
/// assert_eq!(find_rejection(&error).unwrap().kind(), RejectionKind::DeadlineExceeded);
///
/// // With time to spare, the timeout ends the call: the dependency was too slow.
/// let error = Deadline::after(Duration::from_secs(30))
///     .scope(service.oneshot(()))
///     .await
///     .unwrap_err();
/// assert_eq!(find_rejection(&error).unwrap().kind(), RejectionKind::TimedOut);
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct TimeoutLayer {
    timeout: Duration,
    layer: Reporter,
}

impl TimeoutLayer {
    /// A timeout of `timeout` per call (not zero).
    pub fn new(timeout: Duration) -> Result<Self, ConfigError> {
        non_zero_duration("timeout", timeout)?;
        Ok(TimeoutLayer {
            timeout,
            layer: Reporter::new("timeout"),
        })
    }

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
}

impl<S> Layer<S> for TimeoutLayer {
    type Service = Timeout<S>;

    fn layer(&self, inner: S) -> Timeout<S> {
        Timeout {
            inner,
            timeout: self.timeout,
            layer: self.layer.clone(),
        }
    }
}

/// The service of a [`TimeoutLayer`].
#[derive(Debug, Clone)]
pub struct Timeout<S> {
    inner: S,
    timeout: Duration,
    layer: Reporter,
}

impl<S, Req> Service<Req> for Timeout<S>
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

    #[inline]
    fn call(&mut self, request: Req) -> Self::Future {
        call_within(
            &mut self.inner,
            request,
            self.timeout,
            &self.layer,
            Instant::now(),
            None,
        )
    }
}

/// Calls `inner` bounded by `timeout` from `now` and by the task's current deadline,
/// whichever ends first; records latencies into `latencies` if given.
#[inline]
pub(crate) fn call_within<S, Req>(
    inner: &mut S,
    request: Req,
    timeout: Duration,
    layer: &Reporter,
    now: Instant,
    latencies: Option<&Arc<LatencyRecord>>,
) -> ResponseFuture<S::Future>
where
    S: Service<Req>,
{
    let own = Deadline::after_from(now, timeout);
    let (deadline, own_timeout) = match Deadline::current() {
        // A tie goes to the caller: its deadline passed, and no retry can help.
        Some(current) if current <= own => (current, false),
        _ => (own, true),
    };
    if deadline.instant() <= now {
        return ResponseFuture::too_late(layer);
    }
    let future = deadline.in_scope(|| inner.call(request));
    let future = if own_timeout {
        ResponseFuture::timing_out(future, deadline, layer.clone())
    } else {
        ResponseFuture::bounded(future, deadline, layer.clone(), "deadline passed")
    };
    match latencies {
        Some(latencies) => future.recording(latencies.clone(), now, own_timeout),
        None => future,
    }
}
