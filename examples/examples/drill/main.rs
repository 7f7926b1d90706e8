//! The drill: break a dependency on a schedule and compare a service without protection to
//! the same service with the bulwark presets, over real sockets on loopback.
//!
//! `cargo run --release --example drill [-- --duration 100] [--seed 1] [--runs 1]
//! [--json | --markdown] [--svg PATH] [--dashboard [--dashboard-port PORT]]`
//!
//! A load generator (Poisson arrivals, seeded) calls an edge service (axum) that needs two
//! backends for each call. The drill breaks one backend with the chaos layer on a
//! schedule: steady; backend outage (every call 503); backend slowdown (every call 90 ms
//! later, 10x its latency; workers and capacity unchanged); a load spike (3x capacity);
//! recovery. It runs the schedule twice, unprotected and protected (the server preset at
//! the edge, the client preset with a last-good fallback towards the backends), and sorts
//! every answer: fresh, degraded (marked `x-bulwark-degraded` by the fallback and
//! forwarded by the edge), refused (shed, with `x-bulwark-overloaded` or `Retry-After`),
//! error, or timeout. It prints a line per phase, a side-by-side table, and writes an SVG
//! timeline.
//!
//! `--duration` is the length of both runs of one seed (each phase gets a tenth of it: 10 s
//! by default); `--runs N` repeats with seeds `seed..seed + N` and reports the median of
//! each cell.
//!
//! `--dashboard` serves the operator dashboard of the protected runs on
//! `127.0.0.1:PORT` (`--dashboard-port`, default 0: any free port) and prints its URL at
//! start (on stderr): every breaker, bulkhead, retry budget and the shedding layer of the
//! protected edge, registered by the presets, so you can watch the breaker open in the
//! outage phase. Read-only (no operator actions). Without it nothing is registered or
//! sampled.

mod backend;
mod dashboard;
mod edge;
mod load;
mod report;
mod stats;
mod svg;

use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use tower_bulwark::health::Health;
use tower_bulwark::BoxError;

use crate::dashboard::DashboardServer;
use crate::stats::{PhaseStats, Point};

/// The phases: name, offered load as a share of capacity, what breaks.
const PHASES: [(&str, f64, Break); 5] = [
    ("steady", 0.5, Break::Nothing),
    ("outage", 0.5, Break::Outage),
    ("slowdown", 0.5, Break::Slowdown),
    ("spike", 3.0, Break::Nothing),
    ("recovery", 0.5, Break::Nothing),
];

/// Timeline buckets per phase.
const BUCKETS_PER_PHASE: usize = 10;

#[derive(Debug, Clone, Copy, PartialEq)]
enum Break {
    Nothing,
    Outage,
    Slowdown,
}

impl Break {
    /// Fresh answers per second the edge can give: each call needs both backends. The
    /// slowdown adds latency before the backend's workers, so it keeps their capacity.
    fn capacity(self) -> f64 {
        match self {
            Break::Outage => 0.0,
            Break::Nothing | Break::Slowdown => backend::CAPACITY,
        }
    }
}

enum Format {
    Table,
    Markdown,
    Json,
}

struct Options {
    /// Both runs of one seed.
    duration: Duration,
    seed: u64,
    runs: u64,
    format: Format,
    svg: std::path::PathBuf,
    /// `--dashboard`: the port to serve it on (0: any).
    dashboard: Option<u16>,
}

impl Options {
    fn phase(&self) -> Duration {
        self.duration / 2 / PHASES.len() as u32
    }
}

fn options() -> Result<Options, BoxError> {
    parse(std::env::args().skip(1))
}

