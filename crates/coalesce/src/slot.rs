//! [`Slot`]: one upstream call in flight and the callers waiting for it.
//!
//! The call is driven by whoever waits: one waiter at a time (the driver, the leader
//! first) polls the upstream future, the others sleep until it ends. When the driver
//! leaves, another waiter is woken to take over; when the last one leaves, the upstream
//! future is dropped (the call cancelled) and the slot leaves the map. The slot's state is
//! under a short `std::sync::Mutex` (CONTRIBUTING.md, rule 4: a shared store), never held
//! while the upstream future is polled, which has a lock of its own that only the driver
//! takes.

use std::any::Any;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll, Waker};

use http::Response;
use tower_bulwark_core::sync::Ordering;
use tower_bulwark_core::BoxError;

use crate::body::CoalesceBody;
use crate::config::Shared;
use crate::error::{broken, CoalescedError};
use crate::events::CoalesceEventKind;
use crate::key::StoredKey;
use crate::upstream::{Fetched, SharedResponse, Upstream};

/// A slot in the layer's map, whatever the types of the service that made it.
pub(crate) trait Entry: Send + Sync {
    /// The key its callers share.
    fn key(&self) -> &StoredKey;
    /// The slot as `Any`, to be found again as its own type.
    fn into_any(self: Arc<Self>) -> Arc<dyn Any + Send + Sync>;
}

/// The leader's waiter id.
const LEADER: usize = usize::MAX;

/// The upstream call, pinned where any waiter can poll it.
pub(crate) type PinnedUpstream<F, B> = Pin<Box<Upstream<F, B>>>;

pub(crate) struct Slot<F, B> {
    shared: Arc<Shared>,
    hash: u64,
    key: StoredKey,
    upstream: Mutex<Option<PinnedUpstream<F, B>>>,
    state: Mutex<State>,
}

struct State {
    outcome: Outcome,
    /// The waiter polling the upstream future, if one does.
    driver: Option<usize>,
    /// Waiters still waiting, the leader included.
    live: usize,
    /// Waiters that joined and are still waiting.
    joiners: usize,
    leader_waker: Option<Waker>,
    /// The joiners' wakers, by id.
    wakers: Vec<Option<Waker>>,
    /// Joiner ids free again.
    free: Vec<usize>,
}

// Boxing the answer would cost an allocation per call; the slot holds one outcome.
#[allow(clippy::large_enum_variant)]
enum Outcome {
    Pending,
    Ready(SharedResponse),
    Failed(Arc<BoxError>),
    /// The answer was over the body limit and went to the driver: the others resend.
    Oversize,
    /// Every waiter left before the end.
    Abandoned,
    /// The last waiter took the answer.
    Taken,
}

/// What a waiter comes away with.
// Moved once per waiter; boxing the response would cost an allocation each.
#[allow(clippy::large_enum_variant)]
pub(crate) enum Answer<B> {
    Response(Response<CoalesceBody<B>>),
    Error(BoxError),
    /// The answer was not shared (over the body limit): send your own call.
    Resend,
}

