//! One breaker per key (host, route, tenant), with a bound on the number of keys.

use std::collections::HashMap;
use std::fmt;
use std::hash::Hash;
use std::sync::{Arc, RwLock};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::time::Instant;
use tower_bulwark_core::stripes::Stripe;
use tower_bulwark_core::{BoxError, Classify, ConfigError, Listeners};
use tower_layer::Layer;
use tower_service::Service;

use crate::breaker::{Breaker, Holder};
use crate::config::{Admission, Builder, Config};
use crate::events::BreakerEvent;
use crate::future::ResponseFuture;
use crate::{BreakerHandle, State};
use tower_bulwark_core::sync::{AtomicU64, Ordering::Relaxed};

/// One circuit breaker per key, chosen for each request by a key function.
///
/// Every key gets its own breaker built from the same settings and named
/// `"{name}:{key}"`. At most `max_keys` breakers are kept. When a new key arrives at the
/// bound, one sweep over the keys makes room for an eighth of the bound at once (at least
/// one), so a new key costs amortized constant work. It drops, in this order:
///
/// 1. every closed breaker idle for `idle_timeout` or longer;
/// 2. the least recently used closed breakers;
/// 3. only when fewer closed breakers than that are left: the least recently used of the
///    others (open, half-open, or held in a state by an operator).
///
/// So a stream of new keys never resets the trip of an open breaker while a closed one can
/// go instead; and when every breaker is open, the new key still gets a breaker (it is not
/// refused), at the cost of the trips least recently used (a refused call is a use).
///
/// Finding a breaker takes a shared read lock and reads the clock; only a new key takes the
/// write lock.
///
/// Admission is fail-fast: the key is known only in `call`, after `poll_ready`, so there
/// is no breaker to wait on in `poll_ready` (which only readies the inner service). A
/// builder set to [`Admission::Readiness`] is refused by [`KeyedCircuitBreakerLayer::new`]
/// with a [`ConfigError`] naming `admission`, rather than silently failing fast.
///
/// ```
/// use std::time::Duration;
/// use tower::{service_fn, Layer, ServiceExt};
/// use tower_bulwark_breaker::{CircuitBreakerLayer, KeyedCircuitBreakerLayer};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let per_host = KeyedCircuitBreakerLayer::new(
///     CircuitBreakerLayer::builder().name("upstream").consecutive_failures(3),
///     |request: &(String, u32)| request.0.clone(),
///     1_000,
///     Duration::from_secs(600),
/// )
/// .unwrap();
/// let client = per_host.layer(service_fn(|(_host, n): (String, u32)| async move { Ok::<_, std::io::Error>(n) }));
/// assert_eq!(client.oneshot(("db-1".to_string(), 4)).await.unwrap(), 4);
/// assert!(per_host.handle().get(&"db-1".to_string()).is_some());
/// # }
/// ```
pub struct KeyedCircuitBreakerLayer<K, F, C> {
    registry: Arc<Registry<K>>,
    key_of: F,
    classifier: C,
}

struct Registry<K> {
    config: Config,
    listeners: Listeners<BreakerEvent>,
    max_keys: usize,
    idle_timeout: Duration,
    start: Instant,
    breakers: RwLock<HashMap<K, Entry>>,
    /// Breakers looked at by sweeps, for the test that a new key costs amortized O(1).
    #[cfg(test)]
    swept: std::sync::atomic::AtomicU64,
}

struct Entry {
    breaker: Holder,
    /// Milliseconds since the registry started when the breaker was last used.
    last_used: AtomicU64,
}

impl<K, F, C> KeyedCircuitBreakerLayer<K, F, C>
where
    K: Hash + Eq + Clone + fmt::Display,
{
    /// Breakers built from `builder`, one per `key_of(&request)`, at most `max_keys` of them;
    /// at the bound, closed breakers idle for `idle_timeout` go first (see the type's docs).
    pub fn new<Req>(
        builder: Builder<C>,
        key_of: F,
        max_keys: usize,
        idle_timeout: Duration,
    ) -> Result<Self, ConfigError>
    where
        F: Fn(&Req) -> K,
    {
        tower_bulwark_core::config::non_zero("max_keys", max_keys)?;
        tower_bulwark_core::config::non_zero_duration("idle_timeout", idle_timeout)?;
        let (config, classifier, listeners) = builder.into_parts()?;
        if config.admission == Admission::Readiness {
            return Err(ConfigError::new(
                "admission",
                "keyed breakers know the key only in `call`: use fail-fast admission",
            ));
        }
        Ok(KeyedCircuitBreakerLayer {
            registry: Arc::new(Registry {
                config,
                listeners,
                max_keys,
                idle_timeout,
                start: Instant::now(),
                breakers: RwLock::new(HashMap::new()),
                #[cfg(test)]
                swept: Default::default(),
            }),
            key_of,
            classifier,
        })
    }

    /// A handle to the breakers of this layer.
    pub fn handle(&self) -> KeyedHandle<K> {
        KeyedHandle {
            registry: self.registry.clone(),
        }
    }
}

