//! Which requests the layer looks at, and how it reads their keys.

use http::{HeaderValue, Method};
use tower::Layer;
use tower_bulwark_idempotency::{KeyFormat, Outcome, IDEMPOTENCY_KEY};

use super::harness::*;
use super::BODY;

/// `POST /pay` with these raw `Idempotency-Key` values (bytes, so non-ASCII fits).
fn pay_with_keys(values: &[&[u8]]) -> http::Request<Frames> {
    let mut request = request(Method::POST, "/pay", None, Frames::data(BODY));
    for value in values {
        let value = HeaderValue::from_bytes(value).unwrap();
        request.headers_mut().append(IDEMPOTENCY_KEY, value);
    }
    request
}

#[tokio::test(start_paused = true)]
async fn without_a_key_a_request_passes_by_unless_one_is_required() {
    let events = Events::default();
    let handler = Handler::new();
    let service = builder(&events).build().unwrap().layer(handler.clone());
    for run in ["1", "2"] {
        let reply = send(
            &service,
            request(Method::POST, "/pay", None, Frames::data(BODY)),
        )
        .await;
        assert_eq!(reply.status, 201);
        assert_eq!(reply.headers["x-run"], run);
        assert_eq!(reply.headers["date"], DATE, "passed as it was");
        assert!(!reply.replayed());
    }
    assert_eq!(events.take(), []);
}

#[tokio::test(start_paused = true)]
async fn require_key_refuses_keyless_requests_of_the_keyed_methods() {
    let events = Events::default();
    let handler = Handler::new();
    let service = builder(&events)
        .require_key()
        .build()
        .unwrap()
        .layer(handler.clone());

    for method in [Method::POST, Method::PATCH] {
        let keyless = request(method, "/pay", None, Frames::data(BODY));
        send(&service, keyless)
            .await
            .assert_problem(400, "missing-key", None);
    }
    assert_eq!(handler.runs(), 0);
    assert_eq!(events.take(), [Outcome::MissingKey, Outcome::MissingKey]);

    // Other methods are not asked for one.
    let get = request(Method::GET, "/pay", None, Frames::empty());
    assert_eq!(send(&service, get).await.status, 201);
    assert_eq!(handler.runs(), 1);
    assert_eq!(events.take(), []);
}

