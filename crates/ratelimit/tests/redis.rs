//! `RedisLimiter` against a real `redis-server`, in real time (Redis keeps time by its own
//! clock): GCRA exactness, key isolation, the state in Redis, damaged values, bad quotas,
//! and Redis down, frozen and restarted. Quotas are long (an interval of an hour) where a
//! test reads exact values, so that the time the test itself takes changes nothing.
#![cfg(feature = "redis")]

use std::future::Future;
use std::time::Duration;

use redis::aio::MultiplexedConnection;
use tower_bulwark_core::redis::RedisConnection;
use tower_bulwark_ratelimit::{Decision, LimitError, Limiter, Quota, RedisLimiter};

use tower_bulwark_core::testing::RedisServer;

const HOUR: Duration = Duration::from_secs(3600);
/// Long enough for a shared machine: these tests are about answers, not speed.
const TIMEOUT: Duration = Duration::from_secs(5);
/// The timeout of limiters that meet a down or frozen Redis.
const DOWN_TIMEOUT: Duration = Duration::from_millis(300);

async fn connect(server: &RedisServer, timeout: Duration) -> RedisConnection {
    RedisConnection::open(server.url(), timeout).await.unwrap()
}

async fn limiter(server: &RedisServer, quota: Quota) -> RedisLimiter {
    RedisLimiter::new(connect(server, TIMEOUT).await, quota).unwrap()
}

async fn raw(server: &RedisServer) -> MultiplexedConnection {
    let client = redis::Client::open(server.url()).unwrap();
    client.get_multiplexed_async_connection().await.unwrap()
}

/// `burst` permits, one back every hour.
fn hourly(burst: u32) -> Quota {
    Quota::per_window(10, 10 * HOUR)
        .unwrap()
        .burst(burst)
        .unwrap()
}

/// A guard against a hang, far longer than any limiter timeout: a limiter must answer
/// within its own timeout, and a test must fail rather than hang when it does not.
async fn ends<T>(operation: impl Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(60), operation)
        .await
        .expect("an acquire hung past its timeout")
}

#[tokio::test]
async fn a_burst_is_admitted_then_refused_until_one_interval_has_passed() {
    let Some(server) = RedisServer::start().await else {
        return;
    };
    for burst in [1, 2, 3] {
        let limiter = limiter(&server, hourly(burst)).await;
        let key = format!("burst-{burst}");
        let tolerance = HOUR * (burst - 1);

        // A fresh key: the whole burst, less this one; the next TAT is exactly T away.
        let first = limiter.acquire(&key).await.unwrap();
        assert_eq!(
            first,
            Decision {
                allowed: true,
                remaining: burst - 1,
                reset: HOUR,
                retry_after: Duration::ZERO,
            },
            "burst {burst}"
        );
        for n in 2..=burst {
            let next = limiter.acquire(&key).await.unwrap();
            assert!(next.allowed, "burst {burst}, call {n}");
            assert_eq!(next.remaining, burst - n, "burst {burst}, call {n}");
            assert!(
                next.reset <= HOUR * n && next.reset > HOUR * (n - 1),
                "burst {burst}, call {n}: {next:?}"
            );
            assert_eq!(next.retry_after, Duration::ZERO);
        }

        // Over the burst: refused until the first permit comes back, at most one
        // interval after the first call; the burst is whole one tolerance later.
        for _ in 0..3 {
            let refused = limiter.acquire(&key).await.unwrap();
            assert!(!refused.allowed, "burst {burst}: {refused:?}");
            assert_eq!(refused.remaining, 0);
            assert!(
                refused.retry_after > Duration::ZERO && refused.retry_after <= HOUR,
                "burst {burst}: {refused:?}"
            );
            assert_eq!(
                refused.reset - refused.retry_after,
                tolerance,
                "burst {burst}: {refused:?}"
            );
        }
    }
}

