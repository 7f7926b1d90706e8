//! The hedge layer on calls that answer before their hedge is due: nothing for the layer
//! itself; the copy of the request it keeps for the hedge is its one cost per call (none
//! for a request without headers, a header map's copy for one with them).

use std::time::Duration;

use http::Request;
use tower::Layer;
use tower_bulwark::hedge::{Every, HedgeLayer, Rejections};
use tower_bulwark::testing::Noop;

use super::{added_per_call, allocations, clone_cost, grpc_request, http_noop};

#[test]
fn hedging_allocates_only_the_request_copy() {
    // Any request type, fixed and learned delays, with metrics on.
    for learned in [false, true] {
        let mut builder = HedgeLayer::builder()
            .delay(Duration::from_secs(1))
            .may_hedge(Every)
            .overload(Rejections);
        if learned {
            builder = builder.percentile(0.95);
        }
        let layer = builder.with_metrics().build().unwrap();
        assert_eq!(
            allocations(layer.layer(Noop), || 7u64),
            0,
            "learned: {learned}"
        );
    }
    // An inner call that is pending once: the response future makes its hedge timer.
    let yielding = tower::service_fn(|x: u64| async move {
        tokio::task::yield_now().await;
        Ok::<_, std::convert::Infallible>(x)
    });
    let timed = HedgeLayer::builder()
        .delay(Duration::from_secs(1))
        .may_hedge(Every)
        .overload(Rejections)
        .build()
        .unwrap();
    assert_eq!(
        allocations(timed.layer(yielding), || 7u64),
        allocations(yielding, || 7u64),
        "the timer allocates nothing"
    );
    let layer = HedgeLayer::builder()
        .delay(Duration::from_secs(1))
        .build()
        .unwrap();
    assert_eq!(
        allocations(layer.layer(http_noop()), || Request::new(())),
        0
    );
    let copy = clone_cost(grpc_request);
    assert!(copy > 0, "a header map allocates when copied");
    // A gRPC request is a POST: marked as idempotent by its key here.
    let keyed = || {
        let mut request = grpc_request();
        request
            .headers_mut()
            .insert("idempotency-key", http::HeaderValue::from_static("k"));
        request
    };
    assert_eq!(
        added_per_call(layer.layer(http_noop()), keyed),
        clone_cost(keyed)
    );
}
