//! A run summed up, and judged against the goal.

use std::fmt;
use std::time::Duration;

use hdrhistogram::Histogram;

use crate::load::{Answer, Run};

/// The share of its scheduled arrivals a generator must start in the window for the row to
/// count as measuring the server, not the generator.
const KEPT_SCHEDULE: f64 = 0.9;

/// One run's numbers.
#[derive(Debug, Clone, PartialEq)]
pub struct Summary {
    /// Calls sent for the window, per second.
    pub offered: f64,
    /// 2xx (gRPC `OK`) answers within the client's timeout, per second.
    pub good: f64,
    /// Refusals per second.
    pub refused: f64,
    /// Errors and timeouts per second.
    pub failed: f64,
    /// Refusals as a share of the calls measured.
    pub refused_share: f64,
    /// p99 latency of the good answers.
    pub p99: Option<Duration>,
    /// The generator started fewer than 90% of the window's arrivals in the window.
    pub generator_bound: bool,
}

impl Summary {
    /// Sums up `run`.
    pub fn of(run: &Run) -> Summary {
        let seconds = run.window.as_secs_f64();
        let count = |answers: &[Answer]| {
            let n = run
                .samples
                .iter()
                .filter(|s| answers.contains(&s.answer))
                .count();
            n as f64
        };
        let refused = count(&[Answer::Refused]);
        let measured = run.samples.len() as f64;
        let started = run.samples.iter().filter(|s| s.started_in_window).count() as f64;
        let good = run.samples.iter().filter(|s| s.answer == Answer::Good);
        Summary {
            offered: measured / seconds,
            good: count(&[Answer::Good]) / seconds,
            refused: refused / seconds,
            failed: count(&[Answer::Error, Answer::Timeout]) / seconds,
            refused_share: if measured > 0.0 {
                refused / measured
            } else {
                0.0
            },
            p99: percentile(good.map(|s| s.latency), 0.99),
            generator_bound: started < KEPT_SCHEDULE * run.scheduled as f64,
        }
    }
}

/// The `quantile` (0..=1) of `latencies`, to three significant digits; `None` if empty.
pub fn percentile(
    latencies: impl IntoIterator<Item = Duration>,
    quantile: f64,
) -> Option<Duration> {
    // Microseconds, up to an hour (longer ones count as an hour).
    let mut histogram =
        Histogram::<u64>::new_with_bounds(1, 3_600_000_000, 3).expect("valid bounds");
    for latency in latencies {
        histogram.saturating_record(u64::try_from(latency.as_micros()).unwrap_or(u64::MAX));
    }
    (!histogram.is_empty()).then(|| Duration::from_micros(histogram.value_at_quantile(quantile)))
}

/// What the issue asks of a row: at 1x at most 0.5% refused; at 2x and over, goodput at
/// least 95% of capacity and the p99 of the good answers at most twice the unloaded p99.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Goal {
    /// The backend's nominal capacity, calls per second.
    pub capacity: f64,
    /// The p99 without load (0.25x, unprotected).
    pub unloaded_p99: Option<Duration>,
}

/// A row's mark against the [`Goal`].
#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    /// Meets it.
    Pass,
    /// Misses it: what was off.
    Fail(String),
    /// Below 1x: the goal says nothing.
    NotJudged,
}

