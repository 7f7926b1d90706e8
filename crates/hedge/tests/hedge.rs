//! The hedge layer's behaviour, in paused time: exact latencies and counts.

mod support;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use http::Request;
use tokio::time::Instant;
use tower::{Layer, Service, ServiceExt};
use tower_bulwark_core::testing::ReadinessProbe;
use tower_bulwark_core::{BoxError, CanReplay, Deadline, RejectionKind, Replayable};
use tower_bulwark_hedge::{HedgeEvent, HedgeHandle, HedgeLayer, NotSent, Snapshot};

use support::{backend, get, ms, Reply};

/// A layer with a fixed delay of 10 ms and room in the budget for every hedge.
fn fixed() -> tower_bulwark_hedge::HedgeBuilder {
    HedgeLayer::builder().delay(ms(10)).budget_ratio(1.0)
}

/// Calls `service` once; the result and how long it took.
async fn timed<S>(service: &mut S, request: Request<()>) -> (Result<String, String>, Duration)
where
    S: Service<Request<()>, Response = http::Response<String>, Error = BoxError>,
{
    let started = Instant::now();
    let result = service.ready().await.unwrap().call(request).await;
    let result = result
        .map(|response| format!("{} {}", response.status().as_u16(), response.body()))
        .map_err(|error| error.to_string());
    (result, started.elapsed())
}

fn counts(snapshot: &Snapshot) -> (u64, u64, u64, u64, u64) {
    (
        snapshot.sent,
        snapshot.primary_wins,
        snapshot.hedge_wins,
        snapshot.cancelled,
        snapshot.in_flight,
    )
}

#[tokio::test(start_paused = true)]
async fn a_slow_first_attempt_is_hedged_and_the_hedge_wins() {
    let (inner, stats) = backend(|n| {
        if n == 0 {
            (ms(1000), Reply::Ok)
        } else {
            (ms(5), Reply::Ok)
        }
    });
    let layer = fixed().build().unwrap();
    let handle = layer.handle();
    let mut service = layer.layer(ReadinessProbe::new(inner));
    let (result, took) = timed(&mut service, get()).await;
    assert_eq!(result.unwrap(), "200 1");
    assert_eq!(took, ms(15));
    assert_eq!(stats.calls(), 2);
    assert_eq!(stats.cancelled(), 1, "the first attempt was dropped");
    assert_eq!(stats.in_flight(), 0);
    assert_eq!(counts(&handle.snapshot()), (1, 0, 1, 1, 0));
}

#[tokio::test(start_paused = true)]
async fn a_fast_first_attempt_sends_no_hedge() {
    let (inner, stats) = backend(|_| (ms(9), Reply::Ok));
    let layer = fixed().build().unwrap();
    let handle = layer.handle();
    let mut service = layer.layer(ReadinessProbe::new(inner));
    for _ in 0..10 {
        let (result, took) = timed(&mut service, get()).await;
        assert_eq!(took, ms(9));
        assert!(result.is_ok());
    }
    // Well after the delay: no timer left behind sends anything.
    tokio::time::sleep(ms(100)).await;
    assert_eq!(stats.calls(), 10);
    let snapshot = handle.snapshot();
    assert_eq!(counts(&snapshot), (0, 0, 0, 0, 0));
    assert_eq!(snapshot.calls, 10);
    assert_eq!(snapshot.not_sent.iter().map(|(_, n)| n).sum::<u64>(), 0);
}

#[tokio::test(start_paused = true)]
async fn the_first_attempt_can_still_win_and_cancels_the_hedge() {
    let (inner, stats) = backend(|n| {
        if n == 0 {
            (ms(12), Reply::Ok)
        } else {
            (ms(50), Reply::Ok)
        }
    });
    let layer = fixed().build().unwrap();
    let handle = layer.handle();
    let mut service = layer.layer(ReadinessProbe::new(inner));
    let (result, took) = timed(&mut service, get()).await;
    assert_eq!(result.unwrap(), "200 0");
    assert_eq!(took, ms(12));
    assert_eq!(
        (stats.calls(), stats.cancelled(), stats.in_flight()),
        (2, 1, 0)
    );
    assert_eq!(counts(&handle.snapshot()), (1, 1, 0, 1, 0));
}

