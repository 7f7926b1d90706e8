//! The recorder, its layer, and switches driven by what it measures.

mod support;

use std::time::Duration;

use support::{secs, Flips};
use tokio::time::{sleep, Instant};
use tower::{Service, ServiceExt};
use tower_bulwark_core::testing::{controlled, Behavior, ReadinessProbe};
use tower_bulwark_core::{Rejection, RejectionKind};
use tower_bulwark_degrade::{Recorder, Switches, Threshold, Tiers};

fn ms(ms: u64) -> Duration {
    Duration::from_millis(ms)
}

fn recorder(min_calls: u64) -> Recorder {
    Recorder::builder()
        .name("checkout")
        .window(secs(10))
        .min_calls(min_calls)
        .build()
        .unwrap()
}

#[tokio::test(start_paused = true)]
async fn percentiles_round_up_to_their_bucket() {
    let recorder = recorder(1);
    for latency in 1..=100 {
        recorder.record(ms(latency), true);
    }
    // 50 ms lies in 49,152..=51,199 µs, 99 and 100 ms in 98,304..=102,399 µs.
    assert_eq!(recorder.quantile(0.5), Some(Duration::from_micros(51_199)));
    assert_eq!(
        recorder.quantile(0.99),
        Some(Duration::from_micros(102_399))
    );
    assert_eq!(recorder.quantile(1.0), Some(Duration::from_micros(102_399)));
    assert_eq!(recorder.quantile(0.01), Some(Duration::from_micros(1_023)));
    assert_eq!(
        recorder.quantile(0.0),
        Some(Duration::from_micros(1_023)),
        "the fastest"
    );
    let p99 = recorder.latency(0.99).unwrap();
    assert_eq!(p99.label(), "checkout p99 latency");
    assert_eq!(
        recorder.latency(0.999).unwrap().label(),
        "checkout p99.9 latency"
    );
    let switches = Switches::builder()
        .tiers(Tiers::new(p99).tier("a", Threshold::new(102.399, 0.0)))
        .manual_evaluation()
        .build()
        .unwrap();
    switches.evaluate(Instant::now());
    assert_eq!(
        switches.statuses()[0].reason.as_ref(),
        "checkout p99 latency 102.399 ms >= 102.399 ms"
    );
}

/// Nearest rank: the p55 of 100 calls is the 55th. `q * total` in floating point is
/// 55.000000000000007, whose ceiling would read the next call's bucket.
#[tokio::test(start_paused = true)]
async fn a_percentile_is_its_nearest_rank_not_the_next() {
    let calls = recorder(1);
    for _ in 0..55 {
        calls.record(ms(1), true);
    }
    for _ in 0..45 {
        calls.record(ms(100), true);
    }
    assert_eq!(
        calls.quantile(0.55),
        Some(Duration::from_micros(1_023)),
        "the 55th of 100 calls took 1 ms"
    );
    assert_eq!(
        calls.quantile(0.56),
        Some(Duration::from_micros(102_399)),
        "the 56th took 100 ms"
    );
    let other = recorder(1);
    for i in 0..100 {
        other.record(ms(if i < 7 { 1 } else { 100 }), true);
    }
    assert_eq!(
        other.quantile(0.07),
        Some(Duration::from_micros(1_023)),
        "the 7th of 100 calls took 1 ms"
    );
}

#[tokio::test(start_paused = true)]
async fn huge_latencies_are_clamped_not_lost() {
    let recorder = recorder(1);
    recorder.record(Duration::MAX, true);
    let p = recorder.quantile(1.0).unwrap();
    assert!(p > Duration::from_secs(86_400 * 25), "{p:?}");
}

#[tokio::test(start_paused = true)]
async fn too_few_calls_read_as_no_pressure() {
    let recorder = recorder(10);
    let switches = Switches::builder()
        .tiers(Tiers::new(recorder.latency(0.99).unwrap()).tier("a", Threshold::new(100.0, 50.0)))
        .tiers(Tiers::new(recorder.error_rate()).tier("b", Threshold::new(0.5, 0.1)))
        .min_dwell(Duration::ZERO)
        .manual_evaluation()
        .build()
        .unwrap();
    for _ in 0..9 {
        recorder.record(secs(5), false);
    }
    assert_eq!(recorder.quantile(0.99), None);
    assert_eq!(recorder.error_ratio(), None);
    switches.evaluate(Instant::now());
    assert_eq!(switches.level("a"), Some(0), "nine calls are no evidence");
    assert_eq!(switches.level("b"), Some(0));
    recorder.record(secs(5), false);
    switches.evaluate(Instant::now());
    assert_eq!(
        (switches.level("a"), switches.level("b")),
        (Some(1), Some(1))
    );
    assert_eq!(
        switches.statuses()[1].reason.as_ref(),
        "checkout error rate 1 >= 0.5"
    );
    // The window empties: the readings fall to 0 and the switches come back.
    sleep(secs(10)).await;
    switches.evaluate(Instant::now());
    assert_eq!(
        (switches.level("a"), switches.level("b")),
        (Some(0), Some(0))
    );
}

