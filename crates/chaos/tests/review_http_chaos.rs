//! Review of header targeting: a fault status must be one a server can answer with.
#![cfg(feature = "http")]

use http::{Request, Response};
use tower::{service_fn, Layer, ServiceExt};
use tower_bulwark_chaos::{ChaosLayer, HttpChaosLayer, FAULT_STATUS_HEADER};

/// A 1xx is not a final status (RFC 9110, 15.2): hyper answers 500 and drops the
/// connection instead, or, for 101, hands the connection over as upgraded. Such a header is
/// ignored like any other unusable value.
#[tokio::test(start_paused = true)]
async fn a_fault_status_is_a_final_one_200_to_599() {
    let layer = HttpChaosLayer::new(ChaosLayer::builder())
        .unwrap()
        .enable_header_targeting();
    let service = layer.layer(service_fn(|_: Request<()>| async {
        Ok::<_, std::convert::Infallible>(Response::new(()))
    }));
    let status = |value: &'static str| {
        let request = Request::get("/")
            .header(FAULT_STATUS_HEADER, value)
            .body(())
            .unwrap();
        let call = service.clone().oneshot(request);
        async move { call.await.unwrap().status().as_u16() }
    };
    for value in ["100", "101", "103", "199"] {
        assert_eq!(status(value).await, 200, "{value} is ignored");
    }
    assert_eq!(layer.handle().injected(), [0, 0, 0]);
    for (value, expected) in [("200", 200), ("204", 204), ("599", 599)] {
        assert_eq!(status(value).await, expected);
    }
    assert_eq!(layer.handle().injected(), [3, 0, 0]);
}
