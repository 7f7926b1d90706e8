//! [`AdaptiveThrottleLayer`]: client-side adaptive throttling (Google SRE, Envoy admission
//! control).

use std::future::Future;
use std::pin::Pin;
use std::task::{ready, Context, Poll};
use std::time::Duration;

use pin_project::pin_project;
use tokio::time::Instant;
use tower_bulwark_core::config::ratio;
use tower_bulwark_core::{
    BoxError, Classify, ConfigError, ErrorsAreFailures, Name, Outcome, Rejection, RejectionKind,
    SharedRng,
};
use tower_layer::Layer;
use tower_service::Service;

use crate::Throttled;
use tower_bulwark_core::sync::{Arc, AtomicU64, Ordering::*};
use tower_bulwark_core::window::SlidingCounts;

/// How many slices the window is kept in.
const SLICES: u32 = 10;

/// Rejects calls locally, before they leave, when the backend has been refusing them.
///
/// Over a sliding window the client counts its `requests` and the backend's `accepts`
/// (calls the classifier's [`classify_load`](Classify::classify_load) does not call
/// failures: with `HttpClassifier` or `GrpcClassifier`, a shed for overload is not an
/// accept; a refusal by a bulwark layer below the throttle, such as an open breaker, is
/// neither a request nor an accept: the call never left), and rejects each new call
/// with probability
///
/// ```text
/// p = min(max_rejection, max(0, (requests - accepts / threshold) / (requests + 1)) ^ (1 / aggression))
/// ```
///
/// which is Google SRE's `(requests - K * accepts) / (requests + 1)` with `K = 1 /
/// threshold`, plus Envoy admission control's aggression and cap. Below
/// `min_requests_per_second` nothing is rejected. Defaults: `K = 2` (threshold 0.5), a
/// 2-minute window, aggression 1, rejection capped at 90%, no minimum rate.
///
/// A call counts when its outcome is known: a local rejection at once, a call sent when
/// it ends. A call dropped before it ends (the caller gave up, lost a race, disconnected)
/// counts as neither a request nor an accept: it says nothing about the backend.
///
/// A local rejection is a `Throttled` [`Rejection`] (HTTP 429, gRPC `RESOURCE_EXHAUSTED`):
/// the backend never sees the call.
///
/// ```
/// use tower::{service_fn, Layer, ServiceExt};
/// use tower_bulwark_shed::AdaptiveThrottleLayer;
///
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() {
/// let throttle = AdaptiveThrottleLayer::builder().k(2.0).build().unwrap();
/// let client = throttle.layer(service_fn(|n: u32| async move { Ok::<_, std::io::Error>(n) }));
/// assert_eq!(client.oneshot(1).await.unwrap(), 1);
/// assert_eq!(throttle.rejection_probability(), 0.0);
/// # }
/// ```
#[derive(Debug)]
pub struct AdaptiveThrottleLayer<C = ErrorsAreFailures> {
    shared: Arc<Throttle>,
    classify: C,
}

impl<C: Clone> Clone for AdaptiveThrottleLayer<C> {
    fn clone(&self) -> Self {
        AdaptiveThrottleLayer {
            shared: self.shared.clone(),
            classify: self.classify.clone(),
        }
    }
}

/// Builds an [`AdaptiveThrottleLayer`].
#[derive(Debug)]
pub struct ThrottleBuilder<C = ErrorsAreFailures> {
    name: Name,
    threshold: f64,
    aggression: f64,
    max_rejection: f64,
    min_rps: f64,
    window: Duration,
    seed: Option<u64>,
    classify: C,
}

impl AdaptiveThrottleLayer {
    /// Starts configuring the layer.
    pub fn builder() -> ThrottleBuilder {
        ThrottleBuilder {
            name: Name::from("throttle"),
            threshold: 0.5,
            aggression: 1.0,
            max_rejection: 0.9,
            min_rps: 0.0,
            window: Duration::from_secs(120),
            seed: None,
            classify: ErrorsAreFailures,
        }
    }
}

impl<C> AdaptiveThrottleLayer<C> {
    /// The probability a call starting now is rejected.
    pub fn rejection_probability(&self) -> f64 {
        let shared = &self.shared;
        shared.probability(shared.window.since_start(Instant::now()))
    }
}

impl<C> ThrottleBuilder<C> {
    /// Names the layer in its rejections.
    pub fn name(mut self, name: impl Into<Name>) -> Self {
        self.name = name.into();
        self
    }

    /// SRE's `K` (at least 1): requests may exceed accepts by this factor before any is
    /// rejected. The same as [`success_rate_threshold`](Self::success_rate_threshold)`(1 / k)`.
    pub fn k(mut self, k: f64) -> Self {
        self.threshold = 1.0 / k;
        self
    }

    /// Envoy's success-rate threshold (above 0, at most 1): rejection starts when the
    /// accepted share falls below it.
    pub fn success_rate_threshold(mut self, threshold: f64) -> Self {
        self.threshold = threshold;
        self
    }

    /// Envoy's aggression (at least 1): higher rejects more, sooner.
    pub fn aggression(mut self, aggression: f64) -> Self {
        self.aggression = aggression;
        self
    }

    /// The highest rejection probability (0 to 1).
    pub fn max_rejection_probability(mut self, probability: f64) -> Self {
        self.max_rejection = probability;
        self
    }

    /// Below this many requests per second over the window, nothing is rejected.
    pub fn min_requests_per_second(mut self, rps: f64) -> Self {
        self.min_rps = rps;
        self
    }

    /// How far back requests and accepts count (1 s to 1 hour).
    pub fn window(mut self, window: Duration) -> Self {
        self.window = window;
        self
    }

    /// Seeds the rejection draws, for exact tests.
    pub fn seed(mut self, seed: u64) -> Self {
        self.seed = Some(seed);
        self
    }

    /// Which results the backend accepted (anything but `Failure`).
    pub fn classify<C2>(self, classify: C2) -> ThrottleBuilder<C2> {
        ThrottleBuilder {
            name: self.name,
            threshold: self.threshold,
            aggression: self.aggression,
            max_rejection: self.max_rejection,
            min_rps: self.min_rps,
            window: self.window,
            seed: self.seed,
            classify,
        }
    }

    /// Checks the settings.
    pub fn build(self) -> Result<AdaptiveThrottleLayer<C>, ConfigError> {
        if !(self.threshold > 0.0 && self.threshold <= 1.0) {
            return Err(ConfigError::new(
                "success_rate_threshold",
                format!(
                    "must be above 0 and at most 1 (k at least 1), got {}",
                    self.threshold
                ),
            ));
        }
        if !(self.aggression.is_finite() && self.aggression >= 1.0) {
            return Err(ConfigError::new(
                "aggression",
                format!("must be a finite number >= 1, got {}", self.aggression),
            ));
        }
        let max_rejection = ratio("max_rejection_probability", self.max_rejection)?;
        if !(self.min_rps.is_finite() && self.min_rps >= 0.0) {
            return Err(ConfigError::new(
                "min_requests_per_second",
                format!("must be a number >= 0, got {}", self.min_rps),
            ));
        }
        if !(Duration::from_secs(1)..=Duration::from_secs(3600)).contains(&self.window) {
            return Err(ConfigError::new(
                "window",
                format!("must be within 1s..=1h, got {:?}", self.window),
            ));
        }
        let seed = self
            .seed
            .unwrap_or_else(|| tower_bulwark_core::SeededRng::from_entropy().next_u64());
        Ok(AdaptiveThrottleLayer {
            shared: Arc::new(Throttle {
                name: self.name,
                threshold: self.threshold,
                aggression: self.aggression,
                max_rejection,
                min_requests: self.min_rps * self.window.as_secs_f64(),
                window: Window::new(self.window),
                draws: SharedRng::new(seed),
                cached: Cached::default(),
            }),
            classify: self.classify,
        })
    }
}

impl<S, C: Clone> Layer<S> for AdaptiveThrottleLayer<C> {
    type Service = AdaptiveThrottle<S, C>;

    fn layer(&self, inner: S) -> Self::Service {
        AdaptiveThrottle {
            inner,
            shared: self.shared.clone(),
            classify: self.classify.clone(),
        }
    }
}

/// The service of an [`AdaptiveThrottleLayer`].
#[derive(Debug, Clone)]
pub struct AdaptiveThrottle<S, C> {
    inner: S,
    shared: Arc<Throttle>,
    classify: C,
}

#[derive(Debug)]
struct Throttle {
    name: Name,
    threshold: f64,
    aggression: f64,
    max_rejection: f64,
    /// `min_requests_per_second` over the whole window.
    min_requests: f64,
    window: Window,
    draws: SharedRng,
    /// The probability last computed, kept while it cannot have risen (see `probability`).
    cached: Cached,
}

/// A probability of zero stays zero while only accepts come in (each lowers
/// `requests - accepts / threshold`), until a bucket of the window expires. So with no
/// failure since, in the same bucket, the last zero still holds, and the success path
/// reads two words instead of the window. Any other probability is computed afresh.
#[derive(Debug, Default)]
struct Cached {
    /// Where the last zero holds: the failures counted before it (low 32 bits of the
    /// count, high half) and its bucket plus one (low 32 bits, low half); zero when none.
    zero: AtomicU64,
    /// Failures counted, rejections included: each may raise the probability.
    failures: AtomicU64,
}

impl Throttle {
    /// The probability that a call starting at `now` (nanoseconds since start) is rejected.
    #[inline]
    fn probability(&self, now: u64) -> f64 {
        let key = self.zero_key(now, self.cached.failures.load(Acquire));
        // A clock read behind the window's latest add (a call that read it, then waited)
        // computes afresh: the add may have expired a bucket that time still holds.
        if self.cached.zero.load(Acquire) == key
            && self.window.bucket_of(now) >= self.window.latest_bucket()
        {
            return 0.0;
        }
        self.compute(now, key)
    }

    /// The word a zero computed at `now`, after `failures` failures, is kept under.
    #[inline]
    fn zero_key(&self, now: u64, failures: u64) -> u64 {
        let bucket = (self.window.bucket_of(now) as u32).wrapping_add(1).max(1);
        ((failures as u32 as u64) << 32) | u64::from(bucket)
    }

    #[cold]
    fn compute(&self, now: u64, key: u64) -> f64 {
        // `key` holds the failures counted before the window is read: a failure counted
        // after changes the count, so the zero kept here is not found again.
        let (requests, accepts) = self.window.totals(now);
        let p = probability(
            requests as f64,
            accepts as f64,
            self.threshold,
            self.aggression,
            self.max_rejection,
            self.min_requests,
        );
        // A zero for too few requests is not kept: an accept can bring the window up to
        // the minimum, with failures in it.
        let keep = p == 0.0 && requests as f64 >= self.min_requests;
        self.cached.zero.store(if keep { key } else { 0 }, Release);
        p
    }

    /// Counts a call whose outcome is known at `now` (nanoseconds since start): a slow
    /// failure counts for a whole window after it ends.
    fn count(&self, now: u64, accepted: bool) {
        self.window.add(now, accepted);
        if !accepted {
            // After the add: a zero computed from a window without it is not found again.
            self.cached.failures.fetch_add(1, AcqRel);
        }
    }
}

/// The rejection probability for `requests` and `accepts` over the window.
fn probability(
    requests: f64,
    accepts: f64,
    threshold: f64,
    aggression: f64,
    max_rejection: f64,
    min_requests: f64,
) -> f64 {
    if requests < min_requests || requests == 0.0 {
        return 0.0;
    }
    let base = (requests - accepts / threshold) / (requests + 1.0);
    if base <= 0.0 {
        return 0.0;
    }
    base.powf(1.0 / aggression).min(max_rejection)
}

impl<S, C, Req> Service<Req> for AdaptiveThrottle<S, C>
where
    S: Service<Req>,
    S::Error: Into<BoxError> + 'static,
    C: Classify<S::Response, S::Error> + Clone,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = ThrottleFuture<S::Future, C>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, request: Req) -> Self::Future {
        let shared = &self.shared;
        let now = shared.window.since_start(Instant::now());
        let p = shared.probability(now);
        if p > 0.0 && shared.draws.next_unit() < p {
            shared.count(now, false);
            let rejection = Rejection::new(RejectionKind::Throttled, shared.name.clone())
                .with_reason("client-side throttling");
            return ThrottleFuture {
                kind: ThrottleKind::Rejected {
                    error: Some(Box::new(Throttled::new(rejection))),
                },
            };
        }
        ThrottleFuture {
            kind: ThrottleKind::Called {
                future: self.inner.call(request),
                throttle: Some(shared.clone()),
                classify: self.classify.clone(),
            },
        }
    }
}

