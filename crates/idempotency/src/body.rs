//! The bodies the layer hands on: a request body it read to fingerprint, and a response
//! body it records for replay as it streams to the client.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use bytes::{Bytes, BytesMut};
use http::{HeaderMap, StatusCode};
use http_body::{Body, Frame, SizeHint};
use pin_project::{pin_project, pinned_drop};
use tokio::task::JoinHandle;

use crate::record::{RecordState, StoredResponse};

/// The body of a request after the layer: the original one, or (for a keyed request) the
/// bytes the layer read to fingerprint it. Request trailers are not kept.
#[pin_project(project = RequestBodyProj)]
#[derive(Debug)]
pub enum RequestBody<B> {
    /// Not read by the layer.
    Streaming(#[pin] B),
    /// Read whole by the layer.
    Buffered(Option<Bytes>),
}

impl<B> Body for RequestBody<B>
where
    B: Body<Data = Bytes>,
{
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
        match self.project() {
            RequestBodyProj::Streaming(body) => body.poll_frame(cx),
            RequestBodyProj::Buffered(data) => Poll::Ready(
                data.take()
                    .filter(|d| !d.is_empty())
                    .map(|d| Ok(Frame::data(d))),
            ),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            RequestBody::Streaming(body) => body.is_end_stream(),
            RequestBody::Buffered(data) => data.as_ref().is_none_or(Bytes::is_empty),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            RequestBody::Streaming(body) => body.size_hint(),
            RequestBody::Buffered(data) => {
                SizeHint::with_exact(data.as_ref().map_or(0, |d| d.len() as u64))
            }
        }
    }
}

/// Keeps what a request answered: given the final state, starts writing it to the store.
/// Also given the trailers of an answer not kept whole, so that a failure they report
/// (a gRPC `UNAVAILABLE`) releases the key instead of spending it.
pub(crate) type Keep =
    Box<dyn FnOnce(RecordState, Option<&HeaderMap>) -> Option<JoinHandle<()>> + Send + Sync>;

/// The body of a response after the layer: the service's own (passed by, or recorded as it
/// streams), or one the layer wrote (a replay, a problem).
#[pin_project]
pub struct ResponseBody<B> {
    #[pin]
    kind: Kind<B>,
}

#[pin_project(project = KindProj)]
enum Kind<B> {
    Passed(#[pin] B),
    /// Boxed: a keyed answer allocates anyway, and the others stay small.
    Recorded(Pin<Box<Recording<B>>>),
    Full {
        data: Option<Bytes>,
        trailers: Option<Box<HeaderMap>>,
    },
}

impl<B> ResponseBody<B> {
    pub(crate) fn passed(body: B) -> Self {
        ResponseBody {
            kind: Kind::Passed(body),
        }
    }

    pub(crate) fn full(data: Bytes, trailers: Option<HeaderMap>) -> Self {
        ResponseBody {
            kind: Kind::Full {
                data: Some(data),
                trailers: trailers.map(Box::new),
            },
        }
    }

    pub(crate) fn recorded(
        body: B,
        status: StatusCode,
        headers: HeaderMap,
        limit: usize,
        keep: Keep,
    ) -> Self
    where
        B: Body,
    {
        let exact = body.size_hint().exact();
        let empty = body.is_end_stream() || exact == Some(0);
        ResponseBody {
            kind: Kind::Recorded(Box::pin(Recording {
                body,
                status,
                headers,
                data: BytesMut::new(),
                limit,
                incomplete: false,
                empty,
                exact,
                seen: 0,
                trailers: None,
                keep: Some(keep),
                writing: None,
                held: None,
            })),
        }
    }
}

/// An empty body: what layers above (`HandleRejections`) answer a refusal with.
impl<B> Default for ResponseBody<B> {
    fn default() -> Self {
        ResponseBody::full(Bytes::new(), None)
    }
}

impl<B> fmt::Debug for ResponseBody<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match self.kind {
            Kind::Passed(_) => "passed",
            Kind::Recorded(_) => "recorded",
            Kind::Full { .. } => "full",
        };
        f.debug_struct("ResponseBody").field("kind", &kind).finish()
    }
}

