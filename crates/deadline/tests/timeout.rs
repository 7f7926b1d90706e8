//! Timeouts that honour the deadline, fixed and adaptive (paused time).

use std::time::Duration;

use tokio::time::Instant;
use tower::{service_fn, Layer, ServiceExt};
use tower_bulwark_core::testing::controlled;
use tower_bulwark_core::{find_rejection, BoxError, Deadline, RejectionKind};
use tower_bulwark_deadline::{AdaptiveBuilder, AdaptiveTimeoutLayer, TimeoutLayer};

/// The reason of a rejection; its kind says which bound ran out: the layer's own timeout
/// (the dependency was slow) or the caller's deadline.
fn reason(error: &BoxError) -> Option<&'static str> {
    let rejection = find_rejection(error).expect("a rejection");
    let kind = match rejection.reason() {
        Some("timed out") => RejectionKind::TimedOut,
        _ => RejectionKind::DeadlineExceeded,
    };
    assert_eq!(rejection.kind(), kind, "{rejection}");
    rejection.reason()
}

#[tokio::test(start_paused = true)]
async fn the_timeout_or_the_deadline_whichever_ends_first() {
    let (inner, control) = controlled::<u8>();
    control.hang();
    let service = TimeoutLayer::new(Duration::from_millis(300))
        .unwrap()
        .layer(inner);

    let started = Instant::now();
    let error = service.clone().oneshot(1).await.unwrap_err();
    assert_eq!(started.elapsed(), Duration::from_millis(300));
    assert_eq!(reason(&error), Some("timed out"));

    let started = Instant::now();
    let error = Deadline::after(Duration::from_millis(100))
        .scope(service.clone().oneshot(2))
        .await
        .unwrap_err();
    assert_eq!(started.elapsed(), Duration::from_millis(100));
    assert_eq!(reason(&error), Some("deadline passed"));

    let started = Instant::now();
    let error = Deadline::after(Duration::from_secs(5))
        .scope(service.clone().oneshot(3))
        .await
        .unwrap_err();
    assert_eq!(started.elapsed(), Duration::from_millis(300));
    assert_eq!(reason(&error), Some("timed out"));
    assert_eq!(
        control.cancelled(),
        3,
        "each call was dropped when its time ran out"
    );
}

#[tokio::test(start_paused = true)]
async fn the_own_timeout_is_timed_out_and_the_callers_deadline_is_deadline_exceeded() {
    let (inner, control) = controlled::<u8>();
    control.hang();
    let fixed = TimeoutLayer::new(Duration::from_millis(300))
        .unwrap()
        .layer(inner.clone());
    let adaptive = adaptive().build().unwrap().layer(inner);
    let kind = |error: BoxError| find_rejection(&error).expect("a rejection").kind();

    let own = fixed.clone().oneshot(1).await.unwrap_err();
    assert_eq!(kind(own), RejectionKind::TimedOut);
    let own = adaptive.clone().oneshot(1).await.unwrap_err();
    assert_eq!(kind(own), RejectionKind::TimedOut);

    let caller = Deadline::after(Duration::from_millis(100))
        .scope(fixed.oneshot(2))
        .await
        .unwrap_err();
    assert_eq!(kind(caller), RejectionKind::DeadlineExceeded);
    let caller = Deadline::after(Duration::from_millis(100))
        .scope(adaptive.oneshot(2))
        .await
        .unwrap_err();
    assert_eq!(kind(caller), RejectionKind::DeadlineExceeded);
    // A tie goes to the caller: its deadline passed, which no retry can fix.
    let (inner, control) = controlled::<u8>();
    control.hang();
    let tie = TimeoutLayer::new(Duration::from_millis(300))
        .unwrap()
        .layer(inner);
    let caller = Deadline::after(Duration::from_millis(300))
        .scope(tie.oneshot(3))
        .await
        .unwrap_err();
    assert_eq!(kind(caller), RejectionKind::DeadlineExceeded);
}

#[tokio::test(start_paused = true)]
async fn the_inner_service_sees_the_shorter_of_the_two() {
    let service = TimeoutLayer::new(Duration::from_millis(300))
        .unwrap()
        .layer(service_fn(|_: ()| async {
            Ok::<_, BoxError>(Deadline::current().map(Deadline::remaining))
        }));
    assert_eq!(
        service.clone().oneshot(()).await.unwrap(),
        Some(Duration::from_millis(300))
    );
    let seen = Deadline::after(Duration::from_millis(40))
        .scope(service.oneshot(()))
        .await
        .unwrap();
    assert_eq!(seen, Some(Duration::from_millis(40)));
}

