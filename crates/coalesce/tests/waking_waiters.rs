//! No waiter is left unwoken by the shared call's driving (slot.rs): not one that found
//! another waiter polling the upstream when the upstream woke, nor any when it panics.

use std::convert::Infallible;
use std::future::Future;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Wake, Waker};

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::Full;
use tower::{service_fn, Layer, Service};
use tower_bulwark_coalesce::CoalesceLayer;

/// A waker that only records that it was woken.
#[derive(Default)]
struct Flag(AtomicBool);

impl Wake for Flag {
    fn wake(self: Arc<Self>) {
        self.0.store(true, Ordering::SeqCst);
    }
}

impl Flag {
    fn woken(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }
}

fn get() -> Request<()> {
    Request::get("http://api.test/hot").body(()).unwrap()
}

type Answer = Response<Full<Bytes>>;

/// The backend's future for the lost-wakeup test. Poll 1: its I/O becomes ready while it
/// is being polled (it wakes its waker mid-poll, as a socket readiness event on another
/// thread does), then it tells the test it is inside its poll and waits to be let go;
/// it returns `Pending` (it was woken, so it expects to be polled again). Poll 2: ready.
struct MidPollWake {
    polls: Arc<AtomicUsize>,
    in_poll: mpsc::Sender<()>,
    go: Arc<Mutex<mpsc::Receiver<()>>>,
}

impl Future for MidPollWake {
    type Output = Result<Answer, Infallible>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        if self.polls.fetch_add(1, Ordering::SeqCst) == 0 {
            cx.waker().wake_by_ref();
            self.in_poll.send(()).unwrap();
            self.go.lock().unwrap().recv().unwrap();
            return Poll::Pending;
        }
        Poll::Ready(Ok(Response::new(Full::new(Bytes::from("answer")))))
    }
}

/// A waiter (B) that is polled while another (A) is inside the upstream's poll registers
/// its waker and returns `Pending` on the failed `try_lock`. The upstream's wake came
/// *before* B registered (it woke only A); once A's poll returns, the slot sees it was
/// woken meanwhile and wakes B too, so B is not left to A's caller, which here gives up
/// (drops its future: a `select!`, a timeout, its own deadline).
#[test]
fn a_waiter_that_lost_the_try_lock_is_woken_again_when_the_driver_leaves() {
    let polls = Arc::new(AtomicUsize::new(0));
    let (in_poll_tx, in_poll_rx) = mpsc::channel();
    let (go_tx, go_rx) = mpsc::channel();
    let go = Arc::new(Mutex::new(go_rx));
    let backend = {
        let polls = polls.clone();
        service_fn(move |_: Request<()>| MidPollWake {
            polls: polls.clone(),
            in_poll: in_poll_tx.clone(),
            go: go.clone(),
        })
    };
    let mut service = CoalesceLayer::new().layer(backend);
    let mut a = Box::pin(service.call(get()));
    let mut b = Box::pin(service.call(get()));

    // A drives the call on another thread; its upstream poll is woken mid-poll.
    let driver = std::thread::spawn(move || {
        let flag = Arc::new(Flag::default());
        let waker = Waker::from(flag.clone());
        let polled = a.as_mut().poll(&mut Context::from_waker(&waker));
        assert!(polled.is_pending());
        (a, flag.woken())
    });
    in_poll_rx.recv().unwrap();

    // Meanwhile B is polled: A holds the upstream, so B registers and waits.
    let b_flag = Arc::new(Flag::default());
    let b_waker = Waker::from(b_flag.clone());
    assert!(b
        .as_mut()
        .poll(&mut Context::from_waker(&b_waker))
        .is_pending());
    go_tx.send(()).unwrap();
    let (a, a_woken) = driver.join().unwrap();
    assert!(a_woken, "the upstream's mid-poll wake reached A");

    // A's caller gives up.
    drop(a);

    assert!(
        b_flag.woken(),
        "B was never woken: the upstream's only wake went to A, which left; the upstream \
         (ready on its next poll, polled {} times) is never polled again and B hangs",
        polls.load(Ordering::SeqCst)
    );
    let answer = b.as_mut().poll(&mut Context::from_waker(&b_waker));
    assert!(matches!(answer, Poll::Ready(Ok(_))));
}

