//! What the drill prints and writes: per-phase statistics, a table, JSON and an SVG.

use std::fmt::Write as _;
use std::time::Duration;

use crate::load::Sample;

/// One phase of one run.
#[derive(Debug, Clone)]
pub(crate) struct PhaseStats {
    pub(crate) phase: &'static str,
    pub(crate) requests: usize,
    /// Successful requests per second.
    pub(crate) goodput: f64,
    pub p50: Duration,
    pub p99: Duration,
    pub(crate) error_rate: f64,
    /// Backend calls per edge request.
    pub(crate) amplification: f64,
}

/// Statistics of the samples started within `[from, to)` seconds.
pub(crate) fn phase_stats(
    phase: &'static str,
    samples: &[Sample],
    from: f64,
    to: f64,
    backend_calls: u64,
) -> PhaseStats {
    let in_phase: Vec<&Sample> = samples
        .iter()
        .filter(|s| s.at >= from && s.at < to)
        .collect();
    let mut ok: Vec<Duration> = in_phase
        .iter()
        .filter(|s| s.ok)
        .map(|s| s.latency)
        .collect();
    ok.sort_unstable();
    let pick = |q: f64| {
        ok.get(((ok.len() as f64 * q) as usize).min(ok.len().saturating_sub(1)))
            .copied()
            .unwrap_or_default()
    };
    let requests = in_phase.len();
    PhaseStats {
        phase,
        requests,
        goodput: ok.len() as f64 / (to - from),
        p50: pick(0.5),
        p99: pick(0.99),
        error_rate: if requests == 0 {
            0.0
        } else {
            1.0 - ok.len() as f64 / requests as f64
        },
        amplification: if requests == 0 {
            0.0
        } else {
            backend_calls as f64 / requests as f64
        },
    }
}

/// Seconds after `from` until a one-second bucket has at least 95% of its requests
/// succeed (`None`: never, within the run).
pub(crate) fn recovery(samples: &[Sample], from: f64, end: f64) -> Option<f64> {
    let mut t = from;
    while t < end {
        let bucket: Vec<&Sample> = samples
            .iter()
            .filter(|s| s.at >= t && s.at < t + 1.0)
            .collect();
        if !bucket.is_empty() && bucket.iter().filter(|s| s.ok).count() * 100 >= bucket.len() * 95 {
            return Some(t - from);
        }
        t += 0.25;
    }
    None
}

/// Goodput and p99 per second, for the timeline.
pub(crate) fn timeline(samples: &[Sample], end: f64) -> Vec<(f64, f64)> {
    (0..end.ceil() as usize)
        .map(|second| {
            let t = second as f64;
            let mut ok: Vec<Duration> = samples
                .iter()
                .filter(|s| s.at >= t && s.at < t + 1.0 && s.ok)
                .map(|s| s.latency)
                .collect();
            ok.sort_unstable();
            let p99 = ok
                .get((ok.len() * 99 / 100).min(ok.len().saturating_sub(1)))
                .map_or(0.0, |d| d.as_secs_f64() * 1000.0);
            (ok.len() as f64, p99)
        })
        .collect()
}

pub(crate) fn table(
    unprotected: &[PhaseStats],
    protected: &[PhaseStats],
    recoveries: [Option<f64>; 2],
) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:<10} {:<12} {:>9} {:>9} {:>9} {:>8} {:>8}",
        "phase", "run", "goodput/s", "p50", "p99", "errors", "backend x"
    );
    for (a, b) in unprotected.iter().zip(protected) {
        for (run, s) in [("unprotected", a), ("protected", b)] {
            let _ = writeln!(
                out,
                "{:<10} {:<12} {:>9.0} {:>9.1?} {:>9.1?} {:>7.1}% {:>8.2}",
                s.phase,
                run,
                s.goodput,
                s.p50,
                s.p99,
                s.error_rate * 100.0,
                s.amplification
            );
        }
    }
    let show = |r: Option<f64>| r.map_or("not within the run".to_string(), |s| format!("{s:.2} s"));
    let _ = writeln!(
        out,
        "time to 95% success after the outage: unprotected {}, protected {}",
        show(recoveries[0]),
        show(recoveries[1])
    );
    out
}