#[tokio::test(start_paused = true)]
async fn an_early_error_is_returned_at_once_without_a_hedge() {
    let (inner, stats) = backend(|_| (ms(3), Reply::Fail));
    let layer = fixed().build().unwrap();
    let handle = layer.handle();
    let mut service = layer.layer(ReadinessProbe::new(inner));
    let (result, took) = timed(&mut service, get()).await;
    assert_eq!(result.unwrap_err(), "attempt 0 failed");
    assert_eq!(took, ms(3));
    tokio::time::sleep(ms(100)).await;
    assert_eq!(stats.calls(), 1);
    assert_eq!(counts(&handle.snapshot()), (0, 0, 0, 0, 0));
}

#[tokio::test(start_paused = true)]
async fn an_error_waits_for_the_hedge_still_running() {
    // The first attempt fails at 20 ms, after the hedge went at 10 ms; the hedge answers at 25.
    let (inner, stats) = backend(|n| {
        if n == 0 {
            (ms(20), Reply::Fail)
        } else {
            (ms(15), Reply::Ok)
        }
    });
    let layer = fixed().build().unwrap();
    let handle = layer.handle();
    let mut service = layer.layer(ReadinessProbe::new(inner));
    let (result, took) = timed(&mut service, get()).await;
    assert_eq!(result.unwrap(), "200 1");
    assert_eq!(took, ms(25));
    assert_eq!((stats.calls(), stats.cancelled()), (2, 0));
    assert_eq!(counts(&handle.snapshot()), (1, 0, 1, 0, 0));
}

#[tokio::test(start_paused = true)]
async fn when_every_attempt_fails_the_first_error_is_the_answer() {
    let (inner, _stats) = backend(|n| {
        if n == 0 {
            (ms(20), Reply::Fail)
        } else {
            (ms(30), Reply::Fail)
        }
    });
    let layer = fixed().build().unwrap();
    let handle = layer.handle();
    let mut service = layer.layer(ReadinessProbe::new(inner));
    let (result, took) = timed(&mut service, get()).await;
    assert_eq!(result.unwrap_err(), "attempt 0 failed");
    assert_eq!(took, ms(40));
    assert_eq!(counts(&handle.snapshot()), (1, 1, 0, 0, 0));
}

#[tokio::test(start_paused = true)]
async fn only_requests_safe_to_repeat_are_hedged() {
    let (inner, stats) = backend(|_| (ms(100), Reply::Ok));
    let layer = fixed().build().unwrap();
    let handle = layer.handle();
    let mut service = layer.layer(ReadinessProbe::new(inner));
    let post = Request::post("/orders").body(()).unwrap();
    let (result, took) = timed(&mut service, post).await;
    assert_eq!((result.unwrap(), took), ("200 0".to_owned(), ms(100)));
    assert_eq!(stats.calls(), 1);
    assert_eq!(handle.snapshot().not_sent(NotSent::NotIdempotent), 1);
    let keyed = Request::post("/orders")
        .header("idempotency-key", "k-1")
        .body(())
        .unwrap();
    let (_, took) = timed(&mut service, keyed).await;
    assert_eq!(took, ms(100), "both attempts take 100 ms; the first wins");
    assert_eq!(stats.calls(), 3, "the keyed request was hedged");
    assert_eq!(handle.snapshot().sent, 1);
}

/// A body recorded for replay that outgrew its recording.
struct Outgrown;

impl CanReplay for Outgrown {
    fn can_replay(&self) -> bool {
        false
    }
}

