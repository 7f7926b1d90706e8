//! Graceful drain: over real HTTP, and the grace period in paused time.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::routing::get;
use axum::Router;
use http_body_util::{BodyExt, Empty, Full};
use hyper_util::rt::TokioIo;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, Semaphore};
use tower::{service_fn, Layer, ServiceBuilder, ServiceExt};
use tower_bulwark_core::testing::controlled;
use tower_bulwark_core::{find_rejection, HandleRejectionsLayer, RejectionKind};
use tower_bulwark_health::{DrainLayer, Health};

async fn get_status(addr: SocketAddr, path: &str) -> http::Response<bytes::Bytes> {
    let stream = TcpStream::connect(addr).await.unwrap();
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(connection);
    let request = http::Request::get(path)
        .body(Empty::<bytes::Bytes>::new())
        .unwrap();
    let response = sender.send_request(request).await.unwrap();
    let (head, body) = response.into_parts();
    http::Response::from_parts(head, body.collect().await.unwrap().to_bytes())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_drain_refuses_new_work_and_lets_the_work_in_flight_finish() {
    let drain = DrainLayer::new();
    let handle = drain.handle();
    let health = Health::new();
    health.watch_drain(handle.clone());
    let entered = Arc::new(Semaphore::new(0));
    let release = Arc::new(Notify::new());
    let (in_handler, released) = (entered.clone(), release.clone());
    let app = Router::new()
        .route(
            "/work",
            get(move || {
                let (entered, release) = (in_handler.clone(), released.clone());
                async move {
                    let waiting = release.notified();
                    entered.add_permits(1);
                    waiting.await;
                    "finished"
                }
            }),
        )
        .layer(
            ServiceBuilder::new()
                .layer(HandleRejectionsLayer::new())
                .layer(drain),
        )
        .nest_service("/health", health.service());
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });

    assert_eq!(get_status(addr, "/health/ready").await.status(), 200);
    let in_flight = tokio::spawn(get_status(addr, "/work"));
    entered.acquire().await.unwrap().forget();
    assert_eq!(handle.in_flight(), 1);

    handle.drain();
    assert_eq!(get_status(addr, "/health/ready").await.status(), 503);
    assert_eq!(
        get_status(addr, "/health/live").await.status(),
        200,
        "alive while draining"
    );
    let refused = get_status(addr, "/work").await;
    assert_eq!(refused.status(), 503);
    assert_eq!(refused.headers()["connection"], "close");

    let drained = tokio::spawn({
        let handle = handle.clone();
        async move { handle.drained(Duration::from_secs(30)).await }
    });
    release.notify_waiters();
    let finished = in_flight.await.unwrap();
    assert_eq!(finished.status(), 200);
    assert_eq!(&finished.body()[..], b"finished");
    assert_eq!(drained.await.unwrap().cut, 0);
}

#[tokio::test(start_paused = true)]
async fn the_grace_period_ends_the_wait_and_counts_what_was_cut() {
    let drain = DrainLayer::new();
    let handle = drain.handle();
    let (inner, control) = controlled::<u32>();
    control.hang();
    let service = drain.layer(inner.map_response(http::Response::new));
    let stuck: Vec<_> = (0..2)
        .map(|i| tokio::spawn(service.clone().oneshot(i)))
        .collect();
    tokio::task::yield_now().await;
    assert_eq!(handle.in_flight(), 2);
    handle.drain();
    let started = tokio::time::Instant::now();
    let report = handle.drained(Duration::from_secs(5)).await;
    assert_eq!(started.elapsed(), Duration::from_secs(5));
    assert_eq!(report.cut, 2);
    for call in stuck {
        call.abort();
    }
    // Nothing in flight: resolves at once.
    tokio::task::yield_now().await;
    let report = handle.drained(Duration::from_secs(5)).await;
    assert_eq!(report.cut, 0);
}

#[tokio::test(start_paused = true)]
async fn new_requests_are_refused_with_a_draining_rejection_unless_kept_serving() {
    let drain = DrainLayer::new();
    drain.handle().drain();
    let service = drain.layer(service_fn(|n: u32| async move {
        Ok::<_, std::io::Error>(http::Response::new(n))
    }));
    let error = service.oneshot(1).await.unwrap_err();
    assert_eq!(
        find_rejection(&error).unwrap().kind(),
        RejectionKind::Draining
    );

    let serving = DrainLayer::new().keep_serving();
    let handle = serving.handle();
    handle.drain();
    let service = serving.layer(service_fn(|n: u32| async move {
        Ok::<_, std::io::Error>(http::Response::new(n))
    }));
    let response = service.oneshot(2).await.unwrap();
    assert_eq!(handle.in_flight(), 1, "served, and counted");
    drop(response);
    assert_eq!(handle.in_flight(), 0);
    assert!(handle.is_draining());
}

