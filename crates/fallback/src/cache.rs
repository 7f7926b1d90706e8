//! [`LastGood`]: recent good responses by key, bounded and expiring.

use std::collections::{HashMap, VecDeque};
use std::hash::Hash;
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use http::{HeaderMap, Response};
use tokio::time::Instant;

use crate::recent::RecentStores;
use crate::vary::Variant;

/// The last good response for each key, at most `capacity` keys (the oldest entry goes
/// first), each kept for `ttl` with the request header values it was chosen by, and
/// replaced at most once per refresh period when it varies on nothing.
pub(crate) struct LastGood<K, B> {
    ttl: Duration,
    capacity: usize,
    entries: Mutex<Entries<K, B>>,
    recent: RecentStores,
}

#[derive(Debug)]
struct Entries<K, B> {
    /// Each key's response, when it was stored and its store number.
    by_key: HashMap<K, (Instant, u64, Response<B>, Variant)>,
    /// Keys by store number, oldest first (may hold keys stored again since, or gone).
    order: VecDeque<(K, u64)>,
    stores: u64,
}

impl<K: Hash + Eq + Clone, B: Clone> LastGood<K, B> {
    pub(crate) fn new(ttl: Duration, capacity: usize, refresh: Duration) -> Self {
        LastGood {
            ttl,
            capacity,
            recent: RecentStores::new(refresh, capacity),
            entries: Mutex::new(Entries {
                by_key: HashMap::new(),
                order: VecDeque::new(),
                stores: 0,
            }),
        }
    }

    /// Whether a success for `key` that varies on nothing should be stored: not when one
    /// was stored within the refresh period (a `true` counts as that store).
    pub(crate) fn claim(&self, key: &K) -> bool {
        self.recent.claim(key)
    }

    /// Forgets that `key` was stored lately: its next success that varies on nothing is
    /// stored at once (an answer that varies has just replaced its answer for every
    /// other header value).
    pub(crate) fn forget(&self, key: &K) {
        self.recent.forget(key);
    }

    /// Keeps `response`, chosen by `variant`, as the last good one for `key`.
    pub(crate) fn store(&self, key: K, response: Response<B>, variant: Variant) {
        let now = Instant::now();
        let mut entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        entries.stores += 1;
        let number = entries.stores;
        let entry = (now, number, response, variant);
        entries.by_key.insert(key.clone(), entry);
        entries.order.push_back((key, number));
        // Drop the oldest until within the bound, skipping order entries of keys stored
        // again since.
        while entries.by_key.len() > self.capacity {
            let Some((key, stored)) = entries.order.pop_front() else {
                break;
            };
            if entries
                .by_key
                .get(&key)
                .is_some_and(|(_, n, ..)| *n == stored)
            {
                entries.by_key.remove(&key);
                // Its stamp may still be fresh: without this its next success would be
                // skipped, and the key left with no answer for up to a refresh period
                // (a hot key, each period, in a cache churning faster than that).
                self.recent.forget(&key);
            }
        }
        // Keys stored again and again leave stale order entries: compact now and then, so
        // memory stays bounded (amortized O(1)).
        if entries.order.len() > self.capacity.saturating_mul(2).max(16) {
            let Entries { by_key, order, .. } = &mut *entries;
            order.retain(|(key, stored)| by_key.get(key).is_some_and(|(_, n, ..)| n == stored));
        }
    }

    /// The last good response for `key`, if one is younger than the TTL and may answer a
    /// request with `headers` (`None`: not kept).
    pub(crate) fn get(&self, key: &K, headers: Option<&HeaderMap>) -> Option<Response<B>> {
        let entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        let (stored, _, response, variant) = entries.by_key.get(key)?;
        (stored.elapsed() < self.ttl && variant.matches(headers)).then(|| response.clone())
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.entries
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .by_key
            .len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn response(body: &'static str) -> Response<&'static str> {
        Response::new(body)
    }

    #[tokio::test(start_paused = true)]
    async fn entries_expire_after_the_ttl() {
        let cache = LastGood::new(Duration::from_secs(10), 8, Duration::ZERO);
        cache.store("a", response("one"), Variant::default());
        tokio::time::advance(Duration::from_secs(9)).await;
        assert_eq!(cache.get(&"a", None).map(|r| *r.body()), Some("one"));
        tokio::time::advance(Duration::from_secs(1)).await;
        assert!(cache.get(&"a", None).is_none());
    }

    #[tokio::test(start_paused = true)]
    async fn the_bound_drops_the_oldest_key() {
        let cache = LastGood::new(Duration::from_secs(10), 2, Duration::ZERO);
        cache.store("a", response("1"), Variant::default());
        cache.store("b", response("2"), Variant::default());
        cache.store("a", response("3"), Variant::default());
        cache.store("c", response("4"), Variant::default());
        assert_eq!(cache.len(), 2);
        assert!(
            cache.get(&"b", None).is_none(),
            "b is the oldest still stored"
        );
        assert_eq!(cache.get(&"a", None).map(|r| *r.body()), Some("3"));
        for i in 0..1_000 {
            cache.store(
                if i % 2 == 0 { "x" } else { "y" },
                response("z"),
                Variant::default(),
            );
        }
        assert_eq!(cache.len(), 2, "bounded whatever the traffic");
    }
}
