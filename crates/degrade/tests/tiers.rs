//! Tiers in paused time: order, hysteresis, minimum dwell.

mod support;

use std::time::Duration;

use proptest::prelude::*;
use support::{secs, Flips, Pressure};
use tokio::time::{sleep, Instant};
use tower_bulwark_degrade::{Cause, Mode, Signal, Switches, Threshold, Tiers};

/// Sets each value half a second before the evaluation (every whole second) that reads
/// it: `script[k]` is read at `k + 1` s (from the first call). Returns just after the last
/// evaluation (a millisecond later, so its flips are in).
async fn play(pressure: &Pressure, script: &[f64]) {
    for &value in script {
        sleep(Duration::from_millis(500)).await;
        pressure.set(value);
        sleep(Duration::from_millis(500)).await;
    }
    sleep(Duration::from_millis(1)).await;
}

fn shop(pressure: &Pressure, flips: &Flips, min_dwell: Duration) -> Switches {
    Switches::builder()
        .name("shop")
        .switch("checkout")
        .tiers(
            Tiers::new(pressure.signal())
                .tier("reviews", Threshold::new(300.0, 150.0))
                .tier("recommendations", Threshold::new(500.0, 250.0)),
        )
        .interval(secs(1))
        .min_dwell(min_dwell)
        .on_event(flips.listener())
        .build()
        .unwrap()
}

fn off(name: &str) -> (String, u8) {
    (name.to_string(), 1)
}

#[tokio::test(start_paused = true)]
async fn rising_pressure_degrades_tiers_in_order_and_falling_pressure_restores_them_in_reverse() {
    let (pressure, flips) = (Pressure::default(), Flips::new());
    let switches = shop(&pressure, &flips, secs(5));
    let checkout = switches.switch("checkout").unwrap();
    let script = [
        100.0, 320.0, 550.0, 600.0, 200.0, 200.0, 200.0, 200.0, 200.0, 140.0, 100.0,
    ];
    play(&pressure, &script).await;

    let timeline = flips.timeline();
    assert_eq!(
        timeline,
        [
            (2, "reviews".to_string(), 1),
            (3, "recommendations".to_string(), 1),
            // 200 is under recommendations' 250 from 5 s, but it went off at 3 s: it
            // dwells until 8 s. Reviews then wait for 150 or less (10 s).
            (8, "recommendations".to_string(), 0),
            (10, "reviews".to_string(), 0),
        ]
    );
    let all = flips.all();
    assert!(all.iter().all(|f| f.cause == Cause::Automatic));
    assert_eq!(all[0].reason, "load 320 >= 300");
    assert_eq!(all[1].reason, "load 550 >= 500");
    assert_eq!(all[2].reason, "load 200 <= 250");
    assert_eq!(all[3].reason, "load 140 <= 150");

    assert!(checkout.is_on());
    let statuses = switches.statuses();
    let names: Vec<&str> = statuses.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, ["checkout", "reviews", "recommendations"]);
    assert_eq!(statuses[0].reason.as_ref(), "initial state");
    assert_eq!(statuses[0].changed_at, None);
    let reviews = &statuses[1];
    assert!(reviews.is_on());
    assert_eq!(reviews.mode, Mode::Automatic);
    assert_eq!(reviews.reason.as_ref(), "load 140 <= 150");
    assert_eq!(reviews.to_string(), "on (automatic): load 140 <= 150");
    let since = reviews.changed_at.unwrap().elapsed();
    assert_eq!(
        since,
        Duration::from_millis(1_001),
        "changed at 10 s, read at 11.001 s"
    );
}

#[tokio::test(start_paused = true)]
async fn handlers_see_each_flip_at_the_evaluation_that_makes_it() {
    let (pressure, flips) = (Pressure::default(), Flips::new());
    let switches = shop(&pressure, &flips, Duration::ZERO);
    let (reviews, recommendations) = (
        switches.switch("reviews").unwrap(),
        switches.switch("recommendations").unwrap(),
    );
    tokio::task::yield_now().await; // The evaluation at 0 s reads 0.
    pressure.set(900.0);
    sleep(Duration::from_millis(999)).await;
    assert!(reviews.is_on(), "not evaluated since 0 s");
    sleep(Duration::from_millis(2)).await;
    assert_eq!((reviews.is_on(), recommendations.is_on()), (false, true));
    assert_eq!(recommendations.level(), 0);
    sleep(secs(1)).await;
    assert_eq!((reviews.is_on(), recommendations.is_on()), (false, false));
    assert_eq!(switches.level("recommendations"), Some(1));
    assert_eq!(switches.level("nope"), None);
    assert!(switches.switch("nope").is_none());
}

