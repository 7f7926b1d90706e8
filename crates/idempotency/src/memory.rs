//! [`MemoryStore`]: keys kept in the process, bounded and expiring.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;

use crate::store::{Claimed, Store, StoreError, StoreFuture};
use crate::{Fingerprint, Record, RecordState, StoreKey, Token};

/// The default number of keys a [`MemoryStore`] keeps.
pub const DEFAULT_MEMORY_CAPACITY: usize = 100_000;

/// The default number of bytes of answers a [`MemoryStore`] keeps (64 MiB).
pub const DEFAULT_MEMORY_BYTES: usize = 64 << 20;

/// What an entry costs beyond its answer: the key, the fingerprint, the map's slot.
const ENTRY_OVERHEAD: usize = 128;

/// Keys kept in the process: for one replica, or for tests. Time is tokio's, so tests
/// with paused time control expiry. Cloning shares the keys.
///
/// Bounded in keys and in bytes of answers kept: when full, expired entries are dropped,
/// then the finished answers closest to expiry, an eighth of the bound at a time (so a
/// full store sweeps once per many writes, not once per write). A running claim whose
/// lease is live is never dropped (that would let its key run twice): a store full of them
/// refuses a new claim with a store error, and the layer's
/// [`OnStoreError`](crate::OnStoreError) decides. An answer larger than the whole byte
/// bound is kept as "not kept" (a repeat gets 409). Every caller shares the bounds: a
/// client sending many keys pushes out others' answers sooner; the layer's scope and the
/// rate limits above it are what hold a client back.
#[derive(Debug, Clone)]
pub struct MemoryStore {
    inner: Arc<Mutex<Entries>>,
}

#[derive(Debug)]
struct Entries {
    map: HashMap<StoreKey, Entry>,
    capacity: usize,
    max_bytes: usize,
    /// The sum of the entries' sizes.
    bytes: usize,
}

#[derive(Debug)]
struct Entry {
    record: Record,
    expires: Instant,
    size: usize,
}

impl Default for MemoryStore {
    fn default() -> Self {
        MemoryStore::with_limits(DEFAULT_MEMORY_CAPACITY, DEFAULT_MEMORY_BYTES)
    }
}

impl MemoryStore {
    /// A store of at most [`DEFAULT_MEMORY_CAPACITY`] keys and [`DEFAULT_MEMORY_BYTES`].
    pub fn new() -> Self {
        MemoryStore::default()
    }

    /// A store of at most `capacity` keys (at least one) and [`DEFAULT_MEMORY_BYTES`].
    pub fn with_capacity(capacity: usize) -> Self {
        MemoryStore::with_limits(capacity, DEFAULT_MEMORY_BYTES)
    }

