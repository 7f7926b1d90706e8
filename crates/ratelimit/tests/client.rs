//! `ClientRateLimitLayer` in paused time: waits exactly as long as needed, never past the
//! deadline or the maximum wait (nor by a timer's tick), and a dropped wait holds nothing.

mod helpers;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::{advance, Instant};
use tower::{service_fn, Layer, Service, ServiceExt};
use tower_bulwark_core::testing::ReadinessProbe;
use tower_bulwark_core::{find_rejection, BoxError, Deadline, RejectionKind};
use tower_bulwark_ratelimit::{
    key, ClientRateLimitLayer, HttpDeadline, LocalLimiter, OnLimiterError, Quota, RateLimitEvent,
};

use helpers::{recorder, Broken, Remote};

/// One call a second, one at a time.
fn one_per_second() -> LocalLimiter<()> {
    LocalLimiter::new(Quota::per_second(1).unwrap())
}

/// A service that counts its calls and answers with the request.
fn echo() -> (
    impl Service<u32, Response = u32, Error = std::io::Error, Future = impl Send> + Clone,
    Arc<AtomicUsize>,
) {
    let calls = Arc::new(AtomicUsize::new(0));
    let counter = calls.clone();
    let service = service_fn(move |n: u32| {
        counter.fetch_add(1, Ordering::SeqCst);
        async move { Ok(n) }
    });
    (service, calls)
}

fn throttled(error: &BoxError) -> Duration {
    let rejection = find_rejection(error).expect("a rejection");
    assert_eq!(rejection.kind(), RejectionKind::Throttled);
    assert_eq!(rejection.layer(), "partner");
    rejection.retry_after().expect("a retry-after")
}

#[tokio::test(start_paused = true)]
async fn a_call_waits_exactly_until_its_permit_is_due() {
    let (inner, calls) = echo();
    let (listener, events) = recorder();
    let layer = ClientRateLimitLayer::builder(
        LocalLimiter::new(Quota::per_second(4).unwrap().burst(2).unwrap()),
        key::global,
    )
    .name("partner")
    .on_event(listener)
    .build();
    let client = layer.layer(inner);
    let start = Instant::now();
    for n in 0..2 {
        assert_eq!(client.clone().oneshot(n).await.unwrap(), n);
    }
    assert_eq!(start.elapsed(), Duration::ZERO, "the burst goes at once");
    for n in 1..=3 {
        client.clone().oneshot(n).await.unwrap();
        assert_eq!(start.elapsed(), n * Duration::from_millis(250));
    }
    assert_eq!(calls.load(Ordering::SeqCst), 5);
    let events = events.lock().unwrap();
    assert!(matches!(
        events[..2],
        [
            RateLimitEvent::Admitted { remaining: 1, .. },
            RateLimitEvent::Admitted { remaining: 0, .. }
        ]
    ));
    for event in &events[2..] {
        let RateLimitEvent::Waited {
            waited, ratelimit, ..
        } = event
        else {
            panic!("{event:?}");
        };
        assert_eq!(*waited, Duration::from_millis(250));
        assert_eq!(ratelimit, "partner");
    }
}

#[tokio::test(start_paused = true)]
async fn a_wait_that_would_pass_the_deadline_is_refused_at_once() {
    let (inner, calls) = echo();
    let layer = ClientRateLimitLayer::builder(one_per_second(), key::global)
        .name("partner")
        .build();
    let client = layer.layer(inner);
    client.clone().oneshot(1).await.unwrap();
    advance(Duration::from_millis(100)).await;

    let start = Instant::now();
    let short = Deadline::after(Duration::from_millis(899));
    let error = short.scope(client.clone().oneshot(2)).await.unwrap_err();
    assert_eq!(
        start.elapsed(),
        Duration::ZERO,
        "refused at once, not at the deadline"
    );
    assert_eq!(throttled(&error), Duration::from_millis(900));
    assert_eq!(calls.load(Ordering::SeqCst), 1);

    // A deadline that leaves time for the wait: it waits.
    let enough = Deadline::after(Duration::from_millis(900));
    enough.scope(client.oneshot(3)).await.unwrap();
    assert_eq!(start.elapsed(), Duration::from_millis(900));
    assert_eq!(calls.load(Ordering::SeqCst), 2);
}

/// A service recording when it was called.
fn stamping() -> (
    impl Service<u32, Response = (), Error = std::io::Error, Future = impl Send> + Clone + Send,
    Arc<Mutex<Vec<Instant>>>,
) {
    let calls = Arc::new(Mutex::new(Vec::new()));
    let log = calls.clone();
    let service = service_fn(move |_n: u32| {
        log.lock().unwrap().push(Instant::now());
        std::future::ready(Ok(()))
    });
    (service, calls)
}

