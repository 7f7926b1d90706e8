//! The end-to-end bench's runs summed up per variant (medians and spreads over the runs),
//! set against the bare variant measured in the same rounds, and printed as a markdown
//! table.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::time::Duration;

use http::StatusCode;

use crate::pinned::Measured;

/// Medians and spread of one number over the runs.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Spread {
    /// The median.
    pub median: f64,
    /// The first quartile.
    pub q1: f64,
    /// The third quartile.
    pub q3: f64,
    /// The lowest.
    pub min: f64,
    /// The highest.
    pub max: f64,
}

impl Spread {
    /// The spread of `values` (NaNs left out); `None` if there are none.
    pub fn of(values: impl IntoIterator<Item = f64>) -> Option<Spread> {
        let mut sorted: Vec<f64> = values.into_iter().filter(|v| !v.is_nan()).collect();
        sorted.sort_by(f64::total_cmp);
        Some(Spread {
            median: quantile(&sorted, 0.5)?,
            q1: quantile(&sorted, 0.25)?,
            q3: quantile(&sorted, 0.75)?,
            min: *sorted.first()?,
            max: *sorted.last()?,
        })
    }
}

/// The `q` quantile (0..=1) of sorted `values`, interpolated between neighbours.
fn quantile(sorted: &[f64], q: f64) -> Option<f64> {
    let last = sorted.len().checked_sub(1)?;
    let at = q.clamp(0.0, 1.0) * last as f64;
    let (low, high) = (at.floor() as usize, at.ceil() as usize);
    Some(sorted[low] + (sorted[high] - sorted[low]) * (at - low as f64))
}

/// One variant over all its runs.
#[derive(Debug, Clone, PartialEq)]
pub struct Summary {
    /// How the table names it.
    pub label: String,
    /// 2xx answers per second, per run.
    pub throughputs: Vec<f64>,
    /// Their spread.
    pub throughput: Spread,
    /// The median over the runs of each run's p50 of 2xx latencies.
    pub p50: Option<Duration>,
    /// The median over the runs of each run's p99.
    pub p99: Option<Duration>,
    /// The server thread's CPU time per answer in the window, microseconds (median).
    pub server_cpu: Option<f64>,
    /// The generator thread's CPU time per answer, microseconds (median).
    pub client_cpu: Option<f64>,
    /// Answers in the windows of all runs, by status.
    pub statuses: BTreeMap<u16, u64>,
    /// Calls that failed without an answer, all windows.
    pub errors: u64,
    /// 503 answers during the warm-ups.
    pub warmup_503: u64,
    /// The fewest and most connections the server accepted in a run.
    pub connections: (u64, u64),
    /// The shed limit, where the server has one: when each window closed, and the lowest
    /// and highest read in any window.
    pub limit: Option<LimitSummary>,
}

/// The shed limit over all runs.
#[derive(Debug, Clone, PartialEq)]
pub struct LimitSummary {
    /// When each window closed, run by run.
    pub at_end: Vec<usize>,
    /// The lowest read in any window.
    pub lowest: usize,
    /// The highest read in any window.
    pub highest: usize,
    /// Calls shed by the layer, all runs, warm-ups included.
    pub shed: u64,
}

impl Summary {
    /// Sums up `runs` of the variant called `label`; `None` if there are no runs.
    pub fn of(label: String, runs: &[Measured]) -> Option<Summary> {
        let throughputs: Vec<f64> = runs.iter().map(|r| r.tally.throughput()).collect();
        let micros = |d: Duration| d.as_secs_f64() * 1e6;
        let median_latency = |q: f64| {
            let latencies = runs.iter().filter_map(|r| r.tally.latency(q)).map(micros);
            Spread::of(latencies).map(|s| Duration::from_secs_f64(s.median / 1e6))
        };
        let per_answer = |cpu: fn(&Measured) -> Option<Duration>| {
            let per_run = runs.iter().filter_map(|r| {
                let answers = r.tally.answers();
                Some(micros(cpu(r)?) / answers as f64).filter(|_| answers > 0)
            });
            Spread::of(per_run).map(|s| s.median)
        };
        let mut statuses = BTreeMap::new();
        for run in runs {
            for (status, count) in &run.tally.statuses {
                *statuses.entry(*status).or_default() += count;
            }
        }
        let traces: Vec<_> = runs.iter().filter_map(|r| r.limit).collect();
        let limit = (!traces.is_empty()).then(|| LimitSummary {
            at_end: traces.iter().map(|t| t.end).collect(),
            lowest: traces.iter().map(|t| t.lowest).min().unwrap_or_default(),
            highest: traces.iter().map(|t| t.highest).max().unwrap_or_default(),
            shed: traces.iter().map(|t| t.shed).sum(),
        });
        let connections = runs.iter().map(|r| r.connections);
        Some(Summary {
            label,
            throughput: Spread::of(throughputs.iter().copied())?,
            throughputs,
            p50: median_latency(0.5),
            p99: median_latency(0.99),
            server_cpu: per_answer(|r| r.server_cpu),
            client_cpu: per_answer(|r| r.client_cpu),
            statuses,
            errors: runs.iter().map(|r| r.tally.errors).sum(),
            warmup_503: runs.iter().map(|r| r.tally.warmup_503).sum(),
            connections: (
                connections.clone().min().unwrap_or_default(),
                connections.max().unwrap_or_default(),
            ),
            limit,
        })
    }

