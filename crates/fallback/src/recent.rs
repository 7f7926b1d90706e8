//! [`RecentStores`]: which keys the last-good cache stored lately, read without a lock, so
//! that a success whose key was stored a moment ago costs neither the cache's lock nor a
//! copy of the response.

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hash};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use tokio::time::Instant;

/// The low 32 bits of a slot: one more than the millisecond (since `start`) of the last
/// store, wrapping every 49.7 days (never zero, so that zero is an empty slot). The high 32
/// bits: the key's tag, the high half of its hash.
///
/// Tags are 32 bits, not fewer: a key whose tag and slot equal a hot key's (a "twin")
/// finds that key's fresh stamp at every success and is never stored at all. With 16-bit
/// tags and 4,096 slots one key in 2^28 pairs is a twin, and a cache of a million keys has
/// thousands; with 32-bit tags, one pair in 2^44.
const TIME_BITS: u32 = 32;
const TIME_MASK: u64 = (1 << TIME_BITS) - 1;

/// The longest refresh period a stamp can tell, in milliseconds: half the wrap, so that
/// wrapping differences compare right. Longer periods are cut to it (a key is then stored
/// a little more often than asked, every 24.8 days).
const MAX_REFRESH_MS: u64 = (1 << (TIME_BITS - 1)) - 1;

/// The most slots: 32 KiB, whatever the cache's capacity.
const MAX_SLOTS: usize = 4096;

/// One stamp per slot: the top 32 bits of a key's hash over the time it was last stored.
/// Keys share slots by hash; a key whose slot another key took is stored again at its next
/// success, a little extra work and never a wrong answer. A key the cache drops (by its
/// bound) or replaces with an answer that varies is [forgotten](Self::forget), so that its
/// next success is stored at once.
pub(crate) struct RecentStores<S = RandomState> {
    /// Zero: every success is stored.
    refresh_ms: u64,
    start: Instant,
    hasher: S,
    slots: Box<[AtomicU64]>,
}

impl RecentStores {
    /// A key is stored again at most once per `refresh` (rounded down to milliseconds);
    /// slots for a cache of `capacity` keys.
    pub(crate) fn new(refresh: Duration, capacity: usize) -> Self {
        Self::with_hasher(refresh, capacity, RandomState::new())
    }
}

impl<S: BuildHasher> RecentStores<S> {
    fn with_hasher(refresh: Duration, capacity: usize, hasher: S) -> Self {
        let slots = capacity.clamp(16, MAX_SLOTS).next_power_of_two();
        RecentStores {
            refresh_ms: u64::try_from(refresh.as_millis())
                .unwrap_or(u64::MAX)
                .min(MAX_REFRESH_MS),
            start: Instant::now(),
            hasher,
            slots: (0..slots).map(|_| AtomicU64::new(0)).collect(),
        }
    }

    /// The slot of `key` and its tag.
    fn slot<K: Hash>(&self, key: &K) -> (&AtomicU64, u64) {
        let hash = self.hasher.hash_one(key);
        // Slots are a power of two (at most 2^12): the low bits pick one, the high 32 bits
        // tag it.
        (
            &self.slots[hash as usize & (self.slots.len() - 1)],
            hash >> TIME_BITS,
        )
    }

    /// Whether a success for `key` should be stored now: not if `key` was stored less than
    /// the refresh period ago. A `true` marks it stored now; of two racing callers, one
    /// gets `true`.
    pub(crate) fn claim<K: Hash>(&self, key: &K) -> bool {
        if self.refresh_ms == 0 {
            return true;
        }
        let (slot, tag) = self.slot(key);
        let now = self.now_ms();
        let seen = slot.load(Relaxed);
        let stamped = seen & TIME_MASK;
        if seen >> TIME_BITS == tag
            && stamped != 0
            && now.wrapping_sub(stamped) & TIME_MASK < self.refresh_ms
        {
            return false;
        }
        match slot.compare_exchange(seen, tag << TIME_BITS | now, Relaxed, Relaxed) {
            Ok(_) => true,
            // Another caller stamped the slot first: if for this key, it stores.
            Err(current) => current >> TIME_BITS != tag,
        }
    }

