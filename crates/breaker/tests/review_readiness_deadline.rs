//! Review of the readiness wait ending at the caller's deadline: the edges (paused time).

mod support;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};
use std::time::Duration;

use support::{call, guarded, refusal, Guarded};
use tokio::time::{advance, Instant};
use tower::{Service, ServiceExt};
use tower_bulwark_breaker::{Admission, CircuitBreakerLayer, OpenDuration, State};
use tower_bulwark_core::Deadline;

/// Opens for 10 s after one failure; readiness admission.
fn readiness() -> tower_bulwark_breaker::Builder {
    CircuitBreakerLayer::builder()
        .consecutive_failures(1)
        .open_duration(OpenDuration::Fixed(Duration::from_secs(10)))
        .admission(Admission::Readiness)
}

async fn opened() -> (
    Guarded,
    tower_bulwark_core::testing::Controller,
    CircuitBreakerLayer,
) {
    let (mut service, control, layer) = guarded(readiness());
    control.fail();
    call(&mut service).await.unwrap_err();
    control.succeed();
    (service, control, layer)
}

/// Counts its wake-ups.
#[derive(Default)]
struct Count(AtomicUsize);

impl Wake for Count {
    fn wake(self: Arc<Self>) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

fn poll_in(service: &mut Guarded, deadline: Option<Deadline>, waker: &Waker) -> Poll<bool> {
    let mut cx = Context::from_waker(waker);
    let mut poll = |s: &mut Guarded| s.poll_ready(&mut cx).map(|r| r.is_ok());
    match deadline {
        Some(deadline) => deadline.in_scope(|| poll(service)),
        None => poll(service),
    }
}

/// A deadline at the very instant the open duration ends: deciding again admits the probe,
/// the deadline does not refuse it.
#[tokio::test(start_paused = true)]
async fn a_deadline_at_the_end_of_the_open_duration_lets_the_probe_go() {
    let (service, control, layer) = opened().await;
    let started = Instant::now();
    let answer = Deadline::after(Duration::from_secs(10))
        .scope(service.clone().oneshot(4))
        .await
        .unwrap();
    assert_eq!(answer, 4);
    assert_eq!(started.elapsed(), Duration::from_secs(10));
    assert_eq!(control.calls(), 2);
    assert_eq!(layer.handle().snapshot().rejected, 0);
}

/// A probe slot freed before the deadline admits the waiter at once (the breaker's change
/// still wakes it while a deadline timer is armed).
#[tokio::test(start_paused = true)]
async fn a_probe_slot_freed_before_the_deadline_admits_at_once() {
    let (service, control, layer) = opened().await;
    advance(Duration::from_secs(10)).await;
    control.delay(Duration::from_millis(200));
    let mut prober = service.clone();
    let probe = tokio::spawn(prober.ready().await.unwrap().call(1));
    tokio::task::yield_now().await;
    assert_eq!(layer.handle().state(), State::HalfOpen);
    control.delay(Duration::ZERO);

    let started = Instant::now();
    let answer = Deadline::after(Duration::from_millis(500))
        .scope(service.clone().oneshot(2))
        .await
        .unwrap();
    assert_eq!(answer, 2);
    assert_eq!(started.elapsed(), Duration::from_millis(200));
    probe.await.unwrap().unwrap();
}

/// Without a deadline nothing changed: forced open waits on, with no timer at all.
#[tokio::test(start_paused = true)]
async fn without_a_deadline_a_forced_open_breaker_waits_on() {
    let (mut service, control, layer) = guarded(readiness());
    layer.handle().force_open();
    let count = Arc::new(Count::default());
    let waker = Waker::from(count.clone());
    assert!(poll_in(&mut service, None, &waker).is_pending());
    advance(Duration::from_secs(3600)).await;
    assert_eq!(count.0.load(Ordering::SeqCst), 0, "no timer wakes it");
    assert!(poll_in(&mut service, None, &waker).is_pending());
    layer.handle().resume();
    assert_eq!(
        count.0.load(Ordering::SeqCst),
        1,
        "the operator's change does"
    );
    assert_eq!(poll_in(&mut service, None, &waker), Poll::Ready(true));
    assert_eq!(service.call(9).await.unwrap(), 9);
    assert_eq!(control.calls(), 1);
}

/// The refusal stored at the deadline belongs to that readied service: a clone decides on
/// its own, and dropping the readied one counts no rejection.
#[tokio::test(start_paused = true)]
async fn a_stored_refusal_stays_with_its_service() {
    let (mut service, control, layer) = opened().await;
    let waker = Waker::noop();
    let expired = Deadline::after(Duration::ZERO);
    assert_eq!(
        poll_in(&mut service, Some(expired), waker),
        Poll::Ready(true)
    );
    let mut clone = service.clone();
    assert!(poll_in(&mut clone, None, waker).is_pending());
    drop(service);
    assert_eq!(layer.handle().snapshot().rejected, 0);
    advance(Duration::from_secs(10)).await;
    assert_eq!(poll_in(&mut clone, None, waker), Poll::Ready(true));
    assert_eq!(clone.call(5).await.unwrap(), 5);
    assert_eq!(control.calls(), 2);
}

/// The deadline of each poll counts: a later poll with an earlier deadline ends the wait
/// then, one with a later deadline moves the timer out, and `call` (outside any scope)
/// answers the refusal decided by the last poll.
#[tokio::test(start_paused = true)]
async fn each_poll_waits_until_its_own_deadline() {
    let (mut service, control, layer) = opened().await;
    let count = Arc::new(Count::default());
    let waker = Waker::from(count.clone());
    let late = Deadline::after(Duration::from_secs(5));
    let early = Deadline::after(Duration::from_secs(1));
    assert!(poll_in(&mut service, Some(late), &waker).is_pending());
    assert!(poll_in(&mut service, Some(early), &waker).is_pending());
    advance(Duration::from_secs(1)).await;
    assert_eq!(
        count.0.load(Ordering::SeqCst),
        1,
        "woken at the earlier deadline"
    );
    assert!(poll_in(&mut service, Some(late), &waker).is_pending());
    advance(Duration::from_secs(4)).await;
    assert_eq!(count.0.load(Ordering::SeqCst), 2, "then at the later one");
    assert_eq!(poll_in(&mut service, Some(late), &waker), Poll::Ready(true));
    let result = service.call(1).await;
    assert_eq!(refusal(&result).unwrap().state(), State::Open);
    assert_eq!(layer.handle().snapshot().rejected, 1);
    assert_eq!(control.calls(), 1);
}

/// Polled over and over while waiting, the service keeps one timer, woken once.
#[tokio::test(start_paused = true)]
async fn many_polls_arm_one_timer() {
    let (mut service, _control, _layer) = opened().await;
    let count = Arc::new(Count::default());
    let waker = Waker::from(count.clone());
    let deadline = Deadline::after(Duration::from_secs(2));
    for _ in 0..1000 {
        assert!(poll_in(&mut service, Some(deadline), &waker).is_pending());
    }
    advance(Duration::from_secs(2)).await;
    assert_eq!(count.0.load(Ordering::SeqCst), 1);
}

/// Admitted before its deadline, the service lets go of the task's waker at once: the
/// deadline timer left armed would hold it (keeping the task alive) and wake the task at
/// the deadline for nothing.
#[tokio::test(start_paused = true)]
async fn admitted_before_the_deadline_it_lets_go_of_the_waker() {
    let (mut service, _control, layer) = opened().await;
    let count = Arc::new(Count::default());
    let waker = Waker::from(count.clone());
    let deadline = Deadline::after(Duration::from_secs(30));
    assert!(poll_in(&mut service, Some(deadline), &waker).is_pending());
    layer.handle().force_closed();
    assert_eq!(count.0.load(Ordering::SeqCst), 1, "woken by the change");
    assert_eq!(
        poll_in(&mut service, Some(deadline), &waker),
        Poll::Ready(true)
    );
    drop(waker);
    assert_eq!(
        Arc::strong_count(&count),
        1,
        "no timer or listener holds the waker"
    );
    assert_eq!(service.call(1).await.unwrap(), 1);
    advance(Duration::from_secs(30)).await;
    assert_eq!(
        count.0.load(Ordering::SeqCst),
        1,
        "not woken again at the deadline"
    );
}

/// Refused at its deadline, the service lets go of the waker too: the breaker's next
/// change does not wake a task that has stopped waiting.
#[tokio::test(start_paused = true)]
async fn refused_at_the_deadline_it_lets_go_of_the_waker() {
    let (mut service, _control, layer) = opened().await;
    let count = Arc::new(Count::default());
    let waker = Waker::from(count.clone());
    let deadline = Deadline::after(Duration::from_secs(1));
    assert!(poll_in(&mut service, Some(deadline), &waker).is_pending());
    advance(Duration::from_secs(1)).await;
    assert_eq!(count.0.load(Ordering::SeqCst), 1, "woken at the deadline");
    assert_eq!(
        poll_in(&mut service, Some(deadline), &waker),
        Poll::Ready(true)
    );
    drop(waker);
    assert_eq!(
        Arc::strong_count(&count),
        1,
        "no timer or listener holds the waker"
    );
    layer.handle().force_closed();
    assert_eq!(
        count.0.load(Ordering::SeqCst),
        1,
        "not woken by a later change"
    );
    let result = service.call(1).await;
    assert_eq!(refusal(&result).unwrap().state(), State::Open);
}
