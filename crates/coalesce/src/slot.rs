//! [`Slot`]: one upstream call in flight and the callers waiting for it.
//!
//! The call is driven by whoever waits, as `futures::future::Shared` does: a waiter that
//! is polled, and finds no other waiter polling the upstream future at that moment
//! (`try_lock`), polls it once; the upstream future is polled with a waker that wakes
//! every waiter (the slot itself, `std::task::Wake`), so whichever waiter's task runs
//! next makes progress, and none depends on another being polled. When the last waiter
//! leaves, the upstream future is dropped (the call cancelled) and the slot leaves the
//! map. The slot's state is under a short `std::sync::Mutex` (CONTRIBUTING.md, rule 4: a
//! shared store), never held while the upstream future is polled, which has a lock of its
//! own (taken before the state's, never after).
//!
//! A waiter tries the upstream first: the state's lock is taken to take the answer (once
//! the `ended` flag, set with the outcome, says there is one), to register the waiter's
//! waker when it must wait, and by the driver after its poll. So a call answered at its
//! first poll costs its driver one lock of the state (to record the end and take its
//! answer) and no registration; the driver is not woken by its own end (except, once and
//! harmlessly, a waiter that registered, then won the upstream on its second try and
//! ended the call).
//!
//! No wake is lost to the `try_lock` (`futures::future::Shared`'s `REPOLL`): a waiter that
//! finds the upstream locked registers its waker (unless the call has ended: then it
//! takes its answer), then tries the lock once more, and returns `Pending` only if it is
//! still held. The poll holding it then ends after that registration; but the upstream
//! may have woken the slot during that poll, before the waiter registered, waking only the
//! waiters registered then. So the slot's waker also sets `notified`, which the driver
//! clears when it takes the upstream's lock; when its poll returns `Pending` and it has
//! released that lock, it looks (under the state's lock): at the outcome first (another
//! waiter may have polled the call to its end meanwhile: it takes its answer), else it
//! registers itself and, if the upstream was woken meanwhile, wakes every waiter
//! registered (itself included). A waiter whose second `try_lock` failed registered
//! before that driver released the lock, so before it looks. A panic in the upstream's
//! poll wakes every waiter once the lock is poisoned (they fail the call), and a waiter
//! that leaves holding a wake it did not act on passes it on to the others. The loom
//! models below check these interleavings.

use std::any::Any;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, PoisonError, TryLockError};
use std::task::{Context, Poll, Wake, Waker};

use http::header::VARY;
use http::Response;
// The slot's locks and flag from core's shim: std's, or loom's for the model below.
use tower_bulwark_core::sync::{AtomicBool, Mutex, MutexGuard, Ordering};
use tower_bulwark_core::{BoxError, Deadline};

use crate::body::CoalesceBody;
use crate::config::Shared;
use crate::error::{broken, CoalescedError};
use crate::events::CoalesceEventKind;
use crate::key::StoredKey;
use crate::upstream::{Fetched, SharedResponse};

/// A slot in the layer's map, whatever the types of the service that made it.
pub(crate) trait Entry: Send + Sync {
    /// The key its callers share.
    fn key(&self) -> &StoredKey;
    /// The slot as `Any`, to be found again as its own type.
    fn into_any(self: Arc<Self>) -> Arc<dyn Any + Send + Sync>;
}

/// The leader's waiter id.
const LEADER: usize = usize::MAX;

/// One upstream call (`U`, the future of the inner service's readiness, call and body)
/// and its waiters.
pub(crate) struct Slot<U, B> {
    shared: Arc<Shared>,
    hash: u64,
    key: StoredKey,
    /// The upstream call, pinned where any waiter can poll it; `None` before it starts
    /// and once it ended.
    upstream: Mutex<Option<Pin<Box<U>>>>,
    /// Set by the slot's waker, cleared by the waiter that takes the upstream's lock to
    /// poll it: whether the upstream woke the slot since that poll began.
    notified: AtomicBool,
    /// Set (under the state's lock) when the outcome is no longer pending: a waiter that
    /// sees it takes its answer; one that does not tries the upstream first.
    ended: AtomicBool,
    state: Mutex<State<B>>,
}

