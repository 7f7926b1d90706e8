//! [`BackupLayer`]: send a failed or refused call to a backup dependency.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use http::{HeaderValue, Response};
use pin_project::pin_project;
use tower_bulwark_core::{find_rejection, BoxError, Classify, ErrorsAreFailures, Outcome};
use tower_layer::Layer;
use tower_service::Service;

use crate::{Degraded, FallbackOn, DEGRADED_HEADER};

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

/// Sends a call that failed (per the classifier) or was refused by a bulwark layer to a
/// backup service: a secondary region, a read replica, a simpler implementation. The
/// backup's answer is marked `x-bulwark-degraded: backup` (and [`Degraded::Backup`]); its
/// failure is returned as is (the backup is the last word).
///
/// The request is cloned before each call (the backup needs one if the primary fails), so
/// it must be `Clone` (`http::Request<Full<Bytes>>` is; wrap streaming bodies with the
/// retry crate's `ReplayBody`).
///
/// ```
/// use tower::{service_fn, Layer, ServiceExt};
/// use tower_bulwark_fallback::BackupLayer;
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let replica = service_fn(|_: http::Request<()>| async {
///     Ok::<_, std::convert::Infallible>(http::Response::new("from the replica"))
/// });
/// let primary = service_fn(|_: http::Request<()>| async {
///     Err::<http::Response<&str>, _>(std::io::Error::other("primary down"))
/// });
/// let service = BackupLayer::new(replica).layer(primary);
/// let response = service.oneshot(http::Request::new(())).await.unwrap();
/// assert_eq!(*response.body(), "from the replica");
/// assert_eq!(response.headers()["x-bulwark-degraded"], "backup");
/// # }
/// ```
#[derive(Clone)]
pub struct BackupLayer<T, C = ErrorsAreFailures> {
    backup: T,
    classify: C,
    on: FallbackOn,
}

impl<T> BackupLayer<T> {
    /// Falls back to `backup` on rejections and on `Err`s.
    pub fn new(backup: T) -> Self {
        BackupLayer {
            backup,
            classify: ErrorsAreFailures,
            on: FallbackOn::default(),
        }
    }
}

impl<T, C> BackupLayer<T, C> {
    /// Which results are failures (`HttpClassifier` adds 5xx responses).
    pub fn classify<C2>(self, classify: C2) -> BackupLayer<T, C2> {
        BackupLayer {
            backup: self.backup,
            classify,
            on: self.on,
        }
    }

    /// Which failed calls go to the backup.
    pub fn on(mut self, on: FallbackOn) -> Self {
        self.on = on;
        self
    }
}

impl<S, T: Clone, C: Clone> Layer<S> for BackupLayer<T, C> {
    type Service = Backup<S, T, C>;

    fn layer(&self, inner: S) -> Self::Service {
        Backup {
            inner,
            backup: self.backup.clone(),
            classify: self.classify.clone(),
            on: self.on,
        }
    }
}

/// The service of a [`BackupLayer`].
#[derive(Clone)]
pub struct Backup<S, T, C> {
    inner: S,
    backup: T,
    classify: C,
    on: FallbackOn,
}

impl<S, T, C, Req, B> Service<Req> for Backup<S, T, C>
where
    S: Service<Req, Response = Response<B>>,
    S::Error: Into<BoxError>,
    T: Service<Req, Response = Response<B>> + Clone + Send + 'static,
    T::Error: Into<BoxError>,
    T::Future: Send,
    Req: Clone + Send + 'static,
    B: Send + 'static,
    C: Classify<Response<B>, S::Error> + Clone,
{
    type Response = Response<B>;
    type Error = BoxError;
    type Future = BackupFuture<S::Future, T, C, Req, B>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, request: Req) -> Self::Future {
        let copy = request.clone();
        BackupFuture {
            state: State::Primary {
                future: self.inner.call(request),
                copy: Some(copy),
                backup: Some(self.backup.clone()),
                classify: self.classify.clone(),
                on: self.on,
            },
        }
    }
}

/// Response future of [`Backup`].
#[pin_project]
pub struct BackupFuture<F, T, C, Req, B> {
    #[pin]
    state: State<F, T, C, Req, B>,
}

#[pin_project(project = StateProjection)]
enum State<F, T, C, Req, B> {
    Primary {
        #[pin]
        future: F,
        copy: Option<Req>,
        backup: Option<T>,
        classify: C,
        on: FallbackOn,
    },
    Backup {
        future: BoxFuture<Result<Response<B>, BoxError>>,
    },
}

impl<F, T, C, Req, B, E> Future for BackupFuture<F, T, C, Req, B>
where
    F: Future<Output = Result<Response<B>, E>>,
    E: Into<BoxError>,
    T: Service<Req, Response = Response<B>> + Send + 'static,
    T::Error: Into<BoxError>,
    T::Future: Send,
    Req: Send + 'static,
    B: Send + 'static,
    C: Classify<Response<B>, E>,
{
    type Output = Result<Response<B>, BoxError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        loop {
            let next = match self.as_mut().project().state.project() {
                StateProjection::Primary {
                    future,
                    copy,
                    backup,
                    classify,
                    on,
                } => {
                    let result = match future.poll(cx) {
                        Poll::Ready(result) => result,
                        Poll::Pending => return Poll::Pending,
                    };
                    let outcome = classify.classify(&result);
                    let result = result.map_err(Into::into);
                    let rejected = matches!(&result, Err(e) if find_rejection(e).is_some());
                    let falls_back = match on {
                        FallbackOn::RejectionsAndFailures => {
                            rejected || outcome == Outcome::Failure
                        }
                        FallbackOn::Rejections => rejected,
                    };
                    let (Some(request), Some(backup), true) =
                        (copy.take(), backup.take(), falls_back)
                    else {
                        return Poll::Ready(result);
                    };
                    let call = async move {
                        use tower::ServiceExt as _;
                        let response = backup.oneshot(request).await.map_err(Into::into)?;
                        Ok(mark(response))
                    };
                    State::Backup {
                        future: Box::pin(call),
                    }
                }
                StateProjection::Backup { future } => return future.as_mut().poll(cx),
            };
            self.as_mut().project().state.set(next);
        }
    }
}

fn mark<B>(mut response: Response<B>) -> Response<B> {
    response
        .headers_mut()
        .insert(DEGRADED_HEADER, HeaderValue::from_static("backup"));
    response.extensions_mut().insert(Degraded::Backup);
    response
}

impl<T, C> fmt::Debug for BackupLayer<T, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BackupLayer")
            .field("on", &self.on)
            .finish_non_exhaustive()
    }
}

impl<S: fmt::Debug, T, C> fmt::Debug for Backup<S, T, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Backup")
            .field("inner", &self.inner)
            .finish_non_exhaustive()
    }
}

impl<F, T, C, Req, B> fmt::Debug for BackupFuture<F, T, C, Req, B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BackupFuture").finish_non_exhaustive()
    }
}