impl<K, F: Clone, C: Clone> Clone for KeyedCircuitBreakerLayer<K, F, C> {
    fn clone(&self) -> Self {
        KeyedCircuitBreakerLayer {
            registry: self.registry.clone(),
            key_of: self.key_of.clone(),
            classifier: self.classifier.clone(),
        }
    }
}

impl<K, F, C> fmt::Debug for KeyedCircuitBreakerLayer<K, F, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyedCircuitBreakerLayer")
            .field("name", &self.registry.config.name)
            .field("max_keys", &self.registry.max_keys)
            .finish_non_exhaustive()
    }
}

impl<S, K, F: Clone, C: Clone> Layer<S> for KeyedCircuitBreakerLayer<K, F, C> {
    type Service = KeyedCircuitBreaker<S, K, F, C>;

    fn layer(&self, inner: S) -> Self::Service {
        KeyedCircuitBreaker {
            inner,
            registry: self.registry.clone(),
            key_of: self.key_of.clone(),
            classifier: self.classifier.clone(),
        }
    }
}

// === impl Registry ===

/// A sweep at the bound makes room for `max_keys / SWEEP_SHARE` new keys at once, so a new
/// key costs `SWEEP_SHARE` looks at breakers on average.
const SWEEP_SHARE: usize = 8;

impl<K: Hash + Eq + Clone + fmt::Display> Registry<K> {
    fn now_millis(&self) -> u64 {
        u64::try_from(self.start.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    fn breaker(&self, key: &K) -> Holder {
        let now = self.now_millis();
        {
            let breakers = self.breakers.read().unwrap_or_else(|e| e.into_inner());
            if let Some(entry) = breakers.get(key) {
                entry.last_used.store(now, Relaxed);
                return entry.breaker.clone();
            }
        }
        let mut breakers = self.breakers.write().unwrap_or_else(|e| e.into_inner());
        if let Some(entry) = breakers.get(key) {
            return entry.breaker.clone();
        }
        if breakers.len() >= self.max_keys {
            self.sweep(&mut breakers, now);
        }
        let mut config = self.config.clone();
        config.name = format!("{}:{key}", self.config.name).into();
        let breaker = Stripe::new(Arc::new(Breaker::new(config, self.listeners.clone())));
        breakers.insert(
            key.clone(),
            Entry {
                breaker: breaker.clone(),
                last_used: AtomicU64::new(now),
            },
        );
        breaker
    }

    /// Makes room at the bound: drops every idle closed breaker, and at least
    /// `max_keys / SWEEP_SHARE` (one or more), closed ones first, least recently used
    /// first. One pass and a linear selection, paid for by the new keys that then fit.
    fn sweep(&self, breakers: &mut HashMap<K, Entry>, now: u64) {
        let idle = u64::try_from(self.idle_timeout.as_millis()).unwrap_or(u64::MAX);
        #[cfg(test)]
        self.swept.fetch_add(breakers.len() as u64, Relaxed);
        // (protected, last used): the smallest go; closed breakers are not protected.
        let mut ranked: Vec<(bool, u64, &K)> = breakers
            .iter()
            .map(|(key, entry)| {
                let protected = entry.breaker.state() != State::Closed;
                (protected, entry.last_used.load(Relaxed), key)
            })
            .collect();
        let idle_closed = ranked
            .iter()
            .filter(|&&(protected, last_used, _)| {
                !protected && now.saturating_sub(last_used) >= idle
            })
            .count();
        let count = idle_closed
            .max(self.max_keys / SWEEP_SHARE)
            .max(1)
            .min(ranked.len());
        if count > 0 && count < ranked.len() {
            ranked.select_nth_unstable_by_key(count - 1, |&(protected, last_used, _)| {
                (protected, last_used)
            });
        }
        let gone: Vec<K> = ranked[..count]
            .iter()
            .map(|&(_, _, key)| key.clone())
            .collect();
        for key in &gone {
            breakers.remove(key);
        }
    }
}

// === impl KeyedCircuitBreaker ===

/// A service with one circuit breaker per key. Built by [`KeyedCircuitBreakerLayer`].
pub struct KeyedCircuitBreaker<S, K, F, C> {
    inner: S,
    registry: Arc<Registry<K>>,
    key_of: F,
    classifier: C,
}

impl<S: Clone, K, F: Clone, C: Clone> Clone for KeyedCircuitBreaker<S, K, F, C> {
    fn clone(&self) -> Self {
        KeyedCircuitBreaker {
            inner: self.inner.clone(),
            registry: self.registry.clone(),
            key_of: self.key_of.clone(),
            classifier: self.classifier.clone(),
        }
    }
}

impl<S: fmt::Debug, K, F, C> fmt::Debug for KeyedCircuitBreaker<S, K, F, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyedCircuitBreaker")
            .field("inner", &self.inner)
            .field("name", &self.registry.config.name)
            .finish_non_exhaustive()
    }
}

