//! The rate limiters beside their peers, in one run: tower's `RateLimit` and `governor`
//! used directly (a keyed limiter's `check_key`, a direct limiter's `check`).
//!
//! `cargo bench -p tower-bulwark-benches --bench ratelimit` (add `-- --quick` for a short
//! run). Every quota is too large to run out, so what is timed is an admitted request of
//! a busy key (one in debt), except in `..._idle_key`, where the key's burst is whole
//! again at each request (a client well under its limit: the limiter counts it toward
//! its next sweep):
//!
//! - `noop`, `tower_rate_limit`, `bulwark_*_layer`: `ready()` + `call()` on a no-op
//!   service (the harness of `overhead`); tower's `RateLimit` is one unkeyed counter per
//!   service value;
//! - `governor_keyed_check_key`, `governor_direct_check`, `bulwark_local_limiter_check`: one
//!   permit taken, no service around it. Governor runs on its default clock (quanta), the
//!   local limiter on tokio's (so paused-time tests drive it).
//!
//! The server layer is timed with the admitted response's `RateLimit` headers off (their
//! value allocates) and on.

use std::num::NonZeroU32;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion};
use governor::{DefaultDirectRateLimiter, DefaultKeyedRateLimiter};
use http::{Request, Response};
use tower::limit::RateLimit;
use tower::{Layer, ServiceExt};
use tower_bulwark::ratelimit::{key, ClientRateLimitLayer, LocalLimiter, Quota, RateLimitLayer};
use tower_bulwark::testing::Noop;
use tower_bulwark_benches::bench_ready_call;

/// 2^32 - 1 an hour, all at once if need be: one permit back every 838 ns, so a key asked
/// every few dozen nanoseconds is busy (in debt), and never runs out while timed.
fn quota() -> Quota {
    Quota::per_window(u32::MAX, Duration::from_secs(3600)).expect("valid quota")
}

/// A billion a second: a key asked every few dozen nanoseconds always has its whole burst
/// back (the case of a client well under its limit).
fn idle_quota() -> Quota {
    Quota::per_second(1_000_000_000).expect("valid quota")
}

/// `quota()` for governor.
fn governor_quota() -> governor::Quota {
    let quota = quota();
    governor::Quota::with_period(quota.interval())
        .expect("not zero")
        .allow_burst(NonZeroU32::new(quota.burst_size()).expect("not zero"))
}

fn ratelimit(c: &mut Criterion) {
    let mut group = c.benchmark_group("ratelimit");
    bench_ready_call(&mut group, "noop", Noop, || 7u64);
    // tower's `RateLimit` makes its timer when built, so it needs a runtime then (one that
    // outlives it; its quota never runs out, so the timer is never polled).
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .expect("a runtime");
    let tower_rate_limit = {
        let _inside = runtime.enter();
        let rate = tower::limit::rate::Rate::new(u64::MAX, Duration::from_secs(1));
        RateLimit::new(Noop, rate)
    };
    bench_ready_call(&mut group, "tower_rate_limit", tower_rate_limit, || 7u64);

    let keyed = DefaultKeyedRateLimiter::<u64>::keyed(governor_quota());
    group.bench_function("governor_keyed_check_key", |b| {
        b.iter(|| keyed.check_key(std::hint::black_box(&7u64)).is_ok())
    });
    let direct = DefaultDirectRateLimiter::direct(governor_quota());
    group.bench_function("governor_direct_check", |b| {
        b.iter(|| direct.check().is_ok())
    });
    let local = LocalLimiter::new(quota());
    group.bench_function("bulwark_local_limiter_check", |b| {
        b.iter(|| local.check(std::hint::black_box(&7u64)).allowed)
    });
    // What the local limiter's clock costs on its own, per reading.
    group.bench_function("tokio_instant_now", |b| b.iter(tokio::time::Instant::now));
    let idle = LocalLimiter::new(idle_quota());
    group.bench_function("bulwark_local_limiter_check_idle_key", |b| {
        b.iter(|| idle.check(std::hint::black_box(&7u64)).allowed)
    });

    let client = ClientRateLimitLayer::builder(LocalLimiter::new(quota()), key::global).build();
    bench_ready_call(
        &mut group,
        "bulwark_client_layer",
        client.layer(Noop),
        || 7u64,
    );

    let http_noop = || Noop.map_response(|_request: Request<()>| Response::new(()));
    let server = RateLimitLayer::local(quota(), key::global)
        .expect("valid tiers")
        .admitted_headers(false)
        .build()
        .expect("valid layer");
    bench_ready_call(&mut group, "http_noop", http_noop(), || Request::new(()));
    bench_ready_call(
        &mut group,
        "bulwark_server_layer",
        server.layer(http_noop()),
        || Request::new(()),
    );
    let with_headers = RateLimitLayer::local(quota(), key::global)
        .expect("valid tiers")
        .build()
        .expect("valid layer");
    bench_ready_call(
        &mut group,
        "bulwark_server_layer_with_headers",
        with_headers.layer(http_noop()),
        || Request::new(()),
    );
    group.finish();
}

criterion_group!(benches, ratelimit);
criterion_main!(benches);
