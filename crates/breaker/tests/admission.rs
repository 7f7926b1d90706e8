//! Admission modes, the tower contract, cancel safety and concurrency.

mod support;

use std::time::Duration;

use support::{call, guarded, refused};
use tokio::time::advance;
use tower::{Layer, Service, ServiceExt};
use tower_bulwark_breaker::{Admission, CircuitBreakerLayer, OpenDuration, State};
use tower_bulwark_core::testing::{controlled, ReadinessProbe};

fn tripping(admission: Admission) -> tower_bulwark_breaker::Builder {
    CircuitBreakerLayer::builder()
        .consecutive_failures(1)
        .open_duration(OpenDuration::Fixed(Duration::from_secs(10)))
        .admission(admission)
}

#[tokio::test(start_paused = true)]
async fn readiness_mode_is_pending_while_open_and_wakes_when_probing_may_start() {
    let (service, control, layer) = guarded(tripping(Admission::Readiness));
    control.fail();
    call(&mut service.clone()).await.unwrap_err();
    assert_eq!(layer.handle().state(), State::Open);

    control.succeed();
    let started = tokio::time::Instant::now();
    let waiting = tokio::spawn(service.clone().oneshot(5));
    tokio::task::yield_now().await;
    assert!(
        !waiting.is_finished(),
        "poll_ready must be Pending while open"
    );
    assert_eq!(control.calls(), 1);
    // Paused time jumps to the breaker's timer: the task was woken by it, not by polling.
    assert_eq!(waiting.await.unwrap().unwrap(), 5);
    assert_eq!(started.elapsed(), Duration::from_secs(10));
    assert_eq!(layer.handle().state(), State::Closed);
}

#[tokio::test(start_paused = true)]
async fn readiness_mode_waits_for_a_probe_slot_and_wakes_on_its_release() {
    let (service, control, layer) = guarded(tripping(Admission::Readiness));
    control.fail();
    call(&mut service.clone()).await.unwrap_err();
    advance(Duration::from_secs(10)).await;

    control.hang();
    let mut prober = service.clone();
    let probe = prober.ready().await.unwrap().call(1);
    assert_eq!(layer.handle().state(), State::HalfOpen);

    let waiting = tokio::spawn(service.clone().oneshot(2));
    tokio::task::yield_now().await;
    assert!(!waiting.is_finished(), "the only probe slot is taken");
    control.succeed();
    drop(probe);
    assert_eq!(waiting.await.unwrap().unwrap(), 2);
}

#[tokio::test(start_paused = true)]
async fn readiness_mode_wakes_on_an_operator_reset() {
    let (service, _control, layer) = guarded(tripping(Admission::Readiness));
    layer.handle().force_open();
    let waiting = tokio::spawn(service.clone().oneshot(3));
    tokio::task::yield_now().await;
    assert!(!waiting.is_finished());
    layer.handle().reset();
    assert_eq!(waiting.await.unwrap().unwrap(), 3);
}

#[tokio::test(start_paused = true)]
async fn a_balancer_routes_around_an_open_endpoint_in_readiness_mode() {
    use tower::balance::p2c::Balance;
    use tower::discover::ServiceList;
    use tower::load::{CompleteOnResponse, PendingRequestsDiscover};

    let sick = CircuitBreakerLayer::builder()
        .name("sick")
        .admission(Admission::Readiness)
        .build()
        .unwrap();
    let healthy = CircuitBreakerLayer::builder()
        .name("healthy")
        .admission(Admission::Readiness)
        .build()
        .unwrap();
    sick.handle().force_open();
    let (sick_inner, sick_control) = controlled::<u32>();
    let (healthy_inner, healthy_control) = controlled::<u32>();
    let endpoints = ServiceList::new(vec![sick.layer(sick_inner), healthy.layer(healthy_inner)]);
    let mut balance = Balance::new(PendingRequestsDiscover::new(
        endpoints,
        CompleteOnResponse::default(),
    ));
    for i in 0..50 {
        let answer = balance.ready().await.unwrap().call(i).await.unwrap();
        assert_eq!(answer, i);
    }
    assert_eq!(sick_control.calls(), 0);
    assert_eq!(healthy_control.calls(), 50);
}

