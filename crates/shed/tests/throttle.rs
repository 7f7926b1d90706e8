//! Client-side adaptive throttling against a backend that refuses, then recovers.

use std::time::Duration;

use tokio_test::task;
use tower::{Layer, Service, ServiceExt};
use tower_bulwark_core::testing::{controlled, ReadinessProbe};
use tower_bulwark_core::{find_rejection, RejectionKind, SeededRng};
use tower_bulwark_shed::{AdaptiveThrottleLayer, Throttled};

#[tokio::test(start_paused = true)]
async fn a_refusing_backend_gets_fewer_calls_and_a_healthy_one_all_of_them() {
    let throttle = AdaptiveThrottleLayer::builder()
        .k(2.0)
        .window(Duration::from_secs(60))
        .seed(42)
        .build()
        .unwrap();
    let (backend, control) = controlled::<u32>();
    let client = throttle.layer(backend);

    // Healthy: nothing is throttled.
    for i in 0..100 {
        client.clone().oneshot(i).await.unwrap();
    }
    assert_eq!(control.calls(), 100);
    assert_eq!(throttle.rejection_probability(), 0.0);

    // The backend refuses everything: once requests exceed 2 x accepts, calls are
    // rejected locally with a growing probability.
    control.fail();
    let mut throttled = 0;
    for i in 0..1_000 {
        if let Err(error) = client.clone().oneshot(i).await {
            if find_rejection(&error).is_some_and(|r| r.kind() == RejectionKind::Throttled) {
                let local = error
                    .downcast_ref::<Throttled>()
                    .expect("the throttle's error");
                assert_eq!(local.rejection().kind(), RejectionKind::Throttled);
                throttled += 1;
            }
        }
    }
    let reached = control.calls() - 100;
    assert_eq!(reached + throttled, 1_000);
    // p = (R - 2 x 100) / (R + 1) as the requests R grow from 100 to 1,100: the expected
    // number throttled is the sum of p, about 560.
    assert!(
        (500..620).contains(&throttled),
        "over half the load stays home: {throttled} throttled"
    );
    let p = throttle.rejection_probability();
    assert!(p > 0.8 && p <= 0.9, "capped at 90%: {p}");

    // The window moves on and the backend is healthy again: nothing is throttled.
    control.succeed();
    tokio::time::advance(Duration::from_secs(61)).await;
    for i in 0..100 {
        client.clone().oneshot(i).await.unwrap();
    }
    assert_eq!(throttle.rejection_probability(), 0.0);
}

#[test]
fn bad_settings_name_their_field() {
    let field = |b: tower_bulwark_shed::ThrottleBuilder| b.build().unwrap_err().field();
    assert_eq!(
        field(AdaptiveThrottleLayer::builder().k(0.5)),
        "success_rate_threshold"
    );
    assert_eq!(
        field(AdaptiveThrottleLayer::builder().success_rate_threshold(0.0)),
        "success_rate_threshold"
    );
    assert_eq!(
        field(AdaptiveThrottleLayer::builder().aggression(0.5)),
        "aggression"
    );
    assert_eq!(
        field(AdaptiveThrottleLayer::builder().max_rejection_probability(1.5)),
        "max_rejection_probability"
    );
    assert_eq!(
        field(AdaptiveThrottleLayer::builder().min_requests_per_second(-1.0)),
        "min_requests_per_second"
    );
    assert_eq!(
        field(AdaptiveThrottleLayer::builder().window(Duration::from_millis(10))),
        "window"
    );
}

