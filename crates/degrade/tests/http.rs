//! Over real HTTP: the health JSON shows the switches, and handlers read them through the
//! axum extractor.
#![cfg(feature = "axum")]

mod support;

use std::net::SocketAddr;

use axum::routing::get;
use axum::Router;
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;
use support::Pressure;
use tokio::net::{TcpListener, TcpStream};
use tokio::time::Instant;
use tower_bulwark_degrade::{Feature, SwitchName, Switches, Threshold, Tiers};
use tower_bulwark_health::Health;

struct Reviews;
impl SwitchName for Reviews {
    const NAME: &'static str = "reviews";
}

struct Recommendations;
impl SwitchName for Recommendations {
    const NAME: &'static str = "recommendations";
}

struct Misspelt;
impl SwitchName for Misspelt {
    const NAME: &'static str = "revews";
}

async fn product(reviews: Feature<Reviews>, recommendations: Feature<Recommendations>) -> String {
    format!(
        "product; reviews {}; recommendations level {}",
        if reviews.is_on() { "shown" } else { "hidden" },
        recommendations.level()
    )
}

async fn get_text(addr: SocketAddr, path: &str) -> (u16, String) {
    let stream = TcpStream::connect(addr).await.unwrap();
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(connection);
    let request = http::Request::get(path)
        .body(Empty::<&[u8]>::new())
        .unwrap();
    let response = sender.send_request(request).await.unwrap();
    let status = response.status().as_u16();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8(body.to_vec()).unwrap())
}

async fn serve(switches: Switches, health: &Health) -> SocketAddr {
    let app = Router::new()
        .route("/product", get(product))
        .route(
            "/broken",
            get(|_: Feature<Misspelt>| async { "unreachable" }),
        )
        .nest_service("/health", health.service())
        .with_state(switches);
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    addr
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_health_json_and_the_extractor_follow_the_switches() {
    let pressure = Pressure::default();
    let switches = Switches::builder()
        .name("shop")
        .switch("checkout")
        .switch_levels("recommendations", 2)
        .tiers(
            Tiers::new(pressure.signal())
                .tier("reviews", Threshold::new(300.0, 150.0))
                .tier("recommendations", Threshold::new(500.0, 250.0)),
        )
        .manual_evaluation()
        .build()
        .unwrap();
    let health = Health::new();
    health.add_switches(&switches);
    let addr = serve(switches.clone(), &health).await;

    let (status, json) = get_text(addr, "/health").await;
    assert_eq!(status, 200);
    assert_eq!(
        json,
        concat!(
            r#"{"status":"ready","draining":false,"components":["#,
            r#"{"name":"shop/checkout","required":false,"status":"up","detail":"on (automatic): initial state; never changed"},"#,
            r#"{"name":"shop/recommendations","required":false,"status":"up","detail":"on (automatic): initial state; never changed"},"#,
            r#"{"name":"shop/reviews","required":false,"status":"up","detail":"on (automatic): initial state; never changed"}]}"#
        )
    );
    assert_eq!(
        get_text(addr, "/product").await,
        (
            200,
            "product; reviews shown; recommendations level 0".into()
        )
    );

    pressure.set(400.0);
    switches.evaluate(Instant::now());
    assert_eq!(
        get_text(addr, "/product").await,
        (
            200,
            "product; reviews hidden; recommendations level 0".into()
        )
    );
    let (status, json) = get_text(addr, "/health").await;
    assert_eq!(
        status, 200,
        "a switched-off feature does not make the process unready"
    );
    let reviews = r#"{"name":"shop/reviews","required":false,"status":"degraded","detail":"off (automatic): load 400 >= 300; changed "#;
    assert!(json.contains(reviews), "{json}");

    switches
        .switch("recommendations")
        .unwrap()
        .force_level(1)
        .unwrap();
    assert_eq!(
        get_text(addr, "/product").await,
        (
            200,
            "product; reviews hidden; recommendations level 1".into()
        )
    );
    let (_, json) = get_text(addr, "/health").await;
    let recommendations = r#"{"name":"shop/recommendations","required":false,"status":"degraded","detail":"level 1 of 2 (forced): forced to level 1 by an operator; changed "#;
    let ago = json.split(recommendations).nth(1).expect(&json);
    let seconds: f64 = ago.split("s ago\"}").next().unwrap().parse().expect(ago);
    assert!((0.0..60.0).contains(&seconds), "{json}");

    assert_eq!(
        get_text(addr, "/broken").await,
        (500, "no degradation switch named `revews`".into())
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_probes_do_not_keep_the_switches_alive() {
    let switches = Switches::builder()
        .name("shop")
        .switch("reviews")
        .manual_evaluation()
        .build()
        .unwrap();
    let health = Health::new();
    health.add_switches(&switches);
    drop(switches);
    let report = &health.reports()[0].2;
    assert_eq!(report.detail, "switches dropped");
}