impl<S, K, F, C, Req> Service<Req> for KeyedCircuitBreaker<S, K, F, C>
where
    S: Service<Req>,
    S::Error: Into<BoxError>,
    K: Hash + Eq + Clone + fmt::Display,
    F: Fn(&Req) -> K,
    C: Classify<S::Response, S::Error> + Clone,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = ResponseFuture<S::Future, C>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, request: Req) -> Self::Future {
        let breaker = self.registry.breaker(&(self.key_of)(&request));
        match Breaker::acquire(&breaker) {
            Ok(permit) => {
                let started = breaker.times_calls().then(Instant::now);
                ResponseFuture::new(
                    self.inner.call(request),
                    permit,
                    started,
                    self.classifier.clone(),
                )
            }
            Err(refusal) => ResponseFuture::refused(breaker.reject(refusal)),
        }
    }
}

// === impl KeyedHandle ===

/// Reads and steers the breakers of a [`KeyedCircuitBreakerLayer`].
pub struct KeyedHandle<K> {
    registry: Arc<Registry<K>>,
}

impl<K: Hash + Eq + Clone> KeyedHandle<K> {
    /// The name its breakers are named after (`"{name}:{key}"`).
    pub fn name(&self) -> &str {
        &self.registry.config.name
    }

    /// The handle of the breaker for `key`, if it exists.
    pub fn get(&self, key: &K) -> Option<BreakerHandle> {
        let breakers = self
            .registry
            .breakers
            .read()
            .unwrap_or_else(|e| e.into_inner());
        breakers
            .get(key)
            .map(|entry| BreakerHandle::new(entry.breaker.shared().clone()))
    }

    /// The keys that have a breaker.
    pub fn keys(&self) -> Vec<K> {
        let breakers = self
            .registry
            .breakers
            .read()
            .unwrap_or_else(|e| e.into_inner());
        breakers.keys().cloned().collect()
    }

    /// How many breakers there are.
    pub fn len(&self) -> usize {
        self.registry
            .breakers
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .len()
    }

    /// Whether there is none.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl<K> Clone for KeyedHandle<K> {
    fn clone(&self) -> Self {
        KeyedHandle {
            registry: self.registry.clone(),
        }
    }
}

impl<K> fmt::Debug for KeyedHandle<K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyedHandle")
            .field("name", &self.registry.config.name)
            .finish_non_exhaustive()
    }
}

#[cfg(all(test, not(bulwark_loom)))]
mod tests {
    use super::*;
    use crate::CircuitBreakerLayer;

    /// A stream of new keys at the bound: each sweep looks at every key once and makes room
    /// for an eighth of the bound, so a new key costs 8 looks on average, whatever the
    /// bound (a scan per new key would cost the bound).
    #[tokio::test(start_paused = true)]
    async fn a_new_key_at_the_bound_costs_amortized_constant_work() {
        for max_keys in [8, 64, 512] {
            let layer = KeyedCircuitBreakerLayer::new(
                CircuitBreakerLayer::builder(),
                |key: &u64| *key,
                max_keys,
                Duration::from_secs(60),
            )
            .unwrap();
            let registry = &layer.registry;
            for key in 0..max_keys as u64 {
                registry.breaker(&key);
            }
            assert_eq!(registry.swept.load(Relaxed), 0, "no sweep below the bound");
            let new_keys = 100 * max_keys as u64;
            for key in 0..new_keys {
                registry.breaker(&(max_keys as u64 + key));
            }
            assert_eq!(layer.handle().len(), max_keys);
            let per_key = SWEEP_SHARE as u64;
            assert_eq!(
                registry.swept.load(Relaxed),
                per_key * new_keys,
                "max_keys {max_keys}"
            );
        }
    }
}
