//! The detector in paused time: ejection and return, growing and capped ejection times,
//! decay, the cap, the interval rules against hand-computed numbers, refusals not counted,
//! cancel safety, configuration errors.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;
use tower::{Layer, Service, ServiceExt};
use tower_bulwark_core::testing::{controlled, Behavior, Controlled, Controller, ReadinessProbe};
use tower_bulwark_core::{Rejection, RejectionKind, SeededRng};
use tower_bulwark_outlier::{
    Builder, FailurePercentage, Outlier, OutlierDetector, OutlierEvent, Reason, SuccessRate,
};

type Endpoint = ReadinessProbe<
    Outlier<
        Controlled<u32>,
        tower_bulwark_core::ErrorsAreFailures,
        tower_bulwark_outlier::NoGateway,
    >,
>;

/// A builder whose events land in the returned list.
fn recording(builder: Builder) -> (Builder, Arc<Mutex<Vec<OutlierEvent>>>) {
    let events = Arc::new(Mutex::new(Vec::new()));
    let sink = events.clone();
    let builder =
        builder.on_event(move |event: &OutlierEvent| sink.lock().unwrap().push(event.clone()));
    (builder, events)
}

/// `n` endpoints named `e0`, `e1`, ..., each with its controller.
fn endpoints(detector: &OutlierDetector, n: usize) -> Vec<(Endpoint, Controller)> {
    (0..n)
        .map(|i| {
            let (service, control) = controlled::<u32>();
            let layer = detector.layer(format!("e{i}"));
            (ReadinessProbe::new(layer.layer(service)), control)
        })
        .collect()
}

async fn call(endpoint: &mut Endpoint) -> bool {
    endpoint.ready().await.unwrap().call(1).await.is_ok()
}

fn is_ready(endpoint: &mut Endpoint) -> bool {
    let waker = std::task::Waker::noop();
    let mut cx = std::task::Context::from_waker(waker);
    endpoint.poll_ready(&mut cx).is_ready()
}

fn ejections(events: &Mutex<Vec<OutlierEvent>>) -> Vec<(String, Reason, u32, Duration)> {
    events
        .lock()
        .unwrap()
        .iter()
        .filter_map(|event| match event {
            OutlierEvent::Ejected {
                endpoint,
                reason,
                times,
                duration,
                ..
            } => Some((endpoint.to_string(), *reason, *times, *duration)),
            _ => None,
        })
        .collect()
}

fn count(events: &Mutex<Vec<OutlierEvent>>, pred: impl Fn(&OutlierEvent) -> bool) -> usize {
    events
        .lock()
        .unwrap()
        .iter()
        .filter(|event| pred(event))
        .count()
}

fn consecutive_only() -> Builder {
    OutlierDetector::builder()
        .no_success_rate()
        .max_ejection_percent(50)
}

#[tokio::test(start_paused = true)]
async fn five_failures_in_a_row_eject_and_the_endpoint_returns_after_the_base_time() {
    let (builder, events) = recording(consecutive_only().name("pool"));
    let detector = builder.build().unwrap();
    let mut list = endpoints(&detector, 2);
    let (endpoint, control) = &mut list[0];
    control.fail();
    for _ in 0..4 {
        assert!(!call(endpoint).await);
    }
    assert!(is_ready(endpoint), "four failures do not eject");
    assert_eq!(
        detector
            .snapshot()
            .endpoint("e0")
            .unwrap()
            .consecutive_failures,
        4
    );
    assert!(!call(endpoint).await);
    let ejected_at = Instant::now();
    assert_eq!(detector.ejected(), 1);
    assert!(!is_ready(endpoint));
    assert!(endpoint.get_ref().is_ejected());
    assert_eq!(
        ejections(&events),
        [(
            "e0".into(),
            Reason::ConsecutiveFailures { count: 5 },
            1,
            Duration::from_secs(30)
        )]
    );
    let snapshot = detector.snapshot();
    assert_eq!(snapshot.name, "pool");
    let e0 = snapshot.endpoint("e0").unwrap();
    assert_eq!(e0.ejected_until, Some(ejected_at + Duration::from_secs(30)));
    assert_eq!(
        (e0.times_ejected, e0.consecutive_failures, e0.in_flight),
        (1, 0, 0)
    );

    // The wait ends exactly when the ejection does.
    endpoint.ready().await.unwrap();
    assert_eq!(ejected_at.elapsed(), Duration::from_secs(30));
    assert_eq!(detector.ejected(), 0);
    assert_eq!(
        count(&events, |e| matches!(e, OutlierEvent::Returned { .. })),
        1
    );
    assert_eq!(
        control.calls(),
        5,
        "nothing reached the endpoint while it was out"
    );
    control.succeed();
    assert!(call(endpoint).await);
}

