//! [`BulkheadFull`]: the error of a call the bulkhead refused.

use std::fmt;

use tower_bulwark_core::Rejection;

/// Why the bulkhead refused a call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum FullReason {
    /// Every permit was taken and the wait queue was full (or has no room at all).
    QueueFull,
    /// The call waited `max_wait` in the queue without getting a permit.
    WaitTimeout,
    /// The call's deadline had passed, would pass before it could expect a permit, or
    /// passed while it waited.
    Deadline,
}

impl FullReason {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            FullReason::QueueFull => "queue full",
            FullReason::WaitTimeout => "wait timed out",
            FullReason::Deadline => "deadline before a permit",
        }
    }
}

/// The bulkhead refused the call; the inner service was not called.
///
/// Carries a core [`Rejection`] (kind `BulkheadFull`, reason from [`FullReason`]) in its
/// [`source`](std::error::Error::source), so `find_rejection` and `HandleRejectionsLayer`
/// see it.
#[derive(Debug, Clone, PartialEq)]
pub struct BulkheadFull {
    reason: FullReason,
    rejection: Rejection,
}

impl BulkheadFull {
    pub(crate) fn new(reason: FullReason, rejection: Rejection) -> Self {
        BulkheadFull { reason, rejection }
    }

    /// Why the call was refused.
    pub fn reason(&self) -> FullReason {
        self.reason
    }

    /// The common view of the refusal.
    pub fn rejection(&self) -> &Rejection {
        &self.rejection
    }
}

impl fmt::Display for BulkheadFull {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "bulkhead `{}` refused the call ({})",
            self.rejection.layer(),
            self.reason.as_str()
        )
    }
}

impl std::error::Error for BulkheadFull {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.rejection)
    }
}
