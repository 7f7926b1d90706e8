//! Atomics and mutexes, swapped for loom's under `--cfg bulwark_loom` so the breaker's state
//! machine can be model-checked.

#[cfg(bulwark_loom)]
pub(crate) use loom::sync::atomic::{AtomicU32, AtomicU64, AtomicU8, Ordering};
#[cfg(bulwark_loom)]
pub(crate) use loom::sync::{Mutex, MutexGuard};
#[cfg(not(bulwark_loom))]
pub(crate) use std::sync::atomic::{AtomicU32, AtomicU64, AtomicU8, Ordering};
#[cfg(not(bulwark_loom))]
pub(crate) use std::sync::{Mutex, MutexGuard};

/// Keeps a value on cache lines of its own: 128 bytes, a line and the neighbour that x86's
/// spatial prefetcher pulls in with it. Counters that calls write go in one, so their
/// writes do not keep invalidating the lines every admission reads (false sharing).
#[derive(Debug, Default)]
#[repr(align(128))]
pub(crate) struct Padded<T>(pub(crate) T);

impl<T> std::ops::Deref for Padded<T> {
    type Target = T;

    #[inline(always)]
    fn deref(&self) -> &T {
        &self.0
    }
}
