//! The edge service: each call needs both backends. Unprotected, or with the presets.

use std::net::SocketAddr;
use std::time::Duration;

use axum::routing::get;
use axum::Router;
use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use tokio::net::TcpListener;
use tower::util::BoxCloneSyncService;
use tower::{service_fn, Layer, ServiceExt};
use tower_bulwark::breaker::{BreakerHandle, OpenDuration};
use tower_bulwark::deadline::TimeoutLayer;
use tower_bulwark::fallback::FallbackLayer;
use tower_bulwark::presets::{ClientPreset, ServerPreset};
use tower_bulwark::shed::{Aimd, FromRequest, ShedLayer};
use tower_bulwark::{BoxError, HttpClassifier};

type Backend = BoxCloneSyncService<Request<Full<Bytes>>, Response<Bytes>, BoxError>;

/// A pooled HTTP/1 client (keep-alive), shared by the calls to one backend.
pub(crate) fn pooled() -> Client<HttpConnector, Full<Bytes>> {
    Client::builder(TokioExecutor::new())
        .pool_max_idle_per_host(1024)
        .build_http()
}

/// Calls to `addr` over a pooled connection, the response read whole.
fn transport(
    addr: SocketAddr,
) -> impl tower::Service<
    Request<Full<Bytes>>,
    Response = Response<Bytes>,
    Error = BoxError,
    Future = impl Send,
> + Clone {
    let client = pooled();
    service_fn(move |mut request: Request<Full<Bytes>>| {
        let client = client.clone();
        async move {
            *request.uri_mut() = format!("http://{addr}/").parse()?;
            let response = client.request(request).await?;
            let (head, body) = response.into_parts();
            Ok::<_, BoxError>(Response::from_parts(head, body.collect().await?.to_bytes()))
        }
    })
}

pub(crate) struct Edge {
    pub(crate) addr: SocketAddr,
    /// The breaker in front of the breakable backend, when protected.
    pub(crate) breaker: Option<BreakerHandle>,
}

/// Starts the edge in front of `steady` and `breakable`.
pub(crate) async fn start(
    steady: SocketAddr,
    breakable: SocketAddr,
    protected: bool,
) -> Result<Edge, BoxError> {
    let (first, second, breaker): (Backend, Backend, _) = if protected {
        let mut client = ClientPreset::http("backend")?;
        client.breaker = tower_bulwark::breaker::CircuitBreakerLayer::builder()
            .name("breakable")
            .consecutive_failures(5)
            .open_duration(OpenDuration::Fixed(Duration::from_secs(1)))
            .classifier(HttpClassifier)
            .build()?;
        // Five times the usual latency, and a short deadline, before giving up on a call.
        client.timeout = TimeoutLayer::new(super::backend::SERVICE_TIME * 5)?;
        let breaker = client.breaker.handle();
        let fallback = FallbackLayer::builder()
            .last_good(Duration::from_secs(600), 16)
            .classify(HttpClassifier)
            .build()?;
        let steady_client = ClientPreset::http("steady")?;
        (
            BoxCloneSyncService::new(steady_client.layer().service(transport(steady))),
            BoxCloneSyncService::new(fallback.layer(client.layer().service(transport(breakable)))),
            Some(breaker),
        )
    } else {
        (
            BoxCloneSyncService::new(transport(steady)),
            BoxCloneSyncService::new(transport(breakable)),
            None,
        )
    };
    let handler = move || {
        let (first, second) = (first.clone(), second.clone());
        async move {
            let request = || Request::get("/").body(Full::default()).expect("request");
            let (a, b) = tokio::join!(first.oneshot(request()), second.oneshot(request()));
            match (a, b) {
                (Ok(a), Ok(b)) if a.status().is_success() && b.status().is_success() => {
                    StatusCode::OK
                }
                _ => StatusCode::BAD_GATEWAY,
            }
        }
    };
    let app = Router::new().route("/", get(handler));
    let app = if protected {
        let mut server = ServerPreset::http()?;
        // The edge's latency target: twice its unloaded latency (two backend calls).
        server.shed = ShedLayer::builder()
            .name("edge")
            .algorithm(Aimd::new(
                20,
                1,
                1000,
                0.9,
                super::backend::SERVICE_TIME * 4,
            )?)
            .criticality(FromRequest)
            .classify(HttpClassifier)
            .build()?;
        app.layer(server.layer())
    } else {
        app
    };
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move { axum::serve(listener, app).await });
    Ok(Edge { addr, breaker })
}
