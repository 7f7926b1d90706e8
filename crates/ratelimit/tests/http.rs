//! The rate limit layers over real HTTP/1.1 on loopback: axum servers keyed by the peer's
//! address and by route, a gRPC-style request, and a hyper client limiting itself.
#![cfg(feature = "axum")]

use std::net::SocketAddr;
use std::time::Duration;

use axum::routing::{get, post};
use axum::Router;
use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use tokio::net::TcpListener;
use tower::{Layer, ServiceExt};
use tower_bulwark_core::{find_rejection, RejectionKind};
use tower_bulwark_ratelimit::{key, ClientRateLimitLayer, LocalLimiter, Quota, RateLimitLayer};

type HttpClient = Client<HttpConnector, Full<Bytes>>;

fn client() -> HttpClient {
    Client::builder(TokioExecutor::new()).build_http()
}

/// `limit` an hour: nothing comes back while a test runs.
fn per_hour(limit: u32, name: &'static str) -> Quota {
    Quota::per_window(limit, Duration::from_secs(3600))
        .unwrap()
        .name(name)
}

/// Serves `router` with the peer's address in each request's extensions.
async fn serve(router: Router) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let service = router.into_make_service_with_connect_info::<SocketAddr>();
    tokio::spawn(async move { axum::serve(listener, service).await.unwrap() });
    addr
}

async fn send(client: &HttpClient, request: Request<Full<Bytes>>) -> Response<Bytes> {
    let response = client.request(request).await.unwrap();
    let (parts, body) = response.into_parts();
    Response::from_parts(parts, body.collect().await.unwrap().to_bytes())
}

fn get_request(addr: SocketAddr, path: &str) -> Request<Full<Bytes>> {
    Request::get(format!("http://{addr}{path}"))
        .body(Full::default())
        .unwrap()
}

fn header<'a>(response: &'a Response<Bytes>, name: &str) -> Option<&'a str> {
    response.headers().get(name).map(|v| v.to_str().unwrap())
}

#[tokio::test]
async fn a_client_over_its_limit_gets_429_with_retry_after_and_the_draft_headers() {
    let layer = RateLimitLayer::local(per_hour(2, "per-ip"), key::peer_ip)
        .unwrap()
        .build()
        .unwrap();
    let addr = serve(
        Router::new()
            .route("/", get(|| async { "hello" }))
            .layer(layer),
    )
    .await;
    let client = client();

    let first = send(&client, get_request(addr, "/")).await;
    assert_eq!(first.status(), StatusCode::OK);
    assert_eq!(&first.body()[..], b"hello");
    assert_eq!(
        header(&first, "ratelimit-policy"),
        Some(r#""per-ip";q=2;w=3600"#)
    );
    assert_eq!(header(&first, "ratelimit"), Some(r#""per-ip";r=1;t=1800"#));
    send(&client, get_request(addr, "/")).await;

    let refused = send(&client, get_request(addr, "/")).await;
    assert_eq!(refused.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(&refused.body()[..], b"");
    let retry_after: u64 = header(&refused, "retry-after").unwrap().parse().unwrap();
    assert!((1799..=1800).contains(&retry_after), "{retry_after}");
    assert_eq!(
        header(&refused, "ratelimit-policy"),
        Some(r#""per-ip";q=2;w=3600"#)
    );
    let state = header(&refused, "ratelimit").unwrap();
    assert!(state.starts_with(r#""per-ip";r=0;t="#), "{state}");
}

#[tokio::test]
async fn each_route_has_its_own_limit() {
    let layer = RateLimitLayer::builder(LocalLimiter::new(per_hour(1, "route")), key::route)
        .build()
        .unwrap();
    let router = Router::new()
        .route("/users/{id}", get(|| async { "user" }))
        .route("/orders", get(|| async { "orders" }))
        .layer(layer);
    let addr = serve(router).await;
    let client = client();
    let status = |path: &'static str| {
        let client = client.clone();
        async move { send(&client, get_request(addr, path)).await.status() }
    };
    assert_eq!(status("/users/1").await, StatusCode::OK);
    assert_eq!(
        status("/users/2").await,
        429,
        "one route, whatever its parameters"
    );
    assert_eq!(status("/orders").await, StatusCode::OK);
    assert_eq!(status("/orders").await, 429);
    assert_eq!(status("/nowhere").await, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn a_grpc_request_gets_resource_exhausted() {
    let layer = RateLimitLayer::builder(LocalLimiter::new(per_hour(1, "rpc")), key::global)
        .build()
        .unwrap();
    let addr = serve(
        Router::new()
            .route("/pkg.Svc/Call", post(|| async { "" }))
            .layer(layer),
    )
    .await;
    let client = client();
    let call = || {
        Request::post(format!("http://{addr}/pkg.Svc/Call"))
            .header("content-type", "application/grpc")
            .header("te", "trailers")
            .body(Full::new(Bytes::from_static(b"\0\0\0\0\0")))
            .unwrap()
    };
    assert_eq!(send(&client, call()).await.status(), StatusCode::OK);
    let refused = send(&client, call()).await;
    assert_eq!(refused.status(), StatusCode::OK);
    assert_eq!(header(&refused, "grpc-status"), Some("8"));
    assert_eq!(header(&refused, "content-type"), Some("application/grpc"));
    let pushback: u64 = header(&refused, "grpc-retry-pushback-ms")
        .unwrap()
        .parse()
        .unwrap();
    assert!((3_590_000..=3_600_000).contains(&pushback), "{pushback}");
    assert_eq!(header(&refused, "retry-after"), None);
}

#[tokio::test]
async fn a_client_keeps_itself_within_its_quota() {
    let hits = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = hits.clone();
    let router = Router::new().route(
        "/",
        get(move || {
            counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            async { "ok" }
        }),
    );
    let addr = serve(router).await;
    let layer = ClientRateLimitLayer::builder(LocalLimiter::new(per_hour(1, "out")), key::global)
        .name("partner")
        .max_wait(Duration::ZERO)
        .build();
    let limited = layer.layer(client());
    let ok = limited
        .clone()
        .oneshot(get_request(addr, "/"))
        .await
        .unwrap();
    assert_eq!(ok.status(), StatusCode::OK);
    let error = limited.oneshot(get_request(addr, "/")).await.unwrap_err();
    let rejection = find_rejection(&error).unwrap();
    assert_eq!(rejection.kind(), RejectionKind::Throttled);
    assert_eq!(rejection.layer(), "partner");
    assert_eq!(
        hits.load(std::sync::atomic::Ordering::SeqCst),
        1,
        "never sent"
    );
}
