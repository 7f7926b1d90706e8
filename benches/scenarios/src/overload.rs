//! The overload scenario: a server of fixed capacity offered more than it can serve.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::Semaphore;
use tokio::time::Instant;
use tower::util::BoxCloneService;
use tower::{service_fn, BoxError, Layer, ServiceExt};
use tower_bulwark::shed::{Aimd, Builder, Gradient2, ShedLayer, Vegas};
use tower_bulwark::{Criticality, SeededRng};

/// Workers of the simulated server: calls beyond them queue.
pub const WORKERS: usize = 100;
/// Time one call takes on a worker, unloaded.
pub const SERVICE_TIME: Duration = Duration::from_millis(20);
/// The server's capacity in calls per second (`WORKERS / SERVICE_TIME`).
pub const CAPACITY: f64 = WORKERS as f64 / 0.020;
/// Clients give up after this long; a later answer is not goodput.
pub const CLIENT_TIMEOUT: Duration = Duration::from_secs(1);
/// Load offered before the measurement starts, so a run reports the steady state (the
/// real-socket harness warms up the same way). How fast each algorithm gets there is
/// what the latency-shift runs show.
pub const WARM_UP: Duration = Duration::from_secs(1);

/// What stands in front of the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Guard {
    /// Nothing: every call queues for a worker.
    None,
    /// tower's `LoadShed` over a `ConcurrencyLimit` of exactly the worker count (a static
    /// limit tuned by someone who knows the capacity).
    TowerStatic,
    /// Our shedding layer with Vegas (Netflix defaults).
    Vegas,
    /// Our shedding layer with AIMD (Netflix defaults, but a latency timeout of twice the
    /// unloaded latency, 40 ms: its only latency signal; the default 5 s would let a queue
    /// grow to seconds).
    Aimd,
    /// Our shedding layer with Gradient2 (Netflix defaults).
    Gradient2,
    /// Our shedding layer as the server preset builds it: `MinRtt`, the default window.
    MinRtt,
}

impl Guard {
    /// Our guards, in table order.
    pub const OURS: [Guard; 4] = [Guard::Vegas, Guard::Aimd, Guard::Gradient2, Guard::MinRtt];

    /// The shedding layer's builder with this guard's algorithm (`None` for the others).
    fn shed(self) -> Option<Builder> {
        let builder = ShedLayer::builder();
        Some(match self {
            Guard::None | Guard::TowerStatic => return None,
            Guard::Vegas => builder.algorithm(Vegas::default()),
            Guard::Aimd => builder
                .algorithm(Aimd::new(20, 20, 200, 0.9, Duration::from_millis(40)).expect("aimd")),
            Guard::Gradient2 => builder.algorithm(Gradient2::default()),
            Guard::MinRtt => builder,
        })
    }
}

/// Gaps between open-loop arrivals at `rate` a second: exponential (Poisson arrivals),
/// seeded, so a run is the same every time.
fn poisson_gaps(rate: f64, seed: u64) -> impl FnMut() -> Duration {
    let mut rng = SeededRng::new(seed);
    move || rng.next_gap(rate)
}

/// The result of one overload run.
#[derive(Debug, Clone)]
pub struct Overload {
    /// Calls offered.
    pub offered: u64,
    /// Calls answered successfully within the client timeout, per second of the run.
    pub goodput: f64,
    /// The 99th percentile latency of the calls answered successfully.
    pub p99: Duration,
    /// Calls refused by the guard.
    pub shed: u64,
    /// Calls the client gave up on.
    pub timed_out: u64,
    /// Calls marked `Critical`, and how many of them succeeded.
    pub critical: (u64, u64),
}

impl Overload {
    /// Goodput as a share of the server's capacity.
    pub fn goodput_share(&self) -> f64 {
        self.goodput / CAPACITY
    }
}

