//! Graceful degradation for [tower]: when a dependency fails or a bulwark layer refuses a
//! call, answer with something useful instead, and say that it is degraded.
//!
//! [`FallbackLayer`] tries the last good response for the same key (a bounded, expiring
//! cache of recent successes), then a function of the failure or a static response; it
//! marks what it serves with `x-bulwark-degraded` and a [`Degraded`] extension.
//! [`BackupLayer`] sends the failed call to a backup service instead.
//!
//! [tower]: https://docs.rs/tower
#![forbid(unsafe_code)]

mod backup;
mod cache;
mod layer;

pub use self::backup::{Backup, BackupFuture, BackupLayer};
pub use self::layer::{
    Degraded, Failure, Fallback, FallbackBuilder, FallbackFailed, FallbackLayer, FallbackOn, KeyOf,
    ResponseFuture, SameKey, DEGRADED_HEADER,
};
