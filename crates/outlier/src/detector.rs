//! The shared detector: the endpoints registered with it, their outcomes, the interval
//! rules and the ejections.

use std::fmt;
use std::sync::atomic::{AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::task::Waker;
use std::time::Duration;

use tokio::time::Instant;
use tower_bulwark_core::{Listeners, Name, Outcome};

use crate::config::{Builder, Config};
use crate::events::{OutlierEvent, Reason};
use crate::latency::{LatencyTally, Tally};
use crate::layer::OutlierLayer;
use crate::state::{EjectedCount, Ejection, NotEjected};

/// No success rate measured yet (the bits of no `f64` the detector stores).
const NO_RATE: u64 = u64::MAX;
/// No mean latency measured yet.
const NO_LATENCY: u64 = u64::MAX;

/// Outlier detection over a set of endpoints: each endpoint's service is wrapped by a layer
/// from [`layer`](Self::layer) and records its outcomes here; an endpoint that fails while
/// its peers succeed is ejected (its `poll_ready` is `Pending`) for a time that grows with
/// each ejection, never more than [`max_ejection_percent`](Builder::max_ejection_percent)
/// of the endpoints at once.
///
/// A cheap `Clone` handle: clones share the endpoints and their state. See the
/// [crate docs](crate) for the rules and an example with `tower::balance::p2c`.
#[derive(Clone)]
pub struct OutlierDetector {
    shared: Arc<Shared>,
}

pub(crate) struct Shared {
    name: Name,
    pub(crate) config: Config,
    listeners: Listeners<OutlierEvent>,
    /// Time zero of the detector's atomic timestamps (nanoseconds since it).
    epoch: Instant,
    ejected: EjectedCount,
    /// Endpoints alive (registered and not yet dropped): what the cap is a share of.
    live: AtomicUsize,
    /// When the interval rules are next due, in nanoseconds since `epoch`.
    next_evaluation: AtomicU64,
    registry: Mutex<Vec<Weak<Endpoint>>>,
}

/// One endpoint's state, shared by the services of its layer.
pub(crate) struct Endpoint {
    key: Name,
    shared: Arc<Shared>,
    successes: AtomicU64,
    failures: AtomicU64,
    consecutive: AtomicU32,
    consecutive_gateway: AtomicU32,
    pub(crate) ejection: Ejection,
    times_ejected: AtomicU32,
    /// When its last ejection ended (nanoseconds since the epoch; 0 if never).
    returned_at: AtomicU64,
    /// Up to when its count has been decayed (nanoseconds since the epoch): the decay
    /// counts whole intervals since the later of this and `returned_at`.
    last_decay: AtomicU64,
    /// The tasks of its services waiting for the end of its ejection, woken when it ends
    /// (early too: the cap rechecked after a removal). Touched only while ejected.
    waiting: Mutex<Vec<Waker>>,
    /// The success rate of the last interval with calls, as `f64` bits, or `NO_RATE`.
    last_rate: AtomicU64,
    /// The latency of its timed calls this interval (successes and timeouts; while the
    /// slow-endpoint rule is on).
    latency: LatencyTally,
    /// The mean latency of the last interval with timed calls, in nanoseconds, or
    /// `NO_LATENCY`.
    last_latency: AtomicU64,
    in_flight: AtomicUsize,
}

impl OutlierDetector {
    /// A builder with Envoy's defaults (see [`Builder`]).
    pub fn builder() -> Builder {
        Builder::default()
    }

    pub(crate) fn new(name: Name, config: Config, listeners: Listeners<OutlierEvent>) -> Self {
        let first = u64::try_from(config.interval.as_nanos()).unwrap_or(u64::MAX);
        OutlierDetector {
            shared: Arc::new(Shared {
                name,
                config,
                listeners,
                epoch: Instant::now(),
                ejected: EjectedCount::default(),
                live: AtomicUsize::new(0),
                next_evaluation: AtomicU64::new(first),
                registry: Mutex::new(Vec::new()),
            }),
        }
    }

    /// The layer that wraps the service of the endpoint `key` (its address, or any name
    /// unique among the endpoints). The endpoint is registered now and stays registered
    /// while the layer or a service built from it lives. Asking again for a key that is
    /// still registered gives a layer over the same state (its ejection and history).
    pub fn layer(&self, key: impl Into<Name>) -> OutlierLayer {
        OutlierLayer::new(self.register(key.into()))
    }

    fn register(&self, key: Name) -> Arc<Endpoint> {
        let mut registry = self.shared.registry();
        registry.retain(|endpoint| endpoint.strong_count() > 0);
        // The endpoints are upgraded into a list that outlives the lock: the last handle to
        // one may be dropped here, and an endpoint's `Drop` takes the lock.
        let alive: Vec<Arc<Endpoint>> = registry.iter().filter_map(Weak::upgrade).collect();
        if let Some(endpoint) = alive.iter().find(|endpoint| endpoint.key == key) {
            let endpoint = endpoint.clone();
            drop(registry);
            return endpoint;
        }
        let endpoint = Arc::new(Endpoint {
            key,
            shared: self.shared.clone(),
            successes: AtomicU64::new(0),
            failures: AtomicU64::new(0),
            consecutive: AtomicU32::new(0),
            consecutive_gateway: AtomicU32::new(0),
            ejection: Ejection::default(),
            times_ejected: AtomicU32::new(0),
            returned_at: AtomicU64::new(0),
            last_decay: AtomicU64::new(0),
            waiting: Mutex::new(Vec::new()),
            last_rate: AtomicU64::new(NO_RATE),
            latency: LatencyTally::default(),
            last_latency: AtomicU64::new(NO_LATENCY),
            in_flight: AtomicUsize::new(0),
        });
        self.shared.live.fetch_add(1, Ordering::AcqRel);
        registry.push(Arc::downgrade(&endpoint));
        drop(registry);
        drop(alive);
        endpoint
    }

    /// The detector's name.
    pub fn name(&self) -> &Name {
        &self.shared.name
    }

    /// How many endpoints are ejected now.
    pub fn ejected(&self) -> usize {
        self.shared.ejected.get()
    }

    /// Runs the interval rules now (success rate, failure percentage, slow endpoint, the
    /// sweep of ended ejections and the decay of ejection counts) and starts a new
    /// interval. They also run by themselves when a call finishes after the interval is
    /// due; this is for tests and for callers that want a sweep on their own schedule.
    pub fn evaluate(&self) {
        let now = self.shared.now();
        let next = now.saturating_add(self.shared.interval_nanos());
        self.shared.next_evaluation.store(next, Ordering::Release);
        self.shared.evaluate(now);
    }

    /// The endpoints registered now, in registration order, with their state.
    pub fn snapshot(&self) -> Snapshot {
        let endpoints = self.shared.alive();
        let live = endpoints.len();
        Snapshot {
            name: self.shared.name.clone(),
            ejected: self.shared.ejected.get(),
            max_ejected: self.shared.config.max_ejected(live),
            endpoints: endpoints
                .iter()
                .map(|endpoint| endpoint.snapshot())
                .collect(),
        }
    }
}

impl fmt::Debug for OutlierDetector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OutlierDetector")
            .field("name", &self.shared.name)
            .field("config", &self.shared.config)
            .field("live", &self.shared.live.load(Ordering::Relaxed))
            .field("ejected", &self.shared.ejected.get())
            .field("listeners", &self.shared.listeners)
            .finish()
    }
}

