//! [`Signal`]: a number the switches watch, read once per evaluation.

use std::collections::VecDeque;
use std::fmt;
use std::time::Duration;

use tokio::time::Instant;
#[cfg(any(feature = "bulkhead", feature = "shed"))]
use tower_bulwark_core::config::non_zero_duration;
#[cfg(any(feature = "bulkhead", feature = "shed"))]
use tower_bulwark_core::ConfigError;
use tower_bulwark_core::Name;

type Read = Box<dyn FnMut(Instant) -> f64 + Send>;

/// A measure of pressure that [`Tiers`](crate::Tiers) compare with their thresholds:
/// higher is worse. It is read once per evaluation, with the evaluation's time, never on
/// the request path.
///
/// Sources: a closure ([`Signal::new`]), a [`Recorder`](crate::Recorder)'s latency
/// percentile or error rate, a circuit breaker's state (feature `breaker`), a bulkhead's or
/// shedding layer's refusals per second (features `bulkhead`, `shed`), the health of a
/// registered check (`tower-bulwark-health`, feature `degrade`: `Health::status_signal`).
///
/// A reading of NaN means "no opinion": the tiers on this signal hold their state. A
/// closure that panics reads as NaN (and is logged), so one bad signal cannot stop the
/// others being evaluated.
///
/// ```
/// use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
/// use std::sync::Arc;
/// use tower_bulwark_degrade::Signal;
///
/// let queue_depth = Arc::new(AtomicU64::new(0));
/// let depth = queue_depth.clone();
/// let signal = Signal::new("queue depth", move || depth.load(Relaxed) as f64).unit(" jobs");
/// assert_eq!(signal.label(), "queue depth");
/// ```
pub struct Signal {
    label: Name,
    unit: &'static str,
    read: Read,
}

impl Signal {
    /// A signal read by `read`, named `label` in reasons (`"queue depth 812 >= 500"`).
    pub fn new(label: impl Into<Name>, mut read: impl FnMut() -> f64 + Send + 'static) -> Self {
        Signal::at(label, move |_| read())
    }

    /// A signal whose reading depends on the evaluation's time (a rate over a window).
    pub fn at(label: impl Into<Name>, read: impl FnMut(Instant) -> f64 + Send + 'static) -> Self {
        Signal {
            label: label.into(),
            unit: "",
            read: Box::new(read),
        }
    }

    /// The unit written after values in reasons: `" ms"`, `"/s"`.
    pub fn unit(mut self, unit: &'static str) -> Self {
        self.unit = unit;
        self
    }

    /// Renames the signal (its label in reasons).
    pub fn named(mut self, label: impl Into<Name>) -> Self {
        self.label = label.into();
        self
    }

    /// The name used in reasons.
    pub fn label(&self) -> &str {
        &self.label
    }

    /// Reads the signal; a panic reads as NaN.
    pub(crate) fn read(&mut self, now: Instant) -> f64 {
        let read = &mut self.read;
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| read(now))).unwrap_or_else(|_| {
            tracing::error!(target: "tower_bulwark", signal = %self.label, "degrade signal panicked");
            f64::NAN
        })
    }

    /// `"<label> <value><unit> <op> <threshold><unit>"`, the reason of a flip.
    pub(crate) fn reason(&self, value: f64, op: &str, threshold: f64) -> String {
        let unit = self.unit;
        format!(
            "{} {}{unit} {op} {}{unit}",
            self.label,
            number(value),
            number(threshold)
        )
    }

    /// A circuit breaker's state (feature `breaker`): 0 closed (or disabled, or in shadow
    /// mode), 0.5 half-open, 1 open or forced open. `Threshold::new(1.0, 0.0)` switches a
    /// feature off while the breaker is open and back on once it has closed.
    #[cfg(feature = "breaker")]
    pub fn breaker(handle: tower_bulwark_breaker::BreakerHandle) -> Self {
        use tower_bulwark_breaker::State;
        let label = format!("breaker `{}` state", handle.name());
        Signal::new(label, move || match handle.state() {
            State::Open | State::ForcedOpen => 1.0,
            State::HalfOpen => 0.5,
            _ => 0.0,
        })
    }

    /// A bulkhead's refusals per second over `window` (feature `bulkhead`): calls refused
    /// because its queue was full, their wait ran out or their deadline was too near.
    /// Zero `window` is a [`ConfigError`].
    #[cfg(feature = "bulkhead")]
    pub fn bulkhead_refusals(
        handle: tower_bulwark_bulkhead::BulkheadHandle,
        window: Duration,
    ) -> Result<Self, ConfigError> {
        non_zero_duration("window", window)?;
        let label = format!("bulkhead `{}` refusals", handle.name());
        let mut rate = CounterRate::new(window);
        Ok(Signal::at(label, move |now| {
            let s = handle.snapshot();
            let refused = s.rejected_queue_full + s.rejected_wait_timeout + s.rejected_deadline;
            rate.per_second(now, refused)
        })
        .unit("/s"))
    }

    /// A shedding layer's sheds per second over `window`, every tier counted (feature
    /// `shed`; in shadow mode, the calls it would have shed). Zero `window` is a
    /// [`ConfigError`].
    #[cfg(feature = "shed")]
    pub fn shed_refusals(
        handle: tower_bulwark_shed::ShedHandle,
        window: Duration,
    ) -> Result<Self, ConfigError> {
        non_zero_duration("window", window)?;
        let mut rate = CounterRate::new(window);
        Ok(Signal::at("shed refusals", move |now| {
            rate.per_second(now, handle.snapshot().shed.iter().sum())
        })
        .unit("/s"))
    }
}

