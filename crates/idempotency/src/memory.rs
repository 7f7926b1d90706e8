//! [`MemoryStore`]: keys kept in the process, bounded and expiring.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;

use crate::store::{Claimed, Store, StoreFuture};
use crate::{Fingerprint, Record, RecordState, StoreKey, Token};

/// The default number of keys a [`MemoryStore`] keeps.
pub const DEFAULT_MEMORY_CAPACITY: usize = 100_000;

/// Keys kept in the process: for one replica, or for tests. Bounded: when full, expired
/// entries are dropped, then the entries closest to expiry (never a running claim whose
/// lease is live; if every entry is one, the new claim is refused with a store error, so
/// the configured [`OnStoreError`](crate::OnStoreError) decides). Time is tokio's, so
/// tests with paused time control expiry.
///
/// Cloning shares the keys.
#[derive(Debug, Clone)]
pub struct MemoryStore {
    inner: Arc<Mutex<Entries>>,
}

#[derive(Debug)]
struct Entries {
    map: HashMap<StoreKey, Entry>,
    capacity: usize,
}

#[derive(Debug)]
struct Entry {
    record: Record,
    expires: Instant,
}

impl Default for MemoryStore {
    fn default() -> Self {
        MemoryStore::with_capacity(DEFAULT_MEMORY_CAPACITY)
    }
}

impl MemoryStore {
    /// A store of at most [`DEFAULT_MEMORY_CAPACITY`] keys.
    pub fn new() -> Self {
        MemoryStore::default()
    }

    /// A store of at most `capacity` keys (at least one).
    pub fn with_capacity(capacity: usize) -> Self {
        MemoryStore {
            inner: Arc::new(Mutex::new(Entries {
                map: HashMap::new(),
                capacity: capacity.max(1),
            })),
        }
    }

    /// How many keys are kept now, expired ones included until they are swept.
    pub fn len(&self) -> usize {
        self.lock().map.len()
    }

    /// Whether no key is kept.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Entries> {
        // Nothing here panics while holding the lock; a poisoned lock still holds
        // consistent entries.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn claim_now(
        &self,
        key: StoreKey,
        fingerprint: Fingerprint,
        token: Token,
        lease: Duration,
    ) -> Result<Claimed, crate::StoreError> {
        let now = Instant::now();
        let mut entries = self.lock();
        if let Some(entry) = entries.map.get(&key) {
            if entry.expires > now {
                return Ok(Claimed::Existing(entry.record.clone()));
            }
        }
        if entries.map.len() >= entries.capacity && !entries.map.contains_key(&key) {
            entries.make_room(now)?;
        }
        entries.map.insert(
            key,
            Entry {
                record: Record {
                    fingerprint,
                    state: RecordState::Running(token),
                },
                expires: later(now, lease),
            },
        );
        Ok(Claimed::New)
    }

    fn complete_now(&self, key: StoreKey, token: Token, record: Record, ttl: Duration) -> bool {
        let now = Instant::now();
        let mut entries = self.lock();
        match entries.map.get_mut(&key) {
            Some(entry) if entry.owned_by(token, now) => {
                entry.record = record;
                entry.expires = later(now, ttl);
                true
            }
            _ => false,
        }
    }

    fn release_now(&self, key: StoreKey, token: Token) -> bool {
        let now = Instant::now();
        let mut entries = self.lock();
        match entries.map.get(&key) {
            Some(entry) if entry.owned_by(token, now) => {
                entries.map.remove(&key);
                true
            }
            _ => false,
        }
    }
}

/// `now + after`, or a century on for durations past what an instant can hold.
fn later(now: Instant, after: Duration) -> Instant {
    now.checked_add(after)
        .or_else(|| now.checked_add(Duration::from_secs(100 * 365 * 24 * 60 * 60)))
        .unwrap_or(now)
}

impl Entry {
    fn owned_by(&self, token: Token, now: Instant) -> bool {
        self.expires > now && self.record.state == RecordState::Running(token)
    }
}

impl Entries {
    /// Frees places: expired entries first, else the eighth of the finished entries
    /// closest to expiry, so a full store scans once per `capacity / 8` claims, not once
    /// per claim. Running claims are kept: dropping one would let its key run twice.
    fn make_room(&mut self, now: Instant) -> Result<(), crate::StoreError> {
        self.map.retain(|_, entry| entry.expires > now);
        if self.map.len() < self.capacity {
            return Ok(());
        }
        let mut finished: Vec<(Instant, StoreKey)> = self
            .map
            .iter()
            .filter(|(_, entry)| !matches!(entry.record.state, RecordState::Running(_)))
            .map(|(key, entry)| (entry.expires, *key))
            .collect();
        if finished.is_empty() {
            return Err(crate::StoreError::new(
                "the memory store is full of running requests",
            ));
        }
        let evict = (self.capacity / 8).clamp(1, finished.len());
        finished.select_nth_unstable_by_key(evict - 1, |(expires, _)| *expires);
        for (_, key) in &finished[..evict] {
            self.map.remove(key);
        }
        Ok(())
    }
}

impl Store for MemoryStore {
    fn claim(
        &self,
        key: StoreKey,
        fingerprint: Fingerprint,
        token: Token,
        lease: Duration,
    ) -> StoreFuture<'_, Claimed> {
        let result = self.claim_now(key, fingerprint, token, lease);
        Box::pin(std::future::ready(result))
    }

    fn complete(
        &self,
        key: StoreKey,
        token: Token,
        record: Record,
        ttl: Duration,
    ) -> StoreFuture<'_, bool> {
        let result = self.complete_now(key, token, record, ttl);
        Box::pin(std::future::ready(Ok(result)))
    }

    fn release(&self, key: StoreKey, token: Token) -> StoreFuture<'_, bool> {
        let result = self.release_now(key, token);
        Box::pin(std::future::ready(Ok(result)))
    }
}