    /// Forgets that `key` was stored, if its stamp is still in its slot: its next success
    /// is stored whatever the time. (A twin's stamp may go too: one extra store.)
    pub(crate) fn forget<K: Hash>(&self, key: &K) {
        if self.refresh_ms == 0 {
            return;
        }
        let (slot, tag) = self.slot(key);
        let seen = slot.load(Relaxed);
        if seen != 0 && seen >> TIME_BITS == tag {
            let _ = slot.compare_exchange(seen, 0, Relaxed, Relaxed);
        }
    }

    /// One more than the milliseconds since `start`, wrapping within 32 bits, never zero.
    fn now_ms(&self) -> u64 {
        let elapsed = u64::try_from(self.start.elapsed().as_millis()).unwrap_or(u64::MAX);
        (elapsed.wrapping_add(1) & TIME_MASK).max(1)
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
        // Whether or not "b" lands in "a"'s slot, it is claimed: only the same 32-bit tag
        // in the same slot would skip it.
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
        // skipped only when the slot holds a fresh stamp with its own 32-bit tag: one
        // would be a fault, not bad luck.
        let recent = RecentStores::new(Duration::from_secs(60), 1);
        let skipped = (0..1_000).filter(|key| !recent.claim(key)).count();
        assert_eq!(skipped, 0, "{skipped} keys never stored were skipped");
    }

    /// Hashes a `u64` key to itself, so a test can choose keys that share a slot.
    #[derive(Clone, Copy)]
    struct Identity;

    struct IdentityHasher(u64);

    impl std::hash::Hasher for IdentityHasher {
        fn finish(&self) -> u64 {
            self.0
        }
        fn write(&mut self, bytes: &[u8]) {
            for byte in bytes {
                self.0 = self.0 << 8 | u64::from(*byte);
            }
        }
        fn write_u64(&mut self, n: u64) {
            self.0 = n;
        }
    }

    impl BuildHasher for Identity {
        type Hasher = IdentityHasher;
        fn build_hasher(&self) -> IdentityHasher {
            IdentityHasher(0)
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_key_sharing_a_hot_keys_slot_and_top_bits_is_still_stored() {
        // Same slot (low bits), same top 16 bits: with 16-bit tags the second key found
        // the first one's fresh stamp at each success and was never stored while the
        // first stayed hot. Only keys equal in all top 32 bits share a tag now.
        let recent = RecentStores::with_hasher(Duration::from_secs(1), 16, Identity);
        let hot = 7_u64;
        let twin = 7_u64 | 1 << 40;
        for _ in 0..5 {
            recent.claim(&hot);
            assert!(recent.claim(&twin), "the twin of a hot key was skipped");
            recent.claim(&hot);
            tokio::time::advance(Duration::from_millis(300)).await;
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_forgotten_key_is_claimed_at_once() {
        let recent = RecentStores::new(Duration::from_secs(1), 8);
        assert!(recent.claim(&"a"));
        recent.forget(&"b");
        assert!(
            !recent.claim(&"a"),
            "forgetting another key keeps the stamp"
        );
        recent.forget(&"a");
        assert!(recent.claim(&"a"), "forgotten");
        assert!(!recent.claim(&"a"));
    }

    #[tokio::test(start_paused = true)]
    async fn stamps_age_across_the_wrap_and_long_periods_are_cut() {
        let recent = RecentStores::new(Duration::from_secs(1), 8);
        assert!(recent.claim(&"a"));
        // 30 days: past the half of the 32-bit millisecond wrap.
        tokio::time::advance(Duration::from_secs(30 * 86_400)).await;
        assert!(recent.claim(&"a"));
        assert!(!recent.claim(&"a"));
        let long = RecentStores::new(Duration::from_secs(100 * 86_400), 8);
        assert_eq!(long.refresh_ms, MAX_REFRESH_MS);
    }

    #[test]
    fn slots_are_a_bounded_power_of_two() {
        for (capacity, slots) in [(0, 16), (1, 16), (17, 32), (1_000, 1024), (1 << 40, 4096)] {
            let recent = RecentStores::new(Duration::from_secs(1), capacity);
            assert_eq!(recent.slots.len(), slots, "capacity {capacity}");
        }
    }
}
