//! The idempotency layer's rules, in paused time over tower services and a `MemoryStore`:
//! what runs, what is replayed, what is refused and how, and what is reported.

#[path = "layer/bodies.rs"]
mod bodies;
#[path = "layer/harness.rs"]
mod harness;
#[path = "layer/keys.rs"]
mod keys;
#[path = "layer/stores.rs"]
mod stores;

use std::future::{poll_fn, Future};
use std::pin::pin;
use std::task::Poll;
use std::time::Duration;

use harness::*;
use http::{Method, StatusCode};
use tokio::time::{sleep_until, Instant};
use tower::{Layer, Service, ServiceExt};
use tower_bulwark_idempotency::{IdempotencyLayer, MemoryStore, Outcome, Store, StoreKey, Token};

const BODY: &str = r#"{"amount":10}"#;

#[tokio::test(start_paused = true)]
async fn the_first_run_is_kept_and_repeats_are_replayed() {
    let events = Events::default();
    let handler = Handler::new();
    let service = builder(&events).build().unwrap().layer(handler.clone());

    let first = send(&service, pay(r#""k1""#, BODY)).await;
    assert_eq!(first.status, 201);
    assert!(!first.replayed());
    assert_eq!(first.text(), r#"run 1: {"amount":10}"#);
    assert_eq!(first.headers.len(), 3);
    assert_eq!(first.headers["content-type"], "text/plain");
    assert_eq!(first.headers["x-run"], "1");
    assert_eq!(first.headers["date"], DATE);
    assert_eq!(events.take(), [Outcome::Executed]);

    for _ in 0..2 {
        let repeat = send(&service, pay(r#""k1""#, BODY)).await;
        assert_eq!(repeat.status, 201);
        assert_eq!(repeat.body, first.body);
        assert!(repeat.trailers.is_none());
        // The same headers, marked, without the first answer's `Date`.
        assert_eq!(repeat.headers.len(), 3);
        assert_eq!(repeat.headers["content-type"], "text/plain");
        assert_eq!(repeat.headers["x-run"], "1");
        assert!(repeat.replayed());
    }
    assert_eq!(handler.runs(), 1);
    assert_eq!(events.take(), [Outcome::Replayed, Outcome::Replayed]);

    // Another key is another request.
    let other = send(&service, pay(r#""k2""#, BODY)).await;
    assert_eq!(other.text(), r#"run 2: {"amount":10}"#);
    assert!(!other.replayed());
    assert_eq!(events.take(), [Outcome::Executed]);
}

#[tokio::test(start_paused = true)]
async fn a_repeat_while_the_first_runs_gets_409_then_the_replay() {
    let events = Events::default();
    let handler = Handler::new();
    let service = builder(&events).build().unwrap().layer(handler.clone());

    let first = tokio::spawn(send(&service, with(pay(r#""k1""#, BODY), "x-wait", "1")));
    settle().await;
    assert_eq!(handler.runs(), 1);

    let repeat = send(&service, pay(r#""k1""#, BODY)).await;
    repeat.assert_problem(409, "in-progress", Some("1"));
    // Another request with the key is refused as such even while the first runs.
    let other = send(&service, pay(r#""k1""#, r#"{"amount":99}"#)).await;
    other.assert_problem(422, "key-reused", None);
    assert_eq!(handler.runs(), 1);
    assert_eq!(events.take(), [Outcome::InProgress, Outcome::Mismatch]);

    handler.open();
    let first = first.await.unwrap();
    assert_eq!(first.status, 201);
    assert!(!first.replayed());
    let replay = send(&service, pay(r#""k1""#, BODY)).await;
    assert!(replay.replayed());
    assert_eq!(replay.body, first.body);
    assert_eq!(handler.runs(), 1);
    assert_eq!(events.take(), [Outcome::Executed, Outcome::Replayed]);
}

#[tokio::test(start_paused = true)]
async fn a_key_reused_for_another_request_gets_422() {
    let events = Events::default();
    let handler = Handler::new();
    let service = builder(&events).build().unwrap().layer(handler.clone());
    let first = request(
        Method::POST,
        "/pay?x=1",
        Some(r#""k1""#),
        Frames::data(BODY),
    );
    assert_eq!(send(&service, first).await.status, 201);
    assert_eq!(events.take(), [Outcome::Executed]);

    let others = [
        (Method::POST, "/pay?x=1", r#"{"amount":11}"#),
        (Method::POST, "/refund?x=1", BODY),
        (Method::POST, "/pay?x=2", BODY),
        (Method::POST, "/pay", BODY),
        (Method::PATCH, "/pay?x=1", BODY),
    ];
    for (method, uri, body) in others {
        let other = request(method, uri, Some(r#""k1""#), Frames::data(body));
        send(&service, other)
            .await
            .assert_problem(422, "key-reused", None);
        assert_eq!(events.take(), [Outcome::Mismatch], "{uri}");
    }
    assert_eq!(handler.runs(), 1);

    let same = request(
        Method::POST,
        "/pay?x=1",
        Some(r#""k1""#),
        Frames::data(BODY),
    );
    assert!(send(&service, same).await.replayed());
}

#[tokio::test(start_paused = true)]
async fn an_answer_expires_after_its_ttl_and_the_key_runs_again() {
    let events = Events::default();
    let handler = Handler::new();
    let ttl = Duration::from_secs(600);
    let layer = builder(&events)
        .lease(Duration::from_secs(60))
        .ttl(ttl)
        .build()
        .unwrap();
    let service = layer.layer(handler.clone());

    assert_eq!(
        send(&service, pay(r#""k1""#, BODY)).await.headers["x-run"],
        "1"
    );
    let kept_at = Instant::now();
    sleep_until(kept_at + ttl - Duration::from_millis(1)).await;
    let replay = send(&service, pay(r#""k1""#, BODY)).await;
    assert!(replay.replayed());
    assert_eq!(replay.headers["x-run"], "1");

    sleep_until(kept_at + ttl).await;
    let again = send(&service, pay(r#""k1""#, BODY)).await;
    assert!(!again.replayed());
    assert_eq!(again.headers["x-run"], "2");
    assert_eq!(handler.runs(), 2);
    assert_eq!(
        events.take(),
        [Outcome::Executed, Outcome::Replayed, Outcome::Executed]
    );
}

#[tokio::test(start_paused = true)]
async fn a_first_run_dropped_mid_handler_releases_its_key() {
    let events = Events::default();
    let handler = Handler::new();
    let service = builder(&events).build().unwrap().layer(handler.clone());

    let mut first = Box::pin(
        service
            .clone()
            .oneshot(with(pay(r#""k1""#, BODY), "x-wait", "1")),
    );
    let waited = tokio::time::timeout(Duration::from_millis(1), &mut first).await;
    assert!(waited.is_err(), "the handler waits");
    assert_eq!(handler.runs(), 1);
    drop(first);
    settle().await;
    assert_eq!(events.take(), [Outcome::Released]);

    // Long before the 60 s lease ends, the key runs again.
    let retry = send(&service, pay(r#""k1""#, BODY)).await;
    assert_eq!(retry.status, 201);
    assert_eq!(retry.headers["x-run"], "2");
    assert_eq!(events.take(), [Outcome::Executed]);
}

#[tokio::test(start_paused = true)]
async fn a_claim_left_by_a_crashed_replica_holds_until_its_lease_ends() {
    let events = Events::default();
    let handler = Handler::new();
    let store = MemoryStore::new();
    let layer = builder(&events).store(store.clone()).build().unwrap();
    let service = layer.layer(handler.clone());
    let alice = |request| with(request, "authorization", "Bearer alice");

    // Another replica claimed Alice's key, as the layer would, and died.
    let fingerprint = fingerprint_of(pay(r#""k1""#, BODY)).await;
    let lease = Duration::from_secs(30);
    let crashed_at = Instant::now();
    let key = StoreKey::new(b"Bearer alice", b"k1");
    store
        .claim(key, fingerprint, Token::random(), lease)
        .await
        .unwrap();

    send(&service, alice(pay(r#""k1""#, BODY)))
        .await
        .assert_problem(409, "in-progress", Some("1"));
    sleep_until(crashed_at + lease - Duration::from_millis(1)).await;
    send(&service, alice(pay(r#""k1""#, BODY)))
        .await
        .assert_problem(409, "in-progress", Some("1"));
    assert_eq!(handler.runs(), 0);

    sleep_until(crashed_at + lease).await;
    let run = send(&service, alice(pay(r#""k1""#, BODY))).await;
    assert_eq!(run.status, 201);
    assert_eq!(handler.runs(), 1);
    assert_eq!(
        events.take(),
        [Outcome::InProgress, Outcome::InProgress, Outcome::Executed]
    );
}

#[tokio::test(start_paused = true)]
async fn a_first_run_that_outlives_its_lease_loses_the_key_and_cannot_overwrite() {
    let events = Events::default();
    let handler = Handler::new();
    let lease = Duration::from_secs(10);
    let layer = builder(&events).lease(lease).build().unwrap();
    let service = layer.layer(handler.clone());

    let first = tokio::spawn(send(&service, with(pay(r#""k1""#, BODY), "x-wait", "1")));
    settle().await;
    tokio::time::sleep(lease).await;

    // Documented: past the lease, a repeat runs alongside the first.
    let second = send(&service, pay(r#""k1""#, BODY)).await;
    assert!(!second.replayed());
    assert_eq!(second.headers["x-run"], "2");
    assert_eq!(events.take(), [Outcome::Executed]);

    handler.open();
    let first = first.await.unwrap();
    assert_eq!(first.status, 201);
    assert_eq!(first.headers["x-run"], "1");
    assert_eq!(events.take(), [Outcome::Executed, Outcome::KeepFailed]);

    // The second run's answer is the one kept.
    let replay = send(&service, pay(r#""k1""#, BODY)).await;
    assert!(replay.replayed());
    assert_eq!(replay.headers["x-run"], "2");
    assert_eq!(replay.body, second.body);
    assert_eq!(handler.runs(), 2);
}

#[tokio::test(start_paused = true)]
async fn keys_are_scoped_by_the_authorization_header_by_default() {
    let events = Events::default();
    let handler = Handler::new();
    let service = builder(&events).build().unwrap().layer(handler.clone());
    let as_user = |user: Option<&str>| {
        let request = pay(r#""k1""#, BODY);
        match user {
            Some(user) => with(request, "authorization", user),
            None => request,
        }
    };

    let run = |user| {
        let service = service.clone();
        async move { send(&service, as_user(user)).await.headers["x-run"].clone() }
    };
    assert_eq!(run(Some("Bearer alice")).await, "1");
    assert_eq!(run(Some("Bearer bob")).await, "2");
    assert_eq!(run(None).await, "3");
    assert_eq!(run(Some("Bearer alice")).await, "1");
    assert_eq!(run(Some("Bearer bob")).await, "2");
    assert_eq!(run(None).await, "3");
    assert_eq!(handler.runs(), 3);
    assert_eq!(
        events.take(),
        [[Outcome::Executed; 3], [Outcome::Replayed; 3]].concat()
    );
}

#[tokio::test(start_paused = true)]
async fn a_custom_scope_replaces_the_authorization_header() {
    let events = Events::default();
    let handler = Handler::new();
    let layer = builder(&events)
        .scope(|parts| {
            parts
                .headers
                .get("x-tenant")
                .map(|t| t.as_bytes().to_vec())
                .unwrap_or_default()
        })
        .build()
        .unwrap();
    let service = layer.layer(handler.clone());
    let send_as = |tenant: &str, token: &str| {
        let request = with(pay(r#""k1""#, BODY), "x-tenant", tenant);
        send(&service, with(request, "authorization", token))
    };

    assert_eq!(send_as("acme", "Bearer old").await.headers["x-run"], "1");
    // A refreshed token is the same tenant.
    let refreshed = send_as("acme", "Bearer new").await;
    assert!(refreshed.replayed());
    assert_eq!(refreshed.headers["x-run"], "1");
    assert_eq!(send_as("globex", "Bearer old").await.headers["x-run"], "2");
    assert_eq!(handler.runs(), 2);
    assert_eq!(
        events.take(),
        [Outcome::Executed, Outcome::Replayed, Outcome::Executed]
    );
}

#[tokio::test(start_paused = true)]
async fn failures_are_not_kept_so_a_retry_runs_again() {
    let events = Events::default();
    let handler = Handler::new();
    let service = builder(&events).build().unwrap().layer(handler.clone());

    for (run, status) in [500u16, 503, 429, 408].into_iter().enumerate() {
        let key = format!(r#""k{status}""#);
        let failed = send(
            &service,
            with(pay(&key, BODY), "x-status", &status.to_string()),
        )
        .await;
        assert_eq!(failed.status, status);
        assert!(!failed.replayed());
        assert_eq!(failed.headers["date"], DATE, "passed as it was");
        let retry = send(&service, pay(&key, BODY)).await;
        assert_eq!(retry.status, 201);
        assert_eq!(retry.headers["x-run"], (2 * run + 2).to_string());
        assert_eq!(events.take(), [Outcome::Released, Outcome::Executed]);
    }

    // Other client errors are answers like any other: kept and replayed.
    let missing = send(&service, with(pay(r#""k404""#, BODY), "x-status", "404")).await;
    assert_eq!(missing.status, 404);
    let replay = send(&service, pay(r#""k404""#, BODY)).await;
    assert_eq!(replay.status, 404);
    assert!(replay.replayed());
    assert_eq!(events.take(), [Outcome::Executed, Outcome::Replayed]);
}

#[tokio::test(start_paused = true)]
async fn an_error_from_the_service_releases_the_key() {
    let events = Events::default();
    let handler = Handler::new();
    let service = builder(&events).build().unwrap().layer(handler.clone());

    let failed = service
        .clone()
        .oneshot(with(pay(r#""k1""#, BODY), "x-fail", "1"))
        .await;
    assert_eq!(failed.unwrap_err().to_string(), "the handler failed");
    assert_eq!(events.take(), [Outcome::Released]);

    let retry = send(&service, pay(r#""k1""#, BODY)).await;
    assert_eq!(retry.status, 201);
    assert_eq!(handler.runs(), 2);
    assert_eq!(events.take(), [Outcome::Executed]);
}

#[tokio::test(start_paused = true)]
async fn keep_when_chooses_which_answers_are_kept() {
    let events = Events::default();
    let handler = Handler::new();
    let layer = builder(&events)
        // Keep everything but 201s, and only answers that say what they are.
        .keep_when(|status, headers| {
            status != StatusCode::CREATED && headers.contains_key("content-type")
        })
        .build()
        .unwrap();
    let service = layer.layer(handler.clone());

    let created = send(&service, pay(r#""k1""#, BODY)).await;
    assert_eq!(created.status, 201);
    assert_eq!(events.take(), [Outcome::Released]);
    assert_eq!(
        send(&service, pay(r#""k1""#, BODY)).await.headers["x-run"],
        "2"
    );
    assert_eq!(events.take(), [Outcome::Released]);

    let unavailable = with(pay(r#""k2""#, BODY), "x-status", "503");
    assert_eq!(send(&service, unavailable).await.status, 503);
    let replay = send(&service, pay(r#""k2""#, BODY)).await;
    assert_eq!(replay.status, 503);
    assert!(replay.replayed());
    assert_eq!(replay.headers["x-run"], "3");
    assert_eq!(handler.runs(), 3);
    assert_eq!(events.take(), [Outcome::Executed, Outcome::Replayed]);
}

/// Polls `future` to its end, then once more: it must not panic, and stays pending.
async fn polled_twice<F: Future>(future: F) -> F::Output {
    let mut future = pin!(future);
    let output = future.as_mut().await;
    let again = poll_fn(|cx| Poll::Ready(future.as_mut().poll(cx))).await;
    assert!(again.is_pending());
    output
}

#[tokio::test(start_paused = true)]
async fn a_response_future_polled_after_it_completed_stays_pending() {
    let events = Events::default();
    let mut service = builder(&events).build().unwrap().layer(Handler::new());

    let passed = request(Method::GET, "/pay", Some(r#""k1""#), Frames::empty());
    let ready = service.ready().await.unwrap();
    assert_eq!(
        polled_twice(ready.call(passed)).await.unwrap().status(),
        201
    );

    let refused = pay("unquoted", BODY);
    let ready = service.ready().await.unwrap();
    assert_eq!(
        polled_twice(ready.call(refused)).await.unwrap().status(),
        400
    );

    let ready = service.ready().await.unwrap();
    let keyed = polled_twice(ready.call(pay(r#""k1""#, BODY))).await;
    assert_eq!(read(keyed.unwrap()).await.status, 201);
    assert_eq!(events.take(), [Outcome::BadKey, Outcome::Executed]);
}

#[test]
fn builder_errors_name_the_field() {
    let field = |builder: tower_bulwark_idempotency::IdempotencyBuilder| {
        builder.build().unwrap_err().field()
    };
    let b = IdempotencyLayer::builder;
    assert_eq!(field(b().methods([])), "methods");
    assert_eq!(field(b().max_key_len(0)), "max_key_len");
    assert_eq!(field(b().max_request_body(0)), "max_request_body");
    assert_eq!(field(b().max_response_body(0)), "max_response_body");
    assert_eq!(field(b().lease(Duration::ZERO)), "lease");
    assert_eq!(field(b().store_timeout(Duration::ZERO)), "store_timeout");
    let lease = Duration::from_secs(60);
    assert_eq!(field(b().lease(lease).ttl(lease)), "ttl");
    assert_eq!(field(b().lease(lease).ttl(lease / 2)), "ttl");
    assert_eq!(field(b().ttl(Duration::ZERO)), "ttl");
    // The smallest valid settings build.
    let smallest = b()
        .methods([Method::POST])
        .max_key_len(1)
        .max_request_body(1)
        .max_response_body(1)
        .lease(Duration::from_millis(1))
        .ttl(Duration::from_millis(2))
        .store_timeout(Duration::from_millis(1));
    assert!(smallest.build().is_ok());
}