struct State<B> {
    outcome: Outcome<B>,
    /// Whether the leader still waits.
    leader_live: bool,
    /// Waiters still waiting, the leader included.
    live: usize,
    /// Waiters that joined and are still waiting.
    joiners: usize,
    leader_waker: Option<Waker>,
    /// The joiners' wakers, by id; grown when a joiner first registers (a joiner that is
    /// answered at its first poll never needs a place).
    wakers: Vec<Option<Waker>>,
    /// The next joiner id never given.
    next_id: usize,
    /// Joiner ids free again.
    free: Vec<usize>,
}

// Boxing the answer would cost an allocation per call; the slot holds one outcome.
#[allow(clippy::large_enum_variant)]
enum Outcome<B> {
    Pending,
    Ready(SharedResponse),
    Failed(Arc<BoxError>),
    /// The answer was over the body limit and goes whole to one waiter: the leader if it
    /// still waits (here until it takes it: its request went upstream, it has none to
    /// resend), else the waiter that polled it. The others resend.
    Oversize(Option<Response<CoalesceBody<B>>>),
    /// Every waiter left before the end.
    Abandoned,
    /// The last waiter took the answer.
    Taken,
}

/// What a waiter comes away with.
// Moved once per waiter; boxing the response would cost an allocation each.
#[allow(clippy::large_enum_variant)]
pub(crate) enum Answer<B> {
    /// The answer, and whether it has a `Vary` header (a joiner checks it against its
    /// request then).
    Response(Response<CoalesceBody<B>>, bool),
    Error(BoxError),
    /// The answer was not shared (over the body limit): send your own call.
    Resend,
}

/// What joining a slot came to.
pub(crate) enum Join<U: Send + 'static, B: Send + 'static> {
    Joined(Waiter<U, B>),
    /// `max_waiters` wait already.
    Full,
    /// The call has ended: a new one must start.
    Ended,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl<U, B> Entry for Slot<U, B>
where
    U: Send + 'static,
    B: Send + 'static,
{
    fn key(&self) -> &StoredKey {
        &self.key
    }

    fn into_any(self: Arc<Self>) -> Arc<dyn Any + Send + Sync> {
        self
    }
}

/// The upstream future's waker: progress wakes every waiter, any of which may poll it.
impl<U, B> Wake for Slot<U, B>
where
    U: Send + 'static,
    B: Send + 'static,
{
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        // Woken under the lock (as `futures::future::Shared` does), so that no list of
        // wakers is allocated: a waker only schedules its task. `notified` is set under
        // it too, so a driver that looks after its poll (under the lock) sees it.
        let mut state = lock(&self.state);
        self.notified.store(true, Ordering::Relaxed);
        state.wake_all();
    }
}

/// Wakes every waiter if dropped while the upstream's poll unwinds (armed just before the
/// poll, disarmed once it returns, so no other path pays for a look at the thread's
/// panic state): declared before the upstream's lock guard, so dropped after it, when the
/// lock is poisoned and the waiters woken find it so (and fail the call) rather than
/// finding it held.
struct WakeOnPanic<'a, U, B>
where
    U: Send + 'static,
    B: Send + 'static,
{
    slot: &'a Arc<Slot<U, B>>,
    armed: bool,
}

impl<U, B> Drop for WakeOnPanic<'_, U, B>
where
    U: Send + 'static,
    B: Send + 'static,
{
    fn drop(&mut self) {
        if self.armed {
            self.slot.wake_by_ref();
        }
    }
}

