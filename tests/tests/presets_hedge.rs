//! The client preset with hedging in its place (`ClientPreset::layer_with`): retry →
//! breaker → hedge → bulkhead → deadline propagation → attempt timeout (paused time).

use std::sync::atomic::{AtomicU32, Ordering::SeqCst};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use http::{Request, Response};
use tower::{service_fn, ServiceBuilder, ServiceExt};
use tower_bulwark::hedge::{HedgeLayer, NotSent};
use tower_bulwark::presets::ClientPreset;
use tower_bulwark::{find_rejection, BoxError, Deadline, RejectionKind};

/// A backend whose first attempt takes a second and later ones 5 ms; it records the
/// deadline header each attempt carried.
fn backend(
    attempts: Arc<AtomicU32>,
    headers: Arc<Mutex<Vec<u64>>>,
) -> impl tower::Service<
    Request<String>,
    Response = Response<String>,
    Error = BoxError,
    Future = impl Send,
> + Clone {
    service_fn(move |request: Request<String>| {
        let n = attempts.fetch_add(1, SeqCst);
        let sent: Option<u64> = request
            .headers()
            .get("x-request-timeout-ms")
            .and_then(|value| value.to_str().ok()?.parse().ok());
        headers.lock().unwrap().extend(sent);
        async move {
            let took = if n == 0 { 1_000 } else { 5 };
            tokio::time::sleep(Duration::from_millis(took)).await;
            Ok::<_, BoxError>(Response::new(format!("attempt {n}")))
        }
    })
}

fn hedge() -> HedgeLayer {
    HedgeLayer::builder()
        .name("inventory")
        .delay(Duration::from_millis(20))
        .build()
        .unwrap()
}

#[tokio::test(start_paused = true)]
async fn a_slow_first_attempt_is_hedged_each_attempt_on_its_own_below_the_hedge() {
    let preset = ClientPreset::http("inventory").unwrap();
    let (bulkhead, hedge) = (preset.bulkhead.handle(), hedge());
    let hedges = hedge.handle();
    let (attempts, headers) = (Arc::default(), Arc::default());
    let stack = ServiceBuilder::new()
        .layer(preset.layer_with(hedge))
        .service(backend(Arc::clone(&attempts), Arc::clone(&headers)));

    let started = tokio::time::Instant::now();
    let response = Deadline::after(Duration::from_secs(2))
        .scope(
            stack.oneshot(
                Request::get("http://inventory/items/7")
                    .body(String::new())
                    .unwrap(),
            ),
        )
        .await
        .unwrap();
    assert_eq!(response.body(), "attempt 1", "the hedge answered first");
    assert_eq!(started.elapsed(), Duration::from_millis(25));
    assert_eq!(attempts.load(SeqCst), 2);
    let snapshot = hedges.snapshot();
    assert_eq!(
        (snapshot.sent, snapshot.hedge_wins, snapshot.cancelled),
        (1, 1, 1)
    );
    // Each attempt took its own bulkhead place, given back when it ended or was cancelled.
    assert_eq!(bulkhead.snapshot().in_flight, 0);
    assert_eq!(bulkhead.snapshot().peak_in_flight, 2);
    // Each attempt sent the time left when it left: 95% of 2 s, then of 1.98 s.
    assert_eq!(*headers.lock().unwrap(), [1_900, 1_881]);
}

#[tokio::test(start_paused = true)]
async fn an_open_breaker_above_the_hedge_sends_nothing_at_all() {
    let preset = ClientPreset::http("inventory").unwrap();
    let hedge = hedge();
    let hedges = hedge.handle();
    preset.breaker.handle().force_open();
    let attempts = Arc::new(AtomicU32::new(0));
    let stack = ServiceBuilder::new()
        .layer(preset.layer_with(hedge))
        .service(backend(Arc::clone(&attempts), Arc::default()));

    let error = stack
        .oneshot(
            Request::get("http://inventory/items/7")
                .body(String::new())
                .unwrap(),
        )
        .await
        .unwrap_err();
    assert_eq!(
        find_rejection(&error).unwrap().kind(),
        RejectionKind::CircuitOpen
    );
    assert_eq!(attempts.load(SeqCst), 0);
    assert_eq!(
        hedges.snapshot().calls,
        0,
        "the breaker refused before the hedge layer"
    );
}

#[tokio::test(start_paused = true)]
async fn a_post_without_an_idempotency_key_is_never_hedged() {
    let preset = ClientPreset::http("inventory").unwrap();
    let hedge = hedge();
    let hedges = hedge.handle();
    let attempts = Arc::new(AtomicU32::new(0));
    let stack = ServiceBuilder::new()
        .layer(preset.layer_with(hedge))
        .service(backend(Arc::clone(&attempts), Arc::default()));

    let response = stack
        .oneshot(
            Request::post("http://inventory/orders")
                .body(String::new())
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(
        response.body(),
        "attempt 0",
        "the slow first attempt, alone"
    );
    assert_eq!(attempts.load(SeqCst), 1);
    let snapshot = hedges.snapshot();
    assert_eq!(snapshot.sent, 0);
    assert_eq!(snapshot.not_sent(NotSent::NotIdempotent), 1);
}