#[tokio::test(start_paused = true)]
async fn a_body_that_cannot_be_replayed_is_not_hedged() {
    let (inner, stats) = backend(|_| (ms(100), Reply::Ok));
    let layer = fixed().build().unwrap();
    let handle = layer.handle();
    let mut service = layer.layer(ReadinessProbe::new(inner));
    let mut request = get();
    request
        .extensions_mut()
        .insert(Replayable::new(Arc::new(Outgrown)));
    let (_, took) = timed(&mut service, request).await;
    assert_eq!(took, ms(100));
    assert_eq!(stats.calls(), 1);
    assert_eq!(handle.snapshot().not_sent(NotSent::NotIdempotent), 1);
}

#[tokio::test(start_paused = true)]
async fn the_budget_caps_the_hedges() {
    // 10% of calls, nothing for free: 20 slow calls buy 2 hedges.
    let (inner, stats) = backend(|n| (if n < 20 { ms(100) } else { ms(1) }, Reply::Ok));
    let layer = HedgeLayer::builder()
        .delay(ms(10))
        .budget_ratio(0.1)
        .min_per_sec(0)
        .build()
        .unwrap();
    let handle = layer.handle();
    let service = layer.layer(ReadinessProbe::new(inner));
    let calls: Vec<_> = (0..20)
        .map(|_| tokio::spawn(service.clone().oneshot(get())))
        .collect();
    for call in calls {
        call.await.unwrap().unwrap();
    }
    let snapshot = handle.snapshot();
    assert_eq!(snapshot.sent, 2);
    assert_eq!(snapshot.not_sent(NotSent::Budget), 18);
    assert_eq!(snapshot.hedge_wins, 2);
    assert_eq!(stats.calls(), 22);
    assert_eq!(snapshot.budget, 0.0);
}

#[tokio::test(start_paused = true)]
async fn an_overloaded_answer_pauses_hedging_for_its_retry_after() {
    let (inner, stats) = backend(|n| match n {
        // The first call's attempts: the first is slow, its hedge is shed with Retry-After: 2.
        0 => (ms(100), Reply::Ok),
        1 => (ms(1), Reply::Status(503, vec![("retry-after", "2")])),
        _ => (ms(100), Reply::Ok),
    });
    let events = Arc::new(Mutex::new(Vec::new()));
    let seen = events.clone();
    let layer = fixed()
        .on_event(move |event: &HedgeEvent| seen.lock().unwrap().push(event.clone()))
        .build()
        .unwrap();
    let handle = layer.handle();
    let mut service = layer.layer(ReadinessProbe::new(inner));
    let (result, took) = timed(&mut service, get()).await;
    assert_eq!(
        result.unwrap(),
        "200 0",
        "the shed did not win: the first attempt did"
    );
    assert_eq!(took, ms(100));
    let snapshot = handle.snapshot();
    assert_eq!(snapshot.pauses, 1);
    assert_eq!(snapshot.paused_for, ms(2000 - 89));
    // While paused: slow calls, no hedge, no copy.
    for _ in 0..5 {
        let (_, took) = timed(&mut service, get()).await;
        assert_eq!(took, ms(100));
    }
    assert_eq!(
        stats.calls(),
        2 + 5,
        "no extra load while the backend sheds"
    );
    assert_eq!(handle.snapshot().not_sent(NotSent::Paused), 5);
    // The pause is over (at 2.011 s): hedging again.
    tokio::time::sleep(ms(2000)).await;
    let (result, took) = timed(&mut service, get()).await;
    assert_eq!((result.unwrap(), took), ("200 7".to_owned(), ms(100)));
    assert_eq!(stats.calls(), 9);
    let events = events.lock().unwrap();
    let kinds: Vec<String> = events
        .iter()
        .map(|event| match event {
            HedgeEvent::Sent { number, after, .. } => format!("sent {number} {after:?}"),
            HedgeEvent::Paused { pause, .. } => format!("paused {pause:?}"),
            HedgeEvent::NotSent { reason, .. } => format!("not sent {reason}"),
            HedgeEvent::Answered {
                winner, cancelled, ..
            } => format!("answered {winner:?} {cancelled}"),
            _ => "other".to_owned(),
        })
        .collect();
    let mut expected = vec![
        "sent 1 10ms".to_owned(),
        "paused 2s".to_owned(),
        "answered Primary 0".to_owned(),
    ];
    expected.extend(std::iter::repeat_n("not sent paused".to_owned(), 5));
    expected.extend(["sent 1 10ms".to_owned(), "answered Primary 1".to_owned()]);
    assert_eq!(kinds, expected);
}