/// The state of a detector's endpoints at one moment, from [`OutlierDetector::snapshot`].
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct Snapshot {
    /// The detector's name.
    pub name: Name,
    /// How many endpoints are ejected.
    pub ejected: usize,
    /// How many may be, out of the endpoints registered.
    pub max_ejected: usize,
    /// Each registered endpoint, in registration order.
    pub endpoints: Vec<EndpointSnapshot>,
}

impl Snapshot {
    /// The endpoint registered under `key`.
    pub fn endpoint(&self, key: &str) -> Option<&EndpointSnapshot> {
        self.endpoints.iter().find(|endpoint| endpoint.key == key)
    }
}

/// One endpoint in a [`Snapshot`].
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct EndpointSnapshot {
    /// Its key.
    pub key: Name,
    /// When its ejection ends, if it is ejected.
    pub ejected_until: Option<Instant>,
    /// How many times it has been ejected (decays by one each full interval it spends in
    /// rotation).
    pub times_ejected: u32,
    /// Its success rate over the last interval it had calls in (`0..=1`).
    pub success_rate: Option<f64>,
    /// The mean latency of its timed calls (successes and timeouts) in the last interval
    /// it had any (measured only while the [slow-endpoint rule](crate::SlowEndpoint) is
    /// on).
    pub mean_latency: Option<Duration>,
    /// Failures in a row now.
    pub consecutive_failures: u32,
    /// Calls started and not yet finished or dropped.
    pub in_flight: usize,
}

