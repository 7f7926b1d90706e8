//! Recommended stacks in the order of CONTRIBUTING.md, rule 12 (layer order): deadline
//! propagation sits below the bulkhead, so the time left is written when the call leaves,
//! after any wait in the bulkhead's queue. Every part is overridable: build a preset, change
//! any public field, then take its `layer()`.
//!
//! - [`ServerPreset`], for servers: rejections become responses → drain → deadline acceptance → load
//!   shedding → the handler. [`ServerPreset::http`] and [`ServerPreset::grpc`];
//!   [`ServerPreset::layer_with`] adds an idempotency or rate-limit layer before shedding.
//! - [`ClientPreset`], for clients: retry (with a budget; never retrying a refusal of the
//!   layers below, except the attempt timeout) → circuit breaker → bulkhead → deadline
//!   propagation (inside retry and after the bulkhead's queue, so each attempt sends the
//!   time actually left when it leaves) → attempt timeout → the transport. [`ClientPreset::http`] and [`ClientPreset::grpc`].
//!
//! Both register their parts with a [`Health`] registry in one call (`register`), so the
//! health JSON and the operator dashboard (feature `dashboard`) show them; the names are
//! the preset's name and the part: `"<name> breaker"`, `"<name> bulkhead"`,
//! `"<name> retry budget"` for a client, `"server shed"` for the server.
//!
//! The layers read each other's results by the composition contract
//! (`docs/composition.md`): a full bulkhead never opens the breaker, the attempt timeout is
//! retried within the attempts, the budget and the caller's deadline, and a passed deadline
//! is not retried. The caller's deadline is the task's current one: behind tower's `Buffer`
//! or a spawned task, carry it in the request with
//! [`CarryDeadlineLayer`](crate::deadline::CarryDeadlineLayer) placed before the hop.
//!
//! ```
//! use axum::{routing::get, Router};
//! use tower_bulwark::presets::ServerPreset;
//!
//! let server = ServerPreset::http().expect("valid defaults");
//! let app: Router = Router::new()
//!     .route("/", get(|| async { "hello" }))
//!     .layer(server.layer());
//! let drain = server.drain.handle(); // call `drain()` on shutdown
//! # let _ = (app, drain);
//! ```

use std::sync::Arc;
use std::time::Duration;

use tower::layer::util::{Identity, Stack};
use tower::ServiceBuilder;
use tower_bulwark_core::{
    ConfigError, GrpcClassifier, HandleRejectionsLayer, HttpClassifier, Name,
};

use crate::breaker::CircuitBreakerLayer;
use crate::bulkhead::BulkheadLayer;
use crate::deadline::{AcceptDeadlineLayer, PropagateDeadlineLayer, TimeoutLayer};
use crate::health::{DrainLayer, Health};
use crate::retry::{GrpcRetry, HttpRetry, RatioBudget, RetryPolicy, SkipRejections};
use crate::shed::{FromRequest, ShedLayer};
use crate::BulwarkExt;

#[cfg(feature = "tonic")]
mod tonic_client;
#[cfg(feature = "tonic")]
pub use self::tonic_client::{IntoTonicBody, TonicClientLayer, TONIC_REPLAY_LIMIT};

/// The layer of a [`ServerPreset`].
pub type ServerLayer<C> = ServiceBuilder<
    Stack<
        ShedLayer<FromRequest, C>,
        Stack<AcceptDeadlineLayer, Stack<DrainLayer, Stack<HandleRejectionsLayer, Identity>>>,
    >,
>;

/// The name [`ServerPreset::register`] gives the shedding layer.
const SERVER_SHED: &str = "server shed";
/// The shedding layer's own name (in its rejections, events and metrics).
pub(crate) const SERVER_SHED_NAME: &str = "server";

/// The layer of [`ServerPreset::layer_with`]: the preset's stack with `L` placed between
/// deadline acceptance and load shedding.
pub type ServerLayerWith<L, C> = ServiceBuilder<
    Stack<
        ShedLayer<FromRequest, C>,
        Stack<
            L,
            Stack<AcceptDeadlineLayer, Stack<DrainLayer, Stack<HandleRejectionsLayer, Identity>>>,
        >,
    >,
>;

