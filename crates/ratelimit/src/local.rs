//! [`LocalLimiter`]: governor's keyed GCRA in this process, on tokio's clock, with a bound
//! on the keys it remembers.

use std::fmt;
use std::future::{ready, Ready};
use std::hash::Hash;
use std::marker::PhantomData;
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use governor::clock::Clock;
use governor::middleware::StateInformationMiddleware;
use governor::nanos::Nanos;
use governor::state::keyed::DashMapStateStore;
use governor::state::{InMemoryState, NotKeyed, StateStore};
use governor::RateLimiter;
use tokio::time::Instant;
use tower_bulwark_core::config::{non_zero, non_zero_duration};
use tower_bulwark_core::ConfigError;

use crate::clock::{nanos, TokioClock};
use crate::{Decision, LimitError, Limiter, Quota};

/// How many keys a [`LocalLimiter`] remembers by default.
pub const DEFAULT_MAX_KEYS: usize = 100_000;

/// How often, by default, a [`LocalLimiter`] forgets the keys whose burst is whole again.
pub const DEFAULT_SWEEP_INTERVAL: Duration = Duration::from_secs(60);

/// A rate limit per key, kept in this process: [governor]'s GCRA (one permit back every
/// [`interval`](Quota::interval), at most [`burst`](Quota::burst_size) at once), on
/// tokio's clock, so paused-time tests drive it.
///
/// - **Cost.** A request of a key already held reads the key's state under a shared
///   (read) lock of one shard of governor's sharded map (a `DashMap`), and updates it with
///   a compare-and-swap; it allocates nothing, and answers at once
///   ([`Limiter::acquire_now`]). A call that adds a key takes its shard's write lock (and
///   stores a clone of the key); a sweep takes each shard's in turn.
/// - **Memory.** A key whose burst is whole again is the same as a key never seen, so the
///   limiter forgets it: at most every
///   [`sweep_interval`](LocalLimiterBuilder::sweep_interval) (60 s; looked at by the calls
///   that add a key), and whenever a key added takes the count of keys past
///   [`max_keys`](LocalLimiterBuilder::max_keys) (100,000). Up to the bound, busy keys are
///   kept. Past it with every key still busy, the sweep forgets the keys nearest a whole
///   burst first (they lose the least; a forgotten key gets its whole burst again), as
///   many as bring the keys down to seven eighths of the bound. A sweep is a pass over
///   the keys (up to five when busy keys fill the bound) on the call that added a key, one
///   at a time; as it leaves room for an eighth of the bound, its cost per added key is
///   constant. Calls of keys already held never pay for one.
/// - **`remaining` and `reset`.** Governor reports what is left in whole permits, so an
///   admitted request's [`reset`](Decision::reset) counts the permits used in whole
///   intervals: `(burst - remaining) * interval`, up to one interval over the exact time
///   the burst is whole again. A refused one's reset and
///   [`retry_after`](Decision::retry_after) are exact.
///
/// Clones share the limits.
///
/// ```
/// use std::time::Duration;
/// use tower_bulwark_ratelimit::{LocalLimiter, Quota};
///
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() -> Result<(), tower_bulwark_core::ConfigError> {
/// // 60 a minute, 3 at once.
/// let limiter = LocalLimiter::new(Quota::per_minute(60)?.burst(3)?);
/// for remaining in [2, 1, 0] {
///     assert_eq!(limiter.check(&"alice").remaining, remaining);
/// }
/// let refused = limiter.check(&"alice");
/// assert!(!refused.allowed);
/// assert_eq!(refused.retry_after, Duration::from_secs(1));
/// assert!(limiter.check(&"bob").allowed, "each key has its own limit");
///
/// tokio::time::sleep(Duration::from_secs(1)).await;
/// assert!(limiter.check(&"alice").allowed);
/// # Ok(())
/// # }
/// ```
///
/// [governor]: https://docs.rs/governor
pub struct LocalLimiter<K: Hash + Eq + Clone> {
    shared: Arc<Shared<K>>,
}

struct Shared<K: Hash + Eq + Clone> {
    quota: Quota,
    /// The quota's interval in nanoseconds, and its burst: read on every call.
    interval: u64,
    burst: u32,
    governor: RateLimiter<K, Store<K>, TokioClock, StateInformationMiddleware>,
    /// The same store as governor's: for the key count and its `Debug`.
    store: Store<K>,
}

/// Governor's map of key states, with the bound on it: governor reads and writes the
/// states through it, and it counts the keys added and sweeps.
struct Store<K>(Arc<Held<K>>);

struct Held<K> {
    states: DashMapStateStore<K>,
    keys: Keys,
}

impl<K: Hash + Eq + Clone> StateStore for Store<K> {
    type Key = K;

    /// Governor's own dashmap path (a read lock for a key held, the entry for a new one),
    /// which also tells a key added from a key found.
    #[inline]
    fn measure_and_replace<T, F, E>(&self, key: &K, f: F) -> Result<T, E>
    where
        F: Fn(Option<Nanos>) -> Result<(T, Nanos), E>,
    {
        let held = &*self.0;
        if let Some(state) = held.states.get(key) {
            return state.measure_and_replace(&NotKeyed::NonKey, f);
        }
        let mut added = false;
        let answer = held
            .states
            .entry(key.clone())
            .or_insert_with(|| {
                added = true;
                InMemoryState::default()
            })
            .measure_and_replace(&NotKeyed::NonKey, f);
        // The entry's shard lock is released: a sweep may take it.
        if added {
            held.keys.added(&held.states);
        }
        answer
    }
}

/// The bound on the keys, and when to sweep.
struct Keys {
    max: usize,
    /// The sweep interval, and a whole burst's worth of intervals (the furthest a key's
    /// state can be ahead of now), in nanoseconds.
    sweep_interval: u64,
    full: u64,
    /// Governor's start, read just after it (so never before it): its states are
    /// nanoseconds since then.
    origin: OnceLock<Instant>,
    /// Keys found by the last sweep, plus the keys added since.
    counted: AtomicUsize,
    /// When the next periodic sweep is due, in nanoseconds since `origin`.
    next_sweep: AtomicU64,
    /// One sweep at a time; the others carry on.
    sweeping: Mutex<()>,
}

/// Settings of a [`LocalLimiter`]; [`build`](LocalLimiterBuilder::build) checks them.
pub struct LocalLimiterBuilder<K> {
    quota: Quota,
    max_keys: usize,
    sweep_interval: Duration,
    key: PhantomData<fn() -> K>,
}

impl<K> fmt::Debug for LocalLimiterBuilder<K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LocalLimiterBuilder")
            .field("quota", &self.quota)
            .field("max_keys", &self.max_keys)
            .field("sweep_interval", &self.sweep_interval)
            .finish()
    }
}

