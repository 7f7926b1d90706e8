//! [`Recorder`]: latencies and outcomes over a sliding window, the source of the latency
//! and error-rate signals.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering::Acquire, Ordering::Relaxed, Ordering::Release};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::time::Instant;
use tower_bulwark_core::config::{non_zero, non_zero_duration};
use tower_bulwark_core::{ConfigError, Name};

use crate::buckets::{self, BUCKETS};
use crate::config::at_most_a_day;
use crate::signal::number;
use crate::Signal;

/// Latencies and outcomes of calls over a sliding window: fed by
/// [`RecordLayer`](crate::RecordLayer) or [`Recorder::record`], read as a latency
/// percentile ([`Recorder::latency`]) or an error rate ([`Recorder::error_rate`]).
///
/// The window is a ring of slots (10 by default), each a set of counters: recording is a
/// few atomic additions, with no lock and no allocation (a short lock once per slot, to
/// clear it for reuse); memory is fixed by the number of slots, whatever the traffic.
/// Latencies are kept in 16 buckets per doubling, so a percentile reads at most 6.25%
/// high, never low.
///
/// With fewer than `min_calls` calls in the window (10 by default) both readings are 0:
/// no evidence of trouble. So a feature whose own calls fed the signal comes back once
/// it was switched off long enough for the window to empty (and goes off again if its
/// calls are still slow): it is never stuck off for want of data.
///
/// Clones share the window.
///
/// ```
/// use std::time::Duration;
/// use tower_bulwark_degrade::Recorder;
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let recorder = Recorder::builder().window(Duration::from_secs(10)).min_calls(1).build().unwrap();
/// for ms in [10, 20, 30, 400] {
///     recorder.record(Duration::from_millis(ms), ms < 400);
/// }
/// assert_eq!(recorder.quantile(0.5), Some(Duration::from_micros(20_479)));
/// assert_eq!(recorder.error_ratio(), Some(0.25));
/// # }
/// ```
#[derive(Clone)]
pub struct Recorder {
    window: Arc<Window>,
}

/// Builds a [`Recorder`]. Defaults: a 10 s window of 10 slots, 10 calls at least.
#[derive(Debug, Clone)]
pub struct RecorderBuilder {
    name: Name,
    window: Duration,
    slots: usize,
    min_calls: u64,
}

struct Window {
    name: Name,
    origin: Instant,
    slot_nanos: u64,
    slots: Box<[Slot]>,
    min_calls: u64,
    /// Held while a slot is cleared for a new epoch.
    clearing: Mutex<()>,
}

struct Slot {
    /// The epoch (slot-length periods since `origin`) the counters belong to, plus one; 0
    /// for a slot never used.
    epoch: AtomicU64,
    /// Calls with an outcome (success or failure).
    outcomes: AtomicU64,
    failures: AtomicU64,
    /// Latencies recorded, by bucket.
    latencies: Box<[AtomicU64]>,
    latency_count: AtomicU64,
}

impl Recorder {
    /// Starts configuring a recorder.
    pub fn builder() -> RecorderBuilder {
        RecorderBuilder {
            name: Name::from("calls"),
            window: Duration::from_secs(10),
            slots: 10,
            min_calls: 10,
        }
    }

    /// Records a call that took `latency` and succeeded (`ok`) or failed.
    pub fn record(&self, latency: Duration, ok: bool) {
        self.window.record(Instant::now(), latency, Some(ok));
    }

    /// Records the latency of a call that did not finish (dropped by its caller): it
    /// counts for the latency percentile (a call abandoned after 2 s was at least that
    /// slow), not for the error rate.
    pub(crate) fn record_unfinished(&self, latency: Duration) {
        self.window.record(Instant::now(), latency, None);
    }

    /// The recorder's name, used in its signals' labels.
    pub fn name(&self) -> &str {
        &self.window.name
    }

    /// The latency under which a fraction `q` of the window's calls fall (`0.99`: p99),
    /// rounded up to its bucket; `None` with fewer than `min_calls` calls or a `q` outside
    /// `0..=1` (or NaN).
    pub fn quantile(&self, q: f64) -> Option<Duration> {
        self.window.quantile(Instant::now(), q)
    }

    /// Failed calls / calls with an outcome in the window; `None` with fewer than
    /// `min_calls` of them.
    pub fn error_ratio(&self) -> Option<f64> {
        self.window.error_ratio(Instant::now())
    }

