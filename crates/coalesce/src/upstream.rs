//! [`Upstream`]: the one call a set of identical requests shares, read whole.
//!
//! It takes the inner service's readiness itself (`poll_ready` then `call`), so that
//! whichever waiter polls it makes the call, and no waiter's readiness is spent on it.

use std::future::Future;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use bytes::{Bytes, BytesMut};
use http::header::VARY;
use http::{response, HeaderMap, Request, Response};
use http_body::Body;
use pin_project::pin_project;
use tower_bulwark_core::BoxError;
use tower_service::Service;

use crate::body::CoalesceBody;
use crate::error::broken;

/// The inner service's readiness, its future, then its body read up to the limit. (Boxed
/// once, as a whole, by the slot: its variants' sizes do not matter.)
#[allow(clippy::large_enum_variant)]
#[pin_project(project = UpstreamProj)]
pub(crate) enum Upstream<S, ReqB, B>
where
    S: Service<Request<ReqB>>,
{
    Readying {
        service: S,
        request: Option<Request<ReqB>>,
        max: usize,
    },
    Calling {
        #[pin]
        future: S::Future,
        max: usize,
    },
    Reading {
        head: Option<response::Parts>,
        body: Option<B>,
        buffer: Buffer,
        trailers: Option<HeaderMap>,
        max: usize,
    },
}

impl<S, ReqB, B> Upstream<S, ReqB, B>
where
    S: Service<Request<ReqB>>,
{
    /// The call of `request` to `service`, which is not ready yet.
    pub(crate) fn new(service: S, request: Request<ReqB>, max: usize) -> Self {
        Upstream::Readying {
            service,
            request: Some(request),
            max,
        }
    }
}

/// What the call came to.
pub(crate) enum Fetched<B> {
    /// The whole answer, to share.
    Whole(SharedResponse),
    /// An answer over the limit, whole, for the leader or the waiter that polled it.
    Oversize(Response<CoalesceBody<B>>),
    /// The call failed (or its body did while it was read).
    Failed(BoxError),
}

/// An answer every waiter gets a copy of: the upstream's own head (status, version,
/// headers, extensions), its body's bytes and trailers.
#[derive(Debug)]
pub(crate) struct SharedResponse {
    pub(crate) head: response::Parts,
    /// Whether the answer has a `Vary` header, looked up once for every joiner.
    pub(crate) varies: bool,
    pub(crate) body: Bytes,
    pub(crate) trailers: Option<HeaderMap>,
}

impl SharedResponse {
    /// A waiter's copy (the headers and extensions cloned, the body's bytes shared).
    #[inline]
    pub(crate) fn copy<B>(&self) -> Response<CoalesceBody<B>> {
        let mut response = Response::new(CoalesceBody::shared(
            self.body.clone(),
            self.trailers.clone(),
        ));
        *response.status_mut() = self.head.status;
        *response.version_mut() = self.head.version;
        *response.headers_mut() = self.head.headers.clone();
        *response.extensions_mut() = self.head.extensions.clone();
        response
    }

    /// The last waiter's answer: the originals, nothing cloned.
    #[inline]
    pub(crate) fn into_response<B>(self) -> Response<CoalesceBody<B>> {
        Response::from_parts(self.head, CoalesceBody::shared(self.body, self.trailers))
    }
}

/// The bytes read so far: one chunk kept as it came (no copy), more concatenated.
#[derive(Default)]
pub(crate) struct Buffer {
    first: Option<Bytes>,
    more: BytesMut,
}

impl Buffer {
    fn len(&self) -> usize {
        self.first.as_ref().map_or(0, Bytes::len) + self.more.len()
    }

    fn push(&mut self, chunk: Bytes) {
        if chunk.is_empty() {
            return;
        }
        match self.first.take() {
            None if self.more.is_empty() => self.first = Some(chunk),
            first => {
                if let Some(first) = first {
                    self.more.extend_from_slice(&first);
                }
                self.more.extend_from_slice(&chunk);
            }
        }
    }

    fn take(&mut self) -> Bytes {
        match self.first.take() {
            Some(first) => first,
            None => std::mem::take(&mut self.more).freeze(),
        }
    }
}

