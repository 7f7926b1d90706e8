//! End to end: what the presets cost a hello-world server and its client over real
//! sockets, beside tower's nearest stacks, measured in the same rounds.
//!
//! ```text
//! cargo bench -p tower-bulwark-overload --bench e2e                  # 15 runs x 2 s
//! cargo bench -p tower-bulwark-overload --bench e2e -- --runs 9 --seconds 2
//! cargo bench -p tower-bulwark-overload --bench e2e -- --help
//! ```
//!
//! **The server** (`src/variant.rs`): an axum handler answering `GET /` with
//! `Hello, World!`, over HTTP/1.1 keep-alive on 127.0.0.1, served (`src/server.rs`) by a
//! current-thread tokio runtime on a thread pinned to the first core the process may use.
//!
//! **The load** (`src/closed.rs`): hyper-util's pooled client (`src/variant.rs`,
//! `transport`) on a current-thread runtime on a thread pinned to the second core; 32
//! callers (`--connections`) in a closed loop, each sending its next request as soon as it
//! has read the previous answer whole, so the pool keeps one keep-alive connection per
//! caller (the server counts the connections it accepts; the table says how many). 32 keeps
//! requests queued on the server's connections whenever it could take one (the server core
//! never waits for a round trip of the client's, so the pair runs at its most), stays under
//! the client preset's bulkhead (100) and tower's limits, so no layer refuses for a cap, and
//! is well past the server preset's starting shed limit (20). Pinning (`src/cores.rs`) uses
//! `core_affinity`; where the system refuses it, the bench warns and runs unpinned.
//!
//! **Variants**, in the same rounds: the bare handler and client; the server behind
//! `ServerPreset::http()?.layer()`; the server behind tower's `HandleErrorLayer` (503 for
//! a shed, 504 for a timeout) + `LoadShed` + `ConcurrencyLimit(1000)` + `Timeout(10 s)`,
//! the preset's top shed limit and its deadline for a request that sends none; the client
//! through `ClientPreset::http("e2e")?.layer()` around the same hyper-util client, requests
//! with `Full<Bytes>` bodies; the client through tower's `Retry` (with a `TpsBudget`) +
//! `ConcurrencyLimit(100)` + `Timeout(10 s)`, the preset's retry, bulkhead and attempt
//! timeout. The bare setup is measured
//! twice per round (once with each side's variants): the second is an A/A check, the noise
//! of the bench itself, against which a cost of a few percent must be read.
//!
//! **Runs** (`src/pinned.rs`): every run is a fresh server thread and a fresh generator
//! thread, 1 s of warm-up (`--warmup`) then 2 s measured (`--seconds`); 15 rounds
//! (`--runs`), each running every variant once, in an order rotated by one each round so
//! drift on a shared machine hits all alike and no variant always follows the same one.
//!
//! **The table** (`src/compare.rs`), one row per variant: 2xx answers per second (median
//! over the runs, IQR, min–max); the medians of each run's p50 and p99 latency (hdrhistogram,
//! 2xx answers); the cost against bare, `1/throughput - 1/bare throughput` in microseconds
//! per request and `1 - throughput/bare throughput` as a share, from the medians, and the
//! same share taken round by round (each run against its own round's bare run); the server's
//! and the generator's thread CPU time per answer (`/proc/thread-self/schedstat`, the window
//! only), which is each side's cost whichever side bounds the throughput; every status code
//! counted (a 503 in bold: a shed under 32 callers of a hello-world is a finding, and the
//! warm-ups' 503s are counted too); and the server preset's shed limit (read every 20 ms in
//! the window: where each window ended, the lowest and highest, and how many calls it shed).
//! The goal the README states is a preset cost of at most 3% of throughput.
//!
//! **Reading it honestly.** Server and generator share nothing but the loopback, each on its
//! own core, but the machine may run other work on those cores: absolute numbers drift
//! between runs and machines, the ratios to bare within a round much less, and the A/A row
//! says how much. When neither thread keeps its core busy (throughput x CPU per answer well
//! under 1 s per second, as on a shared machine where a pinned thread waits for its core),
//! throughput measures the machine's scheduling more than the stacks: then the CPU time per
//! answer is the cost to read (on a saturated core, throughput is its inverse), and the
//! bench prints both.
//!
//! **Sheds.** A current-thread server runs one handler at a time, so its shed layer sees
//! at most one call in flight whatever the callers do: a shed limit that falls toward 1
//! refuses nothing there. `--server-threads 2` serves on a multi-thread runtime of two
//! workers (unpinned, its CPU time not read), where two handlers can be in flight at once,
//! as in production: the question whether the preset's adaptive limit sheds a closed loop
//! of a hello-world is asked there.