/// Response future of [`AdaptiveThrottle`]: counts the call when it ends; dropped before,
/// counts nothing.
#[pin_project]
#[derive(Debug)]
pub struct ThrottleFuture<F, C> {
    #[pin]
    kind: ThrottleKind<F, C>,
}

#[pin_project(project = ThrottleProjection)]
#[derive(Debug)]
enum ThrottleKind<F, C> {
    Called {
        #[pin]
        future: F,
        throttle: Option<Arc<Throttle>>,
        classify: C,
    },
    Rejected {
        error: Option<BoxError>,
    },
}

/// Whether a bulwark layer below the throttle refused the call before it left (an open
/// breaker, a full bulkhead): the backend never saw it, so it is neither a request to
/// nor an accept by the backend. A layer's own attempt timeout is not a refusal.
fn is_local_refusal<T, E: 'static>(result: &Result<T, E>) -> bool {
    match result {
        Ok(_) => false,
        Err(error) => Rejection::find_in(error)
            .is_some_and(|rejection| rejection.kind().outcome() == Outcome::Ignored),
    }
}

impl<F, C, T, E> Future for ThrottleFuture<F, C>
where
    F: Future<Output = Result<T, E>>,
    E: Into<BoxError> + 'static,
    C: Classify<T, E>,
{
    type Output = Result<T, BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().kind.project() {
            ThrottleProjection::Called {
                future,
                throttle,
                classify,
            } => {
                let result = ready!(future.poll(cx));
                if let Some(throttle) = throttle.take() {
                    if !is_local_refusal(&result) {
                        let accepted = classify.classify_load(&result) != Outcome::Failure;
                        let now = throttle.window.since_start(Instant::now());
                        throttle.count(now, accepted);
                    }
                }
                Poll::Ready(result.map_err(Into::into))
            }
            ThrottleProjection::Rejected { error } => Poll::Ready(Err(error
                .take()
                .unwrap_or_else(|| "ThrottleFuture polled after completion".into()))),
        }
    }
}

