//! The edge: an axum server behind the server preset, with a rate limit per client and
//! idempotency keys, calling the backends through the whole client stack in its
//! recommended order: coalescing -> fallback -> the client preset with hedging -> a p2c
//! balancer of endpoints, each under the outlier detector.

use std::net::SocketAddr;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Path, State};
use axum::routing::{get, post};
use axum::Router;
use bytes::Bytes;
use http::{HeaderName, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tower::balance::p2c::Balance;
use tower::discover::ServiceList;
use tower::load::{CompleteOnResponse, PendingRequests};
use tower::util::BoxCloneSyncService;
use tower::{service_fn, Layer, ServiceBuilder, ServiceExt};
use tower_bulwark::breaker::{BreakerHandle, OpenDuration};
use tower_bulwark::bulkhead::BulkheadHandle;
use tower_bulwark::coalesce::{CoalesceBody, CoalesceHandle, CoalesceLayer};
use tower_bulwark::deadline::TimeoutLayer;
use tower_bulwark::fallback::FallbackLayer;
use tower_bulwark::hedge::{HedgeHandle, HedgeLayer};
use tower_bulwark::idempotency::{IdempotencyLayer, MemoryStore};
use tower_bulwark::outlier::OutlierDetector;
use tower_bulwark::presets::{ClientPreset, ServerPreset};
use tower_bulwark::ratelimit::key::{self, HeaderKey};
use tower_bulwark::ratelimit::{LocalLimiter, Quota, RateLimitLayer};
use tower_bulwark::shed::ShedHandle;
use tower_bulwark::{BoxError, HttpClassifier};

/// The header that names the caller, for the rate limit.
pub(crate) const CLIENT_ID: &str = "x-client-id";
/// Each endpoint's attempt timeout: a hung call ends here, as the endpoint's failure.
const ENDPOINT_TIMEOUT: Duration = Duration::from_millis(500);

type Items = BoxCloneSyncService<Request<Full<Bytes>>, Response<Bytes>, BoxError>;

/// Every part whose counts the soak samples.
pub(crate) struct Parts {
    pub(crate) shed: ShedHandle,
    pub(crate) breaker: BreakerHandle,
    pub(crate) bulkhead: BulkheadHandle,
    pub(crate) hedge: HedgeHandle,
    pub(crate) coalesce: CoalesceHandle,
    pub(crate) detector: OutlierDetector,
    pub(crate) limiter: LocalLimiter<HeaderKey>,
    pub(crate) idempotency: MemoryStore,
}

/// The running edge.
pub(crate) struct Edge {
    pub(crate) addr: SocketAddr,
    pub(crate) parts: Parts,
    stop: oneshot::Sender<()>,
    served: JoinHandle<std::io::Result<()>>,
}

impl Edge {
    /// Starts the edge in front of the backends at `backends`, every keyed store bounded
    /// to `max_keys` keys.
    pub(crate) async fn start(backends: &[SocketAddr], max_keys: usize) -> Result<Edge, BoxError> {
        let (items, client_parts) = items_client(backends, max_keys)?;
        let server = ServerPreset::http()?;
        let limiter = LocalLimiter::builder(Quota::per_second(20)?.burst(10)?)
            .max_keys(max_keys)
            .sweep_interval(Duration::from_secs(5))
            .build()?;
        let per_client = RateLimitLayer::builder(
            limiter.clone(),
            key::header(HeaderName::from_static(CLIENT_ID)),
        )
        .name("per-client")
        .build()?;
        let idempotency_store = MemoryStore::with_capacity(max_keys);
        let idempotency = IdempotencyLayer::builder()
            .store(idempotency_store.clone())
            .build()?;
        let router = Router::new()
            .route("/items/{key}", get(item))
            .route("/orders", post(order))
            .with_state(items)
            .layer(server.layer_with(ServiceBuilder::new().layer(per_client).layer(idempotency)));
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let (stop, stopped) = oneshot::channel::<()>();
        let served = tokio::spawn(async move {
            axum::serve(listener, router)
                .with_graceful_shutdown(async {
                    let _ = stopped.await;
                })
                .await
        });
        let (breaker, bulkhead, hedge, coalesce, detector) = client_parts;
        Ok(Edge {
            addr,
            parts: Parts {
                shed: server.shed.handle(),
                breaker,
                bulkhead,
                hedge,
                coalesce,
                detector,
                limiter,
                idempotency: idempotency_store,
            },
            stop,
            served,
        })
    }

    /// Stops the edge: no new connections; open ones close once their calls end.
    pub(crate) async fn stop(self) -> Result<Parts, BoxError> {
        let _ = self.stop.send(());
        let mut served = self.served;
        match tokio::time::timeout(Duration::from_secs(5), &mut served).await {
            Ok(result) => result??,
            Err(_) => {
                served.abort();
                let _ = served.await;
            }
        }
        Ok(self.parts)
    }
}

/// `GET /items/{key}`: the item from a backend (or the last good copy of it).
async fn item(State(items): State<Items>, Path(key): Path<u64>) -> Response<Body> {
    let request = Request::get(format!("http://backend/items/{key}"))
        .body(Full::new(Bytes::new()))
        .expect("a valid request");
    match items.oneshot(request).await {
        Ok(response) => response.map(Body::from),
        Err(_) => {
            let mut response = Response::new(Body::empty());
            *response.status_mut() = StatusCode::BAD_GATEWAY;
            response
        }
    }
}

/// `POST /orders`: an order, made once per idempotency key.
async fn order(body: Bytes) -> (StatusCode, Bytes) {
    (StatusCode::CREATED, body)
}

type ClientParts = (
    BreakerHandle,
    BulkheadHandle,
    HedgeHandle,
    CoalesceHandle,
    OutlierDetector,
);

/// The client of the backends, outermost first: coalescing, the last-good fallback, the
/// client preset with hedging between breaker and bulkhead, a buffer, and a p2c balancer
/// of the endpoints, each under the outlier detector with its own attempt timeout.
fn items_client(
    backends: &[SocketAddr],
    max_keys: usize,
) -> Result<(Items, ClientParts), BoxError> {
    let detector = ClientPreset::outlier_builder("backends")
        .interval(Duration::from_secs(1))
        .base_ejection_time(Duration::from_secs(2))
        .max_ejection_percent(34)
        .build()?;
    let endpoints: Vec<_> = backends
        .iter()
        .map(|&addr| {
            let endpoint = TimeoutLayer::new(ENDPOINT_TIMEOUT)
                .expect("not zero")
                .layer(transport(addr));
            let endpoint = PendingRequests::new(endpoint, CompleteOnResponse::default());
            detector.layer(addr.to_string()).http().layer(endpoint)
        })
        .collect();
    let balance = Balance::new(ServiceList::new(endpoints));

    let mut preset = ClientPreset::http("backends")?;
    preset.timeout = TimeoutLayer::new(Duration::from_secs(1))?;
    // Above a balancer the breaker judges the dependency as a whole: a failure rate, not
    // 5 failures in a row (one endpoint's 503s before its ejection would open it). Open
    // for 5 s rather than 30 s, so that every phase of a short run starts with the breaker
    // closed again.
    preset.breaker = ClientPreset::balanced_breaker_builder("backends", HttpClassifier)
        .open_duration(OpenDuration::Fixed(Duration::from_secs(5)))
        .build()?;
    let hedge = HedgeLayer::builder()
        .name("backends")
        .percentile(0.95)
        .delay(Duration::from_millis(20))
        .build()?;
    let fallback = FallbackLayer::builder::<Full<Bytes>>()
        .last_good(Duration::from_secs(60), max_keys)
        .build()?;
    let coalesce = CoalesceLayer::builder()
        .name("backends")
        .max_keys(max_keys)
        .build()?;
    let parts = (
        preset.breaker.handle(),
        preset.bulkhead.handle(),
        hedge.handle(),
        coalesce.handle(),
        detector,
    );
    let below = ServiceBuilder::new()
        .layer(fallback)
        .layer(preset.layer_with(hedge))
        .buffer(1024)
        .service(balance);
    tower_bulwark::expect_service::<Request<Full<Bytes>>, _>(&below);
    let stack = coalesce.layer(below);
    let items = BoxCloneSyncService::new(stack.and_then(
        |response: Response<CoalesceBody<Full<Bytes>>>| async move {
            let (head, body) = response.into_parts();
            Ok::<_, BoxError>(Response::from_parts(head, body.collect().await?.to_bytes()))
        },
    ));
    Ok((items, parts))
}

/// Calls to `addr` over a pooled HTTP/1 connection, the answer read whole.
fn transport(
    addr: SocketAddr,
) -> impl tower::Service<
    Request<Full<Bytes>>,
    Response = Response<Full<Bytes>>,
    Error = BoxError,
    Future = impl std::future::Future<Output = Result<Response<Full<Bytes>>, BoxError>> + Send,
> + Clone {
    let client = Client::builder(TokioExecutor::new())
        .pool_idle_timeout(Duration::from_secs(5))
        .build_http();
    service_fn(move |mut request: Request<Full<Bytes>>| {
        let client = client.clone();
        async move {
            let path = request.uri().path().to_string();
            *request.uri_mut() = format!("http://{addr}{path}").parse()?;
            let response = client.request(request).await?;
            let (head, body) = response.into_parts();
            let body = body.collect().await?.to_bytes();
            Ok::<_, BoxError>(Response::from_parts(head, Full::new(body)))
        }
    })
}
