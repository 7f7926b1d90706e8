//! How long the breaker stays open: fixed, or growing across consecutive trips.

use std::time::Duration;

/// How long the breaker stays open before it lets a probe through.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum OpenDuration {
    /// The same wait after every trip.
    Fixed(Duration),
    /// A wait that grows with each trip that follows another without a healthy period in
    /// between: `initial`, then times `multiplier` per trip, capped at `max`; each wait is
    /// spread by up to `jitter` (a fraction: 0.1 = ±10%, never past `max`) so that many
    /// clients do not probe in step. After `reset_after` of closed, healthy running the next
    /// trip starts from `initial` again.
    Exponential {
        /// The first wait.
        initial: Duration,
        /// The growth per consecutive trip, at least 1.
        multiplier: f64,
        /// The longest wait.
        max: Duration,
        /// The spread, within `0..=1`.
        jitter: f64,
        /// The healthy period that resets the growth.
        reset_after: Duration,
    },
}

impl OpenDuration {
    /// Growth from 30 s, doubling up to 5 min with 10% jitter, reset after 10 min closed:
    /// 30 s, 1 min, 2 min, 4 min, 5 min, 5 min, ...
    pub const STANDARD_EXPONENTIAL: OpenDuration = OpenDuration::Exponential {
        initial: Duration::from_secs(30),
        multiplier: 2.0,
        max: Duration::from_secs(300),
        jitter: 0.1,
        reset_after: Duration::from_secs(600),
    };

    /// The wait after the `trip`-th consecutive trip (1 for the first), with `random` a
    /// uniform number in `0..1` for the jitter.
    pub(crate) fn wait(&self, trip: u32, random: f64) -> Duration {
        match *self {
            OpenDuration::Fixed(wait) => wait,
            OpenDuration::Exponential {
                initial,
                multiplier,
                max,
                jitter,
                ..
            } => {
                let exponent = i32::try_from(trip.saturating_sub(1)).unwrap_or(i32::MAX);
                let grown = initial.as_secs_f64() * multiplier.powi(exponent);
                let spread = 1.0 + jitter * (2.0 * random - 1.0);
                let seconds = (grown.min(max.as_secs_f64()) * spread).min(max.as_secs_f64());
                Duration::try_from_secs_f64(seconds.max(0.0)).unwrap_or(max)
            }
        }
    }

    /// How long a breaker must run closed before the growth starts over.
    pub(crate) fn reset_after(&self) -> Option<Duration> {
        match *self {
            OpenDuration::Fixed(_) => None,
            OpenDuration::Exponential { reset_after, .. } => Some(reset_after),
        }
    }
}

#[cfg(all(test, not(bulwark_loom)))]
mod tests {
    use super::*;

    #[test]
    fn fixed_is_fixed() {
        let open = OpenDuration::Fixed(Duration::from_secs(5));
        assert_eq!(open.wait(1, 0.3), Duration::from_secs(5));
        assert_eq!(open.wait(40, 0.9), Duration::from_secs(5));
        assert_eq!(open.reset_after(), None);
    }

    #[test]
    fn exponential_grows_to_its_cap() {
        let open = OpenDuration::Exponential {
            initial: Duration::from_secs(30),
            multiplier: 2.0,
            max: Duration::from_secs(300),
            jitter: 0.0,
            reset_after: Duration::from_secs(600),
        };
        let waits: Vec<u64> = (1..=6).map(|trip| open.wait(trip, 0.5).as_secs()).collect();
        assert_eq!(waits, [30, 60, 120, 240, 300, 300]);
        assert_eq!(open.wait(u32::MAX, 0.5), Duration::from_secs(300));
    }

    #[test]
    fn jitter_spreads_within_bounds_and_never_past_the_cap() {
        let open = OpenDuration::STANDARD_EXPONENTIAL;
        assert_eq!(open.wait(1, 0.0), Duration::from_secs(27));
        assert_eq!(open.wait(1, 1.0), Duration::from_secs(33));
        assert_eq!(open.wait(10, 1.0), Duration::from_secs(300));
        assert_eq!(open.wait(10, 0.0), Duration::from_secs(270));
    }
}
