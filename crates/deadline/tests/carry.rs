//! The task's deadline across a task boundary (tower's `Buffer`, `tokio::spawn`): lost
//! without `CarryDeadlineLayer`, carried in the request with it (paused time).

use std::time::Duration;

use http::Request;
use tower::{service_fn, Layer, Service, ServiceBuilder, ServiceExt};
use tower_bulwark_core::{BoxError, Deadline};
use tower_bulwark_deadline::{CarryDeadlineLayer, PropagateDeadlineLayer};

/// The next service: answers with the `x-request-timeout-ms` it receives, if any.
async fn timeout_header(request: Request<()>) -> Result<Option<String>, BoxError> {
    Ok(request
        .headers()
        .get("x-request-timeout-ms")
        .map(|value| value.to_str().unwrap().to_string()))
}

fn get() -> Request<()> {
    Request::get("/").body(()).unwrap()
}

fn propagate() -> PropagateDeadlineLayer {
    PropagateDeadlineLayer::builder().build().unwrap()
}

#[tokio::test(start_paused = true)]
async fn behind_a_buffer_the_deadline_is_lost_unless_carried() {
    let lost = ServiceBuilder::new()
        .buffer(4)
        .layer(propagate())
        .service(service_fn(timeout_header));
    let sent = Deadline::after(Duration::from_millis(700))
        .scope(lost.oneshot(get()))
        .await
        .unwrap();
    assert_eq!(
        sent, None,
        "the Buffer's worker task has no current deadline"
    );

    let carried = ServiceBuilder::new()
        .layer(CarryDeadlineLayer::new())
        .buffer(4)
        .layer(propagate())
        .service(service_fn(timeout_header));
    let sent = Deadline::after(Duration::from_millis(700))
        .scope(carried.oneshot(get()))
        .await
        .unwrap();
    assert_eq!(sent.as_deref(), Some("700"));
}

#[tokio::test(start_paused = true)]
async fn carried_into_a_spawned_task() {
    let mut client = CarryDeadlineLayer::new().layer(service_fn(|request: Request<()>| {
        // The call's work runs on another task, which starts with no current deadline.
        let work = tokio::spawn(
            propagate()
                .layer(service_fn(timeout_header))
                .oneshot(request),
        );
        async move { work.await.unwrap() }
    }));
    let sent = Deadline::after(Duration::from_secs(2))
        .scope(async { client.ready().await.unwrap().call(get()).await })
        .await
        .unwrap();
    assert_eq!(sent.as_deref(), Some("2000"));
}

/// What the request carries after the layer.
async fn carried(current: Option<Duration>, own: Option<Duration>) -> Option<Deadline> {
    let service = CarryDeadlineLayer::new().layer(service_fn(|request: Request<()>| async move {
        Ok::<_, BoxError>(request.extensions().get::<Deadline>().copied())
    }));
    let mut request = get();
    if let Some(own) = own {
        request.extensions_mut().insert(Deadline::after(own));
    }
    match current {
        Some(left) => Deadline::after(left).scope(service.oneshot(request)).await,
        None => service.oneshot(request).await,
    }
    .unwrap()
}

#[tokio::test(start_paused = true)]
async fn the_earlier_of_the_requests_own_and_the_tasks_deadline_is_carried() {
    let after = |ms| Some(Deadline::after(Duration::from_millis(ms)));
    // None current: untouched, nothing inserted.
    assert_eq!(carried(None, None).await, None);
    assert_eq!(carried(None, Some(ms(300))).await, after(300));
    // The task's deadline is carried, unless the request's own is earlier.
    assert_eq!(carried(Some(ms(500)), None).await, after(500));
    assert_eq!(carried(Some(ms(500)), Some(ms(300))).await, after(300));
    assert_eq!(carried(Some(ms(500)), Some(ms(900))).await, after(500));
}

fn ms(ms: u64) -> Duration {
    Duration::from_millis(ms)
}