impl<B> Body for ResponseBody<B>
where
    B: Body<Data = Bytes>,
{
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
        match self.project().kind.project() {
            KindProj::Passed(body) => body.poll_frame(cx),
            KindProj::Recorded(recording) => recording.as_mut().poll_frame(cx),
            KindProj::Full { data, trailers } => {
                if let Some(data) = data.take().filter(|d| !d.is_empty()) {
                    return Poll::Ready(Some(Ok(Frame::data(data))));
                }
                Poll::Ready(trailers.take().map(|t| Ok(Frame::trailers(*t))))
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.kind {
            Kind::Passed(body) => body.is_end_stream(),
            Kind::Recorded(recording) => recording.is_end_stream(),
            Kind::Full { data, trailers } => {
                data.as_ref().is_none_or(Bytes::is_empty) && trailers.is_none()
            }
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.kind {
            Kind::Passed(body) => body.size_hint(),
            Kind::Recorded(recording) => recording.body.size_hint(),
            Kind::Full { data, trailers } => {
                let len = data.as_ref().map_or(0, |d| d.len() as u64);
                // Not exact with trailers: an HTTP/1 server would send a `Content-Length`
                // and drop them.
                let mut hint = SizeHint::new();
                hint.set_lower(len);
                if trailers.is_none() {
                    hint.set_exact(len);
                }
                hint
            }
        }
    }
}

/// A response body passed to the client while a copy (up to `limit`) is taken. Its last
/// frame (or its end) reaches the client only once the copy is in the store, so a client
/// that saw the whole answer and sends the key again is replayed, never told "in
/// progress". The last data frame is the one after which the body says it ended. Dropped
/// early, it keeps what it can: the whole answer if every byte the body announced was
/// sent (hyper stops polling a body of known length at its last byte; its end was then
/// not held) or there was none (a `204`, never polled), else "ran, answer not kept".
#[pin_project(PinnedDrop, project = RecordingProj)]
struct Recording<B> {
    #[pin]
    body: B,
    status: StatusCode,
    headers: HeaderMap,
    data: BytesMut,
    limit: usize,
    /// The copy is not the whole answer: over the limit, broken off, or dropped early.
    incomplete: bool,
    /// The body had nothing to send when the answer came: whole even if never polled.
    empty: bool,
    /// The body's exact length, if it said so, and the bytes seen so far.
    exact: Option<u64>,
    seen: u64,
    trailers: Option<HeaderMap>,
    /// Until the answer is handed to the store.
    keep: Option<Keep>,
    /// The store write the last frame waits for.
    writing: Option<JoinHandle<()>>,
    /// The frame (last data or trailers) given after the write; `None` for the end.
    held: Option<Frame<Bytes>>,
}

impl<B> RecordingProj<'_, B> {
    /// Hands the answer to the store: whole if it is complete, else "not kept".
    fn keep(&mut self) {
        let Some(keep) = self.keep.take() else {
            return;
        };
        *self.writing = if *self.incomplete {
            keep(RecordState::NotKept(*self.status), self.trailers.as_ref())
        } else {
            let stored = StoredResponse {
                status: *self.status,
                headers: std::mem::take(self.headers),
                body: self.data.split().freeze(),
                trailers: self.trailers.take(),
            };
            keep(RecordState::Done(Box::new(stored)), None)
        };
    }

    /// Whether every byte the body said it had was seen.
    fn all_seen(&self) -> bool {
        *self.empty || *self.exact == Some(*self.seen)
    }
}

impl<B> Recording<B>
where
    B: Body<Data = Bytes>,
{
    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
        let mut this = self.project();
        loop {
            if let Some(writing) = this.writing.as_mut() {
                // A failed write was reported by the task; the answer goes on.
                let _ = ready!(Pin::new(writing).poll(cx));
                *this.writing = None;
                return Poll::Ready(this.held.take().map(Ok));
            }
            if this.keep.is_none() {
                return this.body.as_mut().poll_frame(cx);
            }
            let frame = match ready!(this.body.as_mut().poll_frame(cx)) {
                Some(Ok(frame)) => frame,
                Some(Err(error)) => {
                    // The answer broke off: the client never gets it whole.
                    *this.incomplete = true;
                    this.keep();
                    *this.writing = None;
                    return Poll::Ready(Some(Err(error)));
                }
                None => {
                    this.keep();
                    if this.writing.is_none() {
                        return Poll::Ready(None);
                    }
                    continue;
                }
            };
            let last = match frame.data_ref() {
                Some(data) => {
                    *this.seen += data.len() as u64;
                    if !*this.incomplete {
                        if this.data.len() + data.len() > *this.limit {
                            *this.incomplete = true;
                            *this.data = BytesMut::new();
                        } else {
                            this.data.extend_from_slice(data);
                        }
                    }
                    // Not `all_seen`: trailers may follow the last byte.
                    this.body.is_end_stream()
                }
                None => {
                    if let Some(trailers) = frame.trailers_ref() {
                        *this.trailers = Some(trailers.clone());
                    }
                    true
                }
            };
            if !last {
                return Poll::Ready(Some(Ok(frame)));
            }
            this.keep();
            if this.writing.is_none() {
                // No runtime to write on: the claim is left to its lease.
                return Poll::Ready(Some(Ok(frame)));
            }
            *this.held = Some(frame);
        }
    }

    fn is_end_stream(&self) -> bool {
        self.keep.is_none()
            && self.writing.is_none()
            && self.held.is_none()
            && self.body.is_end_stream()
    }
}

#[pinned_drop]
impl<B> PinnedDrop for Recording<B> {
    fn drop(self: Pin<&mut Self>) {
        let mut this = self.project();
        if this.keep.is_some() {
            // Dropped before its end: whole only if nothing was left to send.
            *this.incomplete |= !this.all_seen();
            this.keep();
        }
    }
}
