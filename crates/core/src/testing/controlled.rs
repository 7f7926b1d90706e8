use std::collections::VecDeque;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{ready, Context, Poll, Waker};
use std::time::Duration;

use pin_project::pin_project;
use tokio::time::{sleep, Sleep};
use tower_service::Service;

use crate::{BoxError, Rejection};

/// What a call to a [`Controlled`] service does.
#[derive(Debug, Clone, PartialEq)]
pub enum Behavior {
    /// Answer with the request itself.
    Succeed,
    /// Fail with [`TestError`].
    Fail,
    /// Fail with this rejection, as if a layer below had refused the call.
    Reject(Rejection),
    /// Never complete (until dropped).
    Hang,
}

/// The error a [`Controlled`] service fails with under [`Behavior::Fail`], and from
/// `poll_ready` while [`Controller::fail_readiness`] is in force.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct TestError;

impl fmt::Display for TestError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("controlled service failure")
    }
}

impl std::error::Error for TestError {}

/// A new controllable inner service and its controller.
///
/// The service echoes its request (`Response = Req`) and fails with a [`BoxError`]. Every
/// clone of it shares the same controller and counters.
///
/// ```
/// use std::time::Duration;
/// use tower::{Service, ServiceExt};
/// use tower_bulwark_core::testing::{controlled, Behavior};
///
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() {
/// let (mut service, control) = controlled::<&str>();
/// assert_eq!(service.ready().await.unwrap().call("hi").await.unwrap(), "hi");
///
/// control.fail();
/// control.delay(Duration::from_secs(1));
/// let started = tokio::time::Instant::now();
/// assert!(service.ready().await.unwrap().call("hi").await.is_err());
/// assert_eq!(started.elapsed(), Duration::from_secs(1));
///
/// control.script([Behavior::Succeed]); // the next call only
/// assert!(service.ready().await.unwrap().call("ok").await.is_ok());
/// assert!(service.ready().await.unwrap().call("hi").await.is_err());
/// assert_eq!(control.calls(), 4);
/// # }
/// ```
pub fn controlled<Req>() -> (Controlled<Req>, Controller) {
    let shared = Arc::new(Shared::default());
    let service = Controlled {
        shared: shared.clone(),
        _request: std::marker::PhantomData,
    };
    (service, Controller { shared })
}

/// The inner service made by [`controlled`].
pub struct Controlled<Req> {
    shared: Arc<Shared>,
    _request: std::marker::PhantomData<fn(Req) -> Req>,
}

/// Drives a [`Controlled`] service and reads its counters.
#[derive(Clone)]
pub struct Controller {
    shared: Arc<Shared>,
}

#[derive(Default)]
struct Shared {
    control: Mutex<Control>,
    calls: AtomicUsize,
    in_flight: AtomicUsize,
    max_in_flight: AtomicUsize,
    completed: AtomicUsize,
    cancelled: AtomicUsize,
}

struct Control {
    behavior: Behavior,
    script: VecDeque<Behavior>,
    delay: Duration,
    readiness: Readiness,
    waiting: Vec<Waker>,
}

#[derive(Clone, Copy, PartialEq)]
enum Readiness {
    Ready,
    Pending,
    Fail,
}

impl Default for Control {
    fn default() -> Self {
        Control {
            behavior: Behavior::Succeed,
            script: VecDeque::new(),
            delay: Duration::ZERO,
            readiness: Readiness::Ready,
            waiting: Vec::new(),
        }
    }
}

impl Shared {
    fn control(&self) -> MutexGuard<'_, Control> {
        // A panicking test thread must not hide the state from the others.
        self.control.lock().unwrap_or_else(|e| e.into_inner())
    }
}

// === impl Controller ===

impl Controller {
    /// Calls from now on succeed.
    pub fn succeed(&self) {
        self.set(Behavior::Succeed);
    }

    /// Calls from now on fail with [`TestError`].
    pub fn fail(&self) {
        self.set(Behavior::Fail);
    }

    /// Calls from now on fail with this rejection.
    pub fn reject(&self, rejection: Rejection) {
        self.set(Behavior::Reject(rejection));
    }

    /// Calls from now on never complete.
    pub fn hang(&self) {
        self.set(Behavior::Hang);
    }

