//! The shedding layer: limits, tiers, pushback, shadow mode, cancel safety (paused time).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio_test::task;
use tower::{Layer, Service, ServiceExt};
use tower_bulwark_core::testing::{controlled, Controller, ReadinessProbe};
use tower_bulwark_core::{find_rejection, BoxError, Criticality, Outcome, RejectionKind};
use tower_bulwark_shed::{
    Aimd, Fixed, Overloaded, RttEstimates, ShedEvent, ShedLayer, TierShares, Vegas, WindowSize,
};

/// A request that names its tier.
type Call = (Criticality, u32);

fn fixed(limit: usize) -> ShedLayer<fn(&Call) -> Criticality> {
    ShedLayer::builder()
        .name("test")
        .fixed(Fixed::new(limit).unwrap())
        .criticality((|call: &Call| call.0) as fn(&Call) -> Criticality)
        .build()
        .unwrap()
}

/// Starts `n` calls of `criticality` that hang, keeping them in flight.
async fn hold<S>(service: &mut S, criticality: Criticality, n: usize) -> Vec<S::Future>
where
    S: Service<Call, Error = BoxError>,
{
    let mut held = Vec::new();
    for i in 0..n {
        held.push(service.ready().await.unwrap().call((criticality, i as u32)));
    }
    held
}

/// Calls `service`; `None` if the call was shed, else the call, still in flight.
async fn admitted<S>(service: &mut S, criticality: Criticality) -> Option<task::Spawn<S::Future>>
where
    S: Service<Call, Error = BoxError>,
{
    let mut call = task::spawn(service.ready().await.unwrap().call((criticality, 0)));
    match call.poll() {
        std::task::Poll::Ready(Err(ref e)) if is_shed(e) => None,
        _ => Some(call),
    }
}

fn is_shed(error: &BoxError) -> bool {
    find_rejection(error).is_some_and(|r| r.kind() == RejectionKind::Overloaded)
}

#[tokio::test(start_paused = true)]
async fn calls_beyond_the_limit_are_refused_at_once_with_pushback() {
    let layer = fixed(3);
    let (inner, control) = controlled::<Call>();
    control.hang();
    let mut service = layer.layer(ReadinessProbe::new(inner));
    let held = hold(&mut service, Criticality::CriticalPlus, 3).await;
    assert_eq!(layer.handle().snapshot().in_flight, 3);
    assert_eq!(layer.handle().name(), "test");

    let error = service
        .ready()
        .await
        .unwrap()
        .call((Criticality::CriticalPlus, 9))
        .await
        .unwrap_err();
    let rejection = find_rejection(&error).unwrap();
    assert_eq!(rejection.kind(), RejectionKind::Overloaded);
    assert_eq!(rejection.retry_after(), Some(Duration::from_secs(1)));
    // The layer's own error type, with the refused call's tier.
    let overloaded = error
        .downcast_ref::<Overloaded>()
        .expect("the layer's error");
    assert_eq!(overloaded.criticality(), Criticality::CriticalPlus);
    assert_eq!(overloaded.retry_after(), Some(Duration::from_secs(1)));
    assert_eq!(
        overloaded.to_string(),
        "load shedding layer `test` refused a critical-plus call (concurrency limit reached)"
    );
    assert_eq!(
        control.calls(),
        3,
        "the shed call never reached the inner service"
    );
    let response: http::Response<()> = rejection.to_http_response();
    assert_eq!(response.status(), 503);
    assert_eq!(response.headers()["x-bulwark-overloaded"], "true");
    assert_eq!(response.headers()["retry-after"], "1");

    drop(held);
    assert_eq!(
        layer.handle().snapshot().in_flight,
        0,
        "dropped calls gave their place back"
    );
    control.succeed();
    assert!(service
        .oneshot((Criticality::CriticalPlus, 10))
        .await
        .is_ok());
}

/// Holds `n` calls of `tier` in flight, each admitted.
async fn fill<S>(service: &mut S, tier: Criticality, n: usize) -> Vec<task::Spawn<S::Future>>
where
    S: Service<Call, Error = BoxError>,
{
    let mut held = Vec::new();
    for _ in 0..n {
        held.push(admitted(service, tier).await.expect("room"));
    }
    held
}

