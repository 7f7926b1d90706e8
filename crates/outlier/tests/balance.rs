//! The detector under `tower::balance::p2c`: endpoints removed (the cap rechecked, the
//! ejection of a removed endpoint reported as ended), a hung endpoint behind its own
//! attempt timeout, the decay of the times ejected while idle. Paused time throughout.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tower::balance::p2c::Balance;
use tower::discover::ServiceList;
use tower::load::{CompleteOnResponse, PendingRequests};
use tower::{Layer, Service, ServiceExt};
use tower_bulwark_core::testing::{controlled, Controlled, Controller};
use tower_bulwark_deadline::TimeoutLayer;
use tower_bulwark_outlier::{Builder, Outlier, OutlierDetector, OutlierEvent};

type Endpoint = Outlier<
    PendingRequests<Controlled<u32>, CompleteOnResponse>,
    tower_bulwark_core::ErrorsAreFailures,
    tower_bulwark_outlier::NoGateway,
>;

fn recording(builder: Builder) -> (OutlierDetector, Arc<Mutex<Vec<OutlierEvent>>>) {
    let events = Arc::new(Mutex::new(Vec::new()));
    let sink = events.clone();
    let detector = builder
        .on_event(move |event: &OutlierEvent| sink.lock().unwrap().push(event.clone()))
        .build()
        .unwrap();
    (detector, events)
}

fn endpoints(detector: &OutlierDetector, n: usize) -> (Vec<Endpoint>, Vec<Controller>) {
    (0..n)
        .map(|i| {
            let (service, control) = controlled::<u32>();
            let inner = PendingRequests::new(service, CompleteOnResponse::default());
            (detector.layer(format!("e{i}")).layer(inner), control)
        })
        .unzip()
}

/// The docs: "at most `max_ejection_percent` of the registered endpoints are ejected at
/// once ... so the balancer always keeps somewhere to send". Discovery takes the two
/// healthy endpoints away (here their connections fail, so p2c drops them; a
/// `Change::Remove` does the same): the cap of the one left is 0, so its ejection ends at
/// once (reported as a return) and the balancer's task is woken to send to it, with no
/// time passing.
#[tokio::test(start_paused = true)]
async fn after_removals_the_ejections_beyond_the_new_cap_end_and_the_balancer_sends() {
    let (detector, events) = recording(
        OutlierDetector::builder()
            .no_success_rate()
            .consecutive_failures(1)
            .max_ejection_percent(34),
    );
    let (services, controls) = endpoints(&detector, 3);
    let mut balance = Balance::new(ServiceList::new(services));
    controls[0].fail();
    let mut sent = 0;
    while detector.ejected() == 0 {
        assert!(sent < 1_000);
        let _ = balance.ready().await.unwrap().call(1).await;
        sent += 1;
    }
    controls[0].succeed();
    // e1 and e2 leave the balancer.
    controls[1].fail_readiness();
    controls[2].fail_readiness();
    let started = tokio::time::Instant::now();
    let ready = tokio::time::timeout(Duration::from_secs(1), balance.ready()).await;
    let snapshot = detector.snapshot();
    assert_eq!(snapshot.endpoints.len(), 1, "e1 and e2 were dropped");
    assert!(
        ready.is_ok(),
        "the only endpoint left is ejected ({} ejected, cap {}), so p2c has nothing to send \
         to until {:?}",
        snapshot.ejected,
        snapshot.max_ejected,
        snapshot.endpoints[0].ejected_until,
    );
    assert_eq!(started.elapsed(), Duration::ZERO, "woken, not timed");
    assert_eq!((snapshot.ejected, snapshot.max_ejected), (0, 0));
    assert_eq!(snapshot.endpoints[0].ejected_until, None);
    assert_eq!(
        snapshot.endpoints[0].times_ejected, 1,
        "the ejection still counts"
    );
    assert!(matches!(
        events.lock().unwrap().last(),
        Some(OutlierEvent::Returned { endpoint, .. }) if endpoint == "e0"
    ));
    assert_eq!(balance.call(1).await.unwrap(), 1);
}