#[tokio::test(start_paused = true)]
async fn a_signal_hovering_around_a_threshold_never_flips_within_the_band() {
    let (pressure, flips) = (Pressure::default(), Flips::new());
    let _switches = shop(&pressure, &flips, Duration::ZERO);
    // Around reviews' 300: degrades once, and 160-299 never restores it (restore at 150).
    let script: Vec<f64> = (0..60)
        .map(|i| if i % 2 == 0 { 310.0 } else { 160.0 + i as f64 })
        .collect();
    play(&pressure, &script).await;
    assert_eq!(flips.timeline(), [(1, "reviews".to_string(), 1)]);
}

#[tokio::test(start_paused = true)]
async fn a_noisy_signal_flips_a_switch_at_most_once_per_min_dwell() {
    let (pressure, flips) = (Pressure::default(), Flips::new());
    let _switches = shop(&pressure, &flips, secs(5));
    // Swings through both of reviews' thresholds at every evaluation for a minute.
    let script: Vec<f64> = (0..60)
        .map(|i| if i % 2 == 0 { 350.0 } else { 0.0 })
        .collect();
    play(&pressure, &script).await;
    let reviews: Vec<(u64, u8)> = flips
        .timeline()
        .into_iter()
        .filter(|(_, name, _)| name == "reviews")
        .map(|(at, _, to)| (at, to))
        .collect();
    // 350 is read at odd seconds, 0 at even ones: off at 1 s, on at the first even second
    // 5 s later (6 s), off at the first odd one 5 s after that (11 s), ...
    let expected: Vec<(u64, u8)> = (0..12).map(|k| (1 + 5 * k, (k % 2 == 0) as u8)).collect();
    assert_eq!(reviews, expected);
    for pair in reviews.windows(2) {
        assert!(
            pair[1].0 - pair[0].0 >= 5,
            "flips {pair:?} closer than the dwell"
        );
    }
    assert!(
        flips
            .timeline()
            .iter()
            .all(|(_, name, _)| name == "reviews"),
        "350 never reaches recommendations' 500"
    );
}

#[tokio::test(start_paused = true)]
async fn a_tier_waiting_for_its_dwell_holds_the_tiers_after_it() {
    let (pressure, flips) = (Pressure::default(), Flips::new());
    let _switches = shop(&pressure, &flips, secs(10));
    // Reviews go off at 1 s and come back at 11 s; the pressure returns at once, over
    // both thresholds: reviews may not go off again before 21 s, and recommendations,
    // after them in order, wait too.
    let mut script = vec![400.0];
    script.extend([0.0; 10]);
    script.extend([900.0; 14]);
    play(&pressure, &script).await;
    assert_eq!(
        flips.timeline(),
        [
            (1, "reviews".to_string(), 1),
            (11, "reviews".to_string(), 0),
            (21, "reviews".to_string(), 1),
            (22, "recommendations".to_string(), 1),
        ]
    );
}

#[tokio::test(start_paused = true)]
async fn equal_thresholds_make_an_ordered_list_stepping_one_tier_per_evaluation() {
    let (pressure, flips) = (Pressure::default(), Flips::new());
    let _switches = Switches::builder()
        .tiers(
            Tiers::new(pressure.signal())
                .tier("a", Threshold::new(1.0, 0.0))
                .tier("b", Threshold::new(1.0, 0.0))
                .tier("c", Threshold::new(1.0, 0.0)),
        )
        .interval(secs(1))
        .min_dwell(Duration::ZERO)
        .on_event(flips.listener())
        .build()
        .unwrap();
    play(&pressure, &[1.0, 1.0, 1.0, 1.0, 0.0, 0.0, 0.0, 0.0]).await;
    let order: Vec<(u64, String, u8)> = flips.timeline();
    let expected = [
        (1, off("a")),
        (2, off("b")),
        (3, off("c")),
        (5, ("c".to_string(), 0)),
        (6, ("b".to_string(), 0)),
        (7, ("a".to_string(), 0)),
    ]
    .map(|(at, (name, to))| (at, name, to));
    assert_eq!(order, expected);
}

