//! Fault injection: rates, replay, latency and the kill switch.

use std::time::Duration;

use tokio::time::Instant;
use tower::{service_fn, Layer, Service, ServiceExt};
use tower_bulwark_chaos::{ChaosError, ChaosLayer, Latency};
use tower_bulwark_core::testing::controlled;

/// The fault each of `n` calls got: `'.'` none, `'E'` error, `'A'` abort.
async fn faults(layer: &ChaosLayer, n: usize) -> String {
    let mut service = layer.layer(service_fn(|_: ()| async { Ok::<_, std::io::Error>(()) }));
    let mut seen = String::new();
    for _ in 0..n {
        let result = service.ready().await.unwrap().call(()).await;
        seen.push(match result {
            Ok(()) => '.',
            Err(e) => match e.downcast_ref::<ChaosError>() {
                Some(ChaosError::Injected) => 'E',
                Some(ChaosError::Aborted) => 'A',
                _ => '?',
            },
        });
    }
    seen
}

#[tokio::test(start_paused = true)]
async fn rates_hold_within_statistical_bounds() {
    let layer = ChaosLayer::builder()
        .error_rate(0.1)
        .abort_rate(0.05)
        .seed(2024)
        .build()
        .unwrap();
    let seen = faults(&layer, 10_000).await;
    let errors = seen.matches('E').count();
    let aborts = seen.matches('A').count();
    // Binomial: 1,000 +- 3 sigma (30) and 500 +- 3 sigma (22).
    assert!((910..=1090).contains(&errors), "{errors}");
    assert!((434..=566).contains(&aborts), "{aborts}");
    assert_eq!(
        layer.handle().injected()[..2],
        [errors as u64, aborts as u64]
    );
}

#[tokio::test(start_paused = true)]
async fn a_seed_replays_exactly() {
    let build = |seed| {
        ChaosLayer::builder()
            .error_rate(0.3)
            .abort_rate(0.1)
            .seed(seed)
            .build()
            .unwrap()
    };
    let first = faults(&build(9), 200).await;
    assert_eq!(faults(&build(9), 200).await, first);
    assert_ne!(faults(&build(10), 200).await, first);
}

#[tokio::test(start_paused = true)]
async fn latency_follows_its_distribution() {
    let timed = |latency| async move {
        let layer = ChaosLayer::builder()
            .latency(1.0, latency)
            .seed(3)
            .build()
            .unwrap();
        let mut service = layer.layer(service_fn(|_: ()| async { Ok::<_, std::io::Error>(()) }));
        let mut waits = Vec::new();
        for _ in 0..2_000 {
            let started = Instant::now();
            service.ready().await.unwrap().call(()).await.unwrap();
            waits.push(started.elapsed());
        }
        waits
    };
    let fixed = timed(Latency::Fixed(Duration::from_millis(40))).await;
    assert!(fixed.iter().all(|w| *w == Duration::from_millis(40)));
    let uniform = timed(Latency::Uniform {
        min: Duration::from_millis(10),
        max: Duration::from_millis(30),
    })
    .await;
    // Paused time rounds timers up to whole milliseconds.
    assert!(uniform
        .iter()
        .all(|w| (Duration::from_millis(10)..=Duration::from_millis(31)).contains(w)));
    let mean = |waits: &[Duration]| waits.iter().sum::<Duration>() / waits.len() as u32;
    let uniform_mean = mean(&uniform);
    assert!((Duration::from_millis(19)..=Duration::from_millis(22)).contains(&uniform_mean));
    let exponential = timed(Latency::Exponential {
        mean: Duration::from_millis(20),
    })
    .await;
    let exponential_mean = mean(&exponential);
    assert!(
        (Duration::from_millis(18)..=Duration::from_millis(23)).contains(&exponential_mean),
        "{exponential_mean:?}"
    );
    assert!(
        exponential.iter().any(|w| *w > Duration::from_millis(60)),
        "a long tail"
    );
}

#[tokio::test(start_paused = true)]
async fn an_enormous_latency_saturates_instead_of_panicking() {
    let layer = ChaosLayer::builder()
        .latency(
            1.0,
            Latency::Exponential {
                mean: Duration::MAX,
            },
        )
        .seed(5)
        .build()
        .unwrap();
    let service = layer.layer(service_fn(|_: ()| async { Ok::<_, std::io::Error>(()) }));
    let call = tokio::spawn(service.oneshot(()));
    tokio::time::advance(Duration::from_secs(3600)).await;
    assert!(!call.is_finished(), "still waiting, and nothing panicked");
    call.abort();
}

