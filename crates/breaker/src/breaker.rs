//! The shared state of one breaker: admission, recording and transitions.
//!
//! The closed path is lock-free: admission reads two atomics, recording adjusts a few
//! counters. The mutex is taken only to change state, which is rare.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::futures::OwnedNotified;
use tokio::sync::Notify;
use tokio::time::Instant;
use tower_bulwark_core::stripes::Stripe;
use tower_bulwark_core::{Listeners, Outcome, Rejection, RejectionKind, SeededRng};

use crate::config::{Config, WindowKind};
use crate::events::{BreakerEvent, Reason};
use crate::history::{History, Transition};
use crate::probes::Probes;
use crate::state::{Machine, Mode, Phase};
use crate::window::{CountWindow, TimeWindow, Window};
use crate::{CircuitOpen, Snapshot, State};
use tower_bulwark_core::stripes::Padded;
use tower_bulwark_core::sync::{
    AtomicBool, AtomicU32, AtomicU64, AtomicU8, Mutex, MutexGuard, Ordering::*,
};

#[derive(Debug)]
pub(crate) struct Breaker {
    pub(crate) config: Config,
    pub(crate) listeners: Listeners<BreakerEvent>,
    start: Instant,
    mode: AtomicU8,
    phase: AtomicU64,
    /// Nanoseconds since `start` at which an open breaker lets a probe through.
    open_until: AtomicU64,
    /// Nanoseconds since `start` at which the current state began.
    entered: AtomicU64,
    /// Nanoseconds since `start` at which the operator mode last changed what the breaker
    /// shows. Written under the transition lock.
    mode_since: AtomicU64,
    /// Nanoseconds since `start` at which the recovery ramp ends; 0 when not ramping.
    ramp_until: AtomicU64,
    /// Trips since the growth of the open duration last started over. Written under the
    /// transition lock; read without it, so a listener may take a snapshot.
    trips: AtomicU32,
    // What calls write is padded onto lines of its own, away from the words above that
    // every admission reads.
    recorded: Padded<Recorded>,
    probes: Padded<Probes>,
    counters: Padded<Counters>,
    transitions: Mutex<Transitions>,
    /// Readiness-mode callers waiting for a change. Each waiter's registration is its own
    /// and leaves with it: a caller that gives up leaves nothing behind.
    changes: Arc<Notify>,
}

/// What the calls recorded while closed write.
#[derive(Debug)]
struct Recorded {
    consecutive_failures: AtomicU32,
    /// `None` when no rate condition is enabled.
    window: Option<Window>,
    /// The last check of the window found fewer calls than `minimum_calls`: until one
    /// finds enough, successes check it too, so that the call completing the minimum
    /// decides. Otherwise only calls that may have raised a rate check it
    /// (see `Window::record`), which keeps the window's sums off the success path.
    short_of_minimum: AtomicBool,
    /// Counts the window's resets (each close). With the time window's latest bucket, it
    /// tells a check that found enough calls whether the window may have lost calls since
    /// it read them (see `record_closed`).
    resets: AtomicU64,
}

/// What refused calls, shadow-mode calls and calls during the recovery ramp write.
#[derive(Debug)]
struct Counters {
    ramp_calls: AtomicU64,
    rejected: AtomicU64,
    would_reject: AtomicU64,
}

#[derive(Debug)]
struct Transitions {
    jitter: SeededRng,
    /// When the breaker last closed (nanoseconds since `start`).
    closed_at: u64,
    /// The last state changes, for [`BreakerHandle::transitions`](crate::BreakerHandle::transitions).
    history: History,
}

/// The breaker refused a call. Two bytes, so `Result<Permit, Refusal>` stays as small as a
/// permit: the time until the next probe is read when the rejection is built.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Refusal {
    pub(crate) state: State,
    /// Refused by the recovery ramp, which always fails fast.
    pub(crate) by_ramp: bool,
}

/// What a call's permit holds of its breaker: a handle of its thread's stripe, so permits
/// on different cores write different reference counts.
pub(crate) type Holder = Arc<Stripe<Breaker>>;

