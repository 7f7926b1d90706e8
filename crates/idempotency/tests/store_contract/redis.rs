//! What only the Redis store does: its key space, damaged values, bad configuration, and
//! Redis down, frozen and restarted. A real `redis-server`, real time.

use std::error::Error as _;
use std::future::Future;

use redis::aio::MultiplexedConnection;
use tower_bulwark_core::ConfigError;
use tower_bulwark_idempotency::{RedisStore, StoreError};

use super::*;
use tower_bulwark_core::testing::RedisServer;

/// Long enough for a shared machine: these tests are about answers, not speed.
const TIMEOUT: Duration = Duration::from_secs(5);
/// The timeout of stores that meet a down or frozen Redis.
const DOWN_TIMEOUT: Duration = Duration::from_millis(300);

pub(crate) async fn connect(server: &RedisServer) -> RedisStore {
    connect_with(server, TIMEOUT).await
}

async fn connect_with(server: &RedisServer, timeout: Duration) -> RedisStore {
    let client = redis::Client::open(server.url()).unwrap();
    RedisStore::builder(client)
        .timeout(timeout)
        .connect()
        .await
        .unwrap()
}

async fn raw(server: &RedisServer) -> MultiplexedConnection {
    let client = redis::Client::open(server.url()).unwrap();
    client.get_multiplexed_async_connection().await.unwrap()
}

fn redis_key(name: &str) -> String {
    format!("bulwark:idempotency:{}", key(name).to_hex())
}

/// A guard against a hang, far longer than any store timeout: a store must answer
/// within its own timeout, and a test must fail rather than hang when it does not.
async fn ends<T>(operation: impl Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(60), operation)
        .await
        .expect("a store operation hung past its timeout")
}

#[tokio::test]
async fn records_are_kept_under_the_prefix_with_the_lease_as_expiry() {
    let Some(server) = RedisServer::start().await else {
        return;
    };
    let store = connect(&server).await;
    let owner = Token::random();
    store
        .claim(key("k"), fingerprint(1), owner, LONG)
        .await
        .unwrap();
    let mut raw = raw(&server).await;
    let value: Vec<u8> = redis::cmd("GET")
        .arg(redis_key("k"))
        .query_async(&mut raw)
        .await
        .unwrap();
    let record = Record::decode(&value).unwrap();
    assert_eq!(record.state, RecordState::Running(owner));
    let ttl: i64 = redis::cmd("PTTL")
        .arg(redis_key("k"))
        .query_async(&mut raw)
        .await
        .unwrap();
    assert!(ttl > 0 && ttl <= 60_000, "PTTL {ttl}");

    assert!(store
        .complete(key("k"), owner, done(1), LONG * 2)
        .await
        .unwrap());
    let value: Vec<u8> = redis::cmd("GET")
        .arg(redis_key("k"))
        .query_async(&mut raw)
        .await
        .unwrap();
    assert_eq!(value, done(1).encode());
    let ttl: i64 = redis::cmd("PTTL")
        .arg(redis_key("k"))
        .query_async(&mut raw)
        .await
        .unwrap();
    assert!(ttl > 60_000 && ttl <= 120_000, "PTTL {ttl}");

    // Another prefix is another key space; an empty one is allowed.
    for prefix in ["payments:", ""] {
        let client = redis::Client::open(server.url()).unwrap();
        let other = RedisStore::builder(client)
            .prefix(prefix)
            .connect()
            .await
            .unwrap();
        let claimed = other
            .claim(key("k"), fingerprint(2), Token::random(), LONG)
            .await;
        assert_eq!(claimed.unwrap(), Claimed::New, "prefix {prefix:?}");
        let exists: bool = redis::cmd("EXISTS")
            .arg(format!("{prefix}{}", key("k").to_hex()))
            .query_async(&mut raw)
            .await
            .unwrap();
        assert!(exists, "prefix {prefix:?}");
    }
}