/// The recommended server stack, outermost first: rejections become responses → drain →
/// deadline acceptance → load shedding → the handler. Defaults:
///
/// - deadline acceptance: the caller's deadline from `grpc-timeout`, else
///   `x-request-timeout-ms`; at most 30 s, 10 s when none is sent; the handler stops 5 ms
///   before it (HTTP 504, gRPC `DEADLINE_EXCEEDED`);
/// - load shedding: an adaptive limit with [`MinRtt`](crate::shed::MinRtt) (latency kept
///   within a tenth over the service's own, measured by probes; starting at 20 calls
///   in flight, between 1 and 1000), by criticality (lower tiers borrow what higher ones
///   do not use and are refused first under contention); a shed call gets 503 with a 1 s
///   `Retry-After` and the
///   `x-bulwark-overloaded` marker (gRPC: `RESOURCE_EXHAUSTED` with
///   `grpc-retry-pushback-ms: -1`, "do not retry"); the limit learns from the protocol's
///   classifier;
/// - criticality ([`FromRequest::default()`](crate::shed::FromRequest)): a `Criticality`
///   the server's own code put in the request's extensions, else `x-request-criticality`,
///   which may only lower a request below `critical`: the preset trusts no client to raise
///   it, so a forged `critical-plus` is shed as `critical`. To let some peers raise it (an
///   authenticated service, an internal address), replace `shed` with a layer whose source
///   is `FromRequest::default().trust(rule)`;
/// - a drain, started by its handle.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ServerPreset<C> {
    /// Deadline acceptance.
    pub deadline: AcceptDeadlineLayer,
    /// Load shedding.
    pub shed: ShedLayer<FromRequest, C>,
    /// Graceful drain; its handle starts the drain.
    pub drain: DrainLayer,
    /// The classifier the shedding layer was built with, to build it again.
    #[cfg_attr(not(feature = "metrics"), allow(dead_code))]
    classify: C,
    /// Whether `StackConfig` configured a part, which `with_metrics` would undo.
    #[cfg_attr(not(feature = "metrics"), allow(dead_code))]
    pub(crate) configured: bool,
}

impl ServerPreset<HttpClassifier> {
    /// For HTTP servers (axum, hyper): 5xx responses are failures.
    pub fn http() -> Result<Self, ConfigError> {
        ServerPreset::with_classifier(HttpClassifier)
    }
}

impl ServerPreset<GrpcClassifier> {
    /// For gRPC servers (tonic): `UNAVAILABLE`, `DEADLINE_EXCEEDED`, `INTERNAL`, ... are
    /// failures.
    pub fn grpc() -> Result<Self, ConfigError> {
        ServerPreset::with_classifier(GrpcClassifier)
    }
}

impl ServerPreset<HttpClassifier> {
    /// The preset's deadline acceptance, to change before building: deadlines of at most
    /// 30 s are granted, a request that brings none gets 10 s.
    ///
    /// ```
    /// use std::time::Duration;
    /// use tower_bulwark::presets::ServerPreset;
    ///
    /// let mut server = ServerPreset::http().unwrap();
    /// server.deadline = ServerPreset::deadline_builder()
    ///     .default_timeout(Duration::from_secs(2))
    ///     .build()
    ///     .unwrap();
    /// # let _ = server.layer();
    /// ```
    pub fn deadline_builder() -> crate::deadline::AcceptBuilder {
        AcceptDeadlineLayer::builder()
            .max(Duration::from_secs(30))
            .default_timeout(Duration::from_secs(10))
    }
}

impl<C: Clone> ServerPreset<C> {
    fn with_classifier(classify: C) -> Result<Self, ConfigError> {
        Ok(ServerPreset {
            deadline: ServerPreset::deadline_builder().build()?,
            shed: ShedLayer::builder()
                .name(SERVER_SHED_NAME)
                .criticality(FromRequest::default())
                .classify(classify.clone())
                .build()?,
            drain: DrainLayer::new(),
            classify,
            configured: false,
        })
    }

    /// The same preset with its shedding layer and deadline acceptance recording metrics
    /// (feature `metrics`; the drain reports through `DrainLayer::on_event`). They are built
    /// again from the preset's values: call this before replacing `shed` or `deadline`. A preset from a `StackConfig`
    /// that configured a part is refused (the file's settings would be lost): give the
    /// file `"metrics": true` instead.
    ///
    /// ```
    /// use tower_bulwark::presets::ServerPreset;
    ///
    /// let server = ServerPreset::http().unwrap().with_metrics().unwrap();
    /// # let _ = server.layer();
    /// ```
    #[cfg(feature = "metrics")]
    pub fn with_metrics(mut self) -> Result<Self, ConfigError> {
        refuse_configured(self.configured)?;
        self.deadline = ServerPreset::deadline_builder().with_metrics().build()?;
        self.shed = ShedLayer::builder()
            .name(SERVER_SHED_NAME)
            .criticality(FromRequest::default())
            .classify(self.classify.clone())
            .with_metrics()
            .build()?;
        Ok(self)
    }