impl Shared {
    fn registry(&self) -> std::sync::MutexGuard<'_, Vec<Weak<Endpoint>>> {
        self.registry.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Nanoseconds since the epoch, on tokio's clock.
    #[inline]
    pub(crate) fn now(&self) -> u64 {
        nanos(Instant::now().saturating_duration_since(self.epoch))
    }

    pub(crate) fn instant_at(&self, nanos: u64) -> Instant {
        self.epoch + Duration::from_nanos(nanos)
    }

    fn interval_nanos(&self) -> u64 {
        nanos(self.config.interval)
    }

    /// Runs the interval rules if they are due at `now` and this caller wins the interval.
    #[inline]
    fn maybe_evaluate(&self, now: u64) {
        let due = self.next_evaluation.load(Ordering::Acquire);
        if now < due {
            return;
        }
        let next = now.saturating_add(self.interval_nanos());
        if self
            .next_evaluation
            .compare_exchange(due, next, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
        {
            self.evaluate(now);
        }
    }

    /// The endpoints alive now, in registration order. The list outlives the registry's
    /// lock: dropping the last handle to an endpoint takes the lock (its `Drop`).
    fn alive(&self) -> Vec<Arc<Endpoint>> {
        let registry = self.registry();
        registry.iter().filter_map(Weak::upgrade).collect()
    }

    /// After the number of endpoints alive shrank (an endpoint dropped): ends the
    /// ejections beyond the cap of the endpoints left, soonest-ending first, and wakes
    /// their services, so a balancer left with few endpoints is not left with none.
    pub(crate) fn recheck_cap(&self, now: u64) {
        let max = self.config.max_ejected(self.live.load(Ordering::Acquire));
        if self.ejected.get() <= max {
            return;
        }
        let endpoints = self.alive();
        let mut notes = Vec::new();
        self.enforce_cap(&endpoints, now, &mut notes);
        for (endpoint, note) in notes {
            endpoint.emit(note);
        }
    }

    /// Ends the ejections beyond the cap, soonest-ending first.
    fn enforce_cap<'a>(
        &self,
        endpoints: &'a [Arc<Endpoint>],
        now: u64,
        notes: &mut Vec<(&'a Endpoint, Note)>,
    ) {
        let max = self.config.max_ejected(self.live.load(Ordering::Acquire));
        let mut ejected: Vec<(&Endpoint, u64)> = endpoints
            .iter()
            .filter_map(|endpoint| endpoint.ejection.until().map(|until| (&**endpoint, until)))
            .collect();
        if ejected.len() <= max {
            return;
        }
        ejected.sort_by_key(|&(_, until)| until);
        let excess = ejected.len() - max;
        for (endpoint, until) in ejected.into_iter().take(excess) {
            if let Some(note) = endpoint.end_ejection(until, now) {
                notes.push((endpoint, note));
            }
        }
    }

    /// The interval's work. The registry's lock is held while it judges (so evaluations
    /// never overlap) and released before its events are emitted: a listener may read the
    /// detector.
    fn evaluate(&self, now: u64) {
        let registry = self.registry();
        let endpoints: Vec<Arc<Endpoint>> = registry.iter().filter_map(Weak::upgrade).collect();
        let mut notes: Vec<(&Endpoint, Note)> = Vec::new();
        // Ejections beyond the cap of the endpoints left (some were removed) end first.
        self.enforce_cap(&endpoints, now, &mut notes);
        let interval = self.interval_nanos().max(1);
        // Endpoints in rotation this interval: (endpoint, successes, calls, latency).
        let mut judged: Vec<(&Endpoint, u64, u64, Tally)> = Vec::with_capacity(endpoints.len());
        for endpoint in &endpoints {
            let successes = endpoint.successes.swap(0, Ordering::AcqRel);
            let failures = endpoint.failures.swap(0, Ordering::AcqRel);
            let calls = successes.saturating_add(failures);
            if calls > 0 {
                let rate = successes as f64 / calls as f64;
                endpoint.last_rate.store(rate.to_bits(), Ordering::Relaxed);
            }
            let latency = endpoint.latency.take();
            if let Some(mean) = latency.mean() {
                endpoint.last_latency.store(mean, Ordering::Relaxed);
            }
            match endpoint.ejection.until() {
                Some(until) if now >= until => {
                    // Back from now on; judged again from the next interval.
                    if let Some(note) = endpoint.end_ejection(until, now) {
                        notes.push((endpoint, note));
                    }
                    continue;
                }
                Some(_) => continue,
                None => endpoint.decay(now, interval),
            }
            judged.push((endpoint, successes, calls, latency));
        }

        if let Some(rule) = self.config.success_rate {
            let eligible: Vec<(&Endpoint, f64)> = judged
                .iter()
                .filter(|(_, _, calls, _)| *calls >= rule.request_volume)
                .map(|&(endpoint, successes, calls, _)| (endpoint, successes as f64 / calls as f64))
                .collect();
            if eligible.len() >= rule.minimum_hosts {
                let rates: Vec<f64> = eligible.iter().map(|(_, rate)| *rate).collect();
                let threshold = success_rate_threshold(&rates, rule.stdev_factor);
                let mut outliers: Vec<(&Endpoint, f64)> = eligible
                    .into_iter()
                    .filter(|(_, rate)| *rate < threshold)
                    .collect();
                outliers.sort_by(|a, b| a.1.total_cmp(&b.1));
                for (endpoint, rate) in outliers {
                    if let Some(note) = endpoint.eject(Reason::SuccessRate { rate, threshold }, now)
                    {
                        notes.push((endpoint, note));
                    }
                }
            }
        }

        if let Some(rule) = self.config.failure_percentage {
            let eligible: Vec<(&Endpoint, f64)> = judged
                .iter()
                .filter(|(_, _, calls, _)| *calls >= rule.request_volume)
                .map(|&(endpoint, successes, calls, _)| {
                    (endpoint, (calls - successes) as f64 / calls as f64)
                })
                .collect();
            if eligible.len() >= rule.minimum_hosts {
                let mut outliers: Vec<(&Endpoint, f64)> = eligible
                    .into_iter()
                    .filter(|(_, failures)| *failures >= rule.threshold)
                    .collect();
                outliers.sort_by(|a, b| b.1.total_cmp(&a.1));
                for (endpoint, failures) in outliers {
                    let reason = Reason::FailurePercentage {
                        failures,
                        threshold: rule.threshold,
                    };
                    if let Some(note) = endpoint.eject(reason, now) {
                        notes.push((endpoint, note));
                    }
                }
            }
        }
        if let Some(rule) = self.config.slow_endpoint {
            // (endpoint, mean latency in nanoseconds) of those with enough timed calls.
            let eligible: Vec<(&Endpoint, u64)> = judged
                .iter()
                .filter_map(|&(endpoint, _, _, latency)| {
                    latency
                        .mean_with(rule.request_volume)
                        .map(|mean| (endpoint, mean))
                })
                .collect();
            let mut means: Vec<u64> = eligible.iter().map(|&(_, mean)| mean).collect();
            if let Some(reference) = rule.reference(&mut means) {
                let mut outliers: Vec<(&Endpoint, u64)> = eligible
                    .into_iter()
                    .filter(|&(_, mean)| reference.is_slow(mean))
                    .collect();
                // Slowest first: under the cap, the worst goes.
                outliers.sort_by_key(|&(_, mean)| std::cmp::Reverse(mean));
                for (endpoint, mean) in outliers {
                    let reason = Reason::SlowEndpoint {
                        mean: Duration::from_nanos(mean),
                        median: reference.median(),
                        threshold: reference.threshold(),
                    };
                    if let Some(note) = endpoint.eject(reason, now) {
                        notes.push((endpoint, note));
                    }
                }
            }
        }
        drop(judged);
        drop(registry);
        // Outside the lock: a listener may call `snapshot()`, `layer()` or `evaluate()`.
        for (endpoint, note) in notes {
            endpoint.emit(note);
        }
        // `endpoints` drops here, after the lock: the last handle to an endpoint may be in
        // it, and its `Drop` takes the lock.
    }
}

/// An event decided while the registry's lock may be held, emitted once it is released.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Note {
    Ejected {
        reason: Reason,
        times: u32,
        duration: Duration,
        until: u64,
    },
    Returned {
        until: u64,
    },
    NotEjected {
        reason: Reason,
        ejected: usize,
        max_ejected: usize,
    },
}