#[tokio::test(start_paused = true)]
async fn each_ejection_lasts_longer_up_to_the_maximum() {
    let (builder, events) = recording(
        consecutive_only()
            .consecutive_failures(2)
            .max_ejection_time(Duration::from_secs(75)),
    );
    let detector = builder.build().unwrap();
    let mut list = endpoints(&detector, 2);
    let (endpoint, control) = &mut list[0];
    control.fail();
    for expected in [30, 60, 75, 75] {
        assert!(!call(endpoint).await);
        assert!(!call(endpoint).await);
        let start = Instant::now();
        endpoint.ready().await.unwrap();
        assert_eq!(start.elapsed(), Duration::from_secs(expected));
    }
    let times: Vec<u32> = ejections(&events).iter().map(|e| e.2).collect();
    assert_eq!(times, [1, 2, 3, 4]);
}

#[tokio::test(start_paused = true)]
async fn the_count_decays_with_each_interval_in_rotation() {
    let detector = consecutive_only()
        .consecutive_failures(1)
        .interval(Duration::from_secs(10))
        .build()
        .unwrap();
    let mut list = endpoints(&detector, 2);
    let (endpoint, control) = &mut list[0];
    control.fail();
    for _ in 0..2 {
        assert!(!call(endpoint).await);
        endpoint.ready().await.unwrap();
    }
    assert_eq!(detector.snapshot().endpoint("e0").unwrap().times_ejected, 2);
    // Back from its 60 s ejection: an evaluation within an interval of the return does not
    // decay, each one after does.
    detector.evaluate();
    assert_eq!(detector.snapshot().endpoint("e0").unwrap().times_ejected, 2);
    tokio::time::advance(Duration::from_secs(10)).await;
    detector.evaluate();
    assert_eq!(detector.snapshot().endpoint("e0").unwrap().times_ejected, 1);
    tokio::time::advance(Duration::from_secs(10)).await;
    detector.evaluate();
    detector.evaluate();
    assert_eq!(detector.snapshot().endpoint("e0").unwrap().times_ejected, 0);
    // So the next ejection is the base time again.
    assert!(!call(endpoint).await);
    let start = Instant::now();
    endpoint.ready().await.unwrap();
    assert_eq!(start.elapsed(), Duration::from_secs(30));
}

#[tokio::test(start_paused = true)]
async fn the_cap_keeps_all_but_its_share_in_rotation() {
    let (builder, events) = recording(
        OutlierDetector::builder()
            .no_success_rate()
            .consecutive_failures(3),
    );
    let detector = builder.build().unwrap();
    let mut list = endpoints(&detector, 5);
    assert_eq!(detector.snapshot().max_ejected, 1, "10% of 5, at least one");
    for (endpoint, control) in &mut list[..3] {
        control.fail();
        for _ in 0..3 {
            assert!(!call(endpoint).await);
        }
    }
    assert_eq!(detector.ejected(), 1);
    assert_eq!(ejections(&events).len(), 1);
    assert_eq!(ejections(&events)[0].0, "e0");
    let capped: Vec<(String, usize, usize)> = events
        .lock()
        .unwrap()
        .iter()
        .filter_map(|e| match e {
            OutlierEvent::NotEjected {
                endpoint,
                ejected,
                max_ejected,
                ..
            } => Some((endpoint.to_string(), *ejected, *max_ejected)),
            _ => None,
        })
        .collect();
    assert_eq!(capped, [("e1".into(), 1, 1), ("e2".into(), 1, 1)]);
    assert!(is_ready(&mut list[1].0) && is_ready(&mut list[2].0));
    assert!(!is_ready(&mut list[0].0));
    // When e0 comes back, the next one to fail three times in a row takes its place.
    list[0].0.ready().await.unwrap();
    for _ in 0..3 {
        assert!(!call(&mut list[1].0).await);
    }
    assert_eq!(detector.ejected(), 1);
    assert!(!is_ready(&mut list[1].0));
    // 0% ejects nothing and reports.
    let none = OutlierDetector::builder()
        .max_ejection_percent(0)
        .consecutive_failures(1)
        .build()
        .unwrap();
    let mut list = endpoints(&none, 3);
    list[0].1.fail();
    assert!(!call(&mut list[0].0).await);
    assert_eq!(none.ejected(), 0);
}