/// 2,000 a second, one at a time: a permit every 500 µs.
fn every_500_micros() -> LocalLimiter<()> {
    LocalLimiter::new(Quota::per_second(2_000).unwrap().burst(1).unwrap())
}

/// tokio's timers fire on whole milliseconds: a 500 µs wait ends at 1 ms, past a 700 µs
/// deadline. The call is refused then, not sent late.
#[tokio::test(start_paused = true)]
async fn a_sub_millisecond_wait_never_calls_past_the_deadline() {
    let (service, calls) = stamping();
    let client = ClientRateLimitLayer::builder(every_500_micros(), key::global)
        .name("partner")
        .build()
        .layer(service);
    // The next permit (500 µs) is due before the deadline (700 µs): the wait is begun.
    let start = Instant::now();
    let deadline = Deadline::after(Duration::from_micros(700));
    let second = deadline
        .scope(async {
            client.clone().oneshot(1).await.unwrap();
            client.clone().oneshot(2).await
        })
        .await;
    let error = second.unwrap_err();
    let rejection = find_rejection(&error).unwrap();
    assert_eq!(rejection.kind(), RejectionKind::Throttled);
    assert_eq!(rejection.retry_after(), None);
    assert_eq!(
        start.elapsed(),
        Duration::from_millis(1),
        "the timer's tick"
    );
    assert_eq!(
        calls.lock().unwrap().len(),
        1,
        "never called past the deadline"
    );
    // The permit was not taken: the next caller, with time, gets it at once.
    client.oneshot(3).await.unwrap();
    assert_eq!(calls.lock().unwrap()[1], start + Duration::from_millis(1));
}

