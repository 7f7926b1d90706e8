//! Fault injection: rates, replay, latency, the kill switch and header targeting.

use std::time::Duration;

use http::{Request, Response, StatusCode};
use tokio::time::Instant;
use tower::{service_fn, Layer, Service, ServiceExt};
use tower_bulwark_chaos::{
    ChaosError, ChaosLayer, HttpChaosLayer, HttpFault, Latency, FAULT_ABORT_HEADER,
    FAULT_DELAY_HEADER, FAULT_GRPC_HEADER, FAULT_STATUS_HEADER,
};
use tower_bulwark_core::testing::controlled;
use tower_bulwark_core::GrpcCode;

/// The fault each of `n` calls got: `'.'` none, `'E'` error, `'A'` abort.
async fn faults(layer: &ChaosLayer, n: usize) -> String {
    let mut service = layer.layer(service_fn(|_: ()| async { Ok::<_, std::io::Error>(()) }));
    let mut seen = String::new();
    for _ in 0..n {
        let result = service.ready().await.unwrap().call(()).await;
        seen.push(match result {
            Ok(()) => '.',
            Err(e) => match e.downcast_ref::<ChaosError>() {
                Some(ChaosError::Injected) => 'E',
                Some(ChaosError::Aborted) => 'A',
                _ => '?',
            },
        });
    }
    seen
}

#[tokio::test(start_paused = true)]
async fn rates_hold_within_statistical_bounds() {
    let layer = ChaosLayer::builder()
        .error_rate(0.1)
        .abort_rate(0.05)
        .seed(2024)
        .build()
        .unwrap();
    let seen = faults(&layer, 10_000).await;
    let errors = seen.matches('E').count();
    let aborts = seen.matches('A').count();
    // Binomial: 1,000 +- 3 sigma (30) and 500 +- 3 sigma (22).
    assert!((910..=1090).contains(&errors), "{errors}");
    assert!((434..=566).contains(&aborts), "{aborts}");
    assert_eq!(
        layer.handle().injected()[..2],
        [errors as u64, aborts as u64]
    );
}

#[tokio::test(start_paused = true)]
async fn a_seed_replays_exactly() {
    let build = |seed| {
        ChaosLayer::builder()
            .error_rate(0.3)
            .abort_rate(0.1)
            .seed(seed)
            .build()
            .unwrap()
    };
    let first = faults(&build(9), 200).await;
    assert_eq!(faults(&build(9), 200).await, first);
    assert_ne!(faults(&build(10), 200).await, first);
}

#[tokio::test(start_paused = true)]
async fn latency_follows_its_distribution() {
    let timed = |latency| async move {
        let layer = ChaosLayer::builder()
            .latency(1.0, latency)
            .seed(3)
            .build()
            .unwrap();
        let mut service = layer.layer(service_fn(|_: ()| async { Ok::<_, std::io::Error>(()) }));
        let mut waits = Vec::new();
        for _ in 0..2_000 {
            let started = Instant::now();
            service.ready().await.unwrap().call(()).await.unwrap();
            waits.push(started.elapsed());
        }
        waits
    };
    let fixed = timed(Latency::Fixed(Duration::from_millis(40))).await;
    assert!(fixed.iter().all(|w| *w == Duration::from_millis(40)));
    let uniform = timed(Latency::Uniform {
        min: Duration::from_millis(10),
        max: Duration::from_millis(30),
    })
    .await;
    // Paused time rounds timers up to whole milliseconds.
    assert!(uniform
        .iter()
        .all(|w| (Duration::from_millis(10)..=Duration::from_millis(31)).contains(w)));
    let mean = |waits: &[Duration]| waits.iter().sum::<Duration>() / waits.len() as u32;
    let uniform_mean = mean(&uniform);
    assert!((Duration::from_millis(19)..=Duration::from_millis(22)).contains(&uniform_mean));
    let exponential = timed(Latency::Exponential {
        mean: Duration::from_millis(20),
    })
    .await;
    let exponential_mean = mean(&exponential);
    assert!(
        (Duration::from_millis(18)..=Duration::from_millis(23)).contains(&exponential_mean),
        "{exponential_mean:?}"
    );
    assert!(
        exponential.iter().any(|w| *w > Duration::from_millis(60)),
        "a long tail"
    );
}

#[tokio::test(start_paused = true)]
async fn an_enormous_latency_saturates_instead_of_panicking() {
    let layer = ChaosLayer::builder()
        .latency(
            1.0,
            Latency::Exponential {
                mean: Duration::MAX,
            },
        )
        .seed(5)
        .build()
        .unwrap();
    let service = layer.layer(service_fn(|_: ()| async { Ok::<_, std::io::Error>(()) }));
    let call = tokio::spawn(service.oneshot(()));
    tokio::time::advance(Duration::from_secs(3600)).await;
    assert!(!call.is_finished(), "still waiting, and nothing panicked");
    call.abort();
}

#[tokio::test(start_paused = true)]
async fn the_kill_switch_stops_every_fault() {
    let layer = ChaosLayer::builder().error_rate(1.0).build().unwrap();
    let handle = layer.handle();
    assert_eq!(faults(&layer, 3).await, "EEE");
    handle.disable();
    assert!(!handle.is_enabled());
    assert_eq!(faults(&layer, 3).await, "...");
    handle.enable();
    assert_eq!(faults(&layer, 1).await, "E");
    let off = ChaosLayer::builder()
        .error_rate(1.0)
        .disabled()
        .build()
        .unwrap();
    assert_eq!(faults(&off, 3).await, "...");
}

