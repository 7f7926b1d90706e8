//! Every refusing future of the workspace, polled again after it answered, answers again
//! (an error, or a 500 where the future cannot fail) instead of panicking. tower's contract
//! forbids the second poll; a caller's bug should fail its call, not its task.

use std::future::{poll_fn, Future};
use std::pin::pin;
use std::time::Duration;

use tower::{service_fn, Layer, Service, ServiceExt};
use tower_bulwark::breaker::CircuitBreakerLayer;
use tower_bulwark::bulkhead::BulkheadLayer;
use tower_bulwark::ratelimit::{key, ClientRateLimitLayer, LocalLimiter, Quota, RateLimitLayer};
use tower_bulwark::{BoxError, HandleRejectionsLayer, RejectionsAsStatusLayer};

/// Polls `future` to its answer, then once more; both answers.
async fn twice<F: Future>(future: F) -> (F::Output, F::Output) {
    let mut future = pin!(future);
    let first = poll_fn(|cx| future.as_mut().poll(cx)).await;
    let again = poll_fn(|cx| future.as_mut().poll(cx)).await;
    (first, again)
}

fn ok() -> impl Service<
    http::Request<()>,
    Response = http::Response<()>,
    Error = BoxError,
    Future = impl Future<Output = Result<http::Response<()>, BoxError>> + Send,
> + Clone {
    service_fn(|_: http::Request<()>| async { Ok::<_, BoxError>(http::Response::new(())) })
}

fn assert_after_completion(again: Result<impl std::fmt::Debug, BoxError>) {
    let error = again.expect_err("an error the second time");
    assert_eq!(error.to_string(), "future polled after completion");
}

#[tokio::test]
async fn a_refusal_of_the_breaker() {
    let breaker = CircuitBreakerLayer::builder().name("b").build().unwrap();
    breaker.handle().force_open();
    let mut service = breaker.layer(ok());
    service.ready().await.unwrap();
    let (first, again) = twice(service.call(http::Request::new(()))).await;
    assert!(first.is_err());
    assert_after_completion(again);
}

#[tokio::test]
async fn a_refusal_of_the_bulkhead() {
    let bulkhead = BulkheadLayer::builder().max_concurrent(1).build().unwrap();
    let held = bulkhead.layer(service_fn(
        |release: tokio::sync::oneshot::Receiver<()>| async {
            let _ = release.await;
            Ok::<_, BoxError>(())
        },
    ));
    let (release, released) = tokio::sync::oneshot::channel();
    let running = tokio::spawn(held.clone().oneshot(released));
    while bulkhead.handle().snapshot().in_flight == 0 {
        tokio::task::yield_now().await;
    }
    let mut third = held.clone();
    third.ready().await.unwrap();
    let (_, never) = tokio::sync::oneshot::channel::<()>();
    let future = third.call(never);
    let (first, again) = twice(future).await;
    assert!(first.is_err(), "full");
    assert_after_completion(again);
    release.send(()).unwrap();
    running.await.unwrap().unwrap();
}

#[tokio::test]
async fn a_refusal_turned_into_a_response_and_a_status() {
    let breaker = CircuitBreakerLayer::builder().name("b").build().unwrap();
    breaker.handle().force_open();

    let mut answered = HandleRejectionsLayer::new().layer(breaker.layer(ok()));
    answered.ready().await.unwrap();
    let (first, again) = twice(answered.call(http::Request::new(()))).await;
    assert_eq!(first.unwrap().status(), 503);
    assert_eq!(again.unwrap().status(), 500);

    let mut status = RejectionsAsStatusLayer::new().layer(breaker.layer(ok()));
    status.ready().await.unwrap();
    let (first, again) = twice(status.call(http::Request::new(()))).await;
    assert!(first.is_err());
    assert_after_completion(again);
}

#[tokio::test(start_paused = true)]
async fn a_refusal_of_the_rate_limits() {
    let one = || LocalLimiter::new(Quota::per_second(1).unwrap());

    let mut server = RateLimitLayer::builder(one(), key::global)
        .build()
        .unwrap()
        .layer(ok());
    server
        .ready()
        .await
        .unwrap()
        .call(http::Request::new(()))
        .await
        .unwrap();
    server.ready().await.unwrap();
    let (first, again) = twice(server.call(http::Request::new(()))).await;
    assert_eq!(first.unwrap().status(), 429);
    assert_eq!(again.unwrap().status(), 500);

    let mut client = ClientRateLimitLayer::builder(one(), key::global)
        .max_wait(Duration::ZERO)
        .build()
        .layer(ok());
    client
        .ready()
        .await
        .unwrap()
        .call(http::Request::new(()))
        .await
        .unwrap();
    client.ready().await.unwrap();
    let (first, again) = twice(client.call(http::Request::new(()))).await;
    assert!(first.is_err(), "no wait allowed");
    assert_after_completion(again);
}
