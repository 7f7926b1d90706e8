//! The slow-endpoint rule through the layer, in paused time: latencies are exact, so the
//! median, the threshold and the verdicts are hand-computed. What counts (successes and
//! timeouts; not other failures, not refusals by local layers, not dropped calls), the cap, the
//! growing ejection time, the settings' checks.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tower::{Layer, Service, ServiceExt};
use tower_bulwark_core::testing::{controlled, Controlled, Controller, ReadinessProbe};
use tower_bulwark_core::{Rejection, RejectionKind};
use tower_bulwark_outlier::{
    Builder, Outlier, OutlierDetector, OutlierEvent, Reason, SlowEndpoint,
};

type Endpoint = ReadinessProbe<
    Outlier<
        Controlled<u32>,
        tower_bulwark_core::ErrorsAreFailures,
        tower_bulwark_outlier::NoGateway,
    >,
>;

const MS: Duration = Duration::from_millis(1);

fn recording(builder: Builder) -> (OutlierDetector, Arc<Mutex<Vec<OutlierEvent>>>) {
    let events = Arc::new(Mutex::new(Vec::new()));
    let sink = events.clone();
    let detector = builder
        .on_event(move |event: &OutlierEvent| sink.lock().unwrap().push(event.clone()))
        .build()
        .unwrap();
    (detector, events)
}

/// Only the slow-endpoint rule, judging endpoints with 10 answered calls or more; a cap of
/// one in five.
fn slow_only(rule: SlowEndpoint) -> Builder {
    OutlierDetector::builder()
        .consecutive_failures(0)
        .no_success_rate()
        .slow_endpoint(rule.request_volume(10))
        .max_ejection_percent(20)
}

/// One endpoint per delay, named `e0`, `e1`, ...
fn endpoints(detector: &OutlierDetector, delays: &[Duration]) -> Vec<(Endpoint, Controller)> {
    delays
        .iter()
        .enumerate()
        .map(|(i, delay)| {
            let (service, control) = controlled::<u32>();
            control.delay(*delay);
            let layer = detector.layer(format!("e{i}"));
            (ReadinessProbe::new(layer.layer(service)), control)
        })
        .collect()
}

async fn call(endpoint: &mut Endpoint) -> bool {
    endpoint.ready().await.unwrap().call(1).await.is_ok()
}

