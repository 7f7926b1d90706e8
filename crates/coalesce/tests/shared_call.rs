//! Who drives the shared call, and whose readiness and deadline it uses.

use std::convert::Infallible;
use std::future::{poll_fn, Future};
use std::pin::{pin, Pin};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::Full;
use tower::{service_fn, Layer, Service, ServiceExt};
use tower_bulwark_coalesce::CoalesceLayer;
use tower_bulwark_core::{find_rejection, BoxError, Deadline, Rejection, RejectionKind};

/// One permit, taken in `poll_ready` and held by the readied service until its call ends,
/// as `BulkheadLayer` in readiness admission (`Admission::Readiness`) or tower's
/// `ConcurrencyLimit` do.
#[derive(Default)]
struct Permits {
    taken: Mutex<bool>,
    waiting: Mutex<Vec<Waker>>,
}

struct Gated {
    permits: Arc<Permits>,
    calls: Arc<AtomicUsize>,
    held: bool,
}

impl Clone for Gated {
    fn clone(&self) -> Self {
        // A clone is not ready: tower's convention.
        Gated {
            permits: self.permits.clone(),
            calls: self.calls.clone(),
            held: false,
        }
    }
}

fn release(permits: &Permits) {
    *permits.taken.lock().unwrap() = false;
    for waker in permits.waiting.lock().unwrap().drain(..) {
        waker.wake();
    }
}

impl Drop for Gated {
    fn drop(&mut self) {
        if self.held {
            release(&self.permits);
        }
    }
}

struct Release(Arc<Permits>);
impl Drop for Release {
    fn drop(&mut self) {
        release(&self.0);
    }
}

impl Service<Request<()>> for Gated {
    type Response = Response<Full<Bytes>>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Infallible>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        if self.held {
            return Poll::Ready(Ok(()));
        }
        let mut taken = self.permits.taken.lock().unwrap();
        if *taken {
            self.permits
                .waiting
                .lock()
                .unwrap()
                .push(cx.waker().clone());
            return Poll::Pending;
        }
        *taken = true;
        self.held = true;
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, _: Request<()>) -> Self::Future {
        assert!(std::mem::take(&mut self.held), "call without poll_ready");
        let n = self.calls.fetch_add(1, Ordering::SeqCst) + 1;
        let permit = Release(self.permits.clone());
        Box::pin(async move {
            tokio::time::sleep(Duration::from_millis(50)).await;
            drop(permit);
            Ok(Response::new(Full::new(Bytes::from(format!("call {n}")))))
        })
    }
}

/// With a concurrency bound of 1 below the layer (a readiness-mode bulkhead, the client
/// preset's bulkhead when configured so), a joiner needs no permit: `poll_ready` is always
/// ready and readiness is taken inside the shared call. Two identical GETs in flight make
/// one upstream call, and the second caller waits only for it.
#[tokio::test(start_paused = true)]
async fn a_readiness_bound_below_does_not_keep_joiners_from_joining() {
    let calls = Arc::new(AtomicUsize::new(0));
    let gated = Gated {
        permits: Arc::default(),
        calls: calls.clone(),
        held: false,
    };
    let service = CoalesceLayer::new().layer(gated);
    let get = || Request::get("http://api.test/hot").body(()).unwrap();
    let start = tokio::time::Instant::now();
    let (a, b) = tokio::join!(service.clone().oneshot(get()), async {
        tokio::time::sleep(Duration::from_millis(1)).await;
        service.clone().oneshot(get()).await
    });
    a.unwrap();
    b.unwrap();
    assert_eq!(
        (
            calls.load(Ordering::SeqCst),
            start.elapsed() < Duration::from_millis(60)
        ),
        (1, true),
        "the joiner waited for a permit it never needed (took {:?})",
        start.elapsed()
    );
}

/// Any waiter polls the upstream future, and its progress wakes every waiter. A leader
/// whose future is alive but not polled (its task busy elsewhere, a `select!` arm that lost
/// this round, a future kept for later) holds no joiner hostage: the answer is ready at
/// 50 ms and the joiner, polling the call itself, gets it.
#[tokio::test(start_paused = true)]
async fn a_joiner_is_not_held_hostage_by_a_leader_that_is_not_polled() {
    let backend = service_fn(|_: Request<()>| async {
        tokio::time::sleep(Duration::from_millis(50)).await;
        Ok::<_, Infallible>(Response::new(Full::new(Bytes::from("answer"))))
    });
    let service = CoalesceLayer::new().layer(backend);
    let get = || Request::get("http://api.test/hot").body(()).unwrap();
    let mut leader = pin!(service.clone().oneshot(get()));
    // Polled once: it leads and polls the call; then its task goes on with other work.
    poll_fn(|cx| {
        let _ = leader.as_mut().poll(cx);
        Poll::Ready(())
    })
    .await;
    let joiner = tokio::spawn(service.clone().oneshot(get()));
    let joined = tokio::time::timeout(Duration::from_secs(10), joiner).await;
    assert!(joined.is_ok(), "the joiner was never answered");
    // The leader's future is alive (pinned on this stack, never polled again) until here.
}