/// Requests and accepts over a sliding window: core's [`SlidingCounts`] (lock-free, no
/// count lost to a racing expiry), timed from the layer's creation.
#[derive(Debug)]
struct Window {
    start: Instant,
    counts: SlidingCounts<2>,
}

impl Window {
    fn new(window: Duration) -> Self {
        Window {
            start: Instant::now(),
            counts: SlidingCounts::new(window, SLICES),
        }
    }

    fn since_start(&self, now: Instant) -> u64 {
        u64::try_from(now.saturating_duration_since(self.start).as_nanos()).unwrap_or(u64::MAX)
    }

    /// The bucket `now` (nanoseconds since start) falls in.
    #[inline]
    fn bucket_of(&self, now: u64) -> u64 {
        self.counts.bucket_of(now)
    }

    /// The latest bucket a call was counted in.
    #[inline]
    fn latest_bucket(&self) -> u64 {
        self.counts.latest_bucket()
    }

    /// Counts a request at `now` (nanoseconds since start), and an accept if the backend
    /// accepted it.
    fn add(&self, now: u64, accepted: bool) {
        self.counts.add(now, [1, u32::from(accepted)]);
    }

    /// Requests and accepts in the window ending at `now` (nanoseconds since start).
    fn totals(&self, now: u64) -> (u64, u64) {
        let [requests, accepts] = self.counts.totals(now);
        (requests, accepts)
    }
}

