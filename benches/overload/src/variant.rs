//! What the end-to-end bench compares: a hello-world axum handler served bare, behind the
//! server preset and behind tower's nearest stack; and loaded through a bare hyper-util
//! client, through the client preset around it and through tower's nearest stack.

use std::future::Future;
use std::time::Duration;

use axum::error_handling::HandleErrorLayer;
use axum::routing::get;
use axum::Router;
use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use tower::{Service, ServiceBuilder};
use tower_bulwark::presets::{ClientPreset, ServerPreset};
use tower_bulwark::BoxError;

use crate::closed::Plan;
use crate::pinned::{self, Measured};

/// The tower server peer's concurrency limit: the top of the preset's adaptive shed limit
/// (1..=1000, starting at 20).
pub const TOWER_SERVER_LIMIT: usize = 1000;
/// The tower client peer's concurrency limit: the preset's bulkhead (100 in flight).
pub const TOWER_CLIENT_LIMIT: usize = 100;
/// The tower peers' timeout: the server preset's deadline for a request that sends none,
/// and the client preset's attempt timeout.
pub const TOWER_TIMEOUT: Duration = Duration::from_secs(10);
/// The client preset's name.
pub const CLIENT_NAME: &str = "e2e";

/// Which side a variant changes; the other side is bare.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// The server's stack changes; the load comes through the bare client.
    Server,
    /// The client's stack changes; the server is bare.
    Client,
}

/// One stack measured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Variant {
    /// Nothing but the handler and the client. Measured once per side: both are the same
    /// setup, so the second is the noise of the bench itself (an A/A check).
    Bare(Side),
    /// `ServerPreset::http()?.layer()` or `ClientPreset::http(..)?.layer()`.
    Preset(Side),
    /// tower's stack with the preset's limits: server `HandleErrorLayer` + `LoadShed` +
    /// `ConcurrencyLimit(1000)` + `Timeout(10 s)`; client `Retry` (errors, within a
    /// `TpsBudget` like the preset's) + `ConcurrencyLimit(100)` + `Timeout(10 s)`.
    Tower(Side),
}

impl Variant {
    /// Every variant, in the order of a round.
    pub const ALL: [Variant; 6] = [
        Variant::Bare(Side::Server),
        Variant::Preset(Side::Server),
        Variant::Tower(Side::Server),
        Variant::Bare(Side::Client),
        Variant::Preset(Side::Client),
        Variant::Tower(Side::Client),
    ];

    /// The side it changes.
    pub fn side(&self) -> Side {
        match *self {
            Variant::Bare(side) | Variant::Preset(side) | Variant::Tower(side) => side,
        }
    }

    /// How the table names it.
    pub fn label(&self) -> String {
        match self {
            Variant::Bare(Side::Server) => "bare".into(),
            Variant::Bare(Side::Client) => "bare (again: A/A check)".into(),
            Variant::Preset(Side::Server) => "`ServerPreset::http()`".into(),
            Variant::Preset(Side::Client) => format!("`ClientPreset::http({CLIENT_NAME:?})`"),
            Variant::Tower(Side::Server) => format!(
                "tower `LoadShed` + `ConcurrencyLimit({TOWER_SERVER_LIMIT})` + `Timeout({} s)`",
                TOWER_TIMEOUT.as_secs()
            ),
            Variant::Tower(Side::Client) => format!(
                "tower `Retry` + `ConcurrencyLimit({TOWER_CLIENT_LIMIT})` + `Timeout({} s)`",
                TOWER_TIMEOUT.as_secs()
            ),
        }
    }