#[tokio::test(start_paused = true)]
async fn the_inner_service_is_always_readied_before_it_is_called() {
    for admission in [Admission::FailFast, Admission::Readiness] {
        let layer = tripping(admission).half_open_probes(2).build().unwrap();
        let (inner, control) = controlled::<u32>();
        let service = layer.layer(ReadinessProbe::new(inner));
        // Closed, open, half-open and closed again: the probe panics on any call that
        // was not readied first.
        control.fail();
        assert!(service.clone().oneshot(1).await.is_err());
        if admission == Admission::FailFast {
            assert!(refused(&service.clone().oneshot(1).await));
        }
        advance(Duration::from_secs(10)).await;
        control.succeed();
        for _ in 0..5 {
            service.clone().oneshot(1).await.unwrap();
        }
        assert_eq!(layer.handle().state(), State::Closed);
    }
}

#[tokio::test(start_paused = true)]
async fn fail_fast_does_not_poll_a_pending_inner_service_while_open() {
    let (service, control, _layer) = guarded(tripping(Admission::FailFast));
    control.fail();
    call(&mut service.clone()).await.unwrap_err();
    // The dependency is down and its client is stuck reconnecting.
    control.pause();
    let result = tokio::time::timeout(Duration::from_secs(1), service.clone().oneshot(1))
        .await
        .expect("an open breaker answers at once");
    assert!(refused(&result));
}

#[tokio::test(start_paused = true)]
async fn dropping_a_readied_service_or_a_future_at_any_point_gives_back_probe_slots() {
    let layer = tripping(Admission::FailFast)
        .half_open_probes(3)
        .build()
        .unwrap();
    let handle = layer.handle();
    let (inner, control) = controlled::<u32>();
    let service = layer.layer(inner);
    control.fail();
    let _ = service.clone().oneshot(0).await;
    advance(Duration::from_secs(10)).await;

    control.hang();
    let mut seed = 12345u64;
    for round in 0..2_000 {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        let mut svc = service.clone();
        match seed % 3 {
            // Readied, then dropped before the call.
            0 => {
                let _ = svc.ready().await.unwrap();
                drop(svc);
            }
            // Called, polled a few times, dropped while in flight.
            1 => {
                let mut future = Box::pin(svc.ready().await.unwrap().call(round));
                for _ in 0..(seed % 4) {
                    let _ = futures_poll_once(future.as_mut()).await;
                }
                drop(future);
            }
            // Called and dropped without being polled.
            _ => drop(svc.ready().await.unwrap().call(round)),
        }
        assert!(handle.snapshot().probes_in_flight <= 3);
    }
    assert_eq!(handle.snapshot().probes_in_flight, 0);
    assert_eq!(
        handle.state(),
        State::HalfOpen,
        "dropped probes count as ignored"
    );
    assert_eq!(control.in_flight(), 0);
}

