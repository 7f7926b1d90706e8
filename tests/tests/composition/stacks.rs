//! The stacks under test, built from the presets' parts: in the presets' order, and in
//! plausible wrong orders.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use http::{Request, Response};
use tower::util::BoxCloneService;
use tower::{Layer, ServiceBuilder, ServiceExt};
use tower_bulwark::breaker::{Admission, CircuitBreakerLayer, OpenDuration};
use tower_bulwark::bulkhead::BulkheadLayer;
use tower_bulwark::deadline::TimeoutLayer;
use tower_bulwark::fallback::FallbackLayer;
use tower_bulwark::health::DrainBody;
use tower_bulwark::presets::{ClientPreset, ServerPreset};
use tower_bulwark::retry::{Backoff, HttpRetry, Jitter, RatioBudget, RetryPolicy, SkipRejections};
use tower_bulwark::shed::{Fixed, FromRequest, ShedLayer};
use tower_bulwark::{BoxError, BulwarkExt, HttpClassifier, RejectionKind};

use super::check::{BreakerWatch, Watch};
use super::dependency::{dependency, Body, Faults, Log};

/// A client stack, whatever its order.
pub(crate) type Client = BoxCloneService<Request<Body>, Response<Body>, BoxError>;
/// A server stack, whatever its order.
pub(crate) type Server = BoxCloneService<Request<Body>, Response<DrainBody<Body>>, BoxError>;

/// The breaker's threshold (the preset's: 5 consecutive failures).
const THRESHOLD: u32 = 5;

/// The client's settings that schedules vary; everything else is the preset's.
#[derive(Debug, Clone)]
pub(crate) struct ClientSetup {
    pub(crate) seed: u64,
    /// The retry budget's ratio (no allowance: `min_per_sec` 0 over a 60 s window).
    pub(crate) budget: f64,
    /// The bulkhead's permits, queue and longest wait.
    pub(crate) bulkhead: (usize, usize, Duration),
    pub(crate) attempt_timeout: Duration,
    pub(crate) open: Duration,
    /// A constant backoff without jitter, for exact scenarios (else the preset's).
    pub(crate) backoff: Option<Duration>,
    pub(crate) admission: Admission,
    /// A last-good fallback on top (the presets' order with a fallback); the wrong orders
    /// always have one.
    pub(crate) fallback: bool,
}

impl Default for ClientSetup {
    fn default() -> Self {
        ClientSetup {
            seed: 7,
            budget: 0.2,
            bulkhead: (100, 0, Duration::from_secs(1)),
            attempt_timeout: Duration::from_secs(1),
            open: Duration::from_secs(30),
            backoff: None,
            admission: Admission::FailFast,
            fallback: true,
        }
    }
}

/// Where the client's parts go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ClientOrder {
    /// fallback -> retry -> deadline propagation -> breaker -> bulkhead -> attempt timeout.
    Preset,
    /// The attempt timeout above the bulkhead, so a queue wait counts as the dependency
    /// being slow.
    TimeoutOutsideBulkhead,
    /// The breaker above retry, so an open breaker does not end the retries.
    BreakerOutsideRetry,
    /// The fallback below retry, so the first failure is answered degraded.
    RetryOutsideFallback,
    /// The attempt timeout above retry: one timeout for all attempts.
    TimeoutOutsideRetry,
    /// Deadline propagation above retry: every attempt sends the time left at the first.
    PropagateOutsideRetry,
    /// The preset over a transport that retries on its own (a retry at every hop).
    RetryInTransport,
}