pub(crate) fn json(
    unprotected: &[PhaseStats],
    protected: &[PhaseStats],
    recoveries: [Option<f64>; 2],
) -> String {
    let run = |stats: &[PhaseStats], recovery: Option<f64>| {
        let phases: Vec<String> = stats
            .iter()
            .map(|s| {
                format!(
                    r#"{{"phase":"{}","requests":{},"goodput_per_s":{:.1},"p50_ms":{:.2},"p99_ms":{:.2},"error_rate":{:.4},"backend_amplification":{:.3}}}"#,
                    s.phase,
                    s.requests,
                    s.goodput,
                    s.p50.as_secs_f64() * 1000.0,
                    s.p99.as_secs_f64() * 1000.0,
                    s.error_rate,
                    s.amplification
                )
            })
            .collect();
        format!(
            r#"{{"phases":[{}],"recovery_s":{}}}"#,
            phases.join(","),
            recovery.map_or("null".to_string(), |r| format!("{r:.2}"))
        )
    };
    format!(
        r#"{{"unprotected":{},"protected":{}}}"#,
        run(unprotected, recoveries[0]),
        run(protected, recoveries[1])
    )
}

/// Goodput (top) and p99 (bottom) over time, both runs, phases shaded.
pub(crate) fn svg(
    phases: &[(&'static str, f64, f64)],
    runs: [&[(f64, f64)]; 2],
    end: f64,
) -> String {
    let (width, panel, left) = (900.0, 220.0, 60.0);
    let plot_width = width - left - 20.0;
    let x = |t: f64| left + t / end * plot_width;
    let max_goodput = runs
        .iter()
        .flat_map(|r| r.iter().map(|p| p.0))
        .fold(1.0, f64::max);
    let max_p99 = runs
        .iter()
        .flat_map(|r| r.iter().map(|p| p.1))
        .fold(1.0, f64::max);
    let mut out = String::new();
    let _ = write!(
        out,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{}" font-family="sans-serif" font-size="11">"#,
        panel * 2.0 + 60.0
    );
    for (i, (name, from, to)) in phases.iter().enumerate() {
        let shade = if i % 2 == 0 { "#f2f2f2" } else { "#e4e4e4" };
        let _ = write!(
            out,
            r#"<rect x="{:.1}" y="10" width="{:.1}" height="{}" fill="{shade}"/><text x="{:.1}" y="24">{name}</text>"#,
            x(*from),
            x(*to) - x(*from),
            panel * 2.0 + 20.0,
            x(*from) + 4.0
        );
    }
    for (panel_index, (label, max, pick)) in [
        ("goodput (req/s)", max_goodput, 0usize),
        ("p99 of successes (ms)", max_p99, 1usize),
    ]
    .into_iter()
    .enumerate()
    {
        let top = 30.0 + panel_index as f64 * (panel + 10.0);
        let _ = write!(
            out,
            r#"<text x="4" y="{:.1}">{label}</text><text x="4" y="{:.1}">{max:.0}</text>"#,
            top + 12.0,
            top + 26.0
        );
        for (run, color) in runs.iter().zip(["#d62728", "#1f77b4"]) {
            let points: Vec<String> = run
                .iter()
                .enumerate()
                .map(|(second, point)| {
                    let value = if pick == 0 { point.0 } else { point.1 };
                    format!(
                        "{:.1},{:.1}",
                        x(second as f64 + 0.5),
                        top + panel - value / max * (panel - 20.0)
                    )
                })
                .collect();
            let _ = write!(
                out,
                r#"<polyline fill="none" stroke="{color}" stroke-width="2" points="{}"/>"#,
                points.join(" ")
            );
        }
    }
    let _ = write!(
        out,
        r##"<text x="{left}" y="{:.1}" fill="#d62728">unprotected</text><text x="{:.1}" y="{:.1}" fill="#1f77b4">protected (bulwark presets)</text></svg>"##,
        panel * 2.0 + 55.0,
        left + 100.0,
        panel * 2.0 + 55.0
    );
    out
}
