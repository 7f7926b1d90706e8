//! Nested deadline layers each report what they saw: a layer inside a timeout takes the
//! timeout for its caller's deadline, so one cut-off is reported by both, as
//! `DeadlineExceeded` inside and `TimedOut` by the timeout (paused time).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use http::Request;
use tower::{service_fn, Layer, ServiceExt};
use tower_bulwark_core::{find_rejection, BoxError, RejectionKind};
use tower_bulwark_deadline::{DeadlineEvent, PropagateDeadlineLayer, TimeoutLayer};

type Seen = Arc<Mutex<Vec<(String, RejectionKind)>>>;

fn listener(seen: &Seen) -> impl Fn(&DeadlineEvent) + Send + Sync + 'static {
    let seen = seen.clone();
    move |event: &DeadlineEvent| {
        if let DeadlineEvent::CutOff { deadline, kind, .. } = event {
            seen.lock().unwrap().push((deadline.to_string(), *kind));
        }
    }
}

fn slow(
) -> impl tower::Service<Request<()>, Response = (), Error = BoxError, Future = impl Send> + Clone {
    service_fn(|_: Request<()>| async {
        tokio::time::sleep(Duration::from_secs(1)).await;
        Ok::<_, BoxError>(())
    })
}

/// A timeout layer outside a propagate layer: the timeout's own 50 ms ends the call. The
/// propagate layer inside sees those 50 ms as the caller's deadline and, polled first,
/// reports a `DeadlineExceeded` cut-off; the timeout reports the same call as its own
/// `TimedOut`, which is what the caller gets.
#[tokio::test(start_paused = true)]
async fn a_timeout_around_a_propagate_layer_and_the_propagate_layer_both_report() {
    let seen = Seen::default();
    let timeout = TimeoutLayer::new(Duration::from_millis(50))
        .unwrap()
        .name("attempt")
        .on_event(listener(&seen));
    let propagate = PropagateDeadlineLayer::builder()
        .name("propagate")
        .on_event(listener(&seen))
        .build()
        .unwrap();
    let error = timeout
        .layer(propagate.layer(slow()))
        .oneshot(Request::new(()))
        .await
        .unwrap_err();
    assert_eq!(
        find_rejection(&error).unwrap().kind(),
        RejectionKind::TimedOut
    );
    assert_eq!(
        *seen.lock().unwrap(),
        [
            ("propagate".to_string(), RejectionKind::DeadlineExceeded),
            ("attempt".to_string(), RejectionKind::TimedOut)
        ],
    );
}

/// The same with two timeouts (an overall timeout outside an attempt timeout, as around a
/// retry): the attempt timeout reports `DeadlineExceeded`, the overall one `TimedOut`.
#[tokio::test(start_paused = true)]
async fn an_overall_timeout_and_the_attempt_timeout_inside_it_both_report() {
    let seen = Seen::default();
    let overall = TimeoutLayer::new(Duration::from_millis(50))
        .unwrap()
        .name("overall")
        .on_event(listener(&seen));
    let attempt = TimeoutLayer::new(Duration::from_secs(10))
        .unwrap()
        .name("attempt")
        .on_event(listener(&seen));
    let error = overall
        .layer(attempt.layer(slow()))
        .oneshot(Request::new(()))
        .await
        .unwrap_err();
    assert_eq!(
        find_rejection(&error).unwrap().kind(),
        RejectionKind::TimedOut
    );
    assert_eq!(
        *seen.lock().unwrap(),
        [
            ("attempt".to_string(), RejectionKind::DeadlineExceeded),
            ("overall".to_string(), RejectionKind::TimedOut)
        ],
    );
}
