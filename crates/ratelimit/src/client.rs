//! [`ClientRateLimitLayer`]: a caller's own rate limit, for any service. A request over
//! the limit waits for its permit, up to its deadline and a maximum wait, or is refused
//! at once with a `Throttled` rejection.

use std::fmt;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::time::Instant;
use tower_bulwark_core::{
    BoxError, Criticality, Deadline, Listener, Name, Rejection, RejectionKind,
};
use tower_layer::Layer;
use tower_service::Service;

use crate::check::{Check, Quotas, Verdict};
use crate::client_future::{ClientFuture, Pending};
use crate::events::Reporter;
use crate::{DeadlineSource, Limiter, OnLimiterError, RateLimitEvent, TaskDeadline};

/// How long a request may wait for its permit by default.
pub const DEFAULT_MAX_WAIT: Duration = Duration::from_secs(1);

/// A rate limit on the calls a client makes, for any tower service (HTTP, gRPC, a
/// database): backpressure instead of a refusal from the server.
///
/// In `call` (where the request, and so its key and deadline, are known) the limiter is
/// asked for a permit. With one, the request goes on at once. Without, it waits for the
/// time the limiter says a permit will be free, as long as that ends before its deadline
/// (the task's current one by default; [`HttpDeadline`](crate::HttpDeadline) adds the
/// request's) and within [`max_wait`](ClientRateLimitBuilder::max_wait) (1 s) of the
/// call: then it asks again, and waits again if another caller took the permit. A wait
/// that would end too late is not begun: the call fails at once with a
/// [`Rejection`](tower_bulwark_core::Rejection) of kind `Throttled` carrying the wait as
/// its `retry_after`, which every classifier of the suite ignores and no retry repeats. A
/// wait that ends past its bound all the same (tokio's timers fire on whole milliseconds,
/// so a wait of 500 µs lasts up to 1 ms) fails then, with no `retry_after`: the request
/// is never sent past its deadline or its maximum wait.
/// `max_wait(Duration::ZERO)` refuses instead of waiting, always.
///
/// The waiting request holds the inner service that `poll_ready` readied (a clone takes
/// its place), as a bulkhead's queue does; dropping the response future ends the wait and
/// releases both: nothing is reserved while waiting, so nothing leaks. Waiting callers are
/// not queued: each wakes when its permit is due and the first to ask takes it (put a
/// bulkhead in front to bound how many wait). `poll_ready` is the inner service's.
///
/// ```
/// use std::time::Duration;
/// use tower::{service_fn, Layer, ServiceExt};
/// use tower_bulwark_ratelimit::{key, ClientRateLimitLayer, LocalLimiter, Quota};
///
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
/// // At most 2 calls per second to the partner API, one at a time.
/// let limiter = LocalLimiter::new(Quota::per_second(2)?.burst(1)?);
/// let layer = ClientRateLimitLayer::builder(limiter, key::global).build();
/// let client = layer.layer(service_fn(|n: u32| async move { Ok::<_, std::io::Error>(n) }));
///
/// let start = tokio::time::Instant::now();
/// client.clone().oneshot(1).await?;
/// client.clone().oneshot(2).await?; // waits for the next permit
/// assert_eq!(start.elapsed(), Duration::from_millis(500));
/// # Ok(())
/// # }
/// ```
pub struct ClientRateLimitLayer<L, F, D = TaskDeadline> {
    shared: Arc<ClientShared<L>>,
    key_of: F,
    deadline: D,
}

/// Builds a [`ClientRateLimitLayer`].
pub struct ClientRateLimitBuilder<L, F, D = TaskDeadline> {
    limiter: L,
    key_of: F,
    deadline: D,
    max_wait: Duration,
    on_error: OnLimiterError,
    reporter: Reporter,
}

/// What every service of a client layer shares.
pub(crate) struct ClientShared<L> {
    pub(crate) quotas: Quotas<L>,
    max_wait: Duration,
    on_error: OnLimiterError,
    pub(crate) reporter: Reporter,
}

impl<L, F> ClientRateLimitLayer<L, F> {
    /// A client limit over `limiter`, keyed by `key_of(&request)` (`None`: the request is
    /// not limited; [`key::global`](crate::key::global): one limit for every request).
    pub fn builder(limiter: L, key_of: F) -> ClientRateLimitBuilder<L, F> {
        ClientRateLimitBuilder {
            limiter,
            key_of,
            deadline: TaskDeadline,
            max_wait: DEFAULT_MAX_WAIT,
            on_error: OnLimiterError::default(),
            reporter: Reporter::new("ratelimit"),
        }
    }
}

impl<L, F, D> ClientRateLimitBuilder<L, F, D> {
    /// The longest a request waits for its permit (default 1 s): a longer wait is refused
    /// at once. `Duration::ZERO` never waits; `Duration::MAX` waits up to the deadline,
    /// however long.
    pub fn max_wait(mut self, max_wait: Duration) -> Self {
        self.max_wait = max_wait;
        self
    }