    /// Sets what calls do from now on (after any scripted ones).
    pub fn set(&self, behavior: Behavior) {
        self.shared.control().behavior = behavior;
    }

    /// The next calls do these, in order; later ones fall back to the behaviour set last.
    pub fn script(&self, behaviors: impl IntoIterator<Item = Behavior>) {
        self.shared.control().script.extend(behaviors);
    }

    /// Calls from now on take this long before they complete (zero: at once).
    pub fn delay(&self, delay: Duration) {
        self.shared.control().delay = delay;
    }

    /// `poll_ready` returns `Pending` (and registers the task) until [`Controller::ready`].
    pub fn pause(&self) {
        self.set_readiness(Readiness::Pending);
    }

    /// `poll_ready` returns `Ready(Ok)` and waiting tasks are woken.
    pub fn ready(&self) {
        self.set_readiness(Readiness::Ready);
    }

    /// `poll_ready` returns `Ready(Err(TestError))` and waiting tasks are woken.
    pub fn fail_readiness(&self) {
        self.set_readiness(Readiness::Fail);
    }

    fn set_readiness(&self, readiness: Readiness) {
        let waiting = {
            let mut control = self.shared.control();
            control.readiness = readiness;
            std::mem::take(&mut control.waiting)
        };
        waiting.into_iter().for_each(Waker::wake);
    }

    /// Calls made so far.
    pub fn calls(&self) -> usize {
        self.shared.calls.load(Ordering::SeqCst)
    }

    /// Calls started and neither completed nor dropped.
    pub fn in_flight(&self) -> usize {
        self.shared.in_flight.load(Ordering::SeqCst)
    }

    /// The most calls that were in flight at once.
    pub fn max_in_flight(&self) -> usize {
        self.shared.max_in_flight.load(Ordering::SeqCst)
    }

    /// Calls whose future returned a result (success or error).
    pub fn completed(&self) -> usize {
        self.shared.completed.load(Ordering::SeqCst)
    }

    /// Calls whose future was dropped before it completed.
    pub fn cancelled(&self) -> usize {
        self.shared.cancelled.load(Ordering::SeqCst)
    }
}

impl fmt::Debug for Controller {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Controller")
            .field("calls", &self.calls())
            .field("in_flight", &self.in_flight())
            .field("completed", &self.completed())
            .field("cancelled", &self.cancelled())
            .finish()
    }
}

// === impl Controlled ===

impl<Req> Clone for Controlled<Req> {
    fn clone(&self) -> Self {
        Controlled {
            shared: self.shared.clone(),
            _request: std::marker::PhantomData,
        }
    }
}

impl<Req> fmt::Debug for Controlled<Req> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Controlled").finish_non_exhaustive()
    }
}

impl<Req> Service<Req> for Controlled<Req> {
    type Response = Req;
    type Error = BoxError;
    type Future = ControlledFuture<Req>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        let mut control = self.shared.control();
        match control.readiness {
            Readiness::Ready => Poll::Ready(Ok(())),
            Readiness::Fail => Poll::Ready(Err(TestError.into())),
            Readiness::Pending => {
                if !control.waiting.iter().any(|w| w.will_wake(cx.waker())) {
                    control.waiting.push(cx.waker().clone());
                }
                Poll::Pending
            }
        }
    }

    fn call(&mut self, request: Req) -> ControlledFuture<Req> {
        let (behavior, delay) = {
            let mut control = self.shared.control();
            let behavior = match control.script.pop_front() {
                Some(behavior) => behavior,
                None => control.behavior.clone(),
            };
            (behavior, control.delay)
        };
        let shared = &self.shared;
        shared.calls.fetch_add(1, Ordering::SeqCst);
        let now = shared.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        shared.max_in_flight.fetch_max(now, Ordering::SeqCst);
        ControlledFuture {
            request: Some(request),
            behavior,
            delay,
            sleep: None,
            track: Track {
                shared: shared.clone(),
                done: false,
            },
        }
    }
}

/// Response future of [`Controlled`].
#[pin_project]
pub struct ControlledFuture<Req> {
    request: Option<Req>,
    behavior: Behavior,
    delay: Duration,
    /// Started on the first poll, so `call` works outside a runtime.
    #[pin]
    sleep: Option<Sleep>,
    track: Track,
}

