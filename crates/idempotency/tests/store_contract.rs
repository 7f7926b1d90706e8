//! The [`Store`] contract, run against `MemoryStore` (paused time) and `RedisStore` (a
//! real `redis-server`, real time: Redis expires keys by its own clock).
//!
//! Durations that must not end during a test are a minute; those that must end are
//! [`SHORT`], and the test waits [`PAST_SHORT`] before it looks. Nothing asserts that
//! something happened *within* a wall-clock time.

use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, StatusCode};
use tokio::sync::Barrier;
use tower_bulwark_idempotency::{
    Claimed, Fingerprint, MemoryStore, Record, RecordState, Store, StoreKey, StoredResponse, Token,
};

const LONG: Duration = Duration::from_secs(60);
const SHORT: Duration = Duration::from_millis(200);
const PAST_SHORT: Duration = Duration::from_millis(500);

fn key(name: &str) -> StoreKey {
    StoreKey::new(b"tenant-a", name.as_bytes())
}

fn fingerprint(n: u8) -> Fingerprint {
    Fingerprint::from_bytes([n; 32])
}

fn running(fp: u8, token: Token) -> Claimed {
    Claimed::Existing(Record {
        fingerprint: fingerprint(fp),
        state: RecordState::Running(token),
    })
}

/// A finished record with what encodings get wrong: repeated headers, a body that is not
/// UTF-8, trailers.
fn done(fp: u8) -> Record {
    let mut headers = HeaderMap::new();
    headers.insert(
        "content-type",
        HeaderValue::from_static("application/octet-stream"),
    );
    headers.append("set-cookie", HeaderValue::from_static("a=1"));
    headers.append("set-cookie", HeaderValue::from_static("b=2"));
    headers.insert("x-opaque", HeaderValue::from_bytes(b"\xfe\xff").unwrap());
    let mut trailers = HeaderMap::new();
    trailers.insert("grpc-status", HeaderValue::from_static("0"));
    trailers.append("x-trailer", HeaderValue::from_static("one"));
    trailers.append("x-trailer", HeaderValue::from_static("two"));
    Record {
        fingerprint: fingerprint(fp),
        state: RecordState::Done(Box::new(StoredResponse {
            status: StatusCode::CREATED,
            headers,
            body: Bytes::from_static(b"\x00\xff\xfe\x80 not utf-8 \r\n\x00\x01R"),
            trailers: Some(trailers),
        })),
    }
}

// === the contract, for any store ===

async fn a_free_key_is_new_and_a_repeat_sees_the_first_claim(store: &impl Store) {
    let (first, second) = (Token::random(), Token::random());
    let claimed = store.claim(key("k"), fingerprint(1), first, LONG).await;
    assert_eq!(claimed.unwrap(), Claimed::New);
    let repeat = store.claim(key("k"), fingerprint(2), second, LONG).await;
    assert_eq!(repeat.unwrap(), running(1, first));
    // Keys are independent, and so are scopes.
    let other = store
        .claim(key("other"), fingerprint(2), second, LONG)
        .await;
    assert_eq!(other.unwrap(), Claimed::New);
    let scoped = StoreKey::new(b"tenant-b", b"k");
    let other_scope = store.claim(scoped, fingerprint(2), second, LONG).await;
    assert_eq!(other_scope.unwrap(), Claimed::New);
}

async fn the_owner_completes_and_every_claim_then_sees_what_was_written(store: &impl Store) {
    let owner = Token::random();
    store
        .claim(key("k"), fingerprint(1), owner, LONG)
        .await
        .unwrap();
    assert!(store
        .complete(key("k"), owner, done(1), LONG)
        .await
        .unwrap());
    for _ in 0..2 {
        let repeat = store
            .claim(key("k"), fingerprint(9), Token::random(), LONG)
            .await;
        assert_eq!(repeat.unwrap(), Claimed::Existing(done(1)));
    }
    // Done is not running any more: its owner can neither complete nor release it again.
    assert!(!store
        .complete(key("k"), owner, done(2), LONG)
        .await
        .unwrap());
    assert!(!store.release(key("k"), owner).await.unwrap());
    let after = store
        .claim(key("k"), fingerprint(9), Token::random(), LONG)
        .await;
    assert_eq!(after.unwrap(), Claimed::Existing(done(1)));

    // An answer that was not kept is recorded as such.
    let not_kept = Record {
        fingerprint: fingerprint(3),
        state: RecordState::NotKept(StatusCode::ACCEPTED),
    };
    store
        .claim(key("n"), fingerprint(3), owner, LONG)
        .await
        .unwrap();
    assert!(store
        .complete(key("n"), owner, not_kept.clone(), LONG)
        .await
        .unwrap());
    let repeat = store
        .claim(key("n"), fingerprint(3), Token::random(), LONG)
        .await;
    assert_eq!(repeat.unwrap(), Claimed::Existing(not_kept));
}