/// Six endpoints under a cap of 50% (3); e0, e1, e2 ejected 10 s apart. A healthy one is
/// removed: five left, cap 2. Only the ejection beyond the new cap that ends soonest
/// (e0's) ends, reported as a return; a second removal (four left, cap still 2) ends none.
#[tokio::test(start_paused = true)]
async fn after_a_removal_only_the_soonest_ending_ejections_beyond_the_cap_end() {
    let (detector, events) = recording(
        OutlierDetector::builder()
            .no_success_rate()
            .consecutive_failures(1)
            .max_ejection_percent(50),
    );
    let (mut services, controls) = endpoints(&detector, 6);
    for (i, control) in controls.iter().enumerate().take(3) {
        control.fail();
        assert!(services[i].ready().await.unwrap().call(1).await.is_err());
        tokio::time::advance(Duration::from_secs(10)).await;
    }
    assert_eq!(detector.ejected(), 3);
    events.lock().unwrap().clear();
    drop(services.pop());
    drop(services.pop());
    let snapshot = detector.snapshot();
    assert_eq!((snapshot.ejected, snapshot.max_ejected), (2, 2));
    let ejected: Vec<bool> = snapshot
        .endpoints
        .iter()
        .map(|e| e.ejected_until.is_some())
        .collect();
    assert_eq!(ejected, [false, true, true, false]);
    let returned: Vec<String> = events
        .lock()
        .unwrap()
        .iter()
        .filter_map(|event| match event {
            OutlierEvent::Returned { endpoint, .. } => Some(endpoint.to_string()),
            _ => None,
        })
        .collect();
    assert_eq!(returned, ["e0"]);
    // e0's service is ready at once.
    let started = tokio::time::Instant::now();
    services[0].ready().await.unwrap();
    assert_eq!(started.elapsed(), Duration::ZERO);
}

/// An endpoint that never answers (a black hole). The attempt timeout sits under the
/// detector's layer, one per endpoint, as the crate docs say it must: each timed-out call
/// finishes inside the layer as a failure (core's `TimedOut` rejection, which is the
/// endpoint being slow, not a refusal), so five in a row eject the hung endpoint, and
/// after that no call waits for it. (A timeout above the balancer would drop the call
/// inside the layer instead, and a dropped call records nothing: the docs say so.)
#[tokio::test(start_paused = true)]
async fn a_hung_endpoint_behind_its_own_attempt_timeout_is_ejected() {
    let (detector, events) = recording(
        OutlierDetector::builder()
            .max_ejection_percent(20)
            .interval(Duration::from_secs(10)),
    );
    let timeout = TimeoutLayer::new(Duration::from_secs(1)).unwrap();
    let (services, controls): (Vec<_>, Vec<_>) = (0..5)
        .map(|i| {
            let (service, control) = controlled::<u32>();
            let inner = PendingRequests::new(timeout.layer(service), CompleteOnResponse::default());
            (detector.layer(format!("e{i}")).layer(inner), control)
        })
        .unzip();
    controls[4].hang();
    let mut balance = Balance::new(ServiceList::new(services));
    let mut timeouts = 0;
    for n in 0..2_000 {
        if balance.ready().await.unwrap().call(n).await.is_err() {
            timeouts += 1;
        }
    }
    let e4 = detector.snapshot().endpoint("e4").unwrap().clone();
    assert_eq!(detector.ejected(), 1, "{e4:?}");
    assert!(e4.ejected_until.is_some(), "{e4:?}");
    assert_eq!(
        timeouts, 5,
        "five timeouts in a row, then e4 is out of rotation"
    );
    assert!(events.lock().unwrap().iter().any(|event| matches!(
        event,
        OutlierEvent::Ejected { endpoint, .. } if endpoint == "e4"
    )));
}