#[cfg(all(test, not(bulwark_loom)))]
mod tests {
    use super::*;

    #[test]
    fn the_probability_at_its_edges() {
        let p = |requests: f64, accepts: f64| probability(requests, accepts, 0.5, 1.0, 0.9, 0.0);
        assert_eq!(p(0.0, 0.0), 0.0, "no requests");
        assert_eq!(p(100.0, 100.0), 0.0, "all succeeding");
        assert_eq!(p(100.0, 50.0), 0.0, "exactly K x accepts");
        // All failing: (100 - 0) / 101, capped at 0.9.
        assert_eq!(p(100.0, 0.0), 0.9);
        assert!((probability(100.0, 0.0, 0.5, 1.0, 1.0, 0.0) - 100.0 / 101.0).abs() < 1e-12);
        // (100 - 2 x 30) / 101 = 40 / 101.
        assert!((p(100.0, 30.0) - 40.0 / 101.0).abs() < 1e-12);
        // Aggression 2: the square root, larger.
        let aggressive = probability(100.0, 30.0, 0.5, 2.0, 0.9, 0.0);
        assert!((aggressive - (40.0f64 / 101.0).sqrt()).abs() < 1e-12);
        // Below the minimum rate: nothing.
        assert_eq!(probability(100.0, 0.0, 0.5, 1.0, 0.9, 101.0), 0.0);
    }