    /// Registers the parts an operator watches with `health`: the shedding layer, as
    /// `"server shed"` (never required: shedding is the server coping with load), and the
    /// drain, which readiness follows (`/ready` answers 503 once the drain starts).
    ///
    /// Registers the parts as they are now: replace `shed` or `drain` first, then register.
    /// Register once per registry (a second call adds the shed layer twice); a registry
    /// watches one drain, so with two servers in one process, register the one whose
    /// drain readiness should follow last.
    ///
    /// ```
    /// use tower_bulwark::health::Health;
    /// use tower_bulwark::presets::ServerPreset;
    ///
    /// let server = ServerPreset::http().expect("valid defaults");
    /// let health = Health::new();
    /// server.register(&health);
    /// assert_eq!(health.reports()[0].0, "server shed");
    /// server.drain.handle().drain();
    /// assert!(!health.is_ready(), "readiness follows the drain");
    /// ```
    pub fn register(&self, health: &Health) {
        health.add_shed(SERVER_SHED, self.shed.handle());
        health.watch_drain(self.drain.handle());
    }

    /// The stack as one layer (its error type is `Infallible`: rejections are responses).
    pub fn layer(&self) -> ServerLayer<C> {
        ServiceBuilder::new()
            .handle_rejections()
            .drain(self.drain.clone())
            .accept_deadline(self.deadline.clone())
            .shed(self.shed.clone())
    }

    /// The stack with `admission` placed where cheap refusals that need no capacity go:
    /// after deadline acceptance, before load shedding. The place for an idempotency layer
    /// (a replay or a 409 costs no shed slot, and a slow upload of a keyed request's body
    /// holds none) and for rate limits.
    ///
    /// ```
    /// # #[cfg(feature = "idempotency")] {
    /// use axum::{routing::post, Router};
    /// use tower_bulwark::idempotency::IdempotencyLayer;
    /// use tower_bulwark::presets::ServerPreset;
    ///
    /// let server = ServerPreset::http().expect("valid defaults");
    /// let idempotency = IdempotencyLayer::builder().build().expect("valid defaults");
    /// let app: Router = Router::new()
    ///     .route("/payments", post(|| async { "charged" }))
    ///     .layer(server.layer_with(idempotency));
    /// # let _ = app;
    /// # }
    /// ```
    pub fn layer_with<L>(&self, admission: L) -> ServerLayerWith<L, C> {
        ServiceBuilder::new()
            .handle_rejections()
            .drain(self.drain.clone())
            .accept_deadline(self.deadline.clone())
            .layer(admission)
            .shed(self.shed.clone())
    }
}

/// The layer of a [`ClientPreset`].
pub type ClientLayer<R, C> = ServiceBuilder<
    Stack<
        TimeoutLayer,
        Stack<
            PropagateDeadlineLayer,
            Stack<
                BulkheadLayer,
                Stack<
                    CircuitBreakerLayer<C>,
                    Stack<tower::retry::RetryLayer<RetryPolicy<SkipRejections<R>>>, Identity>,
                >,
            >,
        >,
    >,
>;

/// The layer of [`ClientPreset::layer_with`].
pub type ClientLayerWith<L, R, C> = ServiceBuilder<
    Stack<
        TimeoutLayer,
        Stack<
            PropagateDeadlineLayer,
            Stack<
                BulkheadLayer,
                Stack<
                    L,
                    Stack<
                        CircuitBreakerLayer<C>,
                        Stack<tower::retry::RetryLayer<RetryPolicy<SkipRejections<R>>>, Identity>,
                    >,
                >,
            >,
        >,
    >,
>;

