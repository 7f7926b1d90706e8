//! Review of `CarryDeadlineLayer`: readiness passed through, the request left alone
//! without a deadline, and an earlier deadline never replaced by a later one (paused time).

use std::task::{Context, Poll, Waker};
use std::time::Duration;

use http::Request;
use tower::{Layer, Service, ServiceExt};
use tower_bulwark_core::testing::controlled;
use tower_bulwark_core::Deadline;
use tower_bulwark_deadline::CarryDeadlineLayer;

fn get() -> Request<()> {
    Request::get("/").body(()).unwrap()
}

#[tokio::test(start_paused = true)]
async fn poll_ready_is_the_inner_services() {
    let (inner, control) = controlled::<Request<()>>();
    let mut carry = CarryDeadlineLayer::new().layer(inner);
    let mut cx = Context::from_waker(Waker::noop());
    control.pause();
    assert!(carry.poll_ready(&mut cx).is_pending());
    control.fail_readiness();
    assert!(matches!(carry.poll_ready(&mut cx), Poll::Ready(Err(_))));
    control.ready();
    assert!(matches!(carry.poll_ready(&mut cx), Poll::Ready(Ok(()))));
    assert_eq!(control.calls(), 0);
}

#[tokio::test(start_paused = true)]
async fn without_a_deadline_the_extensions_stay_empty() {
    let (inner, _control) = controlled::<Request<()>>();
    let sent = CarryDeadlineLayer::new()
        .layer(inner)
        .oneshot(get())
        .await
        .unwrap();
    assert!(sent.extensions().is_empty());
}

/// The request's own deadline, earlier than the task's, survives; later, it is replaced;
/// equal, it stays. Neither expired nor nested scopes change that.
#[tokio::test(start_paused = true)]
async fn the_earlier_deadline_always_wins() {
    let (inner, _control) = controlled::<Request<()>>();
    let carry = CarryDeadlineLayer::new().layer(inner);
    let send = |own: Deadline, current: Deadline| {
        let mut request = get();
        request.extensions_mut().insert(own);
        current.scope(carry.clone().oneshot(request))
    };
    let soon = Deadline::after(Duration::from_millis(10));
    let late = Deadline::after(Duration::from_secs(10));
    let carried = |r: Request<()>| r.extensions().get::<Deadline>().copied();
    assert_eq!(carried(send(soon, late).await.unwrap()), Some(soon));
    assert_eq!(carried(send(late, soon).await.unwrap()), Some(soon));
    assert_eq!(carried(send(soon, soon).await.unwrap()), Some(soon));
    tokio::time::advance(Duration::from_secs(1)).await;
    assert_eq!(
        carried(send(soon, late).await.unwrap()),
        Some(soon),
        "expired, still earlier"
    );
}
