//! The workspace's one shim for atomics, mutexes and `Arc`: std's, or loom's under
//! `--cfg bulwark_loom`, so the lock-free state of the layers (a breaker's admission, a
//! bulkhead's permits, a budget's balance, a shed limit, a drain's count) can be
//! model-checked. Layers import these instead of `std::sync` for that state.

#[cfg(bulwark_loom)]
pub use loom::sync::atomic::{
    AtomicBool, AtomicI64, AtomicU32, AtomicU64, AtomicU8, AtomicUsize, Ordering,
};
#[cfg(bulwark_loom)]
pub use loom::sync::{Arc, Mutex, MutexGuard};
#[cfg(not(bulwark_loom))]
pub use std::sync::atomic::{
    AtomicBool, AtomicI64, AtomicU32, AtomicU64, AtomicU8, AtomicUsize, Ordering,
};
#[cfg(not(bulwark_loom))]
pub use std::sync::{Arc, Mutex, MutexGuard};