/// The recommended client stack, outermost first: retry → circuit breaker → bulkhead →
/// deadline propagation → attempt timeout → the transport. Defaults:
///
/// - retry: at most 3 attempts (the first included), waiting an exponential backoff from
///   50 ms, doubling, with full jitter, at most 5 s (a server asking for a longer wait is
///   not retried), within a budget of 20% of the calls of the last 10 s plus 10 retries per
///   second. Never retrying a refusal of the layers below, except the attempt timeout: an
///   open breaker, a full bulkhead or a passed deadline ends the call, an attempt that timed
///   out is retried, and no retry waits past the caller's deadline. Which answers are
///   retried: [`HttpRetry`] (idempotent requests; 408, 429, 502, 503, 504 but not sheds) or
///   [`GrpcRetry`] (see [`ClientPreset::grpc`]);
/// - deadline propagation: 95% of the caller's time left is sent on (a call for which that
///   is under 1 ms fails at once); a call without a deadline gets none;
/// - circuit breaker: opens after 5 consecutive failures (per the protocol's classifier;
///   refusals by the layers below are not failures) for 30 s, then lets one probe through,
///   which closes it on success; fail-fast admission;
/// - bulkhead: 100 calls in flight, no queue: the next call is refused at once
///   (`BulkheadFull`);
/// - attempt timeout: 10 s per attempt, less when the caller's deadline is nearer.
///
/// Requests must be `Clone` (for retries): `Full<Bytes>` bodies are; wrap streaming ones
/// with `ReplayLayer`.
///
/// [`register`](Self::register) shows the breaker, the bulkhead and the retry budget in a
/// [`Health`] registry (and on its dashboard).
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ClientPreset<R, C> {
    /// Retries.
    pub retry: RetryPolicy<SkipRejections<R>>,
    /// Deadline propagation.
    pub deadline: PropagateDeadlineLayer,
    /// The circuit breaker.
    pub breaker: CircuitBreakerLayer<C>,
    /// The bulkhead.
    pub bulkhead: BulkheadLayer,
    /// The timeout of each attempt.
    pub timeout: TimeoutLayer,
    /// The name given, for [`register`](Self::register).
    pub(crate) name: Name,
    /// The budget `retry` withdraws from, kept to be registered.
    pub(crate) budget: Arc<RatioBudget>,
    /// What the parts were built with, to build them again.
    #[cfg_attr(not(feature = "metrics"), allow(dead_code))]
    retry_classifier: R,
    #[cfg_attr(not(feature = "metrics"), allow(dead_code))]
    classify: C,
    /// Whether `StackConfig` configured a part, which `with_metrics` would undo.
    #[cfg_attr(not(feature = "metrics"), allow(dead_code))]
    pub(crate) configured: bool,
}

impl ClientPreset<HttpRetry, HttpClassifier> {
    /// For HTTP clients (hyper-util; reqwest through `ReqwestService`, feature `reqwest`).
    /// `name` is a literal or an owned `String` (say, from a configuration file).
    pub fn http(name: impl Into<Name>) -> Result<Self, ConfigError> {
        ClientPreset::with(name, HttpRetry::default(), HttpClassifier)
    }
}

impl ClientPreset<GrpcRetry, GrpcClassifier> {
    /// For gRPC clients (a tonic `Channel`). Nothing on the wire says a gRPC method is safe
    /// to call twice, so only calls that never reached the server (a connection refused,
    /// a stream the server refused) are retried: mark the methods that may be retried with
    /// [`grpc_with`](Self::grpc_with). A tonic client calls through
    /// [`tonic_layer`](Self::tonic_layer) (feature `tonic`), so that refusals reach it
    /// with the right status code.
    pub fn grpc(name: impl Into<Name>) -> Result<Self, ConfigError> {
        ClientPreset::grpc_with(name, GrpcRetry::new())
    }

    /// For gRPC clients, retrying the methods `retry` marks (on `UNAVAILABLE`, or the codes
    /// given, as gRPC's service config does), and calls that never reached the server.
    ///
    /// ```
    /// use tower_bulwark::presets::ClientPreset;
    /// use tower_bulwark::retry::GrpcRetry;
    ///
    /// # fn main() -> Result<(), tower_bulwark::ConfigError> {
    /// let retry = GrpcRetry::new().service("shop.Catalog")?.method("/shop.Orders/Get")?;
    /// let preset = ClientPreset::grpc_with("shop", retry)?;
    /// # let _ = preset.layer();
    /// # Ok(())
    /// # }
    /// ```
    pub fn grpc_with(name: impl Into<Name>, retry: GrpcRetry) -> Result<Self, ConfigError> {
        ClientPreset::with(name, retry, GrpcClassifier)
    }
}

/// The client preset's retry budget: over the last 10 s, 20% of the calls plus 10 retries
/// per second.
pub(crate) const BUDGET_WINDOW: Duration = Duration::from_secs(10);
pub(crate) const BUDGET_MIN_PER_SEC: u32 = 10;
pub(crate) const BUDGET_RATIO: f64 = 0.2;
/// The client preset's attempt timeout.
pub(crate) const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(10);