/// The client stack in `order` around the dependency with `faults`, and what to watch.
pub(crate) fn client(
    order: ClientOrder,
    setup: &ClientSetup,
    faults: &Faults,
    log: &Arc<Log>,
) -> (Client, Watch) {
    let events = Arc::new(Mutex::new(Vec::new()));
    let mut preset = ClientPreset::http("dependency").expect("valid preset");
    let mut retry = RetryPolicy::builder()
        .budget(Arc::new(
            RatioBudget::new(Duration::from_secs(60), 0, setup.budget).expect("valid budget"),
        ))
        .seed(setup.seed);
    if let Some(wait) = setup.backoff {
        retry = retry.backoff(Backoff::Constant(wait), Jitter::None);
    }
    preset.retry = retry
        .classify(SkipRejections(HttpRetry::default()))
        .build()
        .expect("valid retry");
    preset.breaker = CircuitBreakerLayer::builder()
        .name("dependency")
        .consecutive_failures(THRESHOLD)
        .open_duration(OpenDuration::Fixed(setup.open))
        .admission(setup.admission)
        .classify(HttpClassifier)
        .seed(setup.seed)
        .on_event({
            let events = events.clone();
            move |event: &_| events.lock().unwrap().push(Clone::clone(event))
        })
        .build()
        .expect("valid breaker");
    let (permits, queue, wait) = setup.bulkhead;
    preset.bulkhead = BulkheadLayer::builder()
        .name("dependency")
        .max_concurrent(permits)
        .max_queue(queue)
        .max_wait(wait)
        .build()
        .expect("valid bulkhead");
    preset.timeout = TimeoutLayer::new(setup.attempt_timeout).expect("valid timeout");
    let fallback = FallbackLayer::builder::<Body>()
        .last_good(Duration::from_secs(60), 16)
        .build()
        .expect("valid fallback");

    let watch = Watch {
        breaker: Some(BreakerWatch {
            handle: preset.breaker.handle(),
            events,
            threshold: THRESHOLD,
        }),
        bulkhead: Some(preset.bulkhead.handle()),
        attempt_timeout: Some(setup.attempt_timeout),
        budget: Some(setup.budget),
        refusals: vec![
            RejectionKind::CircuitOpen,
            RejectionKind::BulkheadFull,
            RejectionKind::TimedOut,
            RejectionKind::DeadlineExceeded,
        ],
        open_breaker_stops_calls: queue == 0,
        ..Watch::default()
    };
    let dependency = dependency(faults, log, Some(preset.breaker.handle()));
    let stack = match order {
        ClientOrder::Preset if setup.fallback => {
            Client::new(fallback.layer(preset.layer().service(dependency)))
        }
        ClientOrder::Preset => Client::new(preset.layer().service(dependency)),
        ClientOrder::TimeoutOutsideBulkhead => Client::new(
            ServiceBuilder::new()
                .layer(fallback)
                .retry_with(preset.retry)
                .propagate_deadline(preset.deadline)
                .circuit_breaker(preset.breaker)
                .deadline_timeout(preset.timeout)
                .bulkhead(preset.bulkhead)
                .service(dependency),
        ),
        ClientOrder::BreakerOutsideRetry => Client::new(
            ServiceBuilder::new()
                .layer(fallback)
                .circuit_breaker(preset.breaker)
                .retry_with(preset.retry)
                .propagate_deadline(preset.deadline)
                .bulkhead(preset.bulkhead)
                .deadline_timeout(preset.timeout)
                .service(dependency),
        ),
        ClientOrder::RetryOutsideFallback => Client::new(
            ServiceBuilder::new()
                .retry_with(preset.retry)
                .layer(fallback)
                .propagate_deadline(preset.deadline)
                .circuit_breaker(preset.breaker)
                .bulkhead(preset.bulkhead)
                .deadline_timeout(preset.timeout)
                .service(dependency),
        ),
        ClientOrder::TimeoutOutsideRetry => Client::new(
            ServiceBuilder::new()
                .layer(fallback)
                .deadline_timeout(preset.timeout)
                .retry_with(preset.retry)
                .propagate_deadline(preset.deadline)
                .circuit_breaker(preset.breaker)
                .bulkhead(preset.bulkhead)
                .service(dependency),
        ),
        ClientOrder::PropagateOutsideRetry => Client::new(
            ServiceBuilder::new()
                .layer(fallback)
                .propagate_deadline(preset.deadline)
                .retry_with(preset.retry)
                .circuit_breaker(preset.breaker)
                .bulkhead(preset.bulkhead)
                .deadline_timeout(preset.timeout)
                .service(dependency),
        ),
        ClientOrder::RetryInTransport => {
            // A transport's own retries: the retry crate's defaults, with their own budget.
            let transport = RetryPolicy::builder()
                .seed(setup.seed)
                .classify(SkipRejections(HttpRetry::default()))
                .build()
                .expect("valid retry")
                .layer()
                .layer(dependency);
            Client::new(fallback.layer(preset.layer().service(transport)))
        }
    };
    (stack, watch)
}

/// The server's settings that schedules vary; everything else is the preset's.
#[derive(Debug, Clone, Default)]
pub(crate) struct ServerSetup {
    /// A fixed shed limit instead of the preset's Gradient2.
    pub(crate) shed_limit: Option<usize>,
}

/// Where the server's parts go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ServerOrder {
    /// handle_rejections -> drain -> accept deadline -> shed -> handler.
    Preset,
    /// Shedding above the layer that turns refusals into responses.
    ShedOutsideRejections,
}

/// The server stack in `order` around a handler with `faults`, and what to watch.
pub(crate) fn server(
    order: ServerOrder,
    setup: &ServerSetup,
    faults: &Faults,
    log: &Arc<Log>,
) -> (Server, Watch) {
    let mut preset = ServerPreset::http().expect("valid preset");
    if let Some(limit) = setup.shed_limit {
        preset.shed = ShedLayer::builder()
            .name("server")
            .fixed(Fixed::new(limit).expect("valid limit"))
            .criticality(FromRequest::default())
            .classify(HttpClassifier)
            .build()
            .expect("valid shed");
    }
    let watch = Watch {
        shed: Some(preset.shed.handle()),
        drain: Some((preset.drain.handle(), None)),
        refusals: vec![
            RejectionKind::Overloaded,
            RejectionKind::DeadlineExceeded,
            RejectionKind::Draining,
        ],
        // The preset's deadline for requests without one, and its headroom.
        server: Some((Duration::from_secs(10), Duration::from_millis(5))),
        ..Watch::default()
    };
    let handler = dependency(faults, log, None);
    let stack = match order {
        ServerOrder::Preset => Server::new(
            preset
                .layer()
                .service(handler)
                .map_err(|never| -> BoxError { match never {} }),
        ),
        ServerOrder::ShedOutsideRejections => Server::new(
            ServiceBuilder::new()
                .shed(preset.shed.clone())
                .handle_rejections()
                .drain(preset.drain.clone())
                .accept_deadline(preset.deadline.clone())
                .service(handler),
        ),
    };
    (stack, watch)
}