#[tokio::test(start_paused = true)]
async fn sheddable_calls_alone_may_fill_the_whole_limit() {
    let layer = fixed(10);
    let (inner, control) = controlled::<Call>();
    control.hang();
    let mut service = layer.layer(ReadinessProbe::new(inner));
    let held = fill(&mut service, Criticality::Sheddable, 10).await;
    assert!(admitted(&mut service, Criticality::Sheddable)
        .await
        .is_none());
    assert_eq!(layer.handle().snapshot().in_flight_by_tier, [10, 0, 0, 0]);
    drop(held);
}

#[tokio::test(start_paused = true)]
async fn under_contention_lower_tiers_are_refused_before_higher_ones() {
    let layer = fixed(10);
    let (inner, control) = controlled::<Call>();
    control.hang();
    let mut service = layer.layer(ReadinessProbe::new(inner));
    let mut sheddable = fill(&mut service, Criticality::Sheddable, 10).await;
    // Full: a critical call is refused, but its want is noted.
    assert!(admitted(&mut service, Criticality::Critical)
        .await
        .is_none());
    sheddable.truncate(7);
    // Sheddable calls now leave room for the critical one's peak (1, plus a quarter: 2):
    // they may use 8 places.
    sheddable.push(
        admitted(&mut service, Criticality::Sheddable)
            .await
            .expect("8th"),
    );
    assert!(
        admitted(&mut service, Criticality::Sheddable)
            .await
            .is_none(),
        "the last two places are kept for critical calls"
    );
    let critical = fill(&mut service, Criticality::Critical, 2).await;
    assert!(admitted(&mut service, Criticality::CriticalPlus)
        .await
        .is_none());
    let shed = layer.handle().snapshot();
    assert_eq!(shed.shed_of(Criticality::Sheddable), 1);
    assert_eq!(shed.shed_of(Criticality::Critical), 1);
    assert_eq!(shed.shed_of(Criticality::CriticalPlus), 1);
    assert_eq!(shed.in_flight_by_tier, [8, 0, 2, 0]);
    drop((sheddable, critical));
}

#[tokio::test(start_paused = true)]
async fn each_tier_leaves_room_for_what_the_tiers_above_recently_wanted() {
    let layer = fixed(10);
    let (inner, control) = controlled::<Call>();
    control.hang();
    let mut service = layer.layer(ReadinessProbe::new(inner));
    let critical = fill(&mut service, Criticality::Critical, 4).await;
    // Critical calls peaked at 4; a quarter more is 5, and they hold 4: one free place is
    // kept for them. Sheddable calls may fill the rest, up to 9 in flight in all.
    let sheddable = fill(&mut service, Criticality::Sheddable, 5).await;
    assert!(admitted(&mut service, Criticality::Sheddable)
        .await
        .is_none());
    assert!(admitted(&mut service, Criticality::SheddablePlus)
        .await
        .is_none());
    let last = fill(&mut service, Criticality::Critical, 1).await;
    assert!(admitted(&mut service, Criticality::CriticalPlus)
        .await
        .is_none());
    assert_eq!(
        layer.handle().snapshot().in_flight_by_tier,
        [5, 0, 5, 0],
        "the whole limit in use"
    );
    drop((critical, sheddable, last));
}

#[tokio::test(start_paused = true)]
async fn a_tier_cap_holds_even_when_nothing_else_wants_the_rest() {
    let layer = ShedLayer::builder()
        .fixed(Fixed::new(10).unwrap())
        .tiers(TierShares {
            sheddable: 0.5,
            ..TierShares::flat()
        })
        .criticality((|call: &Call| call.0) as fn(&Call) -> Criticality)
        .build()
        .unwrap();
    let (inner, control) = controlled::<Call>();
    control.hang();
    let mut service = layer.layer(ReadinessProbe::new(inner));
    let held = fill(&mut service, Criticality::Sheddable, 5).await;
    assert!(admitted(&mut service, Criticality::Sheddable)
        .await
        .is_none());
    let critical = fill(&mut service, Criticality::Critical, 5).await;
    drop((held, critical));
}