/// Offers `load` times the server's capacity, as Poisson arrivals, for `seconds` of virtual time,
/// through `guard`. The server's work is not cancelled when a client gives up (as with most
/// servers once a request is being handled), so a queue that grows wastes capacity.
pub fn overload(load: f64, seconds: u64, guard: Guard) -> Overload {
    mixed_overload(load, seconds, guard, 1.0)
}

/// [`overload`] with a share `critical` of the calls marked `Critical` and the rest
/// `Sheddable`, spread evenly; the shedding layer uses its default tiers (no caps).
pub fn mixed_overload(load: f64, seconds: u64, guard: Guard, critical: f64) -> Overload {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .expect("runtime");
    runtime.block_on(run(load, seconds, guard, critical))
}

/// Whether call `i` is critical, when a share `critical` of calls are: spread evenly.
fn is_critical(i: u64, critical: f64) -> bool {
    ((i + 1) as f64 * critical).floor() > (i as f64 * critical).floor()
}

async fn run(load: f64, seconds: u64, guard: Guard, critical: f64) -> Overload {
    let workers = Arc::new(Semaphore::new(WORKERS));
    let server = service_fn(move |_: Criticality| {
        let workers = workers.clone();
        // Spawned: the work goes on if the client leaves.
        let work = tokio::spawn(async move {
            let _worker = workers.acquire_owned().await.expect("open semaphore");
            tokio::time::sleep(SERVICE_TIME).await;
        });
        async move { work.await.map_err(BoxError::from) }
    });
    let service: BoxCloneService<Criticality, (), BoxError> = match guard.shed() {
        None if guard == Guard::TowerStatic => BoxCloneService::new(
            tower::ServiceBuilder::new()
                .load_shed()
                .concurrency_limit(WORKERS)
                .service(server)
                .map_err(BoxError::from),
        ),
        None => BoxCloneService::new(server),
        Some(builder) => {
            let layer = builder
                .criticality(|c: &Criticality| *c)
                .build()
                .expect("shed");
            BoxCloneService::new(layer.layer(server))
        }
    };

    let measured_from = Instant::now() + WARM_UP;
    let end = measured_from + Duration::from_secs(seconds);
    let mut gap = poisson_gaps(CAPACITY * load, 1);
    let latencies = Arc::new(Mutex::new(Vec::new()));
    let (shed, timed_out) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let critical_ok = Arc::new(AtomicU64::new(0));
    let mut critical_calls = 0;
    let mut calls = Vec::new();
    let mut at = Instant::now();
    // Calls sent, and calls sent after the warm-up (the ones measured).
    let (mut sent, mut i) = (0, 0);
    loop {
        at += gap();
        if at >= end {
            break;
        }
        tokio::time::sleep_until(at).await;
        let service = service.clone();
        let tier = if is_critical(sent, critical) {
            Criticality::Critical
        } else {
            Criticality::Sheddable
        };
        sent += 1;
        if at < measured_from {
            tokio::spawn(async move {
                let _ = tokio::time::timeout(CLIENT_TIMEOUT, service.oneshot(tier)).await;
            });
            continue;
        }
        i += 1;
        if tier == Criticality::Critical {
            critical_calls += 1;
        }
        let (latencies, shed, timed_out) = (latencies.clone(), shed.clone(), timed_out.clone());
        let critical_ok = critical_ok.clone();
        calls.push(tokio::spawn(async move {
            let sent = Instant::now();
            match tokio::time::timeout(CLIENT_TIMEOUT, service.oneshot(tier)).await {
                Ok(Ok(())) => {
                    latencies.lock().expect("latencies").push(sent.elapsed());
                    if tier == Criticality::Critical {
                        critical_ok.fetch_add(1, Relaxed);
                    }
                }
                Ok(Err(_)) => {
                    shed.fetch_add(1, Relaxed);
                }
                Err(_) => {
                    timed_out.fetch_add(1, Relaxed);
                }
            }
        }));
    }
    for call in calls {
        call.await.expect("call");
    }
    let mut latencies = std::mem::take(&mut *latencies.lock().expect("latencies"));
    latencies.sort_unstable();
    let p99 = latencies
        .get((latencies.len() * 99 / 100).min(latencies.len().saturating_sub(1)))
        .copied()
        .unwrap_or_default();
    Overload {
        offered: i,
        goodput: latencies.len() as f64 / seconds as f64,
        p99,
        shed: shed.load(Relaxed),
        timed_out: timed_out.load(Relaxed),
        critical: (critical_calls, critical_ok.load(Relaxed)),
    }
}

