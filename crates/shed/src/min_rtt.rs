//! [`MinRtt`]: the server preset's limit algorithm.

use std::time::Duration;

use tower_bulwark_core::config::non_zero;
use tower_bulwark_core::{ConfigError, SeededRng};

use crate::algorithm::check_bounds;
use crate::{LimitAlgorithm, RttEstimates, Sample};

/// How far the limit moves towards a lower value in one window: the window's calls were
/// admitted up to a round trip before it closed, so a full step would overshoot.
const SMOOTHING: f64 = 0.25;
/// How far it moves towards a higher one.
const GROWTH: f64 = 0.5;
/// A gradient at least this is near the target: cuts are smoothed.
const NEAR: f64 = 0.8;
/// How much of an idle limit is kept per window (it drifts down to twice the calls in use).
const IDLE_DECAY: f64 = 0.9;
/// The gradient's bounds: at most halve or double the limit in one window.
const GRADIENT: (f64, f64) = (0.5, 2.0);
/// Cuts in a row the latency did not answer before the minimum is measured again.
const STALE_AFTER: u32 = 2;
/// A cut is answered when the latency falls by at least this share of it (under a queue
/// it falls in proportion: Little's law).
const ANSWERED: f64 = 0.25;
/// Windows before the first probe: the first window's fastest call only bounds the
/// minimum from below, so a probe soon measures it.
const FIRST_PROBE: u32 = 5;
/// A probe whose calls never all start under its limit (shadow mode, a stuck caller)
/// takes the latest window after this many.
const PROBE_MAX_WINDOWS: u32 = 8;

/// Keeps latency within a buffer over the service's own latency, measured when nothing
/// queues: Envoy's adaptive concurrency (a gradient over a minimum latency that probes
/// measure again), with the minimum re-measured as soon as the latency stops answering to
/// the limit.
///
/// - Each window of calls (see [`WindowSize`](crate::WindowSize)): with `gradient =
///   clamp((1 + buffer) × min_rtt / mean_rtt, 0.5, 2)`, the limit moves towards `limit ×
///   gradient`, within `[min, max]`. Under sustained overload the fixed point is a mean
///   latency `1 + buffer` times the minimum: every worker busy, a short queue.
/// - The window's calls were admitted up to a round trip before it closed, so the limit
///   moves only part of the way near the target: half of a rise, a quarter of a cut (a
///   full step would overshoot and swing); a gradient below 0.8 is followed all the way.
///   While no queue stands, half the square root of the limit is added (Envoy's
///   headroom), and after a cold start, until the first real queue (one even the fastest
///   call waited in) or the first measured minimum, a limit that is full doubles (TCP's
///   slow start), so a large service is found quickly.
/// - It only grows from windows that used at least half of it (an idle service says
///   nothing of its capacity), and an idle limit drifts down to twice the calls in use, so
///   a spike is not admitted whole.
/// - The minimum starts as the first window's fastest call (the queue, if any, was still
///   building): a lower bound. A probe measures it: the limit is halved (below the
///   workers, where the limit settles just over them), and the first window of calls that
///   all started under the cut gives its mean latency as the minimum; then the limit goes
///   back where it was; a window using less than half the limit, when a probe is due,
///   measures it without one. The first probe comes after five windows, the next every
///   `probe_every` windows (jittered to between half and all of it), and one at once when
///   two cuts in a row did not lower the latency by a quarter of their size (under a queue
///   it falls in proportion) or the limit is at its floor: the service itself got slower,
///   and the old minimum would hold the limit there. A window faster than the minimum,
///   with no call dropped, lowers it at once.
///
/// Drops do not move it by themselves: a call cut by the caller's deadline or a disconnect
/// teaches its latency so far, and latency is the signal; that latency is a lower bound, so a
/// window with drops never raises the limit nor lowers the minimum. Defaults: initial 20, min 1, max 1000,
/// buffer 0.1, a probe every 200 windows (at the default window, 10 s to a minute under
/// load).
#[derive(Debug, Clone)]
pub struct MinRtt {
    limit: f64,
    min: usize,
    max: usize,
    buffer: f64,
    probe_every: u32,
    rng: SeededRng,
    min_rtt: Option<Duration>,
    last_rtt: Option<Duration>,
    /// Windows left before the next periodic probe.
    until_probe: u32,
    /// Doubling a full limit until the first real queue or the first measured minimum.
    slow_start: bool,
    /// Whether a probe has measured the minimum (before, it is a lower bound).
    measured: bool,
    phase: Phase,
}

