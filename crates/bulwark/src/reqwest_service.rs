//! [`ReqwestService`]: a `reqwest::Client` as the `http::Request` service the HTTP presets
//! wrap (feature `reqwest`).

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use pin_project::pin_project;
use tower::Service;

use crate::BoxError;

/// The future of reqwest's own `Service` implementation.
type Pending = <reqwest::Client as Service<reqwest::Request>>::Future;

/// A `reqwest::Client` as a tower service of `http::Request<B>` to
/// `http::Response<reqwest::Body>`, which is what
/// [`ClientPreset::http`](crate::presets::ClientPreset::http) and the HTTP classifiers
/// take.
///
/// reqwest's own `Service` takes a `reqwest::Request`, which the presets cannot read or
/// copy for a retry; this one takes an `http::Request` whose body is any type reqwest
/// accepts as a body (`String`, `Vec<u8>`, `Bytes`, `&'static str`). The retry layer copies
/// the request for each attempt, so the body must also be `Clone`: all of those are.
///
/// The request goes out as reqwest would send it (its connection pool, proxies, TLS and
/// timeouts as the client was built); a URI reqwest cannot send to (no scheme or host)
/// fails the call with reqwest's builder error. The response body streams: the preset's
/// attempt timeout covers the answer's head, not the reading of its body.
///
/// No TLS comes with this crate's `reqwest` feature: turn on the TLS feature you want on
/// your own `reqwest` dependency (`rustls-tls`, `native-tls`); features unify.
///
/// ```no_run
/// use tower::{ServiceBuilder, ServiceExt};
/// use tower_bulwark::presets::ClientPreset;
/// use tower_bulwark::{BoxError, ReqwestService};
///
/// # async fn run() -> Result<(), BoxError> {
/// let preset = ClientPreset::http("inventory")?;
/// let client = ServiceBuilder::new()
///     .layer(preset.layer())
///     .service(ReqwestService::new(reqwest::Client::new()));
///
/// let request = http::Request::get("http://inventory.internal/items/7").body(String::new())?;
/// let response = client.oneshot(request).await?;
/// let body = response.into_body();
/// # drop(body);
/// # Ok(())
/// # }
/// ```
#[derive(Clone, Default)]
pub struct ReqwestService {
    client: reqwest::Client,
}

impl ReqwestService {
    /// Sends with `client` (cheap to clone: reqwest's clients share their pool).
    pub fn new(client: reqwest::Client) -> Self {
        ReqwestService { client }
    }

    /// The client it sends with.
    pub fn client(&self) -> &reqwest::Client {
        &self.client
    }
}

impl From<reqwest::Client> for ReqwestService {
    fn from(client: reqwest::Client) -> Self {
        ReqwestService::new(client)
    }
}

impl fmt::Debug for ReqwestService {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ReqwestService").finish_non_exhaustive()
    }
}

impl<B> Service<http::Request<B>> for ReqwestService
where
    B: Into<reqwest::Body>,
{
    type Response = http::Response<reqwest::Body>;
    type Error = BoxError;
    type Future = ReqwestFuture;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Service::<reqwest::Request>::poll_ready(&mut self.client, cx).map_err(Into::into)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        let state = match reqwest::Request::try_from(request) {
            Ok(request) => State::Sending(self.client.call(request)),
            Err(error) => State::Failed(Some(error)),
        };
        ReqwestFuture { state }
    }
}

/// The future of [`ReqwestService`]: reqwest's own, its response as an `http::Response`.
/// Polled again after it answered, it answers an error.
#[pin_project]
pub struct ReqwestFuture {
    #[pin]
    state: State,
}

#[pin_project(project = Projected)]
enum State {
    /// Sent; reqwest's future.
    Sending(#[pin] Pending),
    /// The request could not be made a reqwest request (taken when answered).
    Failed(Option<reqwest::Error>),
    /// Answered.
    Done,
}

impl Future for ReqwestFuture {
    type Output = Result<http::Response<reqwest::Body>, BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut state = self.project().state;
        let answer = match state.as_mut().project() {
            Projected::Sending(pending) => match pending.poll(cx) {
                Poll::Ready(result) => result.map(http::Response::from).map_err(Into::into),
                Poll::Pending => return Poll::Pending,
            },
            Projected::Failed(error) => Err(error.take().map_or_else(after_completion, Into::into)),
            Projected::Done => Err(after_completion()),
        };
        state.set(State::Done);
        Poll::Ready(answer)
    }
}

fn after_completion() -> BoxError {
    "ReqwestFuture polled after completion".into()
}

impl fmt::Debug for ReqwestFuture {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match self.state {
            State::Sending(_) => "sending",
            State::Failed(_) => "failed",
            State::Done => "done",
        };
        f.debug_struct("ReqwestFuture")
            .field("state", &state)
            .finish()
    }
}
