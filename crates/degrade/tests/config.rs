//! Bad configuration is a `ConfigError` naming the field, never a panic.

use std::time::Duration;

use tower_bulwark_core::ConfigError;
use tower_bulwark_degrade::{Recorder, Signal, Switches, Threshold, Tiers};

fn zero() -> Signal {
    Signal::new("zero", || 0.0)
}

fn build(tiers: Tiers) -> Result<Switches, ConfigError> {
    Switches::builder().tiers(tiers).manual_evaluation().build()
}

fn field(result: Result<Switches, ConfigError>) -> (&'static str, String) {
    let err = result.unwrap_err();
    (err.field(), err.problem().to_string())
}

#[test]
fn thresholds_are_checked() {
    let one = |t: Threshold| build(Tiers::new(zero()).tier("a", t));
    for bad in [f64::NAN, f64::INFINITY, f64::NEG_INFINITY] {
        assert_eq!(
            field(one(Threshold::new(bad, 0.0))).0,
            "degrade_at",
            "{bad}"
        );
        assert_eq!(
            field(one(Threshold::new(1.0, bad))).0,
            "restore_at",
            "{bad}"
        );
    }
    assert_eq!(
        field(one(Threshold::new(1.0, 1.0))),
        (
            "restore_at",
            "tier of `a`: must be a finite number below `degrade_at` (1), got 1".to_string()
        )
    );
    assert_eq!(field(one(Threshold::new(1.0, 2.0))).0, "restore_at");
    assert!(one(Threshold::new(1.0, 0.999)).is_ok());
    assert!(
        one(Threshold::new(-1.0, -2.0)).is_ok(),
        "any finite numbers"
    );
}

#[test]
fn tiers_may_not_lower_their_thresholds() {
    let lower_degrade = Tiers::new(zero())
        .tier("a", Threshold::new(5.0, 1.0))
        .tier("b", Threshold::new(4.0, 2.0));
    assert_eq!(
        field(build(lower_degrade)),
        (
            "degrade_at",
            "tier of `b`: tiers' thresholds may not decrease, got 4 after 5".to_string()
        )
    );
    let lower_restore = Tiers::new(zero())
        .tier("a", Threshold::new(5.0, 2.0))
        .tier("b", Threshold::new(6.0, 1.0));
    assert_eq!(field(build(lower_restore)).0, "restore_at");
    let equal = Tiers::new(zero())
        .tier("a", Threshold::new(5.0, 2.0))
        .tier("b", Threshold::new(5.0, 2.0));
    assert!(build(equal).is_ok());
}

#[test]
fn switches_and_levels_are_checked() {
    assert_eq!(field(build(Tiers::new(zero()))).0, "tiers");
    assert_eq!(
        field(build(Tiers::new(zero()).tier("", Threshold::new(1.0, 0.0)))).0,
        "switch"
    );
    assert_eq!(
        field(build(Tiers::new(zero()).tier_level(
            "a",
            0,
            Threshold::new(1.0, 0.0)
        ))),
        (
            "level",
            "tier of `a`: level 0 is on; degrade to 1 or more".to_string()
        )
    );
    let falling = Tiers::new(zero())
        .tier_level("a", 2, Threshold::new(1.0, 0.0))
        .tier_level("a", 1, Threshold::new(2.0, 0.5));
    assert_eq!(
        field(build(falling)),
        (
            "level",
            "switch `a` must rise along the tiers, got level 1 after 2".to_string()
        )
    );
    // `tier` is the highest level; after a `tier_level` of that level it would not rise.
    let off_twice = Tiers::new(zero())
        .tier_level("a", 1, Threshold::new(1.0, 0.0))
        .tier("a", Threshold::new(2.0, 0.5));
    assert_eq!(field(build(off_twice)).0, "level");

    let manual = || Switches::builder().manual_evaluation();
    assert_eq!(field(manual().switch("").build()).0, "switch");
    assert_eq!(
        field(manual().switch("a").switch("a").build()),
        ("switch", "`a` is declared twice".to_string())
    );
    assert_eq!(field(manual().switch_levels("a", 0).build()).0, "levels");
    assert_eq!(
        field(manual().interval(Duration::ZERO).build()).0,
        "interval"
    );
    assert!(manual().min_dwell(Duration::ZERO).build().is_ok());
}

#[test]
fn a_background_evaluation_needs_a_runtime() {
    let err = Switches::builder().switch("a").build().unwrap_err();
    assert_eq!(err.field(), "runtime");
    assert!(Switches::builder()
        .switch("a")
        .manual_evaluation()
        .build()
        .is_ok());
}

/// A runtime without timers cannot run the background evaluation: refused at build,
/// rather than accepted with a task that dies making its first tick.
#[test]
fn a_background_evaluation_needs_a_runtime_with_timers() {
    let (no_timers, timers) = (
        tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap(),
        tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap(),
    );
    let build =
        || Switches::builder().tiers(Tiers::new(zero()).tier("a", Threshold::new(1.0, 0.0)));
    let (field, problem) = no_timers.block_on(async { field(build().build()) });
    assert_eq!(field, "runtime");
    assert!(problem.contains("`enable_time`"), "{problem}");
    no_timers.block_on(async { build().manual_evaluation().build().unwrap() });
    timers.block_on(async { build().build().unwrap() });
}

#[test]
fn an_interval_is_at_most_a_day() {
    let interval = |d: Duration| Switches::builder().interval(d).manual_evaluation().build();
    assert_eq!(
        field(interval(Duration::from_secs(86_401))),
        (
            "interval",
            "must be at most 24 hours, got 86401s".to_string()
        )
    );
    assert_eq!(field(interval(Duration::MAX)).0, "interval");
    assert!(interval(Duration::from_secs(86_400)).is_ok());
}

#[test]
fn recorders_are_checked() {
    let window = |w: Duration| Recorder::builder().window(w).build().unwrap_err().field();
    assert_eq!(window(Duration::ZERO), "window");
    assert_eq!(window(Duration::from_secs(86_401)), "window", "over a day");
    assert_eq!(window(Duration::MAX), "window");
    let day = Recorder::builder()
        .window(Duration::from_secs(86_400))
        .build()
        .unwrap();
    assert_eq!(
        format!("{day:?}"),
        r#"Recorder { name: "calls", window: 86400s, slots: 10, min_calls: 10 }"#
    );
    let slots = |n: usize| Recorder::builder().slots(n).build().map(|_| ());
    assert_eq!(slots(0).unwrap_err().field(), "slots");
    assert_eq!(slots(101).unwrap_err().field(), "slots");
    assert!(slots(100).is_ok());
    let short = Recorder::builder()
        .window(Duration::from_millis(9))
        .slots(10)
        .build()
        .unwrap_err();
    assert_eq!(
        (short.field(), short.problem()),
        ("slots", "each slot (window / slots) must be at least 1 ms")
    );
    let recorder = Recorder::builder().build().unwrap();
    for bad in [0.0, -0.5, 1.5, f64::NAN, f64::INFINITY] {
        assert_eq!(
            recorder.latency(bad).unwrap_err().field(),
            "quantile",
            "{bad}"
        );
    }
    assert!(recorder.latency(1.0).is_ok());
    assert_eq!(
        recorder.quantile(f64::NAN),
        None,
        "a bad quantile read is None, no panic"
    );
}