#[tokio::test(start_paused = true)]
async fn the_kill_switch_stops_every_fault() {
    let layer = ChaosLayer::builder().error_rate(1.0).build().unwrap();
    let handle = layer.handle();
    assert_eq!(faults(&layer, 3).await, "EEE");
    handle.disable();
    assert!(!handle.is_enabled());
    assert_eq!(faults(&layer, 3).await, "...");
    handle.enable();
    assert_eq!(faults(&layer, 1).await, "E");
    let off = ChaosLayer::builder()
        .error_rate(1.0)
        .disabled()
        .build()
        .unwrap();
    assert_eq!(faults(&off, 3).await, "...");
}

#[tokio::test(start_paused = true)]
async fn injected_errors_and_aborts_never_reach_the_inner_service() {
    let layer = ChaosLayer::builder()
        .error_rate(0.5)
        .abort_rate(0.5)
        .build()
        .unwrap();
    let (inner, control) = controlled::<u32>();
    let service = layer.layer(inner);
    for i in 0..20 {
        assert!(service.clone().oneshot(i).await.is_err());
    }
    assert_eq!(control.calls(), 0);
}

#[test]
fn bad_settings_name_their_field() {
    let field = |b: tower_bulwark_chaos::ChaosBuilder| b.build().unwrap_err().field();
    assert_eq!(field(ChaosLayer::builder().error_rate(1.5)), "error_rate");
    assert_eq!(
        field(ChaosLayer::builder().error_rate(f64::NAN)),
        "error_rate"
    );
    assert_eq!(field(ChaosLayer::builder().abort_rate(-0.1)), "abort_rate");
    assert_eq!(
        field(ChaosLayer::builder().error_rate(0.7).abort_rate(0.7)),
        "abort_rate"
    );
    assert_eq!(
        field(ChaosLayer::builder().latency(2.0, Latency::Fixed(Duration::ZERO))),
        "latency_rate"
    );
    assert_eq!(
        field(ChaosLayer::builder().latency(
            0.5,
            Latency::Uniform {
                min: Duration::from_secs(2),
                max: Duration::from_secs(1)
            }
        )),
        "latency"
    );
}

#[tokio::test(start_paused = true)]
async fn every_fault_injected_is_an_event_and_none_otherwise() {
    use std::sync::{Arc, Mutex};
    use tower_bulwark_chaos::ChaosEvent;

    let seen = Arc::new(Mutex::new(Vec::new()));
    let record = |seen: &Arc<Mutex<Vec<ChaosEvent>>>| {
        let seen = seen.clone();
        move |event: &ChaosEvent| seen.lock().unwrap().push(*event)
    };
    let failing = ChaosLayer::builder()
        .error_rate(0.5)
        .abort_rate(0.5)
        .seed(7)
        .on_event(record(&seen))
        .build()
        .unwrap();
    let drawn = faults(&failing, 20).await;
    let events: String = seen
        .lock()
        .unwrap()
        .iter()
        .map(|event| match event {
            ChaosEvent::ErrorInjected => 'E',
            ChaosEvent::Aborted => 'A',
            _ => '?',
        })
        .collect();
    assert_eq!(events, drawn, "one event per fault, in order");

    seen.lock().unwrap().clear();
    let slow = ChaosLayer::builder()
        .latency(1.0, Latency::Fixed(Duration::from_millis(40)))
        .on_event(record(&seen))
        .build()
        .unwrap();
    let service = slow.layer(service_fn(|_: ()| async { Ok::<_, std::io::Error>(()) }));
    service.oneshot(()).await.unwrap();
    assert_eq!(
        *seen.lock().unwrap(),
        [ChaosEvent::Delayed {
            delay: Duration::from_millis(40)
        }]
    );

    seen.lock().unwrap().clear();
    slow.handle().disable();
    let service = slow.layer(service_fn(|_: ()| async { Ok::<_, std::io::Error>(()) }));
    service.oneshot(()).await.unwrap();
    assert!(
        seen.lock().unwrap().is_empty(),
        "disabled: nothing injected"
    );
}
