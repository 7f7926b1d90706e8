//! Seeded schedules of callers polled by hand, as an executor polls tasks: a caller is
//! polled only once its waker fired (plus, while the schedule runs, a few spurious polls),
//! callers join, leave (their futures dropped) and are polled in random order, and the
//! backend's I/O becomes ready at random moments (some calls also wake themselves
//! mid-poll, as `yield_now` or a spent coop budget does, and their bodies arrive in two
//! parts). Whatever the order: no caller still waiting is left unwoken (each ends
//! answered once the backend's I/O is ready), every one gets its own URI's answer (or
//! the call's error), the handle's counts return to zero, and an upstream call is
//! cancelled exactly when every caller waiting for it left.

use std::collections::HashMap;
use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Wake, Waker};

use bytes::Bytes;
use http::{Request, Response};
use http_body::{Body, Frame};
use tower::{Layer, Service};
use tower_bulwark_coalesce::{CoalesceBody, CoalesceEventKind as Kind, CoalesceLayer};
use tower_bulwark_core::{BoxError, SeededRng};

/// The backend's I/O: a tick makes every call waiting for one ready.
#[derive(Default)]
struct Io {
    ticks: AtomicU64,
    waiting: Mutex<Vec<Waker>>,
}

impl Io {
    fn tick(&self) {
        self.ticks.fetch_add(1, Ordering::SeqCst);
        let wakers = std::mem::take(&mut *self.waiting.lock().unwrap());
        for waker in wakers {
            waker.wake();
        }
    }

    /// Whether `ticks` ticks have passed since `since`; else `cx` waits for the next.
    fn passed(&self, since: u64, ticks: u64, cx: &mut Context<'_>) -> bool {
        let mut waiting = self.waiting.lock().unwrap();
        if self.ticks.load(Ordering::SeqCst) >= since + ticks {
            return true;
        }
        waiting.push(cx.waker().clone());
        false
    }
}

#[derive(Default)]
struct Stats {
    calls: AtomicUsize,
    finished: AtomicUsize,
    cancelled: AtomicUsize,
    /// Calls (by URI) whose future is alive.
    running: Mutex<HashMap<String, usize>>,
}

/// One upstream call alive (its future, then its body), counted finished or cancelled.
struct Running {
    stats: Arc<Stats>,
    uri: String,
    finished: bool,
}

/// One upstream call: ready after `ticks` ticks of the I/O; waking itself on every poll
/// before that if `yields`; its body's second half one more tick later.
struct Call {
    io: Arc<Io>,
    running: Option<Running>,
    uri: String,
    since: u64,
    ticks: u64,
    yields: bool,
}

impl Drop for Running {
    fn drop(&mut self) {
        let counter = if self.finished {
            &self.stats.finished
        } else {
            &self.stats.cancelled
        };
        counter.fetch_add(1, Ordering::SeqCst);
        *self
            .stats
            .running
            .lock()
            .unwrap()
            .get_mut(&self.uri)
            .unwrap() -= 1;
    }
}

type Answer = Response<TwoParts>;

impl Future for Call {
    type Output = Result<Answer, BoxError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        if self.yields {
            // Yields until its I/O is ready: woken by itself only, mid-poll.
            if self.io.ticks.load(Ordering::SeqCst) < self.since + self.ticks {
                cx.waker().wake_by_ref();
                return Poll::Pending;
            }
        } else if !self.io.passed(self.since, self.ticks, cx) {
            return Poll::Pending;
        }
        let mut running = self.running.take();
        if self.uri.ends_with("err") {
            if let Some(running) = &mut running {
                running.finished = true;
            }
            return Poll::Ready(Err("backend broke".into()));
        }
        Poll::Ready(Ok(Response::new(TwoParts {
            running,
            io: self.io.clone(),
            since: self.io.ticks.load(Ordering::SeqCst),
            first: Some(Bytes::from("answer to ")),
            second: Some(Bytes::from(self.uri.clone())),
        })))
    }
}

/// `answer to <uri>`, its second part one I/O tick after the first.
struct TwoParts {
    running: Option<Running>,
    io: Arc<Io>,
    since: u64,
    first: Option<Bytes>,
    second: Option<Bytes>,
}