impl<K: Hash + Eq + Clone> LocalLimiterBuilder<K> {
    /// The most keys remembered (default 100,000); see [`LocalLimiter`] for what happens
    /// at the bound. At least 1.
    pub fn max_keys(mut self, max_keys: usize) -> Self {
        self.max_keys = max_keys;
        self
    }

    /// How often keys whose burst is whole again are forgotten (default 60 s), checked by
    /// the calls that add a key. Longer than zero.
    pub fn sweep_interval(mut self, interval: Duration) -> Self {
        self.sweep_interval = interval;
        self
    }

    /// The limiter, or the setting that is wrong.
    pub fn build(self) -> Result<LocalLimiter<K>, ConfigError> {
        non_zero("max_keys", self.max_keys)?;
        non_zero_duration("sweep_interval", self.sweep_interval)?;
        let interval = nanos(self.quota.interval()).as_u64();
        let burst = self.quota.burst_size();
        let sweep_interval = nanos(self.sweep_interval).as_u64();
        let store = Store(Arc::new(Held {
            states: DashMapStateStore::default(),
            keys: Keys {
                max: self.max_keys,
                sweep_interval,
                // Within the quota's window (at most 100 years): no overflow.
                full: interval.saturating_mul(u64::from(burst)),
                origin: OnceLock::new(),
                counted: AtomicUsize::new(0),
                next_sweep: AtomicU64::new(sweep_interval),
                sweeping: Mutex::new(()),
            },
        }));
        let governor = RateLimiter::<K, _, _, StateInformationMiddleware>::new(
            governor_quota(&self.quota),
            Store(store.0.clone()),
            TokioClock,
        );
        let _ = store.0.keys.origin.set(Instant::now());
        Ok(LocalLimiter {
            shared: Arc::new(Shared {
                interval,
                burst,
                quota: self.quota,
                governor,
                store,
            }),
        })
    }
}

/// Governor's quota for ours: one permit per interval, `burst` at once. (A quota's
/// window, and so its interval, is at most 100 years: within governor's range.)
fn governor_quota(quota: &Quota) -> governor::Quota {
    let burst = NonZeroU32::new(quota.burst_size()).unwrap_or(NonZeroU32::MIN);
    governor::Quota::with_period(quota.interval())
        .expect("a validated quota has an interval longer than zero")
        .allow_burst(burst)
}

impl<K: Hash + Eq + Clone> LocalLimiter<K> {
    /// A limiter of `quota` per key, with the default bound (100,000 keys) and sweep
    /// interval (60 s).
    pub fn new(quota: Quota) -> Self {
        Self::builder(quota)
            .build()
            .expect("the default settings are valid")
    }

