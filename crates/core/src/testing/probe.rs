use std::task::{Context, Poll};

use tower_service::Service;

/// Wraps a service and panics if `call` is made without a successful `poll_ready` before it.
///
/// Each `Ok` from `poll_ready` allows exactly one `call`. Clones start unready, since
/// readiness belongs to one handle, not to all of them.
///
/// ```should_panic
/// use tower::{service_fn, Service};
/// use tower_bulwark_core::testing::ReadinessProbe;
///
/// let mut probe = ReadinessProbe::new(service_fn(|x: u8| async move { Ok::<_, ()>(x) }));
/// drop(probe.call(1)); // panics: no poll_ready
/// ```
#[derive(Debug)]
pub struct ReadinessProbe<S> {
    inner: S,
    ready: bool,
}

impl<S> ReadinessProbe<S> {
    /// Wraps `inner`.
    pub fn new(inner: S) -> Self {
        ReadinessProbe {
            inner,
            ready: false,
        }
    }

    /// The wrapped service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The wrapped service, mutably.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }
}

impl<S: Clone> Clone for ReadinessProbe<S> {
    fn clone(&self) -> Self {
        ReadinessProbe::new(self.inner.clone())
    }
}

impl<S, Req> Service<Req> for ReadinessProbe<S>
where
    S: Service<Req>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        let poll = self.inner.poll_ready(cx);
        self.ready = matches!(poll, Poll::Ready(Ok(())));
        poll
    }

    fn call(&mut self, request: Req) -> S::Future {
        assert!(
            std::mem::take(&mut self.ready),
            "tower contract violated: `call` without a successful `poll_ready` first"
        );
        self.inner.call(request)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tower::{service_fn, ServiceExt};

    fn echo() -> impl Service<u8, Response = u8, Error = ()> + Clone {
        service_fn(|x: u8| async move { Ok::<_, ()>(x) })
    }

    #[tokio::test]
    async fn allows_one_call_per_ready() {
        let mut probe = ReadinessProbe::new(echo());
        assert_eq!(probe.ready().await.unwrap().call(7).await, Ok(7));
        assert_eq!(probe.ready().await.unwrap().call(8).await, Ok(8));
    }

    #[tokio::test]
    #[should_panic(expected = "without a successful `poll_ready`")]
    async fn panics_on_a_second_call_after_one_ready() {
        let mut probe = ReadinessProbe::new(echo());
        probe.ready().await.unwrap();
        drop(probe.call(1));
        drop(probe.call(2));
    }

    #[tokio::test]
    #[should_panic(expected = "without a successful `poll_ready`")]
    async fn a_clone_of_a_ready_probe_is_not_ready() {
        let mut probe = ReadinessProbe::new(echo());
        probe.ready().await.unwrap();
        let mut clone = probe.clone();
        drop(clone.call(1));
    }
}
