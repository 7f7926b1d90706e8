//! Hedging's effect on the tail, asserted in virtual time (the numbers are reported by
//! `cargo bench -p tower-bulwark-scenarios --bench scenarios`).

use tower_bulwark_scenarios::{tail, Hedging};

#[test]
fn the_learned_p95_cuts_the_tail_for_little_extra_load() {
    let plain = tail(Hedging::None, 0.5, 10, 0.0);
    let hedged = tail(Hedging::OursP95, 0.5, 10, 0.0);
    assert!(
        hedged.p999 * 5 <= plain.p999,
        "p99.9 cut by at least 5x: {hedged:?} vs {plain:?}"
    );
    assert!(hedged.extra_load() <= 0.05 + 1e-9, "{hedged:?}");
    assert!(hedged.extra_load() > 0.0, "{hedged:?}");
}

#[test]
fn no_extra_load_once_the_backend_sheds() {
    let hedged = tail(Hedging::OursP95, 0.5, 10, 0.2);
    assert_eq!(hedged.attempts, hedged.calls, "{hedged:?}");
}
