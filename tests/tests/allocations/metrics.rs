//! The layers' metrics, recorded through a real recorder: handles are registered once, so a
//! call allocates nothing more with metrics on than with them off.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tower::{Service, ServiceExt};
use tower_bulwark::testing::Noop;

use super::{allocations, hold, refusals, runs, CALLS};

/// A `metrics` recorder like an exporter's: a registry of series by key, each an atomic.
/// Registering looks the key up (and clones it the first time); recording through a
/// handle allocates nothing, unlike `DebuggingRecorder`'s histograms, whose sample lists
/// grow, so the counts below are the layers' own.
#[derive(Default)]
struct Tally {
    series: std::sync::Mutex<std::collections::HashMap<metrics::Key, Arc<Series>>>,
    registrations: AtomicUsize,
}

/// One series: a counter's total, a gauge's value (as `f64` bits) or a histogram's number
/// of samples.
#[derive(Default)]
struct Series(std::sync::atomic::AtomicU64);

impl metrics::CounterFn for Series {
    fn increment(&self, value: u64) {
        self.0.fetch_add(value, Ordering::Relaxed);
    }
    fn absolute(&self, value: u64) {
        self.0.fetch_max(value, Ordering::Relaxed);
    }
}

impl metrics::GaugeFn for Series {
    fn increment(&self, value: f64) {
        self.set(f64::from_bits(self.0.load(Ordering::Relaxed)) + value);
    }
    fn decrement(&self, value: f64) {
        self.increment(-value);
    }
    fn set(&self, value: f64) {
        self.0.store(value.to_bits(), Ordering::Relaxed);
    }
}

impl metrics::HistogramFn for Series {
    fn record(&self, _value: f64) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }
}

impl Tally {
    fn register(&self, key: &metrics::Key) -> Arc<Series> {
        self.registrations.fetch_add(1, Ordering::Relaxed);
        let mut series = self.series.lock().unwrap();
        match series.get(key) {
            Some(series) => series.clone(),
            None => series.entry(key.clone()).or_default().clone(),
        }
    }

    /// The raw value of the series `name` whose labels include `labels`.
    fn value(&self, name: &str, labels: &[(&str, &str)]) -> Option<u64> {
        let series = self.series.lock().unwrap();
        series.iter().find_map(|(key, series)| {
            let matches = key.name() == name
                && labels.iter().all(|(k, v)| {
                    key.labels()
                        .any(|label| label.key() == *k && label.value() == *v)
                });
            matches.then(|| series.0.load(Ordering::Relaxed))
        })
    }

    /// Every series was registered once: no layer registers per event.
    fn assert_registered_once(&self) {
        assert_eq!(
            self.registrations.load(Ordering::Relaxed),
            self.series.lock().unwrap().len(),
            "a series was registered more than once"
        );
    }
}

impl metrics::Recorder for Tally {
    fn describe_counter(
        &self,
        _: metrics::KeyName,
        _: Option<metrics::Unit>,
        _: metrics::SharedString,
    ) {
    }
    fn describe_gauge(
        &self,
        _: metrics::KeyName,
        _: Option<metrics::Unit>,
        _: metrics::SharedString,
    ) {
    }
    fn describe_histogram(
        &self,
        _: metrics::KeyName,
        _: Option<metrics::Unit>,
        _: metrics::SharedString,
    ) {
    }

    fn register_counter(&self, key: &metrics::Key, _: &metrics::Metadata<'_>) -> metrics::Counter {
        metrics::Counter::from_arc(self.register(key))
    }
    fn register_gauge(&self, key: &metrics::Key, _: &metrics::Metadata<'_>) -> metrics::Gauge {
        metrics::Gauge::from_arc(self.register(key))
    }
    fn register_histogram(
        &self,
        key: &metrics::Key,
        _: &metrics::Metadata<'_>,
    ) -> metrics::Histogram {
        metrics::Histogram::from_arc(self.register(key))
    }
}

/// Warm-up plus measured runs: what every counter below reaches.
const RUNS: u64 = 100 + CALLS;