    #[tokio::test(start_paused = true)]
    async fn counts_leave_the_window() {
        let window = Window::new(Duration::from_secs(10));
        let now = window.since_start(Instant::now());
        let later = |secs: u64| now + Duration::from_secs(secs).as_nanos() as u64;
        window.add(now, true);
        for _ in 0..4 {
            window.add(now, false);
        }
        assert_eq!(window.totals(now), (5, 1));
        assert_eq!(window.totals(later(9)), (5, 1));
        assert_eq!(window.totals(later(10)), (0, 0));
    }

    const SECOND: u64 = 1_000_000_000;

    /// Counts `n` calls at `at` nanoseconds since start.
    fn count(throttle: &Throttle, at: u64, n: usize, accepted: bool) {
        for _ in 0..n {
            throttle.count(at, accepted);
        }
    }

    #[test]
    fn a_kept_zero_ends_with_the_next_failure() {
        let layer = AdaptiveThrottleLayer::builder()
            .window(Duration::from_secs(10))
            .build()
            .unwrap();
        let throttle = &layer.shared;
        count(throttle, 0, 100, true);
        assert_eq!(throttle.probability(0), 0.0);
        assert_ne!(throttle.cached.zero.load(Relaxed), 0, "kept");
        assert_eq!(throttle.probability(0), 0.0, "and found");
        // 300 failures: (400 - 100 / 0.5) / 401, at once, in the same bucket.
        count(throttle, 0, 300, false);
        assert!((throttle.probability(0) - 200.0 / 401.0).abs() < 1e-12);
        assert_eq!(
            throttle.cached.zero.load(Relaxed),
            0,
            "not a zero: nothing kept"
        );
    }

    #[test]
    fn a_zero_for_too_few_requests_is_not_kept() {
        // At least 10 requests a second over 10 s: 100.
        let layer = AdaptiveThrottleLayer::builder()
            .window(Duration::from_secs(10))
            .min_requests_per_second(10.0)
            .build()
            .unwrap();
        let throttle = &layer.shared;
        count(throttle, 0, 99, false);
        assert_eq!(throttle.probability(0), 0.0, "below the minimum");
        // An accept brings the window to the minimum: (100 - 1 / 0.5) / 101, capped.
        count(throttle, 0, 1, true);
        assert_eq!(
            throttle.probability(0),
            0.9,
            "the accept did not hide the failures"
        );
    }

    #[test]
    fn a_kept_zero_is_computed_again_when_a_bucket_expires() {
        let layer = AdaptiveThrottleLayer::builder()
            .window(Duration::from_secs(10))
            .build()
            .unwrap();
        let throttle = &layer.shared;
        count(throttle, 0, 100, true);
        count(throttle, 5 * SECOND, 60, false);
        // 160 requests, 100 accepts: 160 - 100 / 0.5 < 0.
        assert_eq!(throttle.probability(5 * SECOND), 0.0);
        // The accepts' bucket leaves the window: 60 requests, no accept (60 / 61, capped).
        assert_eq!(throttle.probability(10 * SECOND + SECOND / 2), 0.9);
    }