/// Rates 1, 1, 1, 1 and 0.5 over 10 calls each: mean 0.9, population stdev 0.2, threshold
/// 0.9 - 1.9 x 0.2 = 0.52, so the fifth endpoint goes (see the unit test of the formula).
#[tokio::test(start_paused = true)]
async fn the_success_rate_rule_ejects_the_endpoint_below_mean_less_factor_stdev() {
    let (builder, events) = recording(
        OutlierDetector::builder()
            .consecutive_failures(0)
            .max_ejection_percent(20)
            .success_rate(SuccessRate::new().request_volume(10).minimum_hosts(5)),
    );
    let detector = builder.build().unwrap();
    let mut list = endpoints(&detector, 5);
    list[4].1.script(
        [Behavior::Fail, Behavior::Succeed]
            .into_iter()
            .cycle()
            .take(10),
    );
    for (endpoint, _) in &mut list {
        for _ in 0..10 {
            call(endpoint).await;
        }
    }
    assert_eq!(detector.ejected(), 0, "not before the interval is due");
    tokio::time::advance(Duration::from_secs(10)).await;
    // The first call to finish after the interval is due runs the rules.
    assert!(call(&mut list[0].0).await);
    assert_eq!(detector.ejected(), 1);
    let ejected = ejections(&events);
    assert_eq!(ejected.len(), 1);
    let (key, reason, times, duration) = &ejected[0];
    assert_eq!(
        (key.as_str(), *times, *duration),
        ("e4", 1, Duration::from_secs(30))
    );
    let Reason::SuccessRate { rate, threshold } = *reason else {
        panic!("{reason:?}")
    };
    assert_eq!(rate, 0.5);
    assert!((threshold - 0.52).abs() < 1e-9, "{threshold}");
    let snapshot = detector.snapshot();
    assert_eq!(snapshot.endpoint("e4").unwrap().success_rate, Some(0.5));
    assert_eq!(snapshot.endpoint("e0").unwrap().success_rate, Some(1.0));
}

#[tokio::test(start_paused = true)]
async fn the_success_rate_rule_needs_enough_hosts_with_enough_calls() {
    let detector = OutlierDetector::builder()
        .consecutive_failures(0)
        .max_ejection_percent(100)
        .success_rate(SuccessRate::new().request_volume(10).minimum_hosts(5))
        .build()
        .unwrap();
    let mut list = endpoints(&detector, 5);
    list[4].1.fail();
    // One endpoint has 9 calls only: four hosts are compared, fewer than five.
    for (i, (endpoint, _)) in list.iter_mut().enumerate() {
        for _ in 0..(if i == 0 { 9 } else { 10 }) {
            call(endpoint).await;
        }
    }
    detector.evaluate();
    assert_eq!(detector.ejected(), 0);
    // All equal: the stdev is 0 and nobody is below the mean.
    list[4].1.succeed();
    for (endpoint, _) in &mut list {
        for _ in 0..10 {
            call(endpoint).await;
        }
    }
    detector.evaluate();
    assert_eq!(detector.ejected(), 0);
}

