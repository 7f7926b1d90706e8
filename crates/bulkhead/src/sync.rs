//! Atomics and mutexes, swapped for loom's under `--cfg bulwark_loom` so the permit and
//! queue accounting can be model-checked.

#[cfg(bulwark_loom)]
pub(crate) use loom::sync::atomic::{AtomicU64, AtomicU8, AtomicUsize, Ordering};
#[cfg(bulwark_loom)]
pub(crate) use loom::sync::{Mutex, MutexGuard};
#[cfg(not(bulwark_loom))]
pub(crate) use std::sync::atomic::{AtomicU64, AtomicU8, AtomicUsize, Ordering};
#[cfg(not(bulwark_loom))]
pub(crate) use std::sync::{Mutex, MutexGuard};