impl<S, ReqB, B> Future for Upstream<S, ReqB, B>
where
    S: Service<Request<ReqB>, Response = Response<B>>,
    S::Error: Into<BoxError>,
    B: Body<Data = Bytes> + Unpin,
    B::Error: Into<BoxError>,
{
    type Output = Fetched<B>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Fetched<B>> {
        loop {
            match self.as_mut().project() {
                UpstreamProj::Readying {
                    service,
                    request,
                    max,
                } => {
                    let max = *max;
                    if let Err(error) = ready!(service.poll_ready(cx)) {
                        return Poll::Ready(Fetched::Failed(error.into()));
                    }
                    let Some(request) = request.take() else {
                        return Poll::Ready(Fetched::Failed(broken("request already sent")));
                    };
                    let future = service.call(request);
                    self.set(Upstream::Calling { future, max });
                }
                UpstreamProj::Calling { future, max } => {
                    let max = *max;
                    let response = match ready!(future.poll(cx)) {
                        Ok(response) => response,
                        Err(error) => return Poll::Ready(Fetched::Failed(error.into())),
                    };
                    let (head, body) = response.into_parts();
                    if body.size_hint().lower() > max as u64 {
                        // Known to be over the limit before reading (a content-length).
                        let body = CoalesceBody::own(body);
                        return Poll::Ready(Fetched::Oversize(Response::from_parts(head, body)));
                    }
                    // Read at once as far as the body is ready (all of it, for a body
                    // already in memory), and only then kept in the future's state.
                    let mut head = Some(head);
                    let mut body = Some(body);
                    let mut buffer = Buffer::default();
                    let mut trailers = None;
                    if let Poll::Ready(fetched) =
                        read(&mut head, &mut body, &mut buffer, &mut trailers, max, cx)
                    {
                        return Poll::Ready(fetched);
                    }
                    self.set(Upstream::Reading {
                        head,
                        body,
                        buffer,
                        trailers,
                        max,
                    });
                    return Poll::Pending;
                }
                UpstreamProj::Reading {
                    head,
                    body,
                    buffer,
                    trailers,
                    max,
                } => return read(head, body, buffer, trailers, *max, cx),
            }
        }
    }
}

/// Reads the body into `buffer` up to `max` bytes: the whole answer, or the answer over
/// the limit with what was read of it, or the body's error.
#[inline]
fn read<B>(
    head: &mut Option<response::Parts>,
    body: &mut Option<B>,
    buffer: &mut Buffer,
    trailers: &mut Option<HeaderMap>,
    max: usize,
    cx: &mut Context<'_>,
) -> Poll<Fetched<B>>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: Into<BoxError>,
{
    loop {
        let Some(reading) = body.as_mut() else {
            return Poll::Ready(Fetched::Failed(broken("upstream polled after end")));
        };
        match ready!(Pin::new(reading).poll_frame(cx)) {
            Some(Ok(frame)) => match frame.into_data() {
                Ok(data) => {
                    if buffer.len().saturating_add(data.len()) > max {
                        buffer.push(data);
                        let (Some(head), Some(rest)) = (head.take(), body.take()) else {
                            return Poll::Ready(Fetched::Failed(broken("no head")));
                        };
                        let body = CoalesceBody::prefixed(buffer.take(), rest);
                        return Poll::Ready(Fetched::Oversize(Response::from_parts(head, body)));
                    }
                    buffer.push(data);
                }
                Err(frame) => {
                    if let Ok(more) = frame.into_trailers() {
                        match trailers {
                            Some(trailers) => trailers.extend(more),
                            None => *trailers = Some(more),
                        }
                    }
                }
            },
            Some(Err(error)) => {
                *body = None;
                return Poll::Ready(Fetched::Failed(error.into()));
            }
            None => {
                *body = None;
                let Some(head) = head.take() else {
                    return Poll::Ready(Fetched::Failed(broken("no head")));
                };
                return Poll::Ready(Fetched::Whole(SharedResponse {
                    varies: head.headers.contains_key(VARY),
                    head,
                    body: buffer.take(),
                    trailers: trailers.take(),
                }));
            }
        }
    }
}