    /// A limiter of `quota` per key, with other settings.
    pub fn builder(quota: Quota) -> LocalLimiterBuilder<K> {
        LocalLimiterBuilder {
            quota,
            max_keys: DEFAULT_MAX_KEYS,
            sweep_interval: DEFAULT_SWEEP_INTERVAL,
            key: PhantomData,
        }
    }

    /// Takes a permit for `key` if one is free. Never fails, never allocates for a key
    /// already held.
    #[inline]
    pub fn check(&self, key: &K) -> Decision {
        let shared = &*self.shared;
        let (interval, burst) = (shared.interval, shared.burst);
        match shared.governor.check_key(key) {
            Ok(state) => {
                let remaining = state.remaining_burst_capacity();
                Decision {
                    allowed: true,
                    remaining,
                    reset: times(interval, burst.saturating_sub(remaining)),
                    retry_after: Duration::ZERO,
                }
            }
            Err(not_until) => {
                let retry_after = not_until.wait_time_from(TokioClock.now());
                Decision {
                    allowed: false,
                    remaining: 0,
                    reset: retry_after.saturating_add(times(interval, burst - 1)),
                    retry_after,
                }
            }
        }
    }

    /// How many keys the limiter holds now.
    pub fn key_count(&self) -> usize {
        self.shared.store.0.states.len()
    }
}

/// `count` intervals of `interval` nanoseconds (saturating at 584 years).
fn times(interval: u64, count: u32) -> Duration {
    Duration::from_nanos(interval.saturating_mul(u64::from(count)))
}

/// A state's theoretical arrival time (nanoseconds since governor's start; 0 for a state
/// never written), read by a measurement that replaces nothing.
fn arrival(state: &InMemoryState) -> u64 {
    let read = state.measure_and_replace(&NotKeyed::NonKey, Err::<((), Nanos), _>);
    read.err().flatten().map_or(0, Nanos::as_u64)
}

impl Keys {
    /// A call added a key: sweeps if the count passed the bound or a periodic sweep is
    /// due.
    fn added<K: Hash + Eq + Clone>(&self, states: &DashMapStateStore<K>) {
        let counted = self.counted.fetch_add(1, Relaxed).saturating_add(1);
        // Set when the limiter is built, before any call.
        let Some(origin) = self.origin.get() else {
            return;
        };
        let now = nanos(origin.elapsed()).as_u64();
        if counted > self.max || now >= self.next_sweep.load(Relaxed) {
            self.sweep(states, now);
        }
    }

    /// Forgets every key whose burst is whole again; then, if more keys than the bound
    /// are left, the keys nearest a whole burst, until seven eighths of the bound are.
    #[cold]
    fn sweep<K: Hash + Eq + Clone>(&self, states: &DashMapStateStore<K>, now: u64) {
        let Ok(_only_sweep) = self.sweeping.try_lock() else {
            return;
        };
        // A state is the key's theoretical arrival time: at or before now, its burst is whole.
        states.retain(|_, state| arrival(state) > now);
        let mut held = states.len();
        if held > self.max {
            let mut excess = held - (self.max - (self.max / 8).max(1));
            // By quarters of a burst ahead of now, at most `excess` keys in all.
            for quarter in 1..=4u64 {
                if excess == 0 {
                    break;
                }
                let ahead = u64::try_from(u128::from(self.full) * u128::from(quarter) / 4)
                    .unwrap_or(u64::MAX);
                let below = now.saturating_add(ahead);
                states.retain(|_, state| {
                    let forget = excess > 0 && arrival(state) <= below;
                    excess -= usize::from(forget);
                    !forget
                });
            }
            held = states.len();
        }
        self.counted.store(held, Relaxed);
        self.next_sweep
            .store(now.saturating_add(self.sweep_interval), Relaxed);
    }
}

impl<K: Hash + Eq + Clone + Send + Sync + 'static> Limiter<K> for LocalLimiter<K> {
    type Future = Ready<Result<Decision, LimitError>>;

    fn acquire(&self, key: &K) -> Self::Future {
        ready(Ok(self.check(key)))
    }

    #[inline]
    fn acquire_now(&self, key: &K) -> Option<Result<Decision, LimitError>> {
        Some(Ok(self.check(key)))
    }

    fn quota(&self) -> &Quota {
        &self.shared.quota
    }
}

impl<K: Hash + Eq + Clone> Clone for LocalLimiter<K> {
    fn clone(&self) -> Self {
        LocalLimiter {
            shared: self.shared.clone(),
        }
    }
}

impl<K: Hash + Eq + Clone> fmt::Debug for LocalLimiter<K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LocalLimiter")
            .field("quota", &self.shared.quota)
            .field("keys", &self.key_count())
            .field("max_keys", &self.shared.store.0.keys.max)
            .field(
                "sweep_interval",
                &Duration::from_nanos(self.shared.store.0.keys.sweep_interval),
            )
            .finish()
    }
}
