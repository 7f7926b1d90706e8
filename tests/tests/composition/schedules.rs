//! The proptest strategies of the fault schedules: faults, requests, client settings.

use std::time::Duration;

use http::StatusCode;
use proptest::prelude::*;
use tower_bulwark::chaos::Latency;

use super::dependency::Faults;
use super::drive::Planned;
use super::stacks::ClientSetup;

fn ms(millis: u64) -> Duration {
    Duration::from_millis(millis)
}

/// Faults in a window of 0.2 to 5 s starting in the first 1.5 s: up to 80% error
/// statuses, 20% aborts, 40% hangs, and latency up to 1.5 s.
pub(crate) fn faults() -> impl Strategy<Value = Faults> {
    (
        any::<u64>(),
        (
            0.0..0.8f64,
            prop::sample::select(vec![500u16, 502, 503, 429]),
            0.0..0.2f64,
        ),
        (0.0..1.0f64, 0u64..1500, 0.0..0.4f64),
        (0u64..1500, 200u64..5000),
    )
        .prop_map(|(seed, errors, delays, (from, length))| Faults {
            seed,
            error_rate: errors.0,
            status: StatusCode::from_u16(errors.1).expect("valid status"),
            abort_rate: errors.2,
            latency: (
                delays.0,
                Latency::Uniform {
                    min: Duration::ZERO,
                    max: ms(delays.1),
                },
            ),
            hang_rate: delays.2,
            window: (ms(from), ms(from + length)),
        })
}

/// Up to 24 requests within 2 s, on three paths, most with a deadline, some callers giving
/// up early.
pub(crate) fn plan() -> impl Strategy<Value = Vec<Planned>> {
    let planned = (
        0u64..2000,
        0u8..3,
        prop::option::weighted(0.7, 20u64..2500),
        prop::option::weighted(0.15, 1u64..2000),
        prop::sample::select(vec![None, Some("critical"), Some("sheddable")]),
    )
        .prop_map(|(at, path, deadline, give_up, criticality)| Planned {
            at: ms(at),
            path,
            deadline: deadline.map(ms),
            give_up: give_up.map(ms),
            criticality,
        });
    prop::collection::vec(planned, 1..=24)
}

/// The client's settings: a budget of 0 to 100%, a fallback or none, a bulkhead of 1 to 4
/// permits with a short queue or none, attempt timeouts and open durations within a run.
pub(crate) fn client_setup() -> impl Strategy<Value = ClientSetup> {
    (
        (
            any::<u64>(),
            prop::sample::select(vec![0.0, 0.2, 0.5, 1.0]),
            any::<bool>(),
        ),
        // No queue half the time: invariant 6 holds only without one.
        (
            1usize..=4,
            prop::sample::select(vec![0usize, 0, 1, 2]),
            20u64..1500,
        ),
        200u64..1500,
        200u64..3000,
    )
        .prop_map(
            |((seed, budget, fallback), (permits, queue, wait), timeout, open)| ClientSetup {
                seed,
                budget,
                bulkhead: (permits, queue, ms(wait)),
                attempt_timeout: ms(timeout),
                open: ms(open),
                fallback,
                ..ClientSetup::default()
            },
        )
}