async fn a_stranger_can_neither_complete_nor_release(store: &impl Store) {
    let (owner, stranger) = (Token::random(), Token::random());
    store
        .claim(key("k"), fingerprint(1), owner, LONG)
        .await
        .unwrap();
    assert!(!store
        .complete(key("k"), stranger, done(2), LONG)
        .await
        .unwrap());
    assert!(!store.release(key("k"), stranger).await.unwrap());
    let repeat = store.claim(key("k"), fingerprint(2), stranger, LONG).await;
    assert_eq!(repeat.unwrap(), running(1, owner));

    // Nobody can release a key nobody claimed: it stays free.
    assert!(!store.release(key("free"), owner).await.unwrap());
    let free = store.claim(key("free"), fingerprint(1), owner, LONG).await;
    assert_eq!(free.unwrap(), Claimed::New);

    // An answer for a key that holds nothing is written: it is how a run whose lease
    // ended keeps its answer when nobody took the key over.
    assert!(store
        .complete(key("empty"), stranger, done(3), LONG)
        .await
        .unwrap());
    let kept = store.claim(key("empty"), fingerprint(3), owner, LONG).await;
    assert_eq!(kept.unwrap(), Claimed::Existing(done(3)));
}

async fn a_release_by_the_owner_frees_the_key(store: &impl Store) {
    let (owner, next) = (Token::random(), Token::random());
    store
        .claim(key("k"), fingerprint(1), owner, LONG)
        .await
        .unwrap();
    assert!(store.release(key("k"), owner).await.unwrap());
    assert!(!store.release(key("k"), owner).await.unwrap());
    let again = store.claim(key("k"), fingerprint(2), next, LONG).await;
    assert_eq!(again.unwrap(), Claimed::New);
    let repeat = store
        .claim(key("k"), fingerprint(3), Token::random(), LONG)
        .await;
    assert_eq!(repeat.unwrap(), running(2, next));
}

async fn an_ended_lease_frees_the_key_and_its_old_owner_cannot_overwrite(store: &impl Store) {
    let (old, new) = (Token::random(), Token::random());
    store
        .claim(key("k"), fingerprint(1), old, SHORT)
        .await
        .unwrap();
    tokio::time::sleep(PAST_SHORT).await;
    let taken_over = store.claim(key("k"), fingerprint(2), new, LONG).await;
    assert_eq!(taken_over.unwrap(), Claimed::New);
    // No lost update: the old owner's late answer changes nothing.
    assert!(!store.complete(key("k"), old, done(1), LONG).await.unwrap());
    assert!(!store.release(key("k"), old).await.unwrap());
    let repeat = store
        .claim(key("k"), fingerprint(3), Token::random(), LONG)
        .await;
    assert_eq!(repeat.unwrap(), running(2, new));
    // The new owner's answer is kept.
    assert!(store.complete(key("k"), new, done(2), LONG).await.unwrap());
    let repeat = store
        .claim(key("k"), fingerprint(3), Token::random(), LONG)
        .await;
    assert_eq!(repeat.unwrap(), Claimed::Existing(done(2)));

    // An owner whose lease ended still keeps its answer when nobody took the key over.
    store
        .claim(key("alone"), fingerprint(1), old, SHORT)
        .await
        .unwrap();
    tokio::time::sleep(PAST_SHORT).await;
    assert!(store
        .complete(key("alone"), old, done(1), LONG)
        .await
        .unwrap());
    let repeat = store.claim(key("alone"), fingerprint(1), new, LONG).await;
    assert_eq!(repeat.unwrap(), Claimed::Existing(done(1)));
    // But its release, late, is nothing: the key holds an answer now.
    assert!(!store.release(key("alone"), old).await.unwrap());
}

