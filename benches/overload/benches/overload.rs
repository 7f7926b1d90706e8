//! The real-socket overload harness: how well each guard keeps goodput and latency when a
//! fixed-capacity backend gets more calls than it can serve.
//!
//! ```text
//! cargo bench -p tower-bulwark-overload --bench overload                # everything (long)
//! cargo bench -p tower-bulwark-overload --bench overload -- \
//!     --shape 10ms/4 --load 1,4 --guard unprotected,tower-static,preset --proto h1 --seconds 3
//! cargo bench -p tower-bulwark-overload --bench overload -- --help
//! ```
//!
//! **Backends** (`src/shape.rs`): an axum handler of `W` workers taking `S` per call,
//! nominal capacity `W / S`. IO-bound: a worker is a semaphore permit held over
//! `tokio::time::sleep(S)`, for S in {1, 10, 100} ms and W in {4, 64}. CPU-bound: a busy
//! loop of 1 ms on a blocking thread, one worker per core. Like most servers, the handler's
//! work is not cancelled when the client gives up.
//!
//! **Load** (`src/load.rs`): open loop. Arrivals are Poisson (exponential gaps from a seeded
//! generator, the same sequence for every guard), each call sent on its own task at its
//! time whatever happened to the earlier ones, at 1x, 2x, 4x and 8x the capacity (as
//! served, see below), over HTTP/1.1 keep-alive (a pooled client that opens connections as
//! calls need them) and HTTP/2 (prior knowledge, one connection). Clients wait 1 s (sent
//! as `x-request-timeout-ms`, or `grpc-timeout`); a later answer is a timeout. Each cell is
//! a fresh server and client, 1 s of warm-up (at least 80 service times: an adaptive limit
//! learns in windows of ten calls and a few round trips), then 5 s measured (`--seconds`).
//!
//! **Guards** (`src/guard.rs`), in the same run: the bare handler; tower's `LoadShed` +
//! `ConcurrencyLimit(W)`, told the true capacity; our `ShedLayer` with each algorithm
//! under `handle_rejections()`; `ServerPreset::http()?.layer()` as shipped. gRPC
//! (`src/grpc.rs`): a tonic service of the 10 ms x 4 workers shape, bare and behind
//! `ServerPreset::grpc()?.layer()`, at 4x over HTTP/2.
//!
//! **The table**, per shape and protocol: offered calls per second; goodput (2xx or gRPC
//! `OK`, within the client's timeout) per second and as a share of capacity; the p99
//! latency of those successes; refusals per second (503/429 marked `x-bulwark-overloaded`,
//! tower's bare 503, gRPC `RESOURCE_EXHAUSTED` so marked); errors and timeouts per second; the mark
//! against the issue's goal (at 1x at most 0.5% refused; at 2x and over, goodput at least
//! 95% of capacity and p99 at most twice the unloaded p99); our layers' shed limit when the
//! window closed.
//!
//! **Reading it honestly.**
//! - Capacity is measured, not nominal. tokio's timer rounds a sleep up to the next
//!   millisecond, so a "10 ms" call holds its worker about 11 ms and a "1 ms" one about
//!   2 ms: against `W / S`, 1x would already be an overload and 95% of capacity out of
//!   anyone's reach. The backend measures how long each call held its worker. Loads are
//!   multiples of `W /` that time in the unloaded run (0.25x nominal, unprotected, which
//!   also gives the unloaded p99). The goodput % and the goal are against `W /` the
//!   shortest mean time of any run in the table: a busy runtime (thousands of connections
//!   of an unprotected overload) fires timers later, and a guard is not credited for that.
//! - Server and generator share the machine (see `src/cell.rs` for the runtimes). A row
//!   where the generator sent fewer than 90% of its scheduled calls is marked
//!   "(generator-bound)": it measures the machine, not the guard. On 2 cores the 64-worker
//!   1 ms and 10 ms shapes at high loads are.
//! - HTTP/1.1 under overload opens a connection per waiting call; the 64-worker shapes at 8x
//!   want thousands of file descriptors (`ulimit -n`).

use std::process::ExitCode;
use std::time::Duration;

use tower_bulwark::BoxError;
use tower_bulwark_overload::args::{Args, USAGE};
use tower_bulwark_overload::cell;
use tower_bulwark_overload::client::Proto;
use tower_bulwark_overload::grpc;
use tower_bulwark_overload::guard::Guard;
use tower_bulwark_overload::load::Plan;
use tower_bulwark_overload::report::{self, millis, Row};
use tower_bulwark_overload::shape::Shape;
use tower_bulwark_overload::stats::Goal;

