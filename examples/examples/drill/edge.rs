//! The edge service: each call needs both backends. Unprotected, or with the presets.

use std::net::SocketAddr;
use std::time::Duration;

use axum::body::Body;
use axum::routing::get;
use axum::Router;
use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use tokio::net::TcpListener;
use tower::util::BoxCloneSyncService;
use tower::{service_fn, Layer, ServiceExt};
use tower_bulwark::breaker::{BreakerHandle, OpenDuration};
use tower_bulwark::deadline::TimeoutLayer;
use tower_bulwark::fallback::{FallbackLayer, DEGRADED_HEADER};
use tower_bulwark::health::Health;
use tower_bulwark::presets::{ClientPreset, ServerPreset};
use tower_bulwark::{BoxError, HttpClassifier};

use crate::load::HttpClient;

type Backend = BoxCloneSyncService<Request<Full<Bytes>>, Response<Bytes>, BoxError>;

/// A pooled HTTP/1 client (keep-alive), shared by the calls to one backend.
pub(crate) fn pooled() -> HttpClient {
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

/// The edge's answer from both backends' answers: 200 when both succeeded, marked
/// degraded (with the first marker's source) when either was a fallback's; 502 otherwise.
fn answer(backends: &[Result<Response<Bytes>, BoxError>]) -> Response<Body> {
    let mut response = Response::new(Body::empty());
    if !backends
        .iter()
        .all(|b| b.as_ref().is_ok_and(|r| r.status().is_success()))
    {
        *response.status_mut() = StatusCode::BAD_GATEWAY;
        return response;
    }
    let degraded = backends
        .iter()
        .flatten()
        .find_map(|r| r.headers().get(DEGRADED_HEADER));
    if let Some(source) = degraded {
        response
            .headers_mut()
            .insert(DEGRADED_HEADER, source.clone());
    }
    response
}

pub(crate) struct Edge {
    pub(crate) addr: SocketAddr,
    /// The breaker in front of the breakable backend, when protected.
    pub(crate) breaker: Option<BreakerHandle>,
}

/// Starts the edge in front of `steady` and `breakable`; when protected and given a
/// registry, registers every part it builds there (for `--dashboard`).
pub(crate) async fn start(
    steady: SocketAddr,
    breakable: SocketAddr,
    protected: bool,
    health: Option<&Health>,
) -> Result<Edge, BoxError> {
    let (first, second, breaker): (Backend, Backend, _) = if protected {
        let mut client = ClientPreset::http("breakable")?;
        client.breaker = tower_bulwark::breaker::CircuitBreakerLayer::builder()
            .name("breakable")
            .consecutive_failures(5)
            .open_duration(OpenDuration::Fixed(Duration::from_secs(1)))
            .classify(HttpClassifier)
            .build()?;
        // Five times the usual latency, and a short deadline, before giving up on a call.
        client.timeout = TimeoutLayer::new(super::backend::SERVICE_TIME * 5)?;
        let breaker = client.breaker.handle();
        let fallback = FallbackLayer::builder()
            .last_good(Duration::from_secs(600), 16)
            .classify(HttpClassifier)
            .build()?;
        let steady_client = ClientPreset::http("steady")?;
        if let Some(health) = health {
            steady_client.register(health);
            client.register(health);
        }
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
            answer(&[a, b])
        }
    };
    let app = Router::new().route("/", get(handler));
    let app = if protected {
        // The server preset as shipped: its shedding needs no tuning.
        let server = ServerPreset::http()?;
        if let Some(health) = health {
            server.register(health);
        }
        app.layer(server.layer())
    } else {
        app
    };
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move { axum::serve(listener, app).await });
    Ok(Edge { addr, breaker })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend;
    use crate::load::{self, Answer};
    use tokio::time::Instant;

    #[tokio::test]
    async fn protected_edge_marks_a_last_good_answer_degraded() {
        let steady = backend::start(1).await.unwrap();
        let breakable = backend::start(2).await.unwrap();
        let edge = start(steady.addr, breakable.addr, true, None)
            .await
            .unwrap();
        let client = pooled();
        let call = || load::call(&client, edge.addr, Instant::now());
        // A fresh answer primes the last-good cache (on a loaded machine a call may miss
        // the 50 ms attempt timeout, so a few tries).
        let mut primed = false;
        for _ in 0..20 {
            primed = call().await.answer == Answer::Fresh;
            if primed {
                break;
            }
        }
        assert!(primed, "no fresh answer from healthy backends");
        breakable.outage.enable();
        // The backend answers 503: the fallback serves its last good answer, marked, and
        // the edge passes the mark on.
        assert_eq!(call().await.answer, Answer::Degraded);
    }

    #[tokio::test]
    async fn a_protected_edge_registers_everything_it_builds() {
        let steady = backend::start(1).await.unwrap();
        let breakable = backend::start(2).await.unwrap();
        let health = Health::new();
        let edge = start(steady.addr, breakable.addr, true, Some(&health))
            .await
            .unwrap();
        let names: Vec<String> = health.reports().into_iter().map(|r| r.0).collect();
        assert_eq!(
            names,
            [
                "steady breaker",
                "steady bulkhead",
                "steady retry budget",
                "breakable breaker",
                "breakable bulkhead",
                "breakable retry budget",
                "server shed",
            ]
        );
        // The breaker registered is the one the edge reports (the drill's own, 1 s open).
        edge.breaker.as_ref().unwrap().force_open();
        let breakable_breaker = &health.reports()[3].2;
        assert_eq!(breakable_breaker.detail, "circuit forced_open");
        assert!(health.is_ready());
        assert!(!health.is_draining());
    }

    #[tokio::test]
    async fn an_unprotected_edge_registers_nothing() {
        let steady = backend::start(1).await.unwrap();
        let breakable = backend::start(2).await.unwrap();
        let health = Health::new();
        start(steady.addr, breakable.addr, false, Some(&health))
            .await
            .unwrap();
        assert!(health.reports().is_empty());
    }

    #[tokio::test]
    async fn unprotected_edge_answers_an_outage_with_an_error() {
        let steady = backend::start(1).await.unwrap();
        let breakable = backend::start(2).await.unwrap();
        let edge = start(steady.addr, breakable.addr, false, None)
            .await
            .unwrap();
        breakable.outage.enable();
        let sample = load::call(&pooled(), edge.addr, Instant::now()).await;
        assert_eq!(sample.answer, Answer::Error);
    }

    fn ok(marker: Option<&'static str>) -> Result<Response<Bytes>, BoxError> {
        let mut response = Response::new(Bytes::new());
        if let Some(source) = marker {
            response
                .headers_mut()
                .insert(DEGRADED_HEADER, source.parse().unwrap());
        }
        Ok(response)
    }

    #[test]
    fn the_edge_passes_on_the_first_degraded_mark() {
        let answered = answer(&[ok(None), ok(Some("fallback"))]);
        assert_eq!(answered.status(), StatusCode::OK);
        assert_eq!(answered.headers()[DEGRADED_HEADER], "fallback");
        let both = answer(&[ok(Some("last-good")), ok(Some("backup"))]);
        assert_eq!(both.headers()[DEGRADED_HEADER], "last-good");
        let fresh = answer(&[ok(None), ok(None)]);
        assert_eq!(fresh.status(), StatusCode::OK);
        assert!(fresh.headers().get(DEGRADED_HEADER).is_none());
    }

    #[test]
    fn a_failed_backend_makes_a_bad_gateway_even_beside_a_degraded_answer() {
        let mut unavailable = Response::new(Bytes::new());
        *unavailable.status_mut() = StatusCode::SERVICE_UNAVAILABLE;
        for failed in [Ok(unavailable), Err(BoxError::from("connection refused"))] {
            let answered = answer(&[ok(Some("last-good")), failed]);
            assert_eq!(answered.status(), StatusCode::BAD_GATEWAY);
            assert!(answered.headers().get(DEGRADED_HEADER).is_none());
        }
    }
}