#[tokio::test(start_paused = true)]
async fn a_nan_reading_holds_every_tier_of_its_list() {
    let (pressure, flips) = (Pressure::default(), Flips::new());
    let switches = shop(&pressure, &flips, Duration::ZERO);
    play(&pressure, &[900.0, 900.0, f64::NAN, f64::NAN, 0.0]).await;
    assert_eq!(
        flips.timeline(),
        [
            (1, "reviews".to_string(), 1),
            (2, "recommendations".to_string(), 1),
            (5, "recommendations".to_string(), 0),
        ]
    );
    assert!(!switches.switch("reviews").unwrap().is_on());
}

#[tokio::test(start_paused = true)]
async fn a_panicking_signal_holds_its_tiers_and_the_other_lists_go_on() {
    let (pressure, flips) = (Pressure::default(), Flips::new());
    let switches = Switches::builder()
        .tiers(
            Tiers::new(Signal::new("broken", || panic!("boom")))
                .tier("a", Threshold::new(1.0, 0.0)),
        )
        .tiers(Tiers::new(pressure.signal()).tier("b", Threshold::new(1.0, 0.0)))
        .interval(secs(1))
        .on_event(flips.listener())
        .build()
        .unwrap();
    play(&pressure, &[5.0, 5.0]).await;
    assert_eq!(flips.timeline(), [(1, "b".to_string(), 1)]);
    assert!(switches.switch("a").unwrap().is_on());
}

#[tokio::test(start_paused = true)]
async fn levels_step_down_one_tier_at_a_time() {
    let (pressure, flips) = (Pressure::default(), Flips::new());
    let switches = Switches::builder()
        .switch_levels("recommendations", 2)
        .tiers(
            Tiers::new(pressure.signal())
                .tier_level("recommendations", 1, Threshold::new(300.0, 150.0))
                .tier("reviews", Threshold::new(400.0, 200.0))
                .tier("recommendations", Threshold::new(500.0, 250.0)),
        )
        .interval(secs(1))
        .min_dwell(Duration::ZERO)
        .on_event(flips.listener())
        .build()
        .unwrap();
    let recommendations = switches.switch("recommendations").unwrap();
    assert_eq!(recommendations.status().max_level, 2);
    play(&pressure, &[350.0]).await;
    assert_eq!(
        (recommendations.level(), recommendations.is_on()),
        (1, false)
    );
    assert_eq!(recommendations.status().state(), "level 1 of 2");
    play(&pressure, &[600.0, 600.0, 220.0, 220.0, 100.0]).await;
    assert_eq!(
        flips.timeline(),
        [
            (1, "recommendations".to_string(), 1),
            (2, "reviews".to_string(), 1),
            (3, "recommendations".to_string(), 2),
            // 220 restores the last tier (recommendations back to level 1), not reviews.
            (4, "recommendations".to_string(), 1),
            (6, "reviews".to_string(), 0),
        ]
    );
    assert_eq!(recommendations.level(), 1, "waits for 150 or less");
    let reasons: Vec<String> = flips.all().into_iter().map(|f| f.reason).collect();
    assert_eq!(
        reasons[3], "load 350 >= 300",
        "back to level 1: why it is at level 1, the tier still holding it"
    );
    assert_eq!(recommendations.status().reason.as_ref(), "load 350 >= 300");
}

#[tokio::test(start_paused = true)]
async fn a_switch_driven_by_two_lists_is_off_while_either_asks() {
    let (latency, breaker, flips) = (Pressure::default(), Pressure::default(), Flips::new());
    let switches = Switches::builder()
        .tiers(Tiers::new(latency.signal()).tier("recommendations", Threshold::new(500.0, 250.0)))
        .tiers(Tiers::new(breaker.signal()).tier("recommendations", Threshold::new(1.0, 0.0)))
        .interval(secs(1))
        .min_dwell(secs(2))
        .on_event(flips.listener())
        .build()
        .unwrap();
    let recommendations = switches.switch("recommendations").unwrap();
    breaker.set(1.0); // read at 0 s
    play(&latency, &[600.0]).await; // latency asks too at 1 s
    assert!(!recommendations.is_on());
    breaker.set(0.0);
    play(&latency, &[600.0, 600.0, 600.0]).await; // the breaker lets go, latency holds
    assert!(!recommendations.is_on());
    play(&latency, &[100.0]).await;
    assert!(recommendations.is_on());
    // The breaker asks again at once: the switch went on at 5 s, so it waits until 7 s.
    breaker.set(1.0);
    play(&latency, &[100.0, 100.0]).await;
    assert_eq!(
        flips.timeline(),
        [
            (0, "recommendations".to_string(), 1),
            (5, "recommendations".to_string(), 0),
            (7, "recommendations".to_string(), 1),
        ]
    );
}

