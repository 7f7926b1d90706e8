//! The shedding layer's effect under overload, asserted in virtual time (the full tables
//! are printed by `cargo bench -p tower-bulwark-scenarios`).

use tower_bulwark_scenarios::{mixed_overload, overload, Guard};

#[test]
fn without_shedding_an_overload_collapses_goodput() {
    let unguarded = overload(4.0, 3, Guard::None);
    assert!(unguarded.goodput_share() < 0.5, "{unguarded:?}");
}

#[test]
fn adaptive_limits_keep_goodput_and_latency_at_four_times_capacity() {
    let unloaded = overload(1.0, 3, Guard::None);
    for guard in [Guard::Aimd, Guard::Gradient2] {
        let run = overload(4.0, 3, guard);
        assert!(run.goodput_share() >= 0.9, "{guard:?}: {run:?}");
        assert!(
            run.p99 <= unloaded.p99 * 2,
            "{guard:?}: {run:?} vs {unloaded:?}"
        );
    }
    // Vegas keeps goodput but lets a queue build (its no-load probe learns the queued
    // latency): reported, not held to the latency target.
    let vegas = overload(4.0, 3, Guard::Vegas);
    assert!(vegas.goodput_share() >= 0.9, "{vegas:?}");
}

#[test]
fn critical_calls_get_through_a_sheddable_flood() {
    for guard in [Guard::Vegas, Guard::Aimd, Guard::Gradient2] {
        let run = mixed_overload(2.0, 5, guard, 0.3);
        let (critical, ok) = run.critical;
        assert!(ok as f64 >= critical as f64 * 0.99, "{guard:?}: {run:?}");
    }
}