/// The parts of a client preset, each from a builder that starts from the preset's values:
/// change what you need and build, then put it in the preset's field.
///
/// ```
/// use tower_bulwark::presets::ClientPreset;
///
/// let mut inventory = ClientPreset::http("inventory").unwrap();
/// inventory.bulkhead = ClientPreset::bulkhead_builder("inventory")
///     .max_queue(20)
///     .build()
///     .unwrap();
/// assert_eq!(inventory.bulkhead.handle().snapshot().max_concurrent, 100, "the preset's");
/// # let _ = inventory.layer();
/// ```
impl ClientPreset<HttpRetry, HttpClassifier> {
    /// The preset's retry budget (the one [`budget`](Self::budget) returns is the one its
    /// retry draws from): over the last 10 s, 20% of the calls plus 10 retries per second.
    pub fn new_budget() -> Result<Arc<RatioBudget>, ConfigError> {
        Ok(Arc::new(RatioBudget::new(
            BUDGET_WINDOW,
            BUDGET_MIN_PER_SEC,
            BUDGET_RATIO,
        )?))
    }

    /// The preset's retries over `budget`, deciding by `retry` (`HttpRetry`, `GrpcRetry`):
    /// at most 3 attempts, exponential backoff from 50 ms with full jitter, at most 5 s
    /// (the retry layer's own defaults), never retrying a refusal of the layers below.
    pub fn retry_builder<R>(
        budget: Arc<RatioBudget>,
        retry: R,
    ) -> crate::retry::Builder<SkipRejections<R>> {
        RetryPolicy::builder()
            .budget(budget)
            .classify(SkipRejections(retry))
    }

    /// The preset's deadline propagation, named `name` (its refusals and events carry it):
    /// 95% of the time left is sent on.
    pub fn deadline_builder(name: impl Into<Name>) -> crate::deadline::PropagateBuilder {
        PropagateDeadlineLayer::builder().name(name).keep(0.95)
    }

