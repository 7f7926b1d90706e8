//! The layer over a real Redis, in front of real axum servers, called over HTTP/1.1 on
//! loopback: two replicas sharing keys, Redis down (fail closed, fail open), Redis
//! restarted with and without persistence, Redis stopped under a running request.
//!
//! Real time: Redis expires keys by its own clock. Handlers wait on a gate the test opens.
//! Where the test waits for the store to come back (it reconnects by itself, and the
//! operation that finds its connection lost fails), it resends the request at a client's
//! pace, a bounded number of times, and checks every answer on the way. Nothing asserts a
//! wall-clock bound.
#![cfg(feature = "redis")]

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::State;
use axum::response::IntoResponse;
use axum::routing::post;
use axum::Router;
use bytes::Bytes;
use http::{HeaderMap, Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch, Notify};
use tower_bulwark_idempotency::{
    IdempotencyBuilder, IdempotencyEvent, IdempotencyLayer, OnStoreError, Outcome, RedisStore,
};

use tower_bulwark_core::testing::RedisServer;

/// Long enough for a shared machine: these tests are about answers, not speed. A down
/// Redis refuses connections, so its failures come at once.
const STORE_TIMEOUT: Duration = Duration::from_secs(5);
/// How often a client resends while the store comes back.
const RESEND_PACE: Duration = Duration::from_millis(50);
/// How many times it resends before the test fails (10 s at that pace).
const RESENDS: usize = 200;

const BODY: &str = r#"{"amount":10}"#;

// === the handler and the replicas ===

/// A payment handler shared by every replica: it counts its runs and holds each run until
/// the gate is open.
struct Handler {
    runs: Arc<AtomicUsize>,
    started: Arc<Notify>,
    gate: watch::Sender<bool>,
}

impl Handler {
    fn new(open: bool) -> Handler {
        Handler {
            runs: Arc::new(AtomicUsize::new(0)),
            started: Arc::new(Notify::new()),
            gate: watch::channel(open).0,
        }
    }

    fn runs(&self) -> usize {
        self.runs.load(Ordering::SeqCst)
    }

    fn open(&self) {
        self.gate.send_replace(true);
    }
}

/// One replica's view of the handler: which server it runs on.
#[derive(Clone)]
struct Payments {
    server: &'static str,
    runs: Arc<AtomicUsize>,
    started: Arc<Notify>,
    open: watch::Receiver<bool>,
}

/// Charges once per run, naming the run and the server that ran it.
async fn charge(State(payments): State<Payments>, body: String) -> impl IntoResponse {
    let run = payments.runs.fetch_add(1, Ordering::SeqCst) + 1;
    payments.started.notify_one();
    let _ = payments.open.clone().wait_for(|open| *open).await;
    (
        StatusCode::CREATED,
        [("content-type", "application/json")],
        charged(run, payments.server, &body),
    )
}

