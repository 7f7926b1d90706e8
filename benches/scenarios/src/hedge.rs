//! The tail-latency scenario: a backend whose calls are sometimes 20 times slower, at half
//! its capacity, called with and without hedging.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::Semaphore;
use tokio::time::Instant;
use tower::util::BoxCloneService;
use tower::{service_fn, BoxError, Layer, ServiceExt};
use tower_bulwark::hedge::{Every, HedgeLayer, Rejections};
use tower_bulwark::{Rejection, RejectionKind, SeededRng};

/// Workers of the backend: attempts beyond them queue.
pub const TAIL_WORKERS: usize = 50;
/// A fast attempt takes 8 to 12 ms (uniform).
pub const FAST: (Duration, Duration) = (Duration::from_millis(8), Duration::from_millis(12));
/// The share of attempts that are slow.
pub const SLOW_SHARE: f64 = 0.01;
/// How much slower a slow attempt is.
pub const SLOW_FACTOR: u32 = 20;
/// Calls started before this are not measured (the learned delays warm up).
pub const TAIL_WARM_UP: Duration = Duration::from_secs(2);
/// The fixed delay of the fixed-delay row: twice the median.
pub const FIXED_DELAY: Duration = Duration::from_millis(20);

/// The backend's capacity in calls per second: workers over the mean attempt time.
pub fn tail_capacity() -> f64 {
    let fast = (FAST.0 + FAST.1).as_secs_f64() / 2.0;
    let mean = fast * (1.0 - SLOW_SHARE) + fast * f64::from(SLOW_FACTOR) * SLOW_SHARE;
    TAIL_WORKERS as f64 / mean
}

/// What stands between the callers and the backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hedging {
    /// Nothing.
    None,
    /// tower's `Hedge`: the 95th percentile of the previous 1 s period, after 100 latencies
    /// (its histogram reads only the last full period: a 10 s period would leave the first
    /// 10 s unhedged).
    TowerP95,
    /// Ours, a fixed delay ([`FIXED_DELAY`]).
    OursFixed,
    /// Ours, the learned 95th percentile (defaults: 5% budget, 100 samples).
    OursP95,
}

/// The result of one run, over the calls started after the warm-up.
#[derive(Debug, Clone)]
pub struct Tail {
    /// Calls measured.
    pub calls: u64,
    /// Attempts they made on the backend.
    pub attempts: u64,
    /// Calls that failed (a shed, when the backend sheds).
    pub failed: u64,
    /// Latency percentiles of the calls: p50, p99, p99.9.
    pub p50: Duration,
    /// See `p50`.
    pub p99: Duration,
    /// See `p50`.
    pub p999: Duration,
}

impl Tail {
    /// Attempts beyond one per call, as a share of calls.
    pub fn extra_load(&self) -> f64 {
        self.attempts as f64 / self.calls as f64 - 1.0
    }
}

/// tower's hedge policy: every request may be hedged.
#[derive(Clone)]
struct CloneAll;

impl tower::hedge::Policy<u64> for CloneAll {
    fn clone_request(&self, request: &u64) -> Option<u64> {
        Some(*request)
    }

    fn can_retry(&self, _: &u64) -> bool {
        true
    }
}

/// `seconds` of virtual time of Poisson arrivals at `load` times the backend's capacity,
/// through `hedging`. With `shed` above zero the backend is overloaded and refuses that
/// share of attempts at once (a `Rejection` of kind `Overloaded`, with a pushback of 1 s,
/// as a server's shed answer reads).
pub fn tail(hedging: Hedging, load: f64, seconds: u64, shed: f64) -> Tail {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .expect("runtime");
    runtime.block_on(run(hedging, load, seconds, shed))
}

async fn run(hedging: Hedging, load: f64, seconds: u64, shed: f64) -> Tail {
    let rate = load * tail_capacity();
    let offered = (rate * seconds as f64) as u64;
    let measured_from = (rate * TAIL_WARM_UP.as_secs_f64()) as u64;
    let workers = Arc::new(Semaphore::new(TAIL_WORKERS));
    let attempts = Arc::new(AtomicU64::new(0));
    let rng = Arc::new(Mutex::new(SeededRng::new(17)));
    let backend = {
        let attempts = attempts.clone();
        service_fn(move |call: u64| {
            if call >= measured_from {
                attempts.fetch_add(1, Relaxed);
            }
            let (refuse, latency) = {
                let mut rng = rng.lock().expect("rng");
                let refuse = rng.next_unit() < shed;
                let fast = FAST.0 + (FAST.1 - FAST.0).mul_f64(rng.next_unit());
                let slow = rng.next_unit() < SLOW_SHARE;
                (refuse, if slow { fast * SLOW_FACTOR } else { fast })
            };
            let workers = workers.clone();
            async move {
                if refuse {
                    let rejection = Rejection::new(RejectionKind::Overloaded, "backend")
                        .with_retry_after(Duration::from_secs(1));
                    return Err::<(), BoxError>(rejection.into());
                }
                // Held by the attempt: a cancelled attempt frees its worker.
                let _worker = workers.acquire_owned().await.expect("open");
                tokio::time::sleep(latency).await;
                Ok(())
            }
        })
    };
    let client: BoxCloneService<u64, (), BoxError> = match hedging {
        Hedging::None => BoxCloneService::new(backend),
        // tower's `Hedge` is not `Clone`: shared by the callers through a `Buffer`.
        Hedging::TowerP95 => BoxCloneService::new(tower::buffer::Buffer::new(
            tower::hedge::Hedge::new(backend, CloneAll, 100, 0.95, Duration::from_secs(1)),
            1 << 16,
        )),
        Hedging::OursFixed | Hedging::OursP95 => {
            let builder = HedgeLayer::builder()
                .may_hedge(Every)
                .overload(Rejections)
                .delay(FIXED_DELAY);
            let builder = if hedging == Hedging::OursP95 {
                builder.percentile(0.95)
            } else {
                builder
            };
            BoxCloneService::new(builder.build().expect("hedge").layer(backend))
        }
    };
    let latencies = Arc::new(Mutex::new(Vec::with_capacity(offered as usize)));
    let failed = Arc::new(AtomicU64::new(0));
    let mut gaps = SeededRng::new(5);
    let mut calls = Vec::with_capacity(offered as usize);
    for call in 0..offered {
        let (client, latencies, failed) = (client.clone(), latencies.clone(), failed.clone());
        calls.push(tokio::spawn(async move {
            let started = Instant::now();
            let result = client.oneshot(call).await;
            if call >= measured_from {
                if result.is_err() {
                    failed.fetch_add(1, Relaxed);
                }
                latencies.lock().expect("latencies").push(started.elapsed());
            }
        }));
        tokio::time::sleep(gaps.next_gap(rate)).await;
    }
    for call in calls {
        call.await.expect("call");
    }
    let mut latencies = std::mem::take(&mut *latencies.lock().expect("latencies"));
    latencies.sort_unstable();
    let at = |q: f64| {
        latencies[((latencies.len() as f64 * q).ceil() as usize).clamp(1, latencies.len()) - 1]
    };
    Tail {
        calls: offered - measured_from,
        attempts: attempts.load(Relaxed),
        failed: failed.load(Relaxed),
        p50: at(0.5),
        p99: at(0.99),
        p999: at(0.999),
    }
}
