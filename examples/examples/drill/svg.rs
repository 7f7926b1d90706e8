//! The timeline as an SVG: answers per second of each run (fresh and degraded stacked,
//! with the offered load and the backends' capacity as lines), then the p99 of fresh
//! answers of both runs. Buckets without data are gaps, never a fall to zero.

use std::fmt::Write as _;

use crate::stats::Point;

/// A phase on the time axis, in seconds from the start of the run, with the load offered
/// and the fresh answers per second the backends can give (both in requests per second).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Band {
    pub(crate) name: &'static str,
    pub(crate) from: f64,
    pub(crate) to: f64,
    pub(crate) offered: f64,
    pub(crate) capacity: f64,
}

const WIDTH: f64 = 960.0;
const LEFT: f64 = 70.0;
const PLOT_WIDTH: f64 = WIDTH - LEFT - 30.0;
const TOP: f64 = 50.0;
const PANEL: f64 = 170.0;
/// Between panels: the x tick labels of one and the title of the next.
const GAP: f64 = 55.0;

const FRESH: &str = "#2ca02c";
const DEGRADED: &str = "#ff7f0e";
const RUN_COLORS: [&str; 2] = ["#d62728", "#1f77b4"];
const RUN_NAMES: [&str; 2] = ["unprotected", "protected (bulwark presets)"];

/// Maps seconds and values to pixels inside one panel.
struct Panel {
    top: f64,
    end: f64,
    /// The value at the top of the panel (linear) or the decades shown (log).
    scale: Scale,
}

enum Scale {
    Linear(f64),
    Log { low: f64, high: f64 },
}

impl Panel {
    fn x(&self, t: f64) -> f64 {
        LEFT + t / self.end * PLOT_WIDTH
    }

    fn y(&self, value: f64) -> f64 {
        let share = match self.scale {
            Scale::Linear(max) => value / max,
            Scale::Log { low, high } => {
                (value.max(low).log10() - low.log10()) / (high.log10() - low.log10())
            }
        };
        self.top + PANEL - share.clamp(0.0, 1.0) * PANEL
    }

    fn point(&self, (t, value): (f64, f64)) -> String {
        format!("{:.1},{:.1}", self.x(t), self.y(value))
    }
}

/// The SVG document. `runs` are the two timelines (unprotected, protected) in buckets of
/// `bucket` seconds.
pub(crate) fn svg(title: &str, bands: &[Band], runs: [&[Option<Point>]; 2], bucket: f64) -> String {
    let end = bands.last().map_or(1.0, |b| b.to);
    let height = TOP + 3.0 * (PANEL + GAP) + 10.0;
    let mut out = String::new();
    let _ = write!(
        out,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height}" font-family="sans-serif" font-size="11"><rect width="100%" height="100%" fill="white"/><text x="{LEFT}" y="20" font-size="14">{title}</text>"#
    );
    // One scale for both runs, so their panels compare.
    let rate_max = runs
        .iter()
        .flat_map(|run| run.iter().flatten().map(|p| p.fresh + p.degraded))
        .chain(bands.iter().flat_map(|b| [b.offered, b.capacity]))
        .fold(1.0, f64::max);
    let rate_ticks = ticks(rate_max);
    for (index, run) in runs.iter().enumerate() {
        let panel = Panel {
            top: TOP + index as f64 * (PANEL + GAP),
            end,
            scale: Scale::Linear(*rate_ticks.last().unwrap_or(&1.0)),
        };
        let title = format!("{}: answers arriving per second", RUN_NAMES[index]);
        frame(&mut out, &panel, bands, &title, index == 0);
        y_axis(&mut out, &panel, &rate_ticks);
        rates(&mut out, &panel, bands, run, bucket);
    }
    let latencies = runs
        .iter()
        .flat_map(|run| run.iter().flatten().filter_map(|p| p.fresh_p99));
    let decade_ticks = decades(latencies);
    let panel = Panel {
        top: TOP + 2.0 * (PANEL + GAP),
        end,
        scale: Scale::Log {
            low: decade_ticks[0],
            high: decade_ticks[decade_ticks.len() - 1],
        },
    };
    let title = "p99 of fresh answers, ms (log scale)";
    frame(&mut out, &panel, bands, title, false);
    y_axis(&mut out, &panel, &decade_ticks);
    for (run, color) in runs.iter().zip(RUN_COLORS) {
        let p99: Vec<Option<f64>> = run.iter().map(|p| p.and_then(|p| p.fresh_p99)).collect();
        for segment in segments(&p99) {
            let points: Vec<String> = steps(&segment, bucket).map(|p| panel.point(p)).collect();
            let _ = write!(
                out,
                r#"<polyline fill="none" stroke="{color}" stroke-width="1.5" points="{}"/>"#,
                points.join(" ")
            );
        }
    }
    legend(&mut out, height - 12.0);
    out.push_str("</svg>");
    out
}

