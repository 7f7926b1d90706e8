//! Criticality at the edge over real HTTP: behind `ServerPreset::http()` a client's
//! `x-request-criticality` may only lower its request, so a forged `critical-plus` is served
//! (and shed) as `critical`; a peer the server's trust rule accepts may raise it, and a
//! criticality the server's own code sets is kept.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::routing::get;
use axum::Router;
use tokio::net::TcpListener;
use tokio::sync::{Notify, Semaphore};
use tokio::task::JoinHandle;
use tower::ServiceBuilder;
use tower_bulwark::presets::ServerPreset;
use tower_bulwark::shed::{Fixed, FromRequest, ShedHandle, ShedLayer};
use tower_bulwark::{Criticality, HttpClassifier};
use tower_bulwark_tests::{get as request, send, Received};

const CRITICALITY: &str = "x-request-criticality";

/// What the authentication middleware puts in the extensions of a peer with the mesh's token.
#[derive(Debug, Clone, Copy)]
struct Authenticated;

/// Server code in front of the preset: marks requests carrying the mesh's token as
/// [`Authenticated`] (a stand-in for mTLS or a verified JWT), and labels the `/hold` route
/// `critical-plus` itself.
fn label(mut request: http::Request<Body>) -> http::Request<Body> {
    if request
        .headers()
        .get("authorization")
        .is_some_and(|v| v == "Bearer mesh")
    {
        request.extensions_mut().insert(Authenticated);
    }
    if request.uri().path() == "/hold" {
        request.extensions_mut().insert(Criticality::CriticalPlus);
    }
    request
}

/// Lets authenticated peers raise their criticality.
fn trusting_authenticated() -> FromRequest {
    FromRequest::default().trust(|head| head.extensions().get::<Authenticated>().is_some())
}

/// Lets peers whose address is in `network` raise their criticality.
fn trusting_peers_in(network: fn(IpAddr) -> bool) -> FromRequest {
    FromRequest::default().trust(move |head| {
        head.extensions()
            .get::<ConnectInfo<SocketAddr>>()
            .is_some_and(|ConnectInfo(peer)| network(peer.ip()))
    })
}

/// The preset with its shed layer replaced: `source` for criticality and a fixed limit.
fn preset(source: FromRequest, limit: usize) -> ServerPreset<HttpClassifier> {
    let mut preset = ServerPreset::http().unwrap();
    preset.shed = ShedLayer::builder()
        .name("server")
        .fixed(Fixed::new(limit).unwrap())
        .criticality(source)
        .classify(HttpClassifier)
        .build()
        .unwrap();
    preset
}

/// A server behind `preset` whose handlers answer with the criticality they run in: `/`
/// at once, `/hold` once released. Returns its address, the shed handle, a count of `/hold`
/// handlers entered and their release.
async fn serve(
    preset: ServerPreset<HttpClassifier>,
) -> (SocketAddr, ShedHandle, Arc<Semaphore>, Arc<Notify>) {
    let handle = preset.shed.handle();
    let entered = Arc::new(Semaphore::new(0));
    let release = Arc::new(Notify::new());
    let (in_handler, released) = (entered.clone(), release.clone());
    let tier = || Criticality::current().map_or("none", Criticality::as_str);
    let router = Router::new()
        .route("/", get(move || async move { tier() }))
        .route(
            "/hold",
            get(move || {
                let (entered, release) = (in_handler.clone(), released.clone());
                async move {
                    let waiting = release.notified();
                    entered.add_permits(1);
                    waiting.await;
                    tier()
                }
            }),
        )
        .layer(
            ServiceBuilder::new()
                .map_request(label)
                .layer(preset.layer()),
        );
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let service = router.into_make_service_with_connect_info::<SocketAddr>();
    tokio::spawn(async move { axum::serve(listener, service).await.unwrap() });
    (addr, handle, entered, release)
}

/// The status and body of a `GET /` with these headers.
async fn answer(addr: SocketAddr, headers: &[(&str, &str)]) -> (u16, String) {
    let received = send(addr, request("/", headers)).await;
    let body = String::from_utf8(received.body.to_vec()).unwrap();
    (received.head.status.as_u16(), body)
}

/// Starts `n` calls of `/hold` (`critical-plus`, set by the server) and waits until their
/// handlers run.
async fn hold(addr: SocketAddr, entered: &Semaphore, n: u32) -> Vec<JoinHandle<Received>> {
    let held = (0..n)
        .map(|_| tokio::spawn(send(addr, request("/hold", &[]))))
        .collect();
    entered.acquire_many(n).await.unwrap().forget();
    held
}