/// The docs: "The count decays by one for each full interval the endpoint spends in
/// rotation after its return". No call finishes for 60 intervals, so no evaluation runs;
/// the first evaluation after (run by the first call, before that call is judged) decays
/// the count by every whole interval since the return: to zero, so the next ejection
/// lasts 30 s, not 90 s.
#[tokio::test(start_paused = true)]
async fn the_count_decays_per_interval_in_rotation_even_without_traffic() {
    let (detector, events) = recording(
        OutlierDetector::builder()
            .no_success_rate()
            .consecutive_failures(1)
            .max_ejection_percent(50)
            .interval(Duration::from_secs(10)),
    );
    let (mut services, controls) = endpoints(&detector, 2);
    controls[0].fail();
    for _ in 0..3 {
        let e0 = &mut services[0];
        assert!(e0.ready().await.unwrap().call(1).await.is_err());
        e0.ready().await.unwrap(); // back after 30, 60, 90 s
    }
    assert_eq!(detector.snapshot().endpoint("e0").unwrap().times_ejected, 3);
    // Ten minutes in rotation without a call: 60 intervals.
    tokio::time::advance(Duration::from_secs(600)).await;
    // Traffic resumes: a success on e1, then e0 fails once.
    assert!(services[1].ready().await.unwrap().call(1).await.is_ok());
    assert!(services[0].ready().await.unwrap().call(1).await.is_err());
    let last = events
        .lock()
        .unwrap()
        .iter()
        .rev()
        .find_map(|event| match event {
            OutlierEvent::Ejected {
                times, duration, ..
            } => Some((*times, *duration)),
            _ => None,
        })
        .unwrap();
    assert_eq!(
        last,
        (1, Duration::from_secs(30)),
        "60 intervals in rotation should have decayed the count to 0"
    );
}

/// An endpoint removed while ejected (discovery's `Change::Remove` drops its service)
/// frees its place under the cap, and its ejection is reported as ended (`Returned`), so
/// the `bulwark_outlier_ejected` gauge goes back to 0 and ejections minus returns is zero.
#[tokio::test(start_paused = true)]
async fn an_endpoint_removed_while_ejected_is_reported_as_returned() {
    let (detector, events) = recording(
        OutlierDetector::builder()
            .no_success_rate()
            .consecutive_failures(1)
            .max_ejection_percent(50),
    );
    let (mut services, controls) = endpoints(&detector, 3);
    controls[0].fail();
    assert!(services[0].ready().await.unwrap().call(1).await.is_err());
    assert_eq!(detector.ejected(), 1);
    // Discovery removes e0 while it is out.
    drop(services.remove(0));
    assert_eq!(detector.snapshot().endpoints.len(), 2, "e0 left");
    assert_eq!(detector.ejected(), 0, "its place under the cap is free");
    tokio::time::advance(Duration::from_secs(60)).await;
    detector.evaluate();
    let events = events.lock().unwrap();
    let ejected = events
        .iter()
        .filter(|e| matches!(e, OutlierEvent::Ejected { .. }))
        .count();
    let returned = events
        .iter()
        .filter(|e| matches!(e, OutlierEvent::Returned { .. }))
        .count();
    assert_eq!(
        (ejected, returned),
        (1, 1),
        "an ejection that ended with the endpoint's removal is never reported as ended \
         (the `bulwark_outlier_ejected` gauge of e0 stays 1)"
    );
}

/// Passes (a check, not a finding): every endpoint ejected (100%), the balancer's task is
/// woken when the first ejection ends, at exactly the base time; a single endpoint too.
#[tokio::test(start_paused = true)]
async fn with_every_endpoint_ejected_the_balancer_wakes_at_the_first_return() {
    for n in [1, 3] {
        let (detector, _events) = recording(
            OutlierDetector::builder()
                .no_success_rate()
                .consecutive_failures(1)
                .max_ejection_percent(100),
        );
        let (services, controls) = endpoints(&detector, n);
        for control in &controls {
            control.fail();
        }
        let mut balance = Balance::new(ServiceList::new(services));
        let mut first = None;
        while detector.ejected() < n {
            let _ = balance.ready().await.unwrap().call(1).await;
            first.get_or_insert(tokio::time::Instant::now());
        }
        for control in &controls {
            control.succeed();
        }
        balance.ready().await.unwrap();
        assert_eq!(first.unwrap().elapsed(), Duration::from_secs(30), "n = {n}");
        assert!(balance.call(7).await.is_ok());
    }
}
