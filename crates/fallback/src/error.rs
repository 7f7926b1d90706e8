//! What the fallback function sees, and the error when it fails too.

use std::fmt;

use http::Response;
use tower_bulwark_core::BoxError;

/// What went wrong, as the fallback function sees it.
#[derive(Debug)]
pub enum Failure<'a, B> {
    /// The call failed, or a layer refused it.
    Error(&'a BoxError),
    /// The call answered with a response the classifier calls a failure (a 503, say).
    Response(&'a Response<B>),
}

/// The call failed and so did its fallback: both errors, the call's as the `source`.
#[derive(Debug)]
pub struct FallbackFailed {
    /// Why the call failed.
    pub primary: BoxError,
    /// Why the fallback failed.
    pub fallback: BoxError,
}

impl fmt::Display for FallbackFailed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "the call failed ({}) and so did its fallback ({})",
            self.primary, self.fallback
        )
    }
}

impl std::error::Error for FallbackFailed {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&*self.primary)
    }
}