#[derive(Debug, Clone, Copy)]
enum Phase {
    /// Following the gradient; `decline` is the current streak of cuts, if any.
    Learning { decline: Option<Decline> },
    /// Measuring the minimum with the limit halved.
    Probing {
        /// The limit to go back to.
        back_to: f64,
        /// Windows spent in the probe.
        windows: u32,
    },
}

/// Windows in a row that cut the limit.
#[derive(Debug, Clone, Copy)]
struct Decline {
    /// Cuts in a row the latency did not answer in proportion.
    unanswered: u32,
    /// The limit before the first cut.
    from: f64,
    /// The calls the latest window was admitted under, and its mean latency.
    admitted: usize,
    rtt: Duration,
}

impl Default for MinRtt {
    fn default() -> Self {
        MinRtt::builder().build().expect("valid defaults")
    }
}

impl MinRtt {
    /// `MinRtt` with the given settings, checked: `1 <= min <= initial <= max`, a buffer
    /// within `(0, 10]`, `probe_every` at least 1 window. [`MinRtt::builder`] names them.
    pub fn new(
        initial: usize,
        min: usize,
        max: usize,
        buffer: f64,
        probe_every: u32,
    ) -> Result<Self, ConfigError> {
        check_bounds(initial, min, max)?;
        if !(buffer > 0.0 && buffer <= 10.0) {
            return Err(ConfigError::new(
                "buffer",
                format!("must be above 0 and at most 10, got {buffer}"),
            ));
        }
        non_zero("probe_every", probe_every as usize)?;
        Ok(MinRtt {
            limit: initial as f64,
            min,
            max,
            buffer,
            probe_every,
            rng: SeededRng::new(0x6D69_6E72_7474),
            min_rtt: None,
            last_rtt: None,
            until_probe: FIRST_PROBE.min(probe_every),
            slow_start: true,
            measured: false,
            phase: Phase::Learning { decline: None },
        })
    }

    fn clamp(&self, limit: f64) -> f64 {
        limit.clamp(self.min as f64, self.max as f64)
    }

    /// Halves the limit to measure the minimum, coming back to `back_to`.
    fn start_probe(&mut self, back_to: f64) {
        self.phase = Phase::Probing {
            back_to,
            windows: 0,
        };
        self.limit = self.clamp(self.limit / 2.0);
    }

    /// One window of the probe: the first whose calls all started under the halved limit
    /// measures the minimum (at half the limit that settled over the workers, none waits).
    fn probe(&mut self, sample: Sample, rtt: Duration, back_to: f64, windows: u32) {
        let windows = windows + 1;
        if sample.in_flight > self.limit as usize && windows < PROBE_MAX_WINDOWS {
            // Calls admitted before the cut are still finishing.
            self.phase = Phase::Probing { back_to, windows };
            return;
        }
        self.measure(rtt);
        self.limit = back_to;
        self.phase = Phase::Learning { decline: None };
    }

    /// Takes `rtt` as the minimum and schedules the next probe.
    fn measure(&mut self, rtt: Duration) {
        self.min_rtt = Some(rtt);
        self.measured = true;
        // Slow start is for a cold start only: a limit that sat through a calm period and
        // then meets a spike must not double into it.
        self.slow_start = false;
        let jitter = 0.5 + 0.5 * self.rng.next_unit();
        self.until_probe = ((self.probe_every as f64 * jitter) as u32).max(1);
    }
}

impl LimitAlgorithm for MinRtt {
    fn initial(&self) -> usize {
        self.limit as usize
    }