/// A call dropped before it ends (the caller gave up, lost a race, disconnected) says
/// nothing about the backend: it counts as neither a request nor an accept.
#[tokio::test(start_paused = true)]
async fn cancelled_calls_are_neither_refused_nor_accepted() {
    let throttle = AdaptiveThrottleLayer::builder()
        .k(2.0)
        .window(Duration::from_secs(60))
        .seed(42)
        .build()
        .unwrap();
    let (backend, control) = controlled::<u32>();
    let mut client = throttle.layer(ReadinessProbe::new(backend));

    // A healthy backend whose callers all give up: started, polled, then dropped.
    control.hang();
    for i in 0..100 {
        let mut call = task::spawn(client.ready().await.unwrap().call(i));
        assert!(call.poll().is_pending(), "call {i} was throttled");
    }
    assert_eq!(control.cancelled(), 100);
    assert_eq!(throttle.rejection_probability(), 0.0, "not refusals");

    // Nor accepts; and a call that is sent counts when it ends: one refusal is then one
    // of one, (1 - 2 x 0) / (1 + 1).
    control.fail();
    control.delay(Duration::from_secs(1));
    let call = client.ready().await.unwrap().call(100);
    assert_eq!(throttle.rejection_probability(), 0.0, "not counted yet");
    assert!(call.await.is_err());
    assert_eq!(throttle.rejection_probability(), 0.5);
}

/// The composition contract: a backend shedding for overload (a marked 503) is what the
/// throttle is for, while a refusal by a layer between the throttle and the backend says
/// nothing about the backend.
#[tokio::test(start_paused = true)]
async fn a_marked_shed_counts_against_the_backend_and_a_local_refusal_does_not() {
    use tower::service_fn;
    use tower_bulwark_core::{BoxError, HttpClassifier, Rejection};

    let throttle = || {
        AdaptiveThrottleLayer::builder()
            .k(2.0)
            .seed(7)
            .classify(HttpClassifier)
            .build()
            .unwrap()
    };
    let shedding = throttle();
    let client = shedding.layer(service_fn(|_: u32| async {
        let shed = Rejection::new(RejectionKind::Overloaded, "server").to_http_response::<()>();
        Ok::<_, BoxError>(shed)
    }));
    for i in 0..100 {
        let _ = client.clone().oneshot(i).await;
    }
    assert_eq!(shedding.rejection_probability(), 0.9, "at the cap");

    let local = throttle();
    let client = local.layer(service_fn(|_: u32| async {
        let full = Rejection::new(RejectionKind::BulkheadFull, "below");
        Err::<http::Response<()>, BoxError>(full.into())
    }));
    for i in 0..100 {
        let error = client.clone().oneshot(i).await.unwrap_err();
        assert_eq!(
            find_rejection(&error).unwrap().kind(),
            RejectionKind::BulkheadFull
        );
    }
    assert_eq!(local.rejection_probability(), 0.0);
}

/// While a breaker below the throttle is open, its refusals neither dilute the backend's
/// failures (as accepts would) nor add to them: the probability is the backend's alone.
#[tokio::test(start_paused = true)]
async fn local_refusals_below_count_as_neither_request_nor_accept() {
    use tower::service_fn;
    use tower_bulwark_core::{BoxError, Rejection};

    let throttle = AdaptiveThrottleLayer::builder()
        .k(2.0)
        .seed(7)
        .build()
        .unwrap();
    let client = throttle.layer(service_fn(|i: u32| async move {
        if i < 100 {
            Err::<u32, BoxError>(Rejection::new(RejectionKind::CircuitOpen, "below").into())
        } else {
            Err("connection reset".into())
        }
    }));
    for i in 0..100 {
        let _ = client.clone().oneshot(i).await;
    }
    assert_eq!(throttle.rejection_probability(), 0.0, "nothing counted");
    for i in 100..103 {
        let _ = client.clone().oneshot(i).await;
    }
    // Three requests, no accepts: (3 - 2 x 0) / (3 + 1).
    assert_eq!(throttle.rejection_probability(), 0.75);
}

/// A backend that fails every call after `after` (a timeout below it, say).
fn slow_failures(
    after: Duration,
) -> impl Service<u32, Response = u32, Error = std::io::Error, Future = impl Send> + Clone + Send {
    tower::service_fn(move |_: u32| async move {
        tokio::time::sleep(after).await;
        Err::<u32, _>(std::io::Error::other("timed out"))
    })
}