/// One run's answers per second: fresh and degraded stacked, the offered load and the
/// capacity as step lines.
fn rates(out: &mut String, panel: &Panel, bands: &[Band], run: &[Option<Point>], bucket: f64) {
    let values = |f: fn(&Point) -> (f64, f64)| -> Vec<Option<(f64, f64)>> {
        run.iter().map(|p| p.as_ref().map(f)).collect()
    };
    // Fresh drawn last: its outline covers the zero-height degraded band of a bucket
    // without degraded answers.
    let degraded = values(|p| (p.fresh, p.fresh + p.degraded));
    area(out, panel, &degraded, bucket, DEGRADED);
    area(out, panel, &values(|p| (0.0, p.fresh)), bucket, FRESH);
    band_line(out, panel, bands, |b| b.offered, "#555", "2,3");
    band_line(out, panel, bands, |b| b.capacity, "#000", "8,4");
}

/// The panel's title, phase shading, x axis with ticks in seconds, and frame.
fn frame(out: &mut String, panel: &Panel, bands: &[Band], title: &str, names: bool) {
    let (top, bottom) = (panel.top, panel.top + PANEL);
    let _ = write!(
        out,
        r#"<text x="{LEFT}" y="{:.1}">{title}</text>"#,
        top - 8.0
    );
    for (i, band) in bands.iter().enumerate() {
        let shade = if i % 2 == 0 { "#f4f4f4" } else { "#e6e6e6" };
        let (from, to) = (panel.x(band.from), panel.x(band.to));
        let _ = write!(
            out,
            r#"<rect x="{from:.1}" y="{top:.1}" width="{:.1}" height="{PANEL}" fill="{shade}"/>"#,
            to - from
        );
        if names {
            let _ = write!(
                out,
                r##"<text x="{:.1}" y="{:.1}" fill="#444">{}</text>"##,
                from + 4.0,
                top + 13.0,
                band.name
            );
        }
    }
    for t in ticks(panel.end) {
        if t > panel.end + 1e-9 {
            break;
        }
        let x = panel.x(t);
        let _ = write!(
            out,
            r##"<line x1="{x:.1}" y1="{bottom:.1}" x2="{x:.1}" y2="{:.1}" stroke="#000"/><text x="{x:.1}" y="{:.1}" text-anchor="middle">{} s</text>"##,
            bottom + 4.0,
            bottom + 16.0,
            label(t)
        );
    }
    let _ = write!(
        out,
        r##"<rect x="{LEFT}" y="{top:.1}" width="{PLOT_WIDTH}" height="{PANEL}" fill="none" stroke="#000"/>"##
    );
}

/// Ticks, grid lines and labels on the y axis.
fn y_axis(out: &mut String, panel: &Panel, ticks: &[f64]) {
    for &value in ticks {
        let y = panel.y(value);
        let _ = write!(
            out,
            r##"<line x1="{:.1}" y1="{y:.1}" x2="{:.1}" y2="{y:.1}" stroke="#bbb" stroke-width="0.5"/><line x1="{:.1}" y1="{y:.1}" x2="{LEFT}" y2="{y:.1}" stroke="#000"/><text x="{:.1}" y="{:.1}" text-anchor="end">{}</text>"##,
            LEFT,
            LEFT + PLOT_WIDTH,
            LEFT - 4.0,
            LEFT - 6.0,
            y + 4.0,
            label(value)
        );
    }
}