#[tokio::test(start_paused = true)]
async fn the_layer_records_outcomes_and_skips_ignored_ones() {
    let recorder = recorder(1);
    let (service, control) = controlled::<u32>();
    let mut service = ReadinessProbe::new(recorder.layer().layer_service(service));
    control.delay(ms(40));
    service.ready().await.unwrap().call(1).await.unwrap();
    control.fail();
    control.delay(ms(80));
    service.ready().await.unwrap().call(2).await.unwrap_err();
    assert_eq!(recorder.error_ratio(), Some(0.5));
    assert_eq!(recorder.quantile(1.0), Some(Duration::from_micros(81_919)));

    // A refusal by another layer says nothing about this service: not recorded.
    control.set(Behavior::Reject(Rejection::new(
        RejectionKind::BulkheadFull,
        "db",
    )));
    control.delay(ms(900));
    service.ready().await.unwrap().call(3).await.unwrap_err();
    assert_eq!(recorder.error_ratio(), Some(0.5));
    assert_eq!(recorder.quantile(1.0), Some(Duration::from_micros(81_919)));
}

/// `Layer::layer` by another name, so the test reads as a sentence.
trait LayerService<S> {
    type Service;
    fn layer_service(&self, inner: S) -> Self::Service;
}

impl<S, L: tower::Layer<S>> LayerService<S> for L {
    type Service = L::Service;
    fn layer_service(&self, inner: S) -> L::Service {
        self.layer(inner)
    }
}

#[tokio::test(start_paused = true)]
async fn a_call_its_caller_gave_up_on_counts_as_slow_not_as_failed() {
    let recorder = recorder(1);
    let (service, control) = controlled::<u32>();
    let service = recorder.layer().layer_service(service);
    control.hang();
    let abandoned = tokio::time::timeout(secs(2), service.clone().oneshot(1)).await;
    assert!(abandoned.is_err());
    assert_eq!(
        recorder.quantile(1.0),
        Some(Duration::from_micros(2_031_615))
    );
    assert_eq!(recorder.error_ratio(), None, "no outcome");
    control.succeed();
    service.oneshot(2).await.unwrap();
    assert_eq!(recorder.error_ratio(), Some(0.0));
}

#[tokio::test(start_paused = true)]
async fn a_recorder_built_from_a_layer_shares_one_window_across_clones() {
    let recorder = recorder(1);
    let layer = recorder.layer();
    let (a, _) = controlled::<u32>();
    let (b, control_b) = controlled::<u32>();
    control_b.fail();
    layer.layer_service(a).oneshot(1).await.unwrap();
    layer.clone().layer_service(b).oneshot(2).await.unwrap_err();
    assert_eq!(recorder.clone().error_ratio(), Some(0.5));
}

/// The scenario end to end: calls through a `RecordLayer` to a dependency whose latency
/// rises and falls; the p99 over a 2 s window moves two tiers off and back on in order.
#[tokio::test(start_paused = true)]
async fn switches_follow_the_p99_of_real_calls_through_the_layer() {
    let recorder = Recorder::builder()
        .name("catalog")
        .window(secs(2))
        .min_calls(5)
        .build()
        .unwrap();
    let flips = Flips::new();
    let _switches = Switches::builder()
        .tiers(
            Tiers::new(recorder.latency(0.99).unwrap())
                .tier("reviews", Threshold::new(150.0, 60.0))
                .tier("recommendations", Threshold::new(400.0, 200.0)),
        )
        .interval(ms(500))
        .min_dwell(secs(2))
        .on_event(flips.listener())
        .build()
        .unwrap();
    let (service, control) = controlled::<u32>();
    let service = recorder.layer().layer_service(service);
    // Ten callers, one call each 100 ms, for each phase's latency.
    let phases = [(10, 4), (200, 4), (600, 4), (120, 4), (10, 6)];
    for (latency, seconds) in phases {
        control.delay(ms(latency));
        let until = Instant::now() + secs(seconds);
        while Instant::now() < until {
            for i in 0..10 {
                tokio::spawn(service.clone().oneshot(i));
            }
            sleep(ms(100)).await;
        }
    }
    let timeline: Vec<(String, u8)> = flips
        .timeline()
        .into_iter()
        .map(|(_, name, to)| (name, to))
        .collect();
    assert_eq!(
        timeline,
        [
            ("reviews".to_string(), 1),
            ("recommendations".to_string(), 1),
            ("recommendations".to_string(), 0),
            ("reviews".to_string(), 0),
        ],
        "{:?}",
        flips.all()
    );
    let at: Vec<u64> = flips
        .all()
        .iter()
        .map(|f| f.at.as_millis() as u64)
        .collect();
    // 200 ms calls from 4 s finish from 4.2 s: the first evaluation after is 4.5 s.
    // 600 ms calls from 8 s finish from 8.6 s, read at 9 s. The last of them finishes at
    // 12.5 s, out of the window (ten 200 ms slots, the current one included) at 14.5 s.
    // The last 120 ms call finishes at 16.02 s, out of the window at 18 s.
    assert_eq!(at, [4_500, 9_000, 14_500, 18_000]);
    assert!(flips.all()[0].reason.starts_with("catalog p99 latency 2"));
}