/// `mean - factor x stdev` of `rates` (population standard deviation, as Envoy); NaN for
/// no rates.
pub(crate) fn success_rate_threshold(rates: &[f64], factor: f64) -> f64 {
    let count = rates.len() as f64;
    let mean = rates.iter().sum::<f64>() / count;
    let variance = rates.iter().map(|rate| (rate - mean).powi(2)).sum::<f64>() / count;
    mean - factor * variance.sqrt()
}

fn nanos(duration: Duration) -> u64 {
    u64::try_from(duration.as_nanos()).unwrap_or(u64::MAX)
}

impl Endpoint {
    pub(crate) fn shared(&self) -> &Shared {
        &self.shared
    }

    pub(crate) fn key(&self) -> &Name {
        &self.key
    }

    /// When a call starts, in nanoseconds since the epoch, if the slow-endpoint rule is on
    /// and so needs its latency (one read of the clock); `None` otherwise, without reading
    /// it.
    #[inline]
    pub(crate) fn started(&self) -> Option<u64> {
        self.shared
            .config
            .slow_endpoint
            .is_some()
            .then(|| self.shared.now())
    }

    /// A call is in flight (its guard ends it).
    #[inline]
    pub(crate) fn start_call(&self) {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
    }

    #[inline]
    pub(crate) fn end_call(&self) {
        self.in_flight.fetch_sub(1, Ordering::Relaxed);
    }