async fn finish(release: &Notify, held: Vec<JoinHandle<Received>>) {
    release.notify_waiters();
    for call in held {
        let received = call.await.unwrap();
        assert_eq!(received.head.status, 200);
        assert_eq!(
            &received.body[..],
            b"critical-plus",
            "set by the server, kept"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn behind_the_server_preset_the_header_only_lowers() {
    let (addr, ..) = serve(ServerPreset::http().unwrap()).await;
    for (sent, served) in [
        (None, "critical"),
        (Some("critical-plus"), "critical"),
        (Some("CRITICAL_PLUS"), "critical"),
        (Some("critical"), "critical"),
        (Some("sheddable-plus"), "sheddable-plus"),
        (Some("sheddable"), "sheddable"),
        (Some("no-such-tier"), "critical"),
    ] {
        let headers: &[(&str, &str)] = match sent {
            Some(value) => &[(CRITICALITY, value)],
            None => &[],
        };
        assert_eq!(
            answer(addr, headers).await,
            (200, served.to_string()),
            "{sent:?}"
        );
    }
    // Even a peer with the mesh's token: the preset trusts no one.
    let forged = [
        (CRITICALITY, "critical-plus"),
        ("authorization", "Bearer mesh"),
    ];
    assert_eq!(answer(addr, &forged).await, (200, "critical".to_string()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn under_overload_a_forged_critical_plus_is_shed_like_critical() {
    let (addr, handle, entered, release) = serve(preset(FromRequest::default(), 10)).await;
    // 9 of 10 places taken by `critical-plus` work: only `critical-plus` may have the last.
    let held = hold(addr, &entered, 9).await;
    assert_eq!(handle.snapshot().in_flight, 9);

    let critical = answer(addr, &[(CRITICALITY, "critical")]).await;
    assert_eq!(critical.0, 503);
    let forged = answer(addr, &[(CRITICALITY, "critical-plus")]).await;
    assert_eq!(forged.0, 503, "a client cannot claim the reserved place");
    assert_eq!(
        handle.snapshot().shed,
        [0, 0, 2, 0],
        "both counted as critical"
    );

    finish(&release, held).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn under_overload_a_trusted_critical_plus_is_honoured() {
    let (addr, handle, entered, release) = serve(preset(trusting_authenticated(), 10)).await;
    let held = hold(addr, &entered, 9).await;

    let forged = answer(addr, &[(CRITICALITY, "critical-plus")]).await;
    assert_eq!(forged.0, 503, "not authenticated");
    let token = ("authorization", "Bearer mesh");
    let trusted = answer(addr, &[(CRITICALITY, "critical-plus"), token]).await;
    assert_eq!(trusted, (200, "critical-plus".to_string()));
    // Lowering needs no trust, and is always believed.
    let lowered = answer(addr, &[(CRITICALITY, "sheddable"), token]).await;
    assert_eq!(lowered.0, 503);
    assert_eq!(handle.snapshot().shed, [1, 0, 1, 0]);

    finish(&release, held).await;

    // With every place taken, a trusted call is refused too, and counted as what it asked.
    let (addr, handle, entered, release) = serve(preset(trusting_authenticated(), 1)).await;
    let held = hold(addr, &entered, 1).await;
    let trusted = answer(addr, &[(CRITICALITY, "critical-plus"), token]).await;
    assert_eq!(trusted.0, 503);
    let forged = answer(addr, &[(CRITICALITY, "critical-plus")]).await;
    assert_eq!(forged.0, 503);
    assert_eq!(handle.snapshot().shed, [0, 0, 1, 1]);
    finish(&release, held).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rule_on_the_peer_address_decides_who_may_raise() {
    let asked = [(CRITICALITY, "critical-plus")];
    let loopback = trusting_peers_in(|ip| ip.is_loopback());
    let (addr, ..) = serve(preset(loopback, 10)).await;
    assert_eq!(
        answer(addr, &asked).await,
        (200, "critical-plus".to_string())
    );

    let private = trusting_peers_in(|ip| matches!(ip, IpAddr::V4(v4) if v4.is_private()));
    let (addr, ..) = serve(preset(private, 10)).await;
    assert_eq!(answer(addr, &asked).await, (200, "critical".to_string()));
}