    /// An outlier detector for a load-balanced dependency (feature `outlier`), named
    /// `name`: the preset goes above a `tower::balance::p2c::Balance` of endpoints, each
    /// wrapped by the detector's layer (judged as HTTP answers here), so that an endpoint
    /// failing while its peers succeed stops getting calls, and the preset's retry sends
    /// a failed attempt again to the balancer, which picks again.
    ///
    /// The preset's breaker above the balancer judges the dependency as a whole: give it
    /// the failure-rate window of [`balanced_breaker_builder`](Self::balanced_breaker_builder)
    /// (`preset.breaker = ClientPreset::balanced_breaker_builder(name, HttpClassifier)
    /// .build()?`) rather than 5 failures in a row, which one endpoint's failures before
    /// its ejection reach (the soak example showed it open at every phase where one
    /// endpoint failed).
    ///
    /// Give each endpoint its own attempt timeout under the detector's layer
    /// (`detector.layer(key).http().layer(TimeoutLayer::new(d)?.layer(transport))`, or
    /// [`attempt_timeout`](Self::attempt_timeout) as below), at or below the preset's: a
    /// call timed out there finishes as the endpoint's failure, whereas the preset's own
    /// timeout, above the balancer, drops the call inside the layer, and a dropped call
    /// records nothing, so a hung endpoint would never be ejected.
    ///
    /// ```
    /// # #[cfg(feature = "outlier")]
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() -> Result<(), tower_bulwark::BoxError> {
    /// use http::{Request, Response, StatusCode};
    /// use tower::balance::p2c::Balance;
    /// use tower::discover::ServiceList;
    /// use tower::load::{CompleteOnResponse, PendingRequests};
    /// use tower::{service_fn, Layer, ServiceBuilder, ServiceExt};
    /// use tower_bulwark::presets::ClientPreset;
    ///
    /// let preset = ClientPreset::http("inventory")?;
    /// // Out at the first failure, to keep the example short (5 in a row by default).
    /// let detector = ClientPreset::outlier_builder("inventory").consecutive_failures(1).build()?;
    /// // Three endpoints; the third answers 503 to everything.
    /// let endpoints = (0..3).map(|i| {
    ///     let endpoint = service_fn(move |_: Request<String>| async move {
    ///         let status = if i < 2 { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    ///         let mut response = Response::new(String::new());
    ///         *response.status_mut() = status;
    ///         Ok::<_, tower_bulwark::BoxError>(response)
    ///     });
    ///     // Its own attempt timeout, under the detector's layer.
    ///     let endpoint = ClientPreset::attempt_timeout("inventory").layer(endpoint);
    ///     let endpoint = PendingRequests::new(endpoint, CompleteOnResponse::default());
    ///     detector.layer(format!("10.0.0.{i}:80")).http().layer(endpoint)
    /// });
    /// let balance = Balance::new(ServiceList::new(endpoints.collect::<Vec<_>>()));
    /// let client = ServiceBuilder::new()
    ///     .layer(preset.layer())
    ///     .buffer(64)
    ///     .service(balance);
    /// for _ in 0..50 {
    ///     let response = client.clone().oneshot(Request::new(String::new())).await?;
    ///     // The preset retried the 503s on another endpoint.
    ///     assert_eq!(response.status(), StatusCode::OK);
    /// }
    /// assert_eq!(detector.snapshot().ejected, 1, "the failing endpoint is out of rotation");
    /// # Ok(())
    /// # }
    /// # #[cfg(not(feature = "outlier"))]
    /// # fn main() {}
    /// ```
    #[cfg(feature = "outlier")]
    pub fn outlier_builder(name: impl Into<Name>) -> crate::outlier::Builder {
        crate::outlier::OutlierDetector::builder().name(name)
    }

    /// The preset's attempt timeout, named `name`: 10 s per attempt.
    pub fn attempt_timeout(name: impl Into<Name>) -> TimeoutLayer {
        TimeoutLayer::new(ATTEMPT_TIMEOUT)
            .expect("the preset's attempt timeout is not zero")
            .name(name)
    }

    /// The preset's circuit breaker, named `name`, judging by `classify`: opens after 5
    /// consecutive failures.
    pub fn breaker_builder<C>(name: impl Into<Name>, classify: C) -> crate::breaker::Builder<C> {
        CircuitBreakerLayer::builder()
            .name(name)
            .consecutive_failures(5)
            .classify(classify)
    }

    /// The breaker for a preset above a load balancer (with
    /// [`outlier_builder`](Self::outlier_builder)), named `name`, judging by `classify`: it
    /// judges the dependency as a whole, opening when half of at least 20 calls over the
    /// last 10 s failed, not after 5 failures in a row. Before the outlier detector ejects
    /// a failing endpoint, its failures can come in runs (concurrent callers pick it at
    /// once), and 5 in a row would open the breaker for every endpoint. The 20 are
    /// attempts, retries included; below about two attempts a second the window never
    /// holds 20, so 20 failures in a row open it too: at low traffic a dependency failing
    /// entirely still opens it.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() -> Result<(), tower_bulwark::BoxError> {
    /// use std::time::Duration;
    /// use tower::{service_fn, Layer, ServiceExt};
    /// use tower_bulwark::breaker::{BreakerHandle, State};
    /// use tower_bulwark::presets::ClientPreset;
    /// use tower_bulwark::ErrorsAreFailures;
    ///
    /// let endpoints = service_fn(|fail: bool| async move {
    ///     if fail { Err("503 from one endpoint") } else { Ok(()) }
    /// });
    /// let balanced = || ClientPreset::balanced_breaker_builder("inventory", ErrorsAreFailures).build();
    /// let default = ClientPreset::breaker_builder("inventory", ErrorsAreFailures).build()?;
    /// async fn send(
    ///     service: &(impl tower::Service<bool, Error = tower_bulwark::BoxError> + Clone),
    ///     calls: impl Iterator<Item = bool>,
    /// ) {
    ///     for fail in calls {
    ///         let _ = service.clone().oneshot(fail).await;
    ///     }
    /// }
    ///
    /// // One endpoint failing before its ejection: a run of 10 failed calls after 20 good
    /// // ones opens the default breaker, not this one (a third of the calls failed).
    /// let breaker = balanced()?;
    /// let run = || (0..30).map(|i| i >= 20);
    /// send(&breaker.layer(endpoints.clone()), run()).await;
    /// send(&default.layer(endpoints.clone()), run()).await;
    /// assert_eq!(breaker.handle().state(), State::Closed);
    /// assert_eq!(default.handle().state(), State::Open);
    /// // The whole dependency failing: half of the calls in 10 s.
    /// send(&breaker.layer(endpoints.clone()), (0..30).map(|_| true)).await;
    /// assert_eq!(breaker.handle().state(), State::Open);
    ///
    /// // Low traffic, a call every 2 s, every one failing: 20 in a row open it.
    /// let breaker = balanced()?;
    /// let service = breaker.layer(endpoints);
    /// let handle: BreakerHandle = breaker.handle();
    /// for call in 1..=20 {
    ///     assert_eq!(handle.state(), State::Closed, "before call {call}");
    ///     send(&service, std::iter::once(true)).await;
    ///     tokio::time::advance(Duration::from_secs(2)).await;
    /// }
    /// assert_eq!(handle.state(), State::Open);
    /// # Ok(())
    /// # }
    /// ```
    pub fn balanced_breaker_builder<C>(
        name: impl Into<Name>,
        classify: C,
    ) -> crate::breaker::Builder<C> {
        CircuitBreakerLayer::builder()
            .name(name)
            .consecutive_failures(20)
            .failure_rate(0.5)
            .window(crate::breaker::WindowKind::Time {
                length: Duration::from_secs(10),
                buckets: 10,
            })
            .minimum_calls(20)
            .classify(classify)
    }

    /// The preset's bulkhead, named `name`: 100 calls in flight, no queue.
    pub fn bulkhead_builder(name: impl Into<Name>) -> crate::bulkhead::Builder {
        BulkheadLayer::builder()
            .name(name)
            .max_concurrent(CLIENT_MAX_CONCURRENT)
    }
}

/// The client preset's bulkhead limit (calls in flight, no queue).
pub(crate) const CLIENT_MAX_CONCURRENT: usize = 100;

/// `with_metrics` would rebuild parts a `StackConfig` configured, losing the file's
/// settings without a word.
#[cfg(feature = "metrics")]
fn refuse_configured(configured: bool) -> Result<(), ConfigError> {
    if configured {
        return Err(ConfigError::new(
            "metrics",
            "this preset's parts come from a StackConfig and rebuilding them would drop \
             the file's settings: set `\"metrics\": true` in the file instead",
        ));
    }
    Ok(())
}

impl<R: Clone, C: Clone> ClientPreset<R, C> {
    fn with(name: impl Into<Name>, retry: R, classify: C) -> Result<Self, ConfigError> {
        let name = name.into();
        let budget = ClientPreset::new_budget()?;
        Ok(ClientPreset {
            retry: ClientPreset::retry_builder(budget.clone(), retry.clone()).build()?,
            deadline: ClientPreset::deadline_builder(name.clone()).build()?,
            breaker: ClientPreset::breaker_builder(name.clone(), classify.clone()).build()?,
            bulkhead: ClientPreset::bulkhead_builder(name.clone()).build()?,
            timeout: ClientPreset::attempt_timeout(name.clone()),
            name,
            budget,
            retry_classifier: retry,
            classify,
            configured: false,
        })
    }

