//! Numbers from samples: per-phase statistics, a bucketed timeline, medians over runs.

use crate::load::{Answer, Sample};

/// Answers of one kind in a phase: how many per second, and their latency.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Answers {
    pub(crate) per_s: f64,
    /// Milliseconds; `None` when there were no such answers.
    pub(crate) p50: Option<f64>,
    pub(crate) p99: Option<f64>,
}

/// One phase of one run (or the median of several runs).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct PhaseStats {
    pub(crate) phase: &'static str,
    /// Requests sent per second.
    pub(crate) offered: f64,
    pub(crate) fresh: Answers,
    pub(crate) degraded: Answers,
    pub(crate) refused: Answers,
    pub(crate) errors: f64,
    pub(crate) timeouts: f64,
    /// Backend calls per request sent.
    pub(crate) backend_calls: f64,
}

/// Statistics of the samples sent within `[from, to)` seconds; `backend_calls` reached the
/// backends meanwhile.
pub(crate) fn phase_stats(
    phase: &'static str,
    samples: &[Sample],
    (from, to): (f64, f64),
    backend_calls: u64,
) -> PhaseStats {
    let in_phase: Vec<&Sample> = samples
        .iter()
        .filter(|s| s.at >= from && s.at < to)
        .collect();
    let seconds = to - from;
    let per_s = |answer| in_phase.iter().filter(|s| s.answer == answer).count() as f64 / seconds;
    let answers = |answer| {
        let mut ms: Vec<f64> = in_phase
            .iter()
            .filter(|s| s.answer == answer)
            .map(|s| s.latency.as_secs_f64() * 1000.0)
            .collect();
        ms.sort_unstable_by(f64::total_cmp);
        Answers {
            per_s: ms.len() as f64 / seconds,
            p50: percentile(&ms, 0.50),
            p99: percentile(&ms, 0.99),
        }
    };
    PhaseStats {
        phase,
        offered: in_phase.len() as f64 / seconds,
        fresh: answers(Answer::Fresh),
        degraded: answers(Answer::Degraded),
        refused: answers(Answer::Refused),
        errors: per_s(Answer::Error),
        timeouts: per_s(Answer::Timeout),
        backend_calls: if in_phase.is_empty() {
            0.0
        } else {
            backend_calls as f64 / in_phase.len() as f64
        },
    }
}

/// The `q` quantile of `sorted` (nearest rank), `None` when empty.
fn percentile(sorted: &[f64], q: f64) -> Option<f64> {
    let rank = (sorted.len() as f64 * q).ceil() as usize;
    sorted.get(rank.clamp(1, sorted.len().max(1)) - 1).copied()
}

/// The median (the mean of the middle two of an even count); `None` when empty.
pub(crate) fn median(values: impl IntoIterator<Item = f64>) -> Option<f64> {
    let mut values: Vec<f64> = values.into_iter().collect();
    values.sort_unstable_by(f64::total_cmp);
    let middle = values.len() / 2;
    match values.len() {
        0 => None,
        n if n % 2 == 1 => Some(values[middle]),
        _ => Some((values[middle - 1] + values[middle]) / 2.0),
    }
}

/// Each cell the median of the same cell over `runs` (one phase each, at least one run).
/// A latency is the median over the runs that had such answers.
pub(crate) fn median_stats(runs: &[PhaseStats]) -> PhaseStats {
    let rate = |cell: fn(&PhaseStats) -> f64| median(runs.iter().map(cell)).unwrap_or(0.0);
    let latency = |cell: fn(&PhaseStats) -> Option<f64>| median(runs.iter().filter_map(cell));
    PhaseStats {
        phase: runs[0].phase,
        offered: rate(|s| s.offered),
        fresh: Answers {
            per_s: rate(|s| s.fresh.per_s),
            p50: latency(|s| s.fresh.p50),
            p99: latency(|s| s.fresh.p99),
        },
        degraded: Answers {
            per_s: rate(|s| s.degraded.per_s),
            p50: latency(|s| s.degraded.p50),
            p99: latency(|s| s.degraded.p99),
        },
        refused: Answers {
            per_s: rate(|s| s.refused.per_s),
            p50: latency(|s| s.refused.p50),
            p99: latency(|s| s.refused.p99),
        },
        errors: rate(|s| s.errors),
        timeouts: rate(|s| s.timeouts),
        backend_calls: rate(|s| s.backend_calls),
    }
}

/// One bucket of the timeline: answers that arrived in it per second (all kinds, fresh,
/// degraded), and the p99 of its fresh answers in ms (`None` when it had none).
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Point {
    pub(crate) answered: f64,
    pub(crate) fresh: f64,
    pub(crate) degraded: f64,
    pub(crate) fresh_p99: Option<f64>,
}