#[tokio::test(start_paused = true)]
async fn shadow_mode_counts_and_sheds_nothing() {
    let events = Arc::new(Mutex::new(Vec::new()));
    let sink = events.clone();
    let layer = ShedLayer::builder()
        .fixed(Fixed::new(1).unwrap())
        .shadow(true)
        .on_event(move |e: &ShedEvent| sink.lock().unwrap().push(e.clone()))
        .build()
        .unwrap();
    let (inner, control) = controlled::<u32>();
    control.hang();
    let mut service = layer.layer(ReadinessProbe::new(inner));
    let mut held = Vec::new();
    for i in 0..3 {
        held.push(service.ready().await.unwrap().call(i));
    }
    assert_eq!(control.calls(), 3, "all admitted");
    assert_eq!(layer.handle().snapshot().in_flight, 3);
    assert_eq!(layer.handle().snapshot().shed_of(Criticality::Critical), 2);
    assert_eq!(events.lock().unwrap().len(), 2);
    assert!(matches!(
        events.lock().unwrap()[0],
        ShedEvent::Shed { shadow: true, .. }
    ));
    drop(held);
    assert_eq!(layer.handle().snapshot().in_flight, 0);
}

async fn run(
    service: &mut (impl Service<u32, Error = BoxError> + Clone),
    control: &Controller,
    ok: bool,
) {
    if ok {
        control.succeed();
    } else {
        control.fail();
    }
    let _ = service.clone().oneshot(1).await;
}

#[tokio::test(start_paused = true)]
async fn failures_shrink_an_adaptive_limit_and_ignored_outcomes_do_not_move_it() {
    let layer = ShedLayer::builder()
        .algorithm(Aimd::new(10, 2, 20, 0.5, Duration::from_secs(1)).unwrap())
        .window(WindowSize::per_call())
        .classify(|result: &Result<u32, BoxError>| match result {
            Ok(7) => Outcome::Ignored,
            Ok(_) => Outcome::Success,
            Err(_) => Outcome::Failure,
        })
        .build()
        .unwrap();
    let (inner, control) = controlled::<u32>();
    let mut service = layer.layer(ReadinessProbe::new(inner));
    run(&mut service, &control, false).await;
    assert_eq!(layer.handle().snapshot().limit, 5, "10 x 0.5");
    run(&mut service, &control, false).await;
    run(&mut service, &control, false).await;
    assert_eq!(layer.handle().snapshot().limit, 2, "1.25, floored at min 2");
    // Ignored: the limit stays.
    control.succeed();
    service.clone().oneshot(7).await.unwrap();
    assert_eq!(layer.handle().snapshot().limit, 2);
    // A success with the limit in use grows it by one (1 in flight x 2 >= 2).
    run(&mut service, &control, true).await;
    assert_eq!(layer.handle().snapshot().limit, 3);
}

#[tokio::test(start_paused = true)]
async fn keeps_the_poll_ready_contract() {
    let layer = fixed(5);
    let (inner, control) = controlled::<Call>();
    let mut service = layer.layer(ReadinessProbe::new(inner));
    control.pause();
    let mut ready = task::spawn(std::future::poll_fn(|cx| service.poll_ready(cx)));
    assert!(ready.poll().is_pending());
    control.ready();
    assert!(ready.poll().is_ready());
    drop(ready);
    service.call((Criticality::Critical, 1)).await.unwrap();
}

#[test]
fn bad_tiers_are_refused_by_build() {
    let shares = TierShares {
        critical: 0.4,
        ..TierShares::default()
    };
    let error = ShedLayer::builder().tiers(shares).build().unwrap_err();
    assert_eq!(error.field(), "tiers.critical");
}

#[tokio::test(start_paused = true)]
async fn the_admitted_call_runs_with_its_criticality_current() {
    let layer = fixed(5);
    let service = layer.layer(ReadinessProbe::new(tower::service_fn(|_: Call| async {
        Ok::<_, BoxError>(Criticality::current())
    })));
    for tier in Criticality::ALL {
        assert_eq!(
            service.clone().oneshot((tier, 0)).await.unwrap(),
            Some(tier)
        );
    }
    assert_eq!(Criticality::current(), None);
}

#[tokio::test(start_paused = true)]
async fn the_latency_target_preset_backs_off_when_calls_run_slow() {
    let layer = ShedLayer::builder()
        .latency_target(Duration::from_millis(10))
        .window(WindowSize::per_call())
        .build()
        .unwrap();
    let (inner, control) = controlled::<u32>();
    let service = layer.layer(ReadinessProbe::new(inner));
    control.delay(Duration::from_millis(15));
    service.clone().oneshot(1).await.unwrap();
    assert_eq!(
        layer.handle().snapshot().limit,
        20,
        "within 2 x 10 ms: no back-off"
    );
    control.delay(Duration::from_millis(25));
    service.oneshot(2).await.unwrap();
    assert_eq!(
        layer.handle().snapshot().limit,
        18,
        "slower than 20 ms: 20 x 0.9"
    );
}