/// When the list that switched it off restores, the other still holds it off: the reason
/// (health JSON, `status()`) names the reading that holds it now, not one no longer true.
#[tokio::test(start_paused = true)]
async fn the_reason_names_the_trigger_that_still_holds_a_switch_off() {
    let (latency, errors, flips) = (Pressure::default(), Pressure::default(), Flips::new());
    let switches = Switches::builder()
        .tiers(
            Tiers::new(latency.signal().named("latency"))
                .tier("recommendations", Threshold::new(10.0, 5.0)),
        )
        .tiers(
            Tiers::new(errors.signal().named("errors"))
                .tier("recommendations", Threshold::new(10.0, 5.0)),
        )
        .min_dwell(Duration::ZERO)
        .on_event(flips.listener())
        .manual_evaluation()
        .build()
        .unwrap();
    let recommendations = switches.switch("recommendations").unwrap();
    let reason = || recommendations.status().reason.to_string();
    let start = Instant::now();
    latency.set(20.0);
    errors.set(20.0);
    switches.evaluate(start);
    assert_eq!(reason(), "latency 20 >= 10");
    latency.set(0.0);
    switches.evaluate(start + secs(1));
    assert!(!recommendations.is_on(), "the errors still hold it off");
    assert_eq!(reason(), "errors 20 >= 10");
    // Latency asks again: the errors still hold it, their reading stays the reason.
    latency.set(30.0);
    switches.evaluate(start + secs(2));
    assert_eq!(reason(), "errors 20 >= 10");
    errors.set(0.0);
    switches.evaluate(start + secs(3));
    assert_eq!(reason(), "latency 30 >= 10");
    latency.set(1.0);
    switches.evaluate(start + secs(4));
    assert!(recommendations.is_on());
    assert_eq!(reason(), "latency 1 <= 5");
    let summary: Vec<(u8, String)> = flips.all().into_iter().map(|f| (f.to, f.reason)).collect();
    assert_eq!(
        summary,
        [(1, "latency 20 >= 10".into()), (0, "latency 1 <= 5".into())],
        "a new reason alone is no flip"
    );
}

/// While forced, the reason stays the operator's; handed back, it names the tier that
/// holds the switch now.
#[tokio::test(start_paused = true)]
async fn a_forced_switch_keeps_the_operators_reason_and_hands_back_to_the_holder() {
    let (latency, errors) = (Pressure::default(), Pressure::default());
    let switches = Switches::builder()
        .tiers(Tiers::new(latency.signal().named("latency")).tier("a", Threshold::new(10.0, 5.0)))
        .tiers(Tiers::new(errors.signal().named("errors")).tier("a", Threshold::new(10.0, 5.0)))
        .min_dwell(Duration::ZERO)
        .manual_evaluation()
        .build()
        .unwrap();
    let a = switches.switch("a").unwrap();
    let start = Instant::now();
    latency.set(20.0);
    switches.evaluate(start);
    errors.set(20.0);
    switches.evaluate(start + secs(1));
    a.force_on();
    latency.set(0.0);
    switches.evaluate(start + secs(2));
    assert_eq!(a.status().reason.as_ref(), "forced on by an operator");
    a.automatic();
    assert_eq!(
        a.status().reason.as_ref(),
        "automatic again: errors 20 >= 10"
    );
    assert!(!a.is_on());
}

#[tokio::test(start_paused = true)]
async fn explicit_evaluation_needs_no_runtime_task() {
    let pressure = Pressure::default();
    let switches = Switches::builder()
        .tiers(Tiers::new(pressure.signal()).tier("a", Threshold::new(1.0, 0.0)))
        .min_dwell(secs(10))
        .manual_evaluation()
        .build()
        .unwrap();
    let a = switches.switch("a").unwrap();
    pressure.set(2.0);
    sleep(secs(60)).await;
    assert!(a.is_on(), "no background task");
    let start = Instant::now();
    switches.evaluate(start);
    assert!(!a.is_on());
    pressure.set(0.0);
    switches.evaluate(start + secs(9));
    assert!(!a.is_on(), "dwell");
    switches.evaluate(start + secs(10));
    assert!(a.is_on());
}