/// `calls` calls to each endpoint, one after the other.
async fn round(list: &mut [(Endpoint, Controller)], calls: usize) {
    for (endpoint, _) in list.iter_mut() {
        for _ in 0..calls {
            call(endpoint).await;
        }
    }
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

fn mean_latency(detector: &OutlierDetector, key: &str) -> Option<Duration> {
    detector.snapshot().endpoint(key).unwrap().mean_latency
}

/// Four endpoints at 2 ms and one at 200 ms (ten calls each): the median of the means is
/// 2 ms, the threshold `max(5 x 2 ms, 2 ms + 50 ms)` = 52 ms, and the fifth goes, for the
/// base ejection time, with the numbers in its reason.
#[tokio::test(start_paused = true)]
async fn an_endpoint_far_slower_than_the_median_is_ejected() {
    let (detector, events) = recording(slow_only(SlowEndpoint::new()));
    let mut list = endpoints(&detector, &[2 * MS, 2 * MS, 2 * MS, 2 * MS, 200 * MS]);
    round(&mut list, 10).await;
    assert_eq!(detector.ejected(), 0, "not before the interval is due");
    tokio::time::advance(Duration::from_secs(10)).await;
    // The first call to finish after the interval is due runs the rules (its own latency
    // goes to the next interval).
    assert!(call(&mut list[0].0).await);
    assert_eq!(
        ejections(&events),
        [(
            "e4".into(),
            Reason::SlowEndpoint {
                mean: 200 * MS,
                median: 2 * MS,
                threshold: 52 * MS
            },
            1,
            Duration::from_secs(30)
        )]
    );
    assert!(list[4].0.get_ref().is_ejected());
    assert_eq!(mean_latency(&detector, "e4"), Some(200 * MS));
    assert_eq!(mean_latency(&detector, "e0"), Some(2 * MS));
    let reason = ejections(&events)[0].1;
    assert_eq!(reason.label(), "slow_endpoint");
    assert_eq!(
        reason.to_string(),
        "mean latency 200ms above 52ms (median 2ms)"
    );
}

/// The same gap among three endpoints only (the default minimum): the median is still the
/// fast one's.
#[tokio::test(start_paused = true)]
async fn three_endpoints_are_enough_and_two_are_not() {
    let (detector, events) = recording(slow_only(SlowEndpoint::new()).max_ejection_percent(50));
    let mut list = endpoints(&detector, &[2 * MS, 200 * MS, 2 * MS]);
    round(&mut list, 10).await;
    detector.evaluate();
    assert_eq!(ejections(&events).len(), 1);
    assert_eq!(ejections(&events)[0].0, "e1");

    let (detector, events) = recording(slow_only(SlowEndpoint::new()).max_ejection_percent(50));
    let mut list = endpoints(&detector, &[2 * MS, 200 * MS]);
    round(&mut list, 10).await;
    detector.evaluate();
    assert!(
        ejections(&events).is_empty(),
        "a median of two is their mean"
    );
}

/// Endpoints with fewer calls than `request_volume` are not compared: with three of five
/// short of it, two are (too few to judge); with the slow one short of it, it is not
/// judged; with none short, it goes.
#[tokio::test(start_paused = true)]
async fn endpoints_below_the_request_volume_are_left_out() {
    let (detector, events) = recording(slow_only(SlowEndpoint::new()));
    let mut list = endpoints(&detector, &[2 * MS, 2 * MS, 2 * MS, 2 * MS, 200 * MS]);
    for (i, (endpoint, _)) in list.iter_mut().enumerate() {
        for _ in 0..(if i < 3 { 9 } else { 10 }) {
            call(endpoint).await;
        }
    }
    detector.evaluate();
    assert!(ejections(&events).is_empty(), "{:?}", ejections(&events));
    // The slow endpoint itself short of the volume: never judged, however slow.
    for (i, (endpoint, _)) in list.iter_mut().enumerate() {
        for _ in 0..(if i == 4 { 9 } else { 10 }) {
            call(endpoint).await;
        }
    }
    detector.evaluate();
    assert!(ejections(&events).is_empty());
    // Each interval starts afresh: 10 calls each now, and it goes.
    round(&mut list, 10).await;
    detector.evaluate();
    assert_eq!(ejections(&events).len(), 1);
}

/// 10 ms among peers at 1 ms is 10x, but 9 ms above the median: under the default 50 ms
/// excess it stays; with 5 ms required it goes (threshold `max(5 ms, 6 ms)`).
#[tokio::test(start_paused = true)]
async fn a_gap_below_the_minimum_excess_ejects_nobody() {
    let (detector, events) = recording(slow_only(SlowEndpoint::new()));
    let mut list = endpoints(&detector, &[MS, MS, MS, MS, 10 * MS]);
    round(&mut list, 10).await;
    detector.evaluate();
    assert!(ejections(&events).is_empty());
    assert_eq!(mean_latency(&detector, "e4"), Some(10 * MS));

    let (detector, events) = recording(slow_only(SlowEndpoint::new().minimum_excess(5 * MS)));
    let mut list = endpoints(&detector, &[MS, MS, MS, MS, 10 * MS]);
    round(&mut list, 10).await;
    detector.evaluate();
    let ejected = ejections(&events);
    assert_eq!(ejected.len(), 1);
    assert_eq!(
        ejected[0].1,
        Reason::SlowEndpoint {
            mean: 10 * MS,
            median: MS,
            threshold: 6 * MS
        }
    );
    // And the factor still applies: 10 ms is not more than 10 x 1 ms.
    let (detector, events) = recording(slow_only(
        SlowEndpoint::new().minimum_excess(5 * MS).factor(10.0),
    ));
    let mut list = endpoints(&detector, &[MS, MS, MS, MS, 10 * MS]);
    round(&mut list, 10).await;
    detector.evaluate();
    assert!(ejections(&events).is_empty());
}

/// Two slow endpoints of five under a cap of one: the slower goes, the other is reported
/// as kept by the cap. The one ejected comes back after 30 s; still slow, it is ejected
/// again for 60 s (the growing ejection time of the other rules).
#[tokio::test(start_paused = true)]
async fn the_cap_holds_the_slowest_goes_first_and_ejections_grow() {
    let (detector, events) = recording(slow_only(SlowEndpoint::new()));
    let mut list = endpoints(&detector, &[2 * MS, 2 * MS, 2 * MS, 200 * MS, 300 * MS]);
    round(&mut list, 10).await;
    detector.evaluate();
    assert_eq!(detector.ejected(), 1);
    let ejected = ejections(&events);
    assert_eq!((ejected[0].0.as_str(), ejected[0].2), ("e4", 1));
    let kept: Vec<(String, Reason)> = events
        .lock()
        .unwrap()
        .iter()
        .filter_map(|event| match event {
            OutlierEvent::NotEjected {
                endpoint,
                reason,
                ejected: 1,
                max_ejected: 1,
                ..
            } => Some((endpoint.to_string(), *reason)),
            _ => None,
        })
        .collect();
    assert_eq!(
        kept,
        [(
            "e3".into(),
            Reason::SlowEndpoint {
                mean: 200 * MS,
                median: 2 * MS,
                threshold: 52 * MS
            }
        )]
    );

    // e4's ejection ends; e3 is fixed meanwhile, e4 is not.
    list[3].1.delay(2 * MS);
    tokio::time::advance(Duration::from_secs(30)).await;
    let (e4, _) = &mut list[4];
    e4.ready().await.unwrap();
    assert_eq!(detector.ejected(), 0);
    round(&mut list, 10).await;
    detector.evaluate();
    let ejected = ejections(&events);
    assert_eq!(ejected.len(), 2);
    assert_eq!(
        (ejected[1].0.as_str(), ejected[1].2, ejected[1].3),
        ("e4", 2, Duration::from_secs(60))
    );
}

/// Only timeouts among failures are timed: an endpoint failing every call after 200 ms
/// with an error that is not a timeout (a slow 500, a reset) has no latency to compare
/// (the failure rules are for it). Refusals by local layers (the classifier ignores them)
/// and calls dropped before they finish do not count either.
#[tokio::test(start_paused = true)]
async fn other_failures_refusals_and_dropped_calls_are_not_timed() {
    let (detector, events) = recording(slow_only(SlowEndpoint::new()));
    let mut list = endpoints(&detector, &[2 * MS, 2 * MS, 2 * MS, 2 * MS, 200 * MS]);
    list[4].1.fail();
    round(&mut list, 10).await;
    detector.evaluate();
    assert!(ejections(&events).is_empty());
    assert_eq!(
        mean_latency(&detector, "e4"),
        None,
        "a failure, not a timeout"
    );
    assert_eq!(mean_latency(&detector, "e0"), Some(2 * MS));

    let (detector, events) = recording(slow_only(SlowEndpoint::new()));
    let mut list = endpoints(&detector, &[2 * MS, 2 * MS, 2 * MS, 2 * MS, 200 * MS]);
    // The slow endpoint's calls are all refused below the layer, after 200 ms each.
    list[4]
        .1
        .reject(Rejection::new(RejectionKind::BulkheadFull, "local"));
    round(&mut list, 10).await;
    // And a few more to it are dropped while they run.
    let (slow, _) = &mut list[4];
    for _ in 0..5 {
        slow.ready().await.unwrap();
        let future = slow.call(1);
        let _ = tokio::time::timeout(100 * MS, future).await;
    }
    detector.evaluate();
    assert!(ejections(&events).is_empty());
    assert_eq!(mean_latency(&detector, "e4"), None, "nothing was measured");
    assert_eq!(mean_latency(&detector, "e0"), Some(2 * MS));
    assert_eq!(detector.snapshot().endpoint("e4").unwrap().in_flight, 0);
}

/// The review's case: five endpoints, three refusing connections in 0.1 ms, two healthy at
/// 60 ms, consecutive-failure ejection off. Timed, the fast failures would make the median
/// 0.1 ms and the threshold 50.1 ms, and a healthy endpoint would be ejected as slow. Not
/// timed, only the two healthy endpoints have means: fewer than the three the rule needs,
/// nobody is compared; with two hosts enough, they are compared with each other, and
/// neither is slow.
#[tokio::test(start_paused = true)]
async fn fast_failures_do_not_make_healthy_endpoints_slow() {
    let fast = Duration::from_micros(100);
    for minimum_hosts in [3, 2] {
        let (detector, events) =
            recording(slow_only(SlowEndpoint::new().minimum_hosts(minimum_hosts)));
        let mut list = endpoints(&detector, &[fast, fast, fast, 60 * MS, 60 * MS]);
        for (_, control) in &list[..3] {
            control.fail();
        }
        round(&mut list, 10).await;
        detector.evaluate();
        assert_eq!(
            ejections(&events),
            [],
            "minimum_hosts {minimum_hosts}: a healthy endpoint judged slow"
        );
        assert_eq!(detector.ejected(), 0);
        for key in ["e0", "e1", "e2"] {
            assert_eq!(mean_latency(&detector, key), None, "{key}: fast failures");
        }
        assert_eq!(mean_latency(&detector, "e3"), Some(60 * MS));
        assert_eq!(mean_latency(&detector, "e4"), Some(60 * MS));
    }
}

/// An attempt timeout under the layer is the slowest answer: a call cut off by a 200 ms
/// timeout counts at its full 200 ms (a core `TimedOut` rejection), and the endpoint that
/// hangs is judged slow among peers at 2 ms. The caller's deadline passing below (a
/// `DeadlineExceeded` rejection) is not timed.
#[tokio::test(start_paused = true)]
async fn a_timed_out_call_under_the_layer_counts_at_its_full_length() {
    use tower_bulwark_deadline::TimeoutLayer;

    let (detector, events) = recording(slow_only(SlowEndpoint::new()));
    let timeout = TimeoutLayer::new(200 * MS).unwrap();
    let mut list: Vec<_> = (0..5)
        .map(|i| {
            let (service, control) = controlled::<u32>();
            control.delay(2 * MS);
            if i == 4 {
                control.hang();
            }
            let layer = detector.layer(format!("e{i}"));
            (
                ReadinessProbe::new(layer.layer(timeout.layer(service))),
                control,
            )
        })
        .collect();
    for (endpoint, _) in &mut list {
        for _ in 0..10 {
            let _ = endpoint.ready().await.unwrap().call(1).await;
        }
    }
    detector.evaluate();
    assert_eq!(mean_latency(&detector, "e4"), Some(200 * MS));
    assert_eq!(
        ejections(&events),
        [(
            "e4".into(),
            Reason::SlowEndpoint {
                mean: 200 * MS,
                median: 2 * MS,
                threshold: 52 * MS
            },
            1,
            Duration::from_secs(30)
        )]
    );

    // The caller's deadline, not the endpoint's slowness: ignored, not timed.
    let (detector, events) = recording(slow_only(SlowEndpoint::new()));
    let mut list = endpoints(&detector, &[2 * MS, 2 * MS, 2 * MS, 2 * MS, 200 * MS]);
    list[4]
        .1
        .reject(Rejection::new(RejectionKind::DeadlineExceeded, "deadline"));
    round(&mut list, 10).await;
    detector.evaluate();
    assert!(ejections(&events).is_empty());
    assert_eq!(mean_latency(&detector, "e4"), None);
}

/// With the HTTP readings (`http()`), a 504 Gateway Timeout answered by the endpoint is a
/// timeout and counts at its length; a 500 after as long is a failure that is not timed.
/// Over gRPC (`GrpcClassifier` with `GatewayTimeouts`), a `DEADLINE_EXCEEDED` counts, an
/// `UNAVAILABLE` does not.
#[cfg(feature = "http")]
#[tokio::test(start_paused = true)]
async fn a_gateway_timeout_answer_counts_and_a_slow_500_does_not() {
    use tower_bulwark_core::{BoxError, GrpcClassifier};
    use tower_bulwark_outlier::GatewayTimeouts;

    type Answer = Result<http::Response<()>, BoxError>;
    /// An endpoint answering `status` (and `grpc-status` if given) after `delay`.
    fn answering(
        delay: Duration,
        status: u16,
        grpc: Option<&'static str>,
    ) -> impl Service<u32, Response = http::Response<()>, Error = BoxError, Future: Send> + Clone
    {
        tower::service_fn(move |_: u32| async move {
            tokio::time::sleep(delay).await;
            let mut response = http::Response::builder().status(status);
            if let Some(code) = grpc {
                response = response.header("grpc-status", code);
            }
            Answer::Ok(response.body(()).unwrap())
        })
    }
    async fn ten_calls<S: Service<u32>>(service: &mut S) {
        for _ in 0..10 {
            let _ = service.ready().await.ok().unwrap().call(1).await;
        }
    }

    // HTTP: four endpoints at 2 ms, the fifth answers 504 (or 500) after 200 ms.
    for (status, slow) in [(504, true), (500, false)] {
        let (detector, events) = recording(slow_only(SlowEndpoint::new()));
        // Kept until judged: an endpoint leaves the detector with its last service.
        let mut alive = Vec::new();
        for i in 0..5 {
            let service = if i == 4 {
                answering(200 * MS, status, None)
            } else {
                answering(2 * MS, 200, None)
            };
            let mut endpoint = detector.layer(format!("e{i}")).http().layer(service);
            ten_calls(&mut endpoint).await;
            alive.push(endpoint);
        }
        detector.evaluate();
        assert_eq!(
            mean_latency(&detector, "e4"),
            slow.then_some(200 * MS),
            "{status}"
        );
        assert_eq!(ejections(&events).len(), usize::from(slow), "{status}");
    }

    // gRPC: trailers-only answers with `grpc-status` 4 (DEADLINE_EXCEEDED) or 14
    // (UNAVAILABLE) after 200 ms.
    for (code, slow) in [("4", true), ("14", false)] {
        let (detector, events) = recording(slow_only(SlowEndpoint::new()));
        let mut alive = Vec::new();
        for i in 0..5 {
            let service = if i == 4 {
                answering(200 * MS, 200, Some(code))
            } else {
                answering(2 * MS, 200, Some("0"))
            };
            let mut endpoint = detector
                .layer(format!("e{i}"))
                .classify(GrpcClassifier)
                .timeouts(GatewayTimeouts)
                .layer(service);
            ten_calls(&mut endpoint).await;
            alive.push(endpoint);
        }
        detector.evaluate();
        assert_eq!(
            mean_latency(&detector, "e4"),
            slow.then_some(200 * MS),
            "grpc-status {code}"
        );
        assert_eq!(
            ejections(&events).len(),
            usize::from(slow),
            "grpc-status {code}"
        );
    }
}

/// Off (the default), the rule measures nothing: no latency in the snapshot, no ejection
/// however slow.
#[tokio::test(start_paused = true)]
async fn off_by_default_nothing_is_measured() {
    let (detector, events) = recording(
        OutlierDetector::builder()
            .no_success_rate()
            .max_ejection_percent(20),
    );
    let mut list = endpoints(&detector, &[2 * MS, 2 * MS, 2 * MS, 2 * MS, 200 * MS]);
    round(&mut list, 100).await;
    detector.evaluate();
    assert!(ejections(&events).is_empty());
    assert!(detector
        .snapshot()
        .endpoints
        .iter()
        .all(|endpoint| endpoint.mean_latency.is_none()));
}

/// A call's latency runs from `call` to the end of its response future: time spent
/// waiting for readiness is not in it, time before the first poll is.
#[tokio::test(start_paused = true)]
async fn latency_runs_from_call_to_completion() {
    let detector = slow_only(SlowEndpoint::new()).build().unwrap();
    let mut list = endpoints(&detector, &[10 * MS]);
    let (endpoint, control) = &mut list[0];
    control.pause();
    let waiting = tokio::spawn({
        let control = control.clone();
        async move {
            tokio::time::sleep(Duration::from_secs(1)).await;
            control.ready();
        }
    });
    endpoint.ready().await.unwrap();
    waiting.await.unwrap();
    let future = endpoint.call(1);
    tokio::time::sleep(5 * MS).await;
    future.await.unwrap();
    detector.evaluate();
    assert_eq!(mean_latency(&detector, "e0"), Some(15 * MS));
}

#[test]
fn every_slow_endpoint_setting_is_checked_and_the_error_names_it() {
    let field = |rule: SlowEndpoint| {
        OutlierDetector::builder()
            .slow_endpoint(rule)
            .build()
            .unwrap_err()
            .field()
    };
    let rule = SlowEndpoint::new;
    assert_eq!(
        field(rule().minimum_hosts(0)),
        "slow_endpoint_minimum_hosts"
    );
    assert_eq!(
        field(rule().request_volume(0)),
        "slow_endpoint_request_volume"
    );
    for bad in [
        1.0,
        0.5,
        0.0,
        -2.0,
        f64::NAN,
        f64::INFINITY,
        f64::NEG_INFINITY,
    ] {
        assert_eq!(field(rule().factor(bad)), "slow_endpoint_factor", "{bad}");
    }
    let err = OutlierDetector::builder()
        .slow_endpoint(rule().factor(1.0))
        .build()
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "invalid `slow_endpoint_factor`: must be a finite number greater than 1, got 1"
    );
    // Edges that are fine; and the rule off ignores its settings.
    OutlierDetector::builder()
        .slow_endpoint(
            rule()
                .factor(1.000_001)
                .minimum_hosts(1)
                .request_volume(u64::MAX)
                .minimum_excess(Duration::ZERO),
        )
        .build()
        .unwrap();
    OutlierDetector::builder()
        .slow_endpoint(rule().factor(f64::NAN))
        .no_slow_endpoint()
        .build()
        .unwrap();
    assert_eq!(
        SlowEndpoint::default(),
        rule()
            .minimum_hosts(3)
            .request_volume(50)
            .factor(5.0)
            .minimum_excess(50 * MS)
    );
}