use std::process::ExitCode;
use std::time::Duration;

use tower_bulwark::BoxError;
use tower_bulwark_overload::closed::Plan;
use tower_bulwark_overload::compare::{self, Cost, Summary};
use tower_bulwark_overload::cores;
use tower_bulwark_overload::pinned::{Measured, CLIENT_CORE, SERVER_CORE};
use tower_bulwark_overload::variant::{Side, Variant};

const USAGE: &str = "\
usage: cargo bench -p tower-bulwark-overload --bench e2e -- [options]

  --runs N          rounds, each running every variant once (default 15)
  --seconds S       measured seconds per run (default 2)
  --warmup S        unmeasured seconds of load before each run (default 1)
  --connections N   callers in the closed loop, one keep-alive connection each (default 32)
  --server-threads N  1: the server on a current-thread runtime pinned to its core
                    (default); more: a multi-thread runtime of N workers, unpinned, its CPU
                    time not read (several handlers in flight at once, as in production)";

/// The issue's goal: the preset costs at most this share of throughput.
const GOAL: f64 = 0.03;

#[derive(Debug, Clone, Copy)]
struct Args {
    runs: usize,
    plan: Plan,
}

fn parse(args: impl IntoIterator<Item = String>) -> Result<Args, String> {
    let mut parsed = Args {
        runs: 15,
        plan: Plan {
            connections: 32,
            warmup: Duration::from_secs(1),
            window: Duration::from_secs(2),
            server_threads: 1,
        },
    };
    let mut args = args.into_iter();
    while let Some(arg) = args.next() {
        if arg == "--bench" {
            continue;
        }
        let (flag, inline) = match arg.split_once('=') {
            Some((flag, value)) => (flag.to_string(), Some(value.to_string())),
            None => (arg, None),
        };
        if flag == "--help" || flag == "-h" {
            return Err(String::new());
        }
        let value = inline
            .or_else(|| args.next())
            .ok_or_else(|| format!("{flag} needs a value"))?;
        let count = |range: std::ops::RangeInclusive<usize>| {
            value
                .parse::<usize>()
                .ok()
                .filter(|n| range.contains(n))
                .ok_or_else(|| format!("{flag}: {value:?} is not a whole number in {range:?}"))
        };
        let seconds = |min: f64| {
            value
                .parse::<f64>()
                .ok()
                .filter(|s| s.is_finite() && *s >= min && *s <= 3600.0)
                .map(Duration::from_secs_f64)
                .ok_or_else(|| {
                    format!("{flag}: {value:?} is not a number of seconds in [{min}, 3600]")
                })
        };
        match flag.as_str() {
            "--runs" => parsed.runs = count(1..=1000)?,
            "--connections" => parsed.plan.connections = count(1..=10_000)?,
            "--server-threads" => parsed.plan.server_threads = count(1..=64)?,
            "--seconds" => parsed.plan.window = seconds(0.01)?,
            "--warmup" => parsed.plan.warmup = seconds(0.0)?,
            _ => return Err(format!("unknown argument {flag:?}")),
        }
    }
    Ok(parsed)
}