/// The upstream call carries no caller's deadline (a `PropagateDeadlineLayer` /
/// `TimeoutLayer` below reads `Deadline::current()` at `call`; this backend does the same):
/// a leader with 10 ms left fails alone at its deadline, and a joiner with no deadline gets
/// the answer the backend gives at 50 ms.
#[tokio::test(start_paused = true)]
async fn a_joiner_does_not_inherit_the_leaders_deadline() {
    let backend = service_fn(|_: Request<()>| {
        let deadline = Deadline::current();
        async move {
            let work = tokio::time::sleep(Duration::from_millis(50));
            match deadline {
                Some(deadline) => {
                    tokio::select! {
                        _ = work => {}
                        _ = tokio::time::sleep_until(deadline.instant()) => {
                            return Err::<Response<Full<Bytes>>, BoxError>(
                                Rejection::new(RejectionKind::DeadlineExceeded, "below").into(),
                            );
                        }
                    }
                }
                None => work.await,
            }
            Ok(Response::new(Full::new(Bytes::from("answer"))))
        }
    });
    let service = CoalesceLayer::new().layer(backend);
    let get = || Request::get("http://api.test/hot").body(()).unwrap();
    let leader = Deadline::after(Duration::from_millis(10)).scope(service.clone().oneshot(get()));
    let (_, joiner) = tokio::join!(leader, async {
        tokio::time::sleep(Duration::from_millis(1)).await;
        service.clone().oneshot(get()).await
    });
    match joiner {
        Ok(_) => {}
        Err(error) => panic!(
            "joiner without a deadline failed with {:?}: {error}",
            find_rejection(&error).map(|r| r.kind())
        ),
    }
}

/// Each waiter's wait ends at its own deadline, with core's `DeadlineExceeded`; the call
/// goes on for the others, and when the last waiter gives up it is cancelled.
#[tokio::test(start_paused = true)]
async fn each_waiter_waits_until_its_own_deadline() {
    let calls = Arc::new(AtomicUsize::new(0));
    let finished = Arc::new(AtomicUsize::new(0));
    let (counted, done) = (calls.clone(), finished.clone());
    let backend = service_fn(move |_: Request<()>| {
        counted.fetch_add(1, Ordering::SeqCst);
        let done = done.clone();
        async move {
            tokio::time::sleep(Duration::from_millis(50)).await;
            done.fetch_add(1, Ordering::SeqCst);
            Ok::<_, Infallible>(Response::new(Full::new(Bytes::from("answer"))))
        }
    });
    let layer = CoalesceLayer::new();
    let service = layer.layer(backend);
    let get = || Request::get("http://api.test/hot").body(()).unwrap();
    let in_a_hurry =
        Deadline::after(Duration::from_millis(10)).scope(service.clone().oneshot(get()));
    let patient = Deadline::after(Duration::from_secs(1)).scope(async {
        tokio::time::sleep(Duration::from_millis(1)).await;
        service.clone().oneshot(get()).await
    });
    let start = tokio::time::Instant::now();
    let (hurried, patient) = tokio::join!(
        async {
            let result = in_a_hurry.await;
            (result, start.elapsed())
        },
        patient
    );
    let (hurried, after) = hurried;
    let Err(error) = hurried else {
        panic!("the leader's deadline passed, it got an answer")
    };
    assert_eq!(
        find_rejection(&error).map(Rejection::kind),
        Some(RejectionKind::DeadlineExceeded)
    );
    assert_eq!(after, Duration::from_millis(10));
    assert!(patient.is_ok());
    assert_eq!(
        (
            calls.load(Ordering::SeqCst),
            finished.load(Ordering::SeqCst)
        ),
        (1, 1)
    );

    // Alone, a waiter giving up at its deadline cancels the call.
    let alone = Deadline::after(Duration::from_millis(10)).scope(service.clone().oneshot(get()));
    assert!(alone.await.is_err());
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(
        (
            calls.load(Ordering::SeqCst),
            finished.load(Ordering::SeqCst)
        ),
        (2, 1)
    );
    assert_eq!(layer.handle().snapshot().keys, 0);
}

