//! The retry budget's effect, asserted in virtual time (the numbers are reported by
//! `cargo bench --bench scenarios`).

use tower_bulwark_scenarios::retry_amplification;

#[test]
fn a_budget_caps_the_load_of_an_outage() {
    let plain = retry_amplification(100, 20, 1.0, None);
    assert!(
        (plain.load() - 3.0).abs() < 1e-9,
        "plain retries triple the load: {plain:?}"
    );
    let budgeted = retry_amplification(100, 20, 1.0, Some(0.1));
    // 10% of calls plus the minimum of 10 retries per second over 20 s (200 of 2000 calls),
    // give or take the retries of one expiring time slice.
    let allowance = 1.1 + 10.0 * 20.0 / 2000.0;
    assert!(budgeted.load() <= allowance + 0.005, "{budgeted:?}");
    assert!(budgeted.load() > 1.1, "the budget is used: {budgeted:?}");
}

#[test]
fn a_budget_does_not_block_the_retries_that_rescue_calls() {
    let plain = retry_amplification(100, 20, 0.1, None);
    let budgeted = retry_amplification(100, 20, 0.1, Some(0.1));
    assert!(plain.success() > 0.99, "{plain:?}");
    assert_eq!(
        budgeted.succeeded, plain.succeeded,
        "{budgeted:?} vs {plain:?}"
    );
}