/// An admitted call, to be finished with its outcome. Dropping it unfinished releases what
/// it holds and counts as `Ignored`.
///
/// Two words (the breaker, and the phase with the kind in its low bits), so it moves in
/// registers on the hot path.
#[derive(Debug)]
pub(crate) struct Permit {
    breaker: Holder,
    tag: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
enum PermitKind {
    /// Admitted while closed: recorded in the window.
    Normal,
    /// A half-open probe: holds a probe slot.
    Probe,
    /// Disabled or shadow-admitted: recorded nowhere.
    Untracked,
    /// Finished or released.
    Done,
}

impl PermitKind {
    fn from_bits(bits: u64) -> PermitKind {
        match bits & 0b11 {
            0 => PermitKind::Normal,
            1 => PermitKind::Probe,
            2 => PermitKind::Untracked,
            _ => PermitKind::Done,
        }
    }
}

impl Breaker {
    pub(crate) fn new(config: Config, listeners: Listeners<BreakerEvent>) -> Self {
        let window = (config.failure_rate.is_some() || config.slow_call.is_some()).then(|| {
            match config.window {
                WindowKind::Count(size) => Window::Count(CountWindow::new(size)),
                WindowKind::Time { length, buckets } => {
                    Window::Time(TimeWindow::new(length, buckets))
                }
            }
        });
        Breaker {
            probes: Padded(Probes::new(config.half_open_probes)),
            transitions: Mutex::new(Transitions {
                jitter: SeededRng::new(config.seed),
                closed_at: 0,
                history: History::new(),
            }),
            config,
            listeners,
            start: Instant::now(),
            mode: AtomicU8::new(Mode::Normal as u8),
            phase: AtomicU64::new(Phase::INITIAL.bits()),
            open_until: AtomicU64::new(0),
            entered: AtomicU64::new(0),
            mode_since: AtomicU64::new(0),
            ramp_until: AtomicU64::new(0),
            trips: AtomicU32::new(0),
            recorded: Padded(Recorded {
                consecutive_failures: AtomicU32::new(0),
                window,
                short_of_minimum: AtomicBool::new(true),
                resets: AtomicU64::new(0),
            }),
            counters: Padded(Counters {
                ramp_calls: AtomicU64::new(0),
                rejected: AtomicU64::new(0),
                would_reject: AtomicU64::new(0),
            }),
            changes: Arc::new(Notify::new()),
        }
    }

    /// Nanoseconds since `start`.
    #[inline]
    fn now(&self) -> u64 {
        nanos(Instant::now().saturating_duration_since(self.start))
    }

    #[inline]
    fn phase(&self) -> Phase {
        Phase::from_bits(self.phase.load(Acquire))
    }

    #[inline]
    fn mode(&self) -> Mode {
        Mode::from_u8(self.mode.load(Acquire))
    }

    /// Whether calls need their start time: for slow-call detection.
    #[inline]
    pub(crate) fn times_calls(&self) -> bool {
        self.config.slow_call.is_some()
    }

    // === admission ===

    /// Admits a call or says why not. A refusal is only counted as a rejection when a call
    /// is actually refused ([`Breaker::reject`]), not while a readiness-mode caller waits.
    #[inline(always)]
    pub(crate) fn acquire(holder: &Holder) -> Result<Permit, Refusal> {
        let this: &Breaker = holder;
        match this.mode() {
            Mode::Normal => Self::decide(holder),
            Mode::Disabled => Ok(Self::permit(holder, Phase::INITIAL, PermitKind::Untracked)),
            Mode::ForcedOpen => Err(Refusal {
                state: State::ForcedOpen,
                by_ramp: false,
            }),
            Mode::MetricsOnly => Ok(Self::decide(holder).unwrap_or_else(|refusal| {
                this.counters.would_reject.fetch_add(1, Relaxed);
                this.listeners.emit(|| BreakerEvent::WouldReject {
                    breaker: this.config.name.clone(),
                    state: refusal.state,
                });
                Self::permit(holder, Phase::INITIAL, PermitKind::Untracked)
            })),
        }
    }