#[tokio::test]
async fn clones_share_one_connection() {
    let Some(server) = RedisServer::start().await else {
        return;
    };
    let mut raw = raw(&server).await;
    let store = connect(&server).await;
    let clones = vec![store.clone(); 3];
    for (i, clone) in clones.iter().enumerate() {
        let claimed = clone.claim(key(&format!("k{i}")), fingerprint(1), Token::random(), LONG);
        assert_eq!(claimed.await.unwrap(), Claimed::New);
    }
    let clients: String = redis::cmd("CLIENT")
        .arg("LIST")
        .query_async(&mut raw)
        .await
        .unwrap();
    assert_eq!(
        clients.lines().count(),
        2,
        "the raw connection and the store's:\n{clients}"
    );
}

#[tokio::test]
async fn durations_past_what_redis_accepts_are_capped() {
    let Some(server) = RedisServer::start().await else {
        return;
    };
    let store = connect(&server).await;
    let owner = Token::random();
    let claimed = store
        .claim(key("k"), fingerprint(1), owner, Duration::MAX)
        .await;
    assert_eq!(claimed.unwrap(), Claimed::New);
    assert!(store
        .complete(key("k"), owner, done(1), Duration::MAX)
        .await
        .unwrap());
    let mut raw = raw(&server).await;
    let ttl: i64 = redis::cmd("PTTL")
        .arg(redis_key("k"))
        .query_async(&mut raw)
        .await
        .unwrap();
    assert!(ttl > 0, "PTTL {ttl}");
}

#[tokio::test]
async fn a_damaged_value_is_an_error_and_stays_as_it_was() {
    let Some(server) = RedisServer::start().await else {
        return;
    };
    let store = connect(&server).await;
    let mut raw = raw(&server).await;
    let mut running_prefix = Record {
        fingerprint: fingerprint(1),
        state: RecordState::Running(Token::random()),
    }
    .encode();
    running_prefix.truncate(20);
    let damaged: [&[u8]; 4] = [b"", b"\x09garbage", b"\x01R", &running_prefix];
    for (i, value) in damaged.iter().enumerate() {
        let name = format!("damaged-{i}");
        let _: () = redis::cmd("SET")
            .arg(redis_key(&name))
            .arg(*value)
            .query_async(&mut raw)
            .await
            .unwrap();
        let claimed = store
            .claim(key(&name), fingerprint(1), Token::random(), LONG)
            .await;
        assert!(claimed.is_err(), "{value:?}: {claimed:?}");
        let stranger = Token::random();
        assert!(!store
            .complete(key(&name), stranger, done(1), LONG)
            .await
            .unwrap());
        assert!(!store.release(key(&name), stranger).await.unwrap());
        let kept: Vec<u8> = redis::cmd("GET")
            .arg(redis_key(&name))
            .query_async(&mut raw)
            .await
            .unwrap();
        assert_eq!(kept, *value);
    }
    // A key of another type is an error too.
    let _: () = redis::cmd("HSET")
        .arg(redis_key("hash"))
        .arg("f")
        .arg("v")
        .query_async(&mut raw)
        .await
        .unwrap();
    let claimed = store
        .claim(key("hash"), fingerprint(1), Token::random(), LONG)
        .await;
    assert!(claimed.is_err(), "{claimed:?}");
    assert!(store.release(key("hash"), Token::random()).await.is_err());
}

#[tokio::test]
async fn a_zero_timeout_is_refused_naming_the_field() {
    // Checked before connecting: no server needed.
    let client = redis::Client::open("redis://127.0.0.1:1").unwrap();
    let err = RedisStore::builder(client)
        .timeout(Duration::ZERO)
        .connect()
        .await
        .unwrap_err();
    let config = err.source().and_then(|e| e.downcast_ref::<ConfigError>());
    assert_eq!(config.map(ConfigError::field), Some("timeout"), "{err}");
}

#[tokio::test]
async fn connecting_to_a_bad_url_or_nothing_is_an_error() {
    assert!(RedisStore::connect("not a url").await.is_err());
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let refused = ends(RedisStore::connect(format!("redis://127.0.0.1:{port}"))).await;
    assert!(refused.is_err());
}