    /// The same preset with every part recording metrics (feature `metrics`): retry,
    /// breaker, bulkhead, deadline propagation and the attempt timeout. They are built
    /// again from the preset's values, over the same retry budget: call this before
    /// replacing any of them. A preset from a `StackConfig` that configured a part is
    /// refused (the file's settings would be lost): give the file `"metrics": true`.
    ///
    /// ```
    /// use tower_bulwark::presets::ClientPreset;
    ///
    /// let inventory = ClientPreset::http("inventory").unwrap().with_metrics().unwrap();
    /// # let _ = inventory.layer();
    /// ```
    #[cfg(feature = "metrics")]
    pub fn with_metrics(mut self) -> Result<Self, ConfigError> {
        refuse_configured(self.configured)?;
        let retry = self.retry_classifier.clone();
        self.retry = ClientPreset::retry_builder(self.budget.clone(), retry)
            .with_metrics()
            .build()?;
        self.breaker = ClientPreset::breaker_builder(self.name.clone(), self.classify.clone())
            .with_metrics()
            .build()?;
        self.bulkhead = ClientPreset::bulkhead_builder(self.name.clone())
            .with_metrics()
            .build()?;
        self.deadline = ClientPreset::deadline_builder(self.name.clone())
            .with_metrics()
            .build()?;
        self.timeout = ClientPreset::attempt_timeout(self.name.clone()).with_metrics();
        Ok(self)
    }

    /// The retry budget of the preset's `retry` policy: 20% of the calls of the last 10 s
    /// plus 10 retries per second. To replace `retry` with a policy of your own and keep
    /// what [`register`](Self::register) shows true, give it this budget
    /// (`RetryPolicy::builder().budget(preset.budget().clone())`).
    pub fn budget(&self) -> &Arc<RatioBudget> {
        &self.budget
    }

