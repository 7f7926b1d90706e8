//! Atomics, swapped for loom's under `--cfg bulwark_loom` so the admission state machine can
//! be model-checked.

#[cfg(bulwark_loom)]
pub(crate) use loom::sync::atomic::{AtomicU32, AtomicU64, AtomicU8, Ordering};
#[cfg(not(bulwark_loom))]
pub(crate) use std::sync::atomic::{AtomicU32, AtomicU64, AtomicU8, Ordering};