/// The composition contract: with the HTTP classifier, a dependency shedding for overload
/// shrinks an adaptive limit (the load must come down), and a refusal by a layer inside the
/// limiter does not move it (it says nothing about what the limit protects).
#[tokio::test(start_paused = true)]
async fn a_marked_shed_shrinks_an_adaptive_limit_and_a_local_refusal_does_not_move_it() {
    use tower::service_fn;
    use tower_bulwark_core::{HttpClassifier, Rejection};

    let layer = || {
        ShedLayer::builder()
            .algorithm(Aimd::new(10, 2, 20, 0.5, Duration::from_secs(1)).unwrap())
            .window(WindowSize::per_call())
            .classify(HttpClassifier)
            .build()
            .unwrap()
    };
    let shedding = layer();
    let service = shedding.layer(service_fn(|_: u32| async {
        let shed = Rejection::new(RejectionKind::Overloaded, "server").to_http_response::<()>();
        Ok::<_, BoxError>(shed)
    }));
    assert_eq!(service.oneshot(1).await.unwrap().status(), 503);
    assert_eq!(shedding.handle().snapshot().limit, 5, "10 x 0.5");

    let local = layer();
    let service = local.layer(service_fn(|_: u32| async {
        let full = Rejection::new(RejectionKind::BulkheadFull, "below");
        Err::<http::Response<()>, BoxError>(full.into())
    }));
    for i in 0..5 {
        let error = service.clone().oneshot(i).await.unwrap_err();
        assert_eq!(
            find_rejection(&error).unwrap().kind(),
            RejectionKind::BulkheadFull
        );
    }
    assert_eq!(local.handle().snapshot().limit, 10);
}

/// A call dropped before it finished (the caller's deadline passed, the client went away)
/// teaches a drop: overload seen from inside is calls nobody waits for any more.
#[tokio::test(start_paused = true)]
async fn a_call_dropped_before_it_finished_is_a_drop() {
    let layer = ShedLayer::builder()
        .algorithm(Aimd::new(10, 2, 20, 0.5, Duration::from_secs(1)).unwrap())
        .window(WindowSize::per_call())
        .build()
        .unwrap();
    let (inner, control) = controlled::<u32>();
    control.hang();
    let service = layer.layer(ReadinessProbe::new(inner));
    let cut = tokio::time::timeout(Duration::from_millis(50), service.clone().oneshot(1)).await;
    assert!(cut.is_err(), "the caller gave up");
    assert_eq!(layer.handle().snapshot().limit, 5, "10 x 0.5");
    assert_eq!(layer.handle().snapshot().in_flight, 0);
}

/// Learning takes a window of calls at a time: by default at least 10 calls over at
/// least 50 ms, then the algorithm sees one sample (their mean latency).
#[tokio::test(start_paused = true)]
async fn the_algorithm_learns_a_window_at_a_time() {
    let layer = ShedLayer::builder()
        .algorithm(Aimd::new(10, 2, 20, 0.5, Duration::from_millis(100)).unwrap())
        .build()
        .unwrap();
    let (inner, control) = controlled::<u32>();
    let service = layer.layer(ReadinessProbe::new(inner));
    // Nine slow calls: not yet a window.
    control.delay(Duration::from_millis(150));
    for i in 0..9 {
        service.clone().oneshot(i).await.unwrap();
    }
    assert_eq!(layer.handle().snapshot().limit, 10);
    // The tenth closes it: a mean of 150 ms is over the 100 ms timeout, one back-off.
    service.clone().oneshot(9).await.unwrap();
    assert_eq!(layer.handle().snapshot().limit, 5);
    // The next window lasts at least twice the last mean latency, 300 ms: ten fast calls
    // do not close it.
    control.delay(Duration::from_millis(1));
    for i in 0..10 {
        service.clone().oneshot(i).await.unwrap();
    }
    assert_eq!(layer.handle().snapshot().limit, 5, "10 calls in 10 ms");
    // A slow call finishing 2 s later does: (10 x 1 + 2000) / 11 = 183 ms is over the
    // timeout, a second back-off (2.5, floored at min 2).
    control.delay(Duration::from_secs(2));
    service.clone().oneshot(10).await.unwrap();
    assert_eq!(layer.handle().snapshot().limit, 2);
}