fn parse(args: impl IntoIterator<Item = String>) -> Result<Options, BoxError> {
    let mut options = Options {
        duration: Duration::from_secs(100),
        seed: 1,
        runs: 1,
        format: Format::Table,
        svg: std::env::temp_dir().join("bulwark-drill.svg"),
        dashboard: None,
    };
    let (mut dashboard, mut port) = (false, None);
    let mut args = args.into_iter();
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--duration" => {
                let secs: u64 = args.next().ok_or("--duration needs seconds")?.parse()?;
                if !(10..=86_400).contains(&secs) {
                    return Err("--duration must be 10 to 86400 (s): at least 1 s per phase".into());
                }
                options.duration = Duration::from_secs(secs);
            }
            "--seed" => options.seed = args.next().ok_or("--seed needs a number")?.parse()?,
            "--runs" => {
                options.runs = args.next().ok_or("--runs needs a number")?.parse()?;
                if !(1..=1000).contains(&options.runs) {
                    return Err("--runs must be 1 to 1000".into());
                }
            }
            "--json" => options.format = Format::Json,
            "--markdown" => options.format = Format::Markdown,
            "--svg" => options.svg = args.next().ok_or("--svg needs a path")?.into(),
            "--dashboard" => dashboard = true,
            "--dashboard-port" => {
                port = Some(
                    args.next()
                        .ok_or("--dashboard-port needs a port")?
                        .parse()?,
                );
            }
            other => return Err(format!("unknown option {other}; see the file's docs").into()),
        }
    }
    options.dashboard = match (dashboard, port) {
        (true, port) => Some(port.unwrap_or(0)),
        (false, None) => None,
        (false, Some(_)) => return Err("--dashboard-port needs --dashboard".into()),
    };
    Ok(options)
}

/// One run of the schedule.
struct Run {
    phases: Vec<PhaseStats>,
    timeline: Vec<Option<Point>>,
    /// From the start of the recovery phase (`None`: not within it).
    recovery: Option<f64>,
}

async fn run(
    protected: bool,
    seed: u64,
    phase: Duration,
    quiet: bool,
    dashboard: Option<&DashboardServer>,
) -> Result<Run, BoxError> {
    let steady = backend::start(seed).await?;
    let breakable = backend::start(seed.wrapping_add(10)).await?;
    // Registered only for the dashboard, and only the protected run's.
    let health = dashboard.filter(|_| protected).map(|_| Health::new());
    let edge = edge::start(steady.addr, breakable.addr, protected, health.as_ref()).await?;
    if let (Some(server), Some(health)) = (dashboard, &health) {
        server.show(health, format!("drill: protected run, seed {seed}"))?;
    }
    let mut load = load::Generator::new(edge.addr, seed);
    // Phase `i` starts `i` phases into the run, in seconds and on the clock.
    let secs = phase.as_secs_f64();
    let bounds = |i: usize| (i as f64 * secs, (i + 1) as f64 * secs);
    let start = load.start;
    let at = |i: usize| start + phase * i as u32;
    let mut backend_calls = Vec::new();
    for (i, (name, share, what)) in PHASES.into_iter().enumerate() {
        breakable.outage.disable();
        breakable.slowdown.disable();
        match what {
            Break::Outage => breakable.outage.enable(),
            Break::Slowdown => breakable.slowdown.enable(),
            Break::Nothing => {}
        }
        let hits = || steady.hits.load(Relaxed) + breakable.hits.load(Relaxed);
        let before = hits();
        let rate = share * backend::CAPACITY;
        load.offer(rate, (at(i), at(i + 1))).await;
        backend_calls.push(hits() - before);
        if !quiet {
            let s = stats::phase_stats(name, &load.so_far(), bounds(i), 0);
            let breaker = edge
                .breaker
                .as_ref()
                .map_or("-".to_string(), |b| b.snapshot().state.to_string());
            println!(
                "[{:<11} seed {seed}] {name:<8} fresh {:>6.1}/s  degraded {:>6.1}/s  refused {:>6.1}/s  errors {:>6.1}/s  timeouts {:>6.1}/s  breaker {breaker}",
                if protected { "protected" } else { "unprotected" },
                s.fresh.per_s,
                s.degraded.per_s,
                s.refused.per_s,
                s.errors,
                s.timeouts,
            );
        }
    }
    let samples = load.finish().await;
    let phases = PHASES
        .iter()
        .zip(backend_calls)
        .enumerate()
        .map(|(i, ((name, ..), calls))| stats::phase_stats(name, &samples, bounds(i), calls))
        .collect();
    let bucket = secs / BUCKETS_PER_PHASE as f64;
    let timeline = stats::timeline(&samples, bucket, PHASES.len() * BUCKETS_PER_PHASE);
    let recovery_phase = PHASES.len() - 1;
    let recovery = stats::recovery(&timeline, bucket, recovery_phase * BUCKETS_PER_PHASE);
    Ok(Run {
        phases,
        timeline,
        recovery,
    })
}

