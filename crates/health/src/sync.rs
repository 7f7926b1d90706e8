//! Atomics, swapped for loom's under `--cfg bulwark_loom` so drain admission can be
//! model-checked.

#[cfg(bulwark_loom)]
pub(crate) use loom::sync::atomic::AtomicUsize;
#[cfg(not(bulwark_loom))]
pub(crate) use std::sync::atomic::AtomicUsize;
