//! Bodies: request bodies read to fingerprint them, response bodies recorded as they
//! stream, and what a replay carries.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Method, Response};
use http_body::Frame;
use http_body_util::BodyExt;
use tokio::sync::Notify;
use tower::{Layer, ServiceExt};
use tower_bulwark_idempotency::{Outcome, ResponseBody};

use super::harness::*;
use super::BODY;

fn trailers(checksum: &'static str) -> HeaderMap {
    let mut trailers = HeaderMap::new();
    trailers.insert("x-checksum", HeaderValue::from_static(checksum));
    trailers
}

#[tokio::test(start_paused = true)]
async fn replays_carry_trailers_and_end_to_end_headers_not_hop_by_hop_ones() {
    let events = Events::default();
    let handler = Handler::answering(|_, _, _| {
        Ok(Response::builder()
            .status(202)
            .header("content-type", "application/json")
            .header("set-cookie", "a=1")
            .header("set-cookie", "b=2")
            .header("trailer", "x-checksum")
            .header("date", DATE)
            .header("connection", "keep-alive, x-hop, ,not a name")
            .header("x-hop", "only this connection")
            .header("keep-alive", "timeout=5")
            .header("proxy-connection", "keep-alive")
            .header("transfer-encoding", "chunked")
            .header("upgrade", "websocket")
            .header("te", "trailers")
            .body(
                Frames::data(&b"{\"paid\""[..])
                    .then(&b":true}"[..])
                    .then_trailers(trailers("c0ffee")),
            )
            .unwrap())
    });
    let service = builder(&events).build().unwrap().layer(handler.clone());

    let first = send(&service, pay(r#""k1""#, BODY)).await;
    assert_eq!(first.status, 202);
    assert_eq!(first.headers.len(), 12, "the first answer passes as it is");
    assert_eq!(first.text(), r#"{"paid":true}"#);
    assert_eq!(first.trailers, Some(trailers("c0ffee")));

    let replay = send(&service, pay(r#""k1""#, BODY)).await;
    assert_eq!(replay.status, 202);
    assert_eq!(replay.text(), r#"{"paid":true}"#);
    assert_eq!(replay.trailers, Some(trailers("c0ffee")));
    let mut expected = HeaderMap::new();
    expected.insert("content-type", HeaderValue::from_static("application/json"));
    expected.append("set-cookie", HeaderValue::from_static("a=1"));
    expected.append("set-cookie", HeaderValue::from_static("b=2"));
    // The trailers are replayed, so their announcement is too.
    expected.insert("trailer", HeaderValue::from_static("x-checksum"));
    expected.insert("idempotent-replayed", HeaderValue::from_static("true"));
    assert_eq!(replay.headers, expected);
    assert_eq!(handler.runs(), 1);
    assert_eq!(events.take(), [Outcome::Executed, Outcome::Replayed]);
}

#[tokio::test(start_paused = true)]
async fn a_request_body_over_max_request_body_gets_413_and_never_runs() {
    let events = Events::default();
    let handler = Handler::new();
    let service = builder(&events)
        .max_request_body(8)
        .build()
        .unwrap()
        .layer(handler.clone());
    let keyed = |body| request(Method::POST, "/pay", Some(r#""k1""#), body);

    // Announced too large, and found too large while read.
    for body in [
        Frames::data("123456789"),
        Frames::chunks(&[b"12345", b"6789"]),
    ] {
        send(&service, keyed(body))
            .await
            .assert_problem(413, "body-too-large", None);
    }
    assert_eq!(handler.runs(), 0);
    assert_eq!(events.take(), [Outcome::BodyTooLarge; 2]);

    // The limit itself fits, and the service gets the whole body.
    let fits = send(&service, keyed(Frames::chunks(&[b"1234", b"5678"]))).await;
    assert_eq!(fits.text(), "run 1: 12345678");
    assert_eq!(events.take(), [Outcome::Executed]);
}

#[tokio::test(start_paused = true)]
async fn a_request_body_that_fails_gets_400_and_never_runs() {
    let events = Events::default();
    let handler = Handler::new();
    let service = builder(&events).build().unwrap().layer(handler.clone());
    let broken = Frames::data("{\"amou").then_error();
    let reply = send(
        &service,
        request(Method::POST, "/pay", Some(r#""k1""#), broken),
    )
    .await;
    reply.assert_problem(400, "body-unreadable", None);
    assert_eq!(handler.runs(), 0);
    assert_eq!(events.take(), [Outcome::BodyUnreadable]);

    // Nothing was claimed: the key is free for the request sent whole.
    assert_eq!(send(&service, pay(r#""k1""#, BODY)).await.status, 201);
    assert_eq!(events.take(), [Outcome::Executed]);
}

#[tokio::test(start_paused = true)]
async fn a_body_in_many_chunks_is_the_same_request_as_in_one() {
    let events = Events::default();
    let handler = Handler::new();
    let service = builder(&events).build().unwrap().layer(handler.clone());
    let chunked = Frames::chunks(&[b"{\"am", b"", b"ount", b"\":10}"]);

    let first = send(
        &service,
        request(Method::POST, "/pay", Some(r#""k1""#), chunked),
    )
    .await;
    assert_eq!(first.text(), r#"run 1: {"amount":10}"#);
    let whole = send(&service, pay(r#""k1""#, BODY)).await;
    assert!(whole.replayed());
    assert_eq!(handler.runs(), 1);
    assert_eq!(events.take(), [Outcome::Executed, Outcome::Replayed]);
}

/// A handler answering `size` bytes in chunks of ten.
fn answering_bytes(size: usize) -> Handler {
    Handler::answering(move |_, _, _| {
        let mut body = Frames::empty();
        for chunk in vec![b'x'; size].chunks(10) {
            body = body.then(chunk.to_vec());
        }
        Ok(Response::new(body))
    })
}

#[tokio::test(start_paused = true)]
async fn an_answer_over_max_response_body_is_sent_whole_but_not_kept() {
    let events = Events::default();
    let handler = answering_bytes(31);
    let service = builder(&events)
        .max_response_body(30)
        .build()
        .unwrap()
        .layer(handler.clone());

    let first = send(&service, pay(r#""k1""#, BODY)).await;
    assert_eq!(first.status, 200);
    assert_eq!(first.body, vec![b'x'; 31]);
    assert_eq!(events.take(), [Outcome::Executed, Outcome::NotKept]);

    send(&service, pay(r#""k1""#, BODY))
        .await
        .assert_problem(409, "answer-not-kept", None);
    assert_eq!(handler.runs(), 1);
    assert_eq!(events.take(), [Outcome::Spent]);
}

#[tokio::test(start_paused = true)]
async fn an_answer_of_exactly_max_response_body_is_kept() {
    let events = Events::default();
    let handler = answering_bytes(30);
    let service = builder(&events)
        .max_response_body(30)
        .build()
        .unwrap()
        .layer(handler.clone());
    assert_eq!(send(&service, pay(r#""k1""#, BODY)).await.body.len(), 30);
    let replay = send(&service, pay(r#""k1""#, BODY)).await;
    assert!(replay.replayed());
    assert_eq!(replay.body, vec![b'x'; 30]);
    assert_eq!(events.take(), [Outcome::Executed, Outcome::Replayed]);
}

#[tokio::test(start_paused = true)]
async fn an_answer_the_caller_left_unread_is_not_kept() {
    let events = Events::default();
    let handler = answering_bytes(20);
    let service = builder(&events).build().unwrap().layer(handler.clone());

    // Never read, and read in part.
    let unread = service.clone().oneshot(pay(r#""k1""#, BODY)).await.unwrap();
    drop(unread);
    settle().await;
    let mut partly = service.clone().oneshot(pay(r#""k2""#, BODY)).await.unwrap();
    let frame = partly.body_mut().frame().await.unwrap().unwrap();
    assert_eq!(frame.into_data().unwrap(), vec![b'x'; 10]);
    drop(partly);
    settle().await;
    assert_eq!(
        events.take(),
        [
            Outcome::Executed,
            Outcome::NotKept,
            Outcome::Executed,
            Outcome::NotKept
        ]
    );

    for key in [r#""k1""#, r#""k2""#] {
        send(&service, pay(key, BODY))
            .await
            .assert_problem(409, "answer-not-kept", None);
    }
    assert_eq!(handler.runs(), 2);
    assert_eq!(events.take(), [Outcome::Spent; 2]);
}

#[tokio::test(start_paused = true)]
async fn an_empty_answer_left_unread_is_kept_whole() {
    let events = Events::default();
    let handler = Handler::answering(|run, _, _| {
        Ok(Response::builder()
            .status(204)
            .header("x-run", run)
            .body(Frames::empty())
            .unwrap())
    });
    let service = builder(&events).build().unwrap().layer(handler.clone());

    let unread = service.clone().oneshot(pay(r#""k1""#, BODY)).await.unwrap();
    assert_eq!(unread.status(), 204);
    drop(unread);
    settle().await;
    assert_eq!(events.take(), [Outcome::Executed]);

    let replay = send(&service, pay(r#""k1""#, BODY)).await;
    assert_eq!(replay.status, 204);
    assert!(replay.replayed());
    assert_eq!(replay.headers["x-run"], "1");
    assert!(replay.body.is_empty());
    assert_eq!(handler.runs(), 1);
    assert_eq!(events.take(), [Outcome::Replayed]);
}

#[tokio::test(start_paused = true)]
async fn an_answer_that_breaks_off_is_not_kept() {
    let events = Events::default();
    let handler =
        Handler::answering(|_, _, _| Ok(Response::new(Frames::data("half").then_error())));
    let service = builder(&events).build().unwrap().layer(handler.clone());

    let response = service.clone().oneshot(pay(r#""k1""#, BODY)).await.unwrap();
    let mut body = response.into_body();
    assert_eq!(
        body.frame().await.unwrap().unwrap().into_data().unwrap(),
        "half"
    );
    assert!(body.frame().await.unwrap().is_err());
    settle().await;
    assert_eq!(events.take(), [Outcome::Executed, Outcome::NotKept]);

    send(&service, pay(r#""k1""#, BODY))
        .await
        .assert_problem(409, "answer-not-kept", None);
    assert_eq!(handler.runs(), 1);
}

#[tokio::test(start_paused = true)]
async fn an_answer_read_until_its_body_says_it_ended_is_kept() {
    // As an HTTP/1 server sending `Content-Length` does: it stops after the last byte.
    let events = Events::default();
    let handler = answering_bytes(20);
    let service = builder(&events).build().unwrap().layer(handler.clone());

    let response = service.clone().oneshot(pay(r#""k1""#, BODY)).await.unwrap();
    let mut body = response.into_body();
    let mut read = 0;
    while !http_body::Body::is_end_stream(&body) {
        read += body
            .frame()
            .await
            .unwrap()
            .unwrap()
            .into_data()
            .unwrap()
            .len();
    }
    assert_eq!(read, 20);
    drop(body);
    assert_eq!(events.take(), [Outcome::Executed]);

    let replay = send(&service, pay(r#""k1""#, BODY)).await;
    assert!(replay.replayed());
    assert_eq!(replay.body, vec![b'x'; 20]);
    assert_eq!(handler.runs(), 1);
    assert_eq!(events.take(), [Outcome::Replayed]);
}

#[tokio::test(start_paused = true)]
async fn an_answer_of_known_length_dropped_after_its_last_byte_is_kept() {
    // hyper stops at the last byte of a body of known length, though this body would say
    // it ended only when polled again.
    let events = Events::default();
    let handler = Handler::answering(|_, _, _| {
        Ok(Response::new(Frames::data("paid").then("!").hiding_end()))
    });
    let service = builder(&events).build().unwrap().layer(handler.clone());

    for (key, frames) in [(r#""k1""#, 2), (r#""k2""#, 1)] {
        let response = service.clone().oneshot(pay(key, BODY)).await.unwrap();
        let mut body = response.into_body();
        for _ in 0..frames {
            assert!(
                next(&mut body).await.unwrap().unwrap().is_data(),
                "not held"
            );
        }
        drop(body);
        settle().await;
    }
    assert_eq!(
        events.take(),
        [Outcome::Executed, Outcome::Executed, Outcome::NotKept]
    );
    let replay = send(&service, pay(r#""k1""#, BODY)).await;
    assert!(replay.replayed());
    assert_eq!(replay.text(), "paid!");
    send(&service, pay(r#""k2""#, BODY))
        .await
        .assert_problem(409, "answer-not-kept", None);
    assert_eq!(handler.runs(), 2);
    assert_eq!(events.take(), [Outcome::Replayed, Outcome::Spent]);
}

/// The body's next frame (`Some(None)` at its end), or `None` while it is held.
async fn next(body: &mut ResponseBody<Frames>) -> Option<Option<Frame<Bytes>>> {
    let held = tokio::time::timeout(Duration::from_millis(10), body.frame()).await;
    held.ok().map(|frame| frame.map(|f| f.unwrap()))
}

#[tokio::test(start_paused = true)]
async fn the_last_frame_of_an_answer_waits_until_the_store_has_it() {
    let events = Events::default();
    let gate = Arc::new(Notify::new());
    let handler = Handler::answering(|_, parts, _| {
        let body = match parts.headers["x-shape"].to_str().unwrap() {
            // Its end announced with its last data, or found when polled, or trailers.
            "sized" => Frames::data("paid").then("!"),
            "stream" => Frames::chunks(&[b"paid", b"!"]),
            _ => Frames::data("paid")
                .then("!")
                .then_trailers(trailers("c0ffee")),
        };
        Ok(Response::new(body))
    });
    let service = builder(&events)
        .store(FaultyStore::new(Fault::CompleteWaits(gate.clone())))
        .build()
        .unwrap()
        .layer(handler.clone());

    for shape in ["sized", "stream", "trailers"] {
        let key = format!(r#""{shape}""#);
        let response = service
            .clone()
            .oneshot(with(pay(&key, BODY), "x-shape", shape))
            .await
            .unwrap();
        let mut body = response.into_body();
        let paid = next(&mut body).await.unwrap().unwrap().into_data().unwrap();
        assert_eq!(paid, "paid", "{shape}");
        if shape != "sized" {
            assert_eq!(
                next(&mut body).await.unwrap().unwrap().into_data().unwrap(),
                "!"
            );
        }
        assert!(next(&mut body).await.is_none(), "{shape}: held until kept");
        // Meanwhile the key is still running.
        send(&service, pay(&key, BODY))
            .await
            .assert_problem(409, "in-progress", Some("1"));

        gate.notify_one();
        let last = body.frame().await.map(|frame| frame.unwrap());
        match shape {
            "sized" => assert_eq!(last.unwrap().into_data().unwrap(), "!"),
            "stream" => assert!(last.is_none()),
            _ => assert_eq!(last.unwrap().into_trailers().unwrap(), trailers("c0ffee")),
        }
        if shape != "stream" {
            assert!(http_body::Body::is_end_stream(&body));
        }
        assert!(body.frame().await.is_none());

        let replay = send(&service, pay(&key, BODY)).await;
        assert!(replay.replayed());
        assert_eq!(replay.text(), "paid!");
        let kept_trailers = (shape == "trailers").then(|| trailers("c0ffee"));
        assert_eq!(replay.trailers, kept_trailers);
    }
    assert_eq!(handler.runs(), 3);
    assert_eq!(
        events.take(),
        [Outcome::Executed, Outcome::InProgress, Outcome::Replayed].repeat(3)
    );
}