    /// Where the request's deadline comes from (default [`TaskDeadline`]).
    pub fn deadline_source<D2>(self, deadline: D2) -> ClientRateLimitBuilder<L, F, D2> {
        ClientRateLimitBuilder {
            limiter: self.limiter,
            key_of: self.key_of,
            deadline,
            max_wait: self.max_wait,
            on_error: self.on_error,
            reporter: self.reporter,
        }
    }

    /// What a request gets when the limiter fails (default [`OnLimiterError::FailOpen`]:
    /// it goes on; [`FailClosed`](OnLimiterError::FailClosed): a `Throttled` rejection).
    pub fn on_limiter_error(mut self, on_error: OnLimiterError) -> Self {
        self.on_error = on_error;
        self
    }

    /// The name in rejections, events and metric labels (default `ratelimit`).
    pub fn name(mut self, name: impl Into<Name>) -> Self {
        self.reporter.name = name.into();
        self
    }

    /// Adds a listener for the layer's events. Listeners run inline: keep them quick.
    pub fn on_event(mut self, listener: impl Listener<RateLimitEvent> + 'static) -> Self {
        self.reporter.listeners.push(listener);
        self
    }

    /// Records events through the `metrics` facade (`bulwark_ratelimit_requests_total`,
    /// `bulwark_ratelimit_wait_seconds`).
    #[cfg(feature = "metrics")]
    pub fn with_metrics(self) -> Self {
        self.on_event(crate::events::RateLimitMetricsListener::new())
    }

    /// The layer. (Every setting is valid: there is nothing to check.)
    pub fn build(self) -> ClientRateLimitLayer<L, F, D> {
        ClientRateLimitLayer {
            shared: Arc::new(ClientShared {
                quotas: Quotas::base(self.limiter),
                max_wait: self.max_wait,
                on_error: self.on_error,
                reporter: self.reporter,
            }),
            key_of: self.key_of,
            deadline: self.deadline,
        }
    }
}

/// What the client does next with a request.
pub(crate) enum Next {
    Call,
    Wait(Duration),
    Refuse(BoxError),
}

/// A refused request's wait: since when, and by when it must have its permit.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Wait {
    since: Instant,
    until: Instant,
}

impl<L> ClientShared<L> {
    /// Turns a verdict into the request's next step, and reports it. `wait` is the
    /// request's wait, begun at its first refusal (with its bound: `max_wait` from then,
    /// never past `deadline`).
    pub(crate) fn judge<K>(
        &self,
        verdict: Verdict,
        criticality: Criticality,
        deadline: Option<Deadline>,
        wait: &mut Option<Wait>,
    ) -> Next
    where
        L: Limiter<K>,
    {
        match verdict {
            Verdict::Admitted { base, .. } => {
                match wait {
                    Some(wait) => self.reporter.waited(criticality, wait.since.elapsed()),
                    None => self.reporter.admitted(criticality, base.remaining),
                }
                Next::Call
            }
            Verdict::Limited { decision, .. } => {
                let now = Instant::now();
                let until = wait
                    .get_or_insert_with(|| Wait {
                        since: now,
                        until: Deadline::after_from(now, self.max_wait)
                            .earliest(deadline)
                            .instant(),
                    })
                    .until;
                let retry_after = decision.retry_after;
                if now.checked_add(retry_after).is_some_and(|at| at <= until) {
                    return Next::Wait(retry_after);
                }
                Next::Refuse(self.refuse(
                    criticality,
                    Some(retry_after),
                    "rate limit: no permit before the deadline or the maximum wait",
                ))
            }
            Verdict::Failed(error) => {
                let open = self.on_error == OnLimiterError::FailOpen;
                self.reporter.failed(criticality, error, open);
                if open {
                    return Next::Call;
                }
                let rejection =
                    Rejection::new(RejectionKind::Throttled, self.reporter.name.clone())
                        .with_reason("rate limiter unavailable");
                Next::Refuse(rejection.into())
            }
        }
    }
}

impl<L> ClientShared<L> {
    /// A wait that ended past its bound (tokio's timers fire on whole milliseconds, so a
    /// wait shorter than one ends late; any may under load): the request is refused
    /// without asking again.
    pub(crate) fn overslept<K>(
        &self,
        wait: Option<Wait>,
        criticality: Criticality,
    ) -> Option<BoxError>
    where
        L: Limiter<K>,
    {
        if wait.is_none_or(|wait| Instant::now() <= wait.until) {
            return None;
        }
        Some(self.refuse(
            criticality,
            None,
            "rate limit: the wait for a permit ended past the deadline or the maximum wait",
        ))
    }

