//! The drill: break a dependency on a schedule and compare a service without protection to
//! the same service with the bulwark presets, over real sockets on loopback.
//!
//! `cargo run --release --example drill [-- --duration 60] [--seed 1] [--json] [--svg PATH]`
//!
//! A load generator calls an edge service (axum) that needs two backends for each call.
//! The drill breaks one backend with the chaos layer on a schedule: steady; backend outage
//! (every call 503); backend slowdown (10x latency); a load spike (3x capacity); recovery.
//! It runs the schedule twice, unprotected and protected (the server preset at the edge,
//! the client preset with a last-good fallback towards the backends), prints a line per
//! phase and a side-by-side table, and writes an SVG timeline.

mod backend;
mod edge;
mod load;
mod report;

use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;
use tower_bulwark::BoxError;

use crate::report::PhaseStats;

/// The phases: name, offered load as a share of capacity, what breaks.
const PHASES: [(&str, f64, Break); 5] = [
    ("steady", 0.5, Break::Nothing),
    ("outage", 0.5, Break::Outage),
    ("slowdown", 0.5, Break::Slowdown),
    ("spike", 3.0, Break::Nothing),
    ("recovery", 0.5, Break::Nothing),
];

#[derive(Debug, Clone, Copy, PartialEq)]
enum Break {
    Nothing,
    Outage,
    Slowdown,
}

struct Options {
    duration: Duration,
    seed: u64,
    json: bool,
    svg: std::path::PathBuf,
}

fn options() -> Result<Options, BoxError> {
    let mut options = Options {
        duration: Duration::from_secs(60),
        seed: 1,
        json: false,
        svg: std::env::temp_dir().join("bulwark-drill.svg"),
    };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--duration" => {
                let secs: u64 = args.next().ok_or("--duration needs seconds")?.parse()?;
                options.duration = Duration::from_secs(secs.max(10));
            }
            "--seed" => options.seed = args.next().ok_or("--seed needs a number")?.parse()?,
            "--json" => options.json = true,
            "--svg" => options.svg = args.next().ok_or("--svg needs a path")?.into(),
            other => return Err(format!("unknown option {other}; see the file's docs").into()),
        }
    }
    Ok(options)
}

/// One run of the schedule; returns its per-phase statistics, recovery and timeline.
async fn run(
    protected: bool,
    options: &Options,
) -> Result<(Vec<PhaseStats>, Option<f64>, Vec<(f64, f64)>), BoxError> {
    let label = if protected {
        "protected"
    } else {
        "unprotected"
    };
    let steady = backend::start(options.seed).await?;
    let breakable = backend::start(options.seed + 10).await?;
    let edge = edge::start(steady.addr, breakable.addr, protected).await?;
    let client = edge::pooled();
    let samples = Arc::new(Mutex::new(Vec::new()));
    // Each run gets half the duration, split evenly between the phases.
    let phase_length = options.duration / 2 / PHASES.len() as u32;
    let start = Instant::now();
    let mut running = Vec::new();
    let mut bounds = Vec::new();
    for (name, load, what) in PHASES {
        breakable.outage.disable();
        breakable.slowdown.disable();
        match what {
            Break::Outage => breakable.outage.enable(),
            Break::Slowdown => breakable.slowdown.enable(),
            Break::Nothing => {}
        }
        let from = start.elapsed().as_secs_f64();
        let hits_before = steady.hits.load(Relaxed) + breakable.hits.load(Relaxed);
        let rate = load * backend::CAPACITY;
        running.extend(load::offer(&client, edge.addr, rate, phase_length, start, &samples).await);
        let to = start.elapsed().as_secs_f64();
        let hits = steady.hits.load(Relaxed) + breakable.hits.load(Relaxed) - hits_before;
        bounds.push((name, from, to, hits));
        let so_far = samples.lock().expect("samples").clone();
        let stats = report::phase_stats(name, &so_far, from, to, hits);
        let breaker = edge
            .breaker
            .as_ref()
            .map_or("-".to_string(), |b| b.snapshot().state.to_string());
        if !options.json {
            println!(
                "[{label:<11}] {name:<9} {:>5.1}s {:>6} requests  goodput {:>5.0}/s  p99 {:>8.1?}  breaker {breaker}",
                to,
                stats.requests,
                stats.goodput,
                stats.p99,
            );
        }
    }
    for call in running {
        let _ = call.await;
    }
    breakable.outage.disable();
    let samples = samples.lock().expect("samples").clone();
    let stats = bounds
        .iter()
        .map(|(name, from, to, hits)| report::phase_stats(name, &samples, *from, *to, *hits))
        .collect();
    let outage_end = bounds[1].2;
    let end = bounds.last().map_or(0.0, |b| b.2);
    let recovery = report::recovery(&samples, outage_end, end);
    Ok((stats, recovery, report::timeline(&samples, end)))
}

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    let options = options()?;
    if !options.json {
        println!(
            "drill: {} s, seed {}; backends of {} workers x {:?} ({} calls/s each)",
            options.duration.as_secs(),
            options.seed,
            backend::WORKERS,
            backend::SERVICE_TIME,
            backend::CAPACITY
        );
    }
    let (unprotected, recovery_u, timeline_u) = run(false, &options).await?;
    let (protected, recovery_p, timeline_p) = run(true, &options).await?;
    let recoveries = [recovery_u, recovery_p];
    let phase_length = options.duration.as_secs_f64() / 2.0 / PHASES.len() as f64;
    let shading: Vec<(&'static str, f64, f64)> = PHASES
        .iter()
        .enumerate()
        .map(|(i, (name, _, _))| {
            (
                *name,
                i as f64 * phase_length,
                (i + 1) as f64 * phase_length,
            )
        })
        .collect();
    let end = phase_length * PHASES.len() as f64;
    std::fs::write(
        &options.svg,
        report::svg(&shading, [&timeline_u, &timeline_p], end),
    )?;
    if options.json {
        println!("{}", report::json(&unprotected, &protected, recoveries));
    } else {
        println!();
        print!("{}", report::table(&unprotected, &protected, recoveries));
        println!("timeline: {}", options.svg.display());
    }
    Ok(())
}