#[tokio::test]
async fn connecting_to_a_server_that_never_answers_times_out() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("redis://{}", listener.local_addr().unwrap());
    // Accepts connections and holds them, silent.
    let _silent = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            held.push(socket);
        }
    });
    let client = redis::Client::open(url).unwrap();
    let connect = RedisStore::builder(client).timeout(DOWN_TIMEOUT).connect();
    let err = ends(connect).await.unwrap_err();
    assert!(
        err.to_string().contains("did not answer within 300ms"),
        "{err}"
    );
}

/// Every operation, each answering an error (within the store's timeout).
async fn every_operation_fails(store: &RedisStore) {
    for _ in 0..3 {
        let owner = Token::random();
        let claimed = ends(store.claim(key("k"), fingerprint(1), owner, LONG)).await;
        assert!(claimed.is_err(), "{claimed:?}");
        assert!(ends(store.complete(key("k"), owner, done(1), LONG))
            .await
            .is_err());
        assert!(ends(store.release(key("k"), owner)).await.is_err());
    }
}

/// Retries a claim until the store reaches Redis again (bounded): the store reconnects
/// by itself, but the operation that finds the connection lost fails.
async fn claim_once_back(store: &RedisStore, name: &str, token: Token) -> Claimed {
    let mut last: Option<StoreError> = None;
    for _ in 0..100 {
        match store.claim(key(name), fingerprint(2), token, LONG).await {
            Ok(claimed) => return claimed,
            Err(e) => last = Some(e),
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the store did not reach the restarted Redis: {last:?}");
}

#[tokio::test]
async fn a_down_redis_is_an_error_and_a_restarted_one_is_used_again() {
    let Some(mut server) = RedisServer::start().await else {
        return;
    };
    let store = connect_with(&server, DOWN_TIMEOUT).await;
    let before = Token::random();
    assert_eq!(
        store
            .claim(key("k"), fingerprint(1), before, LONG)
            .await
            .unwrap(),
        Claimed::New
    );

    server.stop();
    every_operation_fails(&store).await;

    server.start_again().await;
    // Without persistence, the restarted Redis forgot the claim: the key runs again.
    let after = Token::random();
    assert_eq!(claim_once_back(&store, "k", after).await, Claimed::New);
    assert!(store
        .complete(key("k"), after, done(2), LONG)
        .await
        .unwrap());
    let repeat = store
        .claim(key("k"), fingerprint(2), Token::random(), LONG)
        .await;
    assert_eq!(repeat.unwrap(), Claimed::Existing(done(2)));
}

#[tokio::test]
async fn a_frozen_redis_is_a_timeout_and_a_claim_that_timed_out_may_have_happened() {
    let Some(server) = RedisServer::start().await else {
        return;
    };
    let store = connect_with(&server, DOWN_TIMEOUT).await;
    // Every script used once, so Redis has them all when it is frozen: a script it
    // lacked would be answered `NOSCRIPT`, and loaded only by a caller still waiting.
    let warm = Token::random();
    store
        .claim(key("warm"), fingerprint(1), warm, LONG)
        .await
        .unwrap();
    assert!(store.release(key("warm"), warm).await.unwrap());
    store
        .claim(key("warm"), fingerprint(1), warm, LONG)
        .await
        .unwrap();
    assert!(store
        .complete(key("warm"), warm, done(1), LONG)
        .await
        .unwrap());
    let owner = Token::random();
    store
        .claim(key("k"), fingerprint(1), owner, LONG)
        .await
        .unwrap();

    server.pause();
    let late = Token::random();
    let claimed = ends(store.claim(key("late"), fingerprint(3), late, LONG)).await;
    let err = claimed.unwrap_err();
    assert!(
        err.to_string().contains("did not answer within 300ms"),
        "{err}"
    );
    assert!(ends(store.complete(key("k"), owner, done(1), LONG))
        .await
        .is_err());
    assert!(ends(store.release(key("k"), owner)).await.is_err());

    server.resume();
    // Redis ran what it was sent while frozen: the claim whose caller gave up holds
    // its key, and so did the completion; the release came after and found it done.
    let repeat = claim_once_back(&store, "late", Token::random()).await;
    assert_eq!(repeat, running(3, late));
    let repeat = store
        .claim(key("k"), fingerprint(2), Token::random(), LONG)
        .await;
    assert_eq!(repeat.unwrap(), Claimed::Existing(done(1)));
}
