use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use crate::breaker::Breaker;
use crate::state::Mode;
use crate::{State, Transition};

/// Reads and steers a breaker at runtime. Cheap to clone; every clone steers the same
/// breaker.
///
/// ```
/// use tower_bulwark_breaker::{CircuitBreakerLayer, State};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let layer = CircuitBreakerLayer::new();
/// let handle = layer.handle();
/// handle.force_open(); // isolate the dependency
/// assert_eq!(handle.state(), State::ForcedOpen);
/// handle.reset();
/// assert_eq!(handle.state(), State::Closed);
/// # }
/// ```
#[derive(Clone)]
pub struct BreakerHandle {
    breaker: Arc<Breaker>,
}

/// A point-in-time view of a breaker.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct Snapshot {
    /// The current state (an operator state when one is set).
    pub state: State,
    /// Whether the breaker keeps a window of calls (a failure-rate or slow-call-rate
    /// condition is enabled). Without one, `calls`, `failures`, `slow_calls` stay 0 and the
    /// rates `None`: only `consecutive_failures` tells how it is doing.
    pub windowed: bool,
    /// Calls in the window (0 when no rate condition is enabled).
    pub calls: u64,
    /// Failed calls in the window.
    pub failures: u64,
    /// Slow calls in the window.
    pub slow_calls: u64,
    /// `failures / calls`, if the window holds any call.
    pub failure_rate: Option<f64>,
    /// `slow_calls / calls`, if the window holds any call.
    pub slow_call_rate: Option<f64>,
    /// Failures in a row so far.
    pub consecutive_failures: u32,
    /// How long the breaker has been in `state`: since an operator state (forced open,
    /// disabled, metrics only) was set, else since the automatic state machine entered its
    /// state (after [`resume`](BreakerHandle::resume), the machine's state may be older
    /// than the operator state was).
    pub time_in_state: Duration,
    /// Probe calls in flight in the current half-open phase (probes of an ended phase,
    /// still running, hold no slot).
    pub probes_in_flight: u32,
    /// Calls refused since the breaker was built.
    pub rejected: u64,
    /// Calls metrics-only mode let through that would have been refused.
    pub would_reject: u64,
    /// Trips since the open duration's growth last started over.
    pub trips: u32,
    /// While the breaker is open (and no operator state hides it): the time until a probe
    /// may go (zero once the open duration has passed and no call has come to probe yet).
    /// `None` in every other state.
    pub next_probe_in: Option<Duration>,
}

impl BreakerHandle {
    pub(crate) fn new(breaker: Arc<Breaker>) -> Self {
        BreakerHandle { breaker }
    }

    /// The breaker's name.
    pub fn name(&self) -> &str {
        &self.breaker.config.name
    }

    /// The current state.
    pub fn state(&self) -> State {
        self.breaker.state()
    }

    /// Counts, rates and timings.
    pub fn snapshot(&self) -> Snapshot {
        self.breaker.snapshot()
    }

    /// The last 16 state changes, oldest first, operator changes included
    /// ([`Reason::Operator`](crate::Reason::Operator)). Recorded where the breaker changes
    /// state, so a reader that looks less often than it changes misses none of the last
    /// 16; each carries a [`sequence`](Transition::sequence) number to tell which ones a
    /// reader has already seen.
    ///
    /// ```
    /// use tower_bulwark_breaker::{CircuitBreakerLayer, Reason, State};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let handle = CircuitBreakerLayer::new().handle();
    /// handle.force_open();
    /// handle.reset();
    /// let changes = handle.transitions();
    /// assert_eq!(changes.len(), 2);
    /// assert_eq!((changes[0].from, changes[0].to), (State::Closed, State::ForcedOpen));
    /// assert_eq!((changes[1].to, changes[1].reason, changes[1].sequence), (State::Closed, Reason::Operator, 2));
    /// # }
    /// ```
    pub fn transitions(&self) -> Vec<Transition> {
        self.breaker.transitions()
    }

    /// Refuses every call until another operation here.
    pub fn force_open(&self) {
        self.breaker.set_mode(Mode::ForcedOpen);
    }

    /// Back to normal operation, closed now, with an empty window. The growth of the open
    /// duration continues from where it was.
    pub fn force_closed(&self) {
        self.breaker.close(false);
    }

    /// Admits every call and records nothing, until another operation here.
    pub fn disable(&self) {
        self.breaker.set_mode(Mode::Disabled);
    }

    /// Shadow mode: decides as usual and counts what it would refuse, refusing nothing.
    pub fn metrics_only(&self) {
        self.breaker.set_mode(Mode::MetricsOnly);
    }

    /// Back to normal operation from an operator state, keeping the automatic state.
    pub fn resume(&self) {
        self.breaker.set_mode(Mode::Normal);
    }

    /// Back to normal operation, closed, with an empty window and the open duration's
    /// growth started over: as if just built.
    pub fn reset(&self) {
        self.breaker.close(true);
    }
}

impl fmt::Debug for BreakerHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BreakerHandle")
            .field("name", &self.name())
            .field("state", &self.state())
            .finish()
    }
}