impl Goal {
    /// Judges a row at `load` times the capacity.
    pub fn judge(&self, load: f64, summary: &Summary) -> Verdict {
        if load < 1.0 {
            return Verdict::NotJudged;
        }
        let mut misses = Vec::new();
        if load == 1.0 {
            if summary.refused_share > 0.005 {
                misses.push(format!("refused {:.2}%", summary.refused_share * 100.0));
            }
        } else {
            let share = summary.good / self.capacity;
            if share < 0.95 {
                misses.push(format!("goodput {:.1}%", share * 100.0));
            }
            match (summary.p99, self.unloaded_p99) {
                (Some(p99), Some(unloaded)) if p99 > unloaded * 2 => misses.push(format!(
                    "p99 {:.1}x unloaded",
                    p99.as_secs_f64() / unloaded.as_secs_f64()
                )),
                (Some(_), Some(_)) => {}
                (None, _) => misses.push("no 2xx".into()),
                (_, None) => misses.push("no unloaded p99".into()),
            }
        }
        if misses.is_empty() {
            Verdict::Pass
        } else {
            Verdict::Fail(misses.join(", "))
        }
    }
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Verdict::Pass => f.write_str("pass"),
            Verdict::Fail(why) => write!(f, "FAIL: {why}"),
            Verdict::NotJudged => f.write_str("-"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::load::Sample;

    fn ms(millis: u64) -> Duration {
        Duration::from_millis(millis)
    }

    #[test]
    fn percentiles_within_three_digits() {
        let latencies = (1..=1000).map(ms);
        let p99 = percentile(latencies.clone(), 0.99).unwrap();
        assert!(p99.abs_diff(ms(990)) <= ms(1), "p99 {p99:?}");
        let p50 = percentile(latencies, 0.5).unwrap();
        assert!(p50.abs_diff(ms(500)) <= ms(1), "p50 {p50:?}");
        assert_eq!(
            percentile([Duration::from_micros(1234)], 0.99),
            Some(Duration::from_micros(1234))
        );
        assert_eq!(percentile([], 0.99), None);
    }

    /// A run of `answers` (answer, latency in ms) over 2 s, the last `late` of them started
    /// after the window.
    fn run(answers: &[(Answer, u64)], scheduled: u64, late: usize) -> Run {
        let on_time = answers.len() - late;
        Run {
            samples: answers
                .iter()
                .enumerate()
                .map(|(i, &(answer, millis))| Sample {
                    latency: ms(millis),
                    answer,
                    started_in_window: i < on_time,
                })
                .collect(),
            scheduled,
            window: Duration::from_secs(2),
        }
    }

    #[test]
    fn a_summary_counts_per_second_and_takes_the_p99_of_good_answers_only() {
        let mut answers = vec![(Answer::Good, 10); 99];
        answers.push((Answer::Good, 20));
        answers.extend([(Answer::Refused, 0), (Answer::Error, 5)]);
        answers.extend([(Answer::Timeout, 1000); 2]);
        let summary = Summary::of(&run(&answers, 104, 0));
        assert_eq!(summary.offered, 52.0);
        assert_eq!(summary.good, 50.0);
        assert_eq!(summary.refused, 0.5);
        assert_eq!(summary.failed, 1.5);
        assert_eq!(summary.refused_share, 1.0 / 104.0);
        // The 1 s timeouts are not in the p99.
        assert!(summary.p99.unwrap().abs_diff(ms(10)) < ms(1));
        assert!(!summary.generator_bound);
        // Starting under 90% of the schedule in the window marks the row: calls not sent,
        // or started late.
        assert!(Summary::of(&run(&answers, 116, 0)).generator_bound);
        assert!(!Summary::of(&run(&answers, 115, 0)).generator_bound);
        let late = Summary::of(&run(&answers, 104, 11));
        assert_eq!(late.offered, 52.0);
        assert!(late.generator_bound);
        assert!(!Summary::of(&run(&answers, 104, 10)).generator_bound);
        assert_eq!(Summary::of(&run(&[], 0, 0)).refused_share, 0.0);
    }

    #[test]
    fn the_goal_per_load() {
        let goal = Goal {
            capacity: 400.0,
            unloaded_p99: Some(ms(12)),
        };
        let row = |good: f64, refused_share: f64, p99: Option<u64>| Summary {
            offered: 0.0,
            good,
            refused: 0.0,
            failed: 0.0,
            refused_share,
            p99: p99.map(ms),
            generator_bound: false,
        };
        assert_eq!(goal.judge(0.25, &row(0.0, 1.0, None)), Verdict::NotJudged);
        assert_eq!(goal.judge(1.0, &row(390.0, 0.005, Some(50))), Verdict::Pass);
        assert_eq!(
            goal.judge(1.0, &row(390.0, 0.006, Some(12))),
            Verdict::Fail("refused 0.60%".into())
        );
        assert_eq!(goal.judge(4.0, &row(380.0, 0.7, Some(24))), Verdict::Pass);
        assert_eq!(
            goal.judge(2.0, &row(379.0, 0.5, Some(25))),
            Verdict::Fail("goodput 94.8%, p99 2.1x unloaded".into())
        );
        assert_eq!(
            goal.judge(8.0, &row(0.0, 1.0, None)),
            Verdict::Fail("goodput 0.0%, no 2xx".into())
        );
        let blind = Goal {
            unloaded_p99: None,
            ..goal
        };
        assert_eq!(
            blind.judge(4.0, &row(400.0, 0.7, Some(1))),
            Verdict::Fail("no unloaded p99".into())
        );
    }
}