#[tokio::test(start_paused = true)]
async fn require_key_when_refuses_only_where_it_says() {
    let events = Events::default();
    let handler = Handler::new();
    let service = builder(&events)
        .require_key_when(|parts| parts.uri.path() == "/pay")
        .build()
        .unwrap()
        .layer(handler.clone());

    send(
        &service,
        request(Method::POST, "/pay", None, Frames::data(BODY)),
    )
    .await
    .assert_problem(400, "missing-key", None);
    assert_eq!(events.take(), [Outcome::MissingKey]);
    let elsewhere = request(Method::POST, "/notes", None, Frames::data(BODY));
    assert_eq!(send(&service, elsewhere).await.status, 201);
    assert_eq!(send(&service, pay(r#""k1""#, BODY)).await.status, 201);
    assert_eq!(handler.runs(), 2);
    assert_eq!(events.take(), [Outcome::Executed]);
}

#[tokio::test(start_paused = true)]
async fn malformed_keys_get_400_and_never_run() {
    let events = Events::default();
    let handler = Handler::new();
    let service = builder(&events).build().unwrap().layer(handler.clone());
    let longest = format!("\"{}\"", "k".repeat(255));
    let too_long = format!("\"{}\"", "k".repeat(256));

    let bad: [&[&[u8]]; 10] = [
        &[b""],
        &[b"   "],
        &[b"\"\""],
        &[too_long.as_bytes()],
        &[b"8e03978e-40d5"],
        &[b"\"unterminated"],
        &[b"\"k1\"trailing"],
        &[br#""bad \escape""#],
        &[b"\"k1\"", b"\"k1\""],
        &[b"\"caf\xc3\xa9\""],
    ];
    for values in bad {
        send(&service, pay_with_keys(values))
            .await
            .assert_problem(400, "bad-key", None);
        assert_eq!(events.take(), [Outcome::BadKey], "{values:?}");
    }
    assert_eq!(handler.runs(), 0);

    // The limit is the key's length without its quotes, escapes resolved.
    let fits = [longest.as_bytes(), br#""a \"quoted\" \\ key""#];
    for value in fits {
        assert_eq!(send(&service, pay_with_keys(&[value])).await.status, 201);
    }
    assert_eq!(handler.runs(), 2);
    assert_eq!(events.take(), [Outcome::Executed, Outcome::Executed]);
}

#[tokio::test(start_paused = true)]
async fn max_key_len_bounds_the_key() {
    let events = Events::default();
    let handler = Handler::new();
    let service = builder(&events)
        .max_key_len(8)
        .build()
        .unwrap()
        .layer(handler.clone());
    assert_eq!(send(&service, pay(r#""12345678""#, BODY)).await.status, 201);
    send(&service, pay(r#""123456789""#, BODY))
        .await
        .assert_problem(400, "bad-key", None);
    assert_eq!(handler.runs(), 1);
    assert_eq!(events.take(), [Outcome::Executed, Outcome::BadKey]);
}

#[tokio::test(start_paused = true)]
async fn string_or_bare_accepts_bare_keys_and_reads_both_spellings_as_one() {
    let events = Events::default();
    let handler = Handler::new();
    let service = builder(&events)
        .key_format(KeyFormat::StringOrBare)
        .build()
        .unwrap()
        .layer(handler.clone());

    assert_eq!(send(&service, pay("8e03978e-40d5", BODY)).await.status, 201);
    assert!(send(&service, pay(r#""8e03978e-40d5""#, BODY))
        .await
        .replayed());
    assert!(send(&service, pay(" 8e03978e-40d5\t", BODY))
        .await
        .replayed());
    assert_eq!(handler.runs(), 1);
    assert_eq!(
        events.take(),
        [Outcome::Executed, Outcome::Replayed, Outcome::Replayed]
    );

    // Still no spaces, no empty key, nothing but printable ASCII.
    for values in [
        &[b"has space" as &[u8]] as &[&[u8]],
        &[b""],
        &[b"caf\xc3\xa9"],
    ] {
        send(&service, pay_with_keys(values))
            .await
            .assert_problem(400, "bad-key", None);
    }
    assert_eq!(events.take(), [Outcome::BadKey; 3]);
    assert_eq!(handler.runs(), 1);
}

#[tokio::test(start_paused = true)]
async fn other_methods_pass_by_even_with_a_key() {
    let events = Events::default();
    let handler = Handler::new();
    let service = builder(&events).build().unwrap().layer(handler.clone());

    let mut runs = 0;
    for method in [Method::GET, Method::PUT, Method::DELETE] {
        // A key the layer would refuse is not even read.
        for key in [r#""k1""#, r#""k1""#, "unquoted"] {
            let reply = send(
                &service,
                request(method.clone(), "/pay", Some(key), Frames::data(BODY)),
            )
            .await;
            runs += 1;
            assert_eq!(reply.status, 201);
            assert_eq!(reply.headers["x-run"], runs.to_string());
            assert!(!reply.replayed());
        }
    }
    assert_eq!(handler.runs(), 9);
    assert_eq!(events.take(), []);
}

#[tokio::test(start_paused = true)]
async fn methods_chooses_the_keyed_methods() {
    let events = Events::default();
    let handler = Handler::new();
    let service = builder(&events)
        .methods([Method::PUT])
        .require_key()
        .build()
        .unwrap()
        .layer(handler.clone());
    let put = || request(Method::PUT, "/pay", Some(r#""k1""#), Frames::data(BODY));

    assert_eq!(send(&service, put()).await.status, 201);
    assert!(send(&service, put()).await.replayed());
    // POST is not keyed any more: it runs every time, key or not.
    for _ in 0..2 {
        assert!(!send(&service, pay(r#""k1""#, BODY)).await.replayed());
    }
    let keyless = request(Method::POST, "/pay", None, Frames::data(BODY));
    assert_eq!(send(&service, keyless).await.status, 201);
    assert_eq!(handler.runs(), 4);
    assert_eq!(events.take(), [Outcome::Executed, Outcome::Replayed]);
}
