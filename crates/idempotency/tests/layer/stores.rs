//! A store that fails or never answers: refused with 503 (fail closed, the default) or run
//! unprotected (fail open), as configured.

use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;
use tower::Layer;
use tower_bulwark_idempotency::{OnStoreError, Outcome};

use super::harness::*;
use super::BODY;

#[tokio::test(start_paused = true)]
async fn a_failing_store_refuses_with_503_by_default() {
    let events = Events::default();
    let handler = Handler::new();
    let service = builder(&events)
        .store(FaultyStore::new(Fault::Fails))
        .build()
        .unwrap()
        .layer(handler.clone());
    for _ in 0..2 {
        send(&service, pay(r#""k1""#, BODY)).await.assert_problem(
            503,
            "store-unavailable",
            Some("1"),
        );
    }
    assert_eq!(handler.runs(), 0);
    assert_eq!(events.take(), [Outcome::StoreFailedClosed; 2]);
}

#[tokio::test(start_paused = true)]
async fn a_store_that_never_answers_is_given_up_on_after_store_timeout() {
    let events = Events::default();
    let handler = Handler::new();
    let timeout = Duration::from_millis(250);
    let closed = builder(&events)
        .store(FaultyStore::new(Fault::Hangs))
        .store_timeout(timeout)
        .build()
        .unwrap()
        .layer(handler.clone());

    let started = Instant::now();
    send(&closed, pay(r#""k1""#, BODY))
        .await
        .assert_problem(503, "store-unavailable", Some("1"));
    assert_eq!(started.elapsed(), timeout);
    assert_eq!(handler.runs(), 0);
    assert_eq!(events.take(), [Outcome::StoreFailedClosed]);

    let open = builder(&events)
        .store(FaultyStore::new(Fault::Hangs))
        .store_timeout(timeout)
        .on_store_error(OnStoreError::FailOpen)
        .build()
        .unwrap()
        .layer(handler.clone());
    let started = Instant::now();
    let reply = send(&open, pay(r#""k1""#, BODY)).await;
    assert_eq!(started.elapsed(), timeout);
    assert_eq!(reply.status, 201);
    assert_eq!(handler.runs(), 1);
    assert_eq!(events.take(), [Outcome::StoreFailedOpen]);
}

#[tokio::test(start_paused = true)]
async fn failing_open_runs_every_request_unprotected() {
    let events = Events::default();
    let handler = Handler::new();
    let service = builder(&events)
        .store(FaultyStore::new(Fault::Fails))
        .on_store_error(OnStoreError::FailOpen)
        .build()
        .unwrap()
        .layer(handler.clone());
    for run in ["1", "2"] {
        let reply = send(&service, pay(r#""k1""#, BODY)).await;
        assert_eq!(reply.status, 201);
        assert_eq!(reply.text(), format!("run {run}: {BODY}"));
        assert_eq!(reply.headers["date"], DATE, "passed as it was");
        assert!(!reply.replayed());
    }
    assert_eq!(events.take(), [Outcome::StoreFailedOpen; 2]);
}

#[tokio::test(start_paused = true)]
async fn a_store_failing_to_keep_the_answer_is_reported_and_the_answer_still_sent() {
    let events = Events::default();
    let handler = Handler::new();
    let lease = Duration::from_secs(60);
    let service = builder(&events)
        .store(FaultyStore::new(Fault::CompleteFails))
        .lease(lease)
        .build()
        .unwrap()
        .layer(handler.clone());
    let started = Instant::now();
    let first = send(&service, pay(r#""k1""#, BODY)).await;
    assert_eq!(first.text(), format!("run 1: {BODY}"));
    // The write is tried again in the background until the lease ends.
    assert_eq!(events.take(), [Outcome::Executed]);

    // The claim was never replaced: repeats wait for its lease, then run.
    send(&service, pay(r#""k1""#, BODY))
        .await
        .assert_problem(409, "in-progress", Some("1"));
    tokio::time::sleep_until(started + lease).await;
    assert_eq!(
        events.take(),
        [Outcome::InProgress, Outcome::KeepFailed],
        "given up only when the lease ended"
    );
    assert_eq!(
        send(&service, pay(r#""k1""#, BODY)).await.headers["x-run"],
        "2"
    );
    assert_eq!(events.take(), [Outcome::Executed]);
}

#[tokio::test(start_paused = true)]
async fn a_write_that_fails_once_is_tried_again_and_lands() {
    let events = Events::default();
    let handler = Handler::new();
    let fails = Arc::new(std::sync::atomic::AtomicUsize::new(1));
    let service = builder(&events)
        .store(FaultyStore::new(Fault::WritesFailTimes(fails.clone())))
        .build()
        .unwrap()
        .layer(handler.clone());
    let first = send(&service, pay(r#""k1""#, BODY)).await;
    assert_eq!(first.status, 201);
    // Until the second try (50 ms on), the key is still claimed; then the answer is kept.
    send(&service, pay(r#""k1""#, BODY))
        .await
        .assert_problem(409, "in-progress", Some("1"));
    tokio::time::sleep(Duration::from_millis(51)).await;
    let again = send(&service, pay(r#""k1""#, BODY)).await;
    assert!(again.replayed());
    assert_eq!(again.text(), first.text());
    assert_eq!(handler.runs(), 1);
    assert_eq!(
        events.take(),
        [Outcome::Executed, Outcome::InProgress, Outcome::Replayed]
    );

    // A release that fails once (a 503 answer) frees the key on the second try.
    fails.store(1, std::sync::atomic::Ordering::SeqCst);
    let unavailable = builder(&events)
        .store(FaultyStore::new(Fault::WritesFailTimes(fails)))
        .build()
        .unwrap()
        .layer(Handler::answering(|_, _, _| {
            Ok(http::Response::builder()
                .status(503)
                .body(Frames::empty())
                .unwrap())
        }));
    assert_eq!(send(&unavailable, pay(r#""k2""#, BODY)).await.status, 503);
    send(&unavailable, pay(r#""k2""#, BODY))
        .await
        .assert_problem(409, "in-progress", Some("1"));
    tokio::time::sleep(Duration::from_millis(51)).await;
    assert_eq!(send(&unavailable, pay(r#""k2""#, BODY)).await.status, 503);
    assert_eq!(
        events.take(),
        [Outcome::Released, Outcome::InProgress, Outcome::Released]
    );
}

#[tokio::test(start_paused = true)]
async fn a_down_store_gets_one_take_back_per_refused_request_not_a_pile_of_retries() {
    let events = Events::default();
    let store = FaultyStore::new(Fault::Fails);
    let releases = store.releases.clone();
    let service = builder(&events)
        .store(store)
        .build()
        .unwrap()
        .layer(Handler::new());
    for n in 0..10 {
        send(&service, pay(&format!(r#""k{n}""#), BODY))
            .await
            .assert_problem(503, "store-unavailable", Some("1"));
    }
    // Long past every lease: each refused claim was taken back once, never retried.
    tokio::time::sleep(Duration::from_secs(120)).await;
    assert_eq!(releases.load(std::sync::atomic::Ordering::SeqCst), 10);
}