    /// A `Throttled` rejection, reported.
    fn refuse<K>(
        &self,
        criticality: Criticality,
        retry_after: Option<Duration>,
        reason: &'static str,
    ) -> BoxError
    where
        L: Limiter<K>,
    {
        let policy = self.quotas.base.quota().policy_name();
        self.reporter
            .limited(criticality, policy, retry_after.unwrap_or_default());
        let rejection = Rejection::new(RejectionKind::Throttled, self.reporter.name.clone())
            .with_reason(reason);
        match retry_after {
            Some(wait) => rejection.with_retry_after(wait),
            None => rejection,
        }
        .into()
    }
}

impl<L, F: Clone, D: Clone> Clone for ClientRateLimitLayer<L, F, D> {
    fn clone(&self) -> Self {
        ClientRateLimitLayer {
            shared: self.shared.clone(),
            key_of: self.key_of.clone(),
            deadline: self.deadline.clone(),
        }
    }
}

impl<S, L, F: Clone, D: Clone> Layer<S> for ClientRateLimitLayer<L, F, D> {
    type Service = ClientRateLimit<S, L, F, D>;

    fn layer(&self, inner: S) -> Self::Service {
        ClientRateLimit {
            inner,
            shared: self.shared.clone(),
            key_of: self.key_of.clone(),
            deadline: self.deadline.clone(),
        }
    }
}

/// The service of a [`ClientRateLimitLayer`].
pub struct ClientRateLimit<S, L, F, D = TaskDeadline> {
    inner: S,
    shared: Arc<ClientShared<L>>,
    key_of: F,
    deadline: D,
}

impl<S: Clone, L, F: Clone, D: Clone> Clone for ClientRateLimit<S, L, F, D> {
    fn clone(&self) -> Self {
        ClientRateLimit {
            inner: self.inner.clone(),
            shared: self.shared.clone(),
            key_of: self.key_of.clone(),
            deadline: self.deadline.clone(),
        }
    }
}

impl<S, L, K, F, D, Req> Service<Req> for ClientRateLimit<S, L, F, D>
where
    S: Service<Req> + Clone,
    S::Error: Into<BoxError>,
    L: Limiter<K>,
    F: Fn(&Req) -> Option<K>,
    D: DeadlineSource<Req>,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = ClientFuture<S, L, K, Req>;

    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    #[inline]
    fn call(&mut self, request: Req) -> Self::Future {
        let Some(key) = (self.key_of)(&request) else {
            return ClientFuture::called(self.inner.call(request));
        };
        let shared = &*self.shared;
        let criticality = Criticality::current().unwrap_or_default();
        let deadline = self.deadline.deadline(&request);
        let mut check = Check::new(key, criticality, &shared.quotas);
        let Some(verdict) = check.run_now(&shared.quotas) else {
            let acquire = shared.quotas.base.acquire(&check.key);
            let shared = self.shared.clone();
            let pending = Pending::new(check, self.readied(), request, deadline, None, shared);
            return ClientFuture::acquiring(acquire, pending);
        };
        let mut wait = None;
        match shared.judge(verdict, criticality, deadline, &mut wait) {
            Next::Call => ClientFuture::called(self.inner.call(request)),
            Next::Refuse(error) => ClientFuture::refused(error),
            Next::Wait(duration) => {
                let shared = self.shared.clone();
                let pending = Pending::new(check, self.readied(), request, deadline, wait, shared);
                ClientFuture::waiting(duration, pending)
            }
        }
    }
}

impl<S: Clone, L, F, D> ClientRateLimit<S, L, F, D> {
    /// The readied inner service, to go with a request that waits; a clone takes its place.
    fn readied(&mut self) -> S {
        let clone = self.inner.clone();
        std::mem::replace(&mut self.inner, clone)
    }

    /// The wrapped service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }
}

impl<L: fmt::Debug, F, D: fmt::Debug> fmt::Debug for ClientRateLimitLayer<L, F, D> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientRateLimitLayer")
            .field("shared", &self.shared)
            .field("deadline", &self.deadline)
            .finish_non_exhaustive()
    }
}

impl<L: fmt::Debug, F, D: fmt::Debug> fmt::Debug for ClientRateLimitBuilder<L, F, D> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientRateLimitBuilder")
            .field("limiter", &self.limiter)
            .field("deadline", &self.deadline)
            .field("max_wait", &self.max_wait)
            .field("on_error", &self.on_error)
            .field("name", &self.reporter.name)
            .finish_non_exhaustive()
    }
}

impl<S: fmt::Debug, L: fmt::Debug, F, D: fmt::Debug> fmt::Debug for ClientRateLimit<S, L, F, D> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientRateLimit")
            .field("inner", &self.inner)
            .field("shared", &self.shared)
            .field("deadline", &self.deadline)
            .finish_non_exhaustive()
    }
}

impl<L: fmt::Debug> fmt::Debug for ClientShared<L> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientShared")
            .field("limiter", &self.quotas.base)
            .field("max_wait", &self.max_wait)
            .field("on_error", &self.on_error)
            .field("name", &self.reporter.name)
            .finish()
    }
}
