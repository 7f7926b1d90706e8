//! Scenario simulations in virtual time: what the layers are for, measured.
#![forbid(unsafe_code)]

mod hedge;
mod overload;

pub use self::hedge::{
    tail, tail_capacity, Hedging, Tail, FAST, FIXED_DELAY, SLOW_FACTOR, SLOW_SHARE, TAIL_WARM_UP,
    TAIL_WORKERS,
};
pub use self::overload::{
    latency_shift, mixed_overload, overload, Guard, LatencyShift, Overload, CAPACITY,
    CLIENT_TIMEOUT, SERVICE_TIME, WARM_UP, WORKERS,
};

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;

use tower::{service_fn, Layer, ServiceExt};
use tower_bulwark::retry::{Backoff, Jitter, RatioBudget, RetryPolicy};
use tower_bulwark::SeededRng;

/// The result of one retry-amplification run.
#[derive(Debug, Clone, Copy)]
pub struct Amplification {
    /// Calls the clients made.
    pub offered: u64,
    /// Attempts that reached the dependency.
    pub attempts: u64,
    /// Calls that ended in success.
    pub succeeded: u64,
}

impl Amplification {
    /// Attempts per offered call.
    pub fn load(&self) -> f64 {
        self.attempts as f64 / self.offered as f64
    }

    /// Share of calls that succeeded.
    pub fn success(&self) -> f64 {
        self.succeeded as f64 / self.offered as f64
    }
}

/// `rate` calls per second for `seconds` of virtual time against a dependency that fails a
/// `failure` share of attempts, through a retry policy of at most 3 attempts, with a budget
/// of `budget_ratio` (plus 10 retries per second) or, with `None`, no budget to speak of.
pub fn retry_amplification(
    rate: u64,
    seconds: u64,
    failure: f64,
    budget_ratio: Option<f64>,
) -> Amplification {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .expect("runtime");
    runtime.block_on(async move {
        let attempts = Arc::new(AtomicU64::new(0));
        let rng = Arc::new(std::sync::Mutex::new(SeededRng::new(7)));
        let dependency = {
            let attempts = attempts.clone();
            service_fn(move |_: u64| {
                attempts.fetch_add(1, Relaxed);
                let failed = rng.lock().expect("rng").next_unit() < failure;
                async move {
                    if failed {
                        Err::<(), _>(std::io::ErrorKind::ConnectionRefused)
                    } else {
                        Ok(())
                    }
                }
            })
        };
        let budget = match budget_ratio {
            Some(ratio) => RatioBudget::new(Duration::from_secs(10), 10, ratio),
            None => RatioBudget::new(Duration::from_secs(10), u32::MAX, 1000.0),
        }
        .expect("budget");
        let policy = RetryPolicy::builder()
            .max_attempts(3)
            .backoff(Backoff::Constant(Duration::from_millis(10)), Jitter::None)
            .budget(Arc::new(budget))
            .seed(1)
            .build()
            .expect("policy");
        let client = policy.layer().layer(dependency);
        let succeeded = Arc::new(AtomicU64::new(0));
        let offered = rate * seconds;
        let gap = Duration::from_secs(1) / u32::try_from(rate).unwrap_or(u32::MAX);
        let mut calls = Vec::with_capacity(offered as usize);
        for i in 0..offered {
            let (client, succeeded) = (client.clone(), succeeded.clone());
            calls.push(tokio::spawn(async move {
                if client.oneshot(i).await.is_ok() {
                    succeeded.fetch_add(1, Relaxed);
                }
            }));
            tokio::time::sleep(gap).await;
        }
        for call in calls {
            call.await.expect("call");
        }
        Amplification {
            offered,
            attempts: attempts.load(Relaxed),
            succeeded: succeeded.load(Relaxed),
        }
    })
}