    /// A store of at most `capacity` keys (at least one) and `max_bytes` of answers.
    pub fn with_limits(capacity: usize, max_bytes: usize) -> Self {
        MemoryStore {
            inner: Arc::new(Mutex::new(Entries {
                map: HashMap::new(),
                capacity: capacity.max(1),
                max_bytes,
                bytes: 0,
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

    /// How many bytes the kept entries take, as the byte bound counts them.
    pub fn bytes(&self) -> usize {
        self.lock().bytes
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
    ) -> Result<Claimed, StoreError> {
        let now = Instant::now();
        let mut entries = self.lock();
        match entries.map.get(&key) {
            Some(entry) if entry.expires > now => {
                return Ok(Claimed::Existing(entry.record.clone()))
            }
            Some(_) => {}
            None if entries.map.len() >= entries.capacity => {
                let keys = entries.capacity - (entries.capacity / 8).max(1);
                let bytes = entries.max_bytes;
                entries.make_room(now, None, keys, bytes)?;
            }
            None => {}
        }
        let record = Record {
            fingerprint,
            state: RecordState::Running(token),
        };
        entries.insert(key, record, later(now, lease));
        Ok(Claimed::New)
    }

    fn complete_now(
        &self,
        key: StoreKey,
        token: Token,
        mut record: Record,
        ttl: Duration,
    ) -> Result<bool, StoreError> {
        let now = Instant::now();
        let mut entries = self.lock();
        match entries.map.get(&key) {
            Some(entry) if entry.is_claim_of(token) || entry.expires <= now => {}
            Some(_) => return Ok(false),
            None if entries.map.len() >= entries.capacity => {
                let keys = entries.capacity - (entries.capacity / 8).max(1);
                let bytes = entries.max_bytes;
                entries.make_room(now, None, keys, bytes)?;
            }
            None => {}
        }
        if entry_size(&record) > entries.max_bytes {
            if let RecordState::Done(stored) = &record.state {
                record.state = RecordState::NotKept(stored.status);
            }
        }
        entries.insert(key, record, later(now, ttl));
        if entries.bytes > entries.max_bytes {
            let keys = entries.capacity;
            let bytes = entries.max_bytes - entries.max_bytes / 8;
            // Over the bound only by running claims if this fails: they are small and
            // end with their leases.
            let _ = entries.make_room(now, Some(key), keys, bytes);
        }
        Ok(true)
    }

    fn release_now(&self, key: StoreKey, token: Token) -> bool {
        let mut entries = self.lock();
        match entries.map.get(&key) {
            Some(entry) if entry.is_claim_of(token) => {
                entries.remove(&key);
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

fn entry_size(record: &Record) -> usize {
    ENTRY_OVERHEAD + record.answer_len()
}

impl Entry {
    /// Whether it is `token`'s claim, live or not: an owner whose lease ended may still
    /// write its answer if nobody took the key over.
    fn is_claim_of(&self, token: Token) -> bool {
        self.record.state == RecordState::Running(token)
    }

    fn is_running(&self, now: Instant) -> bool {
        self.expires > now && matches!(self.record.state, RecordState::Running(_))
    }
}

impl Entries {
    fn insert(&mut self, key: StoreKey, record: Record, expires: Instant) {
        let size = entry_size(&record);
        self.bytes += size;
        if let Some(old) = self.map.insert(
            key,
            Entry {
                record,
                expires,
                size,
            },
        ) {
            self.bytes -= old.size;
        }
    }

    fn remove(&mut self, key: &StoreKey) {
        if let Some(old) = self.map.remove(key) {
            self.bytes -= old.size;
        }
    }

    /// Drops expired entries, then the finished answers closest to expiry (never
    /// `spare`, never a live running claim) until at most `keys` entries and `bytes`
    /// bytes are kept. Callers aim an eighth below the bound, so the scan is paid once
    /// per many writes.
    fn make_room(
        &mut self,
        now: Instant,
        spare: Option<StoreKey>,
        keys: usize,
        bytes: usize,
    ) -> Result<(), StoreError> {
        self.map.retain(|_, entry| entry.expires > now);
        self.bytes = self.map.values().map(|entry| entry.size).sum();
        let fits = |entries: &Entries| entries.map.len() <= keys && entries.bytes <= bytes;
        if fits(self) {
            return Ok(());
        }
        let mut finished: Vec<(Instant, StoreKey)> = self
            .map
            .iter()
            .filter(|(key, entry)| !entry.is_running(now) && Some(**key) != spare)
            .map(|(key, entry)| (entry.expires, *key))
            .collect();
        finished.sort_unstable_by_key(|(expires, _)| *expires);
        for (_, key) in finished {
            if fits(self) {
                break;
            }
            self.remove(&key);
        }
        // One place free is enough to go on; the aim is only the batch's size.
        if self.map.len() < self.capacity {
            Ok(())
        } else {
            Err(StoreError::new(
                "the memory store is full of running requests",
            ))
        }
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
        Box::pin(std::future::ready(result))
    }

    fn release(&self, key: StoreKey, token: Token) -> StoreFuture<'_, bool> {
        let result = self.release_now(key, token);
        Box::pin(std::future::ready(Ok(result)))
    }
}