/// A closed breaker records every call: with metrics on, through handles registered once,
/// so a call allocates nothing, for a breaker and for a keyed breaker's.
#[test]
fn breaker_metrics_allocate_nothing_per_call() {
    use tower::Layer;
    use tower_bulwark::breaker::{CircuitBreakerLayer, KeyedCircuitBreakerLayer};

    let tally = Tally::default();
    let _recorder = metrics::set_default_local_recorder(&tally);
    let layer = CircuitBreakerLayer::builder()
        .name("payments")
        .with_metrics()
        .build()
        .unwrap();
    assert_eq!(allocations(layer.layer(Noop), || 7u64), 0);
    let success = [
        ("breaker", "payments"),
        ("outcome", "success"),
        ("slow", "false"),
    ];
    assert_eq!(
        tally.value("bulwark_breaker_calls_total", &success),
        Some(RUNS)
    );

    let keyed = KeyedCircuitBreakerLayer::new(
        CircuitBreakerLayer::builder().name("hosts").with_metrics(),
        |host: &&'static str| *host,
        16,
        Duration::from_secs(60),
    )
    .unwrap();
    let mut n = 0;
    let host = || {
        n += 1;
        ["db-1", "db-2"][n % 2]
    };
    let host = std::cell::RefCell::new(host);
    assert_eq!(allocations(keyed.layer(Noop), || (host.borrow_mut())()), 0);
    for host in ["hosts:db-1", "hosts:db-2"] {
        let success = [("breaker", host), ("outcome", "success")];
        assert_eq!(
            tally.value("bulwark_breaker_calls_total", &success),
            Some(RUNS / 2)
        );
    }
    tally.assert_registered_once();
}

/// An open breaker refuses every call; the refusal is an error (one boxed allocation),
/// and recording it in metrics adds none.
#[test]
fn breaker_metrics_add_no_allocation_to_refusals() {
    use tower::Layer;
    use tower_bulwark::breaker::CircuitBreakerLayer;

    let refused = |builder: tower_bulwark::breaker::Builder| {
        let layer = builder.name("payments").build().unwrap();
        layer.handle().force_open();
        refusals(layer.layer(Noop), || 7u64)
    };
    let without = refused(CircuitBreakerLayer::builder());
    let tally = Tally::default();
    let _recorder = metrics::set_default_local_recorder(&tally);
    assert_eq!(
        refused(CircuitBreakerLayer::builder().with_metrics()),
        without
    );
    let rejections = [("breaker", "payments")];
    assert_eq!(
        tally.value("bulwark_breaker_rejections_total", &rejections),
        Some(RUNS)
    );
    tally.assert_registered_once();
}

/// A full bulkhead's refusals, and calls that wait in its queue for a permit: metrics add
/// no allocation to either.
#[test]
fn bulkhead_metrics_add_no_allocation() {
    use tower::Layer;
    use tower_bulwark::bulkhead::{Builder, BulkheadLayer};

    let refused = |builder: Builder| {
        let layer = builder
            .name("db")
            .max_concurrent(1)
            .max_queue(0)
            .build()
            .unwrap();
        let mut service = layer.layer(Noop);
        let _held = hold(&mut service, 0u64);
        refusals(service, || 7u64)
    };
    let waited = |builder: Builder| {
        let layer = builder
            .name("db")
            .max_concurrent(1)
            .max_queue(1)
            .build()
            .unwrap();
        let mut service = layer.layer(Noop);
        runs(async || {
            let first = ServiceExt::<u64>::ready(&mut service)
                .await
                .unwrap()
                .call(1);
            let queued = ServiceExt::<u64>::ready(&mut service)
                .await
                .unwrap()
                .call(2);
            assert_eq!(first.await.unwrap(), 1);
            assert_eq!(queued.await.unwrap(), 2);
        })
    };
    let without = (
        refused(BulkheadLayer::builder()),
        waited(BulkheadLayer::builder()),
    );
    let tally = Tally::default();
    let _recorder = metrics::set_default_local_recorder(&tally);
    let with = (
        refused(BulkheadLayer::builder().with_metrics()),
        waited(BulkheadLayer::builder().with_metrics()),
    );
    assert_eq!(with, without);
    let queue_full = [("bulkhead", "db"), ("reason", "queue_full")];
    assert_eq!(
        tally.value("bulwark_bulkhead_rejections_total", &queue_full),
        Some(RUNS)
    );
    assert_eq!(
        tally.value("bulwark_bulkhead_wait_seconds", &[("bulkhead", "db")]),
        Some(RUNS)
    );
    tally.assert_registered_once();
}

