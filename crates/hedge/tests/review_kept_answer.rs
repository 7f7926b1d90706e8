//! Review: which answer a call returns when no attempt answers well.
//!
//! CONTRIBUTING.md rule 7 / docs/composition.md rule 1: a refusal by a local layer says
//! nothing about the dependency. When the hedge is refused below (a full bulkhead in
//! reject admission, or backpressure with a full queue) and the first attempt then fails at
//! the dependency, the call must report the dependency's failure, not the local refusal:
//! otherwise a retry above does not retry it and a breaker above does not count it.

mod support;

use tower::{Layer, Service, ServiceExt};
use tower_bulwark_core::testing::ReadinessProbe;
use tower_bulwark_core::{BoxError, Rejection, RejectionKind};
use tower_bulwark_hedge::HedgeLayer;

use support::{backend, get, ms, Reply};

async fn run(primary: Reply) -> BoxError {
    let (inner, stats) = backend(move |n| match n {
        // The first attempt reaches the dependency and fails after 50 ms.
        0 => (ms(50), primary.clone()),
        // The hedge, at 10 ms, is refused by a full bulkhead below.
        _ => (ms(0), Reply::Reject(RejectionKind::BulkheadFull, None)),
    });
    let layer = HedgeLayer::builder()
        .delay(ms(10))
        .budget_ratio(1.0)
        .build()
        .unwrap();
    let mut service = layer.layer(ReadinessProbe::new(inner));
    let error = service
        .ready()
        .await
        .unwrap()
        .call(get())
        .await
        .unwrap_err();
    assert_eq!(stats.calls(), 2, "the hedge was sent");
    error
}

#[tokio::test(start_paused = true)]
async fn a_local_refusal_of_the_hedge_does_not_hide_the_dependency_failure() {
    let error = run(Reply::Fail).await;
    assert!(
        Rejection::find_in(&error).is_none(),
        "the dependency failed (attempt 0), but the call reports the hedge's local \
         refusal: {error} (kind {:?})",
        Rejection::find_in(&error).map(Rejection::kind)
    );
}

#[tokio::test(start_paused = true)]
async fn a_local_refusal_of_the_hedge_does_not_hide_the_attempt_timeout() {
    // The attempt timeout below cut the first attempt off: a dependency failure, retried.
    let error = run(Reply::Reject(RejectionKind::TimedOut, None)).await;
    assert_eq!(
        Rejection::find_in(&error).map(Rejection::kind),
        Some(RejectionKind::TimedOut),
        "a retry above would retry TimedOut, not BulkheadFull: {error}"
    );
}
