//! Limit algorithms: how the concurrency limit follows latency and drops.
//!
//! The semantics and defaults are Netflix's `concurrency-limits` library's: [`Aimd`],
//! [`Vegas`] and [`Gradient2`], plus a [`Fixed`] limit.

use std::fmt;
use std::time::Duration;

use tower_bulwark_core::config::{non_zero, non_zero_duration, ratio};
use tower_bulwark_core::ConfigError;

/// A window of finished calls (or one call), as the algorithm sees it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sample {
    /// How long the calls took, on average.
    pub rtt: Duration,
    /// How long the fastest of them took. A queue that lets even the fastest call of a
    /// window through late is standing, not a passing burst (CoDel's signal). For one call,
    /// its latency.
    pub fastest: Duration,
    /// The most calls in flight when one of them started (itself included).
    pub in_flight: usize,
    /// Whether any of them failed, timed out, or was dropped before it finished (the
    /// classifier said `Failure`, or the caller went away).
    pub dropped: bool,
}

/// Moves a concurrency limit from finished calls.
///
/// Implement it for an algorithm of your own; [`Aimd`], [`Vegas`], [`Gradient2`] and
/// [`Fixed`] come with the crate.
pub trait LimitAlgorithm: Send + 'static {
    /// The limit before any sample.
    fn initial(&self) -> usize;

    /// Takes one sample; returns the new limit (at least 1).
    fn update(&mut self, sample: Sample) -> usize;

    /// Latency estimates worth reporting, if the algorithm keeps any.
    fn rtt(&self) -> RttEstimates {
        RttEstimates::default()
    }
}

/// What an algorithm knows of latency, for the handle and metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
#[non_exhaustive]
pub struct RttEstimates {
    /// The latency with no queueing (Vegas' `rtt_noload`).
    pub no_load: Option<Duration>,
    /// The long-term average (Gradient2's long RTT).
    pub long: Option<Duration>,
    /// The latest sample.
    pub short: Option<Duration>,
}

// === Fixed ===

/// A limit that never moves (the static `ConcurrencyLimit` behaviour, with shedding).
#[derive(Debug, Clone, Copy)]
pub struct Fixed(usize);

impl Fixed {
    /// A fixed limit of `limit` calls (at least 1).
    pub fn new(limit: usize) -> Result<Self, ConfigError> {
        Ok(Fixed(non_zero("limit", limit)?))
    }
}

impl LimitAlgorithm for Fixed {
    fn initial(&self) -> usize {
        self.0
    }

    fn update(&mut self, _sample: Sample) -> usize {
        self.0
    }
}

// === AIMD ===

/// Additive increase, multiplicative decrease: +1 after a success while at least half the
/// limit is in use, × `backoff_ratio` after a drop or a call slower than `timeout`.
///
/// The limit is kept as a fraction and admits its whole part: truncating `limit ×
/// backoff_ratio` at every drop would take a whole call off a small limit each time (4 ×
/// 0.9 is 3), as much as a success adds, and one slow burst would sink it below the
/// service's workers. Defaults (Netflix `AIMDLimit`): initial 20, min 20, max 200, backoff
/// ratio 0.9, timeout 5 s.
#[derive(Debug, Clone)]
pub struct Aimd {
    limit: f64,
    min: usize,
    max: usize,
    backoff_ratio: f64,
    timeout: Duration,
}

impl Default for Aimd {
    fn default() -> Self {
        Aimd::builder().build().expect("valid defaults")
    }
}

impl Aimd {
    /// AIMD with the given settings, checked: `min <= initial <= max`, `min >= 1`,
    /// `0.5 <= backoff_ratio < 1`, `timeout > 0`. [`Aimd::builder`] names them.
    pub fn new(
        initial: usize,
        min: usize,
        max: usize,
        backoff_ratio: f64,
        timeout: Duration,
    ) -> Result<Self, ConfigError> {
        check_bounds(initial, min, max)?;
        if !(0.5..1.0).contains(&backoff_ratio) {
            return Err(ConfigError::new(
                "backoff_ratio",
                format!("must be within 0.5..1, got {backoff_ratio}"),
            ));
        }
        non_zero_duration("timeout", timeout)?;
        Ok(Aimd {
            limit: initial as f64,
            min,
            max,
            backoff_ratio,
            timeout,
        })
    }
}