    #[inline(always)]
    fn decide(holder: &Holder) -> Result<Permit, Refusal> {
        let this: &Breaker = holder;
        // One instant for the whole decision, read only when needed: a transition it makes
        // starts no earlier, so the decision ends (it cannot chase the clock from open to
        // half-open, timed out, to open again).
        let mut at = None;
        loop {
            let phase = this.phase();
            match phase.machine() {
                Machine::Closed => {
                    if this.ramp_refuses() {
                        return Err(Refusal {
                            state: State::Closed,
                            by_ramp: true,
                        });
                    }
                    return Ok(Self::permit(holder, phase, PermitKind::Normal));
                }
                Machine::Open => {
                    let now = *at.get_or_insert_with(|| this.now());
                    let until = this.open_until.load(Acquire);
                    if now < until {
                        return Err(Refusal {
                            state: State::Open,
                            by_ramp: false,
                        });
                    }
                    this.transition(phase, Machine::HalfOpen, Reason::OpenElapsed);
                }
                Machine::HalfOpen => {
                    let now = *at.get_or_insert_with(|| this.now());
                    if this.half_open_timed_out(now) {
                        this.transition(phase, Machine::Open, Reason::HalfOpenTimedOut);
                        continue;
                    }
                    // The slot is of this phase: once it is over, none is left to take.
                    if this.probes.try_acquire(phase.generation()) {
                        return Ok(Self::permit(holder, phase, PermitKind::Probe));
                    }
                    return Err(Refusal {
                        state: State::HalfOpen,
                        by_ramp: false,
                    });
                }
            }
        }
    }

    #[inline(always)]
    fn permit(holder: &Holder, phase: Phase, kind: PermitKind) -> Permit {
        Permit {
            breaker: holder.clone(),
            tag: (phase.bits() << 2) | kind as u64,
        }
    }

    /// Whether half-open has lasted its maximum wait at `now` without the probes concluding.
    #[cold]
    fn half_open_timed_out(&self, now: u64) -> bool {
        let entered = self.entered.load(Acquire);
        now.saturating_sub(entered) >= nanos(self.config.half_open_max_wait)
    }

    /// Time until an open breaker lets a probe through; `None` in other states.
    fn retry_after(&self, refusal: Refusal) -> Option<Duration> {
        (refusal.state == State::Open)
            .then(|| Duration::from_nanos(self.open_until.load(Acquire).saturating_sub(self.now())))
    }

    /// Whether the recovery ramp refuses this call: after closing, the share admitted grows
    /// linearly from 0 to 1 over the ramp; admissions are spread evenly by a counter.
    #[inline(always)]
    fn ramp_refuses(&self) -> bool {
        let until = self.ramp_until.load(Relaxed);
        until != 0 && self.ramp_refuses_until(until)
    }

    #[cold]
    fn ramp_refuses_until(&self, until: u64) -> bool {
        let Some(ramp) = self.config.ramp else {
            return false;
        };
        let now = self.now();
        if now >= until {
            let _ = self.ramp_until.compare_exchange(until, 0, Relaxed, Relaxed);
            return false;
        }
        let ramp = ramp.as_nanos() as f64;
        let share = 1.0 - (until - now) as f64 / ramp;
        let n = self.counters.ramp_calls.fetch_add(1, Relaxed) as f64;
        ((n + 1.0) * share).floor() <= (n * share).floor()
    }

    // === transitions ===

    fn lock(&self) -> MutexGuard<'_, Transitions> {
        self.transitions.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Moves from `from` to `to`, unless another thread already moved on from `from`.
    ///
    /// Announced before the lock is let go: announced after it, a racing transition could
    /// be announced first, and listeners would see the changes out of order.
    #[cold]
    fn transition(&self, from: Phase, to: Machine, reason: Reason) {
        {
            let mut transitions = self.lock();
            // Read under the lock: the history is in the order of the lock, and so are
            // the times.
            let now = self.now();
            if self.phase() != from {
                return;
            }
            let next = from.next(to);
            self.enter(&mut transitions, from.machine(), next, now);
            self.announce(
                &mut transitions,
                now,
                from.machine().state(),
                to.state(),
                reason,
            );
        }
        self.wake_all();
    }