impl Body for TwoParts {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        if let Some(first) = self.first.take() {
            return Poll::Ready(Some(Ok(Frame::data(first))));
        }
        if self.second.is_some() && !self.io.passed(self.since, 1, cx) {
            return Poll::Pending;
        }
        if let Some(running) = &mut self.running {
            running.finished = true;
        }
        Poll::Ready(self.second.take().map(|second| Ok(Frame::data(second))))
    }
}

/// A caller's waker: records that it fired.
#[derive(Default)]
struct Woken(AtomicBool);

impl Wake for Woken {
    fn wake(self: Arc<Self>) {
        self.0.store(true, Ordering::SeqCst);
    }
}

type Caller =
    Pin<Box<dyn Future<Output = Result<Response<CoalesceBody<TwoParts>>, BoxError>> + Send>>;

struct Waiting {
    future: Caller,
    woken: Arc<Woken>,
    uri: &'static str,
}

/// Polls `caller`; its answer's body read whole (shared bodies are in memory), if ready.
fn poll(caller: &mut Waiting) -> Option<Result<Bytes, BoxError>> {
    caller.woken.0.store(false, Ordering::SeqCst);
    let waker = Waker::from(caller.woken.clone());
    let mut cx = Context::from_waker(&waker);
    match caller.future.as_mut().poll(&mut cx) {
        Poll::Pending => None,
        Poll::Ready(Err(error)) => Some(Err(error)),
        Poll::Ready(Ok(response)) => {
            let mut body = response.into_body();
            let mut bytes = Vec::new();
            loop {
                match Pin::new(&mut body).poll_frame(&mut cx) {
                    Poll::Ready(Some(Ok(frame))) => {
                        bytes.extend_from_slice(&frame.into_data().unwrap_or_default())
                    }
                    Poll::Ready(None) => break,
                    other => panic!("a shared body is in memory, got {:?}", other.is_ready()),
                }
            }
            Some(Ok(Bytes::from(bytes)))
        }
    }
}