/// `count` buckets of `width` seconds from the start of the run, each with the answers
/// that arrived in it (a timeout arrives when the caller gives up), so a rate compares with
/// the capacity. A bucket in which nothing arrived has no data (`None`), which is not the
/// same as no fresh answers.
pub(crate) fn timeline(samples: &[Sample], width: f64, count: usize) -> Vec<Option<Point>> {
    let mut buckets: Vec<Vec<&Sample>> = vec![Vec::new(); count];
    for sample in samples {
        let index = ((sample.at + sample.latency.as_secs_f64()) / width).floor();
        if index >= 0.0 && (index as usize) < count {
            buckets[index as usize].push(sample);
        }
    }
    buckets
        .iter()
        .map(|bucket| {
            if bucket.is_empty() {
                return None;
            }
            let count = |answer| bucket.iter().filter(|s| s.answer == answer).count() as f64;
            let mut fresh_ms: Vec<f64> = bucket
                .iter()
                .filter(|s| s.answer == Answer::Fresh)
                .map(|s| s.latency.as_secs_f64() * 1000.0)
                .collect();
            fresh_ms.sort_unstable_by(f64::total_cmp);
            Some(Point {
                answered: bucket.len() as f64 / width,
                fresh: count(Answer::Fresh) / width,
                degraded: count(Answer::Degraded) / width,
                fresh_p99: percentile(&fresh_ms, 0.99),
            })
        })
        .collect()
}

/// Per bucket, the median over the runs that have data there.
pub(crate) fn median_timeline(runs: &[Vec<Option<Point>>]) -> Vec<Option<Point>> {
    let count = runs.iter().map(Vec::len).max().unwrap_or(0);
    (0..count)
        .map(|i| {
            let points: Vec<Point> = runs.iter().filter_map(|r| r.get(i).copied()?).collect();
            let cell = |f: fn(&Point) -> f64| median(points.iter().map(f));
            Some(Point {
                answered: cell(|p| p.answered)?,
                fresh: cell(|p| p.fresh)?,
                degraded: cell(|p| p.degraded)?,
                fresh_p99: median(points.iter().filter_map(|p| p.fresh_p99)),
            })
        })
        .collect()
}