    /// Sets up the state `next` and publishes it. Called with the transition lock held.
    fn enter(&self, transitions: &mut Transitions, from: Machine, next: Phase, now: u64) {
        // Before the phase is published: the probe slots of the phase being left are void
        // from here on, so no call that decided in it can take one.
        self.probes.start(next.generation());
        match next.machine() {
            Machine::Open => {
                let healthy = self.config.open.reset_after().is_some_and(|reset| {
                    from == Machine::Closed
                        && Duration::from_nanos(now.saturating_sub(transitions.closed_at)) >= reset
                });
                let trips = if healthy {
                    1
                } else {
                    self.trips.load(Relaxed).saturating_add(1)
                };
                self.trips.store(trips, Relaxed);
                let wait = self.config.open.wait(trips, transitions.jitter.next_unit());
                self.open_until
                    .store(now.saturating_add(nanos(wait)), Release);
            }
            Machine::HalfOpen => {}
            Machine::Closed => {
                if let Some(window) = &self.recorded.window {
                    window.reset();
                    // The window is empty: successes check it again until it holds the
                    // minimum, and a check that read it before the reset cannot say
                    // otherwise (it sees `resets` move).
                    self.recorded.resets.fetch_add(1, SeqCst);
                    self.recorded.short_of_minimum.store(true, SeqCst);
                }
                self.recorded.consecutive_failures.store(0, Relaxed);
                transitions.closed_at = now;
                if let Some(ramp) = self.config.ramp {
                    self.counters.ramp_calls.store(0, Relaxed);
                    self.ramp_until
                        .store(now.saturating_add(nanos(ramp)).max(1), Relaxed);
                }
            }
        }
        self.entered.store(now, Relaxed);
        self.phase.store(next.bits(), Release);
    }

    /// Records, logs and reports a state change made at `now`. Called with the transition
    /// lock held, so changes are recorded and reported in the order they are made; waiters
    /// are woken after it is let go.
    #[cold]
    fn announce(
        &self,
        transitions: &mut Transitions,
        now: u64,
        from: State,
        to: State,
        reason: Reason,
    ) {
        let at = self
            .start
            .checked_add(Duration::from_nanos(now))
            .unwrap_or_else(Instant::now);
        transitions.history.record(from, to, reason, at);
        let name = &self.config.name;
        match to {
            State::Closed | State::HalfOpen => {
                tracing::info!(breaker = %name, %from, %to, %reason, "circuit breaker state changed")
            }
            _ => {
                tracing::warn!(breaker = %name, %from, %to, %reason, "circuit breaker state changed")
            }
        }
        self.listeners.emit(|| BreakerEvent::StateChanged {
            breaker: name.clone(),
            from,
            to,
            reason,
        });
    }

    // === waiting (readiness admission) ===

    /// Completes at the next state change, probe release or operator action after this
    /// call, polled or not by then.
    pub(crate) fn next_change(&self) -> OwnedNotified {
        self.changes.clone().notified_owned()
    }

    #[cold]
    fn wake_all(&self) {
        self.changes.notify_waiters();
    }

    /// When a caller refused with `refusal` should decide again, if no announced change
    /// wakes it first: when the open duration ends, or when half-open times out.
    pub(crate) fn decide_again_at(&self, refusal: Refusal) -> Option<Instant> {
        let at = match refusal.state {
            State::Open => self.open_until.load(Acquire),
            State::HalfOpen => self
                .entered
                .load(Acquire)
                .saturating_add(nanos(self.config.half_open_max_wait)),
            _ => return None,
        };
        self.start.checked_add(Duration::from_nanos(at))
    }

    // === the handle's view and operations ===

    pub(crate) fn state(&self) -> State {
        match self.mode() {
            Mode::Normal => self.phase().machine().state(),
            Mode::ForcedOpen => State::ForcedOpen,
            Mode::Disabled => State::Disabled,
            Mode::MetricsOnly => State::MetricsOnly,
        }
    }

    pub(crate) fn snapshot(&self) -> Snapshot {
        let now = self.now();
        let counts = self
            .recorded
            .window
            .as_ref()
            .map(|w| w.counts(now))
            .unwrap_or_default();
        let rate = |n: u64| (counts.calls > 0).then(|| n as f64 / counts.calls as f64);
        let state = self.state();
        // An operator state is shown since it was set; the machine's own since it entered.
        let since = match self.mode() {
            Mode::Normal => self.entered.load(Relaxed),
            _ => self.mode_since.load(Relaxed),
        };
        let next_probe_in = (state == State::Open)
            .then(|| Duration::from_nanos(self.open_until.load(Acquire).saturating_sub(now)));
        Snapshot {
            state,
            windowed: self.recorded.window.is_some(),
            calls: counts.calls,
            failures: counts.failures,
            slow_calls: counts.slow,
            failure_rate: rate(counts.failures),
            slow_call_rate: rate(counts.slow),
            consecutive_failures: self.recorded.consecutive_failures.load(Relaxed),
            time_in_state: Duration::from_nanos(now.saturating_sub(since)),
            probes_in_flight: self.probes.in_flight(),
            rejected: self.counters.rejected.load(Relaxed),
            would_reject: self.counters.would_reject.load(Relaxed),
            trips: self.trips.load(Relaxed),
            next_probe_in,
        }
    }

