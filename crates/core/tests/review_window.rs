//! Review of `SlidingCounts` (issue 16): cases the module's own tests do not cover.

use std::time::Duration;

use tower_bulwark_core::window::SlidingCounts;

/// After an idle gap: the clear on the first add after the gap only touches tags
/// from the last window before it, so an older tag survives and wraps back into view.
#[test]
fn an_old_tag_survives_the_idle_gap_clear_and_wraps_back_into_the_window() {
    let window = SlidingCounts::<1>::new(Duration::from_nanos(4), 4);
    window.add(0, [1]); // slot 0, tag 0
    window.add(3, [1]); // slot 3 (no idle gap)
    window.add(5, [1]); // slot 1
    window.add(6, [1]); // slot 2
    window.add(7, [1]); // slot 3; latest 7; slot 0 still tagged 0, expired
    let wrapped = 1u64 << 32;
    // First add after a long gap: clears tags 4..=7 (slots 1..3), not slot 0's tag 0.
    window.add(wrapped + 1, [1]);
    assert_eq!(
        window.totals(wrapped + 1),
        [1],
        "tag 0 wrapped back into the window"
    );
}

/// An add whose `now` is a whole window behind the latest epoch (a thread preempted
/// between reading the clock and adding, or a slow clock read on another core) lands in the
/// ring slot of a live bucket, and since the tags differ, it *replaces* that bucket's count
/// instead of being dropped: counts of the current window are lost.
#[test]
fn a_stale_add_a_window_behind_overwrites_a_live_bucket() {
    // 4 buckets of 10 ns.
    let window = SlidingCounts::<1>::new(Duration::from_nanos(40), 4);
    for _ in 0..100 {
        window.add(100, [1]); // epoch 10, slot 2
    }
    assert_eq!(window.totals(100), [100]);
    // A late add taken at t = 60 (epoch 6, slot 2): already out of the window at 100.
    window.add(60, [1]);
    assert_eq!(
        window.totals(100),
        [100],
        "the 100 calls of the live bucket were replaced by one expired call"
    );
}
