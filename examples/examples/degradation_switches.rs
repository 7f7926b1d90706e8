//! A shop that switches off what matters least when its catalog slows down, in order, and
//! switches it back on, in reverse order, as the catalog recovers; checkout always answers.
//!
//! `cargo run --example degradation_switches`
//!
//! Every page of the shop (axum) queries the catalog, a dependency whose latency the
//! example raises and lowers in phases while 24 clients load the shop over HTTP. A
//! `RecordLayer` measures the catalog's p99 over one second; two tiers watch it:
//!
//! - reviews: off at a p99 of 200 ms or more, back on at 100 ms or less;
//! - recommendations: off at 600 ms or more, back on at 300 ms or less.
//!
//! A page whose switch is off answers at once without the catalog (trending items, "reviews
//! unavailable"). The example prints each flip as it happens and the health JSON while
//! degraded, and exits non-zero unless the flips came in order and both features came
//! back with every checkout answered.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{FromRef, State};
use axum::routing::get;
use axum::Router;
use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;
use tokio::net::{TcpListener, TcpStream};
use tokio::time::Instant;
use tower::util::BoxCloneSyncService;
use tower::{service_fn, ServiceBuilder, ServiceExt};
use tower_bulwark::degrade::{
    DegradeEvent, Feature, Recorder, SwitchName, Switches, Threshold, Tiers,
};
use tower_bulwark::health::Health;
use tower_bulwark::BoxError;

type Catalog = BoxCloneSyncService<String, String, BoxError>;

#[derive(Clone)]
struct Shop {
    switches: Switches,
    catalog: Catalog,
}

impl FromRef<Shop> for Switches {
    fn from_ref(shop: &Shop) -> Switches {
        shop.switches.clone()
    }
}

struct Reviews;
impl SwitchName for Reviews {
    const NAME: &'static str = "reviews";
}

struct Recommendations;
impl SwitchName for Recommendations {
    const NAME: &'static str = "recommendations";
}

async fn checkout(State(shop): State<Shop>) -> Result<String, String> {
    let price = shop
        .catalog
        .oneshot("price".to_string())
        .await
        .map_err(|e| e.to_string())?;
    Ok(format!("order placed at {price}"))
}

async fn recommendations(on: Feature<Recommendations>, State(shop): State<Shop>) -> String {
    if !on.is_on() {
        return "trending items (cached)".into();
    }
    shop.catalog
        .oneshot("similar".to_string())
        .await
        .unwrap_or_default()
}

async fn reviews(on: Feature<Reviews>, State(shop): State<Shop>) -> String {
    if !on.is_on() {
        return "reviews are unavailable right now".into();
    }
    shop.catalog
        .oneshot("reviews".to_string())
        .await
        .unwrap_or_default()
}

/// One `GET` over a new connection: status and body.
async fn fetch(addr: SocketAddr, path: &str) -> Result<(u16, String), BoxError> {
    let stream = TcpStream::connect(addr).await?;
    let (mut sender, connection) =
        hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(connection);
    let request = http::Request::get(path).body(Empty::<Bytes>::new())?;
    let response = sender.send_request(request).await?;
    let status = response.status().as_u16();
    let body = response.into_body().collect().await?.to_bytes();
    Ok((status, String::from_utf8_lossy(&body).into_owned()))
}