    /// Records one finished call: its outcome, its gateway outcome, and its latency if
    /// `started` is given: the slow-endpoint rule is on and the call is one it times (a
    /// success, or a failure that is a timeout: the response future decides).
    #[inline]
    pub(crate) fn record(&self, outcome: Outcome, gateway: Outcome, started: Option<u64>) {
        let now = self.shared.now();
        // An overdue evaluation runs first (its decay, its sweep), then the call is judged.
        self.shared.maybe_evaluate(now);
        let config = &self.shared.config;
        if let Some(started) = started {
            // A result the classifier ignores (a refusal below, the caller's deadline) says
            // nothing about the endpoint's speed either (the response future passes no
            // start for it; checked here too). Nor does a call that started before the
            // endpoint's last return: it was in flight through the ejection (its latency
            // is the ejection's length or more), and measured the endpoint the ejection
            // already acted on; timed now, it would eject it again at the first interval
            // after its return.
            if outcome != Outcome::Ignored && started >= self.returned_at.load(Ordering::Acquire) {
                self.latency.add(now.saturating_sub(started));
            }
        }
        match outcome {
            Outcome::Success => {
                self.successes.fetch_add(1, Ordering::Relaxed);
                if self.consecutive.load(Ordering::Relaxed) != 0 {
                    self.consecutive.store(0, Ordering::Relaxed);
                }
            }
            Outcome::Failure => {
                self.failures.fetch_add(1, Ordering::Relaxed);
                let count = self
                    .consecutive
                    .fetch_add(1, Ordering::AcqRel)
                    .saturating_add(1);
                if let Some(limit) = config.consecutive_failures {
                    if count >= limit {
                        self.consecutive.store(0, Ordering::Release);
                        self.eject_now(Reason::ConsecutiveFailures { count });
                    }
                }
            }
            Outcome::Ignored => {}
        }
        match gateway {
            Outcome::Success => {
                if self.consecutive_gateway.load(Ordering::Relaxed) != 0 {
                    self.consecutive_gateway.store(0, Ordering::Relaxed);
                }
            }
            Outcome::Failure => {
                let count = self
                    .consecutive_gateway
                    .fetch_add(1, Ordering::AcqRel)
                    .saturating_add(1);
                if let Some(limit) = config.consecutive_gateway_failures {
                    if count >= limit {
                        self.consecutive_gateway.store(0, Ordering::Release);
                        self.eject_now(Reason::ConsecutiveGatewayFailures { count });
                    }
                }
            }
            Outcome::Ignored => {}
        }
    }