#[tokio::test(start_paused = true)]
async fn a_response_counts_in_flight_until_its_body_ends_or_is_dropped() {
    let drain = DrainLayer::new();
    let handle = drain.handle();
    let service = drain.layer(service_fn(|_: http::Request<()>| async {
        Ok::<_, std::io::Error>(http::Response::new(Full::new(bytes::Bytes::from_static(
            b"streamed",
        ))))
    }));
    let response = service
        .clone()
        .oneshot(http::Request::new(()))
        .await
        .unwrap();
    assert_eq!(handle.in_flight(), 1, "the body has not been sent yet");
    handle.drain();
    let drained = tokio::spawn({
        let handle = handle.clone();
        async move { handle.drained(Duration::from_secs(30)).await }
    });
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(!drained.is_finished(), "the drain waits for the body");

    let mut body = response.into_body();
    let frame = body.frame().await.unwrap().unwrap();
    assert_eq!(frame.into_data().unwrap(), "streamed");
    assert_eq!(handle.in_flight(), 1, "the end has not been read yet");
    assert!(body.frame().await.is_none());
    assert_eq!(
        handle.in_flight(),
        0,
        "released at the end, before the drop"
    );
    assert_eq!(drained.await.unwrap().cut, 0);
    drop(body);
    assert_eq!(handle.in_flight(), 0, "released once");

    // A body dropped before its end releases too.
    let serving = DrainLayer::new().keep_serving();
    let handle = serving.handle();
    let service = serving.layer(service_fn(|_: http::Request<()>| async {
        Ok::<_, std::io::Error>(http::Response::new(Full::new(bytes::Bytes::from_static(
            b"unread",
        ))))
    }));
    let response = service.oneshot(http::Request::new(())).await.unwrap();
    assert_eq!(handle.in_flight(), 1);
    drop(response);
    assert_eq!(handle.in_flight(), 0);
}

#[tokio::test(start_paused = true)]
async fn a_drain_reports_its_start_its_progress_and_its_end() {
    use std::sync::Mutex;
    use tower_bulwark_health::DrainEvent;

    let events = Arc::new(Mutex::new(Vec::new()));
    let seen = events.clone();
    let drain =
        DrainLayer::new().on_event(move |event: &DrainEvent| seen.lock().unwrap().push(*event));
    let handle = drain.handle();
    // Two requests, each answered when its permit is released.
    let gate = Arc::new(Semaphore::new(0));
    let service = drain.layer(service_fn({
        let gate = gate.clone();
        move |_: ()| {
            let gate = gate.clone();
            async move {
                gate.acquire().await.unwrap().forget();
                Ok::<_, std::convert::Infallible>(http::Response::new(()))
            }
        }
    }));
    // A request is in flight until its response (and body) is dropped.
    let calls: Vec<_> = (0..2)
        .map(|_| {
            let call = service.clone().oneshot(());
            tokio::spawn(async move { call.await.map(drop) })
        })
        .collect();
    tokio::task::yield_now().await;
    handle.drain();
    handle.drain(); // Idempotent: one start.
    let waiting = tokio::spawn({
        let handle = handle.clone();
        async move { handle.drained(Duration::from_secs(10)).await }
    });
    tokio::time::sleep(Duration::from_millis(1500)).await;
    gate.add_permits(1);
    tokio::time::sleep(Duration::from_millis(1000)).await;
    gate.add_permits(1);
    let report = waiting.await.unwrap();
    assert_eq!(report.cut, 0);
    for call in calls {
        call.await.unwrap().unwrap();
    }
    let events = events.lock().unwrap().clone();
    let second = Duration::from_secs(1);
    assert_eq!(
        events,
        [
            DrainEvent::Started { in_flight: 2 },
            DrainEvent::Waiting {
                in_flight: 2,
                waited: second
            },
            DrainEvent::Waiting {
                in_flight: 1,
                waited: 2 * second
            },
            DrainEvent::Finished {
                cut: 0,
                waited: Duration::from_millis(2500)
            },
        ]
    );
}