#[tokio::test(start_paused = true)]
async fn the_failure_percentage_rule_ejects_at_its_threshold() {
    let (builder, events) = recording(
        OutlierDetector::builder()
            .consecutive_failures(0)
            .no_success_rate()
            .max_ejection_percent(40)
            .failure_percentage(FailurePercentage::new().request_volume(20).threshold(0.85)),
    );
    let detector = builder.build().unwrap();
    let mut list = endpoints(&detector, 5);
    // 17 of 20 fail (85%: ejected), 16 of 20 (80%: kept).
    list[3].1.script((0..20).map(|i| {
        if i < 17 {
            Behavior::Fail
        } else {
            Behavior::Succeed
        }
    }));
    list[4].1.script((0..20).map(|i| {
        if i < 16 {
            Behavior::Fail
        } else {
            Behavior::Succeed
        }
    }));
    for (endpoint, _) in &mut list {
        for _ in 0..20 {
            call(endpoint).await;
        }
    }
    detector.evaluate();
    let ejected = ejections(&events);
    assert_eq!(ejected.len(), 1);
    assert_eq!(ejected[0].0, "e3");
    assert_eq!(
        ejected[0].1,
        Reason::FailurePercentage {
            failures: 0.85,
            threshold: 0.85
        }
    );
}

#[tokio::test(start_paused = true)]
async fn refusals_by_local_layers_are_not_the_endpoints_failures() {
    let detector = OutlierDetector::builder()
        .consecutive_failures(1)
        .max_ejection_percent(100)
        .build()
        .unwrap();
    let mut list = endpoints(&detector, 2);
    let (endpoint, control) = &mut list[0];
    for kind in [
        RejectionKind::BulkheadFull,
        RejectionKind::CircuitOpen,
        RejectionKind::Overloaded,
        RejectionKind::Throttled,
        RejectionKind::DeadlineExceeded,
    ] {
        control.reject(Rejection::new(kind, "local"));
        for _ in 0..10 {
            assert!(!call(endpoint).await);
        }
    }
    detector.evaluate();
    assert_eq!(detector.ejected(), 0);
    let e0 = detector.snapshot().endpoint("e0").unwrap().clone();
    assert_eq!((e0.consecutive_failures, e0.success_rate), (0, None));
    // A layer's own attempt timeout is the endpoint being slow: a failure.
    control.reject(Rejection::new(RejectionKind::TimedOut, "attempt"));
    assert!(!call(endpoint).await);
    assert_eq!(detector.ejected(), 1);
}

#[tokio::test(start_paused = true)]
async fn dropped_calls_leave_no_count_and_record_nothing() {
    let detector = consecutive_only().consecutive_failures(3).build().unwrap();
    let mut list = endpoints(&detector, 2);
    let (endpoint, control) = &mut list[0];
    control.fail();
    control.delay(Duration::from_millis(10));
    let mut rng = SeededRng::new(17);
    let mut finished = 0;
    for _ in 0..200 {
        endpoint.ready().await.unwrap();
        let future = endpoint.call(1);
        match rng.next_u64() % 3 {
            // Dropped before its first poll.
            0 => drop(future),
            // Dropped while the inner call runs.
            1 => {
                let wait = Duration::from_millis(rng.next_u64() % 10);
                let _ = tokio::time::timeout(wait, future).await;
                if wait == Duration::from_millis(10) {
                    finished += 1;
                }
            }
            // Finished (a failure: the third in a row would eject, so answer then succeed).
            _ => {
                control.script([Behavior::Succeed]);
                drop(future);
                assert!(call(endpoint).await);
                finished += 1;
            }
        }
        assert_eq!(detector.snapshot().endpoint("e0").unwrap().in_flight, 0);
    }
    assert!(finished > 0);
    assert_eq!(detector.ejected(), 0, "dropped calls are not failures");
    assert_eq!(
        detector
            .snapshot()
            .endpoint("e0")
            .unwrap()
            .consecutive_failures,
        0
    );
    assert_eq!(control.in_flight(), 0);
}