fn http_service(
    layer: &HttpChaosLayer,
) -> impl Service<Request<()>, Response = Response<()>, Error = tower_bulwark_core::BoxError> + Clone
{
    layer.layer(service_fn(|_: Request<()>| async {
        Ok::<_, std::convert::Infallible>(Response::new(()))
    }))
}

fn request(headers: &[(&str, &str)]) -> Request<()> {
    let mut request = Request::get("/");
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    request.body(()).unwrap()
}

#[tokio::test(start_paused = true)]
async fn injected_errors_answer_with_the_chosen_status_or_grpc_code() {
    let layer = HttpChaosLayer::new(ChaosLayer::builder().error_rate(1.0))
        .unwrap()
        .answer(HttpFault::Grpc(GrpcCode::Unavailable));
    let grpc = request(&[("content-type", "application/grpc")]);
    let response = http_service(&layer).oneshot(grpc).await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["grpc-status"], "14");
    let plain = http_service(&layer).oneshot(request(&[])).await.unwrap();
    assert_eq!(plain.status(), 500);

    let layer = HttpChaosLayer::new(ChaosLayer::builder().error_rate(1.0)).unwrap();
    let response = http_service(&layer).oneshot(request(&[])).await.unwrap();
    assert_eq!(
        response.status(),
        StatusCode::SERVICE_UNAVAILABLE,
        "the default"
    );
    let grpc = request(&[("content-type", "application/grpc")]);
    let response = http_service(&layer).oneshot(grpc).await.unwrap();
    assert_eq!(
        response.headers()["grpc-status"],
        "14",
        "503 maps to UNAVAILABLE"
    );
}

#[tokio::test(start_paused = true)]
async fn header_targeting_is_refused_unless_enabled() {
    let asks = [
        (FAULT_STATUS_HEADER, "418"),
        (FAULT_GRPC_HEADER, "8"),
        (FAULT_ABORT_HEADER, "yes"),
        (FAULT_DELAY_HEADER, "5000"),
    ];
    let off = HttpChaosLayer::new(ChaosLayer::builder()).unwrap();
    for (name, value) in asks {
        let started = Instant::now();
        let response = http_service(&off)
            .oneshot(request(&[(name, value)]))
            .await
            .unwrap();
        assert_eq!(response.status(), 200, "{name} ignored");
        assert_eq!(started.elapsed(), Duration::ZERO);
    }

    let on = HttpChaosLayer::new(ChaosLayer::builder())
        .unwrap()
        .enable_header_targeting();
    let service = http_service(&on);
    let response = service
        .clone()
        .oneshot(request(&[(FAULT_STATUS_HEADER, "418")]))
        .await
        .unwrap();
    assert_eq!(response.status(), 418);
    let grpc = request(&[
        ("content-type", "application/grpc"),
        (FAULT_GRPC_HEADER, "8"),
    ]);
    let response = service.clone().oneshot(grpc).await.unwrap();
    assert_eq!(response.headers()["grpc-status"], "8");
    let error = service
        .clone()
        .oneshot(request(&[(FAULT_ABORT_HEADER, "")]))
        .await
        .unwrap_err();
    assert_eq!(
        error.downcast_ref::<ChaosError>(),
        Some(&ChaosError::Aborted)
    );
    let started = Instant::now();
    service
        .clone()
        .oneshot(request(&[(FAULT_DELAY_HEADER, "250")]))
        .await
        .unwrap();
    assert_eq!(started.elapsed(), Duration::from_millis(250));
    // Garbage is ignored, never a panic.
    for (name, value) in [
        (FAULT_STATUS_HEADER, "99"),
        (FAULT_STATUS_HEADER, "teapot"),
        (FAULT_GRPC_HEADER, "17"),
        (FAULT_GRPC_HEADER, "-1"),
        (FAULT_DELAY_HEADER, "99999999999999999999"),
        (FAULT_DELAY_HEADER, "3600001"),
    ] {
        let response = service
            .clone()
            .oneshot(request(&[(name, value)]))
            .await
            .unwrap();
        assert_eq!(response.status(), 200, "{name}: {value}");
    }
    // The kill switch stops targeting too.
    on.handle().disable();
    let response = service
        .oneshot(request(&[(FAULT_STATUS_HEADER, "418")]))
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
}

#[tokio::test(start_paused = true)]
async fn injected_errors_and_aborts_never_reach_the_inner_service() {
    let layer = ChaosLayer::builder()
        .error_rate(0.5)
        .abort_rate(0.5)
        .build()
        .unwrap();
    let (inner, control) = controlled::<u32>();
    let service = layer.layer(inner);
    for i in 0..20 {
        assert!(service.clone().oneshot(i).await.is_err());
    }
    assert_eq!(control.calls(), 0);
}

#[test]
fn bad_settings_name_their_field() {
    let field = |b: tower_bulwark_chaos::ChaosBuilder| b.build().unwrap_err().field();
    assert_eq!(field(ChaosLayer::builder().error_rate(1.5)), "error_rate");
    assert_eq!(
        field(ChaosLayer::builder().error_rate(f64::NAN)),
        "error_rate"
    );
    assert_eq!(field(ChaosLayer::builder().abort_rate(-0.1)), "abort_rate");
    assert_eq!(
        field(ChaosLayer::builder().error_rate(0.7).abort_rate(0.7)),
        "abort_rate"
    );
    assert_eq!(
        field(ChaosLayer::builder().latency(2.0, Latency::Fixed(Duration::ZERO))),
        "latency_rate"
    );
    assert_eq!(
        field(ChaosLayer::builder().latency(
            0.5,
            Latency::Uniform {
                min: Duration::from_secs(2),
                max: Duration::from_secs(1)
            }
        )),
        "latency"
    );
}