fn charged(run: usize, server: &str, body: &str) -> String {
    format!(r#"{{"charge":{run},"server":"{server}","request":{body}}}"#)
}

/// A replica named `server`: an axum server of `POST /pay` behind `layer`.
async fn serve(
    server: &'static str,
    handler: &Handler,
    layer: IdempotencyLayer<RedisStore>,
) -> SocketAddr {
    let payments = Payments {
        server,
        runs: handler.runs.clone(),
        started: handler.started.clone(),
        open: handler.gate.subscribe(),
    };
    let router = Router::new()
        .route("/pay", post(charge))
        .with_state(payments)
        .layer(layer);
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    addr
}

/// A replica named `server` with the default layer (fail closed) on a store of its own.
async fn replica(
    server: &'static str,
    handler: &Handler,
    redis: &RedisServer,
    outcomes: &Outcomes,
) -> SocketAddr {
    let layer = layer(store(redis).await, outcomes).build().unwrap();
    serve(server, handler, layer).await
}

/// A store with its own connection to `redis`.
async fn store(redis: &RedisServer) -> RedisStore {
    let client = redis::Client::open(redis.url()).unwrap();
    RedisStore::builder(client)
        .timeout(STORE_TIMEOUT)
        .connect()
        .await
        .unwrap()
}

/// The outcomes a layer reported, in order.
#[derive(Clone, Default)]
struct Outcomes(Arc<Mutex<Vec<Outcome>>>);

impl Outcomes {
    fn all(&self) -> Vec<Outcome> {
        self.0.lock().unwrap().clone()
    }

    fn counts(&self) -> HashMap<Outcome, usize> {
        let mut counts = HashMap::new();
        for outcome in self.all() {
            *counts.entry(outcome).or_default() += 1;
        }
        counts
    }
}

/// A layer on `store` reporting to `outcomes`, fail closed unless changed.
fn layer(store: RedisStore, outcomes: &Outcomes) -> IdempotencyBuilder<RedisStore> {
    let outcomes = outcomes.clone();
    IdempotencyLayer::builder()
        .store(store)
        .store_timeout(STORE_TIMEOUT)
        .on_event(move |event: &IdempotencyEvent| outcomes.0.lock().unwrap().push(event.outcome))
}

// === the client ===

/// A whole answer.
#[derive(Debug)]
struct Reply {
    status: StatusCode,
    headers: HeaderMap,
    body: Bytes,
}

impl Reply {
    fn replayed(&self) -> bool {
        self.headers
            .get("idempotent-replayed")
            .is_some_and(|v| v == "true")
    }

    fn text(&self) -> &str {
        std::str::from_utf8(&self.body).unwrap()
    }

    /// Asserts a problem+json refusal: `status`, its `type`'s anchor, its `Retry-After`.
    #[track_caller]
    fn assert_problem(&self, status: u16, anchor: &str, retry_after: Option<&str>) {
        assert_eq!(self.status, status, "{}", self.text());
        assert_eq!(self.headers["content-type"], "application/problem+json");
        assert!(!self.replayed());
        let text = self.text();
        assert!(text.contains(&format!(r#"README.md#{anchor}","#)), "{text}");
        assert!(text.contains(&format!(r#""status":{status},"#)), "{text}");
        assert_eq!(
            self.headers.get("retry-after").map(|v| v.to_str().unwrap()),
            retry_after
        );
    }

    /// Asserts the handler's answer of run `run` on `server`, first-hand or replayed.
    #[track_caller]
    fn assert_charge(&self, run: usize, server: &str, replayed: bool) {
        assert_eq!(self.status, StatusCode::CREATED, "{}", self.text());
        assert_eq!(self.text(), charged(run, server, BODY));
        assert_eq!(self.headers["content-type"], "application/json");
        assert_eq!(self.replayed(), replayed, "{:?}", self.headers);
    }
}

type HttpClient = Client<HttpConnector, Full<Bytes>>;

fn client() -> HttpClient {
    Client::builder(TokioExecutor::new()).build_http()
}

/// `POST /pay` with `Idempotency-Key: "pay-1"` and `body`, the whole answer read.
async fn pay(client: &HttpClient, addr: SocketAddr, body: &str) -> Reply {
    let request = Request::builder()
        .method(Method::POST)
        .uri(format!("http://{addr}/pay"))
        .header("idempotency-key", "\"pay-1\"")
        .header("content-type", "application/json")
        .body(Full::new(Bytes::copy_from_slice(body.as_bytes())))
        .unwrap();
    let response = client.request(request).await.unwrap();
    let (parts, body) = response.into_parts();
    Reply {
        status: parts.status,
        headers: parts.headers,
        body: body.collect().await.unwrap().to_bytes(),
    }
}

/// Sends the payment while it is refused with 503 (the store is not back yet) or, if
/// `in_progress`, with 409 in progress, checking that no refusal ran the handler. Returns
/// the first other answer and the refusals' outcomes, in order.
async fn pay_past_refusals(
    client: &HttpClient,
    addr: SocketAddr,
    handler: &Handler,
    in_progress: bool,
) -> (Reply, Vec<Outcome>) {
    let runs = handler.runs();
    let mut refusals = Vec::new();
    for _ in 0..RESENDS {
        let reply = pay(client, addr, BODY).await;
        match reply.status {
            StatusCode::SERVICE_UNAVAILABLE => {
                reply.assert_problem(503, "store-unavailable", Some("1"));
                refusals.push(Outcome::StoreFailedClosed);
            }
            StatusCode::CONFLICT if in_progress => {
                reply.assert_problem(409, "in-progress", Some("1"));
                refusals.push(Outcome::InProgress);
            }
            _ => return (reply, refusals),
        }
        assert_eq!(handler.runs(), runs, "a refused request ran");
        tokio::time::sleep(RESEND_PACE).await;
    }
    panic!("still refused after {RESENDS} tries: {refusals:?}");
}

/// The payment once the store reaches a restarted Redis, and how many times it was
/// refused with 503 before.
async fn pay_once_store_back(
    client: &HttpClient,
    addr: SocketAddr,
    handler: &Handler,
) -> (Reply, usize) {
    let (reply, refusals) = pay_past_refusals(client, addr, handler, false).await;
    (reply, refusals.len())
}

/// `n` of the same outcome.
fn times(outcome: Outcome, n: usize) -> Vec<Outcome> {
    vec![outcome; n]
}

// === two replicas, one Redis ===

#[tokio::test]
async fn two_replicas_run_a_hundred_concurrent_duplicates_once_and_replay_it_on_both() {
    let Some(redis) = RedisServer::start().await else {
        return;
    };
    let handler = Handler::new(false);
    let outcomes = Outcomes::default();
    let a = replica("a", &handler, &redis, &outcomes).await;
    let b = replica("b", &handler, &redis, &outcomes).await;
    let client = client();

    // Half to each replica, all at once: one runs, held on the gate.
    let (answers, mut answered) = mpsc::unbounded_channel();
    for i in 0..100 {
        let (server, addr) = if i % 2 == 0 { ("a", a) } else { ("b", b) };
        let (client, answers) = (client.clone(), answers.clone());
        tokio::spawn(async move {
            let reply = pay(&client, addr, BODY).await;
            answers.send((server, reply)).unwrap();
        });
    }
    let mut in_progress = HashMap::from([("a", 0), ("b", 0)]);
    for _ in 0..99 {
        let (server, reply) = answered.recv().await.unwrap();
        reply.assert_problem(409, "in-progress", Some("1"));
        *in_progress.get_mut(server).unwrap() += 1;
    }
    assert_eq!(handler.runs(), 1);
    let (ran, other) = match (in_progress["a"], in_progress["b"]) {
        (49, 50) => ("a", b),
        (50, 49) => ("b", a),
        counts => panic!("409s per replica: {counts:?}"),
    };

    handler.open();
    let (server, first) = answered.recv().await.unwrap();
    assert_eq!(server, ran);
    first.assert_charge(1, ran, false);

    // Repeats on both replicas get the first answer; a different body with the key, sent
    // to the replica that did not run it, is refused.
    for _ in 0..3 {
        for addr in [a, b] {
            pay(&client, addr, BODY).await.assert_charge(1, ran, true);
        }
    }
    let reused = pay(&client, other, r#"{"amount":99}"#).await;
    reused.assert_problem(422, "key-reused", None);
    assert_eq!(handler.runs(), 1);
    let expected = HashMap::from([
        (Outcome::Executed, 1),
        (Outcome::InProgress, 99),
        (Outcome::Replayed, 6),
        (Outcome::Mismatch, 1),
    ]);
    assert_eq!(outcomes.counts(), expected);

    // Each replica had a connection of its own (the third is this check's).
    let mut raw = redis::Client::open(redis.url())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let clients: String = redis::cmd("CLIENT")
        .arg("LIST")
        .query_async(&mut raw)
        .await
        .unwrap();
    assert_eq!(clients.lines().count(), 3, "{clients}");
}

// === Redis down ===

#[tokio::test]
async fn fail_closed_refuses_with_503_while_redis_is_down_and_runs_once_when_it_is_back() {
    let Some(mut redis) = RedisServer::start().await else {
        return;
    };
    let handler = Handler::new(true);
    let outcomes = Outcomes::default();
    let a = replica("a", &handler, &redis, &outcomes).await;
    let client = client();

    redis.stop();
    for _ in 0..2 {
        let refused = pay(&client, a, BODY).await;
        refused.assert_problem(503, "store-unavailable", Some("1"));
    }
    assert_eq!(handler.runs(), 0);

    // The same store (not rebuilt) reaches the new Redis.
    redis.start_again().await;
    let (first, refused) = pay_once_store_back(&client, a, &handler).await;
    first.assert_charge(1, "a", false);
    pay(&client, a, BODY).await.assert_charge(1, "a", true);
    assert_eq!(handler.runs(), 1);
    let mut expected = times(Outcome::StoreFailedClosed, 2 + refused);
    expected.extend([Outcome::Executed, Outcome::Replayed]);
    assert_eq!(outcomes.all(), expected);
}

#[tokio::test]
async fn fail_open_runs_every_request_while_redis_is_down_duplicates_included() {
    let Some(mut redis) = RedisServer::start().await else {
        return;
    };
    let handler = Handler::new(true);
    let outcomes = Outcomes::default();
    let layer = layer(store(&redis).await, &outcomes)
        .on_store_error(OnStoreError::FailOpen)
        .build()
        .unwrap();
    let a = serve("a", &handler, layer).await;
    let client = client();

    redis.stop();
    // Unprotected, as documented: the repeat runs again, and neither is marked.
    pay(&client, a, BODY).await.assert_charge(1, "a", false);
    pay(&client, a, BODY).await.assert_charge(2, "a", false);
    assert_eq!(handler.runs(), 2);
    assert_eq!(outcomes.all(), times(Outcome::StoreFailedOpen, 2));
}

// === Redis restarted ===

#[tokio::test]
async fn a_persistent_redis_restarted_still_has_the_answer_and_a_repeat_is_replayed() {
    let Some(mut redis) = RedisServer::start_persistent().await else {
        return;
    };
    let handler = Handler::new(true);
    let outcomes = Outcomes::default();
    let a = replica("a", &handler, &redis, &outcomes).await;
    let client = client();
    pay(&client, a, BODY).await.assert_charge(1, "a", false);

    redis.stop();
    redis.start_again().await;
    let (repeat, refused) = pay_once_store_back(&client, a, &handler).await;
    repeat.assert_charge(1, "a", true);
    assert_eq!(handler.runs(), 1);
    let mut expected = vec![Outcome::Executed];
    expected.extend(times(Outcome::StoreFailedClosed, refused));
    expected.push(Outcome::Replayed);
    assert_eq!(outcomes.all(), expected);
}

#[tokio::test]
async fn a_redis_without_persistence_restarted_forgot_the_answer_and_a_repeat_runs_again() {
    let Some(mut redis) = RedisServer::start().await else {
        return;
    };
    let handler = Handler::new(true);
    let outcomes = Outcomes::default();
    let a = replica("a", &handler, &redis, &outcomes).await;
    let client = client();
    pay(&client, a, BODY).await.assert_charge(1, "a", false);

    // The documented reason to run this store's Redis with persistence or replication.
    redis.stop();
    redis.start_again().await;
    let (repeat, refused) = pay_once_store_back(&client, a, &handler).await;
    repeat.assert_charge(2, "a", false);
    pay(&client, a, BODY).await.assert_charge(2, "a", true);
    assert_eq!(handler.runs(), 2);
    let mut expected = vec![Outcome::Executed];
    expected.extend(times(Outcome::StoreFailedClosed, refused));
    expected.extend([Outcome::Executed, Outcome::Replayed]);
    assert_eq!(outcomes.all(), expected);
}

// === Redis stopped under a running request ===

/// Sends the payment while `handler` holds it, stops `redis`, opens the gate: the answer,
/// whose keeping failed at its first try.
async fn answered_while_redis_is_down(
    client: &HttpClient,
    addr: SocketAddr,
    handler: &Handler,
    redis: &mut RedisServer,
) -> Reply {
    let first = tokio::spawn({
        let client = client.clone();
        async move { pay(&client, addr, BODY).await }
    });
    handler.started.notified().await;
    redis.stop();
    handler.open();
    first.await.unwrap()
}

#[tokio::test]
async fn a_request_running_when_redis_stops_is_answered_and_kept_once_redis_is_back() {
    let Some(mut redis) = RedisServer::start_persistent().await else {
        return;
    };
    let handler = Handler::new(false);
    let outcomes = Outcomes::default();
    // A lease far longer than Redis takes to come back: the keep is retried until it ends.
    let layer = layer(store(&redis).await, &outcomes)
        .lease(Duration::from_secs(10))
        .build()
        .unwrap();
    let a = serve("a", &handler, layer).await;
    let client = client();

    let first = answered_while_redis_is_down(&client, a, &handler, &mut redis).await;
    first.assert_charge(1, "a", false);

    // The claim survived the restart: repeats are refused while the keep is retried,
    // then replayed. Never run again.
    redis.start_again().await;
    let (replay, waits) = pay_past_refusals(&client, a, &handler, true).await;
    assert_eq!(handler.runs(), 1, "ran twice: {}", replay.text());
    replay.assert_charge(1, "a", true);
    let mut expected = vec![Outcome::Executed];
    expected.extend(waits);
    expected.push(Outcome::Replayed);
    assert_eq!(outcomes.all(), expected);
}

#[tokio::test]
async fn an_answer_redis_was_down_for_the_whole_lease_of_is_lost_and_a_repeat_runs_again() {
    let Some(mut redis) = RedisServer::start_persistent().await else {
        return;
    };
    let handler = Handler::new(false);
    let outcomes = Outcomes::default();
    let gave_up = Arc::new(Notify::new());
    let layer = layer(store(&redis).await, &outcomes)
        .lease(Duration::from_secs(1))
        .on_event({
            let gave_up = gave_up.clone();
            move |event: &IdempotencyEvent| {
                if event.outcome == Outcome::KeepFailed {
                    gave_up.notify_one();
                }
            }
        })
        .build()
        .unwrap();
    let a = serve("a", &handler, layer).await;
    let client = client();

    let first = answered_while_redis_is_down(&client, a, &handler, &mut redis).await;
    first.assert_charge(1, "a", false);
    gave_up.notified().await;

    // The layer gives up before its next try would pass the lease; Redis, back, may hold
    // the claim a little longer. After it, the key is free: the store never had the
    // answer, and the repeat runs again (the limit of any store that is down that long).
    redis.start_again().await;
    let (repeat, waits) = pay_past_refusals(&client, a, &handler, true).await;
    repeat.assert_charge(2, "a", false);
    assert_eq!(handler.runs(), 2);
    let mut expected = vec![Outcome::Executed, Outcome::KeepFailed];
    expected.extend(waits);
    expected.push(Outcome::Executed);
    assert_eq!(outcomes.all(), expected);
}