impl<U, B> Slot<U, B>
where
    U: Send + 'static,
    B: Send + 'static,
{
    /// A slot for the new call `upstream`, and its leader's waiter. The caller puts it in
    /// the map: the call is there for any waiter to poll from the start.
    pub(crate) fn lead(
        shared: Arc<Shared>,
        hash: u64,
        key: StoredKey,
        upstream: Pin<Box<U>>,
    ) -> Waiter<U, B> {
        shared.waiters.fetch_add(1, Ordering::Relaxed);
        let slot = Arc::new(Slot {
            shared,
            hash,
            key,
            upstream: Mutex::new(Some(upstream)),
            notified: AtomicBool::new(false),
            ended: AtomicBool::new(false),
            state: Mutex::new(State {
                outcome: Outcome::Pending,
                leader_live: true,
                live: 1,
                joiners: 0,
                leader_waker: None,
                wakers: Vec::new(),
                next_id: 0,
                free: Vec::new(),
            }),
        });
        Waiter {
            slot,
            id: LEADER,
            done: false,
        }
    }

    /// The key its callers share.
    pub(crate) fn stored_key(&self) -> &StoredKey {
        &self.key
    }

    /// Adds a waiter, unless the call ended or has `max_waiters` already. Called under the
    /// map's lock, so a slot found in the map is not abandoned meanwhile unnoticed.
    pub(crate) fn join(self: &Arc<Self>, max_waiters: usize) -> Join<U, B> {
        let mut state = lock(&self.state);
        if !matches!(state.outcome, Outcome::Pending) {
            return Join::Ended;
        }
        if state.joiners >= max_waiters {
            return Join::Full;
        }
        state.joiners += 1;
        state.live += 1;
        let id = match state.free.pop() {
            Some(id) => id,
            None => {
                state.next_id += 1;
                state.next_id - 1
            }
        };
        drop(state);
        self.shared.waiters.fetch_add(1, Ordering::Relaxed);
        Join::Joined(Waiter {
            slot: self.clone(),
            id,
            done: false,
        })
    }

    /// Takes the slot out of the map if it is still there.
    fn remove_from_map(self: &Arc<Self>) {
        let removed = {
            let mut map = crate::config::lock_map(&self.shared);
            match map.get(&self.hash) {
                Some(entry) if std::ptr::addr_eq(Arc::as_ptr(entry), Arc::as_ptr(self)) => {
                    map.remove(&self.hash)
                }
                _ => None,
            }
        };
        // Dropped outside the map's lock.
        drop(removed);
    }

    /// Ends the call whose upstream future panicked while polled (its lock poisoned, here
    /// recovered): every waiter fails with it.
    fn break_poisoned(self: &Arc<Self>, mut upstream: MutexGuard<'_, Option<Pin<Box<U>>>>) {
        let ended = upstream.take().map(|future| {
            let ended = self.finish(
                Outcome::Failed(Arc::new(broken("the upstream call panicked"))),
                None,
            );
            (future, ended)
        });
        drop(upstream);
        if let Some((future, ended)) = ended {
            drop(future);
            self.announce(ended);
        }
    }

    /// Records how the call ended, under one lock with the waiter `leaving` leaving (the
    /// one that took an unshared answer), so that no waiter nor joiner sees the call in
    /// between; then wakes every waiter and leaves the map so the next identical request
    /// starts a new call. Called holding the upstream's lock (the state's comes after it).
    fn finish(self: &Arc<Self>, outcome: Outcome<B>, leaving: Option<usize>) -> Ended {
        let mut state = lock(&self.state);
        if let Some(id) = leaving {
            state.leave(id);
            self.shared.waiters.fetch_sub(1, Ordering::Relaxed);
        }
        state.outcome = outcome;
        self.ended.store(true, Ordering::Release);
        Ended {
            leader: state.leader_waker.take(),
            joiners: std::mem::take(&mut state.wakers),
        }
    }

    /// [`finish`](Self::finish) by the waiter `id` that polled the upstream to its end,
    /// which takes its share under the same lock (and is not woken: it has its answer).
    /// Alone, it takes the answer as it came, never stored in the slot.
    ///
    /// Then, out of the state's lock, drops the upstream's lock and future and announces
    /// the end (as [`announce`](Self::announce)).
    #[inline]
    fn finish_taking(
        self: &Arc<Self>,
        id: usize,
        fetched: Fetched<B>,
        upstream: MutexGuard<'_, Option<Pin<Box<U>>>>,
        future: Option<Pin<Box<U>>>,
    ) -> Answer<B> {
        let mut state = lock(&self.state);
        let answer = if state.live == 1 {
            state.outcome = Outcome::Taken;
            self.ended.store(true, Ordering::Release);
            state.leave(id);
            self.shared.waiters.fetch_sub(1, Ordering::Relaxed);
            match fetched {
                Fetched::Whole(response) => {
                    let varies = response.varies;
                    Answer::Response(response.into_response(), varies)
                }
                Fetched::Failed(error) => Answer::Error(error),
                Fetched::Oversize(_) => Answer::Error(broken("an unshared answer to share")),
            }
        } else {
            state.outcome = match fetched {
                Fetched::Whole(response) => Outcome::Ready(response),
                Fetched::Failed(error) => Outcome::Failed(Arc::new(error)),
                Fetched::Oversize(_) => {
                    Outcome::Failed(Arc::new(broken("an unshared answer to share")))
                }
            };
            self.ended.store(true, Ordering::Release);
            take(&mut state, id, &self.shared)
                .unwrap_or_else(|| Answer::Error(broken("outcome changed under its lock")))
        };
        let ended = Ended {
            leader: state.leader_waker.take(),
            joiners: std::mem::take(&mut state.wakers),
        };
        drop(state);
        drop(upstream);
        drop(future);
        self.announce(ended);
        answer
    }

    /// [`finish`](Self::finish) for an answer over the body limit, polled by waiter `id`:
    /// the answer goes to the leader if it still waits (its request went upstream, it has
    /// none to resend), else to `id`, which leaves under the same lock (returned here).
    #[allow(clippy::type_complexity)]
    fn finish_oversize(
        self: &Arc<Self>,
        id: usize,
        response: Response<CoalesceBody<B>>,
    ) -> (Ended, Option<Response<CoalesceBody<B>>>) {
        let mut state = lock(&self.state);
        self.ended.store(true, Ordering::Release);
        let mine = if id != LEADER && state.leader_live {
            state.outcome = Outcome::Oversize(Some(response));
            None
        } else {
            state.leave(id);
            self.shared.waiters.fetch_sub(1, Ordering::Relaxed);
            state.outcome = Outcome::Oversize(None);
            Some(response)
        };
        let ended = Ended {
            leader: state.leader_waker.take(),
            joiners: std::mem::take(&mut state.wakers),
        };
        (ended, mine)
    }

    /// After [`finish`](Self::finish), out of every lock.
    fn announce(self: &Arc<Self>, ended: Ended) {
        self.remove_from_map();
        for waker in ended
            .leader
            .into_iter()
            .chain(ended.joiners.into_iter().flatten())
        {
            waker.wake();
        }
    }
}