#[tokio::test]
async fn a_refused_key_is_admitted_again_once_retry_after_has_passed() {
    let Some(server) = RedisServer::start().await else {
        return;
    };
    // One permit every 100 ms, no burst: retry-after is the rest of the interval.
    let quota = Quota::per_window(1, Duration::from_millis(100)).unwrap();
    let limiter = limiter(&server, quota).await;
    for round in 0..3 {
        let admitted = limiter.acquire(&"k").await.unwrap();
        assert!(admitted.allowed, "round {round}: {admitted:?}");
        assert_eq!(admitted.remaining, 0);
        assert!(admitted.reset <= Duration::from_millis(100), "{admitted:?}");

        let refused = limiter.acquire(&"k").await.unwrap();
        // If the machine stalled a whole interval between the two calls, the second one
        // was admitted: not a wrong answer; the next round starts when it is free again.
        if refused.allowed {
            tokio::time::sleep(refused.reset).await;
            continue;
        }
        assert!(refused.retry_after > Duration::ZERO, "{refused:?}");
        assert!(
            refused.retry_after <= Duration::from_millis(100),
            "{refused:?}"
        );
        assert_eq!(
            refused.reset, refused.retry_after,
            "no tolerance: {refused:?}"
        );
        // Waiting what it says is enough (rounded up to whole milliseconds).
        tokio::time::sleep(refused.retry_after).await;
    }
}

#[tokio::test]
async fn keys_and_policies_are_isolated_and_equal_bytes_are_one_key() {
    let Some(server) = RedisServer::start().await else {
        return;
    };
    let limiter = limiter(&server, hourly(1)).await;
    assert!(limiter.acquire(&"a").await.unwrap().allowed);
    assert!(!limiter.acquire(&"a").await.unwrap().allowed);
    // The same bytes from another key type are the same key.
    assert!(!limiter.acquire(&String::from("a")).await.unwrap().allowed);
    assert!(!limiter.acquire(&b"a".to_vec()).await.unwrap().allowed);

    let fresh = limiter.acquire(&"b").await.unwrap();
    assert_eq!((fresh.allowed, fresh.reset), (true, HOUR));
    // Another policy name is another key space.
    let other = RedisLimiter::new(connect(&server, TIMEOUT).await, hourly(1).name("other"));
    assert!(other.unwrap().acquire(&"a").await.unwrap().allowed);
    // And so is another prefix.
    let prefixed = limiter.clone().prefix("app:");
    assert!(prefixed.acquire(&"a").await.unwrap().allowed);
    assert!(!prefixed.acquire(&"a").await.unwrap().allowed);
}

#[tokio::test]
async fn quotas_with_different_names_never_share_a_state_in_redis() {
    let Some(server) = RedisServer::start().await else {
        return;
    };
    // Two layers' limits, say per tenant and per tenant and route.
    let per_tenant = limiter(&server, hourly(1).name("api")).await;
    let per_route = limiter(&server, hourly(1).name("api:orders")).await;
    assert!(per_route.acquire(&"t1").await.unwrap().allowed);
    assert!(!per_route.acquire(&"t1").await.unwrap().allowed);
    // A client whose key is `orders:t1` (a header value it chose) on the other limit.
    assert!(
        per_tenant.acquire(&"orders:t1").await.unwrap().allowed,
        "`api` + `orders:t1` and `api:orders` + `t1` are one key in Redis"
    );
    let mut raw = raw(&server).await;
    for key in [
        "bulwark:ratelimit:3:api:orders:t1",
        "bulwark:ratelimit:10:api:orders:t1",
    ] {
        let exists: bool = redis::cmd("EXISTS")
            .arg(key)
            .query_async(&mut raw)
            .await
            .unwrap();
        assert!(exists, "{key}");
    }
}

/// Redis's clock, in nanoseconds since the Unix epoch.
async fn redis_now(raw: &mut MultiplexedConnection) -> u128 {
    let (secs, micros): (u64, u64) = redis::cmd("TIME").query_async(raw).await.unwrap();
    (u128::from(secs) * 1_000_000 + u128::from(micros)) * 1000
}

