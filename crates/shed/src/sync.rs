//! std atomics and mutexes, or loom's under `--cfg bulwark_loom`.

#[cfg(not(bulwark_loom))]
pub(crate) use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
#[cfg(not(bulwark_loom))]
pub(crate) use std::sync::{Arc, Mutex};

#[cfg(bulwark_loom)]
pub(crate) use loom::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
#[cfg(bulwark_loom)]
pub(crate) use loom::sync::{Arc, Mutex};
