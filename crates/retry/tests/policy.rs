//! The retry policy over tower's `Retry`, in paused time.

use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;
use tower::{Layer, ServiceExt};
use tower_bulwark_core::testing::{controlled, Behavior};
use tower_bulwark_core::Deadline;
use tower_bulwark_retry::{Backoff, Decision, Jitter, RatioBudget, RetryPolicy};

fn constant(ms: u64) -> (Backoff, Jitter) {
    (Backoff::Constant(Duration::from_millis(ms)), Jitter::None)
}

#[tokio::test(start_paused = true)]
async fn retries_until_success_within_max_attempts_waiting_the_backoff() {
    let (backoff, jitter) = constant(100);
    let policy = RetryPolicy::builder()
        .max_attempts(3)
        .backoff(backoff, jitter)
        .build()
        .unwrap();
    let (inner, control) = controlled::<u32>();
    control.script([Behavior::Fail, Behavior::Fail]);
    let service = policy.layer().layer(inner);
    let started = Instant::now();
    assert_eq!(service.clone().oneshot(5).await.unwrap(), 5);
    assert_eq!(control.calls(), 3);
    assert_eq!(started.elapsed(), Duration::from_millis(200));

    control.fail();
    assert!(service.oneshot(6).await.is_err());
    assert_eq!(control.calls(), 6, "three attempts, no more");
}

#[tokio::test(start_paused = true)]
async fn the_budget_caps_retries_across_calls() {
    let budget = Arc::new(RatioBudget::new(Duration::from_secs(10), 0, 0.1).unwrap());
    let (backoff, jitter) = constant(1);
    let policy = RetryPolicy::builder()
        .max_attempts(3)
        .backoff(backoff, jitter)
        .budget(budget.clone())
        .build()
        .unwrap();
    let (inner, control) = controlled::<u32>();
    control.fail();
    let service = policy.layer().layer(inner);
    for i in 0..100 {
        assert!(service.clone().oneshot(i).await.is_err());
    }
    // 100 calls at 10% buy about 10 retries, not 200.
    let retries = control.calls() - 100;
    assert!((9..=10).contains(&retries), "{retries} retries");
    assert_eq!(budget.counts().0 as usize, retries);
}

#[tokio::test(start_paused = true)]
async fn no_retry_whose_wait_outlives_the_deadline() {
    let (backoff, jitter) = constant(300);
    let policy = RetryPolicy::builder()
        .max_attempts(5)
        .backoff(backoff, jitter)
        .build()
        .unwrap();
    let (inner, control) = controlled::<u32>();
    control.fail();
    let service = policy.layer().layer(inner);
    let started = Instant::now();
    let result = Deadline::after(Duration::from_millis(700))
        .scope(service.oneshot(1))
        .await;
    assert!(result.is_err());
    // Attempts at 0 and 300 ms; a third at 600 ms would be fine, a fourth at 900 is not.
    assert_eq!(control.calls(), 3);
    assert_eq!(started.elapsed(), Duration::from_millis(600));
}

#[tokio::test(start_paused = true)]
async fn pushback_stretches_the_wait_and_too_much_of_it_stops_retrying() {
    let (backoff, jitter) = constant(10);
    let classify = |_: &u32, result: &Result<u32, tower_bulwark_core::BoxError>| match result {
        Ok(n) if *n == 0 => Decision::Retry {
            pushback: Some(Duration::from_secs(2)),
        },
        Ok(n) if *n == 1 => Decision::Retry {
            pushback: Some(Duration::from_secs(60)),
        },
        Ok(n) if *n == 2 => Decision::Retry {
            pushback: Some(Duration::from_secs(5)),
        },
        Ok(_) => Decision::Done,
        Err(_) => Decision::Retry { pushback: None },
    };
    let policy = RetryPolicy::builder()
        .max_attempts(2)
        .backoff(backoff, jitter)
        .max_wait(Duration::from_secs(5))
        .classify(classify)
        .build()
        .unwrap();
    let (inner, control) = controlled::<u32>();
    let service = policy.layer().layer(inner);
    let started = Instant::now();
    service.clone().oneshot(0).await.unwrap();
    assert_eq!(
        started.elapsed(),
        Duration::from_secs(2),
        "waited the server's 2 s"
    );
    assert_eq!(control.calls(), 2);
    service.clone().oneshot(1).await.unwrap();
    assert_eq!(
        control.calls(),
        3,
        "a 60 s pushback is beyond the 5 s maximum: not retried"
    );
    let started = Instant::now();
    service.oneshot(2).await.unwrap();
    assert_eq!(
        control.calls(),
        5,
        "a pushback of exactly the maximum is retried"
    );
    assert_eq!(started.elapsed(), Duration::from_secs(5));
}