/// The same with A kept alive but not polled again (the crate docs: "a waiter whose future
/// is alive but not polled holds no one up").
#[test]
fn a_waiter_that_lost_the_try_lock_is_not_held_by_a_driver_that_is_not_polled_again() {
    let polls = Arc::new(AtomicUsize::new(0));
    let (in_poll_tx, in_poll_rx) = mpsc::channel();
    let (go_tx, go_rx) = mpsc::channel();
    let go = Arc::new(Mutex::new(go_rx));
    let backend = {
        let polls = polls.clone();
        service_fn(move |_: Request<()>| MidPollWake {
            polls: polls.clone(),
            in_poll: in_poll_tx.clone(),
            go: go.clone(),
        })
    };
    let mut service = CoalesceLayer::new().layer(backend);
    let mut a = Box::pin(service.call(get()));
    let mut b = Box::pin(service.call(get()));
    let driver = std::thread::spawn(move || {
        let waker = Waker::from(Arc::new(Flag::default()));
        assert!(a
            .as_mut()
            .poll(&mut Context::from_waker(&waker))
            .is_pending());
        a
    });
    in_poll_rx.recv().unwrap();
    let b_flag = Arc::new(Flag::default());
    let b_waker = Waker::from(b_flag.clone());
    assert!(b
        .as_mut()
        .poll(&mut Context::from_waker(&b_waker))
        .is_pending());
    go_tx.send(()).unwrap();
    let _a_alive_never_polled = driver.join().unwrap();
    assert!(
        b_flag.woken(),
        "B was never woken while A, alive, is not polled: B is held hostage by A"
    );
}

/// The backend's future for the panic test: `Pending` on its first poll (its waker kept
/// for I/O that never comes), a panic on its second.
struct PanicsOnSecondPoll {
    polls: usize,
}

impl Future for PanicsOnSecondPoll {
    type Output = Result<Answer, Infallible>;

    fn poll(mut self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Self::Output> {
        self.polls += 1;
        if self.polls == 1 {
            return Poll::Pending;
        }
        panic!("backend bug");
    }
}

/// A panic in the upstream's poll fails the call for every waiter ("the upstream call
/// panicked"): the waiter whose poll panicked unwinds (tokio catches a task's panic and
/// drops its future), and the upstream will never wake the slot again, so the unwinding
/// wakes every other waiter, which finds the upstream's lock poisoned. A joiner waiting
/// without a deadline gets the error instead of waiting forever.
#[test]
fn a_panic_in_the_upstream_wakes_the_other_waiters() {
    let backend = service_fn(|_: Request<()>| PanicsOnSecondPoll { polls: 0 });
    let mut service = CoalesceLayer::new().layer(backend);
    let mut leader = Box::pin(service.call(get()));
    let mut joiner = Box::pin(service.call(get()));

    // The joiner polls first (and drives the call's first poll): it waits, registered.
    let joiner_flag = Arc::new(Flag::default());
    let joiner_waker = Waker::from(joiner_flag.clone());
    assert!(joiner
        .as_mut()
        .poll(&mut Context::from_waker(&joiner_waker))
        .is_pending());

    // The leader's task is polled (the I/O woke it, say) and the upstream panics in it; the
    // runtime catches the panic and drops the task's future.
    let leader_waker = Waker::from(Arc::new(Flag::default()));
    let panicked = catch_unwind(AssertUnwindSafe(|| {
        let _ = leader
            .as_mut()
            .poll(&mut Context::from_waker(&leader_waker));
    }));
    assert!(panicked.is_err());
    drop(leader);

    assert!(
        joiner_flag.woken(),
        "the joiner was never woken after the upstream panicked: it waits forever"
    );
    match joiner
        .as_mut()
        .poll(&mut Context::from_waker(&joiner_waker))
    {
        Poll::Ready(Err(error)) => assert!(error.to_string().contains("panicked"), "{error}"),
        other => panic!(
            "expected the call's failure, got {:?}",
            other.map(|r| r.map(|_| ()))
        ),
    }
}