    fn update(&mut self, sample: Sample) -> usize {
        self.last_rtt = Some(sample.rtt);
        let rtt = sample.rtt.max(Duration::from_micros(1));
        let decline = match self.phase {
            Phase::Probing { back_to, windows } => {
                self.probe(sample, rtt, back_to, windows);
                return self.limit as usize;
            }
            Phase::Learning { decline } => decline,
        };
        if self.until_probe == 0 {
            let spare = (sample.in_flight as f64) < self.limit / 2.0;
            if self.min_rtt.is_some() && spare && !sample.dropped {
                // Used below half its limit, no call cut short: this window ran with room
                // to spare, its latency is the minimum without a probe (a probe at low
                // load would only refuse the bursts).
                self.measure(rtt);
                self.phase = Phase::Learning { decline: None };
                return self.limit as usize;
            }
            self.start_probe(self.limit);
            return self.limit as usize;
        }
        self.until_probe -= 1;
        let min_rtt = match self.min_rtt {
            // A window with drops is no evidence of speed: a call cut short teaches only
            // the latency it had so far.
            Some(min_rtt) if sample.dropped => min_rtt,
            Some(min_rtt) => min_rtt.min(rtt),
            // The first window: its fastest call met the queue, if any, while it was
            // still building. A lower bound until the first probe.
            None => sample.fastest.max(Duration::from_micros(1)),
        };
        self.min_rtt = Some(min_rtt);

        let target = (1.0 + self.buffer) * min_rtt.as_secs_f64();
        let gradient = (target / rtt.as_secs_f64()).clamp(GRADIENT.0, GRADIENT.1);
        let limit = self.limit;
        if gradient >= 1.0 && (sample.in_flight as f64) < limit / 2.0 {
            // Idle room says nothing of the capacity, but a limit far above the load would
            // admit a whole spike at once: drift down towards twice what is used.
            self.limit = self.clamp((limit * IDLE_DECAY).max(2.0 * sample.in_flight as f64));
            self.phase = Phase::Learning { decline: None };
            return self.limit as usize;
        }
        if gradient >= 1.0 && sample.dropped {
            // Calls cut short teach only their latency so far, which makes a window look
            // faster than it was: never room to grow (a flood of calls with tiny deadlines
            // must not raise the limit for everyone else).
            return limit as usize;
        }
        if gradient >= 1.0 {
            self.limit = if self.slow_start && sample.in_flight >= limit as usize {
                // No queue yet and every place taken: double, as TCP's slow start does,
                // until the first queue shows where the capacity is.
                self.clamp(limit * 2.0)
            } else {
                // No standing queue and the limit in use: room to grow, by half its square
                // root on top (Envoy's headroom), so a small limit finds a large service
                // quickly.
                self.clamp(limit + GROWTH * (limit * gradient + limit.sqrt() / 2.0 - limit))
            };
            self.phase = Phase::Learning { decline: None };
            return self.limit as usize;
        }
        if sample.fastest.as_secs_f64() > target {
            // A real queue: even the fastest call waited in it (the first window's minimum
            // is only a lower bound, so a cut alone does not prove one).
            self.slow_start = false;
        }
        // Near the target, a quarter of the way (the window's calls were admitted a round
        // trip ago); far above it, all the way.
        let step = if gradient >= NEAR { SMOOTHING } else { 1.0 };
        self.limit = self.clamp(limit + step * (limit * gradient - limit));

        // A cut answered by the latency (a queue shrank with it) proves the minimum right;
        // cuts it does not answer in proportion, or wanted below the floor, add up to a
        // stale minimum: the service itself got slower.
        let admitted = limit as usize;
        let decline = match decline {
            Some(decline) => {
                let cut = 1.0 - admitted as f64 / decline.admitted as f64;
                let relief = 1.0 - rtt.as_secs_f64() / decline.rtt.as_secs_f64();
                let at_floor = admitted <= self.min;
                let unanswered = at_floor || (cut > 0.0 && relief < ANSWERED * cut);
                Decline {
                    unanswered: if unanswered {
                        decline.unanswered + 1
                    } else if cut > 0.0 {
                        0
                    } else {
                        // The same calls admitted: the latency could not answer yet.
                        decline.unanswered
                    },
                    admitted,
                    rtt,
                    ..decline
                }
            }
            None => Decline {
                unanswered: 0,
                from: limit,
                admitted,
                rtt,
            },
        };
        if decline.unanswered >= STALE_AFTER {
            self.start_probe(decline.from);
        } else {
            self.phase = Phase::Learning {
                decline: Some(decline),
            };
        }
        self.limit as usize
    }