fn main() -> ExitCode {
    let args = match parse(std::env::args().skip(1)) {
        Ok(args) => args,
        Err(help) if help.is_empty() => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Err(error) => {
            eprintln!("{error}\n\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    match run(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("e2e: {error}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: Args) -> Result<(), BoxError> {
    let plan = args.plan;
    let load_before = load_average();
    let mut runs: Vec<Vec<Measured>> = vec![Vec::new(); Variant::ALL.len()];
    for round in 0..args.runs {
        for k in 0..Variant::ALL.len() {
            let i = (round + k) % Variant::ALL.len();
            let variant = Variant::ALL[i];
            eprintln!("round {}/{}: {}", round + 1, args.runs, variant.label());
            runs[i].push(variant.measure(plan)?);
        }
    }
    let summaries: Vec<Summary> = Variant::ALL
        .iter()
        .zip(&runs)
        .filter_map(|(variant, runs)| Summary::of(variant.label(), runs))
        .collect();
    if summaries.len() != Variant::ALL.len() {
        return Err("a variant has no runs".into());
    }
    let pinned = runs.iter().flatten().map(|r| r.cores).next();
    let pinning = match pinned {
        Some((Some(server), Some(client))) => {
            format!("server (current-thread runtime) on core {server}, load on core {client}")
        }
        Some((None, Some(client))) if plan.server_threads > 1 => format!(
            "server on a multi-thread runtime of {} workers, unpinned; load on core {client}",
            plan.server_threads
        ),
        _ => "unpinned (pinning refused)".into(),
    };
    println!(
        "# End to end: a hello-world axum handler over loopback\n\n\
         {} rounds, each variant once per round (order rotated), {} s measured after {} s of \
         warm-up per run; {} callers in a closed loop over HTTP/1.1 keep-alive; {pinning} \
         (cores the process may use: {:?}; indexes {SERVER_CORE} and {CLIENT_CORE}). \
         Load average before: {load_before}; after: {}.\n",
        args.runs,
        plan.window.as_secs_f64(),
        plan.warmup.as_secs_f64(),
        plan.connections,
        cores::available().unwrap_or_default(),
        load_average(),
    );
    println!("{}", compare::table(&summaries, 0));
    let connections: Vec<String> = summaries
        .iter()
        .map(|s| format!("{} {}–{}", s.label, s.connections.0, s.connections.1))
        .collect();
    println!(
        "Connections the server accepted per run (fewest–most): {}.\n",
        connections.join("; ")
    );
    for (variant, summary) in Variant::ALL.iter().zip(&summaries) {
        let bare = &summaries[0];
        // The CPU time of the side a variant changes, per answer, against bare's: what the
        // variant would cost a core that is saturated, whatever bounded this run.
        let side_cpu = |s: &Summary| match variant.side() {
            Side::Server => s.server_cpu,
            Side::Client => s.client_cpu,
        };
        let side = match variant.side() {
            Side::Server => "server",
            Side::Client => "client",
        };
        let cpu = match (side_cpu(summary), side_cpu(bare)) {
            (Some(own), Some(base)) => format!(
                "{:+.2} µs of the {side} thread's CPU per answer over bare ({:.2}% of a \
                 saturated core's throughput)",
                own - base,
                (1.0 - base / own) * 100.0
            ),
            _ => "CPU time not read".into(),
        };
        let cost = Cost::of(summary, bare);
        let paired = cost
            .paired
            .map_or("-".into(), |p| format!("{:.2}%", p.median * 100.0));
        match variant {
            Variant::Preset(_) => {
                let verdict = if cost.share <= GOAL {
                    "meets"
                } else {
                    "MISSES"
                };
                println!(
                    "- The {side} preset costs {:+.2} µs per request, {:.2}% of throughput \
                     (paired by round: median {paired}): {verdict} the goal of at most \
                     {:.0}%. By CPU time: {cpu}.",
                    cost.micros_per_request,
                    cost.share * 100.0,
                    GOAL * 100.0
                );
            }
            Variant::Tower(_) | Variant::Bare(Side::Client) => println!(
                "- {}: {:+.2} µs per request, {:.2}% of throughput (paired by round: median \
                 {paired}); {cpu}.",
                summary.label,
                cost.micros_per_request,
                cost.share * 100.0,
            ),
            Variant::Bare(Side::Server) => {}
        }
        if summary.sheds() > 0 || summary.warmup_503 > 0 {
            println!(
                "- **FINDING: {} answered 503 to {} of {} calls in the windows ({:.3}%) and \
                 {} in the warm-ups, under {} closed-loop callers of a hello-world.**",
                summary.label,
                summary.sheds(),
                summary.answers(),
                summary.sheds() as f64 / summary.answers().max(1) as f64 * 100.0,
                summary.warmup_503,
                plan.connections
            );
        }
        if let Some(limit) = &summary.limit {
            println!(
                "- {}'s shed limit at each window's end: {:?}; lowest read {}, highest {}; \
                 calls shed {} (warm-ups included).",
                summary.label, limit.at_end, limit.lowest, limit.highest, limit.shed
            );
        }
    }
    Ok(())
}

/// `/proc/loadavg`'s three averages, or `unknown`.
fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .map(|text| {
            text.split_whitespace()
                .take(3)
                .collect::<Vec<_>>()
                .join(" ")
        })
        .unwrap_or_else(|| "unknown".into())
}