/// Room kept for a burst of critical calls fades once they stop, even if every other
/// call is refused meanwhile and nothing finishes.
#[tokio::test(start_paused = true)]
async fn a_reservation_fades_when_the_important_calls_stop() {
    let layer = fixed(10);
    let (inner, control) = controlled::<Call>();
    control.hang();
    let mut service = layer.layer(ReadinessProbe::new(inner));
    // A burst of 9 critical calls: 9, plus a quarter, is kept for them (all 10 places).
    drop(fill(&mut service, Criticality::Critical, 9).await);
    let mut admitted_after = None;
    for n in 1..=100 {
        if let Some(call) = admitted(&mut service, Criticality::Sheddable).await {
            admitted_after = Some(n);
            drop(call);
            break;
        }
    }
    assert!(
        admitted_after.is_some_and(|n| n <= 40),
        "{admitted_after:?}"
    );
}

/// Whether the layer's places have stripes (a fast zone): with one core they do not, and
/// the fast zone's cases below do not arise.
fn striped() -> bool {
    std::thread::available_parallelism().map_or(1, usize::from) > 1
}

/// Admits calls of `tier` until one is shed; how many got in (still held in `held`).
async fn admit_all<S>(
    service: &mut S,
    tier: Criticality,
    held: &mut Vec<task::Spawn<S::Future>>,
) -> usize
where
    S: Service<Call, Error = BoxError>,
{
    let mut n = 0;
    while let Some(call) = admitted(service, tier).await {
        held.push(call);
        n += 1;
    }
    n
}

/// Far below the limit (the fast zone) a tier's peak is its own calls in flight, not a
/// bound of every tier's: one critical call arriving while 40 sheddable calls are in
/// flight keeps at most two places for critical calls, not half the limit.
#[tokio::test(start_paused = true)]
async fn a_single_critical_call_does_not_reserve_half_the_limit() {
    if !striped() {
        return;
    }
    let layer = fixed(100);
    let (inner, control) = controlled::<Call>();
    control.hang();
    let mut service = layer.layer(ReadinessProbe::new(inner));
    let mut sheddable = fill(&mut service, Criticality::Sheddable, 40).await;
    drop(
        admitted(&mut service, Criticality::Critical)
            .await
            .expect("room"),
    );
    assert_eq!(layer.handle().snapshot().in_flight_by_tier, [40, 0, 0, 0]);
    let more = admit_all(&mut service, Criticality::Sheddable, &mut sheddable).await;
    // The critical call's peak, 1, plus a quarter: at most 2 places kept.
    assert!(40 + more >= 98, "sheddable calls refused at {}", 40 + more);
}

/// Peaks decay every `limit` arriving calls, those far below the limit too (noted one in
/// a few, each standing for as many): 10,000 sheddable calls fade a past critical burst's
/// reservation completely.
#[tokio::test(start_paused = true)]
async fn a_reservation_fades_while_calls_arrive_far_below_the_limit() {
    if !striped() {
        return;
    }
    let layer = fixed(100);
    let (inner, control) = controlled::<Call>();
    control.hang();
    let mut service = layer.layer(ReadinessProbe::new(inner));
    // A burst of 40 critical calls, long over.
    drop(fill(&mut service, Criticality::Critical, 40).await);
    // 10,000 sheddable calls, one at a time.
    for _ in 0..10_000 {
        drop(
            admitted(&mut service, Criticality::Sheddable)
                .await
                .expect("room"),
        );
    }
    let mut sheddable = Vec::new();
    let n = admit_all(&mut service, Criticality::Sheddable, &mut sheddable).await;
    assert_eq!(n, 100, "a burst of sheddable calls refused at {n} of 100");
}