#[test]
fn bad_settings_name_their_field() {
    assert_eq!(
        RetryPolicy::builder()
            .max_attempts(0)
            .build()
            .unwrap_err()
            .field(),
        "max_attempts"
    );
    let bad = Backoff::Exponential {
        initial: Duration::from_millis(1),
        multiplier: f64::NAN,
    };
    assert_eq!(
        RetryPolicy::builder()
            .backoff(bad, Jitter::Full)
            .build()
            .unwrap_err()
            .field(),
        "backoff.multiplier"
    );
}

#[tokio::test(start_paused = true)]
async fn retries_and_refusals_are_reported() {
    use std::sync::Mutex;
    use tower_bulwark_retry::{NoRetry, RetryEvent};

    let events = Arc::new(Mutex::new(Vec::new()));
    let sink = events.clone();
    let (backoff, jitter) = constant(10);
    let policy = RetryPolicy::builder()
        .max_attempts(2)
        .backoff(backoff, jitter)
        .on_event(move |e: &RetryEvent| sink.lock().unwrap().push(e.clone()))
        .build()
        .unwrap();
    let (inner, control) = controlled::<u32>();
    control.fail();
    let service = policy.layer().layer(inner);
    assert!(service.oneshot(1).await.is_err());
    assert_eq!(
        *events.lock().unwrap(),
        [
            RetryEvent::Retrying {
                attempt: 2,
                wait: Duration::from_millis(10)
            },
            RetryEvent::NotRetried {
                reason: NoRetry::MaxAttempts
            },
        ]
    );
}

#[tokio::test(start_paused = true)]
async fn each_attempt_can_have_its_own_timeout() {
    let (backoff, jitter) = constant(50);
    let policy = RetryPolicy::builder()
        .max_attempts(3)
        .backoff(backoff, jitter)
        .build()
        .unwrap();
    let (inner, control) = controlled::<u32>();
    // The first attempt hangs, the second answers at once.
    control.script([Behavior::Hang, Behavior::Succeed]);
    let service = policy
        .layer_with_attempt_timeout(Duration::from_millis(200))
        .layer(inner);
    let started = Instant::now();
    assert_eq!(service.oneshot(4).await.unwrap(), 4);
    assert_eq!(
        started.elapsed(),
        Duration::from_millis(250),
        "200 ms timeout + 50 ms backoff"
    );
    assert_eq!(control.calls(), 2);
    assert_eq!(control.cancelled(), 1, "the hanging attempt was dropped");
}

#[tokio::test(start_paused = true)]
async fn an_enormous_wait_under_a_deadline_saturates_instead_of_panicking() {
    let policy = RetryPolicy::builder()
        .max_attempts(3)
        .backoff(Backoff::Constant(Duration::MAX), Jitter::None)
        .max_wait(Duration::MAX)
        .build()
        .unwrap();
    let (inner, control) = controlled::<u32>();
    control.fail();
    let service = policy.layer().layer(inner);
    let result = Deadline::after(Duration::from_secs(1))
        .scope(service.oneshot(1))
        .await;
    assert!(result.is_err());
    assert_eq!(control.calls(), 1, "a wait past the deadline is not taken");
}

/// A server that answers every call with `status` and `headers`, counting the calls.
#[cfg(feature = "http")]
fn answering(
    status: u16,
    headers: Vec<(&'static str, &'static str)>,
) -> (
    impl tower::Service<
            http::Request<()>,
            Response = http::Response<()>,
            Error = tower_bulwark_core::BoxError,
            Future = impl Send,
        > + Clone,
    Arc<std::sync::atomic::AtomicUsize>,
) {
    let calls = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counted = calls.clone();
    let service = tower::service_fn(move |_: http::Request<()>| {
        counted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let mut response = http::Response::builder().status(status);
        for (name, value) in &headers {
            response = response.header(*name, *value);
        }
        std::future::ready(Ok(response.body(()).unwrap()))
    });
    (service, calls)
}

