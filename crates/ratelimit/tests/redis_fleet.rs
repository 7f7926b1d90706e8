//! The fleet test: two app instances, each an axum server behind `RateLimitLayer` over a
//! `RedisLimiter` of its own (its own runtime thread and Redis connection), share one
//! limit of 100 per second in a real `redis-server`. Driven over HTTP/1.1 on loopback by
//! open-loop Poisson load of 150 requests per second each (three times the limit in all,
//! and more than the limit from either alone), the two together answer 200 at the
//! limit, within 2 %, and 429 to the rest; each gets a share of the limit.
//!
//! How the rate is measured, so that a loaded two-core machine does not make it flaky:
//! - **Redis's clock.** The span is two snapshots of Redis's `TIME`, the clock the limit
//!   is kept by, taken atomically (`MULTI`) with the key's state; the admitted count is
//!   the 200s the clients got, read right after each snapshot. Nothing is timed by the
//!   test's own clock.
//! - **A burst that absorbs stalls.** A stalled load generator sends nothing; with a
//!   burst of 50 (half a second of permits), the permits that came back meanwhile are
//!   kept, and the missed requests, sent at once when it runs again (open loop), take
//!   them. A stall of both instances at once shorter than half a second loses nothing.
//! - **No phase locking.** Arrivals are Poisson (seeded): with evenly spaced requests the
//!   instance whose ticks fall just after each permit comes back would take nearly all.
//! - **The boundaries.** Permits that came back before a snapshot but were not yet taken
//!   (a stall just before it) are taken after it: the snapshot's state says how many
//!   (`allowance`), and the measured rate counts them in the span they came back in.
//!   That correction is the limiter's own state, typically under one permit; it is
//!   printed with the raw count.
#![cfg(feature = "redis")]

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use axum::routing::get;
use axum::Router;
use bytes::Bytes;
use http::{StatusCode, Uri};
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinSet;
use tower_bulwark_core::redis::RedisConnection;
use tower_bulwark_core::SeededRng;
use tower_bulwark_ratelimit::{key, OnLimiterError, Quota, RateLimitLayer, RedisLimiter};

use tower_bulwark_core::testing::RedisServer;

const LIMIT: u32 = 100;
const BURST: u32 = 50;
/// Requests per second from each instance.
const OFFERED: u32 = 150;
/// Before the span: the first burst is spent and the load is steady.
const WARM_UP: Duration = Duration::from_secs(1);
const SPAN: Duration = Duration::from_secs(5);
/// `key::global`: one key, no bytes after the prefix.
const REDIS_KEY: &str = "bulwark:ratelimit:7:default:";

fn quota() -> Quota {
    Quota::per_second(LIMIT).unwrap().burst(BURST).unwrap()
}

#[derive(Debug, Default)]
struct Counts {
    admitted: AtomicU64,
    refused: AtomicU64,
    errors: AtomicU64,
}

/// One app instance: a thread with its own runtime, connection, limiter and server, and
/// clients sending it `OFFERED` requests per second until stopped.
struct Instance {
    counts: Arc<Counts>,
    stop: Arc<AtomicBool>,
    thread: JoinHandle<()>,
}

impl Instance {
    async fn start(url: String, seed: u64) -> Instance {
        let counts = Arc::new(Counts::default());
        let stop = Arc::new(AtomicBool::new(false));
        let (connected, ready) = oneshot::channel();
        let thread = {
            let (counts, stop) = (counts.clone(), stop.clone());
            std::thread::spawn(move || {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .unwrap();
                runtime.block_on(run(url, seed, counts, stop, connected));
            })
        };
        ready.await.expect("the instance connected");
        Instance {
            counts,
            stop,
            thread,
        }
    }

    fn admitted(&self) -> u64 {
        self.counts.admitted.load(Ordering::SeqCst)
    }

    fn stop(self) -> Arc<Counts> {
        self.stop.store(true, Ordering::SeqCst);
        self.thread.join().expect("the instance ran");
        self.counts
    }
}