#[test]
fn callers_joining_leaving_and_polled_in_random_orders_are_all_answered() {
    for seed in 0..1000u64 {
        let mut rng = SeededRng::new(seed);
        let io = Arc::new(Io::default());
        let stats = Arc::new(Stats::default());
        let events = Arc::new(Mutex::new(Vec::new()));
        let recorded = events.clone();
        let layer = CoalesceLayer::builder()
            .on_event(move |event: &tower_bulwark_coalesce::CoalesceEvent| {
                recorded.lock().unwrap().push(event.kind)
            })
            .build()
            .unwrap();
        let backend = {
            let (io, stats) = (io.clone(), stats.clone());
            let mut yields = SeededRng::new(seed ^ 0x5eed);
            let yields = Arc::new(Mutex::new(move || yields.next_unit() < 0.3));
            let mut ticks = SeededRng::new(seed ^ 0x71c5);
            let ticks = Arc::new(Mutex::new(move || ticks.next_u64() % 3));
            tower::service_fn(move |request: Request<()>| {
                let uri = request.uri().to_string();
                stats.calls.fetch_add(1, Ordering::SeqCst);
                *stats
                    .running
                    .lock()
                    .unwrap()
                    .entry(uri.clone())
                    .or_default() += 1;
                let call = Call {
                    io: io.clone(),
                    running: Some(Running {
                        stats: stats.clone(),
                        uri: uri.clone(),
                        finished: false,
                    }),
                    since: io.ticks.load(Ordering::SeqCst),
                    ticks: (ticks.lock().unwrap())(),
                    yields: (yields.lock().unwrap())(),
                    uri,
                };
                call
            })
        };
        let mut service = layer.layer(backend);
        let handle = layer.handle();

        let mut waiting: Vec<Waiting> = Vec::new();
        let mut callers = 0;
        let mut answered = 0;
        let check = |uri: &str, answer: Result<Bytes, BoxError>| {
            if uri.ends_with("err") {
                let error = answer.expect_err("the call failed");
                assert!(error.to_string().contains("backend broke"), "seed {seed}");
            } else {
                let body = answer.unwrap_or_else(|e| panic!("seed {seed}: {uri}: {e}"));
                assert_eq!(body, format!("answer to {uri}"), "seed {seed}");
            }
        };
        for _ in 0..300 {
            let roll = rng.next_unit();
            if roll < 0.25 || waiting.is_empty() {
                let uri = ["/a", "/b", "/err"][(rng.next_u64() % 3) as usize];
                let future: Caller = Box::pin(service.call(Request::get(uri).body(()).unwrap()));
                let woken = Arc::new(Woken::default());
                // A new task is scheduled.
                woken.0.store(true, Ordering::SeqCst);
                waiting.push(Waiting { future, woken, uri });
                callers += 1;
            } else if roll < 0.55 {
                let woken: Vec<usize> = (0..waiting.len())
                    .filter(|&i| waiting[i].woken.0.load(Ordering::SeqCst))
                    .collect();
                if woken.is_empty() {
                    continue;
                }
                let i = woken[(rng.next_u64() % woken.len() as u64) as usize];
                if let Some(answer) = poll(&mut waiting[i]) {
                    let caller = waiting.swap_remove(i);
                    check(caller.uri, answer);
                    answered += 1;
                }
            } else if roll < 0.68 {
                let i = (rng.next_u64() % waiting.len() as u64) as usize;
                let left = waiting.swap_remove(i);
                let uri = left.uri;
                drop(left);
                // Nobody waits for this URI any more: its call is cancelled at once.
                if !waiting.iter().any(|caller| caller.uri == uri) {
                    assert_eq!(
                        stats.running.lock().unwrap().get(uri).copied().unwrap_or(0),
                        0,
                        "seed {seed}: every caller of {uri} left, its call still runs"
                    );
                }
            } else if roll < 0.9 {
                io.tick();
            } else {
                // A spurious poll: futures may be polled without a wake.
                let i = (rng.next_u64() % waiting.len() as u64) as usize;
                if let Some(answer) = poll(&mut waiting[i]) {
                    let caller = waiting.swap_remove(i);
                    check(caller.uri, answer);
                    answered += 1;
                }
            }
        }
        // The I/O becomes ready; only woken callers are polled.
        for _ in 0..20 {
            io.tick();
            // Polled in rounds (a call that wakes itself until the next tick is woken
            // again at once).
            let woken: Vec<usize> = (0..waiting.len())
                .filter(|&i| waiting[i].woken.0.load(Ordering::SeqCst))
                .rev()
                .collect();
            for i in woken {
                if let Some(answer) = poll(&mut waiting[i]) {
                    let caller = waiting.swap_remove(i);
                    check(caller.uri, answer);
                    answered += 1;
                }
            }
        }
        assert!(
            waiting.is_empty(),
            "seed {seed}: {} callers ({:?}) wait, unwoken, for calls whose I/O is ready",
            waiting.len(),
            waiting.iter().map(|caller| caller.uri).collect::<Vec<_>>()
        );
        assert!(answered > 0, "seed {seed}");
        let snapshot = handle.snapshot();
        assert_eq!((snapshot.keys, snapshot.waiters), (0, 0), "seed {seed}");
        let events = events.lock().unwrap();
        let count = |kind| events.iter().filter(|k| **k == kind).count();
        assert_eq!(
            count(Kind::Led) + count(Kind::Joined),
            callers,
            "seed {seed}"
        );
        let (calls, finished, cancelled) = (
            stats.calls.load(Ordering::SeqCst),
            stats.finished.load(Ordering::SeqCst),
            stats.cancelled.load(Ordering::SeqCst),
        );
        assert_eq!(calls, finished + cancelled, "seed {seed}");
        // A call is made when a waiter first polls it: a slot every caller left before
        // that was abandoned without one.
        assert!(calls <= count(Kind::Led), "seed {seed}");
        assert_eq!(
            count(Kind::Led) - calls,
            count(Kind::Abandoned) - cancelled,
            "seed {seed}: a call cancelled while someone waited for it"
        );
    }
}
