//! [`RetryPolicy`]: a `tower::retry::Policy` with attempts, backoff, a budget and deadlines.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;

use tokio::time::{sleep, Sleep};
use tower::retry::budget::Budget;
use tower_bulwark_core::config::non_zero;
use tower_bulwark_core::{ConfigError, Deadline, Listener, Listeners};

use crate::{
    Backoff, Backoffs, Decision, Jitter, NoRetry, RatioBudget, RetryClassify, RetryErrors,
    RetryEvent,
};

/// Retries calls of a `tower::retry::Retry` service (build it with
/// `tower::retry::RetryLayer::new(policy)` or [`RetryPolicy::layer`]).
///
/// For each call: at most `max_attempts` attempts (the first counts); a retry only when the
/// classifier says so, the request can be sent again (a [`ReplayBody`](crate::ReplayBody)
/// within its limit, when the body is one), the shared budget allows it, and its wait (the
/// backoff, or the server's pushback if longer) ends before the caller's [`Deadline`] (the
/// task's current one, or the request's own: see [`RetryClassify::request_deadline`]). The
/// budget gets one deposit per call.
///
/// tower's `Retry` clones the policy for every call; a clone costs one `Arc` clone.
///
/// The request must be `Clone`: each attempt is sent a copy. An HTTP request with a
/// streaming body (axum's `Body`, hyper's `Incoming`) is not; read it into memory first
/// (`String`, `Bytes`, `Full<Bytes>`), or wrap it in a [`ReplayBody`](crate::ReplayBody)
/// with [`ReplayLayer`](crate::ReplayLayer). The compiler reports a missing `Clone` as
/// *"the method `oneshot` exists for struct `Retry<…>`, but its trait bounds were not
/// satisfied"*.
///
/// ```
/// use std::sync::Arc;
/// use std::time::Duration;
/// use tower::{service_fn, Layer, ServiceExt};
/// use tower_bulwark_retry::{RatioBudget, RetryPolicy};
///
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() {
/// let budget = Arc::new(RatioBudget::new(Duration::from_secs(10), 10, 0.2).unwrap());
/// let policy = RetryPolicy::builder().max_attempts(3).budget(budget).build().unwrap();
/// let calls = std::sync::atomic::AtomicUsize::new(0);
/// let calls = &calls;
/// let flaky = service_fn(move |n: u32| async move {
///     if calls.fetch_add(1, std::sync::atomic::Ordering::SeqCst) < 2 { Err("busy") } else { Ok(n) }
/// });
/// let service = policy.layer().layer(flaky);
/// assert_eq!(service.oneshot(7).await.unwrap(), 7);
/// # }
/// ```
pub struct RetryPolicy<C = RetryErrors> {
    shared: Arc<Shared>,
    classify: C,
    /// Attempts made so far for this call.
    attempts: u32,
    /// Created at the first retry, seeded from the shared counter; boxed so the policy that
    /// every call carries stays small when nothing is retried.
    backoffs: Option<Box<Backoffs>>,
}

struct Shared {
    listeners: Listeners<RetryEvent>,
    max_attempts: u32,
    backoff: Backoff,
    jitter: Jitter,
    max_wait: Duration,
    budget: Arc<dyn Budget + Send + Sync>,
    seeds: AtomicU64,
}

/// Builds a [`RetryPolicy`].
///
/// Defaults: 3 attempts; exponential backoff from 50 ms doubling, full jitter, at most 5 s
/// per wait (and pushback beyond 5 s means "do not retry"); a budget of 20% of calls plus
/// 10 retries per second over 10 s; every `Err` retried.
pub struct Builder<C = RetryErrors> {
    listeners: Listeners<RetryEvent>,
    max_attempts: u32,
    backoff: Backoff,
    jitter: Jitter,
    max_wait: Duration,
    budget: Option<Arc<dyn Budget + Send + Sync>>,
    seed: Option<u64>,
    classify: C,
}

impl RetryPolicy {
    /// Starts configuring a policy.
    pub fn builder() -> Builder {
        Builder {
            listeners: Listeners::new(),
            max_attempts: 3,
            backoff: Backoff::Exponential {
                initial: Duration::from_millis(50),
                multiplier: 2.0,
            },
            jitter: Jitter::Full,
            max_wait: Duration::from_secs(5),
            budget: None,
            seed: None,
            classify: RetryErrors,
        }
    }
}

impl<C> Builder<C> {
    /// Attempts per call, the first included (at least 1).
    pub fn max_attempts(mut self, attempts: u32) -> Self {
        self.max_attempts = attempts;
        self
    }

    /// How the wait between attempts grows, and how it is spread.
    pub fn backoff(mut self, backoff: Backoff, jitter: Jitter) -> Self {
        self.backoff = backoff;
        self.jitter = jitter;
        self
    }

    /// The longest wait between attempts; a server asking for longer is not retried.
    pub fn max_wait(mut self, wait: Duration) -> Self {
        self.max_wait = wait;
        self
    }

    /// The budget shared by every call (and by other layers holding the same `Arc`).
    pub fn budget(mut self, budget: Arc<dyn Budget + Send + Sync>) -> Self {
        self.budget = Some(budget);
        self
    }

    /// Seeds the jitter, for exact tests.
    pub fn seed(mut self, seed: u64) -> Self {
        self.seed = Some(seed);
        self
    }

    /// Adds a listener for the policy's events (retries and refusals to retry).
    pub fn on_event(mut self, listener: impl Listener<RetryEvent> + 'static) -> Self {
        self.listeners.push(listener);
        self
    }

    /// Records events through the `metrics` facade (`bulwark_retry_*`).
    #[cfg(feature = "metrics")]
    pub fn with_metrics(self) -> Self {
        self.on_event(crate::events::RetryMetricsListener::new())
    }

    /// Which results are retried.
    pub fn classify<C2>(self, classify: C2) -> Builder<C2> {
        Builder {
            listeners: self.listeners,
            max_attempts: self.max_attempts,
            backoff: self.backoff,
            jitter: self.jitter,
            max_wait: self.max_wait,
            budget: self.budget,
            seed: self.seed,
            classify,
        }
    }

    /// Checks the settings and builds the policy.
    pub fn build(self) -> Result<RetryPolicy<C>, ConfigError> {
        non_zero("max_attempts", self.max_attempts as usize)?;
        // Checks the backoff's own settings.
        Backoffs::new(self.backoff, self.jitter, self.max_wait)?;
        let budget = match self.budget {
            Some(budget) => budget,
            None => Arc::new(RatioBudget::new(Duration::from_secs(10), 10, 0.2)?),
        };
        let seed = self
            .seed
            .unwrap_or_else(|| tower_bulwark_core::SeededRng::from_entropy().next_u64());
        Ok(RetryPolicy {
            shared: Arc::new(Shared {
                listeners: self.listeners,
                max_attempts: self.max_attempts,
                backoff: self.backoff,
                jitter: self.jitter,
                max_wait: self.max_wait,
                budget,
                seeds: AtomicU64::new(seed),
            }),
            classify: self.classify,
            attempts: 1,
            backoffs: None,
        })
    }
}

impl<C: Clone> RetryPolicy<C> {
    /// A `tower::retry::RetryLayer` with this policy.
    pub fn layer(self) -> tower::retry::RetryLayer<Self> {
        tower::retry::RetryLayer::new(self)
    }

    /// This policy's layer with a timeout on each attempt: an attempt that takes longer
    /// fails with tower's `Elapsed` error, which the classifier sees as an `Err` (retried by
    /// [`RetryErrors`] and `HttpRetry`), while the call as a whole is bounded by
    /// `max_attempts`, the waits and the caller's deadline.
    ///
    /// ```
    /// use std::time::Duration;
    /// use tower::{service_fn, Layer, ServiceExt};
    /// use tower_bulwark_retry::RetryPolicy;
    ///
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() {
    /// let policy = RetryPolicy::builder().max_attempts(2).build().unwrap();
    /// let slow = service_fn(|_: ()| async {
    ///     tokio::time::sleep(Duration::from_secs(10)).await;
    ///     Ok::<_, std::io::Error>(())
    /// });
    /// let service = policy.layer_with_attempt_timeout(Duration::from_millis(100)).layer(slow);
    /// assert!(service.oneshot(()).await.is_err());
    /// # }
    /// ```
    pub fn layer_with_attempt_timeout(
        self,
        timeout: Duration,
    ) -> tower::layer::util::Stack<tower::timeout::TimeoutLayer, tower::retry::RetryLayer<Self>>
    {
        tower::layer::util::Stack::new(tower::timeout::TimeoutLayer::new(timeout), self.layer())
    }
}

impl<C> RetryPolicy<C> {
    /// The wait before the next attempt, or `None` when the call must not be retried.
    fn next_wait(
        &mut self,
        pushback: Option<Duration>,
        deadline: Option<Deadline>,
    ) -> Option<Duration> {
        let decided = self.decide_wait(pushback, deadline);
        let listeners = &self.shared.listeners;
        match decided {
            Ok(wait) => listeners.emit(|| RetryEvent::Retrying {
                attempt: self.attempts,
                wait,
            }),
            Err(reason) => listeners.emit(|| RetryEvent::NotRetried { reason }),
        }
        decided.ok()
    }

    fn decide_wait(
        &mut self,
        pushback: Option<Duration>,
        deadline: Option<Deadline>,
    ) -> Result<Duration, NoRetry> {
        let shared = &self.shared;
        if self.attempts >= shared.max_attempts {
            return Err(NoRetry::MaxAttempts);
        }
        if pushback.is_some_and(|wait| wait > shared.max_wait) {
            return Err(NoRetry::Pushback);
        }
        let backoffs = self.backoffs.get_or_insert_with(|| {
            let seed = shared.seeds.fetch_add(0x9E37_79B9_7F4A_7C15, Relaxed);
            Box::new(
                Backoffs::new(shared.backoff, shared.jitter, shared.max_wait)
                    .expect("checked when the policy was built")
                    .seeded(seed),
            )
        });
        let wait = backoffs
            .wait(self.attempts)
            .max(pushback.unwrap_or_default());
        // No retry whose wait outlives the caller's deadline.
        let deadline = match (deadline, Deadline::current()) {
            (Some(a), b) => Some(a.earliest(b)),
            (None, b) => b,
        };
        if let Some(deadline) = deadline {
            // `Deadline::after` saturates for an enormous wait instead of overflowing.
            if Deadline::after(wait) >= deadline {
                return Err(NoRetry::Deadline);
            }
        }
        if !shared.budget.withdraw() {
            return Err(NoRetry::Budget);
        }
        self.attempts += 1;
        Ok(wait)
    }
}

impl<C, Req, Res, E> tower::retry::Policy<Req, Res, E> for RetryPolicy<C>
where
    C: RetryClassify<Req, Res, E> + Clone,
    Req: Clone + 'static,
{
    type Future = Sleep;

    fn retry(&mut self, request: &mut Req, result: &mut Result<Res, E>) -> Option<Sleep> {
        if self.attempts == 1 {
            self.shared.budget.deposit();
        }
        match self.classify.decide(request, result) {
            Decision::Done => None,
            Decision::Retry { pushback } => {
                if !can_replay(request) {
                    let listeners = &self.shared.listeners;
                    listeners.emit(|| RetryEvent::NotRetried {
                        reason: NoRetry::BodyTooLarge,
                    });
                    return None;
                }
                let deadline = self.classify.request_deadline(request);
                let wait = self.next_wait(pushback, deadline)?;
                self.classify.prepare_retry(request, self.attempts);
                Some(sleep(wait))
            }
        }
    }

    fn clone_request(&mut self, request: &Req) -> Option<Req> {
        Some(request.clone())
    }
}

/// Whether the request can be sent again: false only for an `http::Request<ReplayBody>`
/// whose body outgrew its replay limit.
fn can_replay<Req: 'static>(request: &Req) -> bool {
    #[cfg(feature = "http")]
    {
        let request: &dyn std::any::Any = request;
        if let Some(request) = request.downcast_ref::<http::Request<crate::ReplayBody>>() {
            return request.body().can_replay();
        }
    }
    let _ = request;
    true
}

impl<C: Clone> Clone for RetryPolicy<C> {
    /// A fresh policy for a new call: attempts start over, the budget is shared.
    fn clone(&self) -> Self {
        RetryPolicy {
            shared: self.shared.clone(),
            classify: self.classify.clone(),
            attempts: 1,
            backoffs: None,
        }
    }
}

impl<C> fmt::Debug for RetryPolicy<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RetryPolicy")
            .field("max_attempts", &self.shared.max_attempts)
            .field("attempts", &self.attempts)
            .finish_non_exhaustive()
    }
}

impl<C> fmt::Debug for Builder<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Builder")
            .field("max_attempts", &self.max_attempts)
            .field("backoff", &self.backoff)
            .finish_non_exhaustive()
    }
}
