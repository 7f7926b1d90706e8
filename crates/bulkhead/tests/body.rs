//! The permit held by a streaming `http` body until it ends.
#![cfg(feature = "http")]

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::{Request, Response};
use http_body::{Body, Frame};
use http_body_util::BodyExt;
use tokio::sync::mpsc;
use tower::{service_fn, Layer, ServiceExt};
use tower_bulwark_bulkhead::{BulkheadFull, BulkheadLayer};

/// A body whose chunks arrive through a channel, as a proxied or generated stream would.
#[derive(Debug)]
struct ChannelBody(mpsc::Receiver<Bytes>);

impl Body for ChannelBody {
    type Data = Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        self.0
            .poll_recv(cx)
            .map(|chunk| chunk.map(|c| Ok(Frame::data(c))))
    }
}

#[tokio::test]
async fn a_streaming_response_holds_its_permit_until_the_body_ends() {
    let layer = BulkheadLayer::builder().max_concurrent(1).build().unwrap();
    let handle = layer.handle();
    let (senders_tx, mut senders) = mpsc::unbounded_channel();
    let service = layer
        .hold_permit_for_body()
        .layer(service_fn(move |_: Request<()>| {
            let (tx, rx) = mpsc::channel(4);
            senders_tx.send(tx).unwrap();
            async move { Ok::<_, std::io::Error>(Response::new(ChannelBody(rx))) }
        }));

    let response = service.clone().oneshot(Request::new(())).await.unwrap();
    let chunks = senders.recv().await.unwrap();
    assert_eq!(
        handle.snapshot().in_flight,
        1,
        "the head arrived, the body streams on"
    );

    // While the body streams, the compartment is full.
    let refused = service.clone().oneshot(Request::new(())).await.unwrap_err();
    assert!(refused.is::<BulkheadFull>());

    let mut body = response.into_body();
    chunks.send(Bytes::from_static(b"part 1")).await.unwrap();
    let frame = body.frame().await.unwrap().unwrap();
    assert_eq!(frame.into_data().unwrap(), "part 1");
    assert_eq!(handle.snapshot().in_flight, 1);

    drop(chunks); // the stream ends
    assert!(body.frame().await.is_none());
    assert_eq!(
        handle.snapshot().in_flight,
        0,
        "released at the end, before the body is dropped"
    );
    drop(body);

    // A body dropped half-way gives its permit back too.
    let response = service.clone().oneshot(Request::new(())).await.unwrap();
    let _chunks = senders.recv().await.unwrap();
    assert_eq!(handle.snapshot().in_flight, 1);
    drop(response);
    assert_eq!(handle.snapshot().in_flight, 0);
}

#[tokio::test(start_paused = true)]
async fn the_deadline_in_request_extensions_is_honoured() {
    use std::time::Duration;
    use tower_bulwark_bulkhead::{FullReason, HttpDeadline};
    use tower_bulwark_core::Deadline;

    let layer = BulkheadLayer::builder()
        .max_concurrent(1)
        .max_queue(4)
        .max_wait(Duration::from_secs(10))
        .deadline_source(HttpDeadline)
        .build()
        .unwrap();
    let (release, released) = tokio::sync::watch::channel(false);
    let service = layer.layer(service_fn(move |_: Request<()>| {
        let mut released = released.clone();
        async move {
            let _ = released.wait_for(|done| *done).await;
            Ok::<_, std::io::Error>(Response::new(()))
        }
    }));
    let busy = tokio::spawn(service.clone().oneshot(Request::new(())));
    tokio::task::yield_now().await;

    let mut request = Request::new(());
    request
        .extensions_mut()
        .insert(Deadline::after(Duration::ZERO));
    let refused = service.clone().oneshot(request).await.unwrap_err();
    assert_eq!(
        refused.downcast_ref::<BulkheadFull>().unwrap().reason(),
        FullReason::Deadline
    );

    release.send(true).unwrap();
    busy.await.unwrap().unwrap();
}