impl LimitAlgorithm for Aimd {
    fn initial(&self) -> usize {
        self.limit as usize
    }

    fn update(&mut self, sample: Sample) -> usize {
        if sample.dropped || sample.rtt > self.timeout {
            self.limit = (self.limit * self.backoff_ratio).max(self.min as f64);
        } else if sample.in_flight as f64 * 2.0 >= self.limit {
            self.limit = (self.limit + 1.0).min(self.max as f64);
        }
        self.limit as usize
    }
}

// === Vegas ===

/// TCP Vegas for requests: estimates the queue from how far the latency has risen over the
/// no-load latency, grows the limit while the queue is short and shrinks it when it is long
/// or calls drop.
///
/// With `l = max(1, floor(log10(limit)))`: a queue up to `l` grows the limit by `6l`, up
/// to `3l` grows it by `l`, above `6l` shrinks it by `l`; a drop shrinks it by `l`. The
/// no-load latency is the lowest seen since the last probe: every `30 × limit` samples
/// (jittered down to half that) it is reset to the latest latency, so a lasting change of
/// the service's own latency is learned rather than read as a queue forever. Defaults
/// (Netflix `VegasLimit`): initial 20, max 1000, smoothing 1, probe multiplier 30.
#[derive(Debug, Clone)]
pub struct Vegas {
    limit: f64,
    max: usize,
    smoothing: f64,
    rtt_no_load: Option<Duration>,
    last_rtt: Option<Duration>,
    /// Samples since the no-load latency was last reset.
    probe_count: f64,
    /// This probe's jitter, in [0.5, 1).
    probe_jitter: f64,
    /// The jitter generator (splitmix64 state).
    probe_seed: u64,
}

/// Samples between probes, per unit of limit.
const PROBE_MULTIPLIER: f64 = 30.0;

impl Default for Vegas {
    fn default() -> Self {
        Vegas {
            limit: 20.0,
            max: 1000,
            smoothing: 1.0,
            rtt_no_load: None,
            last_rtt: None,
            probe_count: 0.0,
            probe_jitter: 0.75,
            probe_seed: 0x5EED,
        }
    }
}

impl Vegas {
    /// Vegas with the given settings, checked: `1 <= initial <= max`, smoothing in (0, 1].
    pub fn new(initial: usize, max: usize, smoothing: f64) -> Result<Self, ConfigError> {
        check_bounds(initial, 1, max)?;
        let smoothing = ratio("smoothing", smoothing)?;
        if smoothing == 0.0 {
            return Err(ConfigError::new("smoothing", "must be above 0"));
        }
        Ok(Vegas {
            limit: initial as f64,
            max,
            smoothing,
            ..Vegas::default()
        })
    }
}

/// `max(1, floor(log10(limit)))`, the step of Vegas' functions.
fn log10_step(limit: f64) -> f64 {
    limit.log10().floor().max(1.0)
}

impl LimitAlgorithm for Vegas {
    fn initial(&self) -> usize {
        self.limit as usize
    }

    fn update(&mut self, sample: Sample) -> usize {
        let rtt = sample.rtt.max(Duration::from_nanos(1));
        self.last_rtt = Some(rtt);
        self.probe_count += 1.0;
        if self.probe_count >= self.probe_jitter * PROBE_MULTIPLIER * self.limit {
            self.probe_count = 0.0;
            self.probe_jitter =
                0.5 + 0.5 * tower_bulwark_core::SeededRng::new(self.probe_seed).next_unit();
            self.probe_seed = self.probe_seed.wrapping_add(0x9E37_79B9_7F4A_7C15);
            self.rtt_no_load = Some(rtt);
            return self.limit as usize;
        }
        let no_load = match self.rtt_no_load {
            Some(no_load) if rtt >= no_load => no_load,
            _ => {
                self.rtt_no_load = Some(rtt);
                return self.limit as usize;
            }
        };
        let limit = self.limit;
        let queue = (limit * (1.0 - no_load.as_secs_f64() / rtt.as_secs_f64())).ceil();
        let step = log10_step(limit);
        let new_limit = if sample.dropped {
            limit - step
        } else if (sample.in_flight as f64) * 2.0 < limit {
            // Not using the limit: nothing learned about it.
            return limit as usize;
        } else if queue <= step {
            limit + 6.0 * step
        } else if queue < 3.0 * step {
            limit + step
        } else if queue > 6.0 * step {
            limit - step
        } else {
            return limit as usize;
        };
        let new_limit = new_limit.clamp(1.0, self.max as f64);
        self.limit = (1.0 - self.smoothing) * limit + self.smoothing * new_limit;
        self.limit as usize
    }