/// How long each pushback pauses hedging: core's reading of the header (the retry
/// layer's), the default pause when it gives no wait, at most 60 s.
#[tokio::test(start_paused = true)]
async fn the_pause_is_the_pushback_as_core_reads_it() {
    type Headers = Vec<(&'static str, &'static str)>;
    let grpc = |pushback: &'static str| -> (u16, Headers) {
        (
            200,
            vec![("grpc-status", "8"), ("grpc-retry-pushback-ms", pushback)],
        )
    };
    let http =
        |retry_after: &'static str| -> (u16, Headers) { (503, vec![("retry-after", retry_after)]) };
    // (answer of the hedge, the pause it starts; 0: no pause)
    let cases = [
        (http("2"), ms(2_000)),
        (http("0"), ms(0)),
        (http("Wed, 21 Oct 2015 07:28:00 GMT"), ms(0)),
        (http("soon"), ms(1_000)),
        (http("-5"), ms(1_000)),
        (http("99999999999"), ms(60_000)),
        (http("99999999999999999999999"), ms(60_000)),
        (grpc("250"), ms(250)),
        (grpc("-1"), ms(1_000)),
        (grpc("1.5"), ms(1_000)),
        (grpc("99999999999999999999"), ms(1_000)),
    ];
    for ((status, headers), pause) in cases {
        let label = format!("{status} {headers:?}");
        let (inner, _) = backend(move |n| match n {
            0 => (ms(100), Reply::Ok),
            _ => (ms(1), Reply::Status(status, headers.clone())),
        });
        let layer = fixed().build().unwrap();
        let handle = layer.handle();
        let mut service = layer.layer(ReadinessProbe::new(inner));
        let (result, took) = timed(&mut service, get()).await;
        assert_eq!(
            (result.unwrap(), took),
            ("200 0".to_owned(), ms(100)),
            "{label}"
        );
        // The hedge answered at 11 ms; 89 ms of the pause have gone.
        let snapshot = handle.snapshot();
        assert_eq!(snapshot.paused_for, pause.saturating_sub(ms(89)), "{label}");
        assert_eq!(snapshot.pauses, u64::from(pause > ms(0)), "{label}");
    }
}

#[tokio::test(start_paused = true)]
async fn an_open_breaker_below_pauses_hedging() {
    let (inner, stats) = backend(|n| match n {
        0 => (ms(100), Reply::Ok),
        1 => (ms(0), Reply::Reject(RejectionKind::CircuitOpen, None)),
        _ => (ms(100), Reply::Ok),
    });
    let layer = fixed().pause(ms(500)).build().unwrap();
    let handle = layer.handle();
    let mut service = layer.layer(ReadinessProbe::new(inner));
    let (result, _) = timed(&mut service, get()).await;
    assert_eq!(result.unwrap(), "200 0");
    assert_eq!(
        handle.snapshot().paused_for,
        ms(410),
        "the default pause, from 10 ms"
    );
    let (_, _) = timed(&mut service, get()).await;
    assert_eq!(stats.calls(), 3);
    tokio::time::sleep(ms(400)).await;
    let (_, _) = timed(&mut service, get()).await;
    assert_eq!(stats.calls(), 5, "hedging again once the pause ended");
}