    /// Ejects this endpoint now by a rule met on a call (no lock held: emits at once).
    #[cold]
    fn eject_now(&self, reason: Reason) {
        if let Some(note) = self.eject(reason, self.shared.now()) {
            self.emit(note);
        }
    }

    /// The decay of the times ejected: one for each whole interval the endpoint has spent
    /// in rotation since its return (or since the last decay, if later).
    fn decay(&self, now: u64, interval: u64) {
        if self.times_ejected.load(Ordering::Acquire) == 0 {
            return;
        }
        let since = self
            .returned_at
            .load(Ordering::Acquire)
            .max(self.last_decay.load(Ordering::Acquire));
        let intervals = now.saturating_sub(since) / interval;
        if intervals == 0 {
            return;
        }
        let by = u32::try_from(intervals).unwrap_or(u32::MAX);
        let _ = self
            .times_ejected
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |times| {
                Some(times.saturating_sub(by))
            });
        self.last_decay.store(
            since.saturating_add(intervals.saturating_mul(interval)),
            Ordering::Release,
        );
    }

    /// Emits the event of `note` (if a listener is registered).
    pub(crate) fn emit(&self, note: Note) {
        let shared = &*self.shared;
        shared.listeners.emit(|| match note {
            Note::Ejected {
                reason,
                times,
                duration,
                until,
            } => OutlierEvent::Ejected {
                outlier: shared.name.clone(),
                endpoint: self.key.clone(),
                reason,
                times,
                duration,
                ejected_until: shared.instant_at(until),
            },
            Note::Returned { until } => OutlierEvent::Returned {
                outlier: shared.name.clone(),
                endpoint: self.key.clone(),
                ejected_until: shared.instant_at(until),
            },
            Note::NotEjected {
                reason,
                ejected,
                max_ejected,
            } => OutlierEvent::NotEjected {
                outlier: shared.name.clone(),
                endpoint: self.key.clone(),
                reason,
                ejected,
                max_ejected,
            },
        });
    }

    /// Waits for the end of the ejection: `waker` is woken when it ends.
    pub(crate) fn wait(&self, waker: &Waker) {
        let mut waiting = self.waiting.lock().unwrap_or_else(PoisonError::into_inner);
        if !waiting.iter().any(|w| w.will_wake(waker)) {
            waiting.push(waker.clone());
        }
    }

    /// Ejects this endpoint for its next ejection time, if the cap allows; the event to
    /// emit.
    fn eject(&self, reason: Reason, now: u64) -> Option<Note> {
        let shared = &*self.shared;
        let max = shared
            .config
            .max_ejected(shared.live.load(Ordering::Acquire));
        let times = self.times_ejected.load(Ordering::Acquire).saturating_add(1);
        let duration = shared.config.ejection_time(times);
        let until = now.saturating_add(nanos(duration)).max(1);
        match self.ejection.start(&shared.ejected, max, until) {
            Ok(()) => {
                self.times_ejected.store(times, Ordering::Release);
                self.consecutive.store(0, Ordering::Release);
                self.consecutive_gateway.store(0, Ordering::Release);
                Some(Note::Ejected {
                    reason,
                    times,
                    duration,
                    until,
                })
            }
            Err(NotEjected::Capped(ejected)) => Some(Note::NotEjected {
                reason,
                ejected,
                max_ejected: max,
            }),
            Err(NotEjected::Already) => None,
        }
    }

    /// Ends the ejection that was to end at `until` (once, whoever calls) and wakes the
    /// services waiting for it; the event to emit, if this caller ended it.
    pub(crate) fn end_ejection(&self, until: u64, now: u64) -> Option<Note> {
        let shared = &*self.shared;
        if !self.ejection.end(&shared.ejected, until) {
            return None;
        }
        self.returned_at.store(now, Ordering::Release);
        self.consecutive.store(0, Ordering::Release);
        self.consecutive_gateway.store(0, Ordering::Release);
        // What it did before its ejection says nothing about it now.
        self.successes.store(0, Ordering::Release);
        self.failures.store(0, Ordering::Release);
        let _ = self.latency.take();
        let waiting =
            std::mem::take(&mut *self.waiting.lock().unwrap_or_else(PoisonError::into_inner));
        for waker in waiting {
            waker.wake();
        }
        Some(Note::Returned { until })
    }

    /// Ends the ejection that was to end at `until` and emits its event (no lock held).
    pub(crate) fn return_now(&self, until: u64, now: u64) {
        if let Some(note) = self.end_ejection(until, now) {
            self.emit(note);
        }
    }

    fn snapshot(&self) -> EndpointSnapshot {
        let rate = self.last_rate.load(Ordering::Relaxed);
        let latency = self.last_latency.load(Ordering::Relaxed);
        EndpointSnapshot {
            key: self.key.clone(),
            ejected_until: self
                .ejection
                .until()
                .map(|until| self.shared.instant_at(until)),
            times_ejected: self.times_ejected.load(Ordering::Acquire),
            success_rate: (rate != NO_RATE).then(|| f64::from_bits(rate)),
            mean_latency: (latency != NO_LATENCY).then(|| Duration::from_nanos(latency)),
            consecutive_failures: self.consecutive.load(Ordering::Acquire),
            in_flight: self.in_flight.load(Ordering::Acquire),
        }
    }
}