#[tokio::test(start_paused = true)]
async fn an_ejected_endpoint_wakes_its_waiting_task_and_the_sweep_returns_an_idle_one() {
    let (builder, events) = recording(
        consecutive_only()
            .consecutive_failures(1)
            .interval(Duration::from_secs(5)),
    );
    let detector = builder.build().unwrap();
    let mut list = endpoints(&detector, 3);
    list[0].1.fail();
    assert!(!call(&mut list[0].0).await);
    // Nobody polls e0: the interval sweep returns it once its time is up.
    tokio::time::advance(Duration::from_secs(31)).await;
    assert_eq!(detector.ejected(), 1, "no call, no sweep");
    assert!(call(&mut list[1].0).await);
    assert_eq!(detector.ejected(), 0);
    assert_eq!(
        count(&events, |e| matches!(e, OutlierEvent::Returned { .. })),
        1
    );
    // A task parked on an ejected endpoint is woken when the ejection ends.
    list[2].1.fail();
    assert!(!call(&mut list[2].0).await);
    let (mut endpoint, _control) = list.pop().unwrap();
    let waiter = tokio::spawn(async move {
        endpoint.ready().await.unwrap();
        Instant::now()
    });
    let start = Instant::now();
    let woke = waiter.await.unwrap();
    assert_eq!(woke - start, Duration::from_secs(30));
    assert_eq!(
        count(&events, |e| matches!(e, OutlierEvent::Returned { .. })),
        2
    );
}

#[tokio::test(start_paused = true)]
async fn a_dropped_endpoint_leaves_the_detector_and_frees_its_place() {
    let detector = consecutive_only().consecutive_failures(1).build().unwrap();
    let mut list = endpoints(&detector, 3);
    list[0].1.fail();
    assert!(!call(&mut list[0].0).await);
    assert_eq!(detector.ejected(), 1);
    // Asking for a registered key again shares its state.
    let again = detector.layer("e0").layer(controlled::<u32>().0);
    assert!(again.is_ejected());
    assert_eq!(detector.snapshot().endpoints.len(), 3);
    drop(again);
    let (removed, _) = list.remove(0);
    drop(removed);
    let snapshot = detector.snapshot();
    assert_eq!(snapshot.endpoints.len(), 2);
    assert_eq!(snapshot.ejected, 0);
    // A new endpoint under the old key starts afresh.
    let fresh = detector.layer("e0").layer(controlled::<u32>().0);
    assert!(!fresh.is_ejected());
    assert_eq!(detector.snapshot().endpoint("e0").unwrap().times_ejected, 0);
}

#[tokio::test(start_paused = true)]
async fn load_is_the_inner_services() {
    use tower::load::{CompleteOnResponse, Load, PendingRequests};
    let detector = OutlierDetector::builder().build().unwrap();
    let (service, control) = controlled::<u32>();
    control.hang();
    let mut endpoint = detector
        .layer("e0")
        .layer(PendingRequests::new(service, CompleteOnResponse::default()));
    endpoint.ready().await.unwrap();
    let pending = endpoint.call(1);
    assert_eq!(format!("{:?}", endpoint.load()), "Count(1)");
    drop(pending);
    assert_eq!(format!("{:?}", endpoint.load()), "Count(0)");
}

