//! What the drill prints: the table (aligned text or Markdown) and JSON.

use std::fmt::Write as _;

use crate::stats::{Answers, PhaseStats};

/// The two runs side by side: per-phase statistics and the recovery time of each.
pub(crate) struct Results<'a> {
    /// Unprotected, then protected.
    pub(crate) phases: [&'a [PhaseStats]; 2],
    /// Seconds from the start of the recovery phase until 95% of the answers arriving in a
    /// bucket are fresh (infinite or `None`: not within the phase).
    pub(crate) recovery: [Option<f64>; 2],
    /// Seconds per phase.
    pub(crate) phase_seconds: f64,
    pub(crate) seeds: &'a [u64],
}

const RUNS: [&str; 2] = ["unprotected", "protected"];

const COLUMNS: [&str; 14] = [
    "phase",
    "run",
    "offered/s",
    "fresh/s",
    "fresh p50",
    "fresh p99",
    "degraded/s",
    "degr. p50",
    "degr. p99",
    "refused/s",
    "refused p99",
    "errors/s",
    "timeouts/s",
    "backend calls/req",
];

impl Results<'_> {
    /// What each cell is: one run, or the median over several.
    pub(crate) fn statistic(&self) -> String {
        match self.seeds {
            [seed] => format!("one run, seed {seed}"),
            seeds => format!(
                "median over {} runs (seeds {}-{}), each cell separately",
                seeds.len(),
                seeds[0],
                seeds[seeds.len() - 1]
            ),
        }
    }

    fn rows(&self) -> Vec<[String; COLUMNS.len()]> {
        let rate = |r: f64| format!("{r:.1}");
        let ms = |l: Option<f64>| l.map_or("-".to_string(), |l| format!("{l:.1} ms"));
        let mut rows = Vec::new();
        for (i, phase) in self.phases[0].iter().enumerate() {
            for (run, stats) in RUNS.into_iter().zip(self.phases.map(|p| &p[i])) {
                rows.push([
                    if run == RUNS[0] { phase.phase } else { "" }.to_string(),
                    run.to_string(),
                    rate(stats.offered),
                    rate(stats.fresh.per_s),
                    ms(stats.fresh.p50),
                    ms(stats.fresh.p99),
                    rate(stats.degraded.per_s),
                    ms(stats.degraded.p50),
                    ms(stats.degraded.p99),
                    rate(stats.refused.per_s),
                    ms(stats.refused.p99),
                    rate(stats.errors),
                    rate(stats.timeouts),
                    format!("{:.2}", stats.backend_calls),
                ]);
            }
        }
        rows
    }

    fn recovery_line(&self) -> String {
        let show = |r: Option<f64>| match r {
            Some(s) if s.is_finite() => format!("{s:.1} s"),
            _ => "not within the phase".to_string(),
        };
        format!(
            "recovery: from the start of the recovery phase until 95% of the answers arriving in a tenth of a phase are fresh: unprotected {}, protected {}",
            show(self.recovery[0]),
            show(self.recovery[1])
        )
    }

    /// An aligned text table, with what its cells are above and the recovery times below.
    pub(crate) fn table(&self) -> String {
        let rows = self.rows();
        let widths: Vec<usize> = (0..COLUMNS.len())
            .map(|c| {
                rows.iter()
                    .map(|r| r[c].len())
                    .chain([COLUMNS[c].len()])
                    .max()
                    .unwrap_or(0)
            })
            .collect();
        let line = |cells: &[&str]| {
            let mut line = String::new();
            for (c, cell) in cells.iter().enumerate() {
                // Text columns left, numbers right.
                let _ = match c {
                    0 | 1 => write!(line, "{cell:<width$}  ", width = widths[c]),
                    _ => write!(line, "{cell:>width$}  ", width = widths[c]),
                };
            }
            line.trim_end().to_string()
        };
        let mut out = format!(
            "{} s per phase; {}\n{}\n",
            self.phase_seconds,
            self.statistic(),
            line(&COLUMNS)
        );
        for row in &rows {
            let _ = writeln!(out, "{}", line(&row.each_ref().map(String::as_str)));
        }
        let _ = writeln!(out, "{}", self.recovery_line());
        out
    }

    /// The table in Markdown, as in the README.
    pub(crate) fn markdown(&self) -> String {
        let mut out = format!(
            "{} s per phase; {}\n\n| {} |\n|---|---|{}\n",
            self.phase_seconds,
            self.statistic(),
            COLUMNS.join(" | "),
            "---:|".repeat(COLUMNS.len() - 2)
        );
        for row in self.rows() {
            let _ = writeln!(out, "| {} |", row.join(" | "));
        }
        let _ = writeln!(out, "\n{}", self.recovery_line());
        out
    }

    pub(crate) fn json(&self) -> String {
        let number = |v: Option<f64>| match v {
            Some(v) if v.is_finite() => format!("{v:.3}"),
            _ => "null".to_string(),
        };
        let answers = |a: &Answers| {
            format!(
                r#"{{"per_s":{:.3},"p50_ms":{},"p99_ms":{}}}"#,
                a.per_s,
                number(a.p50),
                number(a.p99)
            )
        };
        let run = |stats: &[PhaseStats], recovery: Option<f64>| {
            let phases: Vec<String> = stats
                .iter()
                .map(|s| {
                    // The fresh answers a second the backends can give in this phase, so
                    // fresh goodput can be read as a share of it.
                    let capacity = crate::PHASES
                        .iter()
                        .find(|(name, ..)| *name == s.phase)
                        .map_or(0.0, |(.., broken)| broken.capacity());
                    format!(
                        r#"{{"phase":"{}","offered_per_s":{:.3},"capacity_per_s":{:.3},"fresh":{},"degraded":{},"refused":{},"errors_per_s":{:.3},"timeouts_per_s":{:.3},"backend_calls_per_request":{:.3}}}"#,
                        s.phase,
                        s.offered,
                        capacity,
                        answers(&s.fresh),
                        answers(&s.degraded),
                        answers(&s.refused),
                        s.errors,
                        s.timeouts,
                        s.backend_calls
                    )
                })
                .collect();
            format!(
                r#"{{"phases":[{}],"recovery_s":{}}}"#,
                phases.join(","),
                number(recovery)
            )
        };
        let seeds: Vec<String> = self.seeds.iter().map(u64::to_string).collect();
        format!(
            r#"{{"phase_seconds":{},"seeds":[{}],"statistic":"{}","unprotected":{},"protected":{}}}"#,
            self.phase_seconds,
            seeds.join(","),
            if self.seeds.len() == 1 {
                "one run"
            } else {
                "median over runs, each cell separately"
            },
            run(self.phases[0], self.recovery[0]),
            run(self.phases[1], self.recovery[1])
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stats(phase: &'static str, fresh: f64, degraded: f64) -> PhaseStats {
        PhaseStats {
            phase,
            offered: 200.0,
            fresh: Answers {
                per_s: fresh,
                p50: (fresh > 0.0).then_some(11.25),
                p99: (fresh > 0.0).then_some(12.5),
            },
            degraded: Answers {
                per_s: degraded,
                p50: (degraded > 0.0).then_some(3.0),
                p99: (degraded > 0.0).then_some(4.0),
            },
            refused: Answers {
                per_s: 0.0,
                p50: None,
                p99: None,
            },
            errors: 200.0 - fresh - degraded,
            timeouts: 0.0,
            backend_calls: 1.5,
        }
    }

    fn results<'a>(
        unprotected: &'a [PhaseStats],
        protected: &'a [PhaseStats],
        seeds: &'a [u64],
    ) -> Results<'a> {
        Results {
            phases: [unprotected, protected],
            recovery: [None, Some(0.5)],
            phase_seconds: 10.0,
            seeds,
        }
    }

    #[test]
    fn fresh_and_degraded_are_separate_cells() {
        let (u, p) = ([stats("outage", 0.0, 0.0)], [stats("outage", 0.0, 199.5)]);
        let markdown = results(&u, &p, &[1]).markdown();
        assert!(markdown.starts_with("10 s per phase; one run, seed 1\n"));
        assert!(markdown.contains(
            "| outage | unprotected | 200.0 | 0.0 | - | - | 0.0 | - | - | 0.0 | - | 200.0 | 0.0 | 1.50 |"
        ));
        assert!(markdown.contains(
            "|  | protected | 200.0 | 0.0 | - | - | 199.5 | 3.0 ms | 4.0 ms | 0.0 | - | 0.5 | 0.0 | 1.50 |"
        ));
        assert!(markdown.contains("unprotected not within the phase, protected 0.5 s"));
    }

    #[test]
    fn several_seeds_say_the_cells_are_medians() {
        let (u, p) = ([stats("steady", 200.0, 0.0)], [stats("steady", 200.0, 0.0)]);
        let report = results(&u, &p, &[3, 4, 5]);
        assert!(report
            .table()
            .starts_with("10 s per phase; median over 3 runs (seeds 3-5), each cell separately\n"));
        assert!(report
            .json()
            .contains(r#""seeds":[3,4,5],"statistic":"median over runs, each cell separately""#));
    }

    #[test]
    fn json_has_null_for_missing_latencies_and_never_recovered() {
        let (u, p) = ([stats("outage", 0.0, 0.0)], [stats("outage", 100.0, 100.0)]);
        let json = results(&u, &p, &[1]).json();
        assert!(json.contains(
            r#""unprotected":{"phases":[{"phase":"outage","offered_per_s":200.000,"capacity_per_s":0.000,"fresh":{"per_s":0.000,"p50_ms":null,"p99_ms":null},"#
        ));
        assert!(json.contains(
            r#""fresh":{"per_s":100.000,"p50_ms":11.250,"p99_ms":12.500},"degraded":{"per_s":100.000,"p50_ms":3.000,"p99_ms":4.000}"#
        ));
        assert!(json.contains(r#""recovery_s":null}"#));
        assert!(json.contains(r#""recovery_s":0.500}"#));
        let infinite = Results {
            recovery: [Some(f64::INFINITY), None],
            ..results(&u, &p, &[1])
        };
        assert!(!infinite.json().contains("inf"));
    }

    #[test]
    fn json_gives_each_phases_backend_capacity_beside_fresh_goodput() {
        let (u, p) = ([stats("spike", 20.0, 0.0)], [stats("spike", 180.0, 0.0)]);
        let json = results(&u, &p, &[1]).json();
        let capacity = format!(
            r#""capacity_per_s":{:.3},"fresh":{{"per_s":180.000"#,
            crate::backend::CAPACITY
        );
        assert!(json.contains(&capacity), "{json}");
    }

    #[test]
    fn text_table_columns_line_up() {
        let (u, p) = ([stats("spike", 20.0, 0.0)], [stats("spike", 180.0, 0.0)]);
        let table = results(&u, &p, &[1]).table();
        let lines: Vec<&str> = table.lines().skip(1).take(3).collect();
        let end_of = |line: &str, cell: &str| line.find(cell).map(|i| i + cell.len());
        assert_eq!(end_of(lines[0], "offered/s"), end_of(lines[1], "200.0"));
        assert_eq!(end_of(lines[1], "200.0"), end_of(lines[2], "200.0"));
    }
}