#[cfg(feature = "http")]
#[tokio::test(start_paused = true)]
async fn server_pushback_is_honoured_as_the_specs_say() {
    use std::sync::atomic::Ordering::SeqCst;
    use std::sync::Mutex;
    use tower_bulwark_retry::{GrpcRetry, HttpRetry, NoRetry, RetryEvent};

    let events = Arc::new(Mutex::new(Vec::new()));
    let sink = events.clone();
    let (backoff, jitter) = constant(10);
    let builder = || {
        let sink = sink.clone();
        RetryPolicy::builder()
            .max_attempts(2)
            .backoff(backoff, jitter)
            .max_wait(Duration::from_secs(5))
            .on_event(move |e: &RetryEvent| sink.lock().unwrap().push(e.clone()))
    };
    let http = builder().classify(HttpRetry::default()).build().unwrap();
    // Every method marked retryable on UNAVAILABLE.
    let every_method = tower_bulwark_core::repeat::GrpcMethods::new().matching(|_| true);
    let grpc = GrpcRetry::new()
        .methods(every_method, &[tower_bulwark_core::GrpcCode::Unavailable])
        .unwrap();
    let grpc = builder().classify(grpc).build().unwrap();
    async fn call<C, S>(policy: &RetryPolicy<C>, service: S)
    where
        C: tower_bulwark_retry::RetryClassify<
                http::Request<()>,
                http::Response<()>,
                tower_bulwark_core::BoxError,
            > + Clone,
        S: tower::Service<
                http::Request<()>,
                Response = http::Response<()>,
                Error = tower_bulwark_core::BoxError,
            > + Clone,
    {
        let answer = policy
            .clone()
            .layer()
            .layer(service)
            .oneshot(http::Request::new(()));
        answer.await.unwrap();
    }

    // Within the maximum: the server's wait, exactly.
    let (service, calls) = answering(503, vec![("retry-after", "3")]);
    let started = Instant::now();
    call(&http, service).await;
    assert_eq!(
        (calls.load(SeqCst), started.elapsed()),
        (2, Duration::from_secs(3))
    );

    // Delay-seconds that overflow u64 are a very long wait (RFC 9111 1.2.2): beyond the
    // 5 s maximum, so no retry, and never "garbage, retry soon".
    let (service, calls) = answering(503, vec![("retry-after", "99999999999999999999999")]);
    events.lock().unwrap().clear();
    call(&http, service).await;
    assert_eq!(calls.load(SeqCst), 1);
    assert_eq!(
        *events.lock().unwrap(),
        [RetryEvent::NotRetried {
            reason: NoRetry::Pushback
        }]
    );

    // gRFC A6: an unparseable or negative pushback (digits beyond u64 included) means "do
    // not retry".
    for pushback in ["garbage", "", "-5", "1.5", "99999999999999999999999"] {
        let headers = vec![("grpc-status", "14"), ("grpc-retry-pushback-ms", pushback)];
        let (service, calls) = answering(200, headers);
        call(&grpc, service).await;
        assert_eq!(calls.load(SeqCst), 1, "{pushback:?}");
    }
    // A valid one is waited for.
    let (service, calls) = answering(
        200,
        vec![("grpc-status", "14"), ("grpc-retry-pushback-ms", "1500")],
    );
    let started = Instant::now();
    call(&grpc, service).await;
    assert_eq!(
        (calls.load(SeqCst), started.elapsed()),
        (2, Duration::from_millis(1500))
    );
}

/// A request whose `ReplayBody` outgrew its limit is sent once and not retried; one within
/// its limit is retried as usual.
#[cfg(feature = "http")]
#[tokio::test(start_paused = true)]
async fn a_body_over_its_replay_limit_is_sent_once() {
    use bytes::Bytes;
    use http_body_util::{BodyExt, Full};
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Mutex;
    use tower_bulwark_core::BoxError;
    use tower_bulwark_retry::{NoRetry, ReplayBody, RetryEvent};

    async fn attempts(limit: usize) -> (usize, Vec<RetryEvent>) {
        let events = Arc::new(Mutex::new(Vec::new()));
        let sink = events.clone();
        let (backoff, jitter) = constant(10);
        let policy = RetryPolicy::builder()
            .max_attempts(3)
            .backoff(backoff, jitter)
            .on_event(move |e: &RetryEvent| sink.lock().unwrap().push(e.clone()))
            .build()
            .unwrap();
        let calls = Arc::new(AtomicUsize::new(0));
        let counted = calls.clone();
        let failing = tower::service_fn(move |request: http::Request<ReplayBody>| {
            counted.fetch_add(1, Ordering::SeqCst);
            async move {
                let _ = request.into_body().collect().await;
                Err::<(), BoxError>("unavailable".into())
            }
        });
        let body = ReplayBody::new(Full::new(Bytes::from(vec![7u8; 100])), limit);
        let request = http::Request::new(body);
        assert!(policy
            .layer()
            .layer(failing)
            .oneshot(request)
            .await
            .is_err());
        let events = events.lock().unwrap().clone();
        (calls.load(Ordering::SeqCst), events)
    }

    let (calls, events) = attempts(10).await;
    assert_eq!(calls, 1, "100 bytes over a 10-byte limit: sent once");
    assert_eq!(
        events,
        [RetryEvent::NotRetried {
            reason: NoRetry::BodyTooLarge
        }]
    );
    let (calls, _) = attempts(1024).await;
    assert_eq!(calls, 3, "within the limit: retried");
}