#[tokio::test(start_paused = true)]
async fn a_sub_millisecond_wait_stays_within_max_wait() {
    let (service, calls) = stamping();
    let (listener, events) = recorder();
    let max_wait = Duration::from_micros(600);
    let client = ClientRateLimitLayer::builder(every_500_micros(), key::global)
        .max_wait(max_wait)
        .on_event(listener)
        .build()
        .layer(service);
    client.clone().oneshot(1).await.unwrap();
    let start = Instant::now();
    assert!(client.clone().oneshot(2).await.is_err());
    assert_eq!(start.elapsed(), Duration::from_millis(1));
    assert_eq!(calls.lock().unwrap().len(), 1, "never called past max_wait");
    let events = events.lock().unwrap();
    assert!(
        matches!(events[1], RateLimitEvent::Limited { .. }),
        "{events:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn the_requests_own_deadline_counts_with_http_deadline() {
    let inner = service_fn(|_: http::Request<()>| async { Ok::<_, std::io::Error>(()) });
    let layer = ClientRateLimitLayer::builder(one_per_second(), key::global)
        .name("partner")
        .deadline_source(HttpDeadline)
        .build();
    let client = layer.layer(inner);
    client
        .clone()
        .oneshot(http::Request::new(()))
        .await
        .unwrap();
    let mut request = http::Request::new(());
    request
        .extensions_mut()
        .insert(Deadline::after(Duration::from_millis(500)));
    let error = client.oneshot(request).await.unwrap_err();
    assert_eq!(throttled(&error), Duration::from_secs(1));
}

#[tokio::test(start_paused = true)]
async fn max_wait_bounds_the_wait_and_zero_never_waits() {
    let (inner, calls) = echo();
    let layer = ClientRateLimitLayer::builder(
        LocalLimiter::new(Quota::per_minute(1).unwrap()),
        key::global,
    )
    .name("partner")
    .build();
    let client = layer.layer(inner.clone());
    client.clone().oneshot(1).await.unwrap();
    // The default maximum wait is 1 s: a minute is refused at once.
    let error = client.oneshot(2).await.unwrap_err();
    assert_eq!(throttled(&error), Duration::from_secs(60));

    let never = ClientRateLimitLayer::builder(one_per_second(), key::global)
        .name("partner")
        .max_wait(Duration::ZERO)
        .build()
        .layer(inner);
    never.clone().oneshot(1).await.unwrap();
    let start = Instant::now();
    let error = never.oneshot(2).await.unwrap_err();
    assert_eq!(throttled(&error), Duration::from_secs(1));
    assert_eq!(start.elapsed(), Duration::ZERO);
    assert_eq!(calls.load(Ordering::SeqCst), 2);
}

#[tokio::test(start_paused = true)]
async fn callers_waiting_together_go_one_permit_apart() {
    let (inner, _) = echo();
    let layer = ClientRateLimitLayer::builder(one_per_second(), key::global)
        .max_wait(Duration::from_secs(10))
        .build();
    let client = layer.layer(inner);
    let start = Instant::now();
    let calls = (0..4).map(|n| {
        let client = client.clone();
        tokio::spawn(async move {
            client.oneshot(n).await.unwrap();
            start.elapsed()
        })
    });
    let mut finished = Vec::new();
    for call in calls.collect::<Vec<_>>() {
        finished.push(call.await.unwrap());
    }
    finished.sort();
    let seconds = |n| Duration::from_secs(n);
    assert_eq!(finished, [seconds(0), seconds(1), seconds(2), seconds(3)]);
}

#[tokio::test(start_paused = true)]
async fn a_call_dropped_while_it_waits_holds_nothing() {
    let (inner, calls) = echo();
    let layer = ClientRateLimitLayer::builder(one_per_second(), key::global).build();
    // Panics if the service called is not the one readied.
    let mut client = layer.layer(ReadinessProbe::new(inner));
    client.ready().await.unwrap().call(1).await.unwrap();
    let mut waiting = Box::pin(client.ready().await.unwrap().call(2));
    // Polled into its wait, then dropped half-way.
    assert!(futures_poll(&mut waiting).is_pending());
    advance(Duration::from_millis(500)).await;
    assert!(futures_poll(&mut waiting).is_pending());
    drop(waiting);
    advance(Duration::from_millis(500)).await;
    let start = Instant::now();
    client.ready().await.unwrap().call(3).await.unwrap();
    assert_eq!(
        start.elapsed(),
        Duration::ZERO,
        "the dropped call took no permit"
    );
    assert_eq!(calls.load(Ordering::SeqCst), 2);
}

/// Polls a future once, with a waker that does nothing.
fn futures_poll<F: std::future::Future + Unpin>(future: &mut F) -> std::task::Poll<F::Output> {
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    std::pin::Pin::new(future).poll(&mut cx)
}

#[tokio::test(start_paused = true)]
async fn a_limiter_that_answers_later_is_waited_for_then_waited_on() {
    let remote = Remote::new(Quota::per_second(1).unwrap(), Duration::from_millis(5));
    let layer = ClientRateLimitLayer::builder(remote.clone(), |_: &u32| Some(1u8)).build();
    let (inner, calls) = echo();
    let client = layer.layer(ReadinessProbe::new(inner));
    let start = Instant::now();
    client.clone().oneshot(1).await.unwrap();
    assert_eq!(start.elapsed(), Duration::from_millis(5));
    // Refused at 10 ms (due at 1005 ms): waits 995 ms, asks again (5 ms).
    client.oneshot(2).await.unwrap();
    assert_eq!(start.elapsed(), Duration::from_millis(1010));
    assert_eq!(remote.answered.load(Ordering::SeqCst), 3);
    assert_eq!(calls.load(Ordering::SeqCst), 2);
}

#[tokio::test(start_paused = true)]
async fn a_failing_limiter_fails_open_or_refuses() {
    let (inner, calls) = echo();
    let quota = Quota::per_second(1).unwrap();
    let open = ClientRateLimitLayer::builder(Broken(quota.clone()), key::global).build();
    assert_eq!(open.layer(inner.clone()).oneshot(1).await.unwrap(), 1);
    let closed = ClientRateLimitLayer::builder(Broken(quota), key::global)
        .name("partner")
        .on_limiter_error(OnLimiterError::FailClosed)
        .build();
    let error = closed.layer(inner).oneshot(2).await.unwrap_err();
    let rejection = find_rejection(&error).unwrap();
    assert_eq!(rejection.kind(), RejectionKind::Throttled);
    assert_eq!(rejection.reason(), Some("rate limiter unavailable"));
    assert_eq!(calls.load(Ordering::SeqCst), 1);
}

#[tokio::test(start_paused = true)]
async fn requests_without_a_key_are_not_limited() {
    let (inner, calls) = echo();
    let layer = ClientRateLimitLayer::builder(
        LocalLimiter::new(Quota::per_minute(1).unwrap()),
        |n: &u32| (n % 2 == 0).then_some(()),
    )
    .max_wait(Duration::ZERO)
    .build();
    let client = layer.layer(inner);
    for n in [1, 3, 5, 7] {
        client.clone().oneshot(n).await.unwrap();
    }
    client.clone().oneshot(2).await.unwrap();
    assert!(client.oneshot(4).await.is_err());
    assert_eq!(calls.load(Ordering::SeqCst), 5);
}