    fn rtt(&self) -> RttEstimates {
        RttEstimates {
            no_load: self.rtt_no_load,
            long: None,
            short: self.last_rtt,
        }
    }
}

// === Gradient2 ===

/// Compares the short-term latency with a long-term average: while they agree (within
/// `rtt_tolerance`) the limit grows by a queue allowance; when latency rises, the gradient
/// `tolerance × long / short` (between 0.5 and 1) shrinks it.
///
/// `new = limit × gradient + queue_size`, smoothed by `smoothing`, within `[min, max]`;
/// the long average is exponential over `long_window` samples (the first 10 averaged
/// plainly), pulled down 5% whenever it is more than twice the short one. Not updated
/// while less than half the limit is in use. Drops do not move it (latency does).
/// Defaults (Netflix `Gradient2Limit`): initial 20, min 20, max 200, smoothing 0.2, queue
/// size 4, long window 600, RTT tolerance 1.5.
#[derive(Debug, Clone)]
pub struct Gradient2 {
    limit: f64,
    min: usize,
    max: usize,
    smoothing: f64,
    queue_size: f64,
    tolerance: f64,
    long: ExpAverage,
    last_rtt: Option<Duration>,
}

impl Default for Gradient2 {
    fn default() -> Self {
        Gradient2::builder().build().expect("valid defaults")
    }
}

impl Gradient2 {
    /// Gradient2 with the given settings, checked: `1 <= min <= initial <= max`, smoothing
    /// in (0, 1], tolerance at least 1, a long window of at least 10 samples.
    /// [`Gradient2::builder`] names them.
    pub fn new(
        initial: usize,
        min: usize,
        max: usize,
        smoothing: f64,
        queue_size: usize,
        rtt_tolerance: f64,
        long_window: usize,
    ) -> Result<Self, ConfigError> {
        check_bounds(initial, min, max)?;
        let smoothing = ratio("smoothing", smoothing)?;
        if smoothing == 0.0 {
            return Err(ConfigError::new("smoothing", "must be above 0"));
        }
        if !(rtt_tolerance.is_finite() && rtt_tolerance >= 1.0) {
            return Err(ConfigError::new(
                "rtt_tolerance",
                format!("must be a finite number >= 1, got {rtt_tolerance}"),
            ));
        }
        if long_window < 10 {
            return Err(ConfigError::new(
                "long_window",
                format!("must be at least 10 samples, got {long_window}"),
            ));
        }
        Ok(Gradient2 {
            limit: initial as f64,
            min,
            max,
            smoothing,
            queue_size: queue_size as f64,
            tolerance: rtt_tolerance,
            long: ExpAverage::new(long_window, 10),
            last_rtt: None,
        })
    }
}

impl LimitAlgorithm for Gradient2 {
    fn initial(&self) -> usize {
        self.limit as usize
    }

    fn update(&mut self, sample: Sample) -> usize {
        let short = sample.rtt.as_secs_f64().max(1e-9);
        self.last_rtt = Some(sample.rtt);
        let mut long = self.long.add(short);
        if long / short > 2.0 {
            long = self.long.scale(0.95);
        }
        let limit = self.limit;
        if (sample.in_flight as f64) < limit / 2.0 {
            return limit as usize;
        }
        let gradient = (self.tolerance * long / short).clamp(0.5, 1.0);
        let new_limit = limit * gradient + self.queue_size;
        let new_limit = limit * (1.0 - self.smoothing) + new_limit * self.smoothing;
        self.limit = new_limit.clamp(self.min as f64, self.max as f64);
        self.limit as usize
    }