#[tokio::test(start_paused = true)]
async fn no_hedge_past_the_callers_deadline() {
    let (inner, stats) = backend(|_| (ms(100), Reply::Ok));
    let layer = fixed().build().unwrap();
    let handle = layer.handle();
    let mut service = layer.layer(ReadinessProbe::new(inner));
    // In the request: 14 ms left, the hedge would leave at 10 ms with 4 left (margin 5).
    let mut request = get();
    request.extensions_mut().insert(Deadline::after(ms(14)));
    let _ = timed(&mut service, request).await;
    assert_eq!(stats.calls(), 1);
    assert_eq!(handle.snapshot().not_sent(NotSent::Deadline), 1);
    // The task's deadline, 16 ms: a hedge at 10 ms has 6 left.
    let deadline = Deadline::after(ms(16));
    let _ = deadline.scope(timed(&mut service, get())).await;
    assert_eq!(stats.calls(), 3);
    // A deadline that shrinks while the call runs: the task's scope, read when the hedge
    // is due.
    let mut request = get();
    request.extensions_mut().insert(Deadline::after(ms(1000)));
    let call = service.ready().await.unwrap().call(request);
    let _ = Deadline::after(ms(14)).scope(call).await;
    assert_eq!(
        stats.calls(),
        4,
        "the scope's deadline, read at the hedge, forbade it"
    );
    assert_eq!(handle.snapshot().not_sent(NotSent::Deadline), 2);
}

#[tokio::test(start_paused = true)]
async fn a_clone_that_is_not_ready_skips_the_hedge() {
    let (inner, stats) = backend(|_| (ms(100), Reply::Ok));
    // One permit, shared by every clone: the first attempt holds it.
    let limited = tower::limit::ConcurrencyLimitLayer::new(1).layer(inner);
    let layer = fixed().build().unwrap();
    let handle = layer.handle();
    let mut service = layer.layer(ReadinessProbe::new(limited));
    let (result, took) = timed(&mut service, get()).await;
    assert_eq!((result.unwrap(), took), ("200 0".to_owned(), ms(100)));
    assert_eq!(stats.calls(), 1);
    assert_eq!(handle.snapshot().not_sent(NotSent::NotReady), 1);
}

#[tokio::test(start_paused = true)]
async fn up_to_max_hedges_one_delay_apart() {
    let (inner, stats) = backend(|n| match n {
        0 => (ms(1000), Reply::Ok),
        1 => (ms(1000), Reply::Ok),
        2 => (ms(1000), Reply::Ok),
        _ => (ms(5), Reply::Ok),
    });
    let events = Arc::new(Mutex::new(Vec::new()));
    let seen = events.clone();
    let layer = fixed()
        .max_hedges(3)
        .on_event(move |event: &HedgeEvent| {
            if let HedgeEvent::Sent { number, after, .. } = event {
                seen.lock().unwrap().push((*number, *after));
            }
        })
        .build()
        .unwrap();
    let handle = layer.handle();
    let mut service = layer.layer(ReadinessProbe::new(inner));
    let (result, took) = timed(&mut service, get()).await;
    assert_eq!((result.unwrap(), took), ("200 3".to_owned(), ms(35)));
    assert_eq!(
        *events.lock().unwrap(),
        vec![(1, ms(10)), (2, ms(20)), (3, ms(30))]
    );
    assert_eq!(
        (stats.calls(), stats.cancelled(), stats.in_flight()),
        (4, 3, 0)
    );
    assert_eq!(counts(&handle.snapshot()), (3, 0, 1, 3, 0));
}