impl fmt::Debug for Signal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Signal")
            .field("label", &self.label)
            .field("unit", &self.unit)
            .finish()
    }
}

/// A number for people: at most four decimals, no trailing zeros.
pub(crate) fn number(value: f64) -> String {
    let text = format!("{value:.4}");
    match text.split_once('.') {
        Some((whole, fraction)) => {
            let fraction = fraction.trim_end_matches('0');
            if fraction.is_empty() {
                whole.to_string()
            } else {
                format!("{whole}.{fraction}")
            }
        }
        None => text,
    }
}

/// The rate of a growing counter over a window, from the readings of the evaluations: the
/// growth since the newest reading at least `window` old (or the oldest kept), per second.
/// Keeps one reading per evaluation within the window, at most [`CounterRate::MAX`].
#[cfg_attr(
    not(any(feature = "bulkhead", feature = "shed", test)),
    allow(dead_code)
)]
pub(crate) struct CounterRate {
    window: Duration,
    readings: VecDeque<(Instant, u64)>,
}

#[cfg_attr(
    not(any(feature = "bulkhead", feature = "shed", test)),
    allow(dead_code)
)]
impl CounterRate {
    /// The most readings kept: evaluations more frequent than `window / MAX` shorten it.
    const MAX: usize = 1024;

    pub(crate) fn new(window: Duration) -> Self {
        CounterRate {
            window,
            readings: VecDeque::new(),
        }
    }

    /// Counts `count` at `now`; the counter's growth per second over the window. The first
    /// reading has nothing to compare with: 0. A counter that went back (reset) counts from
    /// where it is.
    pub(crate) fn per_second(&mut self, now: Instant, count: u64) -> f64 {
        while self.readings.len() >= 2
            && now.saturating_duration_since(self.readings[1].0) >= self.window
        {
            self.readings.pop_front();
        }
        if self.readings.back().is_some_and(|&(_, last)| count < last) {
            self.readings.clear();
        }
        let (since, base) = self.readings.front().copied().unwrap_or((now, count));
        if self.readings.len() == Self::MAX {
            self.readings.pop_front();
        }
        self.readings.push_back((now, count));
        let elapsed = now.saturating_duration_since(since).as_secs_f64();
        if elapsed > 0.0 {
            (count - base) as f64 / elapsed
        } else {
            0.0
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_are_short() {
        assert_eq!(number(812.0), "812");
        assert_eq!(number(0.0125), "0.0125");
        assert_eq!(number(0.5), "0.5");
        assert_eq!(number(1.0 / 3.0), "0.3333");
        assert_eq!(number(f64::NAN), "NaN");
    }

    #[tokio::test(start_paused = true)]
    async fn a_counter_rate_is_its_growth_per_second_over_the_window() {
        let mut rate = CounterRate::new(Duration::from_secs(10));
        let start = Instant::now();
        let at = |s: u64| start + Duration::from_secs(s);
        assert_eq!(rate.per_second(at(0), 100), 0.0, "nothing to compare yet");
        assert_eq!(rate.per_second(at(1), 110), 10.0);
        assert_eq!(rate.per_second(at(5), 150), 10.0);
        // At 12 s the newest reading at least 10 s old is the one at 1 s.
        assert_eq!(rate.per_second(at(12), 220), 10.0);
        assert_eq!(
            rate.readings.len(),
            3,
            "readings older than the base are dropped"
        );
        // Quiet for a whole window: back to zero.
        assert_eq!(rate.per_second(at(22), 220), 0.0);
        // A reset counter starts over instead of reading as a huge rate.
        assert_eq!(rate.per_second(at(23), 5), 0.0);
        assert_eq!(rate.per_second(at(24), 15), 10.0);
    }

    #[tokio::test(start_paused = true)]
    async fn a_counter_rate_keeps_a_bounded_number_of_readings() {
        let mut rate = CounterRate::new(Duration::from_secs(3600));
        let start = Instant::now();
        for i in 0..5000u64 {
            rate.per_second(start + Duration::from_millis(i), i);
        }
        assert_eq!(rate.readings.len(), CounterRate::MAX);
    }
}