/// Far below the limit (the fast zone) every arrival is noted too: after a burst of 20
/// critical calls, sheddable calls that come next keep room for them (the layer's docs:
/// "each tier leaves the tiers above it room for what they recently wanted").
#[tokio::test(start_paused = true)]
async fn a_critical_burst_far_below_the_limit_keeps_its_room() {
    if !striped() {
        return;
    }
    let layer = fixed(100);
    let (inner, control) = controlled::<Call>();
    control.hang();
    let mut service = layer.layer(ReadinessProbe::new(inner));
    drop(fill(&mut service, Criticality::Critical, 20).await);
    let mut sheddable = Vec::new();
    let n = admit_all(&mut service, Criticality::Sheddable, &mut sheddable).await;
    // Critical calls peaked at 20 a moment ago: 25 places kept (an eighth less after a
    // decay or two while the sheddable calls arrive).
    assert!(
        n <= 85,
        "sheddable calls took {n} of 100 right after a critical burst of 20"
    );
}

/// The same with one sheddable call between critical ones (each request making two calls
/// through the layer, say): the critical tier's peak is noted all the same.
#[tokio::test(start_paused = true)]
async fn interleaved_critical_calls_are_noted_too() {
    if !striped() {
        return;
    }
    let layer = fixed(100);
    let (inner, control) = controlled::<Call>();
    control.hang();
    let mut service = layer.layer(ReadinessProbe::new(inner));
    let mut critical = Vec::new();
    for _ in 0..200 {
        // 20 critical calls in flight at a time, each followed by a short sheddable one.
        critical.push(
            admitted(&mut service, Criticality::Critical)
                .await
                .expect("room"),
        );
        drop(
            admitted(&mut service, Criticality::Sheddable)
                .await
                .expect("room"),
        );
        if critical.len() == 20 {
            drop(critical.remove(0));
        }
    }
    drop(critical);
    let mut sheddable = Vec::new();
    let n = admit_all(&mut service, Criticality::Sheddable, &mut sheddable).await;
    assert!(
        n <= 85,
        "sheddable calls took {n} of 100 after a long critical load of 20"
    );
}

/// A fixed limit learns nothing from finished calls: a limit set by hand stays, and no
/// latency is measured. The same algorithm given as one that learns takes its own value
/// back at the next window.
#[tokio::test(start_paused = true)]
async fn a_limit_set_by_hand_on_a_fixed_layer_stays_after_calls_finish() {
    let (inner, control) = controlled::<u32>();
    control.delay(Duration::from_millis(20));
    let fixed = ShedLayer::builder()
        .fixed(Fixed::new(10).unwrap())
        .window(WindowSize::per_call())
        .build()
        .unwrap();
    let service = fixed.layer(ReadinessProbe::new(inner.clone()));
    fixed.handle().set_limit(3);
    service.clone().oneshot(1).await.unwrap();
    service.oneshot(2).await.unwrap();
    let snapshot = fixed.handle().snapshot();
    assert_eq!(snapshot.limit, 3, "the operator's limit stays");
    assert_eq!(snapshot.rtt, RttEstimates::default(), "nothing measured");

    let learning = ShedLayer::builder()
        .algorithm(Fixed::new(10).unwrap())
        .window(WindowSize::per_call())
        .build()
        .unwrap();
    let service = learning.layer(ReadinessProbe::new(inner));
    learning.handle().set_limit(3);
    service.oneshot(1).await.unwrap();
    assert_eq!(learning.handle().snapshot().limit, 10, "learned back");
}

/// The handle reads the algorithm's latency estimates as of its latest window.
#[tokio::test(start_paused = true)]
async fn the_handle_reports_the_algorithms_latency_estimates() {
    let layer = ShedLayer::builder()
        .algorithm(Vegas::default())
        .window(WindowSize::per_call())
        .build()
        .unwrap();
    assert_eq!(layer.handle().snapshot().rtt, RttEstimates::default());
    let (inner, control) = controlled::<u32>();
    let service = layer.layer(ReadinessProbe::new(inner));
    control.delay(Duration::from_millis(30));
    service.clone().oneshot(1).await.unwrap();
    let rtt = layer.handle().snapshot().rtt;
    assert_eq!(rtt.no_load, Some(Duration::from_millis(30)));
    assert_eq!(rtt.short, Some(Duration::from_millis(30)));
    control.delay(Duration::from_millis(45));
    service.oneshot(2).await.unwrap();
    let rtt = layer.handle().snapshot().rtt;
    assert_eq!(
        (rtt.no_load, rtt.short),
        (
            Some(Duration::from_millis(30)),
            Some(Duration::from_millis(45))
        )
    );
}