    fn rtt(&self) -> RttEstimates {
        RttEstimates {
            no_load: None,
            long: self.long.value().map(Duration::from_secs_f64),
            short: self.last_rtt,
        }
    }
}

/// An exponential moving average over `window` samples, the first `warmup` averaged
/// plainly (Netflix's `ExpAvgMeasurement`).
#[derive(Clone)]
struct ExpAverage {
    value: f64,
    count: usize,
    warmup: usize,
    factor: f64,
}

impl ExpAverage {
    fn new(window: usize, warmup: usize) -> Self {
        ExpAverage {
            value: 0.0,
            count: 0,
            warmup,
            factor: 2.0 / (window as f64 + 1.0),
        }
    }

    fn add(&mut self, sample: f64) -> f64 {
        if self.count < self.warmup {
            self.count += 1;
            self.value += (sample - self.value) / self.count as f64;
        } else {
            self.value = self.value * (1.0 - self.factor) + sample * self.factor;
        }
        self.value
    }

    fn scale(&mut self, by: f64) -> f64 {
        self.value *= by;
        self.value
    }

    fn value(&self) -> Option<f64> {
        (self.count > 0).then_some(self.value)
    }
}

impl fmt::Debug for ExpAverage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ExpAverage")
            .field("value", &self.value)
            .finish_non_exhaustive()
    }
}