    /// Registers the parts an operator watches with `health`, named after the preset:
    ///
    /// - `"<name> breaker"`, **not required**: a dependency's open breaker leaves this
    ///   process ready. Were it required, an outage of the dependency would make every
    ///   instance unready at once, and the orchestrator would restart or unroute them all
    ///   for a fault that is not theirs; the breaker is there so that they keep serving
    ///   (degraded) instead;
    /// - `"<name> bulkhead"`;
    /// - `"<name> retry budget"`: the preset's own budget ([`budget`](Self::budget)).
    ///   Replacing `retry` with a policy built on another budget leaves the registered
    ///   budget the preset's, which that policy no longer draws from.
    ///
    /// Registers the breaker and bulkhead as they are now: replace them first, then
    /// register. Register once per registry (each call adds the components again).
    ///
    /// ```
    /// use tower_bulwark::health::Health;
    /// use tower_bulwark::presets::ClientPreset;
    ///
    /// let payments = ClientPreset::http("payments").expect("valid defaults");
    /// let health = Health::new();
    /// payments.register(&health);
    /// let names: Vec<String> = health.reports().into_iter().map(|(name, ..)| name).collect();
    /// assert_eq!(names, ["payments breaker", "payments bulkhead", "payments retry budget"]);
    /// payments.breaker.handle().force_open();
    /// assert!(health.is_ready(), "a dependency's open breaker leaves the process ready");
    /// ```
    pub fn register(&self, health: &Health) {
        let name = self.name.as_str();
        health.add_breaker(format!("{name} breaker"), false, self.breaker.handle());
        health.add_bulkhead(format!("{name} bulkhead"), self.bulkhead.handle());
        health.add_budget(format!("{name} retry budget"), self.budget.clone());
    }

    /// The stack as one layer.
    ///
    /// It serves `http::Request<B>` over a service `S` when:
    /// - `B: Clone`: a retry sends a copy of the request, so a streaming body (axum's
    ///   `Body`, hyper's `Incoming`) must be read into memory first (`String`, `Bytes`,
    ///   `Full<Bytes>` for hyper; `String`, `Vec<u8>` or `Bytes` for `ReqwestService`), or
    ///   recorded by the retry crate's `ReplayLayer` (hyper transports);
    /// - `S` answers `http::Response<_>`: the classifiers read its status (a
    ///   `reqwest::Client` goes under it through `ReqwestService`, feature `reqwest`);
    /// - `S`'s error converts into `BoxError`.
    ///
    /// When one of these fails, the compiler reports the whole stack; `expect_service`
    /// names the failing one (the `compile_errors` page, with feature `reqwest`, shows each).
    pub fn layer(&self) -> ClientLayer<R, C> {
        ServiceBuilder::new()
            .retry_with(self.retry.clone())
            .circuit_breaker(self.breaker.clone())
            .bulkhead(self.bulkhead.clone())
            .propagate_deadline(self.deadline.clone())
            .deadline_timeout(self.timeout.clone())
    }

    /// The stack with `per_call` between the circuit breaker and the bulkhead: retry →
    /// breaker → `per_call` → bulkhead → deadline propagation → attempt timeout. The place
    /// for hedging (`HedgeLayer`, feature `hedge`): the breaker sees each call's one answer
    /// and an open breaker sends no hedges, while each hedge is an attempt of its own below
    /// it (its own bulkhead place, the time left when it leaves, its own timeout).
    ///
    /// ```
    /// # #[cfg(feature = "hedge")]
    /// # fn main() -> Result<(), tower_bulwark::BoxError> {
    /// use std::time::Duration;
    /// use tower_bulwark::hedge::HedgeLayer;
    /// use tower_bulwark::presets::ClientPreset;
    ///
    /// let inventory = ClientPreset::http("inventory")?;
    /// // A second attempt once the first has taken longer than 95% of recent calls.
    /// let hedge = HedgeLayer::builder()
    ///     .name("inventory")
    ///     .percentile(0.95)
    ///     .delay(Duration::from_millis(50))
    ///     .build()?;
    /// let stack = tower::ServiceBuilder::new().layer(inventory.layer_with(hedge));
    /// # let _ = stack;
    /// # Ok(())
    /// # }
    /// # #[cfg(not(feature = "hedge"))]
    /// # fn main() {}
    /// ```
    pub fn layer_with<L>(&self, per_call: L) -> ClientLayerWith<L, R, C> {
        ServiceBuilder::new()
            .retry_with(self.retry.clone())
            .circuit_breaker(self.breaker.clone())
            .layer(per_call)
            .bulkhead(self.bulkhead.clone())
            .propagate_deadline(self.deadline.clone())
            .deadline_timeout(self.timeout.clone())
    }
}
