//! What the deadline layers report: every call they refuse or cut off, once, with its
//! kind; nothing for a call that finishes in time (paused time).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use http::Request;
use tower::{service_fn, Layer, ServiceExt};
use tower_bulwark_core::{find_rejection, BoxError, Deadline, RejectionKind};
use tower_bulwark_deadline::{
    AcceptDeadlineLayer, AdaptiveTimeoutLayer, DeadlineEvent, OnInvalid, PropagateDeadlineLayer,
    TimeoutLayer,
};

/// The events a listener saw, as (refused before the call?, layer name, kind, reason).
type Seen = Arc<Mutex<Vec<(bool, String, RejectionKind, &'static str)>>>;

fn listener(seen: &Seen) -> impl Fn(&DeadlineEvent) + Send + Sync + 'static {
    let seen = seen.clone();
    move |event: &DeadlineEvent| {
        let entry = match event {
            DeadlineEvent::Refused {
                deadline,
                kind,
                reason,
            } => (true, deadline.to_string(), *kind, *reason),
            DeadlineEvent::CutOff {
                deadline,
                kind,
                reason,
            } => (false, deadline.to_string(), *kind, *reason),
            other => panic!("unexpected event {other:?}"),
        };
        seen.lock().unwrap().push(entry);
    }
}

fn take(seen: &Seen) -> Vec<(bool, String, RejectionKind, &'static str)> {
    std::mem::take(&mut *seen.lock().unwrap())
}

/// A handler that takes `work` to answer.
fn slow(
    work: Duration,
) -> impl tower::Service<Request<()>, Response = (), Error = BoxError, Future = impl Send> + Clone {
    service_fn(move |_: Request<()>| async move {
        tokio::time::sleep(work).await;
        Ok::<_, BoxError>(())
    })
}

fn timeout_ms(ms: &str) -> Request<()> {
    Request::get("/")
        .header("x-request-timeout-ms", ms)
        .body(())
        .unwrap()
}

#[tokio::test(start_paused = true)]
async fn the_accept_layer_reports_malformed_headers_late_arrivals_and_cut_offs() {
    let seen = Seen::default();
    let layer = AcceptDeadlineLayer::builder()
        .name("edge")
        .headroom(Duration::ZERO)
        .on_invalid(OnInvalid::Reject)
        .on_event(listener(&seen))
        .build()
        .unwrap();

    // In time: nothing reported.
    layer
        .layer(slow(Duration::from_millis(10)))
        .oneshot(timeout_ms("100"))
        .await
        .unwrap();
    assert!(take(&seen).is_empty());

    // A malformed header, refused before the call.
    let error = layer
        .layer(slow(Duration::ZERO))
        .oneshot(timeout_ms("soon"))
        .await
        .unwrap_err();
    assert_eq!(
        find_rejection(&error).unwrap().kind(),
        RejectionKind::InvalidRequest
    );
    assert_eq!(
        take(&seen),
        [(
            true,
            "edge".into(),
            RejectionKind::InvalidRequest,
            "malformed deadline header"
        )]
    );

    // A request whose deadline (from an outer layer) has already passed.
    let mut late = timeout_ms("100");
    late.extensions_mut()
        .insert(Deadline::after(Duration::ZERO));
    layer
        .layer(slow(Duration::ZERO))
        .oneshot(late)
        .await
        .unwrap_err();
    assert_eq!(
        take(&seen),
        [(
            true,
            "edge".into(),
            RejectionKind::DeadlineExceeded,
            "deadline passed before the call"
        )]
    );

    // A handler that runs past the deadline is cut off, reported once.
    let error = layer
        .layer(slow(Duration::from_secs(1)))
        .oneshot(timeout_ms("100"))
        .await
        .unwrap_err();
    assert_eq!(
        find_rejection(&error).unwrap().kind(),
        RejectionKind::DeadlineExceeded
    );
    assert_eq!(
        take(&seen),
        [(
            false,
            "edge".into(),
            RejectionKind::DeadlineExceeded,
            "deadline passed"
        )]
    );
}

#[tokio::test(start_paused = true)]
async fn the_timeout_layers_report_their_own_timeout_and_the_callers_deadline_apart() {
    let seen = Seen::default();
    let timeout = TimeoutLayer::new(Duration::from_millis(50))
        .unwrap()
        .name("attempt")
        .on_event(listener(&seen));

    timeout
        .layer(slow(Duration::from_millis(10)))
        .oneshot(Request::new(()))
        .await
        .unwrap();
    assert!(take(&seen).is_empty());

    timeout
        .layer(slow(Duration::from_secs(1)))
        .oneshot(Request::new(()))
        .await
        .unwrap_err();
    assert_eq!(
        take(&seen),
        [(
            false,
            "attempt".into(),
            RejectionKind::TimedOut,
            "timed out"
        )]
    );

    // The caller's shorter deadline ends it first: reported as the caller's deadline.
    Deadline::after(Duration::from_millis(20))
        .scope(
            timeout
                .layer(slow(Duration::from_secs(1)))
                .oneshot(Request::new(())),
        )
        .await
        .unwrap_err();
    assert_eq!(
        take(&seen),
        [(
            false,
            "attempt".into(),
            RejectionKind::DeadlineExceeded,
            "deadline passed"
        )]
    );

    // The adaptive timeout reports the same way, under its own name.
    let adaptive = AdaptiveTimeoutLayer::builder()
        .name("learned")
        .bounds(Duration::from_millis(10), Duration::from_millis(30))
        .on_event(listener(&seen))
        .build()
        .unwrap();
    adaptive
        .layer(slow(Duration::from_secs(1)))
        .oneshot(Request::new(()))
        .await
        .unwrap_err();
    assert_eq!(
        take(&seen),
        [(
            false,
            "learned".into(),
            RejectionKind::TimedOut,
            "timed out"
        )]
    );
}

#[tokio::test(start_paused = true)]
async fn the_propagate_layer_reports_calls_with_too_little_time_left() {
    let seen = Seen::default();
    let layer = PropagateDeadlineLayer::builder()
        .name("to-inventory")
        .min_budget(Duration::from_millis(10))
        .on_event(listener(&seen))
        .build()
        .unwrap();

    let mut short = Request::new(());
    short
        .extensions_mut()
        .insert(Deadline::after(Duration::from_millis(5)));
    layer
        .layer(slow(Duration::ZERO))
        .oneshot(short)
        .await
        .unwrap_err();
    assert_eq!(
        take(&seen),
        [(
            true,
            "to-inventory".into(),
            RejectionKind::DeadlineExceeded,
            "too little time left"
        )]
    );

    let mut enough = Request::new(());
    enough
        .extensions_mut()
        .insert(Deadline::after(Duration::from_millis(50)));
    layer
        .layer(slow(Duration::from_secs(1)))
        .oneshot(enough)
        .await
        .unwrap_err();
    assert_eq!(
        take(&seen),
        [(
            false,
            "to-inventory".into(),
            RejectionKind::DeadlineExceeded,
            "deadline passed"
        )]
    );
}
