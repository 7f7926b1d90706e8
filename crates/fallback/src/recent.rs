//! [`RecentStores`]: which keys the last-good cache stored lately, read without a lock, so
//! that a success whose key was stored a moment ago costs neither the cache's lock nor a
//! copy of the response.

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hash};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use tokio::time::Instant;

/// The low 48 bits of a slot: one more than the millisecond (since `start`) of the last
/// store, so that zero is an empty slot. 48 bits of milliseconds last 8,900 years.
const TIME_BITS: u32 = 48;
const TIME_MASK: u64 = (1 << TIME_BITS) - 1;

/// The most slots: 32 KiB, whatever the cache's capacity.
const MAX_SLOTS: usize = 4096;

/// One stamp per slot: the top 16 bits of a key's hash over the time it was last stored.
/// Keys share slots by hash; a key whose slot another key took is stored again at its next
/// success, a little extra work and never a wrong answer.
pub(crate) struct RecentStores {
    /// Zero: every success is stored.
    refresh_ms: u64,
    start: Instant,
    hasher: RandomState,
    slots: Box<[AtomicU64]>,
}

impl RecentStores {
    /// A key is stored again at most once per `refresh` (rounded down to milliseconds);
    /// slots for a cache of `capacity` keys.
    pub(crate) fn new(refresh: Duration, capacity: usize) -> Self {
        let slots = capacity.clamp(16, MAX_SLOTS).next_power_of_two();
        RecentStores {
            refresh_ms: u64::try_from(refresh.as_millis()).unwrap_or(u64::MAX),
            start: Instant::now(),
            hasher: RandomState::new(),
            slots: (0..slots).map(|_| AtomicU64::new(0)).collect(),
        }
    }

    /// Whether a success for `key` should be stored now: not if `key` was stored less than
    /// the refresh period ago. A `true` marks it stored now; of two racing callers, one
    /// gets `true`.
    pub(crate) fn claim<K: Hash>(&self, key: &K) -> bool {
        if self.refresh_ms == 0 {
            return true;
        }
        let hash = self.hasher.hash_one(key);
        // Slots are a power of two: the low bits pick one, the high bits tag it.
        let slot = &self.slots[hash as usize & (self.slots.len() - 1)];
        let tag = hash >> TIME_BITS;
        let now = self.now_ms();
        let seen = slot.load(Relaxed);
        let stamped = seen & TIME_MASK;
        if seen >> TIME_BITS == tag && stamped != 0 && now.saturating_sub(stamped) < self.refresh_ms
        {
            return false;
        }
        match slot.compare_exchange(seen, tag << TIME_BITS | now, Relaxed, Relaxed) {
            Ok(_) => true,
            // Another caller stamped the slot first: if for this key, it stores.
            Err(current) => current >> TIME_BITS != tag,
        }
    }

    /// One more than the milliseconds since `start`, within 48 bits.
    fn now_ms(&self) -> u64 {
        let elapsed = u64::try_from(self.start.elapsed().as_millis()).unwrap_or(TIME_MASK);
        elapsed.saturating_add(1).min(TIME_MASK)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_key_is_claimed_once_per_refresh_period() {
        let recent = RecentStores::new(Duration::from_secs(1), 8);
        assert!(recent.claim(&"a"), "never stored");
        assert!(!recent.claim(&"a"), "stored just now");
        tokio::time::advance(Duration::from_millis(999)).await;
        assert!(!recent.claim(&"a"), "999 ms after");
        tokio::time::advance(Duration::from_millis(1)).await;
        assert!(recent.claim(&"a"), "a whole period after");
        assert!(!recent.claim(&"a"));
    }

    #[tokio::test(start_paused = true)]
    async fn another_key_is_claimed_on_its_own() {
        // Whether or not "b" lands in "a"'s slot, it is claimed: only the same 16-bit tag
        // in the same slot (one chance in a million) would skip it.
        let recent = RecentStores::new(Duration::from_secs(1), 1);
        assert!(recent.claim(&"a"));
        assert!(recent.claim(&"b"), "another key");
    }

    #[tokio::test(start_paused = true)]
    async fn a_zero_period_claims_every_time() {
        let recent = RecentStores::new(Duration::ZERO, 8);
        assert!((0..5).all(|_| recent.claim(&"a")));
        let under_a_millisecond = RecentStores::new(Duration::from_micros(999), 8);
        assert!((0..5).all(|_| under_a_millisecond.claim(&"a")));
    }

    #[tokio::test(start_paused = true)]
    async fn keys_sharing_a_slot_are_stored_again() {
        // 16 slots and 1,000 keys: each slot is taken over again and again, and a key is
        // skipped only when the slot holds a fresh stamp with its own 16-bit tag, about
        // once in 65,536 claims here: 10 of 1,000 would be a fault, not bad luck.
        let recent = RecentStores::new(Duration::from_secs(60), 1);
        let skipped = (0..1_000).filter(|key| !recent.claim(key)).count();
        assert!(skipped <= 10, "{skipped} keys never stored were skipped");
    }

    #[test]
    fn slots_are_a_bounded_power_of_two() {
        for (capacity, slots) in [(0, 16), (1, 16), (17, 32), (1_000, 1024), (1 << 40, 4096)] {
            let recent = RecentStores::new(Duration::from_secs(1), capacity);
            assert_eq!(recent.slots.len(), slots, "capacity {capacity}");
        }
    }
}