/// A call sent counts when it ends: calls failing slower than the window still count (a
/// backend whose every call times out after longer than the window is throttled).
#[tokio::test(start_paused = true)]
async fn calls_failing_slower_than_the_window_still_count() {
    let throttle = AdaptiveThrottleLayer::builder()
        .window(Duration::from_secs(1))
        .seed(1)
        .build()
        .unwrap();
    let client = throttle.layer(slow_failures(Duration::from_secs(2)));
    let calls: Vec<_> = (0..50)
        .map(|i| tokio::spawn(client.clone().oneshot(i)))
        .collect();
    for call in calls {
        assert!(call.await.unwrap().is_err());
    }
    // 50 requests, no accept, just ended: (50 - 0) / 51, capped at 0.9.
    assert_eq!(
        throttle.rejection_probability(),
        0.9,
        "50 failures that just ended are not in the window"
    );
}

/// A failure counts for a whole window after it is known, not for the window less its
/// own duration.
#[tokio::test(start_paused = true)]
async fn a_slow_failure_counts_for_a_whole_window_after_it_ends() {
    let throttle = AdaptiveThrottleLayer::builder()
        .window(Duration::from_secs(10))
        .seed(1)
        .build()
        .unwrap();
    let client = throttle.layer(slow_failures(Duration::from_secs(8)));
    let calls: Vec<_> = (0..50)
        .map(|i| tokio::spawn(client.clone().oneshot(i)))
        .collect();
    for call in calls {
        assert!(call.await.unwrap().is_err());
    }
    assert_eq!(throttle.rejection_probability(), 0.9, "just ended");
    // 3 s after they ended, well inside a 10 s window.
    tokio::time::advance(Duration::from_secs(3)).await;
    assert_eq!(
        throttle.rejection_probability(),
        0.9,
        "failures known 3 s ago already left a 10 s window"
    );
}

/// Below `min_requests_per_second` over the window nothing is rejected, however many of
/// the requests fail; at the minimum, the rule applies.
#[tokio::test(start_paused = true)]
async fn nothing_is_rejected_below_the_minimum_rate_over_the_window() {
    let throttle = AdaptiveThrottleLayer::builder()
        .min_requests_per_second(0.5)
        .window(Duration::from_secs(20))
        .seed(1)
        .build()
        .unwrap();
    let (backend, control) = controlled::<u32>();
    control.fail();
    let client = throttle.layer(backend);
    // 0.5 a second over 20 s: 10 requests.
    for i in 0..9 {
        assert!(client.clone().oneshot(i).await.is_err());
        assert_eq!(throttle.rejection_probability(), 0.0, "{} requests", i + 1);
    }
    assert!(client.clone().oneshot(9).await.is_err());
    assert_eq!(control.calls(), 10, "none throttled");
    // 10 requests, no accepts: 10 / 11, capped at 0.9.
    assert_eq!(throttle.rejection_probability(), 0.9);
}

/// A call is rejected when its draw falls below the probability (a draw exactly at it
/// passes: `p` of the unit interval rejects), and a call while the probability is 0 takes
/// no draw: the first call that could be rejected gets the seed's first draw, however
/// many came before it.
#[tokio::test(start_paused = true)]
async fn the_first_call_that_could_be_rejected_takes_the_seeds_first_draw() {
    let seed = 1;
    let mut rng = SeededRng::new(seed);
    let draws: Vec<f64> = (0..11).map(|_| rng.next_unit()).collect();
    // A seed whose eleventh draw is below its first.
    assert!(draws[10] < draws[0] && draws[0] < 0.9, "{draws:?}");
    let throttle = AdaptiveThrottleLayer::builder()
        .min_requests_per_second(1.0)
        .window(Duration::from_secs(10))
        .max_rejection_probability(draws[0])
        .seed(seed)
        .build()
        .unwrap();
    let (backend, control) = controlled::<u32>();
    control.fail();
    let client = throttle.layer(backend);
    // Under the minimum of 10 requests: the probability is 0.
    for i in 0..10 {
        assert!(client.clone().oneshot(i).await.is_err());
    }
    // 10 refused of 10: 10 / 11, capped at exactly the first draw.
    assert_eq!(throttle.rejection_probability(), draws[0]);
    assert!(client.clone().oneshot(10).await.is_err());
    assert_eq!(control.calls(), 11, "the draw at the probability passed");
}