/// Two services of different types built from one layer share its map; a request finding
/// the other type's call under its key goes upstream on its own, and says so.
#[tokio::test(start_paused = true)]
async fn a_call_of_another_service_type_is_not_joined_and_is_reported() {
    use tower_bulwark_coalesce::{CoalesceEvent, CoalesceEventKind};
    let events = Arc::new(Mutex::new(Vec::new()));
    let seen = events.clone();
    let layer = CoalesceLayer::builder()
        .on_event(move |event: &CoalesceEvent| seen.lock().unwrap().push(event.kind))
        .build()
        .unwrap();
    let slow = |text: &'static str| {
        move |_: Request<()>| async move {
            tokio::time::sleep(Duration::from_millis(50)).await;
            Ok::<_, Infallible>(Response::new(Full::new(Bytes::from(text))))
        }
    };
    let a = layer.layer(service_fn(slow("a")));
    // Another type: the same closure type, wrapped.
    let b = layer.layer(service_fn(slow("b")).map_response(|response| response));
    let get = || Request::get("http://api.test/hot").body(()).unwrap();
    let (a, b) = tokio::join!(a.oneshot(get()), async {
        tokio::time::sleep(Duration::from_millis(1)).await;
        b.oneshot(get()).await
    });
    let body = |r: Result<Response<_>, BoxError>| r.unwrap().into_body();
    use http_body_util::BodyExt;
    assert_eq!(body(a).collect().await.unwrap().to_bytes(), "a");
    assert_eq!(body(b).collect().await.unwrap().to_bytes(), "b");
    assert_eq!(
        *events.lock().unwrap(),
        [CoalesceEventKind::Led, CoalesceEventKind::Collided]
    );
}

/// The leader's request goes upstream without its `Deadline` extension (a deadline layer
/// above wrote it; a bulkhead or retry below would read it); a request that is not
/// coalesced keeps its own.
#[tokio::test(start_paused = true)]
async fn the_shared_call_carries_no_deadline_and_a_call_passed_by_keeps_its_own() {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let record = seen.clone();
    let backend = service_fn(move |request: Request<()>| {
        record.lock().unwrap().push((
            request.extensions().get::<Deadline>().is_some(),
            Deadline::current().is_some(),
        ));
        async { Ok::<_, Infallible>(Response::new(Full::new(Bytes::from("answer")))) }
    });
    let service = CoalesceLayer::new().layer(backend);
    let deadline = Deadline::after(Duration::from_secs(1));
    for method in [http::Method::GET, http::Method::POST] {
        let mut request = Request::builder()
            .method(method)
            .uri("http://api.test/hot")
            .body(())
            .unwrap();
        request.extensions_mut().insert(deadline);
        deadline
            .scope(service.clone().oneshot(request))
            .await
            .unwrap();
    }
    assert_eq!(*seen.lock().unwrap(), [(false, false), (true, true)]);
}

/// An answer over the body limit found by a joiner's poll while the leader is not being
/// polled goes to the leader all the same (its request went upstream: it has none to
/// resend); the joiner sends its own call.
#[tokio::test(start_paused = true)]
async fn an_answer_over_the_limit_goes_to_the_leader_whoever_polled_it() {
    use http_body_util::BodyExt;
    let calls = Arc::new(AtomicUsize::new(0));
    let counted = calls.clone();
    let backend = service_fn(move |_: Request<()>| {
        let n = counted.fetch_add(1, Ordering::SeqCst) + 1;
        async move {
            tokio::time::sleep(Duration::from_millis(50)).await;
            Ok::<_, Infallible>(Response::new(Full::new(Bytes::from(format!(
                "call {n}, too long to share"
            )))))
        }
    });
    let service = CoalesceLayer::builder()
        .max_body_bytes(4)
        .build()
        .unwrap()
        .layer(backend);
    let get = || Request::get("http://api.test/hot").body(()).unwrap();
    let mut leader = pin!(service.clone().oneshot(get()));
    poll_fn(|cx| {
        assert!(leader.as_mut().poll(cx).is_pending());
        Poll::Ready(())
    })
    .await;
    let joiner = tokio::spawn(service.clone().oneshot(get()));
    let joined = joiner.await.unwrap().unwrap();
    let led = leader.await.unwrap();
    let text = |bytes: Bytes| String::from_utf8(bytes.to_vec()).unwrap();
    assert_eq!(
        text(led.into_body().collect().await.unwrap().to_bytes()),
        "call 1, too long to share"
    );
    assert_eq!(
        text(joined.into_body().collect().await.unwrap().to_bytes()),
        "call 2, too long to share"
    );
}
