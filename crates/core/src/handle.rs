//! [`HandleRejectionsLayer`]: rejections (and other errors) become HTTP or gRPC responses, so
//! a bulwark stack fits an axum router or a tonic server, which want `Infallible` errors.

mod future;
mod layer;
mod problem;
mod service;

pub use self::future::ResponseFuture;
pub use self::layer::HandleRejectionsLayer;
pub use self::problem::{ProblemDetails, ProblemDetailsLayer, ProblemFuture};
pub use self::service::HandleRejections;