/// The result of a latency-shift run.
#[derive(Debug, Clone)]
pub struct LatencyShift {
    /// The limit just before the shift (averaged over the last second).
    pub before: f64,
    /// The limit it settled at (averaged over the last second of the run).
    pub after: f64,
    /// How long after the shift the limit (its half-second rolling median) stayed within
    /// 10% of where it settled.
    pub settled_after: Duration,
}

/// Offers four times the server's capacity for `seconds` of virtual time through our shedding
/// layer with `guard`'s algorithm; halfway, the server's service time is multiplied by
/// `factor` (2: it doubles; 0.5: it halves). Samples the limit every 50 ms and reports how
/// long it took to settle.
pub fn latency_shift(seconds: u64, guard: Guard, factor: f64) -> LatencyShift {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .expect("runtime");
    runtime.block_on(async move {
        let workers = Arc::new(Semaphore::new(WORKERS));
        let slow = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let server = {
            let slow = slow.clone();
            service_fn(move |()| {
                let (workers, slow) = (workers.clone(), slow.clone());
                let work = tokio::spawn(async move {
                    let _worker = workers.acquire_owned().await.expect("open semaphore");
                    let factor = if slow.load(Relaxed) { factor } else { 1.0 };
                    tokio::time::sleep(SERVICE_TIME.mul_f64(factor)).await;
                });
                async move { work.await.map_err(BoxError::from) }
            })
        };
        let layer = guard
            .shed()
            .expect("one of our guards")
            .build()
            .expect("shed");
        let handle = layer.handle();
        let service: BoxCloneService<(), (), BoxError> = BoxCloneService::new(layer.layer(server));
        let sampler = tokio::spawn(async move {
            let mut samples = Vec::new();
            for _ in 0..seconds * 20 {
                samples.push(handle.snapshot().limit as f64);
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            samples
        });
        let (start, mut gap) = (Instant::now(), poisson_gaps(CAPACITY * 4.0, 2));
        let (middle, end) = (
            start + Duration::from_secs(seconds) / 2,
            start + Duration::from_secs(seconds),
        );
        let mut calls = Vec::new();
        let mut at = start;
        loop {
            at += gap();
            if at >= end {
                break;
            }
            tokio::time::sleep_until(at).await;
            if at >= middle {
                slow.store(true, Relaxed);
            }
            let service = service.clone();
            calls.push(tokio::spawn(async move {
                let _ = tokio::time::timeout(CLIENT_TIMEOUT, service.oneshot(())).await;
            }));
        }
        for call in calls {
            call.await.expect("call");
        }
        let samples = sampler.await.expect("sampler");
        // Half-second rolling medians: a probe's brief dip is not a limit unsettled.
        let medians: Vec<f64> = samples
            .windows(10)
            .map(|window| {
                let mut window = window.to_vec();
                window.sort_by(f64::total_cmp);
                window[5]
            })
            .collect();
        let half = samples.len() / 2;
        let mean = |window: &[f64]| window.iter().sum::<f64>() / window.len() as f64;
        let before = mean(&medians[half - 30..half - 10]);
        let after = mean(&medians[medians.len() - 20..]);
        let settled = medians[half..]
            .iter()
            .rposition(|limit| (limit - after).abs() > after * 0.1)
            .map_or(0, |last_outside| last_outside + 1);
        LatencyShift {
            before,
            after,
            settled_after: Duration::from_millis(50) * u32::try_from(settled).unwrap_or(0),
        }
    })
}