    /// Answers of any status, all windows.
    pub fn answers(&self) -> u64 {
        self.statuses.values().sum()
    }

    /// 503 answers in the windows.
    pub fn sheds(&self) -> u64 {
        self.statuses
            .get(&StatusCode::SERVICE_UNAVAILABLE.as_u16())
            .copied()
            .unwrap_or_default()
    }
}

/// What a variant costs against the bare one measured in the same rounds.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Cost {
    /// `1 / median throughput - 1 / bare median throughput`, in microseconds per request.
    pub micros_per_request: f64,
    /// `1 - median throughput / bare median throughput`.
    pub share: f64,
    /// The same share taken round by round (each run against the bare run of its round),
    /// over the rounds.
    pub paired: Option<Spread>,
}

impl Cost {
    /// `variant` against `bare`.
    pub fn of(variant: &Summary, bare: &Summary) -> Cost {
        let (v, b) = (variant.throughput.median, bare.throughput.median);
        let paired = variant
            .throughputs
            .iter()
            .zip(&bare.throughputs)
            .map(|(v, b)| 1.0 - v / b);
        Cost {
            micros_per_request: (1.0 / v - 1.0 / b) * 1e6,
            share: 1.0 - v / b,
            paired: Spread::of(paired),
        }
    }
}

const HEADER: &str = "| stack | 2xx/s median | IQR | min–max | p50 | p99 \
    | cost per request | share of throughput | same, paired by round: median (min–max) \
    | server CPU per answer | client CPU per answer | answers | shed limit |\n\
    |---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---|\n";

/// The table: every row against `rows[bare]`, the bare variant.
pub fn table(rows: &[Summary], bare: usize) -> String {
    let mut out = String::from(HEADER);
    let Some(base) = rows.get(bare) else {
        return out;
    };
    for (i, row) in rows.iter().enumerate() {
        let is_base = i == bare;
        let t = &row.throughput;
        let cost = Cost::of(row, base);
        let (micros, share, paired) = if is_base {
            ("-".into(), "-".into(), "-".into())
        } else {
            let paired = cost.paired.map_or("-".into(), |p| {
                format!(
                    "{} ({} to {})",
                    percent(p.median),
                    percent(p.min),
                    percent(p.max)
                )
            });
            (
                format!("{:+.2} µs", cost.micros_per_request),
                percent(cost.share),
                paired,
            )
        };
        let cpu = |own: Option<f64>, base: Option<f64>| match (own, base) {
            (Some(own), Some(base)) if !is_base => {
                format!("{own:.2} µs ({:+.2})", own - base)
            }
            (Some(own), _) => format!("{own:.2} µs"),
            (None, _) => "-".into(),
        };
        let _ = writeln!(
            out,
            "| {} | {:.0} | {:.0}–{:.0} | {:.0}–{:.0} | {} | {} | {micros} | {share} | {paired} \
             | {} | {} | {} | {} |",
            row.label,
            t.median,
            t.q1,
            t.q3,
            t.min,
            t.max,
            micros_of(row.p50),
            micros_of(row.p99),
            cpu(row.server_cpu, base.server_cpu),
            cpu(row.client_cpu, base.client_cpu),
            answers(row),
            limit(row.limit.as_ref()),
        );
    }
    out
}