/// In shadow mode every call over the limit is counted as shed and admitted: with metrics
/// on that allocates nothing. An adaptive limit moves with every call and sets its gauge.
#[test]
fn shed_metrics_allocate_nothing_per_call() {
    use tower::Layer;
    use tower_bulwark::shed::{Fixed, LimitAlgorithm, Sample, ShedLayer, WindowSize};

    let tally = Tally::default();
    let _recorder = metrics::set_default_local_recorder(&tally);
    let shadow = ShedLayer::builder()
        .name("api")
        .fixed(Fixed::new(1).unwrap())
        .shadow(true)
        .with_metrics()
        .build()
        .unwrap();
    let mut service = shadow.layer(Noop);
    let _held = hold(&mut service, 0u64);
    assert_eq!(allocations(service, || 7u64), 0);
    let shadowed = [("shed", "api"), ("mode", "shadow"), ("tier", "critical")];
    assert_eq!(
        tally.value("bulwark_shed_rejections_total", &shadowed),
        Some(RUNS)
    );

    /// A limit that moves with every sample (a window of one call), between 100 and 101.
    struct Restless(usize);
    impl LimitAlgorithm for Restless {
        fn initial(&self) -> usize {
            self.0
        }
        fn update(&mut self, _sample: Sample) -> usize {
            self.0 = 201 - self.0;
            self.0
        }
    }
    let restless = ShedLayer::builder()
        .name("adaptive")
        .algorithm(Restless(100))
        .window(WindowSize::per_call())
        .with_metrics()
        .build()
        .unwrap();
    assert_eq!(allocations(restless.layer(Noop), || 7u64), 0);
    // The last of an even number of moves brought it back to 100.
    let limit = tally.value("bulwark_shed_limit", &[("shed", "adaptive")]);
    assert_eq!(limit.map(f64::from_bits), Some(100.0));
    tally.assert_registered_once();
}

/// A dependency that always fails: each call is retried once (the budget affords one retry
/// per call), then not retried again (its attempts are used up). Metrics add no allocation
/// to either event.
#[test]
fn retry_metrics_add_no_allocation() {
    use tower::Layer;
    use tower_bulwark::retry::{Backoff, Builder, Jitter, RatioBudget, RetryPolicy};

    #[derive(Debug)]
    struct Down;
    impl std::fmt::Display for Down {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("down")
        }
    }
    impl std::error::Error for Down {}

    let failing = |builder: Builder| {
        let budget = RatioBudget::new(Duration::from_secs(10), 10, 1.0).unwrap();
        let policy = builder
            .max_attempts(2)
            .backoff(Backoff::Constant(Duration::ZERO), Jitter::None)
            .budget(Arc::new(budget))
            .build()
            .unwrap();
        let down = tower::service_fn(|_: u64| async { Err::<u64, _>(Down) });
        refusals(policy.layer().layer(down), || 7u64)
    };
    let without = failing(RetryPolicy::builder());
    let tally = Tally::default();
    let _recorder = metrics::set_default_local_recorder(&tally);
    assert_eq!(failing(RetryPolicy::builder().with_metrics()), without);
    assert_eq!(tally.value("bulwark_retries_total", &[]), Some(RUNS));
    assert_eq!(tally.value("bulwark_retry_wait_seconds", &[]), Some(RUNS));
    let exhausted = [("reason", "max_attempts")];
    assert_eq!(
        tally.value("bulwark_retry_not_retried_total", &exhausted),
        Some(RUNS)
    );
    tally.assert_registered_once();
}
