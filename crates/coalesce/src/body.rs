//! [`CoalesceBody`]: the body of every answer the layer gives.

use std::fmt;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::HeaderMap;
use http_body::{Body, Frame, SizeHint};

/// The body of the layer's answers: the inner service's own body for calls that were not
/// shared (and for the whole answer over the body limit), or the shared bytes (and
/// trailers) of a coalesced answer, the same `Bytes` for every waiter.
pub struct CoalesceBody<B> {
    kind: Kind<B>,
}

enum Kind<B> {
    /// The inner service's body, untouched.
    Own(B),
    /// A shared answer: its bytes, then its trailers.
    Shared {
        data: Option<Bytes>,
        trailers: Option<HeaderMap>,
    },
    /// An answer over the limit: what was read of it before the limit, then the rest.
    Prefixed { prefix: Option<Bytes>, rest: B },
}

impl<B> CoalesceBody<B> {
    pub(crate) fn own(body: B) -> Self {
        CoalesceBody {
            kind: Kind::Own(body),
        }
    }

    pub(crate) fn shared(data: Bytes, trailers: Option<HeaderMap>) -> Self {
        CoalesceBody {
            kind: Kind::Shared {
                data: (!data.is_empty()).then_some(data),
                trailers,
            },
        }
    }

    pub(crate) fn prefixed(prefix: Bytes, rest: B) -> Self {
        CoalesceBody {
            kind: Kind::Prefixed {
                prefix: (!prefix.is_empty()).then_some(prefix),
                rest,
            },
        }
    }

    /// Whether this body is a shared (coalesced) answer's.
    pub fn is_shared(&self) -> bool {
        matches!(self.kind, Kind::Shared { .. })
    }
}

impl<B> fmt::Debug for CoalesceBody<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.kind {
            Kind::Own(_) => f.write_str("CoalesceBody::Own"),
            Kind::Shared { data, .. } => f
                .debug_struct("CoalesceBody::Shared")
                .field("len", &data.as_ref().map_or(0, Bytes::len))
                .finish(),
            Kind::Prefixed { prefix, .. } => f
                .debug_struct("CoalesceBody::Prefixed")
                .field("prefix", &prefix.as_ref().map_or(0, Bytes::len))
                .finish(),
        }
    }
}

impl<B> Body for CoalesceBody<B>
where
    B: Body<Data = Bytes> + Unpin,
{
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
        match &mut self.get_mut().kind {
            Kind::Own(body) => Pin::new(body).poll_frame(cx),
            Kind::Shared { data, trailers } => Poll::Ready(
                data.take()
                    .map(Frame::data)
                    .or_else(|| trailers.take().map(Frame::trailers))
                    .map(Ok),
            ),
            Kind::Prefixed { prefix, rest } => match prefix.take() {
                Some(prefix) => Poll::Ready(Some(Ok(Frame::data(prefix)))),
                None => Pin::new(rest).poll_frame(cx),
            },
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.kind {
            Kind::Own(body) => body.is_end_stream(),
            Kind::Shared { data, trailers } => data.is_none() && trailers.is_none(),
            Kind::Prefixed { prefix, rest } => prefix.is_none() && rest.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.kind {
            Kind::Own(body) => body.size_hint(),
            Kind::Shared { data, .. } => {
                SizeHint::with_exact(data.as_ref().map_or(0, |d| d.len() as u64))
            }
            Kind::Prefixed { prefix, rest } => {
                let extra = prefix.as_ref().map_or(0, |p| p.len() as u64);
                let rest = rest.size_hint();
                let mut hint = SizeHint::new();
                hint.set_lower(rest.lower().saturating_add(extra));
                if let Some(upper) = rest.upper() {
                    hint.set_upper(upper.saturating_add(extra));
                }
                hint
            }
        }
    }
}
