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
pub(crate) type Keep = Box<dyn FnOnce(RecordState) -> Option<JoinHandle<()>> + Send + Sync>;

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
    Recorded(#[pin] Recording<B>),
    Full {
        data: Option<Bytes>,
        trailers: Option<HeaderMap>,
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
                trailers,
            },
        }
    }

    pub(crate) fn recorded(
        body: B,
        status: StatusCode,
        headers: HeaderMap,
        limit: usize,
        empty: bool,
        keep: Keep,
    ) -> Self {
        ResponseBody {
            kind: Kind::Recorded(Recording {
                body,
                status,
                headers,
                data: BytesMut::new(),
                limit,
                over_limit: false,
                empty,
                trailers: None,
                keep: Some(keep),
                writing: None,
                held: None,
            }),
        }
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
            KindProj::Recorded(recording) => recording.poll_frame(cx),
            KindProj::Full { data, trailers } => {
                if let Some(data) = data.take().filter(|d| !d.is_empty()) {
                    return Poll::Ready(Some(Ok(Frame::data(data))));
                }
                Poll::Ready(trailers.take().map(|t| Ok(Frame::trailers(t))))
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
            Kind::Full { data, .. } => {
                SizeHint::with_exact(data.as_ref().map_or(0, |d| d.len() as u64))
            }
        }
    }
}

/// A response body passed to the client while a copy (up to `limit`) is taken. Its end
/// (or its trailers) reaches the client only once the copy is in the store, so a client
/// that saw the whole answer and sends the key again is replayed, never told "in
/// progress". Dropped early, it keeps what it can: the whole answer if the body had
/// nothing more to send (a `HEAD` or `204`, never polled), else "ran, answer not kept".
#[pin_project(PinnedDrop, project = RecordingProj)]
struct Recording<B> {
    #[pin]
    body: B,
    status: StatusCode,
    headers: HeaderMap,
    data: BytesMut,
    limit: usize,
    over_limit: bool,
    /// The body had nothing to send when the answer came: it is whole even if never
    /// polled.
    empty: bool,
    trailers: Option<HeaderMap>,
    /// Until the answer is handed to the store.
    keep: Option<Keep>,
    /// The store write the end waits for.
    writing: Option<JoinHandle<()>>,
    /// The frame (trailers) or end (`None`) given after the write.
    held: Option<Frame<Bytes>>,
}

impl<B> RecordingProj<'_, B> {
    /// Hands the answer to the store: whole if it was under the limit, else "not kept".
    fn keep(&mut self) {
        let Some(keep) = self.keep.take() else {
            return;
        };
        let state = if *self.over_limit {
            RecordState::NotKept(*self.status)
        } else {
            RecordState::Done(StoredResponse {
                status: *self.status,
                headers: std::mem::take(self.headers),
                body: self.data.split().freeze(),
                trailers: self.trailers.take(),
            })
        };
        *self.writing = keep(state);
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
            match ready!(this.body.as_mut().poll_frame(cx)) {
                Some(Ok(frame)) => match frame.into_data() {
                    Ok(data) => {
                        if !*this.over_limit {
                            if this.data.len() + data.len() > *this.limit {
                                *this.over_limit = true;
                                *this.data = BytesMut::new();
                            } else {
                                this.data.extend_from_slice(&data);
                            }
                        }
                        return Poll::Ready(Some(Ok(Frame::data(data))));
                    }
                    Err(frame) => {
                        if let Some(trailers) = frame.trailers_ref() {
                            *this.trailers = Some(trailers.clone());
                        }
                        this.keep();
                        if this.writing.is_none() {
                            return Poll::Ready(Some(Ok(frame)));
                        }
                        *this.held = Some(frame);
                    }
                },
                Some(Err(error)) => {
                    // The answer broke off: the client never gets it whole.
                    *this.over_limit = true;
                    this.keep();
                    *this.writing = None;
                    return Poll::Ready(Some(Err(error)));
                }
                None => {
                    this.keep();
                    if this.writing.is_none() {
                        return Poll::Ready(None);
                    }
                }
            }
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
            // Dropped before its end: whole only if there was nothing to send.
            *this.over_limit |= !*this.empty;
            this.keep();
        }
    }
}
