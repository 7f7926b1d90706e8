#![doc = include_str!("../README.md")]
#![forbid(unsafe_code)]
#![cfg_attr(docsrs, feature(doc_cfg))]

pub use tower_bulwark_core as core;

pub use tower_bulwark_core::{
    find_rejection, BoxError, Classify, ConfigError, Criticality, Deadline, ErrorsAreFailures,
    Name, Outcome, Rejection, RejectionKind,
};
#[cfg(feature = "http")]
pub use tower_bulwark_core::{GrpcClassifier, HandleRejectionsLayer, HttpClassifier};

pub mod prelude;
