//! The markdown tables.

use std::fmt::Write;
use std::time::Duration;

use crate::stats::{Summary, Verdict};

/// One row: a guard at one load.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    /// The guard's label.
    pub guard: String,
    /// Times the capacity.
    pub load: f64,
    /// What it measured.
    pub summary: Summary,
    /// Its mark against the goal.
    pub verdict: Verdict,
    /// The shed limit when the window closed (our guards only).
    pub limit: Option<usize>,
}

const HEADER: &str = "| guard | load | offered/s | goodput 2xx/s | goodput % of capacity \
    | p99 of 2xx | refused/s | errors+timeouts/s | goal | shed limit |\n\
    |---|---|---:|---:|---:|---:|---:|---:|---|---:|\n";

/// A table of `rows` for a backend of `capacity` calls per second.
pub fn table(rows: &[Row], capacity: f64) -> String {
    let mut out = String::from(HEADER);
    for row in rows {
        let s = &row.summary;
        let bound = if s.generator_bound {
            " (generator-bound)"
        } else {
            ""
        };
        let limit = row.limit.map_or("-".into(), |limit| limit.to_string());
        let _ = writeln!(
            out,
            "| {} | {}x{bound} | {:.0} | {:.0} | {:.1}% | {} | {:.0} | {:.0} | {} | {limit} |",
            row.guard,
            row.load,
            s.offered,
            s.good,
            s.good / capacity * 100.0,
            millis(s.p99),
            s.refused,
            s.failed,
            row.verdict,
        );
    }
    out
}

/// A latency in milliseconds, `-` if none.
pub fn millis(latency: Option<Duration>) -> String {
    latency.map_or("-".into(), |l| {
        format!("{:.1} ms", l.as_secs_f64() * 1000.0)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_row_reads_as_measured() {
        let row = Row {
            guard: "preset default".into(),
            load: 4.0,
            summary: Summary {
                offered: 1598.4,
                good: 352.2,
                refused: 1200.0,
                failed: 46.0,
                refused_share: 0.75,
                p99: Some(Duration::from_micros(24_350)),
                generator_bound: true,
            },
            verdict: Verdict::Fail("goodput 88.1%".into()),
            limit: Some(6),
        };
        let table = table(&[row], 400.0);
        let last = table.lines().last().unwrap();
        assert_eq!(
            last,
            "| preset default | 4x (generator-bound) | 1598 | 352 | 88.0% | 24.4 ms | 1200 | 46 \
             | FAIL: goodput 88.1% | 6 |"
        );
        assert_eq!(table.lines().count(), 3);
        assert_eq!(millis(None), "-");
    }
}