    /// One run of it under `plan`, on fresh threads and runtimes.
    pub fn measure(&self, plan: Plan) -> Result<Measured, BoxError> {
        match *self {
            Variant::Bare(_) => pinned::run(hello(), None, transport(), plan),
            Variant::Preset(Side::Server) => {
                let preset = ServerPreset::http()?;
                let app = hello().layer(preset.layer());
                pinned::run(app, Some(preset.shed.handle()), transport(), plan)
            }
            Variant::Tower(Side::Server) => {
                let app = hello().layer(
                    ServiceBuilder::new()
                        .layer(HandleErrorLayer::new(|error: BoxError| async move {
                            if error.is::<tower::timeout::error::Elapsed>() {
                                StatusCode::GATEWAY_TIMEOUT
                            } else {
                                StatusCode::SERVICE_UNAVAILABLE
                            }
                        }))
                        .load_shed()
                        .concurrency_limit(TOWER_SERVER_LIMIT)
                        .timeout(TOWER_TIMEOUT),
                );
                pinned::run(app, None, transport(), plan)
            }
            Variant::Preset(Side::Client) => {
                let client = ClientPreset::http(CLIENT_NAME)?
                    .layer()
                    .service(transport());
                pinned::run(hello(), None, client, plan)
            }
            Variant::Tower(Side::Client) => {
                let client = ServiceBuilder::new()
                    .retry(BudgetedRetry::new())
                    .concurrency_limit(TOWER_CLIENT_LIMIT)
                    .timeout(TOWER_TIMEOUT)
                    .service(transport());
                pinned::run(hello(), None, client, plan)
            }
        }
    }
}

/// tower's retry as its documentation pairs it with a budget (over 10 s, 20% of the
/// successes plus 10 retries a second, the client preset's budget): errors are retried
/// while the budget allows, with no cap on attempts and no backoff (the preset's retry has
/// both; this bench's answers never fail, so only the copy and the deposit are measured);
/// every request is copied first, for a retry, as the preset's retry does.
#[derive(Clone, Debug)]
struct BudgetedRetry {
    budget: std::sync::Arc<tower::retry::budget::TpsBudget>,
}

impl BudgetedRetry {
    fn new() -> Self {
        let budget = tower::retry::budget::TpsBudget::new(Duration::from_secs(10), 10, 0.2);
        BudgetedRetry {
            budget: std::sync::Arc::new(budget),
        }
    }
}

impl<Req: Clone, Res, E> tower::retry::Policy<Req, Res, E> for BudgetedRetry {
    type Future = std::future::Ready<()>;

    fn retry(&mut self, _request: &mut Req, result: &mut Result<Res, E>) -> Option<Self::Future> {
        use tower::retry::budget::Budget;
        match result {
            Ok(_) => {
                self.budget.deposit();
                None
            }
            Err(_) => self.budget.withdraw().then(|| std::future::ready(())),
        }
    }

    fn clone_request(&mut self, request: &Req) -> Option<Req> {
        Some(request.clone())
    }
}

/// The handler: `GET /` answers `Hello, World!`.
pub fn hello() -> Router {
    Router::new().route("/", get(|| async { "Hello, World!" }))
}

/// hyper-util's pooled client over HTTP/1.1 keep-alive as a tower service, the answer's
/// body read whole (as `examples/examples/client_preset_hyper.rs` wraps it). Requests carry
/// `Full<Bytes>` bodies, which the client preset's retry can copy.
pub fn transport() -> impl Service<
    Request<Full<Bytes>>,
    Response = Response<Bytes>,
    Error = BoxError,
    Future: Future<Output = Result<Response<Bytes>, BoxError>> + Send,
> + Clone
       + Send
       + 'static {
    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    let client: Client<HttpConnector, Full<Bytes>> = Client::builder(TokioExecutor::new())
        .pool_max_idle_per_host(usize::MAX)
        .build(connector);
    tower::service_fn(move |request: Request<Full<Bytes>>| {
        let client = client.clone();
        async move {
            let response = client.request(request).await?;
            let (head, body) = response.into_parts();
            Ok::<_, BoxError>(Response::from_parts(head, body.collect().await?.to_bytes()))
        }
    })
}