/// Seeds every run's arrivals.
const SEED: u64 = 15;
/// The load of the unloaded reference, times the nominal capacity.
const UNLOADED: f64 = 0.25;
/// The gRPC table's shape and load.
const GRPC_SHAPE: (u64, usize) = (10, 4);
const GRPC_LOAD: f64 = 4.0;

fn main() -> ExitCode {
    let args = match Args::parse(std::env::args().skip(1)) {
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
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("overload: {error}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: &Args) -> Result<(), BoxError> {
    let cores = std::thread::available_parallelism().map_or(1, usize::from);
    println!(
        "# Overload over real sockets ({cores} cores; {} s measured after {} s of warm-up per cell, at least 80 service times)\n",
        args.seconds.as_secs_f64(),
        args.warmup.as_secs_f64()
    );
    for shape in Shape::all().into_iter().filter(|s| args.wants_shape(s)) {
        for proto in [Proto::H1, Proto::H2] {
            if args.wants_proto(proto) {
                table(args, shape, proto, &Guard::all(), &args.loads)?;
            }
        }
    }
    let shape = Shape::io(GRPC_SHAPE.0, GRPC_SHAPE.1);
    if args.wants_proto(Proto::Grpc) && args.wants_shape(&shape) && args.loads.contains(&GRPC_LOAD)
    {
        table(args, shape, Proto::Grpc, &grpc::guards(), &[GRPC_LOAD])?;
    }
    Ok(())
}

/// Measures the unloaded p99 and capacity, then every selected guard at every load, and
/// prints the table.
fn table(
    args: &Args,
    shape: Shape,
    proto: Proto,
    guards: &[Guard],
    loads: &[f64],
) -> Result<(), BoxError> {
    let guards: Vec<Guard> = guards
        .iter()
        .copied()
        .filter(|g| args.wants_guard(g))
        .collect();
    if guards.is_empty() {
        return Ok(());
    }
    // An adaptive limit learns in windows of ten calls or more and a few round trips: at a
    // few dozen calls a second that is seconds. Give the slow shapes eighty service times
    // of warm-up, not only the default second, so every guard is measured settled (the
    // README says how long a cold start takes).
    let warmup = args.warmup.max(shape.service * 80);
    let plan = |rate: f64| Plan {
        rate,
        warmup,
        window: args.seconds,
        seed: SEED,
    };
    let title = format!("{}, {}", shape.describe(), proto.label());
    eprintln!("{title}: unloaded ({UNLOADED}x nominal, unprotected)");
    let unloaded = cell::measure(
        shape,
        Guard::Unprotected,
        proto,
        plan(shape.capacity() * UNLOADED),
    )?;
    // tokio's timer makes a call hold its worker longer than the nominal service time, so
    // loads are against the capacity the unloaded run measured.
    let capacity_at = |s: Duration| shape.capacity_at(s);
    let load_base = unloaded.service_time.map_or(shape.capacity(), capacity_at);
    let mut runs = Vec::new();
    for &load in loads {
        for guard in &guards {
            eprintln!("{title}: {} at {load}x", guard.name());
            let measured = cell::measure(shape, *guard, proto, plan(load_base * load))?;
            runs.push((*guard, load, measured));
        }
    }
    // The goal is against the fastest the workers ran in any run of the table.
    let fastest = runs
        .iter()
        .map(|(_, _, measured)| &measured.service_time)
        .chain([&unloaded.service_time])
        .flatten()
        .min()
        .copied();
    let capacity = fastest.map_or(shape.capacity(), capacity_at);
    let goal = Goal {
        capacity,
        unloaded_p99: unloaded.summary.p99,
    };
    let rows: Vec<Row> = runs
        .into_iter()
        .map(|(guard, load, measured)| Row {
            guard: guard.label(shape.workers),
            load,
            verdict: goal.judge(load, &measured.summary),
            summary: measured.summary,
            limit: measured.limit,
        })
        .collect();
    println!("## {title}\n");
    println!(
        "Capacity {capacity:.0}/s: the workers at their fastest in this table ({} a call; \
         nominal {:.0}/s). Loads: times {load_base:.0}/s, the capacity unloaded ({} a \
         call). Unloaded p99 ({UNLOADED}x nominal, unprotected): {}.\n",
        millis(fastest),
        shape.capacity(),
        millis(unloaded.service_time),
        millis(unloaded.summary.p99)
    );
    println!("{}", report::table(&rows, capacity));
    Ok(())
}
