//! Cancel safety: callers drop their calls at random points (seeded), before the first
//! poll, while the first attempt runs, while hedges run; every attempt is dropped with
//! them and the counts return to zero.

mod support;

use std::time::Duration;

use tower::{Layer, Service, ServiceExt};
use tower_bulwark_core::testing::ReadinessProbe;
use tower_bulwark_core::SeededRng;
use tower_bulwark_hedge::HedgeLayer;

use support::{backend, get, ms, Reply};

#[tokio::test(start_paused = true)]
async fn dropped_calls_release_every_attempt() {
    for seed in 0..40u64 {
        let mut rng = SeededRng::new(seed);
        let latencies: Vec<u64> = (0..400).map(|_| rng.next_u64() % 60).collect();
        let (inner, stats) = backend(move |n| {
            let latency = latencies.get(n).copied().unwrap_or(1);
            let reply = if latency % 7 == 0 {
                Reply::Fail
            } else {
                Reply::Ok
            };
            (ms(latency), reply)
        });
        let layer = HedgeLayer::builder()
            .delay(ms(10))
            .max_hedges(3)
            .budget_ratio(1.0)
            .build()
            .unwrap();
        let handle = layer.handle();
        let service = layer.layer(ReadinessProbe::new(inner));
        let mut tasks = Vec::new();
        let mut made = 0;
        for _ in 0..30 {
            let give_up = rng.next_u64() % 50;
            let mut service = service.clone();
            match rng.next_u64() % 4 {
                // Made, never polled.
                0 => {
                    let call = service.ready().await.unwrap().call(get());
                    made += 1;
                    drop(call);
                }
                // Given up after a random time (maybe after it answered).
                _ => {
                    made += 1;
                    tasks.push(tokio::spawn(async move {
                        let call = service.ready().await.unwrap().call(get());
                        let _ = tokio::time::timeout(ms(give_up), call).await;
                    }));
                }
            }
            tokio::time::sleep(Duration::from_millis(rng.next_u64() % 5)).await;
        }
        for task in tasks {
            task.await.unwrap();
        }
        let snapshot = handle.snapshot();
        assert_eq!(
            stats.in_flight(),
            0,
            "seed {seed}: an attempt outlived its call"
        );
        assert_eq!(snapshot.in_flight, 0, "seed {seed}");
        assert_eq!(snapshot.calls, made, "seed {seed}");
        assert_eq!(
            stats.calls() as u64,
            made + snapshot.sent,
            "seed {seed}: every attempt reached the backend once"
        );
        assert!(snapshot.sent > 0, "seed {seed}: the runs hedge");
        // Nothing is left to fire: no timer of a dropped call sends a hedge later.
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert_eq!(
            stats.calls() as u64,
            made + handle.snapshot().sent,
            "seed {seed}"
        );
        assert_eq!(handle.snapshot().sent, snapshot.sent, "seed {seed}");
    }
}