/// A filled band between the lower and upper value of each bucket, one polygon per run of
/// buckets with data.
fn area(out: &mut String, panel: &Panel, values: &[Option<(f64, f64)>], bucket: f64, color: &str) {
    for segment in segments(values) {
        let upper: Vec<(usize, f64)> = segment.iter().map(|&(i, (_, hi))| (i, hi)).collect();
        let lower: Vec<(usize, f64)> = segment.iter().map(|&(i, (lo, _))| (i, lo)).collect();
        let mut points: Vec<String> = steps(&upper, bucket).map(|p| panel.point(p)).collect();
        let mut back: Vec<String> = steps(&lower, bucket).map(|p| panel.point(p)).collect();
        back.reverse();
        points.extend(back);
        let _ = write!(
            out,
            r#"<polygon fill="{color}" fill-opacity="0.75" stroke="{color}" points="{}"/>"#,
            points.join(" ")
        );
    }
}

/// A step line over the phases (offered load, capacity).
fn band_line(
    out: &mut String,
    panel: &Panel,
    bands: &[Band],
    value: fn(&Band) -> f64,
    color: &str,
    dashes: &str,
) {
    let points: Vec<String> = bands
        .iter()
        .flat_map(|b| [(b.from, value(b)), (b.to, value(b))])
        .map(|p| panel.point(p))
        .collect();
    let _ = write!(
        out,
        r#"<polyline fill="none" stroke="{color}" stroke-width="1.5" stroke-dasharray="{dashes}" points="{}"/>"#,
        points.join(" ")
    );
}

fn legend(out: &mut String, y: f64) {
    let entries = [
        ("fresh answers", FRESH, ""),
        ("degraded (fallback) answers", DEGRADED, ""),
        ("offered load", "#555", "2,3"),
        ("backend capacity", "#000", "8,4"),
        ("p99 unprotected", RUN_COLORS[0], ""),
        ("p99 protected", RUN_COLORS[1], ""),
    ];
    let mut x = LEFT;
    for (name, color, dashes) in entries {
        let _ = write!(
            out,
            r#"<line x1="{x:.1}" y1="{:.1}" x2="{:.1}" y2="{:.1}" stroke="{color}" stroke-width="{}" stroke-dasharray="{dashes}"/><text x="{:.1}" y="{y:.1}">{name}</text>"#,
            y - 4.0,
            x + 24.0,
            y - 4.0,
            if dashes.is_empty() { 6 } else { 2 },
            x + 28.0,
        );
        x += 40.0 + name.len() as f64 * 6.0;
    }
}

/// The runs of consecutive values that are present, with their indices: what is drawn
/// as one line or area. Missing values split them.
fn segments<T: Copy>(values: &[Option<T>]) -> Vec<Vec<(usize, T)>> {
    let mut out: Vec<Vec<(usize, T)>> = Vec::new();
    let mut previous = None;
    for (i, value) in values.iter().enumerate() {
        let Some(value) = *value else { continue };
        match out.last_mut() {
            Some(segment) if previous == Some(i.wrapping_sub(1)) => segment.push((i, value)),
            _ => out.push(vec![(i, value)]),
        }
        previous = Some(i);
    }
    out
}

/// A segment of buckets as a step line in (seconds, value): flat across each bucket.
fn steps(segment: &[(usize, f64)], bucket: f64) -> impl Iterator<Item = (f64, f64)> + '_ {
    segment
        .iter()
        .flat_map(move |&(i, v)| [(i as f64 * bucket, v), ((i + 1) as f64 * bucket, v)])
}

/// Round ticks from 0 to at least `max`: steps of 1, 2 or 5 times a power of ten, about
/// five of them.
fn ticks(max: f64) -> Vec<f64> {
    let max = if max.is_finite() && max > 0.0 {
        max
    } else {
        1.0
    };
    let rough = max / 5.0;
    let power = 10f64.powi(rough.log10().floor() as i32);
    let step = [1.0, 2.0, 5.0, 10.0]
        .into_iter()
        .map(|m| m * power)
        .find(|&s| s >= rough)
        .unwrap_or(10.0 * power);
    let count = (max / step - 1e-9).ceil() as usize;
    (0..=count).map(|i| i as f64 * step).collect()
}

/// A tick's label: at most three decimals, no trailing zeros.
fn label(value: f64) -> String {
    let text = format!("{value:.3}");
    text.trim_end_matches('0').trim_end_matches('.').to_string()
}

