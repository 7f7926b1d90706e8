//! The clock governor reads for [`LocalLimiter`](crate::LocalLimiter): tokio's, so that
//! `#[tokio::test(start_paused = true)]` drives the limiter as it drives every timer.

use std::ops::Add;
use std::time::Duration;

use governor::clock::{Clock, Reference};
use governor::nanos::Nanos;
use tokio::time::Instant;

/// A reading of [`TokioClock`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct Tick(pub(crate) Instant);

/// Nanoseconds as governor counts them, saturating instead of panicking past 584 years.
pub(crate) fn nanos(duration: Duration) -> Nanos {
    Nanos::from(u64::try_from(duration.as_nanos()).unwrap_or(u64::MAX))
}

impl Add<Nanos> for Tick {
    type Output = Tick;

    fn add(self, other: Nanos) -> Tick {
        // Governor adds at most a burst's worth of intervals to its start; an instant that
        // far off cannot be represented anyway, and panicking is not an answer.
        Tick(self.0.checked_add(other.into()).unwrap_or(self.0))
    }
}

impl Reference for Tick {
    fn duration_since(&self, earlier: Self) -> Nanos {
        nanos(self.0.saturating_duration_since(earlier.0))
    }

    fn saturating_sub(&self, duration: Nanos) -> Self {
        Tick(self.0.checked_sub(duration.into()).unwrap_or(self.0))
    }
}

/// `tokio::time::Instant::now()`, as governor's [`Clock`].
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct TokioClock;

impl Clock for TokioClock {
    type Instant = Tick;

    #[inline]
    fn now(&self) -> Tick {
        Tick(Instant::now())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn ticks_follow_paused_time() {
        let start = TokioClock.now();
        tokio::time::sleep(Duration::from_millis(1500)).await;
        let later = TokioClock.now();
        assert_eq!(later.duration_since(start), Nanos::from(1_500_000_000u64));
        assert_eq!(start.duration_since(later), Nanos::from(0u64));
        assert_eq!(start + Nanos::from(1_500_000_000u64), later);
        assert_eq!(later.saturating_sub(Nanos::from(1_500_000_000u64)), start);
        assert_eq!(nanos(Duration::MAX), Nanos::from(u64::MAX));
    }
}
