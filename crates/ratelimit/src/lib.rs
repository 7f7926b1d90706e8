//! Rate limits for [tower] (crate docs are written with the layer).
//!
//! [tower]: https://docs.rs/tower
#![forbid(unsafe_code)]
#![cfg_attr(docsrs, feature(doc_cfg))]

mod limiter;
mod quota;

pub use self::limiter::{Decision, LimitError, Limiter};
pub use self::quota::Quota;