/// Checks `1 <= min <= initial <= max`, naming the field that breaks it.
pub(crate) fn check_bounds(initial: usize, min: usize, max: usize) -> Result<(), ConfigError> {
    non_zero("min", min)?;
    if max < min {
        return Err(ConfigError::new(
            "max",
            format!("must be at least min ({min}), got {max}"),
        ));
    }
    if !(min..=max).contains(&initial) {
        return Err(ConfigError::new(
            "initial",
            format!("must be within min..=max ({min}..={max}), got {initial}"),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(rtt_ms: u64, in_flight: usize, dropped: bool) -> Sample {
        Sample {
            rtt: Duration::from_millis(rtt_ms),
            fastest: Duration::from_millis(rtt_ms),
            in_flight,
            dropped,
        }
    }

    #[test]
    fn aimd_by_hand() {
        let mut aimd = Aimd::new(20, 10, 22, 0.9, Duration::from_secs(1)).unwrap();
        // Grows only while at least half the limit is in use.
        assert_eq!(aimd.update(sample(10, 9, false)), 20);
        assert_eq!(aimd.update(sample(10, 10, false)), 21);
        assert_eq!(aimd.update(sample(10, 11, false)), 22);
        assert_eq!(aimd.update(sample(10, 20, false)), 22, "capped at max");
        // Drops and slow calls back off, keeping the fraction: 22 × 0.9 = 19.8 → 19;
        // 19.8 × 0.9 = 17.82 → 17.
        assert_eq!(aimd.update(sample(10, 20, true)), 19);
        assert_eq!(aimd.update(sample(1_001, 20, false)), 17);
        assert_eq!(aimd.update(sample(10, 20, false)), 18, "17.82 + 1");
        for _ in 0..10 {
            aimd.update(sample(10, 20, true));
        }
        assert_eq!(aimd.update(sample(10, 1, true)), 10, "floored at min");
    }

    /// At a small limit, one drop takes off a tenth of a call, not a whole one: ten
    /// successes and one drop leave the limit higher, as AIMD means.
    #[test]
    fn aimd_at_a_small_limit_backs_off_by_a_fraction() {
        let mut aimd = Aimd::new(4, 1, 100, 0.9, Duration::from_secs(1)).unwrap();
        assert_eq!(aimd.update(sample(10, 4, true)), 3, "3.6 admits 3");
        assert_eq!(
            aimd.update(sample(10, 4, false)),
            4,
            "4.6, not 3 + 1 = 4 by luck"
        );
        assert_eq!(aimd.update(sample(10, 4, true)), 4, "4.14");
        assert_eq!(aimd.update(sample(10, 4, true)), 3, "3.726");
        assert_eq!(aimd.update(sample(10, 4, false)), 4, "4.726");
        assert_eq!(aimd.update(sample(10, 4, false)), 5, "5.726");
    }

    #[test]
    fn vegas_by_hand() {
        let mut vegas = Vegas::new(20, 1000, 1.0).unwrap();
        // The first sample sets the no-load latency.
        assert_eq!(vegas.update(sample(100, 20, false)), 20);
        // No queue (same latency): + 6 × log10 step (1) = 26.
        assert_eq!(vegas.update(sample(100, 20, false)), 26);
        // queue = ceil(26 × (1 − 100/110)) = ceil(2.36) = 3: between 1 and 3 → + 1?
        // 3 is not < 3 × 1, and not > 6: unchanged.
        assert_eq!(vegas.update(sample(110, 20, false)), 26);
        // queue = ceil(26 × (1 − 100/104)) = ceil(1.0) = 1 <= 1 → + 6.
        assert_eq!(vegas.update(sample(104, 20, false)), 32);
        // queue = ceil(32 × (1 − 100/106)) = ceil(1.81) = 2 < 3 → + 1.
        assert_eq!(vegas.update(sample(106, 20, false)), 33);
        // queue = ceil(33 × (1 − 100/200)) = 17 > 6 → − 1.
        assert_eq!(vegas.update(sample(200, 20, false)), 32);
        // A drop: − 1.
        assert_eq!(vegas.update(sample(100, 20, true)), 31);
        // App-limited (fewer than half in flight): unchanged.
        assert_eq!(vegas.update(sample(100, 10, false)), 31);
        // A faster call lowers the no-load latency and changes nothing else.
        assert_eq!(vegas.update(sample(50, 20, false)), 31);
        assert_eq!(vegas.rtt().no_load, Some(Duration::from_millis(50)));
    }

    #[test]
    fn vegas_probes_the_no_load_latency_again() {
        let mut vegas = Vegas::new(20, 1000, 1.0).unwrap();
        vegas.update(sample(100, 5, false));
        // App-limited samples at a higher latency: the limit stays at 20, so the probe
        // comes within 30 x 20 = 600 samples and adopts the new latency as no-load.
        let mut probed_at = None;
        for n in 2..=600 {
            vegas.update(sample(150, 5, false));
            if vegas.rtt().no_load == Some(Duration::from_millis(150)) {
                probed_at = Some(n);
                break;
            }
        }
        let n = probed_at.expect("probed");
        assert!(
            (300..=600).contains(&n),
            "jittered between half and all of 600: {n}"
        );
    }

    #[test]
    fn aimd_a_call_exactly_as_slow_as_the_timeout_is_not_a_drop() {
        let mut aimd = Aimd::new(20, 10, 22, 0.9, Duration::from_secs(1)).unwrap();
        assert_eq!(aimd.update(sample(1_000, 20, false)), 21, "at the timeout");
        assert_eq!(
            aimd.update(sample(1_001, 20, false)),
            18,
            "over it: 21 x 0.9"
        );
    }

    /// The step is `max(1, floor(log10(limit)))`: 2 from a limit of 100, 3 from 1000, and
    /// the queue's bounds scale with it (grow by 12 up to 2, by 2 under 6, shrink by 2
    /// above 12).
    #[test]
    fn vegas_steps_grow_with_the_log_of_the_limit() {
        let mut vegas = Vegas::new(100, 2000, 1.0).unwrap();
        vegas.update(sample(100, 100, false));
        // queue = ceil(100 x (1 - 100/104)) = 4.
        assert_eq!(vegas.update(sample(104, 100, false)), 102, "+ 2");
        // queue = ceil(102 x (1 - 100/111)) = 11: between 6 and 12.
        assert_eq!(vegas.update(sample(111, 102, false)), 102, "unchanged");
        // queue = ceil(102 x (1 - 100/120)) = 17.
        assert_eq!(vegas.update(sample(120, 102, false)), 100, "- 2");
        assert_eq!(vegas.update(sample(100, 100, false)), 112, "no queue: + 12");
        assert_eq!(vegas.update(sample(100, 112, true)), 110, "a drop: - 2");
        let mut vegas = Vegas::new(1000, 2000, 1.0).unwrap();
        vegas.update(sample(100, 1000, false));
        assert_eq!(vegas.update(sample(100, 1000, true)), 997, "a drop: - 3");
    }

    #[test]
    fn vegas_smoothing_moves_part_of_the_way() {
        let mut vegas = Vegas::new(20, 1000, 0.5).unwrap();
        vegas.update(sample(100, 20, false));
        // No queue: 26 wanted, half the way from 20.
        assert_eq!(vegas.update(sample(100, 20, false)), 23);
        assert_eq!(
            vegas.update(sample(100, 20, true)),
            22,
            "22 wanted from 23: 22.5"
        );
    }

    /// Every probe draws its own jitter: the gap to the next one is between half and all
    /// of `30 x limit` samples, and not the same each time.
    #[test]
    fn vegas_probes_keep_coming_jittered() {
        let mut vegas = Vegas::new(20, 1000, 1.0).unwrap();
        // App-limited samples (the limit stays 20), each a microsecond slower than the
        // last: only a probe takes one as the no-load latency.
        let mut rtt = Duration::from_millis(100);
        let mut at = |vegas: &mut Vegas| {
            rtt += Duration::from_micros(1);
            vegas.update(Sample {
                rtt,
                fastest: rtt,
                in_flight: 5,
                dropped: false,
            });
            vegas.rtt().no_load == Some(rtt)
        };
        at(&mut vegas);
        let mut probes = Vec::new();
        for n in 0..10_000 {
            if at(&mut vegas) {
                probes.push(n);
            }
        }
        let gaps: Vec<_> = probes.windows(2).map(|w| w[1] - w[0]).collect();
        assert!(gaps.len() >= 15, "{probes:?}");
        assert!(
            gaps.iter().all(|gap| (300..=600).contains(gap)),
            "between half and all of 600: {gaps:?}"
        );
        assert!(gaps.iter().any(|&gap| gap != gaps[0]), "jittered: {gaps:?}");
    }

    #[test]
    fn gradient2_by_hand() {
        let mut gradient = Gradient2::new(20, 10, 200, 0.2, 4, 1.5, 600).unwrap();
        // Steady latency: gradient = min(1, 1.5 × 1) = 1; new = 20 + 4 = 24;
        // smoothed 20 × 0.8 + 24 × 0.2 = 20.8.
        assert_eq!(gradient.update(sample(100, 20, false)), 20);
        assert!((gradient.limit - 20.8).abs() < 1e-9);
        // Latency doubles: long = avg(100, 200) = 150; gradient = 1.5 × 150/200 = 1.125 → 1.
        gradient.update(sample(200, 20, false));
        assert!((gradient.limit - (20.8 * 0.8 + (20.8 + 4.0) * 0.2)).abs() < 1e-9);
        // Latency ×10: long = avg(100, 200, 1000) ≈ 433; gradient = 1.5 × 433/1000 = 0.65.
        let before = gradient.limit;
        gradient.update(sample(1_000, 30, false));
        let long = (100.0 + 200.0 + 1000.0) / 3.0 / 1000.0;
        let expected = before * 0.8 + (before * (1.5 * long / 1.0) + 4.0) * 0.2;
        assert!(
            (gradient.limit - expected).abs() < 1e-9,
            "{} vs {expected}",
            gradient.limit
        );
        // App-limited: unchanged.
        let before = gradient.limit;
        gradient.update(sample(1_000, 1, false));
        assert_eq!(gradient.limit, before);
        // Drops do not move it by themselves.
        let mut steady = Gradient2::default();
        steady.update(sample(100, 20, true));
        assert!((steady.limit - 20.8).abs() < 1e-9);
    }

    /// The long average is plain over the first ten samples and exponential after; it is
    /// pulled down 5% when it is more than twice the short latency (not at exactly twice).
    /// Binary-exact latencies keep the ratios exact.
    #[test]
    fn gradient2_long_average_warms_up_then_follows_and_is_pulled_down() {
        let long = |gradient: &Gradient2| gradient.rtt().long.unwrap().as_secs_f64();
        let mut gradient = Gradient2::new(20, 10, 200, 0.2, 4, 1.5, 10).unwrap();
        assert_eq!(gradient.rtt(), RttEstimates::default());
        for _ in 0..10 {
            gradient.update(sample(100, 20, false));
        }
        assert!((long(&gradient) - 0.1).abs() < 1e-12);
        // Exponential over 10 samples: 0.1 x 9/11 + 1.2 x 2/11 = 0.3.
        gradient.update(sample(1_200, 20, false));
        assert!((long(&gradient) - 0.3).abs() < 1e-12, "{}", long(&gradient));
        assert_eq!(gradient.rtt().short, Some(Duration::from_millis(1_200)));

        let mut gradient = Gradient2::default();
        gradient.update(sample(375, 20, false));
        // (375 + 125) / 2 = 250: exactly twice 125, kept.
        gradient.update(sample(125, 20, false));
        assert_eq!(long(&gradient), 0.25);
        let mut gradient = Gradient2::default();
        gradient.update(sample(500, 20, false));
        // (500 + 125) / 2 = 312.5: more than twice 125, pulled down 5%.
        gradient.update(sample(125, 20, false));
        assert!((long(&gradient) - 0.3125 * 0.95).abs() < 1e-12);
    }

    /// Gradient2 learns from windows that used at least half the limit.
    #[test]
    fn gradient2_learns_at_exactly_half_the_limit_in_use() {
        let mut gradient = Gradient2::default();
        gradient.update(sample(100, 10, false));
        assert!((gradient.limit - 20.8).abs() < 1e-9, "{}", gradient.limit);
        gradient.update(sample(100, 9, false));
        assert!((gradient.limit - 20.8).abs() < 1e-9, "{}", gradient.limit);
    }

    /// `min == max` is a valid band: the limit is pinned there.
    #[test]
    fn bounds_may_pin_the_limit() {
        let mut aimd = Aimd::new(10, 10, 10, 0.9, Duration::from_secs(1)).unwrap();
        assert_eq!(aimd.update(sample(10, 10, false)), 10);
        assert_eq!(aimd.update(sample(10, 10, true)), 10);
        let mut gradient = Gradient2::new(10, 10, 10, 0.2, 4, 1.5, 600).unwrap();
        assert_eq!(gradient.update(sample(100, 10, false)), 10);
        assert!(crate::MinRtt::new(10, 10, 10, 0.1, 200).is_ok());
    }

    #[test]
    fn bad_settings_name_their_field() {
        let d = Duration::from_secs(1);
        assert_eq!(Aimd::new(5, 10, 20, 0.9, d).unwrap_err().field(), "initial");
        assert_eq!(Aimd::new(10, 10, 5, 0.9, d).unwrap_err().field(), "max");
        assert_eq!(Aimd::new(10, 0, 20, 0.9, d).unwrap_err().field(), "min");
        assert_eq!(
            Aimd::new(10, 10, 20, 1.0, d).unwrap_err().field(),
            "backoff_ratio"
        );
        assert_eq!(
            Aimd::new(10, 10, 20, 0.9, Duration::ZERO)
                .unwrap_err()
                .field(),
            "timeout"
        );
        assert_eq!(Vegas::new(20, 1000, 0.0).unwrap_err().field(), "smoothing");
        assert_eq!(
            Vegas::new(20, 1000, f64::NAN).unwrap_err().field(),
            "smoothing"
        );
        assert_eq!(
            Gradient2::new(20, 20, 200, 0.2, 4, 0.5, 600)
                .unwrap_err()
                .field(),
            "rtt_tolerance"
        );
        assert_eq!(
            Gradient2::new(20, 20, 200, 0.2, 4, 1.5, 5)
                .unwrap_err()
                .field(),
            "long_window"
        );
        assert_eq!(Fixed::new(0).unwrap_err().field(), "limit");
    }
}