impl<Req> fmt::Debug for ControlledFuture<Req> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ControlledFuture")
            .field("behavior", &self.behavior)
            .finish_non_exhaustive()
    }
}

impl<Req> Future for ControlledFuture<Req> {
    type Output = Result<Req, BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        if !this.delay.is_zero() {
            if this.sleep.is_none() {
                this.sleep.set(Some(sleep(*this.delay)));
            }
            if let Some(sleep) = this.sleep.as_pin_mut() {
                ready!(sleep.poll(cx));
            }
        }
        let result = match this.behavior {
            Behavior::Hang => return Poll::Pending,
            Behavior::Succeed => Ok(this
                .request
                .take()
                .expect("ControlledFuture polled after completion")),
            Behavior::Fail => Err(TestError.into()),
            Behavior::Reject(rejection) => Err(rejection.clone().into()),
        };
        this.track.complete();
        Poll::Ready(result)
    }
}

/// Keeps the in-flight, completed and cancelled counts right however the future ends.
struct Track {
    shared: Arc<Shared>,
    done: bool,
}

impl Track {
    fn complete(&mut self) {
        if !std::mem::replace(&mut self.done, true) {
            self.shared.in_flight.fetch_sub(1, Ordering::SeqCst);
            self.shared.completed.fetch_add(1, Ordering::SeqCst);
        }
    }
}

impl Drop for Track {
    fn drop(&mut self) {
        if !self.done {
            self.shared.in_flight.fetch_sub(1, Ordering::SeqCst);
            self.shared.cancelled.fetch_add(1, Ordering::SeqCst);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{find_rejection, RejectionKind};
    use tokio::time::Instant;
    use tower::ServiceExt;

    #[tokio::test(start_paused = true)]
    async fn behaviors_apply_to_later_calls_and_scripts_come_first() {
        let (mut service, control) = controlled::<u32>();
        assert_eq!(service.ready().await.unwrap().call(1).await.unwrap(), 1);

        control.fail();
        let err = service.ready().await.unwrap().call(2).await.unwrap_err();
        assert!(err.is::<TestError>());

        let rejection = Rejection::new(RejectionKind::Overloaded, "below");
        control.script([Behavior::Succeed, Behavior::Reject(rejection.clone())]);
        assert_eq!(service.ready().await.unwrap().call(3).await.unwrap(), 3);
        let err = service.ready().await.unwrap().call(4).await.unwrap_err();
        assert_eq!(find_rejection(&err), Some(&rejection));
        assert!(service.ready().await.unwrap().call(5).await.is_err());

        assert_eq!(control.calls(), 5);
        assert_eq!(control.completed(), 5);
        assert_eq!(control.in_flight(), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn delay_takes_exactly_that_long() {
        let (mut service, control) = controlled::<u32>();
        control.delay(Duration::from_millis(250));
        let start = Instant::now();
        service.ready().await.unwrap().call(1).await.unwrap();
        assert_eq!(start.elapsed(), Duration::from_millis(250));
    }

    #[tokio::test(start_paused = true)]
    async fn dropped_and_hanging_calls_are_counted() {
        let (mut service, control) = controlled::<u32>();
        control.hang();
        let first = service.ready().await.unwrap().call(1);
        let second = service.ready().await.unwrap().call(2);
        assert_eq!(control.in_flight(), 2);
        assert_eq!(control.max_in_flight(), 2);
        let timed_out = tokio::time::timeout(Duration::from_secs(60), first).await;
        assert!(timed_out.is_err());
        drop(second);
        assert_eq!(control.in_flight(), 0);
        assert_eq!(control.cancelled(), 2);
        assert_eq!(control.completed(), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn readiness_can_pause_resume_and_fail() {
        let (service, control) = controlled::<u32>();
        control.pause();
        let waiting = tokio::spawn(service.clone().oneshot(9));
        tokio::task::yield_now().await;
        assert!(!waiting.is_finished());
        assert_eq!(control.calls(), 0);
        control.ready();
        assert_eq!(waiting.await.unwrap().unwrap(), 9);

        control.fail_readiness();
        let err = service.oneshot(1).await.unwrap_err();
        assert!(err.is::<TestError>());
        assert_eq!(control.calls(), 1);
    }
}
