//! Atomics, swapped for loom's under `--cfg bulwark_loom` so budgets can be model-checked.

#[cfg(bulwark_loom)]
pub(crate) use loom::sync::atomic::{AtomicI64, AtomicU64, Ordering};
#[cfg(not(bulwark_loom))]
pub(crate) use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
