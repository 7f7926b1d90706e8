//! The names a service stack usually needs: `use tower_bulwark::prelude::*;`.

pub use crate::BulwarkExt;
#[cfg(feature = "breaker")]
pub use tower_bulwark_breaker::{CircuitBreakerLayer, CircuitOpen};
#[cfg(feature = "bulkhead")]
pub use tower_bulwark_bulkhead::{BulkheadFull, BulkheadLayer};
pub use tower_bulwark_core::{
    find_rejection, BoxError, Classify, Criticality, Deadline, ErrorsAreFailures, Outcome,
    Rejection, RejectionKind,
};
#[cfg(feature = "http")]
pub use tower_bulwark_core::{GrpcClassifier, HandleRejectionsLayer, HttpClassifier};
#[cfg(feature = "deadline")]
pub use tower_bulwark_deadline::{AcceptDeadlineLayer, PropagateDeadlineLayer};
#[cfg(feature = "retry")]
pub use tower_bulwark_retry::{RatioBudget, RetryPolicy};
#[cfg(feature = "shed")]
pub use tower_bulwark_shed::{AdaptiveThrottleLayer, ShedLayer};