#[tokio::test(start_paused = true)]
async fn the_background_task_stops_when_the_last_handle_is_dropped() {
    let reads = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let counted = reads.clone();
    let signal = Signal::new("counted", move || {
        counted.fetch_add(1, std::sync::atomic::Ordering::Relaxed) as f64
    });
    let switches = Switches::builder()
        .tiers(Tiers::new(signal).tier("a", Threshold::new(1e9, 0.0)))
        .interval(secs(1))
        .build()
        .unwrap();
    let a = switches.switch("a").unwrap();
    sleep(Duration::from_millis(2_500)).await;
    assert_eq!(reads.load(std::sync::atomic::Ordering::Relaxed), 3);
    drop(switches);
    sleep(secs(2)).await;
    assert_eq!(
        reads.load(std::sync::atomic::Ordering::Relaxed),
        5,
        "a switch keeps it running"
    );
    drop(a);
    tokio::task::yield_now().await;
    sleep(secs(10)).await;
    assert_eq!(reads.load(std::sync::atomic::Ordering::Relaxed), 5);
    assert_eq!(
        std::sync::Arc::strong_count(&reads),
        1,
        "the signal was dropped with the task"
    );
}

/// The reference: one list of tiers on distinct switches, as the docs describe it.
struct Model {
    degrade_at: Vec<f64>,
    restore_at: Vec<f64>,
    degraded: usize,
    changed: Vec<Option<u64>>,
    dwell: u64,
}

impl Model {
    fn step(&mut self, t: u64, x: f64) {
        if x.is_nan() {
            return;
        }
        let k = self.degraded;
        let free = |i: usize| self.changed[i].is_none_or(|c| t - c >= self.dwell);
        if k < self.degrade_at.len() && x >= self.degrade_at[k] {
            if free(k) {
                self.degraded += 1;
                self.changed[k] = Some(t);
            }
        } else if k > 0 && x <= self.restore_at[k - 1] && free(k - 1) {
            self.degraded -= 1;
            self.changed[k - 1] = Some(t);
        }
    }
}

proptest! {
    #[test]
    fn one_list_behaves_like_the_reference(
        bases in proptest::collection::vec(0.0..100.0f64, 1..5),
        gaps in proptest::collection::vec(1.0..50.0f64, 5),
        dwell in 0u64..5,
        readings in proptest::collection::vec(prop_oneof![9 => 0.0..400.0f64, 1 => Just(f64::NAN)], 1..80),
    ) {
        // Sorted thresholds, each restore below its degrade.
        let mut restore_at = bases.clone();
        restore_at.sort_by(f64::total_cmp);
        let degrade_at: Vec<f64> = {
            let mut d: Vec<f64> = restore_at.iter().zip(&gaps).map(|(r, g)| r + g).collect();
            for i in 1..d.len() {
                d[i] = d[i].max(d[i - 1]);
            }
            d
        };
        let pressure = Pressure::default();
        let mut tiers = Tiers::new(pressure.signal());
        for (i, (d, r)) in degrade_at.iter().zip(&restore_at).enumerate() {
            tiers = tiers.tier(format!("s{i}"), Threshold::new(*d, *r));
        }
        let switches = Switches::builder()
            .tiers(tiers)
            .min_dwell(secs(dwell))
            .manual_evaluation()
            .build()
            .unwrap();
        let mut model = Model {
            degrade_at: degrade_at.clone(),
            restore_at,
            degraded: 0,
            changed: vec![None; degrade_at.len()],
            dwell,
        };
        let start = Instant::now();
        for (t, x) in readings.iter().enumerate() {
            pressure.set(*x);
            switches.evaluate(start + secs(t as u64));
            model.step(t as u64, *x);
            let levels: Vec<u8> = (0..degrade_at.len())
                .map(|i| switches.level(&format!("s{i}")).unwrap())
                .collect();
            let expected: Vec<u8> = (0..degrade_at.len()).map(|i| u8::from(i < model.degraded)).collect();
            prop_assert_eq!(levels, expected, "at {} s reading {}", t, x);
        }
    }
}
