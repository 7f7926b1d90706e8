//! [`ReqwestService`]: a `reqwest::Client` as the `http::Request` service the HTTP presets
//! wrap (feature `reqwest`).

use std::error::Error;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use pin_project::pin_project;
use tower::Service;
use tower_bulwark_core::{polled_after_completion, Rejection, RejectionKind};

use crate::BoxError;

/// The future of reqwest's own `Service` implementation.
type Pending = <reqwest::Client as Service<reqwest::Request>>::Future;

/// A `reqwest::Client` as a tower service of `http::Request<B>` to
/// `http::Response<reqwest::Body>`, which is what `ClientPreset::http` and the HTTP
/// classifiers take.
///
/// reqwest's own `Service` takes a `reqwest::Request`, which the presets cannot read or
/// copy for a retry; this one takes an `http::Request` whose body is one reqwest takes
/// as is and that is `Clone` (the retry layer copies the request for each attempt):
/// `String`, `Vec<u8>`, `Bytes`, `&'static str`, `&'static [u8]`. A streaming body
/// (`http_body_util::Full`, the retry crate's `ReplayBody`) is not one of them: read it
/// into `Bytes` first.
///
/// The request goes out as reqwest would send it (its connection pool, proxies, TLS and
/// timeouts as the client was built), with two differences from reqwest's own builder:
/// - its HTTP version is not passed on: the client's settings decide, so a request
///   rebuilt from an incoming HTTP/2 request is not refused over plain HTTP;
/// - a URI with credentials in it (`http://user:secret@host/`) is refused: put them in an
///   `Authorization` header (the URI is written into error messages and logs).
///
/// A request reqwest cannot send as it is (no scheme or host, a scheme it does not speak,
/// credentials in the URI) is refused before any connection with an
/// [`Unsendable`] error that carries an `InvalidRequest` [`Rejection`]: the preset's
/// retry does not repeat it and its breaker does not count it, since the dependency did
/// nothing wrong.
///
/// The response body streams: the preset's attempt timeout covers the answer's head, and
/// its bulkhead's permit is given back when the head arrives, not when the body has been
/// read.
///
/// No TLS comes with this crate's `reqwest` feature: turn on the TLS feature you want on
/// your own `reqwest` dependency (`rustls-tls`, `native-tls`); features unify. reqwest
/// still reads the `HTTP_PROXY`, `ALL_PROXY` and `NO_PROXY` environment variables unless
/// the client is built with `no_proxy()`.
///
/// ```no_run
/// # #[cfg(all(feature = "breaker", feature = "bulkhead", feature = "retry", feature = "deadline", feature = "shed", feature = "health"))]
/// # async fn run() -> Result<(), tower_bulwark::BoxError> {
/// use tower::{ServiceBuilder, ServiceExt};
/// use tower_bulwark::presets::ClientPreset;
/// use tower_bulwark::ReqwestService;
///
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

    fn call(&mut self, mut request: http::Request<B>) -> Self::Future {
        let has_credentials = request
            .uri()
            .authority()
            .is_some_and(|authority| authority.as_str().contains('@'));
        let state = if has_credentials {
            State::Failed(Some(Unsendable::new(
                "credentials in the URI: send them in an `Authorization` header",
            )))
        } else {
            *request.version_mut() = http::Version::default();
            match reqwest::Request::try_from(request) {
                Ok(request) => State::Sending(self.client.call(request)),
                Err(error) => State::Failed(Some(Unsendable::from_reqwest(error))),
            }
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
    /// Refused before sending (taken when answered).
    Failed(Option<Unsendable>),
    /// Answered.
    Done,
}

impl Future for ReqwestFuture {
    type Output = Result<http::Response<reqwest::Body>, BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut state = self.project().state;
        let answer = match state.as_mut().project() {
            Projected::Sending(pending) => match pending.poll(cx) {
                Poll::Ready(Ok(response)) => Ok(http::Response::from(response)),
                // reqwest refuses some requests only when sent (a scheme it does not speak).
                Poll::Ready(Err(error)) if error.is_builder() => {
                    Err(Unsendable::from_reqwest(error).into())
                }
                Poll::Ready(Err(error)) => Err(error.into()),
                Poll::Pending => return Poll::Pending,
            },
            Projected::Failed(unsendable) => Err(unsendable
                .take()
                .map_or_else(polled_after_completion, Into::into)),
            Projected::Done => Err(polled_after_completion()),
        };
        state.set(State::Done);
        Poll::Ready(answer)
    }
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

/// A request [`ReqwestService`] refused before any connection, because reqwest cannot send
/// it as it is. Its source is an `InvalidRequest` [`Rejection`], so retries do not repeat
/// it and breakers do not count it; its message says why (reqwest's own words, without the
/// URI).
#[derive(Debug)]
pub struct Unsendable {
    why: String,
    rejection: Rejection,
}

impl Unsendable {
    fn new(why: impl Into<String>) -> Self {
        Unsendable {
            why: why.into(),
            rejection: Rejection::new(RejectionKind::InvalidRequest, "reqwest"),
        }
    }

    /// From reqwest's builder error; its URL (which may hold more than the caller wants
    /// in a log) is left out.
    fn from_reqwest(error: reqwest::Error) -> Self {
        let why = match error.source() {
            Some(source) => format!("reqwest cannot send this request: {source}"),
            None => "reqwest cannot send this request".to_string(),
        };
        Unsendable::new(why)
    }
}

impl fmt::Display for Unsendable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.why)
    }
}

impl Error for Unsendable {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        Some(&self.rejection)
    }
}