/// The median of each cell over the runs of one kind.
fn median(runs: &[Run]) -> Run {
    Run {
        phases: (0..PHASES.len())
            .map(|i| {
                let phase: Vec<PhaseStats> = runs.iter().map(|r| r.phases[i].clone()).collect();
                stats::median_stats(&phase)
            })
            .collect(),
        timeline: stats::median_timeline(
            &runs.iter().map(|r| r.timeline.clone()).collect::<Vec<_>>(),
        ),
        // Never recovered counts as longer than any time that did.
        recovery: stats::median(runs.iter().map(|r| r.recovery.unwrap_or(f64::INFINITY)))
            .filter(|r| r.is_finite()),
    }
}

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    let options = options()?;
    let phase = options.phase();
    let quiet = !matches!(options.format, Format::Table);
    if !quiet {
        println!(
            "drill: {} s per phase, {} run(s) from seed {}; backends of {} workers x {:?} ({} calls/s each); callers give up after {:?}; per-phase lines count the answers in when the phase ends",
            phase.as_secs_f64(),
            options.runs,
            options.seed,
            backend::WORKERS,
            backend::SERVICE_TIME,
            backend::CAPACITY,
            load::CLIENT_TIMEOUT,
        );
    }
    let dashboard = match options.dashboard {
        Some(port) => {
            let server = DashboardServer::start(port).await?;
            eprintln!(
                "dashboard: {} (the protected run's, once it starts)",
                server.url()
            );
            Some(server)
        }
        None => None,
    };
    let seeds: Vec<u64> = (0..options.runs)
        .map(|i| options.seed.wrapping_add(i))
        .collect();
    let (mut unprotected, mut protected) = (Vec::new(), Vec::new());
    for &seed in &seeds {
        unprotected.push(run(false, seed, phase, quiet, dashboard.as_ref()).await?);
        protected.push(run(true, seed, phase, quiet, dashboard.as_ref()).await?);
    }
    let (unprotected, protected) = (median(&unprotected), median(&protected));
    let secs = phase.as_secs_f64();
    let results = report::Results {
        phases: [&unprotected.phases, &protected.phases],
        recovery: [unprotected.recovery, protected.recovery],
        phase_seconds: secs,
        seeds: &seeds,
    };
    let bands: Vec<svg::Band> = PHASES
        .iter()
        .enumerate()
        .map(|(i, (name, load, what))| svg::Band {
            name,
            from: i as f64 * secs,
            to: (i + 1) as f64 * secs,
            offered: load * backend::CAPACITY,
            capacity: what.capacity(),
        })
        .collect();
    let title = format!("drill: {} s per phase; {}", secs, results.statistic());
    let timelines = [&unprotected.timeline[..], &protected.timeline[..]];
    let bucket = secs / BUCKETS_PER_PHASE as f64;
    std::fs::write(&options.svg, svg::svg(&title, &bands, timelines, bucket))?;
    match options.format {
        Format::Json => println!("{}", results.json()),
        Format::Markdown => print!("{}", results.markdown()),
        Format::Table => print!("\n{}", results.table()),
    }
    if !matches!(options.format, Format::Json) {
        println!("timeline: {}", options.svg.display());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(list: &[&str]) -> Result<Options, BoxError> {
        parse(list.iter().map(|s| s.to_string()))
    }

    #[test]
    fn the_dashboard_is_off_unless_asked_for() {
        assert_eq!(args(&[]).unwrap().dashboard, None);
        assert_eq!(args(&["--dashboard"]).unwrap().dashboard, Some(0));
        let on = |list: &[&str]| args(list).unwrap().dashboard;
        assert_eq!(on(&["--dashboard", "--dashboard-port", "9000"]), Some(9000));
        assert_eq!(on(&["--dashboard-port", "9000", "--dashboard"]), Some(9000));
        assert!(args(&["--dashboard-port", "9000"]).is_err());
        assert!(args(&["--dashboard", "--dashboard-port", "70000"]).is_err());
        assert!(args(&["--dashboard", "--dashboard-port"]).is_err());
        assert!(args(&["--dashboard", "--duration", "5"]).is_err());
    }
}
