//! The layout of the breaker's shared state, and how a decision reads it.

use std::mem::{align_of, offset_of, size_of};
use std::ops::Range;

use super::*;

/// The cache-line-sized blocks (128 bytes: a line and its prefetched pair) that `bytes`
/// of a `Breaker` touch.
fn lines(bytes: Range<usize>) -> Range<usize> {
    bytes.start / 128..(bytes.end - 1) / 128 + 1
}

fn field<T>(offset: usize) -> Range<usize> {
    offset..offset + size_of::<T>()
}

/// The words every admission reads share no cache line with counters
/// that calls write, so recording on one core does not slow admission on the others.
#[test]
fn admission_state_and_per_call_counters_do_not_share_cache_lines() {
    let read_by_every_call = [
        field::<AtomicU8>(offset_of!(Breaker, mode)),
        field::<AtomicU64>(offset_of!(Breaker, phase)),
        field::<AtomicU64>(offset_of!(Breaker, open_until)),
        field::<AtomicU64>(offset_of!(Breaker, ramp_until)),
        field::<Config>(offset_of!(Breaker, config)),
        field::<Listeners<BreakerEvent>>(offset_of!(Breaker, listeners)),
        field::<Instant>(offset_of!(Breaker, start)),
    ];
    let written_by_calls = [
        (
            "consecutive_failures",
            field::<AtomicU32>(offset_of!(Breaker, recorded.0.consecutive_failures)),
        ),
        (
            "window",
            field::<Option<Window>>(offset_of!(Breaker, recorded.0.window)),
        ),
        ("probes", field::<Probes>(offset_of!(Breaker, probes))),
        (
            "ramp_calls",
            field::<AtomicU64>(offset_of!(Breaker, counters.0.ramp_calls)),
        ),
        (
            "rejected",
            field::<AtomicU64>(offset_of!(Breaker, counters.0.rejected)),
        ),
        (
            "would_reject",
            field::<AtomicU64>(offset_of!(Breaker, counters.0.would_reject)),
        ),
    ];
    for read in &read_by_every_call {
        for (name, written) in &written_by_calls {
            let (read, written) = (lines(read.clone()), lines(written.clone()));
            assert!(
                read.end <= written.start || written.end <= read.start,
                "`{name}` (lines {written:?}) shares a line with the admission state ({read:?})"
            );
        }
    }
    // A permit clones the `Arc`, writing its counts: they sit before the breaker, on their
    // own line only if the breaker starts on a fresh one.
    assert!(align_of::<Breaker>() >= 128);
}

/// With the shortest open duration and half-open wait the clock passes both between any
/// two readings. A decision is taken at one instant, so it ends: it does not chase the
/// clock from open to half-open, timed out, to open again.
#[test]
fn a_decision_does_not_chase_the_clock() {
    let (config, ..) = crate::Builder::default()
        .consecutive_failures(1)
        .open_duration(crate::OpenDuration::Fixed(Duration::from_nanos(1)))
        .half_open_max_wait(Duration::from_nanos(1))
        .into_parts()
        .unwrap();
    let breaker = Stripe::new(Arc::new(Breaker::new(config, Listeners::new())));
    Breaker::acquire(&breaker)
        .unwrap()
        .finish(Outcome::Failure, None);
    for _ in 0..1_000 {
        drop(Breaker::acquire(&breaker));
    }
}

/// Successes stop reading the window once a check found the minimum: from then on only
/// calls that may have raised a rate check it (see `Recorded::short_of_minimum`).
#[test]
fn successes_stop_checking_the_window_once_the_minimum_is_met() {
    let (config, ..) = crate::Builder::default()
        .no_consecutive_failures()
        .failure_rate(0.5)
        .window(crate::WindowKind::Count(10))
        .minimum_calls(3)
        .into_parts()
        .unwrap();
    let breaker = Stripe::new(Arc::new(Breaker::new(config, Listeners::new())));
    let short = || breaker.recorded.short_of_minimum.load(Relaxed);
    for _ in 0..2 {
        Breaker::acquire(&breaker)
            .unwrap()
            .finish(Outcome::Success, None);
        assert!(short());
    }
    Breaker::acquire(&breaker)
        .unwrap()
        .finish(Outcome::Success, None);
    assert!(!short(), "the call completing the minimum found it met");
    Breaker::acquire(&breaker)
        .unwrap()
        .finish(Outcome::Failure, None);
    assert!(!short());
    assert_eq!(breaker.state(), State::Closed);
}