    /// The latency percentile `quantile` in milliseconds, as a [`Signal`] labelled
    /// `"<name> p99 latency"`; 0 with fewer than `min_calls` calls. A `quantile` outside
    /// `0..=1` (or NaN) is a [`ConfigError`] naming `quantile`.
    pub fn latency(&self, quantile: f64) -> Result<Signal, ConfigError> {
        if !(quantile > 0.0 && quantile <= 1.0) {
            return Err(ConfigError::new(
                "quantile",
                format!("must be within 0 (excluded) and 1, got {quantile}"),
            ));
        }
        let window = self.window.clone();
        let label = format!("{} p{} latency", window.name, number(quantile * 100.0));
        Ok(Signal::at(label, move |now| {
            window
                .quantile(now, quantile)
                .map_or(0.0, |latency| latency.as_secs_f64() * 1000.0)
        })
        .unit(" ms"))
    }

    /// The error rate (failed / calls with an outcome, `0..=1`) as a [`Signal`] labelled
    /// `"<name> error rate"`; 0 with fewer than `min_calls` calls.
    pub fn error_rate(&self) -> Signal {
        let window = self.window.clone();
        let label = format!("{} error rate", window.name);
        Signal::at(label, move |now| window.error_ratio(now).unwrap_or(0.0))
    }
}

impl RecorderBuilder {
    /// Names the recorder in its signals' labels (`"checkout p99 latency"`).
    pub fn name(mut self, name: impl Into<Name>) -> Self {
        self.name = name.into();
        self
    }

    /// How far back the readings look (at most 24 hours).
    pub fn window(mut self, window: Duration) -> Self {
        self.window = window;
        self
    }

    /// How many slots the window is made of (1 to 100): the window slides one slot at a
    /// time, so more slots slide more smoothly, at about 5 KiB each.
    pub fn slots(mut self, slots: usize) -> Self {
        self.slots = slots;
        self
    }

    /// The fewest calls in the window for a reading (below, the signals read 0).
    pub fn min_calls(mut self, min_calls: u64) -> Self {
        self.min_calls = min_calls;
        self
    }

    /// The recorder; its window starts now. A `window` zero or over 24 hours, `slots`
    /// outside `1..=100`, or slots shorter than a millisecond are a [`ConfigError`] naming
    /// the field.
    pub fn build(self) -> Result<Recorder, ConfigError> {
        non_zero_duration("window", self.window)?;
        at_most_a_day("window", self.window)?;
        non_zero("slots", self.slots)?;
        if self.slots > 100 {
            return Err(ConfigError::new(
                "slots",
                format!("must be at most 100, got {}", self.slots),
            ));
        }
        let slot_nanos =
            u64::try_from(self.window.as_nanos() / self.slots as u128).unwrap_or(u64::MAX);
        if slot_nanos < 1_000_000 {
            return Err(ConfigError::new(
                "slots",
                "each slot (window / slots) must be at least 1 ms",
            ));
        }
        let slots = (0..self.slots)
            .map(|_| Slot {
                epoch: AtomicU64::new(0),
                outcomes: AtomicU64::new(0),
                failures: AtomicU64::new(0),
                latencies: (0..BUCKETS).map(|_| AtomicU64::new(0)).collect(),
                latency_count: AtomicU64::new(0),
            })
            .collect();
        Ok(Recorder {
            window: Arc::new(Window {
                name: self.name,
                origin: Instant::now(),
                slot_nanos,
                slots,
                min_calls: self.min_calls,
                clearing: Mutex::new(()),
            }),
        })
    }
}

impl Window {
    fn epoch(&self, now: Instant) -> u64 {
        let nanos = now.saturating_duration_since(self.origin).as_nanos();
        u64::try_from(nanos / u128::from(self.slot_nanos)).unwrap_or(u64::MAX - 1)
    }

    fn record(&self, now: Instant, latency: Duration, ok: Option<bool>) {
        let epoch = self.epoch(now);
        let slot = &self.slots[(epoch % self.slots.len() as u64) as usize];
        let tag = epoch + 1;
        if slot.epoch.load(Acquire) < tag {
            self.clear(slot, tag);
        }
        if let Some(ok) = ok {
            slot.outcomes.fetch_add(1, Relaxed);
            if !ok {
                slot.failures.fetch_add(1, Relaxed);
            }
        }
        let micros = u64::try_from(latency.as_micros()).unwrap_or(u64::MAX);
        slot.latencies[buckets::index(micros)].fetch_add(1, Relaxed);
        slot.latency_count.fetch_add(1, Relaxed);
    }

    /// Empties `slot` for the epoch tagged `tag`, once: the counters are zeroed before the
    /// new tag is published, so a call that sees the tag adds to empty counters.
    #[cold]
    fn clear(&self, slot: &Slot, tag: u64) {
        let _clearing = self.clearing.lock().unwrap_or_else(PoisonError::into_inner);
        if slot.epoch.load(Acquire) >= tag {
            return;
        }
        slot.outcomes.store(0, Relaxed);
        slot.failures.store(0, Relaxed);
        slot.latency_count.store(0, Relaxed);
        for bucket in slot.latencies.iter() {
            bucket.store(0, Relaxed);
        }
        slot.epoch.store(tag, Release);
    }