    #[test]
    fn draws_are_uniform_enough() {
        let throttle = AdaptiveThrottleLayer::builder().seed(7).build().unwrap();
        let draws: Vec<f64> = (0..10_000)
            .map(|_| throttle.shared.draws.next_unit())
            .collect();
        assert!(draws.iter().all(|d| (0.0..1.0).contains(d)));
        let below_half = draws.iter().filter(|d| **d < 0.5).count();
        assert!((4_800..5_200).contains(&below_half), "{below_half}");
    }

    mod kept_zero_model {
        use super::super::*;
        use proptest::prelude::*;

        #[derive(Debug, Clone)]
        enum Op {
            /// Time moves on by this many ms.
            Advance(u64),
            /// `n` calls that started `back` ms ago end now.
            Count { back: u64, accepted: bool, n: usize },
            /// A call starts now (or `stale` ms before now: a clock read before a delay).
            Probe { stale: u64 },
        }

        fn op(window_ms: u64, stale: bool) -> impl Strategy<Value = Op> {
            prop_oneof![
                (0..window_ms / 3).prop_map(Op::Advance),
                (0..window_ms + window_ms / 5, any::<bool>(), 1..40usize)
                    .prop_map(|(back, accepted, n)| Op::Count { back, accepted, n }),
                (0..if stale { window_ms / 5 } else { 1 }).prop_map(|stale| Op::Probe { stale }),
            ]
        }

        fn run(
            threshold: f64,
            aggression: f64,
            max: f64,
            min_rps: f64,
            window_ms: u64,
            ops: Vec<Op>,
        ) -> Result<(), TestCaseError> {
            let layer = AdaptiveThrottleLayer::builder()
                .window(Duration::from_millis(window_ms))
                .success_rate_threshold(threshold)
                .aggression(aggression)
                .max_rejection_probability(max)
                .min_requests_per_second(min_rps)
                .build()
                .unwrap();
            let t = &layer.shared;
            let ms = 1_000_000u64;
            let mut now = 0u64;
            for (i, op) in ops.iter().enumerate() {
                match *op {
                    Op::Advance(d) => now += d * ms,
                    Op::Count { back, accepted, n } => {
                        for _ in 0..n {
                            t.count(now.saturating_sub(back * ms), accepted);
                        }
                    }
                    Op::Probe { stale } => {
                        let at = now.saturating_sub(stale * ms);
                        let kept = t.probability(at);
                        let (r, a) = t.window.totals(at);
                        let fresh = probability(
                            r as f64,
                            a as f64,
                            t.threshold,
                            t.aggression,
                            t.max_rejection,
                            t.min_requests,
                        );
                        prop_assert_eq!(kept, fresh, "op {} at {} ns: totals {:?}", i, at, (r, a));
                    }
                }
            }
            Ok(())
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(3000))]
            #[test]
            fn the_kept_zero_agrees_with_a_fresh_computation(
                threshold in prop_oneof![Just(1.0), Just(0.5), 0.01f64..=1.0],
                aggression in prop_oneof![Just(1.0), 1.0f64..4.0],
                max in prop_oneof![Just(0.9), Just(0.0), Just(1.0), 0.0f64..=1.0],
                min_rps in prop_oneof![Just(0.0), 0.0f64..20.0],
                window_ms in prop_oneof![Just(1000u64), 1000u64..5000],
                ops in proptest::collection::vec(op(1000, false), 1..200),
            ) {
                run(threshold, aggression, max, min_rps, window_ms, ops)?;
            }

            #[test]
            fn the_kept_zero_agrees_with_a_fresh_computation_at_stale_instants(
                threshold in prop_oneof![Just(1.0), Just(0.5), 0.01f64..=1.0],
                min_rps in prop_oneof![Just(0.0), 0.0f64..20.0],
                window_ms in prop_oneof![Just(1000u64), 1000u64..5000],
                ops in proptest::collection::vec(op(1000, true), 1..200),
            ) {
                run(threshold, 1.0, 0.9, min_rps, window_ms, ops)?;
            }
        }
    }
}