impl Drop for Endpoint {
    fn drop(&mut self) {
        // An endpoint that goes away (the balancer dropped its service) leaves the count and
        // frees its place under the cap.
        self.shared.live.fetch_sub(1, Ordering::AcqRel);
        let now = self.shared.now();
        if let Some(until) = self.ejection.until() {
            // Reported as a return, so the ejected gauge of the endpoint goes back to 0.
            self.return_now(until, now);
        }
        // Fewer endpoints, a lower cap: the ejections beyond it end now.
        self.shared.recheck_cap(now);
    }
}

impl fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Endpoint")
            .field("key", &self.key)
            .field("outlier", &self.shared.name)
            .field("ejected_until", &self.ejection.until())
            .finish_non_exhaustive()
    }
}

#[cfg(all(test, not(bulwark_loom)))]
mod tests {
    use super::*;

    /// Hand-computed: rates 1, 1, 1, 1, 0.5. Mean 0.9; deviations 0.1 (x4) and -0.4;
    /// variance (4 x 0.01 + 0.16) / 5 = 0.04; stdev 0.2; threshold 0.9 - 1.9 x 0.2 = 0.52.
    #[test]
    fn the_success_rate_threshold_is_mean_less_factor_times_population_stdev() {
        let threshold = success_rate_threshold(&[1.0, 1.0, 1.0, 1.0, 0.5], 1.9);
        assert!((threshold - 0.52).abs() < 1e-12, "{threshold}");
        // Equal rates: stdev 0, the threshold is the mean and nobody is below it.
        assert_eq!(success_rate_threshold(&[0.8; 5], 1.9), 0.8);
        // 0.9, 0.8, 0.7, 0.6, 1.0: mean 0.8, variance 0.02, stdev 0.141421...;
        // 0.8 - 1 x 0.141421 = 0.658579.
        let threshold = success_rate_threshold(&[0.9, 0.8, 0.7, 0.6, 1.0], 1.0);
        assert!(
            (threshold - 0.658_578_643_762_69).abs() < 1e-12,
            "{threshold}"
        );
        assert!(success_rate_threshold(&[], 1.9).is_nan());
    }
}
