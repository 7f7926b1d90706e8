use std::convert::Infallible;
use std::future::{ready, Ready};
use std::task::{Context, Poll};

use tower_service::Service;

/// An inner service that is always ready and answers every request with itself, at once.
///
/// The baseline of benches and allocation tests: its future is `std::future::Ready`, so
/// whatever a layer costs on top of it is the layer's own.
///
/// ```
/// use tower::ServiceExt;
/// use tower_bulwark_core::testing::Noop;
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// assert_eq!(Noop.oneshot(42u64).await, Ok(42));
/// # }
/// ```
#[derive(Debug, Clone, Copy, Default)]
pub struct Noop;

impl<Req> Service<Req> for Noop {
    type Response = Req;
    type Error = Infallible;
    type Future = Ready<Result<Req, Infallible>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Req) -> Self::Future {
        ready(Ok(request))
    }
}
