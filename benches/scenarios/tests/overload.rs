//! The shedding layer's effect under overload, asserted in virtual time (the full tables
//! are printed by `cargo bench -p tower-bulwark-scenarios`; the same goals over real
//! sockets are measured by `cargo bench -p tower-bulwark-overload`).

use std::time::Duration;

use tower_bulwark_scenarios::{latency_shift, mixed_overload, overload, Guard};

#[test]
fn without_shedding_an_overload_collapses_goodput() {
    let unguarded = overload(4.0, 3, Guard::None);
    assert!(unguarded.goodput_share() < 0.5, "{unguarded:?}");
}

/// The server preset's algorithm, untuned: goodput at least 95% of capacity and the p99
/// of answered calls within twice the unloaded one, from twice to eight times capacity.
#[test]
fn the_presets_algorithm_holds_goodput_and_latency_from_two_to_eight_times_capacity() {
    let unloaded = overload(0.25, 3, Guard::None);
    for load in [2.0, 4.0, 8.0] {
        let run = overload(load, 3, Guard::MinRtt);
        assert!(run.goodput_share() >= 0.95, "{load}x: {run:?}");
        assert!(
            run.p99 <= unloaded.p99 * 2,
            "{load}x: {run:?} vs {unloaded:?}"
        );
    }
}

/// Netflix's algorithms, kept with their semantics: Vegas holds goodput; AIMD (with a
/// latency timeout of twice the service time) and Gradient2 hold latency, giving up
/// goodput (reported in the README, not hidden).
#[test]
fn netflix_algorithms_keep_their_known_shape_at_four_times_capacity() {
    let unloaded = overload(0.25, 3, Guard::None);
    let vegas = overload(4.0, 3, Guard::Vegas);
    assert!(vegas.goodput_share() >= 0.95, "{vegas:?}");
    for guard in [Guard::Aimd, Guard::Gradient2] {
        let run = overload(4.0, 3, guard);
        assert!(run.p99 <= unloaded.p99 * 2, "{guard:?}: {run:?}");
    }
}

/// Tiers borrow: sheddable calls alone may use the whole capacity, and with 70% of the
/// calls sheddable at twice capacity, critical ones still get through.
#[test]
fn sheddable_calls_alone_use_everything_and_yield_to_critical_ones() {
    let alone = mixed_overload(2.0, 3, Guard::MinRtt, 0.0);
    assert!(alone.goodput_share() >= 0.95, "{alone:?}");
    let mixed = mixed_overload(2.0, 5, Guard::MinRtt, 0.3);
    let (critical, ok) = mixed.critical;
    // 99.9% is the goal; the probes of the minimum latency halve the limit for a couple of
    // windows every few seconds, below the critical calls' own demand (README).
    assert!(ok as f64 >= critical as f64 * 0.995, "{mixed:?}");
    assert!(mixed.goodput_share() >= 0.95, "{mixed:?}");
    for guard in [Guard::Vegas, Guard::Aimd, Guard::Gradient2] {
        let run = mixed_overload(2.0, 5, guard, 0.3);
        let (critical, ok) = run.critical;
        assert!(ok as f64 >= critical as f64 * 0.9, "{guard:?}: {run:?}");
    }
}

/// After the service time doubles or halves under overload, the limit settles within 2 s
/// near where it was: the workers, the concurrency capacity, are the same.
#[test]
fn the_limit_settles_within_two_seconds_of_a_latency_shift() {
    for factor in [2.0, 0.5] {
        let run = latency_shift(20, Guard::MinRtt, factor);
        assert!(
            run.settled_after <= Duration::from_secs(2),
            "{factor}x: {run:?}"
        );
        assert!(
            (run.after - run.before).abs() <= run.before * 0.1,
            "{factor}x: {run:?}"
        );
    }
}
