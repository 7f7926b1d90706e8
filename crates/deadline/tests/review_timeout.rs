//! Review: which kind a cut call reports when deadline-aware layers are nested. A layer
//! inside a timeout sees the timeout's bound as the caller's deadline; when that bound ends
//! the call, the timeout ran out, not the caller's deadline.

use std::time::Duration;

use tokio::time::Instant;
use tower::{Layer, ServiceExt};
use tower_bulwark_core::testing::controlled;
use tower_bulwark_core::{find_rejection, BoxError, Deadline, Outcome, RejectionKind};
use tower_bulwark_deadline::{AdaptiveTimeoutLayer, PropagateDeadlineLayer, TimeoutLayer};

fn kind_and_layer(error: &BoxError) -> (RejectionKind, String) {
    let rejection = find_rejection(error).expect("a rejection");
    (rejection.kind(), rejection.layer().to_string())
}

#[tokio::test(start_paused = true)]
async fn a_timeout_around_an_adaptive_timeout_reports_its_own_expiry_as_timed_out() {
    let (inner, control) = controlled::<u8>();
    control.hang();
    // The adaptive timeout has not learned yet: its bound is its maximum, 10 s.
    let adaptive = AdaptiveTimeoutLayer::builder().build().unwrap();
    let service = TimeoutLayer::new(Duration::from_secs(1))
        .unwrap()
        .name("cap")
        .layer(adaptive.layer(inner));

    let started = Instant::now();
    let error = Deadline::after(Duration::from_secs(30))
        .scope(service.clone().oneshot(1))
        .await
        .unwrap_err();
    assert_eq!(started.elapsed(), Duration::from_secs(1));
    let (kind, layer) = kind_and_layer(&error);
    assert_eq!(
        (kind, layer.as_str()),
        (RejectionKind::TimedOut, "cap"),
        "the 1 s cap ran out with 29 s of the caller's left: the dependency was slow"
    );
    assert_eq!(kind.outcome(), Outcome::Failure);
    assert!(kind.is_retryable());

    // With the caller's deadline the earlier bound, it stays the caller's.
    let error = Deadline::after(Duration::from_millis(400))
        .scope(service.oneshot(2))
        .await
        .unwrap_err();
    assert_eq!(kind_and_layer(&error).0, RejectionKind::DeadlineExceeded);
}

#[tokio::test(start_paused = true)]
async fn a_timeout_around_deadline_propagation_reports_its_own_expiry_as_timed_out() {
    let (inner, control) = controlled::<http::Request<()>>();
    control.hang();
    let propagate = PropagateDeadlineLayer::builder().build().unwrap();
    let service = TimeoutLayer::new(Duration::from_secs(2))
        .unwrap()
        .layer(propagate.layer(inner));

    let started = Instant::now();
    let error = service
        .clone()
        .oneshot(http::Request::new(()))
        .await
        .unwrap_err();
    assert_eq!(started.elapsed(), Duration::from_secs(2));
    assert_eq!(kind_and_layer(&error).0, RejectionKind::TimedOut);

    // A deadline the request carries itself, earlier than the timeout, is the caller's.
    let mut request = http::Request::new(());
    request
        .extensions_mut()
        .insert(Deadline::after(Duration::from_millis(300)));
    let started = Instant::now();
    let error = service.oneshot(request).await.unwrap_err();
    assert_eq!(started.elapsed(), Duration::from_millis(300));
    assert_eq!(kind_and_layer(&error).0, RejectionKind::DeadlineExceeded);
}