    fn rtt(&self) -> RttEstimates {
        RttEstimates {
            no_load: self.min_rtt,
            long: None,
            short: self.last_rtt,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn window(rtt_ms: f64, in_flight: usize) -> Sample {
        Sample {
            rtt: Duration::from_secs_f64(rtt_ms / 1000.0),
            fastest: Duration::from_secs_f64(rtt_ms / 1000.0),
            in_flight,
            dropped: false,
        }
    }

    /// A backend of `workers` workers taking `service_ms` each, saturated at `limit`: the
    /// window's mean latency by Little's law.
    fn saturated(limit: usize, workers: usize, service_ms: f64) -> Sample {
        let queue = limit.max(workers) as f64 / workers as f64;
        window(service_ms * queue, limit)
    }

    /// Runs `windows` windows of a saturated backend; returns the limits.
    fn drive(
        algorithm: &mut MinRtt,
        workers: usize,
        service_ms: f64,
        windows: usize,
    ) -> Vec<usize> {
        let mut limit = algorithm.initial();
        (0..windows)
            .map(|_| {
                let mut sample = saturated(limit, workers, service_ms);
                if algorithm.min_rtt.is_none() {
                    // A fresh algorithm's first window: the queue was still building, its
                    // fastest call did not wait.
                    sample.fastest = Duration::from_secs_f64(service_ms / 1000.0);
                }
                limit = algorithm.update(sample);
                limit
            })
            .collect()
    }

    #[test]
    fn the_first_windows_fastest_call_is_the_minimum_and_far_cuts_go_all_the_way() {
        let mut algorithm = MinRtt::default();
        // 20 in flight on 4 workers of 10 ms: a mean of 50 ms, its fastest call 10 ms.
        // The gradient is at its floor (0.5), far from the target: halve, then 5 in
        // flight (12.5 ms) is near it (0.88) and is cut by a quarter of the way.
        let limits = drive(&mut algorithm, 4, 10.0, 5);
        assert_eq!(limits, [10, 5, 4, 5, 5]);
        assert_eq!(algorithm.rtt().no_load, Some(Duration::from_millis(10)));
    }

    #[test]
    fn a_full_limit_doubles_until_the_first_queue() {
        let mut algorithm = MinRtt::default();
        let limits = drive(&mut algorithm, 64, 10.0, 4);
        assert_eq!(
            limits[..3],
            [40, 80, 77],
            "doubles, then the first queue ends it"
        );
        assert!(!algorithm.slow_start);
    }

    #[test]
    fn it_settles_with_every_worker_busy_and_a_short_queue() {
        for workers in [2, 4, 16, 64] {
            let mut algorithm = MinRtt::default();
            let limits = drive(&mut algorithm, workers, 10.0, 150);
            let last = &limits[limits.len() - 20..];
            // Between every worker busy and a queue of a tenth plus the headroom.
            let most = 1.1 * workers as f64 + (1.1 * workers as f64).sqrt() + 1.0;
            assert!(
                last.iter()
                    .all(|&limit| limit >= workers && limit as f64 <= most),
                "{workers} workers: between {workers} and {most}: {limits:?}"
            );
        }
    }

    /// The middle of the last ten limits.
    fn settled(limits: &[usize]) -> usize {
        let mut last = limits[limits.len() - 10..].to_vec();
        last.sort_unstable();
        last[5]
    }

    #[test]
    fn a_slower_service_is_measured_again_instead_of_cut_to_the_floor() {
        let mut algorithm = MinRtt::default();
        let before = settled(&drive(&mut algorithm, 16, 10.0, 100));
        // The service time doubles: the old minimum makes every window look queued.
        let limits = drive(&mut algorithm, 16, 20.0, 40);
        let after = settled(&limits);
        assert_eq!(algorithm.rtt().no_load, Some(Duration::from_millis(20)));
        assert!(
            after.abs_diff(before) <= 2,
            "concurrency capacity unchanged: {before} then {after}: {limits:?}"
        );
        assert!(
            limits.iter().filter(|&&limit| limit < 16).count() <= 8,
            "below the workers for a few windows only: {limits:?}"
        );
    }

    #[test]
    fn a_faster_service_lowers_the_minimum_at_once_and_the_next_probe_finds_it() {
        let mut algorithm = MinRtt::new(20, 1, 1000, 0.25, 20).unwrap();
        let before = settled(&drive(&mut algorithm, 16, 10.0, 100));
        drive(&mut algorithm, 16, 5.0, 1);
        let lowered = algorithm.rtt().no_load.unwrap();
        assert!(
            lowered < Duration::from_millis(7),
            "the window's mean, queue included: {lowered:?}"
        );
        let limits = drive(&mut algorithm, 16, 5.0, 40);
        assert_eq!(algorithm.rtt().no_load, Some(Duration::from_millis(5)));
        let after = *limits.last().unwrap();
        assert!(
            after.abs_diff(before) <= 1,
            "{before} then {after}: {limits:?}"
        );
    }

    #[test]
    fn an_idle_service_does_not_grow_the_limit() {
        let mut algorithm = MinRtt::default();
        drive(&mut algorithm, 4, 10.0, 100);
        let limit = algorithm.limit;
        for _ in 0..50 {
            algorithm.update(window(10.0, 1));
        }
        assert!(algorithm.limit <= limit, "{} > {limit}", algorithm.limit);
    }

    #[test]
    fn periodic_probes_come_jittered_and_restore_the_limit() {
        let mut algorithm = MinRtt::new(20, 1, 1000, 0.1, 20).unwrap();
        drive(&mut algorithm, 8, 10.0, 50);
        let mut limit = algorithm.initial();
        let (mut probes, mut probing) = (0, false);
        for _ in 0..400 {
            let before = limit;
            limit = algorithm.update(saturated(limit, 8, 10.0));
            let now = matches!(algorithm.phase, Phase::Probing { .. });
            if now && !probing {
                probes += 1;
                assert!(
                    limit <= before / 2 + 1,
                    "a probe halves: {before} to {limit}"
                );
            }
            if probing && !now {
                assert!(limit >= 8, "restored: {limit}");
            }
            probing = now;
        }
        assert!(
            (20..=40).contains(&probes),
            "one every 10 to 20 windows: {probes}"
        );
    }

    /// A probe halves the limit, waits out the windows of calls admitted before the cut
    /// (more in flight than the halved limit), takes the first window that started under
    /// it as the minimum, and goes back to the limit it left.
    #[test]
    fn a_probe_halves_the_limit_and_measures_only_calls_started_under_it() {
        let mut algorithm = MinRtt::default();
        let mut before = algorithm.initial();
        let half = loop {
            let limit = algorithm.update(window(10.0, before));
            if matches!(algorithm.phase, Phase::Probing { .. }) {
                break limit;
            }
            before = limit;
        };
        assert_eq!(half, before / 2, "halved from {before}");
        for _ in 0..3 {
            // Calls admitted before the cut, queued: not the minimum.
            assert_eq!(algorithm.update(window(30.0, before)), half);
            assert!(matches!(algorithm.phase, Phase::Probing { .. }));
            assert_eq!(algorithm.rtt().no_load, Some(Duration::from_millis(10)));
        }
        // Every call started under the halved limit: this is the minimum.
        assert_eq!(algorithm.update(window(12.0, half)), before, "restored");
        assert!(matches!(algorithm.phase, Phase::Learning { decline: None }));
        assert_eq!(algorithm.rtt().no_load, Some(Duration::from_millis(12)));
    }

    /// It grows only from windows that used at least half of it; below half, an idle limit
    /// drifts down by a tenth a window, but not below twice the calls in use.
    #[test]
    fn an_idle_limit_drifts_down_to_twice_the_calls_in_use() {
        let mut algorithm = MinRtt::new(20, 1, 1000, 0.1, 200).unwrap();
        // Exactly half in use, no queue: that is use, it grows (20 + (2 + 2.24) / 2).
        assert_eq!(algorithm.update(window(10.0, 10)), 22);
        let mut algorithm = MinRtt::new(100, 1, 1000, 0.1, 200).unwrap();
        // 49 in use of 100: a tenth less would be 90, twice the calls in use is 98.
        assert_eq!(algorithm.update(window(10.0, 49)), 98);
        // 10 in use: a tenth a window (88.2, 79.38, 71.44).
        assert_eq!(algorithm.update(window(10.0, 10)), 88);
        assert_eq!(algorithm.update(window(10.0, 10)), 79);
        assert_eq!(algorithm.update(window(10.0, 10)), 71);
    }

    /// A probe due at exactly half the limit in use is a probe: only a window below half
    /// ran with room to spare.
    #[test]
    fn a_probe_due_at_half_the_limit_in_use_halves_it() {
        let mut algorithm = MinRtt::new(20, 1, 1000, 0.1, 1).unwrap();
        // Idle: 20 drifts to 18, and the probe is due.
        assert_eq!(algorithm.update(window(10.0, 5)), 18);
        assert_eq!(algorithm.update(window(10.0, 9)), 9, "halved");
        assert!(matches!(algorithm.phase, Phase::Probing { .. }));
    }

    /// An algorithm past its cold start at `limit`: the minimum measured at 10 ms (a
    /// target of 11 ms), no probe due for a long while.
    fn learned(limit: f64) -> MinRtt {
        let mut algorithm = MinRtt::default();
        algorithm.measure(Duration::from_millis(10));
        algorithm.until_probe = 1000;
        algorithm.limit = limit;
        algorithm
    }

    /// A window of `rtt_ms` with every place of the limit in use.
    fn full(algorithm: &mut MinRtt, rtt_ms: f64) -> usize {
        let admitted = algorithm.limit as usize;
        algorithm.update(window(rtt_ms, admitted))
    }

    fn probing_back_to(algorithm: &MinRtt) -> Option<f64> {
        match algorithm.phase {
            Phase::Probing { back_to, .. } => Some(back_to),
            Phase::Learning { .. } => None,
        }
    }

    #[test]
    fn two_cuts_in_a_row_the_latency_does_not_answer_measure_the_minimum_again() {
        let mut algorithm = learned(128.0);
        // Far over the 11 ms target: the gradient at its floor, each window halves.
        assert_eq!(full(&mut algorithm, 64.0), 64);
        assert_eq!(full(&mut algorithm, 64.0), 32, "unanswered: same latency");
        assert_eq!(full(&mut algorithm, 32.0), 16, "answered: it halved too");
        assert_eq!(full(&mut algorithm, 32.0), 8, "unanswered, once since");
        assert_eq!(probing_back_to(&algorithm), None);
        // Twice in a row: the service itself got slower. The probe halves the limit and
        // comes back to where the decline began.
        assert_eq!(full(&mut algorithm, 32.0), 2);
        assert_eq!(probing_back_to(&algorithm), Some(128.0));
        assert_eq!(algorithm.update(window(32.0, 2)), 128);
        assert_eq!(algorithm.rtt().no_load, Some(Duration::from_millis(32)));
    }

    /// A cut is answered when the latency falls by at least a quarter of the cut's share,
    /// each window judged against the one before it. Binary-exact values: 62.5 ms to
    /// 54.6875 ms is a fall of exactly 1/8, and a cut of 1/2 wants exactly 1/8.
    #[test]
    fn a_cut_answered_by_exactly_a_quarter_of_its_share_is_answered() {
        let mut algorithm = learned(100.0);
        assert_eq!(full(&mut algorithm, 62.5), 50);
        assert_eq!(full(&mut algorithm, 54.6875), 25, "answered, just");
        assert_eq!(full(&mut algorithm, 54.6875), 12, "unanswered");
        assert_eq!(probing_back_to(&algorithm), None);
        // Against the last window's latency, not the first's (which it fell 1/8 under).
        full(&mut algorithm, 54.6875);
        assert_eq!(probing_back_to(&algorithm), Some(100.0));
    }

    /// Windows admitted under the same whole limit cannot show an answer yet: a rising
    /// latency then neither adds to the streak nor ends it.
    #[test]
    fn windows_under_the_same_admitted_limit_do_not_judge_the_cut() {
        let mut algorithm = learned(100.9);
        // Slight cuts that keep 100 admitted while the latency creeps up.
        for rtt in [11.05, 11.06, 11.07, 11.08] {
            assert_eq!(full(&mut algorithm, rtt), 100);
            assert_eq!(probing_back_to(&algorithm), None, "{rtt} ms");
        }
        // A slow decline, one whole call every ten windows or so, the latency flat: the
        // windows between keep the streak, and the second unanswered cut probes.
        let mut algorithm = learned(100.05);
        let probed = (1..=30).find(|_| {
            full(&mut algorithm, 11.05);
            probing_back_to(&algorithm).is_some()
        });
        assert!(probed.is_some_and(|n| n > 2), "{probed:?}");
        assert_eq!(probing_back_to(&algorithm), Some(100.05));
    }

    /// Slow start ends at the first real queue: a window whose fastest call took more than
    /// the target. One exactly at the target (binary-exact: 1.25 x 62.5 ms) is no queue.
    #[test]
    fn slow_start_ends_only_when_even_the_fastest_call_was_over_the_target() {
        let mut algorithm = MinRtt::new(20, 1, 1000, 0.25, 200).unwrap();
        assert_eq!(algorithm.update(window(62.5, 20)), 40, "doubles");
        let mut slow = window(100.0, 40);
        slow.fastest = Duration::from_micros(78_125);
        assert_eq!(algorithm.update(slow), 31, "a far cut, all the way");
        assert!(algorithm.slow_start);
        assert_eq!(full(&mut algorithm, 62.5), 62, "still doubling");
        slow.fastest = Duration::from_micros(78_126);
        algorithm.update(slow);
        assert!(!algorithm.slow_start);
    }

    #[test]
    fn a_probe_that_never_gets_clean_windows_ends() {
        let mut algorithm = MinRtt::default();
        for _ in 0..=FIRST_PROBE {
            algorithm.update(window(50.0, 100));
        }
        assert!(
            matches!(algorithm.phase, Phase::Probing { .. }),
            "the first probe"
        );
        for _ in 0..PROBE_MAX_WINDOWS {
            // Shadow mode: far more in flight than the limit admits.
            algorithm.update(window(50.0, 100));
        }
        assert!(matches!(algorithm.phase, Phase::Learning { .. }));
        assert_eq!(algorithm.rtt().no_load, Some(Duration::from_millis(50)));
    }

    #[test]
    fn a_limit_that_sat_through_a_calm_period_does_not_double_into_a_spike() {
        let mut algorithm = MinRtt::default();
        for _ in 0..=FIRST_PROBE {
            algorithm.update(window(10.0, 4));
        }
        assert!(algorithm.measured && !algorithm.slow_start);
        let before = algorithm.limit;
        // The spike: every place taken, no queue yet.
        algorithm.update(window(10.0, before as usize));
        assert!(
            algorithm.limit < before * 1.5,
            "{before} to {}",
            algorithm.limit
        );
    }

    #[test]
    fn a_window_with_drops_never_raises_the_limit() {
        let mut algorithm = MinRtt::default();
        drive(&mut algorithm, 16, 10.0, 60);
        let limit = algorithm.limit;
        // Calls given up after 1 ms, far under the minimum: the window looks fast.
        let mut cut_short = window(1.0, limit as usize);
        cut_short.dropped = true;
        for _ in 0..5 {
            algorithm.update(cut_short);
        }
        assert!(algorithm.limit <= limit, "{limit} to {}", algorithm.limit);
        assert_eq!(algorithm.rtt().no_load, Some(Duration::from_millis(10)));
    }

    #[test]
    fn a_probe_due_at_low_load_measures_without_cutting() {
        let mut algorithm = MinRtt::default();
        for _ in 0..=FIRST_PROBE {
            algorithm.update(window(12.0, 3));
        }
        assert!(matches!(algorithm.phase, Phase::Learning { .. }));
        assert!(algorithm.measured);
        assert_eq!(algorithm.rtt().no_load, Some(Duration::from_millis(12)));
    }

    #[test]
    fn bad_settings_name_their_field() {
        assert_eq!(MinRtt::new(20, 0, 10, 0.25, 1).unwrap_err().field(), "min");
        assert_eq!(
            MinRtt::new(5, 10, 20, 0.25, 1).unwrap_err().field(),
            "initial"
        );
        assert_eq!(
            MinRtt::new(20, 1, 10, 0.25, 1).unwrap_err().field(),
            "initial"
        );
        assert_eq!(MinRtt::new(20, 30, 10, 0.25, 1).unwrap_err().field(), "max");
        for buffer in [0.0, -1.0, 11.0, f64::NAN, f64::INFINITY] {
            assert_eq!(
                MinRtt::new(20, 1, 100, buffer, 1).unwrap_err().field(),
                "buffer"
            );
        }
        assert_eq!(
            MinRtt::new(20, 1, 100, 0.25, 0).unwrap_err().field(),
            "probe_every"
        );
    }
}