/// What the clients saw.
#[derive(Default)]
struct Tally {
    checkouts: AtomicU64,
    failed_checkouts: AtomicU64,
    degraded_pages: AtomicU64,
}

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    // The catalog: its latency is the pressure this example raises.
    let latency_ms = Arc::new(AtomicU64::new(5));
    let recorder = Recorder::builder()
        .name("catalog")
        .window(Duration::from_secs(1))
        .min_calls(5)
        .build()?;
    let slow = latency_ms.clone();
    let catalog = ServiceBuilder::new()
        .layer(recorder.layer())
        .service(service_fn(move |query: String| {
            let delay = Duration::from_millis(slow.load(Relaxed));
            async move {
                tokio::time::sleep(delay).await;
                Ok::<_, BoxError>(format!("{query}: ok"))
            }
        }));

    // The switches, printing every flip and keeping it for the summary.
    let start = Instant::now();
    let flips: Arc<Mutex<Vec<(String, u8)>>> = Arc::default();
    let seen = flips.clone();
    let switches = Switches::builder()
        .name("shop")
        .switch("checkout") // never degraded by the tiers; shown in the health JSON
        .tiers(
            Tiers::new(recorder.latency(0.99)?)
                .tier("reviews", Threshold::new(200.0, 100.0))
                .tier("recommendations", Threshold::new(600.0, 300.0)),
        )
        .interval(Duration::from_millis(100))
        .min_dwell(Duration::from_secs(1))
        .on_event(move |event: &DegradeEvent| {
            if let DegradeEvent::Flipped {
                switch, to, reason, ..
            } = event
            {
                let state = if *to == 0 { "on " } else { "off" };
                let at = start.elapsed().as_secs_f64();
                println!("[{at:5.2}s] {switch:<15} {state}  {reason}");
                seen.lock().unwrap().push((switch.to_string(), *to));
            }
        })
        .build()?;
    let health = Health::new();
    health.add_switches(&switches);

    let shop = Shop {
        switches: switches.clone(),
        catalog: BoxCloneSyncService::new(catalog),
    };
    let app = Router::new()
        .route("/checkout", get(checkout))
        .route("/recommendations", get(recommendations))
        .route("/reviews", get(reviews))
        .nest_service("/health", health.service())
        .with_state(shop);
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move { axum::serve(listener, app).await });

    // The load: 24 clients going round the shop's pages until told to stop.
    let (stop, tally) = (Arc::new(AtomicBool::new(false)), Arc::new(Tally::default()));
    for client in 0..24 {
        let (stop, tally) = (stop.clone(), tally.clone());
        tokio::spawn(async move {
            let pages = ["/checkout", "/recommendations", "/reviews"];
            let mut page = client;
            while !stop.load(Relaxed) {
                let path = pages[page % 3];
                page += 1;
                let answer = fetch(addr, path).await;
                if path == "/checkout" {
                    tally.checkouts.fetch_add(1, Relaxed);
                    if !matches!(answer, Ok((200, ref body)) if body.starts_with("order placed")) {
                        tally.failed_checkouts.fetch_add(1, Relaxed);
                    }
                } else if matches!(answer, Ok((_, ref body)) if !body.ends_with(": ok")) {
                    tally.degraded_pages.fetch_add(1, Relaxed);
                }
            }
        });
    }

    // The catalog slows down, then recovers: (latency, how long).
    let phases = [
        (5, 1_500),
        (300, 2_500),
        (900, 2_500),
        (200, 3_000),
        (5, 3_000),
    ];
    for (latency, millis) in phases {
        println!(
            "[{:5.2}s] catalog latency {latency} ms",
            start.elapsed().as_secs_f64()
        );
        latency_ms.store(latency, Relaxed);
        tokio::time::sleep(Duration::from_millis(millis)).await;
        if latency == 900 {
            let (_, json) = fetch(addr, "/health").await?;
            println!("          /health: {json}");
        }
    }
    stop.store(true, Relaxed);

    // The check: off in tier order, back on in reverse, checkout always served.
    let flips = flips.lock().unwrap().clone();
    let expected = [
        ("reviews", 1),
        ("recommendations", 1),
        ("recommendations", 0),
        ("reviews", 0),
    ];
    let in_order = flips.iter().map(|(s, to)| (s.as_str(), *to)).eq(expected);
    let checkouts = tally.checkouts.load(Relaxed);
    let failed = tally.failed_checkouts.load(Relaxed);
    println!(
        "\n{checkouts} checkouts ({failed} failed), {} pages served degraded, flips {flips:?}",
        tally.degraded_pages.load(Relaxed)
    );
    let all_on = switches.statuses().iter().all(|s| s.is_on());
    if in_order && all_on && failed == 0 && checkouts > 0 {
        println!(
            "ok: features went off in tier order, came back in reverse, checkout never failed"
        );
        Ok(())
    } else {
        eprintln!("FAILED: in order {in_order}, all back on {all_on}, failed checkouts {failed}");
        std::process::exit(1);
    }
}