/// An axum server behind the rate limit layer over a `RedisLimiter` of its own (one
/// global key), and its clients: Poisson arrivals, on a schedule that does not wait for
/// answers (open loop: after a stall, the requests it missed go at once).
async fn run(
    url: String,
    seed: u64,
    counts: Arc<Counts>,
    stop: Arc<AtomicBool>,
    connected: oneshot::Sender<()>,
) {
    let connection = RedisConnection::open(url, Duration::from_secs(5))
        .await
        .unwrap();
    let limiter = RedisLimiter::new(connection, quota()).unwrap();
    // Closed: a limiter error is a 503, counted as an error rather than as admitted.
    let layer = RateLimitLayer::builder(limiter, key::global)
        .on_limiter_error(OnLimiterError::FailClosed)
        .build()
        .unwrap();
    let router = Router::new()
        .route("/", get(|| async { "ok" }))
        .layer(layer);
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let uri: Uri = format!("http://{}/", listener.local_addr().unwrap())
        .parse()
        .unwrap();
    let server = tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    let client = Client::builder(TokioExecutor::new()).build_http::<Empty<Bytes>>();
    let _ = connected.send(());

    let mut rng = SeededRng::new(seed);
    let mut next = tokio::time::Instant::now();
    let mut calls = JoinSet::new();
    while !stop.load(Ordering::SeqCst) {
        next += rng.next_gap(f64::from(OFFERED));
        tokio::time::sleep_until(next).await;
        let (client, uri, counts) = (client.clone(), uri.clone(), counts.clone());
        calls.spawn(async move {
            let status = match client.get(uri).await {
                Ok(response) => {
                    let status = response.status();
                    response.into_body().collect().await.map(|_| status).ok()
                }
                Err(_) => None,
            };
            let count = match status {
                Some(StatusCode::OK) => &counts.admitted,
                Some(StatusCode::TOO_MANY_REQUESTS) => &counts.refused,
                _ => &counts.errors,
            };
            count.fetch_add(1, Ordering::SeqCst);
        });
        while calls.try_join_next().is_some() {}
    }
    while calls.join_next().await.is_some() {}
    server.abort();
}

/// Redis's time (ns since the epoch) and the permits the key had not yet given out,
/// read in one `MULTI`.
async fn snapshot(raw: &mut redis::aio::MultiplexedConnection) -> (u128, f64) {
    let ((secs, micros), tat): ((u64, u64), Option<String>) = redis::pipe()
        .atomic()
        .cmd("TIME")
        .cmd("GET")
        .arg(REDIS_KEY)
        .query_async(raw)
        .await
        .unwrap();
    let now = (u128::from(secs) * 1_000_000 + u128::from(micros)) * 1000;
    let tat: u128 = tat.map_or(0, |tat| tat.parse().unwrap());
    let interval = quota().interval().as_nanos();
    let ahead = tat.saturating_sub(now).min(interval * u128::from(BURST));
    // GCRA: a whole burst when the TAT is not ahead, one permit less per interval ahead.
    let allowance = (interval * u128::from(BURST) - ahead) as f64 / interval as f64;
    (now, allowance)
}

#[tokio::test]
async fn two_instances_sharing_a_limit_are_admitted_at_the_limit_within_two_percent() {
    let Some(server) = RedisServer::start().await else {
        return;
    };
    let client = redis::Client::open(server.url()).unwrap();
    let mut raw = client.get_multiplexed_async_connection().await.unwrap();
    let one = Instance::start(server.url(), 1).await;
    let two = Instance::start(server.url(), 2).await;
    let admitted = || one.admitted() + two.admitted();

    tokio::time::sleep(WARM_UP).await;
    let (start, allowance_start) = snapshot(&mut raw).await;
    let admitted_start = admitted();
    tokio::time::sleep(SPAN).await;
    let (end, allowance_end) = snapshot(&mut raw).await;
    let admitted_end = admitted();

    let (one, two) = (one.stop(), two.stop());
    let seconds = (end - start) as f64 / 1e9;
    let count = (admitted_end - admitted_start) as f64;
    let raw_rate = count / seconds;
    let rate = (count + allowance_end - allowance_start) / seconds;
    eprintln!(
        "admitted {count} in {seconds:.4} s of Redis time: {raw_rate:.2}/s raw, {rate:.2}/s \
         with the allowance at the ends ({allowance_start:.2} -> {allowance_end:.2}); \
         instances {one:?} {two:?}"
    );

    for counts in [&one, &two] {
        assert_eq!(counts.errors.load(Ordering::SeqCst), 0, "{counts:?}");
    }
    // Well over the limit: most requests were refused; both instances drew on it (an
    // even share is half; a long stall of one instance moves some to the other).
    let admitted_total = one.admitted.load(Ordering::SeqCst) + two.admitted.load(Ordering::SeqCst);
    let refused_total = one.refused.load(Ordering::SeqCst) + two.refused.load(Ordering::SeqCst);
    assert!(refused_total > admitted_total, "{one:?} {two:?}");
    for counts in [&one, &two] {
        assert!(
            counts.admitted.load(Ordering::SeqCst) * 5 > admitted_total,
            "an instance starved: {one:?} {two:?}"
        );
    }
    let limit = f64::from(LIMIT);
    assert!(
        (rate - limit).abs() <= limit * 0.02,
        "the fleet was admitted {rate:.2}/s against a limit of {limit}/s"
    );
}