#[tokio::test]
async fn the_state_is_the_tat_in_nanoseconds_under_the_prefix_and_expires_with_it() {
    let Some(server) = RedisServer::start().await else {
        return;
    };
    let mut raw = raw(&server).await;
    // 3 per window: an interval of 20 minutes and 333 ns, kept to the nanosecond.
    let interval: u128 = 1_200_000_000_333;
    let window = Duration::from_nanos(3 * interval as u64);
    let quota = Quota::per_window(3, window).unwrap().name("api");
    assert_eq!(quota.interval().as_nanos(), interval);
    let limiter = limiter(&server, quota).await;
    let before = redis_now(&mut raw).await;
    assert_eq!(limiter.acquire(&"k").await.unwrap().remaining, 2);
    assert_eq!(limiter.acquire(&"k").await.unwrap().remaining, 1);
    let after = redis_now(&mut raw).await;

    let value: String = redis::cmd("GET")
        .arg("bulwark:ratelimit:3:api:k")
        .query_async(&mut raw)
        .await
        .unwrap();
    let tat: u128 = value.parse().unwrap();
    // TAT = the first call's Redis time (whole microseconds) + 2 T.
    assert!(
        tat >= before + 2 * interval && tat <= after + 2 * interval,
        "TAT {tat}, Redis time {before}..{after}"
    );
    assert_eq!((tat - 2 * interval) % 1000, 0, "TAT {tat}");
    let ttl: i64 = redis::cmd("PTTL")
        .arg("bulwark:ratelimit:3:api:k")
        .query_async(&mut raw)
        .await
        .unwrap();
    // 2 T rounded up to whole milliseconds.
    assert!(ttl > 0 && ttl <= 2_400_001, "PTTL {ttl}");

    // Once its TAT passes, a key is gone (Redis expires it): its burst is whole again.
    let short = Quota::per_window(1, Duration::from_millis(100)).unwrap();
    let short = RedisLimiter::new(connect(&server, TIMEOUT).await, short).unwrap();
    assert!(short.acquire(&"idle").await.unwrap().allowed);
    let mut gone = false;
    for _ in 0..100 {
        let exists: bool = redis::cmd("EXISTS")
            .arg("bulwark:ratelimit:7:default:idle")
            .query_async(&mut raw)
            .await
            .unwrap();
        if !exists {
            gone = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(gone, "the key outlived its TAT");
    assert!(short.acquire(&"idle").await.unwrap().allowed);
}

#[tokio::test]
async fn a_damaged_value_is_an_error_and_stays_as_it_was() {
    let Some(server) = RedisServer::start().await else {
        return;
    };
    let limiter = limiter(&server, hourly(2)).await;
    let mut raw = raw(&server).await;
    let damaged: [&[u8]; 9] = [
        b"",
        b"garbage",
        b"-5",
        b"1.5",
        b"12 ",
        b"0x10",
        b"inf",
        b"nan",
        b"\xff\x00",
    ];
    for (i, value) in damaged.iter().enumerate() {
        let key = format!("damaged-{i}");
        let _: () = redis::cmd("SET")
            .arg(format!("bulwark:ratelimit:7:default:{key}"))
            .arg(*value)
            .query_async(&mut raw)
            .await
            .unwrap();
        let answer = limiter.acquire(&key).await;
        let err = answer.expect_err(&format!("{value:?}"));
        assert!(err.to_string().contains("not a time"), "{value:?}: {err}");
        let kept: Vec<u8> = redis::cmd("GET")
            .arg(format!("bulwark:ratelimit:7:default:{key}"))
            .query_async(&mut raw)
            .await
            .unwrap();
        assert_eq!(kept, *value);
    }
    // A key of another type is an error too.
    let _: () = redis::cmd("HSET")
        .arg("bulwark:ratelimit:7:default:hash")
        .arg("f")
        .arg("v")
        .query_async(&mut raw)
        .await
        .unwrap();
    assert!(limiter.acquire(&"hash").await.is_err());

    // A time long past is a whole burst; a time further ahead than the quota allows (a
    // larger quota wrote it, or any long run of digits) is a burst used up.
    for (value, allowed) in [
        ("0", true),
        ("999", true),
        ("99999999999999999999999999999999999999", false),
    ] {
        let _: () = redis::cmd("SET")
            .arg("bulwark:ratelimit:7:default:v")
            .arg(value)
            .query_async(&mut raw)
            .await
            .unwrap();
        let decision = limiter.acquire(&"v").await.unwrap();
        assert_eq!(decision.allowed, allowed, "{value}: {decision:?}");
        if allowed {
            assert_eq!((decision.remaining, decision.reset), (1, HOUR), "{value}");
        } else {
            assert_eq!(decision.retry_after, HOUR, "{value}: {decision:?}");
            assert_eq!(decision.reset, 2 * HOUR, "{value}: {decision:?}");
        }
    }
}

#[tokio::test]
async fn a_quota_the_script_cannot_hold_is_refused_naming_it() {
    let Some(server) = RedisServer::start().await else {
        return;
    };
    let connection = connect(&server, TIMEOUT).await;
    // 2^53 ns is about 104.2 days: a burst worth 104 days is kept, 105 days is not.
    let day = Duration::from_secs(86_400);
    assert!(
        RedisLimiter::new(connection.clone(), Quota::per_window(1, 104 * day).unwrap()).is_ok()
    );
    for quota in [
        Quota::per_window(1, 105 * day).unwrap(),
        Quota::per_window(1000, 1000 * day).unwrap(),
        Quota::per_window(1, Quota::MAX_WINDOW).unwrap(),
    ] {
        let err = RedisLimiter::new(connection.clone(), quota.clone()).unwrap_err();
        assert_eq!(err.field(), "quota", "{quota:?}: {err}");
    }
    // A burst of one is only one interval ahead: a long window is fine.
    let long = Quota::per_window(1000, 1000 * day)
        .unwrap()
        .burst(1)
        .unwrap();
    assert!(RedisLimiter::new(connection, long).is_ok());
}

#[tokio::test]
async fn clones_and_limiters_of_one_connection_share_it() {
    let Some(server) = RedisServer::start().await else {
        return;
    };
    let mut raw = raw(&server).await;
    let connection = connect(&server, TIMEOUT).await;
    let one = RedisLimiter::new(connection.clone(), hourly(5)).unwrap();
    let two = RedisLimiter::new(connection, hourly(5).name("two")).unwrap();
    let limiters = [one.clone(), one, two];
    for limiter in &limiters {
        assert!(limiter.acquire(&"k").await.unwrap().allowed);
    }
    let clients: String = redis::cmd("CLIENT")
        .arg("LIST")
        .query_async(&mut raw)
        .await
        .unwrap();
    assert_eq!(
        clients.lines().count(),
        2,
        "the raw connection and the limiters':\n{clients}"
    );
}

/// Retries until the limiter reaches Redis again (bounded): the connection comes back by
/// itself, but the acquire that finds it lost fails.
async fn acquire_once_back(limiter: &RedisLimiter, key: &str) -> Decision {
    let mut last: Option<LimitError> = None;
    for _ in 0..100 {
        match limiter.acquire(&key).await {
            Ok(decision) => return decision,
            Err(e) => last = Some(e),
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the limiter did not reach the restarted Redis: {last:?}");
}

#[tokio::test]
async fn a_down_redis_is_an_error_and_a_restarted_one_is_used_again() {
    let Some(mut server) = RedisServer::start().await else {
        return;
    };
    let limiter = RedisLimiter::new(connect(&server, DOWN_TIMEOUT).await, hourly(1)).unwrap();
    assert!(limiter.acquire(&"k").await.unwrap().allowed);
    assert!(!limiter.acquire(&"k").await.unwrap().allowed);

    server.stop();
    for _ in 0..3 {
        let err = ends(limiter.acquire(&"k")).await.unwrap_err();
        assert!(
            err.to_string().starts_with("rate limiter failed: "),
            "{err}"
        );
    }

    server.start_again().await;
    // A new, empty Redis: the key's state went with the old one, and the script is
    // loaded again (`NOSCRIPT`) by the acquire that needs it.
    let back = acquire_once_back(&limiter, "k").await;
    assert_eq!((back.allowed, back.remaining, back.reset), (true, 0, HOUR));
    assert!(!limiter.acquire(&"k").await.unwrap().allowed);
}

#[tokio::test]
async fn a_frozen_redis_is_a_timeout_and_an_acquire_that_timed_out_may_have_happened() {
    let Some(server) = RedisServer::start().await else {
        return;
    };
    let limiter = RedisLimiter::new(connect(&server, DOWN_TIMEOUT).await, hourly(1)).unwrap();
    // The script used once, so Redis has it when frozen.
    assert!(limiter.acquire(&"warm").await.unwrap().allowed);

    server.pause();
    let err = ends(limiter.acquire(&"late")).await.unwrap_err();
    assert!(
        err.to_string()
            .contains("Redis did not answer within 300ms"),
        "{err}"
    );

    server.resume();
    // Redis ran what it was sent while frozen: the permit the caller gave up on is taken.
    let after = acquire_once_back(&limiter, "late").await;
    assert!(!after.allowed, "{after:?}");
}