#[tokio::test(start_paused = true)]
async fn the_learned_delay_is_the_percentile_of_first_attempts() {
    // Latencies 1..=100 ms, a fast one after a pause (its recording recomputes the
    // delay), then one that hangs.
    let (inner, stats) = backend(|n| match n {
        0..=99 => (ms(n as u64 + 1), Reply::Ok),
        101 => (ms(10_000), Reply::Ok),
        _ => (ms(1), Reply::Ok),
    });
    let layer = HedgeLayer::builder()
        .percentile(0.95)
        .min_samples(100)
        .budget_ratio(1.0)
        .build()
        .unwrap();
    let handle: HedgeHandle = layer.handle();
    assert_eq!(
        handle.snapshot().delay,
        ms(1000),
        "the ceiling until learned"
    );
    assert!(!handle.snapshot().delay_learned);
    let mut service = layer.layer(ReadinessProbe::new(inner));
    for _ in 0..100 {
        let _ = timed(&mut service, get()).await;
    }
    tokio::time::sleep(ms(200)).await;
    let _ = timed(&mut service, get()).await;
    let snapshot = handle.snapshot();
    assert!(snapshot.delay_learned);
    // The 95th of 101 latencies (1, 1..=100 ms) is the 96th: 95 ms, rounded up to its
    // bucket (within 1/8).
    assert_eq!(snapshot.delay, Duration::from_micros(98_303));
    let (result, took) = timed(&mut service, get()).await;
    assert_eq!(result.unwrap(), "200 102");
    // tokio's timer ticks in whole milliseconds: the hedge leaves at 99 ms, answers at 100.
    assert_eq!(took, ms(100));
    assert_eq!(stats.calls(), 103);
}

#[tokio::test(start_paused = true)]
async fn hedges_go_out_within_the_callers_task_deadline_scope() {
    // The hedge's call sees the caller's current deadline (deadline propagation below
    // reads it).
    let seen = Arc::new(Mutex::new(Vec::new()));
    let inner = {
        let seen = seen.clone();
        tower::service_fn(move |_request: Request<()>| {
            seen.lock()
                .unwrap()
                .push(Deadline::current().map(|d| d.remaining()));
            async move {
                tokio::time::sleep(ms(100)).await;
                Ok::<_, BoxError>(http::Response::new(String::new()))
            }
        })
    };
    let mut service = fixed().build().unwrap().layer(inner);
    let deadline = Deadline::after(ms(500));
    let _ = deadline.scope(timed(&mut service, get())).await;
    assert_eq!(*seen.lock().unwrap(), vec![Some(ms(500)), Some(ms(490))]);
}

#[tokio::test(start_paused = true)]
async fn polled_again_after_its_answer_is_an_error_not_a_panic() {
    let (inner, _) = backend(|_| (ms(1), Reply::Ok));
    let mut service = fixed().build().unwrap().layer(inner);
    let mut call = std::pin::pin!(service.ready().await.unwrap().call(get()));
    assert!((&mut call).await.is_ok());
    let again = std::future::poll_fn(|cx| std::future::Future::poll(call.as_mut(), cx)).await;
    assert_eq!(
        again.unwrap_err().to_string(),
        "future polled after completion"
    );
}

#[tokio::test(start_paused = true)]
async fn closures_decide_for_any_request_type() {
    use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
    let calls = Arc::new(AtomicUsize::new(0));
    let inner = {
        let calls = calls.clone();
        tower::service_fn(move |key: u64| {
            let n = calls.fetch_add(1, SeqCst);
            async move {
                tokio::time::sleep(if n == 0 { ms(100) } else { ms(1) }).await;
                Ok::<_, std::io::Error>(key * 10 + n as u64)
            }
        })
    };
    let layer = HedgeLayer::builder()
        .delay(ms(10))
        .may_hedge(|key: &u64| *key != 0)
        .overload(tower_bulwark_hedge::Rejections)
        .build()
        .unwrap();
    let service = layer.layer(inner);
    assert_eq!(service.clone().oneshot(7).await.unwrap(), 71);
    assert_eq!(service.oneshot(0).await.unwrap(), 2);
    assert_eq!(
        layer.handle().snapshot().not_sent(NotSent::NotIdempotent),
        1
    );
}