    /// The slots holding the window that ends at `now`.
    fn live(&self, now: Instant) -> impl Iterator<Item = &Slot> {
        let current = self.epoch(now) + 1;
        let len = self.slots.len() as u64;
        self.slots.iter().filter(move |slot| {
            let tag = slot.epoch.load(Acquire);
            tag != 0 && tag <= current && current - tag < len
        })
    }

    fn quantile(&self, now: Instant, q: f64) -> Option<Duration> {
        if !(0.0..=1.0).contains(&q) {
            return None;
        }
        let total: u64 = self.live(now).map(|s| s.latency_count.load(Relaxed)).sum();
        if total == 0 || total < self.min_calls {
            return None;
        }
        let rank = nearest_rank(q, total);
        let mut seen = 0;
        let mut last = 0;
        for bucket in 0..BUCKETS {
            let count: u64 = self
                .live(now)
                .map(|s| s.latencies[bucket].load(Relaxed))
                .sum();
            if count > 0 {
                last = bucket;
                seen += count;
                if seen >= rank {
                    break;
                }
            }
        }
        Some(Duration::from_micros(buckets::upper_bound(last)))
    }

    fn error_ratio(&self, now: Instant) -> Option<f64> {
        let (outcomes, failures) = self.live(now).fold((0, 0), |(o, f), s| {
            (o + s.outcomes.load(Relaxed), f + s.failures.load(Relaxed))
        });
        if outcomes == 0 || outcomes < self.min_calls {
            return None;
        }
        Some((failures as f64 / outcomes as f64).min(1.0))
    }
}

/// The nearest rank of quantile `q` among `total` values: the smallest `k` (at least 1)
/// with `k >= q * total`. A `q` written in decimal (0.55) is stored as the nearest binary
/// fraction, a hair above or below, and `q * total` rounds again: a product within a few
/// of its last bits of a whole number is that number, so p55 of 100 is the 55th, not the
/// 56th.
fn nearest_rank(q: f64, total: u64) -> u64 {
    let exact = q * total as f64;
    let whole = exact.round();
    let rank = if (exact - whole).abs() <= exact * 4.0 * f64::EPSILON {
        whole
    } else {
        exact.ceil()
    };
    (rank as u64).clamp(1, total)
}

impl fmt::Debug for Recorder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let w = &self.window;
        f.debug_struct("Recorder")
            .field("name", &w.name)
            .field(
                "window",
                &Duration::from_nanos(w.slot_nanos * w.slots.len() as u64),
            )
            .field("slots", &w.slots.len())
            .field("min_calls", &w.min_calls)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_nearest_rank_is_exact_for_decimal_quantiles() {
        // `k / scale` rounds to the same binary fraction as the decimal written out.
        for total in 1..=1_000u64 {
            for scale in [100, 1_000, 10_000] {
                for k in 1..=scale {
                    let q = k as f64 / scale as f64;
                    let expected = (k * total).div_ceil(scale);
                    assert_eq!(nearest_rank(q, total), expected, "q {q}, total {total}");
                }
            }
        }
        assert_eq!(nearest_rank(0.0, 10), 1, "the lowest rank is 1");
        assert_eq!(nearest_rank(1.0, 10), 10);
        assert_eq!(
            nearest_rank(0.5000001, 100),
            51,
            "a hair over is the next rank"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn the_window_forgets_one_slot_at_a_time() {
        let recorder = Recorder::builder()
            .window(Duration::from_secs(10))
            .min_calls(1)
            .build()
            .unwrap();
        recorder.record(Duration::from_millis(500), false);
        tokio::time::advance(Duration::from_secs(5)).await;
        recorder.record(Duration::from_millis(10), true);
        assert_eq!(recorder.error_ratio(), Some(0.5));
        tokio::time::advance(Duration::from_millis(4_999)).await;
        assert_eq!(
            recorder.error_ratio(),
            Some(0.5),
            "the first slot is still in"
        );
        tokio::time::advance(Duration::from_millis(1)).await;
        assert_eq!(
            recorder.error_ratio(),
            Some(0.0),
            "10 s later its slot is out"
        );
        assert_eq!(recorder.quantile(1.0), Some(Duration::from_micros(10_239)));
        tokio::time::advance(Duration::from_secs(5)).await;
        assert_eq!(recorder.error_ratio(), None);
        // The slot is reused, cleared, ten windows later.
        tokio::time::advance(Duration::from_secs(100)).await;
        recorder.record(Duration::from_millis(1), true);
        assert_eq!(recorder.error_ratio(), Some(0.0));
        assert_eq!(recorder.quantile(1.0), Some(Duration::from_micros(1_023)));
    }
}
