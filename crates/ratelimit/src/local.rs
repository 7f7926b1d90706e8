//! [`LocalLimiter`]: governor's keyed GCRA in this process, on tokio's clock, with a bound
//! on the keys it remembers.

use std::fmt;
use std::future::{ready, Ready};
use std::hash::Hash;
use std::marker::PhantomData;
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use governor::clock::Clock;
use governor::middleware::StateInformationMiddleware;
use governor::nanos::Nanos;
use governor::state::keyed::{DashMapStateStore, ShrinkableKeyedStateStore};
use governor::state::StateStore;
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
/// - **Cost.** A request of a key already known takes one lock-free compare-and-swap on
///   the key's state in governor's sharded map, and allocates nothing. It answers at once
///   ([`Limiter::acquire_now`]).
/// - **Memory.** A key whose burst is whole again is the same as a key never seen, so the
///   limiter forgets it: every [`sweep_interval`](LocalLimiterBuilder::sweep_interval)
///   (60 s; looked at every 64 calls that may add a key), and whenever more than
///   [`max_keys`](LocalLimiterBuilder::max_keys) (100,000) may be held. A sweep leaves room for an eighth of the bound, so its cost (a pass over
///   the keys, up to five when busy keys fill the bound) per new key is constant; it runs on the request that found the bound
///   reached (and only one at a time). When more keys than the bound are *busy* at once,
///   the sweep then forgets those nearest a whole burst first (they lose the least), down
///   to seven eighths of the bound: a forgotten key gets its whole burst again. Only the
///   calls that find their key at a whole burst (new keys among them) count toward a
///   sweep; a busy key never pays for one.
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
    store: Store<K>,
    keys: Keys,
}

/// Governor's dashmap store, shared between the governor limiter and the sweeps.
struct Store<K>(Arc<DashMapStateStore<K>>);

impl<K: Hash + Eq + Clone> StateStore for Store<K> {
    type Key = K;

    #[inline]
    fn measure_and_replace<T, F, E>(&self, key: &K, f: F) -> Result<T, E>
    where
        F: Fn(Option<Nanos>) -> Result<(T, Nanos), E>,
    {
        self.0.measure_and_replace(key, f)
    }
}

/// How many calls that may add a key go between two looks at the clock for a periodic
/// sweep.
const SWEEP_CHECK_EVERY: usize = 64;

/// The bound on the keys, and when to sweep.
struct Keys {
    max: usize,
    sweep_interval: Duration,
    /// Governor's start (read just after it, so never before it): its states are
    /// nanoseconds since then.
    origin: Instant,
    /// Keys found by the last sweep, plus the calls since that may have added one.
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
    /// the calls that may add a key. Longer than zero.
    pub fn sweep_interval(mut self, interval: Duration) -> Self {
        self.sweep_interval = interval;
        self
    }

    /// The limiter, or the setting that is wrong.
    pub fn build(self) -> Result<LocalLimiter<K>, ConfigError> {
        non_zero("max_keys", self.max_keys)?;
        non_zero_duration("sweep_interval", self.sweep_interval)?;
        let store = Arc::new(DashMapStateStore::<K>::default());
        let governor = RateLimiter::<K, _, _, StateInformationMiddleware>::new(
            governor_quota(&self.quota),
            Store(store.clone()),
            TokioClock,
        );
        let keys = Keys {
            max: self.max_keys,
            sweep_interval: self.sweep_interval,
            origin: Instant::now(),
            counted: AtomicUsize::new(0),
            next_sweep: AtomicU64::new(nanos(self.sweep_interval).as_u64()),
            sweeping: Mutex::new(()),
        };
        Ok(LocalLimiter {
            shared: Arc::new(Shared {
                interval: nanos(self.quota.interval()).as_u64(),
                burst: self.quota.burst_size(),
                quota: self.quota,
                governor,
                store: Store(store),
                keys,
            }),
        })
    }
}

/// Governor's quota for ours: one permit per interval, `burst` at once.
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
                if remaining + 1 >= burst {
                    // The key was at a whole burst: new, or idle since.
                    let full = interval.saturating_mul(u64::from(burst));
                    shared.keys.count_fresh(&shared.store.0, full);
                }
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
        self.shared.store.0.len()
    }
}

/// `count` intervals of `interval` nanoseconds (saturating at 584 years).
fn times(interval: u64, count: u32) -> Duration {
    Duration::from_nanos(interval.saturating_mul(u64::from(count)))
}

impl Keys {
    /// A call found its key at a whole burst (and may have added it): sweeps if the bound
    /// may be passed or a periodic sweep is due. `full` is a whole burst's worth of
    /// intervals, in nanoseconds: the furthest a key's state can be ahead of now.
    fn count_fresh<K: Hash + Eq + Clone>(&self, store: &DashMapStateStore<K>, full: u64) {
        let counted = self.counted.fetch_add(1, Relaxed).saturating_add(1);
        let over = counted > self.max;
        // The clock is read every 64th count only: a periodic sweep need not be punctual.
        if !over && counted % SWEEP_CHECK_EVERY != 0 {
            return;
        }
        let now = nanos(self.origin.elapsed()).as_u64();
        if over || now >= self.next_sweep.load(Relaxed) {
            self.sweep(store, full, now, over);
        }
    }

    /// Forgets every key whose burst is whole again; then, if `make_room`, the keys nearest
    /// a whole burst until at most seven eighths of the bound are left.
    #[cold]
    fn sweep<K: Hash + Eq + Clone>(
        &self,
        store: &DashMapStateStore<K>,
        full: u64,
        now: u64,
        make_room: bool,
    ) {
        let Ok(_only_sweep) = self.sweeping.try_lock() else {
            return;
        };
        // A state is the key's theoretical arrival time: at or before now, its burst is whole.
        store.retain_recent(Nanos::from(now));
        let mut held = store.len();
        if make_room {
            let target = self.max - (self.max / 8).max(1);
            for quarter in 1..=4u64 {
                if held <= target {
                    break;
                }
                let ahead =
                    u64::try_from(u128::from(full) * u128::from(quarter) / 4).unwrap_or(u64::MAX);
                store.retain_recent(Nanos::from(now.saturating_add(ahead)));
                held = store.len();
            }
        }
        self.counted.store(held, Relaxed);
        let interval = nanos(self.sweep_interval).as_u64();
        self.next_sweep.store(now.saturating_add(interval), Relaxed);
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
            .field("max_keys", &self.shared.keys.max)
            .field("sweep_interval", &self.shared.keys.sweep_interval)
            .finish()
    }
}