#[tokio::test(start_paused = true)]
async fn a_call_whose_deadline_has_passed_is_not_made() {
    let (inner, control) = controlled::<u8>();
    let service = TimeoutLayer::new(Duration::from_secs(1))
        .unwrap()
        .layer(inner);
    let deadline = Deadline::after(Duration::from_millis(10));
    tokio::time::advance(Duration::from_millis(10)).await;
    let error = deadline.scope(service.oneshot(1)).await.unwrap_err();
    assert_eq!(reason(&error), Some("deadline passed before the call"));
    assert_eq!(control.calls(), 0);
}

fn adaptive() -> AdaptiveBuilder {
    AdaptiveTimeoutLayer::builder()
        .percentile(0.99)
        .multiplier(2.0)
        .bounds(Duration::from_millis(20), Duration::from_secs(2))
        .min_samples(20)
}

#[tokio::test(start_paused = true)]
async fn the_adaptive_timeout_learns_the_latency_then_follows_it_up() {
    let layer = adaptive().build().unwrap();
    let (inner, control) = controlled::<u8>();
    let service = layer.layer(inner);
    assert_eq!(
        layer.current_timeout(),
        Duration::from_secs(2),
        "the maximum at first"
    );

    control.delay(Duration::from_millis(50));
    for _ in 0..20 {
        service.clone().oneshot(1).await.unwrap();
    }
    let learned = layer.current_timeout();
    assert!(
        learned.abs_diff(Duration::from_millis(100)) < Duration::from_millis(2),
        "p99 50 ms x 2: {learned:?}"
    );

    // The dependency slows to 300 ms: calls time out at ~100 ms at first, are counted as
    // that long, and the timeout climbs until calls fit again.
    control.delay(Duration::from_millis(300));
    let mut timed_out = 0;
    for _ in 0..200 {
        if service.clone().oneshot(1).await.is_err() {
            timed_out += 1;
        }
    }
    let followed = layer.current_timeout();
    assert!(followed >= Duration::from_millis(300), "{followed:?}");
    assert!(timed_out > 0 && timed_out < 200, "{timed_out}");
    service.oneshot(1).await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn calls_cut_short_by_a_callers_deadline_do_not_teach_the_adaptive_timeout() {
    // The median, so that the short calls would pull it down if they were counted.
    let layer = adaptive().percentile(0.5).build().unwrap();
    let (inner, control) = controlled::<u8>();
    let service = layer.layer(inner);
    control.delay(Duration::from_millis(50));
    for _ in 0..20 {
        service.clone().oneshot(1).await.unwrap();
    }
    let learned = layer.current_timeout();
    // Callers with only 10 ms left: their calls end at 10 ms, which says nothing about
    // how long the dependency takes.
    for _ in 0..100 {
        let error = Deadline::after(Duration::from_millis(10))
            .scope(service.clone().oneshot(1))
            .await
            .unwrap_err();
        assert_eq!(reason(&error), Some("deadline passed"));
    }
    assert_eq!(layer.current_timeout(), learned);
}

#[tokio::test(start_paused = true)]
async fn the_adaptive_timeout_stays_within_its_bounds() {
    let layer = adaptive().build().unwrap();
    let service = layer.layer(service_fn(|_: ()| async { Ok::<_, BoxError>(()) }));
    for _ in 0..50 {
        service.clone().oneshot(()).await.unwrap();
    }
    assert_eq!(
        layer.current_timeout(),
        Duration::from_millis(20),
        "the minimum"
    );
}

#[test]
fn bad_settings_name_their_field() {
    assert_eq!(
        TimeoutLayer::new(Duration::ZERO).unwrap_err().field(),
        "timeout"
    );
    let field = |builder: AdaptiveBuilder| builder.build().unwrap_err().field();
    assert_eq!(field(adaptive().percentile(0.0)), "percentile");
    assert_eq!(field(adaptive().percentile(1.5)), "percentile");
    assert_eq!(field(adaptive().multiplier(0.5)), "multiplier");
    assert_eq!(field(adaptive().multiplier(f64::INFINITY)), "multiplier");
    assert_eq!(field(adaptive().multiplier(1001.0)), "multiplier");
    assert_eq!(
        field(adaptive().bounds(Duration::ZERO, Duration::from_secs(1))),
        "min"
    );
    assert_eq!(
        field(adaptive().bounds(Duration::from_secs(2), Duration::from_secs(1))),
        "max"
    );
    assert_eq!(
        field(adaptive().window(Duration::from_millis(10))),
        "window"
    );
    assert_eq!(field(adaptive().min_samples(0)), "min_samples");
}