/// An endpoint ejected as slow, with calls still in flight at its ejection: one finishes
/// while it is out, one after it is back (each took longer than the ejection). Both
/// measured the endpoint before its ejection, which already acted on that: neither counts
/// in the interval after its return. Back and fast, it is judged fast, not ejected again.
#[tokio::test(start_paused = true)]
async fn calls_in_flight_through_an_ejection_do_not_count_after_the_return() {
    // Evaluated only on demand: no interval boundary in between clears the tally.
    let (detector, events) =
        recording(slow_only(SlowEndpoint::new()).interval(Duration::from_secs(3600)));
    let mut list = endpoints(&detector, &[2 * MS, 2 * MS, 2 * MS, 2 * MS, 200 * MS]);
    round(&mut list, 10).await;
    // Two more calls to the slow endpoint, still running when the interval ends: one
    // for 20 s (it ends while the endpoint is out), one for 40 s (after its return).
    let mut stale = Vec::new();
    for delay in [20, 40] {
        let (endpoint, control) = &mut list[4];
        control.delay(Duration::from_secs(delay));
        let future = endpoint.ready().await.unwrap().call(1);
        stale.push(tokio::spawn(future));
    }
    tokio::task::yield_now().await;
    detector.evaluate();
    assert_eq!(ejections(&events).len(), 1);
    assert!(list[4].0.get_ref().is_ejected());

    // The call of 20 s finishes while the endpoint is out (recorded there, before any
    // evaluation); it is fixed; its ejection (30 s) ends.
    tokio::time::advance(Duration::from_secs(25)).await;
    while detector.snapshot().endpoint("e4").unwrap().in_flight > 1 {
        tokio::task::yield_now().await;
    }
    assert!(list[4].0.get_ref().is_ejected());
    list[4].1.delay(2 * MS);
    tokio::time::advance(Duration::from_secs(5)).await;
    list[4].0.ready().await.unwrap();
    assert_eq!(detector.ejected(), 0);
    // The call of 40 s finishes after the return.
    tokio::time::advance(Duration::from_secs(10)).await;
    for call in stale {
        call.await.unwrap().unwrap();
    }
    round(&mut list, 10).await;
    detector.evaluate();
    assert_eq!(mean_latency(&detector, "e4"), Some(2 * MS));
    assert_eq!(
        ejections(&events).len(),
        1,
        "ejected again on stale calls: {:?}",
        ejections(&events)
    );
    assert_eq!(detector.snapshot().endpoint("e4").unwrap().in_flight, 0);
}