async fn a_done_record_lives_for_its_ttl_not_its_lease(store: &impl Store) {
    let owner = Token::random();
    // Kept for the TTL...
    store
        .claim(key("short-ttl"), fingerprint(1), owner, LONG)
        .await
        .unwrap();
    assert!(store
        .complete(key("short-ttl"), owner, done(1), SHORT)
        .await
        .unwrap());
    // ...even past the lease it replaced.
    store
        .claim(key("long-ttl"), fingerprint(1), owner, SHORT)
        .await
        .unwrap();
    assert!(store
        .complete(key("long-ttl"), owner, done(1), LONG)
        .await
        .unwrap());
    tokio::time::sleep(PAST_SHORT).await;
    let expired = store
        .claim(key("short-ttl"), fingerprint(2), owner, LONG)
        .await;
    assert_eq!(expired.unwrap(), Claimed::New);
    let kept = store
        .claim(key("long-ttl"), fingerprint(2), owner, LONG)
        .await;
    assert_eq!(kept.unwrap(), Claimed::Existing(done(1)));
}

/// Zero and sub-millisecond durations are accepted (Redis's `PX` takes at least one
/// millisecond), and end.
async fn zero_and_sub_millisecond_durations_are_accepted_and_end(store: &impl Store) {
    let owner = Token::random();
    for lease in [Duration::ZERO, Duration::from_nanos(1)] {
        let claimed = store.claim(key("k"), fingerprint(1), owner, lease).await;
        assert_eq!(claimed.unwrap(), Claimed::New, "lease {lease:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    store
        .claim(key("k"), fingerprint(1), owner, LONG)
        .await
        .unwrap();
    assert!(store
        .complete(key("k"), owner, done(1), Duration::ZERO)
        .await
        .unwrap());
    tokio::time::sleep(Duration::from_millis(50)).await;
    let again = store.claim(key("k"), fingerprint(2), owner, LONG).await;
    assert_eq!(again.unwrap(), Claimed::New);
}

/// 100 claims of one key at once, from tasks spread over `stores` (clones or separate
/// connections): exactly one is new, and every other sees that one's claim.
async fn a_hundred_concurrent_claims_make_one_owner<S: Store + Clone>(stores: Vec<S>) {
    let start = std::sync::Arc::new(Barrier::new(100));
    let mut tasks = Vec::new();
    for i in 0..100u8 {
        let store = stores[usize::from(i) % stores.len()].clone();
        let start = start.clone();
        tasks.push(tokio::spawn(async move {
            let token = Token::random();
            start.wait().await;
            let claimed = store.claim(key("k"), fingerprint(i), token, LONG).await;
            (i, token, claimed.unwrap())
        }));
    }
    let mut answers = Vec::new();
    for task in tasks {
        answers.push(task.await.unwrap());
    }
    let owners: Vec<_> = answers
        .iter()
        .filter(|(_, _, claimed)| *claimed == Claimed::New)
        .map(|(i, token, _)| (*i, *token))
        .collect();
    assert_eq!(owners.len(), 1, "exactly one claim is new: {owners:?}");
    let (winner, token) = owners[0];
    for (i, _, claimed) in &answers {
        if *i != winner {
            assert_eq!(*claimed, running(winner, token), "claim {i}");
        }
    }
}

/// One test per contract function and store: `memory::<name>` and `redis_store::<name>`.
macro_rules! contract {
    ($($name:ident),* $(,)?) => {
        mod memory {
            use super::*;
            $(
                #[tokio::test(start_paused = true)]
                async fn $name() {
                    super::$name(&MemoryStore::new()).await;
                }
            )*

            #[tokio::test(start_paused = true)]
            async fn a_hundred_concurrent_claims_make_one_owner() {
                let store = MemoryStore::new();
                super::a_hundred_concurrent_claims_make_one_owner(vec![store; 4]).await;
            }
        }

        #[cfg(feature = "redis")]
        mod redis_store {
            use super::redis_only::connect;
            use tower_bulwark_core::testing::RedisServer;
            $(
                #[tokio::test]
                async fn $name() {
                    let Some(server) = RedisServer::start().await else { return };
                    super::$name(&connect(&server).await).await;
                }
            )*

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn a_hundred_concurrent_claims_make_one_owner() {
                let Some(server) = RedisServer::start().await else { return };
                // Four connections, as four replicas would have.
                let mut stores = Vec::new();
                for _ in 0..4 {
                    stores.push(connect(&server).await);
                }
                super::a_hundred_concurrent_claims_make_one_owner(stores).await;
            }
        }
    };
}

contract!(
    a_free_key_is_new_and_a_repeat_sees_the_first_claim,
    the_owner_completes_and_every_claim_then_sees_what_was_written,
    a_stranger_can_neither_complete_nor_release,
    a_release_by_the_owner_frees_the_key,
    an_ended_lease_frees_the_key_and_its_old_owner_cannot_overwrite,
    a_done_record_lives_for_its_ttl_not_its_lease,
    zero_and_sub_millisecond_durations_are_accepted_and_end,
);

// === the memory store's bound ===

mod memory_capacity {
    use super::*;

    async fn complete(store: &MemoryStore, name: &str, ttl: Duration) {
        let owner = Token::random();
        store
            .claim(key(name), fingerprint(1), owner, LONG)
            .await
            .unwrap();
        assert!(store
            .complete(key(name), owner, done(1), ttl)
            .await
            .unwrap());
    }

    #[tokio::test(start_paused = true)]
    async fn a_full_store_evicts_the_finished_record_closest_to_expiry() {
        let store = MemoryStore::with_capacity(8);
        for i in 0..8u64 {
            complete(&store, &format!("done-{i}"), LONG + Duration::from_secs(i)).await;
        }
        let claimed = store
            .claim(key("new"), fingerprint(2), Token::random(), LONG)
            .await;
        assert_eq!(claimed.unwrap(), Claimed::New);
        assert_eq!(store.len(), 8);
        for i in 1..8 {
            let kept = store.claim(
                key(&format!("done-{i}")),
                fingerprint(2),
                Token::random(),
                LONG,
            );
            assert_eq!(kept.await.unwrap(), Claimed::Existing(done(1)), "done-{i}");
        }
        let evicted = store
            .claim(key("done-0"), fingerprint(2), Token::random(), LONG)
            .await;
        assert_eq!(evicted.unwrap(), Claimed::New);
    }

    #[tokio::test(start_paused = true)]
    async fn a_full_store_keeps_live_claims_and_evicts_finished_records() {
        let store = MemoryStore::with_capacity(2);
        let owner = Token::random();
        store
            .claim(key("running"), fingerprint(1), owner, LONG)
            .await
            .unwrap();
        complete(&store, "done", LONG * 2).await;
        let claimed = store
            .claim(key("new"), fingerprint(2), Token::random(), LONG)
            .await;
        assert_eq!(claimed.unwrap(), Claimed::New);
        let kept = store
            .claim(key("running"), fingerprint(2), Token::random(), LONG)
            .await;
        assert_eq!(kept.unwrap(), running(1, owner));
        assert_eq!(store.len(), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn a_store_full_of_live_claims_refuses_a_new_one() {
        let store = MemoryStore::with_capacity(3);
        let owners = [Token::random(), Token::random(), Token::random()];
        for (i, owner) in owners.iter().enumerate() {
            let claimed = store.claim(key(&format!("r{i}")), fingerprint(1), *owner, LONG);
            assert_eq!(claimed.await.unwrap(), Claimed::New);
        }
        let refused = store
            .claim(key("new"), fingerprint(2), Token::random(), LONG)
            .await;
        assert!(refused.is_err(), "{refused:?}");
        assert_eq!(store.len(), 3);
        // The claims held are still answered, and still their owners'.
        let repeat = store
            .claim(key("r0"), fingerprint(2), Token::random(), LONG)
            .await;
        assert_eq!(repeat.unwrap(), running(1, owners[0]));
        assert!(store.release(key("r0"), owners[0]).await.unwrap());
        let room = store
            .claim(key("new"), fingerprint(2), Token::random(), LONG)
            .await;
        assert_eq!(room.unwrap(), Claimed::New);
    }

    #[tokio::test(start_paused = true)]
    async fn ended_leases_and_ttls_are_swept_when_the_store_is_full() {
        let store = MemoryStore::with_capacity(4);
        for i in 0..2 {
            let claimed = store.claim(
                key(&format!("r{i}")),
                fingerprint(1),
                Token::random(),
                SHORT,
            );
            assert_eq!(claimed.await.unwrap(), Claimed::New);
        }
        complete(&store, "d0", SHORT).await;
        complete(&store, "d1", SHORT).await;
        assert_eq!(store.len(), 4);
        tokio::time::sleep(PAST_SHORT).await;
        let claimed = store
            .claim(key("new"), fingerprint(2), Token::random(), LONG)
            .await;
        assert_eq!(claimed.unwrap(), Claimed::New);
        assert_eq!(store.len(), 1, "every expired entry is swept");
    }
}

// === what only Redis does ===

#[cfg(feature = "redis")]
#[path = "store_contract/redis.rs"]
mod redis_only;