/// Seconds from bucket `from` until the first bucket in which at least 95% of the answers
/// were fresh (`None`: not within the timeline).
pub(crate) fn recovery(timeline: &[Option<Point>], width: f64, from: usize) -> Option<f64> {
    timeline
        .iter()
        .enumerate()
        .skip(from)
        .find(|(_, p)| p.is_some_and(|p| p.fresh >= 0.95 * p.answered))
        .map(|(i, _)| (i - from) as f64 * width)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn sample(at: f64, ms: u64, answer: Answer) -> Sample {
        Sample {
            at,
            latency: Duration::from_millis(ms),
            answer,
        }
    }

    #[test]
    fn median_of_odd_even_and_no_values() {
        assert_eq!(median([3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median([4.0, 1.0, 3.0, 2.0]), Some(2.5));
        assert_eq!(median([7.0]), Some(7.0));
        assert_eq!(median([]), None);
        assert_eq!(
            median([1.0, f64::INFINITY, f64::INFINITY]),
            Some(f64::INFINITY)
        );
    }

    #[test]
    fn phases_count_each_kind_of_answer_separately() {
        let samples = [
            sample(0.1, 10, Answer::Fresh),
            sample(0.2, 20, Answer::Fresh),
            sample(0.3, 5, Answer::Degraded),
            sample(0.4, 1, Answer::Refused),
            sample(0.5, 30, Answer::Error),
            sample(0.6, 1000, Answer::Timeout),
            sample(0.7, 1000, Answer::Timeout),
            // Outside the phase.
            sample(2.0, 10, Answer::Fresh),
            sample(-0.1, 10, Answer::Fresh),
        ];
        let stats = phase_stats("steady", &samples, (0.0, 0.5), 14);
        // Half a second: counts double into rates. 0.5 is the next phase's.
        assert_eq!(stats.offered, 8.0);
        assert_eq!(
            stats.fresh,
            Answers {
                per_s: 4.0,
                p50: Some(10.0),
                p99: Some(20.0)
            }
        );
        assert_eq!(stats.degraded.per_s, 2.0);
        assert_eq!(stats.degraded.p99, Some(5.0));
        assert_eq!(stats.refused.per_s, 2.0);
        assert_eq!(stats.errors, 0.0);
        assert_eq!(stats.timeouts, 0.0);
        assert_eq!(stats.backend_calls, 14.0 / 4.0);
        let later = phase_stats("later", &samples, (0.5, 1.0), 0);
        assert_eq!((later.errors, later.timeouts), (2.0, 4.0));
        assert_eq!(later.fresh.p50, None);
        assert_eq!(later.fresh.per_s, 0.0);
    }

    #[test]
    fn p99_is_the_nearest_rank() {
        let ms: Vec<f64> = (1..=200).map(f64::from).collect();
        assert_eq!(percentile(&ms, 0.99), Some(198.0));
        assert_eq!(percentile(&ms, 0.50), Some(100.0));
        assert_eq!(percentile(&[4.0], 0.99), Some(4.0));
        assert_eq!(percentile(&[], 0.99), None);
    }

    #[test]
    fn median_over_runs_is_per_cell_and_ignores_missing_latencies() {
        let run = |fresh: f64, p99: Option<f64>| PhaseStats {
            phase: "outage",
            offered: 200.0,
            fresh: Answers {
                per_s: fresh,
                p50: p99,
                p99,
            },
            degraded: Answers {
                per_s: 200.0 - fresh,
                p50: None,
                p99: None,
            },
            refused: Answers {
                per_s: 0.0,
                p50: None,
                p99: None,
            },
            errors: fresh / 10.0,
            timeouts: 0.0,
            backend_calls: 2.0,
        };
        let median = median_stats(&[
            run(0.0, None),
            run(100.0, Some(30.0)),
            run(50.0, Some(10.0)),
        ]);
        assert_eq!(median.phase, "outage");
        assert_eq!(median.fresh.per_s, 50.0);
        assert_eq!(median.degraded.per_s, 150.0);
        assert_eq!(median.errors, 5.0);
        // Two runs had fresh answers: the median of their p99s.
        assert_eq!(median.fresh.p99, Some(20.0));
        assert_eq!(median.degraded.p99, None);
    }

    #[test]
    fn a_bucket_without_answers_is_a_gap_not_a_zero() {
        let samples = [
            sample(0.2, 10, Answer::Fresh),
            sample(0.5, 30, Answer::Degraded),
            // Sent in bucket 0, arrives in bucket 1.
            sample(0.99, 20, Answer::Fresh),
            // Bucket 2 (2.0..3.0) gets nothing; bucket 3 a timeout and no fresh answer.
            sample(2.5, 1000, Answer::Timeout),
            // Arrives past the timeline: ignored.
            sample(3.995, 10, Answer::Fresh),
        ];
        let timeline = timeline(&samples, 1.0, 4);
        assert_eq!(
            timeline,
            [
                Some(Point {
                    answered: 2.0,
                    fresh: 1.0,
                    degraded: 1.0,
                    fresh_p99: Some(10.0)
                }),
                Some(Point {
                    answered: 1.0,
                    fresh: 1.0,
                    degraded: 0.0,
                    fresh_p99: Some(20.0)
                }),
                None,
                Some(Point {
                    answered: 1.0,
                    fresh: 0.0,
                    degraded: 0.0,
                    fresh_p99: None
                }),
            ]
        );
    }

    #[test]
    fn median_timeline_keeps_gaps_where_no_run_has_data() {
        let point = |fresh, p99| Point {
            answered: 10.0,
            fresh,
            degraded: 10.0 - fresh,
            fresh_p99: p99,
        };
        let runs = [
            vec![Some(point(10.0, Some(12.0))), None, Some(point(0.0, None))],
            vec![Some(point(6.0, Some(20.0))), None, None],
            vec![Some(point(8.0, None)), None],
        ];
        let median = median_timeline(&runs);
        assert_eq!(median.len(), 3);
        assert_eq!(median[0], Some(point(8.0, Some(16.0))));
        assert_eq!(median[1], None);
        assert_eq!(median[2], Some(point(0.0, None)));
    }

    #[test]
    fn recovery_is_the_first_bucket_with_95_percent_fresh() {
        let point = |fresh| {
            Some(Point {
                answered: 100.0,
                fresh,
                degraded: 0.0,
                fresh_p99: None,
            })
        };
        let timeline = [point(100.0), point(10.0), None, point(94.0), point(95.0)];
        assert_eq!(recovery(&timeline, 0.5, 1), Some(1.5));
        assert_eq!(recovery(&timeline, 0.5, 0), Some(0.0));
        assert_eq!(recovery(&timeline[..4], 0.5, 1), None);
        assert_eq!(recovery(&timeline, 0.5, 9), None);
    }
}