/// The wakers of a call that ended, to wake out of the locks.
struct Ended {
    leader: Option<Waker>,
    joiners: Vec<Option<Waker>>,
}

impl<B> State<B> {
    /// Wakes every waiter registered (each waker once: a waiter registers again when
    /// polled).
    fn wake_all(&mut self) {
        if let Some(waker) = self.leader_waker.take() {
            waker.wake();
        }
        for waker in self.wakers.iter_mut().filter_map(Option::take) {
            waker.wake();
        }
    }

    /// Whether waiter `id` has no waker registered: it was woken and has not been polled
    /// since (or was never polled), so it may hold a wake it will not act on.
    fn unregistered(&self, id: usize) -> bool {
        if id == LEADER {
            self.leader_waker.is_none()
        } else {
            self.wakers.get(id).is_none_or(Option::is_none)
        }
    }

    /// A waiter is done waiting (answered, or gone).
    fn leave(&mut self, id: usize) {
        self.live -= 1;
        if id == LEADER {
            self.leader_waker = None;
            self.leader_live = false;
            if let Outcome::Oversize(answer) = &mut self.outcome {
                // Nobody else may take it.
                drop(answer.take());
            }
        } else {
            self.joiners -= 1;
            if let Some(waker) = self.wakers.get_mut(id) {
                *waker = None;
            }
            if matches!(self.outcome, Outcome::Pending) {
                self.free.push(id);
            }
        }
    }