    /// The last state changes, oldest first.
    pub(crate) fn transitions(&self) -> Vec<Transition> {
        self.lock().history.list()
    }

    /// Sets an operator mode; under the transition lock, so its announcement keeps its
    /// place among the others.
    pub(crate) fn set_mode(&self, mode: Mode) {
        let changed = {
            let mut transitions = self.lock();
            let before = self.state();
            self.mode.store(mode as u8, Release);
            let after = self.state();
            if before != after {
                let now = self.now();
                self.mode_since.store(now, Relaxed);
                self.announce(&mut transitions, now, before, after, Reason::Operator);
            }
            before != after
        };
        if changed {
            self.wake_all();
        }
    }

    /// Back to normal operation, closed, with an empty window; `forget_trips` also starts
    /// the growth of the open duration over.
    pub(crate) fn close(&self, forget_trips: bool) {
        let before = {
            let mut transitions = self.lock();
            let before = self.state();
            if forget_trips {
                self.trips.store(0, Relaxed);
            }
            let from = self.phase();
            let now = self.now();
            self.enter(
                &mut transitions,
                from.machine(),
                from.next(Machine::Closed),
                now,
            );
            self.ramp_until.store(0, Relaxed);
            self.mode.store(Mode::Normal as u8, Release);
            if before != State::Closed {
                self.announce(
                    &mut transitions,
                    now,
                    before,
                    State::Closed,
                    Reason::Operator,
                );
            }
            before
        };
        if before != State::Closed {
            self.wake_all();
        }
    }

    /// Refuses a call: counts and reports the rejection and builds its error.
    #[cold]
    pub(crate) fn reject(&self, refusal: Refusal) -> CircuitOpen {
        let retry_after = self.retry_after(refusal);
        self.counters.rejected.fetch_add(1, Relaxed);
        self.listeners.emit(|| BreakerEvent::Rejected {
            breaker: self.config.name.clone(),
            state: refusal.state,
            retry_after,
        });
        let mut rejection = Rejection::new(RejectionKind::CircuitOpen, self.config.name.clone());
        if let Some(wait) = retry_after {
            rejection = rejection.with_retry_after(wait);
        }
        if refusal.by_ramp {
            rejection = rejection.with_reason("recovery ramp");
        }
        CircuitOpen::new(refusal.state, rejection)
    }
}

/// A duration in nanoseconds, saturating.
fn nanos(duration: Duration) -> u64 {
    u64::try_from(duration.as_nanos()).unwrap_or(u64::MAX)
}

// === impl Permit ===

impl Permit {
    /// Records the call's outcome (and its start, for slow-call detection) and releases the
    /// permit.
    #[inline]
    pub(crate) fn finish(mut self, outcome: Outcome, started: Option<Instant>) {
        self.breaker.record(&self, outcome, started);
        self.release();
    }

    fn kind(&self) -> PermitKind {
        PermitKind::from_bits(self.tag)
    }

    /// A probe whose half-open phase is over: it holds no slot any more.
    pub(crate) fn is_stale_probe(&self) -> bool {
        self.kind() == PermitKind::Probe && self.breaker.phase() != self.phase()
    }

    fn phase(&self) -> Phase {
        Phase::from_bits(self.tag >> 2)
    }

    #[inline]
    fn release(&mut self) {
        let kind = self.kind();
        self.tag |= PermitKind::Done as u64;
        if kind == PermitKind::Probe {
            self.breaker.probes.release(self.phase().generation());
            self.breaker.wake_all();
        }
    }
}

impl Drop for Permit {
    #[inline]
    fn drop(&mut self) {
        // Unfinished: the call was dropped. It says nothing about the dependency.
        self.release();
    }
}

mod record;

#[cfg(all(test, bulwark_loom))]
mod loom_model;

#[cfg(all(test, not(bulwark_loom)))]
mod tests;