/// What joining a slot came to.
pub(crate) enum Join<F: Send + 'static, B: Send + 'static> {
    Joined(Waiter<F, B>),
    /// `max_waiters` wait already.
    Full,
    /// The call has ended: a new one must start.
    Ended,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl<F, B> Entry for Slot<F, B>
where
    F: Send + 'static,
    B: Send + 'static,
{
    fn key(&self) -> &StoredKey {
        &self.key
    }

    fn into_any(self: Arc<Self>) -> Arc<dyn Any + Send + Sync> {
        self
    }
}

impl<F, B> Slot<F, B>
where
    F: Send + 'static,
    B: Send + 'static,
{
    /// A slot for a new call, and its leader's waiter. The caller puts it in the map, then
    /// [`start`](Self::start)s the call.
    pub(crate) fn lead(shared: Arc<Shared>, hash: u64, key: StoredKey) -> Waiter<F, B> {
        shared.waiters.fetch_add(1, Ordering::Relaxed);
        let slot = Arc::new(Slot {
            shared,
            hash,
            key,
            upstream: Mutex::new(None),
            state: Mutex::new(State {
                outcome: Outcome::Pending,
                driver: Some(LEADER),
                live: 1,
                joiners: 0,
                leader_waker: None,
                wakers: Vec::new(),
                free: Vec::new(),
            }),
        });
        Waiter {
            slot,
            id: LEADER,
            done: false,
        }
    }

    /// Hands the slot the upstream call.
    pub(crate) fn start(&self, upstream: PinnedUpstream<F, B>) {
        *lock(&self.upstream) = Some(upstream);
    }

    /// Adds a waiter, unless the call ended or has `max_waiters` already. Called under the
    /// map's lock, so a slot found in the map is not abandoned meanwhile unnoticed.
    pub(crate) fn join(self: &Arc<Self>, max_waiters: usize) -> Join<F, B> {
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
                state.wakers.push(None);
                state.wakers.len() - 1
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

    /// Records how the call ended, wakes every waiter, and leaves the map so the next
    /// identical request starts a new call.
    fn finish(self: &Arc<Self>, outcome: Outcome) {
        let (leader, joiners) = {
            let mut state = lock(&self.state);
            state.outcome = outcome;
            state.driver = None;
            (state.leader_waker.take(), std::mem::take(&mut state.wakers))
        };
        self.remove_from_map();
        for waker in leader.into_iter().chain(joiners.into_iter().flatten()) {
            waker.wake();
        }
    }
}

impl State {
    /// A waiter is done waiting (answered, or gone).
    fn leave(&mut self, id: usize) {
        self.live -= 1;
        if id == LEADER {
            self.leader_waker = None;
        } else {
            self.joiners -= 1;
            if let Some(waker) = self.wakers.get_mut(id) {
                *waker = None;
                if matches!(self.outcome, Outcome::Pending) {
                    self.free.push(id);
                }
            }
        }
    }

    fn register(&mut self, id: usize, waker: &Waker) {
        let place = if id == LEADER {
            &mut self.leader_waker
        } else {
            match self.wakers.get_mut(id) {
                Some(place) => place,
                None => return,
            }
        };
        match place {
            Some(old) if old.will_wake(waker) => {}
            _ => *place = Some(waker.clone()),
        }
    }
}

/// One caller's place in a slot: polled for the answer, dropped to leave.
pub(crate) struct Waiter<F, B>
where
    F: Send + 'static,
    B: Send + 'static,
{
    slot: Arc<Slot<F, B>>,
    id: usize,
    done: bool,
}

impl<F, B> Waiter<F, B>
where
    F: Send + 'static,
    B: Send + 'static,
{
    /// The slot this waiter waits in.
    pub(crate) fn slot(&self) -> &Arc<Slot<F, B>> {
        &self.slot
    }

    /// Waits for the answer, driving the upstream call while this waiter is the driver.
    pub(crate) fn poll(&mut self, cx: &mut Context<'_>) -> Poll<Answer<B>>
    where
        Upstream<F, B>: Future<Output = Fetched<B>>,
    {
        if self.done {
            return Poll::Ready(Answer::Error(tower_bulwark_core::polled_after_completion()));
        }
        loop {
            {
                let mut state = lock(&self.slot.state);
                if let Some(answer) = take(&mut state, self.id, &self.slot.shared) {
                    self.done = true;
                    return Poll::Ready(answer);
                }
                match state.driver {
                    None => state.driver = Some(self.id),
                    Some(driver) if driver == self.id => {}
                    Some(_) => {
                        state.register(self.id, cx.waker());
                        return Poll::Pending;
                    }
                }
            }
            let fetched = {
                let mut upstream = lock(&self.slot.upstream);
                let Some(future) = upstream.as_mut() else {
                    drop(upstream);
                    self.slot
                        .finish(Outcome::Failed(Arc::new(broken("no upstream call"))));
                    continue;
                };
                match future.as_mut().poll(cx) {
                    Poll::Pending => return Poll::Pending,
                    Poll::Ready(fetched) => {
                        *upstream = None;
                        fetched
                    }
                }
            };
            match fetched {
                Fetched::Whole(response) => self.slot.finish(Outcome::Ready(response)),
                Fetched::Failed(error) => self.slot.finish(Outcome::Failed(Arc::new(error))),
                Fetched::Oversize(response) => {
                    {
                        let mut state = lock(&self.slot.state);
                        state.leave(self.id);
                    }
                    self.done = true;
                    self.slot.shared.waiters.fetch_sub(1, Ordering::Relaxed);
                    self.slot.finish(Outcome::Oversize);
                    self.slot
                        .shared
                        .reporter
                        .report(CoalesceEventKind::OverBody);
                    return Poll::Ready(Answer::Response(response));
                }
            }
        }
    }
}

/// The share of an ended call of waiter `id`, if it has ended; the waiter is done then.
fn take<B>(state: &mut State, id: usize, shared: &Shared) -> Option<Answer<B>> {
    let last = state.live == 1;
    let answer = match &mut state.outcome {
        Outcome::Pending => return None,
        Outcome::Ready(response) if !last => Answer::Response(response.copy()),
        Outcome::Failed(error) if !last => {
            Answer::Error(Box::new(CoalescedError::new(error.clone())))
        }
        Outcome::Ready(_) | Outcome::Failed(_) => {
            match std::mem::replace(&mut state.outcome, Outcome::Taken) {
                Outcome::Ready(response) => Answer::Response(response.into_response()),
                Outcome::Failed(error) => Answer::Error(
                    Arc::try_unwrap(error)
                        .unwrap_or_else(|error| Box::new(CoalescedError::new(error))),
                ),
                _ => Answer::Error(broken("outcome changed under its lock")),
            }
        }
        Outcome::Oversize => Answer::Resend,
        Outcome::Abandoned | Outcome::Taken => Answer::Error(broken("answer already taken")),
    };
    state.leave(id);
    shared.waiters.fetch_sub(1, Ordering::Relaxed);
    Some(answer)
}

impl<F, B> Drop for Waiter<F, B>
where
    F: Send + 'static,
    B: Send + 'static,
{
    fn drop(&mut self) {
        if self.done {
            return;
        }
        self.slot.shared.waiters.fetch_sub(1, Ordering::Relaxed);
        let mut state = lock(&self.slot.state);
        state.leave(self.id);
        if !matches!(state.outcome, Outcome::Pending) {
            return;
        }
        if state.live == 0 {
            // Nobody waits any more: cancel the upstream call.
            state.outcome = Outcome::Abandoned;
            drop(state);
            let upstream = lock(&self.slot.upstream).take();
            drop(upstream);
            self.slot.remove_from_map();
            self.slot
                .shared
                .reporter
                .report(CoalesceEventKind::Abandoned);
        } else if state.driver == Some(self.id) {
            // Hand the call to another waiter: wake one to poll it.
            state.driver = None;
            let next = state
                .leader_waker
                .take()
                .or_else(|| state.wakers.iter_mut().find_map(Option::take));
            drop(state);
            if let Some(next) = next {
                next.wake();
            }
        }
    }
}

impl<F, B> Slot<F, B> {
    /// The layer's shared state.
    pub(crate) fn shared(&self) -> &Arc<Shared> {
        &self.shared
    }
}