#[cfg(feature = "http")]
#[tokio::test(start_paused = true)]
async fn gateway_failures_in_a_row_eject_when_the_rule_is_on() {
    use tower_bulwark_core::BoxError;
    let (builder, events) = recording(
        OutlierDetector::builder()
            .consecutive_failures(0)
            .consecutive_gateway_failures(3)
            .max_ejection_percent(50),
    );
    let detector = builder.build().unwrap();
    let statuses = Arc::new(Mutex::new(vec![503u16, 502, 500, 504, 503]));
    let source = statuses.clone();
    let inner = tower::service_fn(move |_: ()| {
        let status = source.lock().unwrap().remove(0);
        async move { Ok::<_, BoxError>(http::Response::builder().status(status).body(()).unwrap()) }
    });
    let mut endpoint = detector.layer("api").http().layer(inner);
    let _peer = detector.layer("peer");
    // 503, 502, then a 500 (a failure, but not a gateway failure: the run restarts).
    for _ in 0..3 {
        endpoint.ready().await.unwrap().call(()).await.unwrap();
    }
    assert_eq!(detector.ejected(), 0);
    for _ in 0..2 {
        endpoint.ready().await.unwrap().call(()).await.unwrap();
    }
    assert_eq!(detector.ejected(), 0, "two gateway failures after the 500");
    statuses.lock().unwrap().push(503);
    endpoint.ready().await.unwrap().call(()).await.unwrap();
    assert_eq!(detector.ejected(), 1);
    assert_eq!(
        ejections(&events)[0].1,
        Reason::ConsecutiveGatewayFailures { count: 3 }
    );
}

#[test]
fn every_setting_is_checked_and_the_error_names_it() {
    let field = |builder: Builder| builder.build().unwrap_err().field();
    let b = OutlierDetector::builder;
    assert_eq!(field(b().interval(Duration::ZERO)), "interval");
    assert_eq!(
        field(b().base_ejection_time(Duration::ZERO)),
        "base_ejection_time"
    );
    assert_eq!(
        field(b().max_ejection_time(Duration::ZERO)),
        "max_ejection_time"
    );
    assert_eq!(
        field(
            b().base_ejection_time(Duration::from_secs(60))
                .max_ejection_time(Duration::from_secs(59))
        ),
        "max_ejection_time"
    );
    assert_eq!(field(b().interval(Duration::MAX)), "interval");
    assert_eq!(
        field(b().max_ejection_time(Duration::MAX)),
        "max_ejection_time"
    );
    assert_eq!(field(b().max_ejection_percent(101)), "max_ejection_percent");
    assert_eq!(
        field(b().success_rate(SuccessRate::new().minimum_hosts(0))),
        "success_rate_minimum_hosts"
    );
    assert_eq!(
        field(b().success_rate(SuccessRate::new().request_volume(0))),
        "success_rate_request_volume"
    );
    for bad in [f64::NAN, f64::INFINITY, -0.5] {
        assert_eq!(
            field(b().success_rate(SuccessRate::new().stdev_factor(bad))),
            "success_rate_stdev_factor"
        );
        assert_eq!(
            field(b().failure_percentage(FailurePercentage::new().threshold(bad))),
            "failure_percentage_threshold"
        );
    }
    assert_eq!(
        field(b().failure_percentage(FailurePercentage::new().threshold(1.5))),
        "failure_percentage_threshold"
    );
    assert_eq!(
        field(b().failure_percentage(FailurePercentage::new().minimum_hosts(0))),
        "failure_percentage_minimum_hosts"
    );
    assert_eq!(
        field(b().failure_percentage(FailurePercentage::new().request_volume(0))),
        "failure_percentage_request_volume"
    );
    let err = b().max_ejection_percent(150).build().unwrap_err();
    assert_eq!(
        err.to_string(),
        "invalid `max_ejection_percent`: must be within 0..=100, got 150"
    );
    // Edges that are fine.
    b().max_ejection_percent(100)
        .max_ejection_time(Duration::from_secs(30))
        .success_rate(SuccessRate::new().stdev_factor(0.0))
        .failure_percentage(FailurePercentage::new().threshold(0.0))
        .consecutive_failures(u32::MAX)
        .build()
        .unwrap();
}

#[tokio::test(start_paused = true)]
async fn huge_counts_do_not_overflow() {
    let detector = consecutive_only()
        .consecutive_failures(u32::MAX)
        .build()
        .unwrap();
    let mut list = endpoints(&detector, 2);
    list[0].1.fail();
    for _ in 0..100 {
        call(&mut list[0].0).await;
    }
    assert_eq!(
        detector
            .snapshot()
            .endpoint("e0")
            .unwrap()
            .consecutive_failures,
        100
    );
    assert_eq!(detector.ejected(), 0);
}
