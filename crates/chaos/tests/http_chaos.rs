//! Fault injection for HTTP and gRPC (feature `http`): statuses, gRPC codes and header
//! targeting.
#![cfg(feature = "http")]

use std::time::Duration;

use http::{Request, Response, StatusCode};
use tokio::time::Instant;
use tower::{service_fn, Layer, Service, ServiceExt};
use tower_bulwark_chaos::{
    ChaosError, ChaosLayer, HttpChaosLayer, HttpFault, FAULT_ABORT_HEADER, FAULT_DELAY_HEADER,
    FAULT_GRPC_HEADER, FAULT_STATUS_HEADER,
};
use tower_bulwark_core::GrpcCode;

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
async fn header_targeted_faults_are_counted() {
    let layer = HttpChaosLayer::new(ChaosLayer::builder())
        .unwrap()
        .enable_header_targeting();
    let handle = layer.handle();
    let service = http_service(&layer);
    let ask = |headers: &[(&str, &str)]| service.clone().oneshot(request(headers));

    assert_eq!(ask(&[]).await.unwrap().status(), 200);
    assert_eq!(handle.injected(), [0, 0, 0], "no fault asked");
    assert_eq!(
        ask(&[(FAULT_STATUS_HEADER, "418")]).await.unwrap().status(),
        418
    );
    assert_eq!(handle.injected(), [1, 0, 0]);
    let grpc = [
        ("content-type", "application/grpc"),
        (FAULT_GRPC_HEADER, "8"),
    ];
    assert_eq!(ask(&grpc).await.unwrap().headers()["grpc-status"], "8");
    assert_eq!(handle.injected(), [2, 0, 0], "a gRPC code is an error too");
    assert!(ask(&[(FAULT_ABORT_HEADER, "")]).await.is_err());
    assert_eq!(handle.injected(), [2, 1, 0]);
    ask(&[(FAULT_DELAY_HEADER, "250")]).await.unwrap();
    assert_eq!(handle.injected(), [2, 1, 1]);
    // Ignored headers inject nothing, so count nothing.
    assert_eq!(
        ask(&[(FAULT_STATUS_HEADER, "teapot")])
            .await
            .unwrap()
            .status(),
        200
    );
    handle.disable();
    assert_eq!(
        ask(&[(FAULT_STATUS_HEADER, "418")]).await.unwrap().status(),
        200
    );
    assert_eq!(handle.injected(), [2, 1, 1]);
}

#[tokio::test(start_paused = true)]
async fn a_fault_status_outside_200_to_599_is_ignored() {
    let layer = HttpChaosLayer::new(ChaosLayer::builder())
        .unwrap()
        .enable_header_targeting();
    let service = http_service(&layer);
    for (value, status) in [("200", 200), ("599", 599), ("503", 503)] {
        let response = service
            .clone()
            .oneshot(request(&[(FAULT_STATUS_HEADER, value)]))
            .await
            .unwrap();
        assert_eq!(response.status(), status, "{value} is in range");
    }
    for value in ["600", "999", "1000", "199", "100", "99", "0", "65536"] {
        let response = service
            .clone()
            .oneshot(request(&[(FAULT_STATUS_HEADER, value)]))
            .await
            .unwrap();
        assert_eq!(response.status(), 200, "{value} is out of range");
    }
    // An out-of-range status does not hide the next targeting header.
    let response = service
        .oneshot(request(&[
            ("content-type", "application/grpc"),
            (FAULT_STATUS_HEADER, "999"),
            (FAULT_GRPC_HEADER, "14"),
        ]))
        .await
        .unwrap();
    assert_eq!(response.headers()["grpc-status"], "14");
    assert_eq!(layer.handle().injected(), [4, 0, 0]);
}
