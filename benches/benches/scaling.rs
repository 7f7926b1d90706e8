//! Shared state across cores: one layer value shared by 1, 2 and 4 threads (4 is
//! oversubscribed on a 2-core machine), each thread driving its own clone of the service on
//! its own runtime, as a multi-threaded runtime's workers do. Times are wall time per call
//! across all threads, so the throughput of `n` threads against one is the 1-thread time
//! over the `n`-thread time; tower's `ConcurrencyLimit` and `LoadShed` are the peers.
//!
//! ```sh
//! cargo bench -p tower-bulwark-benches --bench scaling -- --quick
//! ```

use criterion::{criterion_group, criterion_main, Criterion};
use tower::limit::ConcurrencyLimit;
use tower::load_shed::LoadShed;
use tower::Layer;
use tower_bulwark::breaker::CircuitBreakerLayer;
use tower_bulwark::bulkhead::BulkheadLayer;
use tower_bulwark::shed::{Fixed, MinRtt, ShedLayer};
use tower_bulwark::testing::Noop;
use tower_bulwark_benches::bench_threads;

fn scaling(c: &mut Criterion) {
    for threads in [1, 2, 4] {
        let mut group = c.benchmark_group(format!("threads_{threads}"));
        bench_threads(&mut group, "noop", threads, Noop, || 7u64);
        bench_threads(
            &mut group,
            "tower_concurrency_limit",
            threads,
            ConcurrencyLimit::new(Noop, 1024),
            || 7u64,
        );
        bench_threads(
            &mut group,
            "tower_load_shed_concurrency_limit",
            threads,
            LoadShed::new(ConcurrencyLimit::new(Noop, 1024)),
            || 7u64,
        );
        bench_threads(
            &mut group,
            "bulwark_breaker_default",
            threads,
            CircuitBreakerLayer::new().layer(Noop),
            || 7u64,
        );
        let bulkhead = BulkheadLayer::builder()
            .max_concurrent(1024)
            .build()
            .expect("bulkhead config");
        bench_threads(
            &mut group,
            "bulwark_bulkhead_reject",
            threads,
            bulkhead.layer(Noop),
            || 7u64,
        );
        let fixed = ShedLayer::builder()
            .fixed(Fixed::new(1024).expect("limit"))
            .build()
            .expect("shed config");
        bench_threads(
            &mut group,
            "bulwark_shed_fixed",
            threads,
            fixed.layer(Noop),
            || 7u64,
        );
        let adaptive = ShedLayer::builder()
            .algorithm(MinRtt::default())
            .build()
            .expect("shed config");
        bench_threads(
            &mut group,
            "bulwark_shed_minrtt",
            threads,
            adaptive.layer(Noop),
            || 7u64,
        );
        group.finish();
    }
}

criterion_group!(benches, scaling);
criterion_main!(benches);