/// Ticks at powers of ten from below the least value to above the greatest, at least two.
fn decades(values: impl Iterator<Item = f64>) -> Vec<f64> {
    let (low, high) = values
        .filter(|v| v.is_finite() && *v > 0.0)
        .fold((f64::INFINITY, 0.0f64), |(lo, hi), v| {
            (lo.min(v), hi.max(v))
        });
    let (low, high) = if high == 0.0 {
        (0, 3)
    } else {
        let low = low.log10().floor() as i32;
        (low, (high.log10().ceil() as i32).max(low + 1))
    };
    (low..=high).map(|power| 10f64.powi(power)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gaps_split_segments_and_zeros_do_not() {
        let values = [None, Some(0.0), Some(2.0), None, None, Some(3.0), Some(0.0)];
        assert_eq!(
            segments(&values),
            [vec![(1, 0.0), (2, 2.0)], vec![(5, 3.0), (6, 0.0)]]
        );
        assert_eq!(
            segments::<f64>(&[None, None]),
            Vec::<Vec<(usize, f64)>>::new()
        );
        assert_eq!(segments(&[Some(1.0)]), [vec![(0, 1.0)]]);
        assert_eq!(segments::<f64>(&[]), Vec::<Vec<(usize, f64)>>::new());
    }

    #[test]
    fn a_missing_p99_leaves_the_line_out_of_the_svg() {
        let bands = [Band {
            name: "outage",
            from: 0.0,
            to: 3.0,
            offered: 10.0,
            capacity: 0.0,
        }];
        let point = |p99: Option<f64>| {
            Some(Point {
                answered: 10.0,
                fresh: if p99.is_some() { 10.0 } else { 0.0 },
                degraded: 0.0,
                fresh_p99: p99,
            })
        };
        let run = [point(Some(10.0)), point(None), point(Some(100.0))];
        let empty = [None, None, None];
        let svg = svg("test", &bands, [&run, &empty], 1.0);
        // Two p99 segments for the first run (split by the bucket without fresh answers),
        // none for the run without data; the zero of the fresh area is drawn, as data.
        let red_lines = svg
            .matches(r##"<polyline fill="none" stroke="#d62728""##)
            .count();
        assert_eq!(red_lines, 2);
        assert!(!svg.contains(r##"<polyline fill="none" stroke="#1f77b4""##));
        assert_eq!(
            svg.matches(&format!(r#"<polygon fill="{FRESH}""#)).count(),
            1
        );
        assert!(svg.starts_with("<svg") && svg.ends_with("</svg>"));
        assert!(svg.contains(">1 s</text>") && svg.contains(">100</text>"));
    }

    #[test]
    fn steps_are_flat_across_each_bucket() {
        let points: Vec<(f64, f64)> = steps(&[(2, 5.0), (3, 7.0)], 0.5).collect();
        assert_eq!(points, [(1.0, 5.0), (1.5, 5.0), (1.5, 7.0), (2.0, 7.0)]);
    }

    #[test]
    fn ticks_are_round_and_cover_the_maximum() {
        assert_eq!(ticks(1200.0), [0.0, 500.0, 1000.0, 1500.0]);
        assert_eq!(ticks(50.0), [0.0, 10.0, 20.0, 30.0, 40.0, 50.0]);
        assert_eq!(ticks(400.0), [0.0, 100.0, 200.0, 300.0, 400.0]);
        assert_eq!(ticks(7.0), [0.0, 2.0, 4.0, 6.0, 8.0]);
        assert_eq!(ticks(0.0), ticks(1.0));
        assert_eq!(ticks(f64::NAN), ticks(1.0));
        let labels: Vec<String> = ticks(1.0).into_iter().map(label).collect();
        assert_eq!(labels, ["0", "0.2", "0.4", "0.6", "0.8", "1"]);
    }

    #[test]
    fn decades_hold_every_latency() {
        assert_eq!(decades([11.0, 950.0].into_iter()), [10.0, 100.0, 1000.0]);
        assert_eq!(decades([12.0, 13.0].into_iter()), [10.0, 100.0]);
        assert_eq!(decades([10.0].into_iter()), [10.0, 100.0]);
        assert_eq!(decades([0.5, 2.0].into_iter()), [0.1, 1.0, 10.0]);
        assert_eq!(decades(std::iter::empty()), [1.0, 10.0, 100.0, 1000.0]);
        assert_eq!(
            decades([0.0, f64::NAN].into_iter()),
            [1.0, 10.0, 100.0, 1000.0]
        );
    }
}