/// Polls a future once, returning whether it finished.
async fn futures_poll_once<F: std::future::Future + Unpin>(future: F) -> bool {
    let mut future = future;
    std::future::poll_fn(|cx| {
        std::task::Poll::Ready(std::pin::Pin::new(&mut future).poll(cx).is_ready())
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn racing_clones_never_exceed_the_probe_limit() {
    let layer = CircuitBreakerLayer::builder()
        .consecutive_failures(1)
        // Open for a nanosecond: half-open at once, without waiting on the real clock.
        .open_duration(OpenDuration::Fixed(Duration::from_nanos(1)))
        .half_open_probes(4)
        .success_threshold(1_000_000)
        .build()
        .unwrap();
    let handle = layer.handle();
    let (inner, control) = controlled::<u32>();
    let service = layer.layer(inner);
    control.fail();
    let _ = service.clone().oneshot(0).await;
    control.succeed();
    let tasks: Vec<_> = (0..16)
        .map(|_| {
            let service = service.clone();
            tokio::spawn(async move {
                let mut admitted = 0;
                for i in 0..300 {
                    if service.clone().oneshot(i).await.is_ok() {
                        admitted += 1;
                    }
                }
                admitted
            })
        })
        .collect();
    let mut admitted = 0;
    for task in tasks {
        admitted += task.await.unwrap();
    }
    assert!(admitted > 4, "probes went through: {admitted}");
    assert!(
        control.max_in_flight() <= 4,
        "{} probes in flight",
        control.max_in_flight()
    );
    assert_eq!(handle.snapshot().probes_in_flight, 0);
}

#[tokio::test(start_paused = true)]
async fn a_refusal_whose_call_never_came_is_decided_again() {
    let (mut service, control, layer) = guarded(tripping(Admission::FailFast));
    control.fail();
    call(&mut service).await.unwrap_err();
    // Readied while open, then abandoned before the call.
    service.ready().await.unwrap();
    layer.handle().reset();
    control.succeed();
    assert_eq!(service.ready().await.unwrap().call(9).await.unwrap(), 9);
}

#[tokio::test(start_paused = true)]
async fn waiting_in_readiness_mode_is_not_counted_as_a_rejection() {
    let (service, control, layer) = guarded(tripping(Admission::Readiness));
    control.fail();
    call(&mut service.clone()).await.unwrap_err();
    control.succeed();
    let waiting = tokio::spawn(service.clone().oneshot(1));
    tokio::task::yield_now().await;
    assert_eq!(waiting.await.unwrap().unwrap(), 1);
    assert_eq!(layer.handle().snapshot().rejected, 0);
}

#[tokio::test(start_paused = true)]
async fn fail_fast_counts_each_refused_call_once() {
    let (mut service, control, layer) = guarded(tripping(Admission::FailFast));
    control.fail();
    call(&mut service).await.unwrap_err();
    for _ in 0..3 {
        // Polled twice before each call: still one rejection per call.
        service.ready().await.unwrap();
        assert!(refused(&call(&mut service).await));
    }
    assert_eq!(layer.handle().snapshot().rejected, 3);
}

/// A waker that counts its wake-ups; its `Arc`'s count shows who still holds it.
struct Flag(std::sync::atomic::AtomicUsize);

impl std::task::Wake for Flag {
    fn wake(self: std::sync::Arc<Self>) {
        self.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    }
}

/// Readiness mode: a caller that gives up waiting (its service dropped while `Pending`)
/// leaves nothing behind in the breaker, however many come and go while it is open; one
/// that keeps waiting is woken by the next change.
#[tokio::test(start_paused = true)]
async fn a_waiter_that_gives_up_leaves_no_waker_behind() {
    use std::sync::atomic::Ordering::SeqCst;
    use std::sync::Arc;
    use std::task::{Context, Waker};

    let (service, control, layer) = guarded(tripping(Admission::Readiness));
    control.fail();
    call(&mut service.clone()).await.unwrap_err();
    for _ in 0..100 {
        let flag = Arc::new(Flag(Default::default()));
        let waker = Waker::from(flag.clone());
        let mut waiter = service.clone();
        assert!(waiter
            .poll_ready(&mut Context::from_waker(&waker))
            .is_pending());
        drop((waiter, waker));
        assert_eq!(
            Arc::strong_count(&flag),
            1,
            "a dropped waiter's waker is kept"
        );
    }

    let flag = Arc::new(Flag(Default::default()));
    let waker = Waker::from(flag.clone());
    let mut cx = Context::from_waker(&waker);
    let mut waiter = service.clone();
    assert!(waiter.poll_ready(&mut cx).is_pending());
    assert!(
        waiter.poll_ready(&mut cx).is_pending(),
        "polled again, still waiting"
    );
    layer.handle().reset();
    assert_eq!(flag.0.load(SeqCst), 1, "woken once by the reset");
    assert!(waiter.poll_ready(&mut cx).is_ready());
}