/// The statuses, errors and warm-up sheds of a row; sheds in bold.
fn answers(row: &Summary) -> String {
    let total = row.answers().max(1) as f64;
    let mut parts: Vec<String> = row
        .statuses
        .iter()
        .map(|(&status, &count)| {
            if status == StatusCode::SERVICE_UNAVAILABLE.as_u16() {
                format!("**503: {count} ({:.3}%)**", count as f64 / total * 100.0)
            } else {
                format!("{status}: {count}")
            }
        })
        .collect();
    if row.errors > 0 {
        parts.push(format!("errors: {}", row.errors));
    }
    if row.warmup_503 > 0 {
        parts.push(format!("**503 in warm-ups: {}**", row.warmup_503));
    }
    parts.join(", ")
}

/// The shed limit of a row, `-` if it has none.
fn limit(limit: Option<&LimitSummary>) -> String {
    limit.map_or("-".into(), |l| {
        let ends = Spread::of(l.at_end.iter().map(|&e| e as f64));
        let ends = ends.map_or("-".into(), |e| {
            format!("{:.0} ({:.0}–{:.0})", e.median, e.min, e.max)
        });
        format!(
            "at window end {ends}; lowest {}, highest {}; shed {}",
            l.lowest, l.highest, l.shed
        )
    })
}

/// A latency in microseconds, `-` if none.
pub fn micros_of(latency: Option<Duration>) -> String {
    latency.map_or("-".into(), |l| format!("{:.0} µs", l.as_secs_f64() * 1e6))
}

/// A share as a percentage with a sign when negative (a variant faster than bare).
fn percent(share: f64) -> String {
    format!("{:.2}%", share * 100.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spreads_interpolate_quartiles() {
        let s = Spread::of([5.0, 1.0, 3.0, 2.0, 4.0]).unwrap();
        assert_eq!(
            (s.median, s.q1, s.q3, s.min, s.max),
            (3.0, 2.0, 4.0, 1.0, 5.0)
        );
        let even = Spread::of([1.0, 2.0, 3.0, 4.0]).unwrap();
        assert_eq!(even.median, 2.5);
        assert_eq!(even.q1, 1.75);
        assert_eq!(Spread::of([f64::NAN]), None);
        assert_eq!(Spread::of([7.0]).unwrap().q3, 7.0);
    }

    fn summary(throughputs: &[f64]) -> Summary {
        Summary {
            label: "x".into(),
            throughputs: throughputs.to_vec(),
            throughput: Spread::of(throughputs.iter().copied()).unwrap(),
            p50: Some(Duration::from_micros(700)),
            p99: None,
            server_cpu: Some(10.0),
            client_cpu: None,
            statuses: [(200, 990), (503, 10)].into_iter().collect(),
            errors: 0,
            warmup_503: 3,
            connections: (32, 33),
            limit: Some(LimitSummary {
                at_end: vec![2, 1, 3],
                lowest: 1,
                highest: 20,
                shed: 13,
            }),
        }
    }

    #[test]
    fn cost_per_request_and_share_of_throughput() {
        let bare = summary(&[50_000.0, 40_000.0, 60_000.0]);
        let preset = summary(&[40_000.0, 40_000.0, 40_000.0]);
        let cost = Cost::of(&preset, &bare);
        // 1/40,000 - 1/50,000 s = 5 µs.
        assert!((cost.micros_per_request - 5.0).abs() < 1e-9);
        assert!((cost.share - 0.2).abs() < 1e-12);
        let paired = cost.paired.unwrap();
        assert!((paired.median - 0.2).abs() < 1e-12);
        assert!((paired.min - 0.0).abs() < 1e-12);
        assert!((paired.max - 1.0 / 3.0).abs() < 1e-12);
    }

    #[test]
    fn the_table_marks_sheds_and_the_limit() {
        let bare = summary(&[50_000.0]);
        let preset = summary(&[40_000.0]);
        let table = table(&[bare, preset], 0);
        let lines: Vec<&str> = table.lines().collect();
        assert_eq!(lines.len(), 4);
        assert!(lines[2].contains("| - | - | - |"), "{}", lines[2]);
        assert!(lines[3].contains("+5.00 µs | 20.00% | 20.00% (20.00% to 20.00%)"));
        assert!(lines[3].contains("10.00 µs (+0.00)"));
        assert!(lines[3].contains("**503: 10 (1.000%)**"));
        assert!(lines[3].contains("**503 in warm-ups: 3**"));
        assert!(lines[3].contains("at window end 2 (1–3); lowest 1, highest 20; shed 13"));
        assert_eq!(micros_of(Some(Duration::from_micros(1234))), "1234 µs");
    }
}