    fn register(&mut self, id: usize, waker: &Waker) {
        let place = if id == LEADER {
            &mut self.leader_waker
        } else {
            if id >= self.wakers.len() {
                if id >= self.next_id {
                    // Not an id this slot gave.
                    return;
                }
                self.wakers.resize_with(id + 1, || None);
            }
            &mut self.wakers[id]
        };
        match place {
            Some(old) if old.will_wake(waker) => {}
            _ => *place = Some(waker.clone()),
        }
    }
}

/// One caller's place in a slot: polled for the answer, dropped to leave.
pub(crate) struct Waiter<U, B>
where
    U: Send + 'static,
    B: Send + 'static,
{
    slot: Arc<Slot<U, B>>,
    id: usize,
    done: bool,
}

impl<U, B> Waiter<U, B>
where
    U: Send + 'static,
    B: Send + 'static,
{
    /// The slot this waiter waits in.
    pub(crate) fn slot(&self) -> &Arc<Slot<U, B>> {
        &self.slot
    }

    /// Waits for the answer, polling the upstream call once if no other waiter is polling
    /// it right now.
    #[inline]
    pub(crate) fn poll(&mut self, cx: &mut Context<'_>) -> Poll<Answer<B>>
    where
        U: Future<Output = Fetched<B>>,
    {
        if self.done {
            return Poll::Ready(Answer::Error(tower_bulwark_core::polled_after_completion()));
        }
        loop {
            if self.slot.ended.load(Ordering::Acquire) {
                // Ended: the answer is there to take (the outcome is set with the flag).
                return take_or_register(&self.slot, self.id, &mut self.done, cx);
            }
            let mut wake_on_panic = WakeOnPanic {
                slot: &self.slot,
                armed: false,
            };
            let mut upstream = match self.slot.upstream.try_lock() {
                Ok(upstream) => upstream,
                Err(TryLockError::WouldBlock) => {
                    // Another waiter is polling it: registered, so that its progress
                    // wakes this one too, then tried once more. If it is still locked,
                    // the poll holding it ends after this registration, and its look at
                    // `notified` (or its end) wakes this waiter.
                    if let Poll::Ready(answer) =
                        take_or_register(&self.slot, self.id, &mut self.done, cx)
                    {
                        return Poll::Ready(answer);
                    }
                    match self.slot.upstream.try_lock() {
                        Ok(upstream) => upstream,
                        Err(TryLockError::WouldBlock) => return Poll::Pending,
                        Err(TryLockError::Poisoned(poisoned)) => {
                            self.slot.break_poisoned(poisoned.into_inner());
                            continue;
                        }
                    }
                }
                Err(TryLockError::Poisoned(poisoned)) => {
                    // The upstream future panicked while polled: the call is broken.
                    self.slot.break_poisoned(poisoned.into_inner());
                    continue;
                }
            };
            // Ended (the outcome is set first).
            let Some(future) = upstream.as_mut() else {
                drop(upstream);
                return take_or_register(&self.slot, self.id, &mut self.done, cx);
            };
            // Wakes from here on are for this poll, or after it.
            self.slot.notified.store(false, Ordering::Relaxed);
            let waker = Waker::from(self.slot.clone());
            let mut upstream_cx = Context::from_waker(&waker);
            // Polled with no current deadline: the call is every waiter's, not only the
            // one polling it now (each waiter's own deadline ends its own wait).
            wake_on_panic.armed = true;
            let polled = Deadline::unscoped(|| future.as_mut().poll(&mut upstream_cx));
            wake_on_panic.armed = false;
            let Poll::Ready(fetched) = polled else {
                drop(upstream);
                drop(wake_on_panic);
                let mut state = lock(&self.slot.state);
                // Another waiter may have polled the call to its end since.
                if let Some(answer) = take(&mut state, self.id, &self.slot.shared) {
                    self.done = true;
                    return Poll::Ready(answer);
                }
                // This waiter registers now (under the lock the slot's waker takes, so no
                // wake from here on misses it). A waiter that found the upstream locked
                // while it was polled registered before this point; if the upstream woke
                // the slot meanwhile, that wake may have come before either registered:
                // wake them (this one included) now.
                state.register(self.id, cx.waker());
                if self.slot.notified.swap(false, Ordering::Relaxed) {
                    state.wake_all();
                }
                return Poll::Pending;
            };
            let future = upstream.take();
            let fetched = match fetched {
                Fetched::Oversize(response) => {
                    let (ended, mine) = self.slot.finish_oversize(self.id, response);
                    drop(upstream);
                    drop(future);
                    self.slot.announce(ended);
                    self.slot
                        .shared
                        .reporter
                        .report(CoalesceEventKind::OverBody);
                    match mine {
                        Some(response) => {
                            self.done = true;
                            let varies = response.headers().contains_key(VARY);
                            return Poll::Ready(Answer::Response(response, varies));
                        }
                        // The leader's: this waiter resends.
                        None => continue,
                    }
                }
                fetched => fetched,
            };
            self.done = true;
            return Poll::Ready(self.slot.finish_taking(self.id, fetched, upstream, future));
        }
    }
}

/// Under the state's lock: waiter `id`'s answer if the call has ended (the waiter is
/// `done`), else its waker registered.
fn take_or_register<U, B>(
    slot: &Slot<U, B>,
    id: usize,
    done: &mut bool,
    cx: &mut Context<'_>,
) -> Poll<Answer<B>> {
    let mut state = lock(&slot.state);
    if let Some(answer) = take(&mut state, id, &slot.shared) {
        *done = true;
        return Poll::Ready(answer);
    }
    state.register(id, cx.waker());
    Poll::Pending
}

/// The share of an ended call of waiter `id`, if it has ended; the waiter is done then.
#[inline]
fn take<B>(state: &mut State<B>, id: usize, shared: &Shared) -> Option<Answer<B>> {
    let last = state.live == 1;
    let answer = match &mut state.outcome {
        Outcome::Pending => return None,
        Outcome::Ready(response) if !last => Answer::Response(response.copy(), response.varies),
        Outcome::Failed(error) if !last => {
            Answer::Error(Box::new(CoalescedError::new(error.clone())))
        }
        Outcome::Ready(_) | Outcome::Failed(_) => {
            match std::mem::replace(&mut state.outcome, Outcome::Taken) {
                Outcome::Ready(response) => {
                    let varies = response.varies;
                    Answer::Response(response.into_response(), varies)
                }
                Outcome::Failed(error) => Answer::Error(
                    Arc::try_unwrap(error)
                        .unwrap_or_else(|error| Box::new(CoalescedError::new(error))),
                ),
                _ => Answer::Error(broken("outcome changed under its lock")),
            }
        }
        Outcome::Oversize(answer) if id == LEADER => match answer.take() {
            Some(response) => {
                let varies = response.headers().contains_key(VARY);
                Answer::Response(response, varies)
            }
            None => Answer::Error(broken("answer already taken")),
        },
        Outcome::Oversize(_) => Answer::Resend,
        Outcome::Abandoned | Outcome::Taken => Answer::Error(broken("answer already taken")),
    };
    state.leave(id);
    shared.waiters.fetch_sub(1, Ordering::Relaxed);
    Some(answer)
}

impl<U, B> Drop for Waiter<U, B>
where
    U: Send + 'static,
    B: Send + 'static,
{
    fn drop(&mut self) {
        if self.done {
            return;
        }
        self.slot.shared.waiters.fetch_sub(1, Ordering::Relaxed);
        let mut state = lock(&self.slot.state);
        let held_a_wake = state.unregistered(self.id);
        state.leave(self.id);
        if !matches!(state.outcome, Outcome::Pending) {
            // Ended: every waiter was woken.
            return;
        }
        if state.live > 0 {
            // A wake this waiter was given and did not act on (it may have been the only
            // one the upstream sent) goes to the others, one of which polls it.
            if held_a_wake {
                state.wake_all();
            }
            return;
        }
        // Nobody waits any more: cancel the upstream call.
        state.outcome = Outcome::Abandoned;
        self.slot.ended.store(true, Ordering::Release);
        drop(state);
        let upstream = lock(&self.slot.upstream).take();
        drop(upstream);
        self.slot.remove_from_map();
        self.slot
            .shared
            .reporter
            .report(CoalesceEventKind::Abandoned);
    }
}

impl<U, B> Slot<U, B> {
    /// The layer's shared state.
    pub(crate) fn shared(&self) -> &Arc<Shared> {
        &self.shared
    }
}

/// The lost wakeup of the `try_lock` (see the module's docs), model-checked: waiter A
/// polls the upstream, which wakes the slot during that poll; waiter B is polled at the
/// same time. However the two interleave, B ends answered or woken, never left waiting for
/// A's caller, which here never polls A again.
#[cfg(all(test, bulwark_loom))]
mod loom_model {
    use std::future::Future;
    use std::pin::Pin;
    use std::sync::Arc;
    use std::task::{Context, Poll, Wake, Waker};

    use tower_bulwark_core::sync::{AtomicBool, Ordering};

    use super::{Answer, Join, Slot, Waiter};
    use crate::upstream::{Fetched, SharedResponse};
    use crate::CoalesceLayer;

    /// Wakes itself during its first poll (its I/O ready meanwhile), takes a while (it
    /// yields to the other thread: without it loom would not run that thread in this
    /// window, as nothing in it conflicts with the other thread's operations) and returns
    /// `Pending`; fails on its second.
    struct WakesMidPoll {
        polls: usize,
    }

    impl Future for WakesMidPoll {
        type Output = Fetched<()>;

        fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
            self.polls += 1;
            if self.polls == 1 {
                cx.waker().wake_by_ref();
                loom::thread::yield_now();
                return Poll::Pending;
            }
            Poll::Ready(Fetched::Failed("the call's answer".into()))
        }
    }

    #[derive(Default)]
    struct Flag(AtomicBool);

    impl Wake for Flag {
        fn wake(self: Arc<Self>) {
            self.0.store(true, Ordering::SeqCst);
        }
    }

    #[test]
    fn a_waiter_that_finds_the_upstream_polled_is_never_left_unwoken() {
        loom::model(|| {
            let layer = CoalesceLayer::new();
            let shared = layer.shared.clone();
            let parts = http::Request::get("http://api.test/hot")
                .body(())
                .unwrap()
                .into_parts()
                .0;
            let probe = shared.key.probe(&parts).expect("a GET is coalesced");
            let key = shared.key.store(&parts, &probe);
            let mut a = Slot::<WakesMidPoll, ()>::lead(
                shared,
                probe.hash,
                key,
                Box::pin(WakesMidPoll { polls: 0 }),
            );
            let slot = a.slot().clone();
            let Join::Joined(mut b) = slot.join(10) else {
                panic!("the call has room and has not ended");
            };

            let driver = loom::thread::spawn(move || {
                let waker = Waker::from(Arc::new(Flag::default()));
                // Whatever it comes to, A's caller never polls it again.
                let _ = a.poll(&mut Context::from_waker(&waker));
                a
            });
            let b_flag = Arc::new(Flag::default());
            let b_waker = Waker::from(b_flag.clone());
            let answered = b.poll(&mut Context::from_waker(&b_waker)).is_ready();
            let _a = driver.join().unwrap();
            assert!(
                answered || b_flag.0.load(Ordering::SeqCst),
                "B waits, unwoken, on a call only A's caller would poll again"
            );
            if !answered {
                let answer = b.poll(&mut Context::from_waker(&b_waker));
                assert!(matches!(answer, Poll::Ready(Answer::Error(_))));
            }
        });
    }

    /// A slot whose call is `upstream`, with its leader and one joiner.
    fn leader_and_joiner<U>(upstream: U) -> (Waiter<U, ()>, Waiter<U, ()>)
    where
        U: Future<Output = Fetched<()>> + Send + 'static,
    {
        let layer = CoalesceLayer::new();
        let shared = layer.shared.clone();
        let parts = http::Request::get("http://api.test/hot")
            .body(())
            .unwrap()
            .into_parts()
            .0;
        let probe = shared.key.probe(&parts).expect("a GET is coalesced");
        let key = shared.key.store(&parts, &probe);
        let a = Slot::lead(shared, probe.hash, key, Box::pin(upstream));
        let Join::Joined(b) = a.slot().join(10) else {
            panic!("the call has room and has not ended");
        };
        (a, b)
    }

    /// The driver registers only after its poll returned `Pending` (a poll that ends the
    /// call registers nothing): A and B polled at once, each once, on a call that wakes
    /// itself during its first poll. However they interleave (B driving, A finding it
    /// locked, or the other way round, or one after the other), each ends answered or
    /// woken: none waits, unwoken, for a call another has ended or was woken to poll.
    #[test]
    fn waiters_polled_at_once_each_end_answered_or_woken() {
        loom::model(|| {
            let (mut a, mut b) = leader_and_joiner(WakesMidPoll { polls: 0 });
            let a_flag = Arc::new(Flag::default());
            let a_waker = Waker::from(a_flag.clone());
            let other = loom::thread::spawn(move || {
                let answered = a.poll(&mut Context::from_waker(&a_waker)).is_ready();
                (a, answered)
            });
            let b_flag = Arc::new(Flag::default());
            let b_waker = Waker::from(b_flag.clone());
            let b_answered = b.poll(&mut Context::from_waker(&b_waker)).is_ready();
            let (_a, a_answered) = other.join().unwrap();
            assert!(
                a_answered || a_flag.0.load(Ordering::SeqCst),
                "A left unwoken"
            );
            assert!(
                b_answered || b_flag.0.load(Ordering::SeqCst),
                "B left unwoken"
            );
        });
    }

    /// Answered at its first poll.
    struct AnswersAtOnce;

    impl Future for AnswersAtOnce {
        type Output = Fetched<()>;

        fn poll(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<Self::Output> {
            Poll::Ready(Fetched::Whole(SharedResponse {
                head: http::Response::new(()).into_parts().0,
                varies: false,
                body: bytes::Bytes::from_static(b"the call's answer"),
                trailers: None,
            }))
        }
    }

    /// A driver alone takes the answer without storing it in the slot: a joiner that
    /// joins while it ends either finds the call ended (and starts the next) or is
    /// counted, and then gets the answer too.
    #[test]
    fn a_joiner_racing_the_lone_driver_is_answered_or_refused() {
        loom::model(|| {
            let (mut a, b) = leader_and_joiner(AnswersAtOnce);
            // The joiner of the model leaves at once: A is alone, unless C joins first.
            drop(b);
            let slot = a.slot().clone();
            let joiner = loom::thread::spawn(move || match slot.join(10) {
                Join::Joined(c) => Some(c),
                Join::Ended => None,
                Join::Full => panic!("the call has room"),
            });
            let waker = Waker::from(Arc::new(Flag::default()));
            let answer = a.poll(&mut Context::from_waker(&waker));
            assert!(matches!(answer, Poll::Ready(Answer::Response(..))));
            if let Some(mut c) = joiner.join().unwrap() {
                let answer = c.poll(&mut Context::from_waker(&waker));
                assert!(
                    matches!(answer, Poll::Ready(Answer::Response(..))),
                    "a joiner counted in gets the answer"
                );
            }
        });
    }
}
