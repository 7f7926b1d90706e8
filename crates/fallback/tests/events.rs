//! Degraded answers and the cache's decisions are reported to listeners and metrics.

mod support;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use http::{Method, StatusCode};
use support::{call, get, request, Backend};
use tower::{service_fn, Layer, ServiceExt};
use tower_bulwark_core::{BoxError, Rejection, RejectionKind};
use tower_bulwark_fallback::{
    BackupLayer, FallbackEvent, FallbackLayer, Reason, Source, Unstorable,
};

/// A listener and what it heard.
fn recorder() -> (
    impl Fn(&FallbackEvent) + Send + Sync + 'static,
    Arc<Mutex<Vec<FallbackEvent>>>,
) {
    let events = Arc::new(Mutex::new(Vec::new()));
    let sink = events.clone();
    (
        move |event: &FallbackEvent| sink.lock().unwrap().push(event.clone()),
        events,
    )
}

fn served(source: Source, reason: Reason) -> FallbackEvent {
    FallbackEvent::Served {
        fallback: "catalogue".into(),
        source,
        reason,
    }
}

fn drain(events: &Mutex<Vec<FallbackEvent>>) -> Vec<FallbackEvent> {
    std::mem::take(&mut *events.lock().unwrap())
}

#[tokio::test(start_paused = true)]
async fn degraded_answers_and_cache_decisions_are_reported() {
    let (listener, events) = recorder();
    let backend = Backend::new();
    let layer = FallbackLayer::builder()
        .name("catalogue")
        .last_good(Duration::from_secs(60), 10)
        .static_response(http::Response::new("static".to_string()))
        .on_event(listener)
        .build()
        .unwrap();
    let service = layer.layer(backend.service());

    call(&service, get("/a")).await.unwrap();
    call(&service, request(Method::POST, "/a")).await.unwrap();
    assert_eq!(
        drain(&events),
        [FallbackEvent::Stored {
            fallback: "catalogue".into()
        }],
        "a POST's success is not a cache decision"
    );

    backend.respond(200, &[("cache-control", "no-store")]);
    call(&service, get("/b")).await.unwrap();
    assert_eq!(
        drain(&events),
        [FallbackEvent::NotStored {
            fallback: "catalogue".into(),
            why: Unstorable::NoStore
        }]
    );

    backend.respond(503, &[]);
    call(&service, get("/a")).await.unwrap();
    call(&service, get("/b")).await.unwrap();
    backend.fail();
    call(&service, request(Method::POST, "/a")).await.unwrap();
    assert_eq!(
        drain(&events),
        [
            served(
                Source::LastGood,
                Reason::Status(StatusCode::SERVICE_UNAVAILABLE)
            ),
            served(
                Source::Static,
                Reason::Status(StatusCode::SERVICE_UNAVAILABLE)
            ),
            served(Source::Static, Reason::Error),
        ]
    );
    // A client error is not a failure: nothing to report.
    backend.respond(404, &[]);
    call(&service, get("/a")).await.unwrap();
    assert_eq!(drain(&events), []);
}

#[tokio::test(start_paused = true)]
async fn the_function_and_refusals_are_reported_and_so_is_no_answer() {
    let (listener, events) = recorder();
    let refusing = service_fn(|_: http::Request<()>| async {
        Err::<http::Response<String>, BoxError>(
            Rejection::new(RejectionKind::CircuitOpen, "catalogue").into(),
        )
    });
    let layer = FallbackLayer::builder()
        .name("catalogue")
        .respond_with(|key, _| match key.path() {
            "/known" => Ok(http::Response::new("from the function".to_string())),
            _ => Err("no answer for this".into()),
        })
        .on_event(listener)
        .build()
        .unwrap();
    let service = layer.layer(refusing);
    service.clone().oneshot(get("/known")).await.unwrap();
    service.clone().oneshot(get("/other")).await.unwrap_err();
    let refused = Reason::Rejected(RejectionKind::CircuitOpen);
    assert_eq!(
        drain(&events),
        [
            served(Source::Function, refused),
            FallbackEvent::Unanswered {
                fallback: "catalogue".into(),
                reason: refused
            },
        ]
    );

    let (listener, events) = recorder();
    let backend = Backend::new();
    let layer = FallbackLayer::builder()
        .last_good(Duration::from_secs(60), 10)
        .on_event(listener)
        .build()
        .unwrap();
    backend.fail();
    call(&layer.layer(backend.service()), get("/never-seen"))
        .await
        .unwrap_err();
    assert_eq!(
        drain(&events),
        [FallbackEvent::Unanswered {
            fallback: "fallback".into(),
            reason: Reason::Error
        }],
        "the default name"
    );
}

#[tokio::test(start_paused = true)]
async fn a_backup_answer_is_reported() {
    let (listener, events) = recorder();
    let replica = Backend::new();
    let primary = Backend::new();
    primary.fail();
    let service = BackupLayer::new(replica.service())
        .name("replica")
        .on_event(listener)
        .layer(primary.service());
    let answer = call(&service, get("/a")).await.unwrap();
    assert_eq!(answer.headers()["x-bulwark-degraded"], "backup");
    replica.fail();
    call(&service, get("/a")).await.unwrap_err();
    assert_eq!(
        drain(&events),
        [
            FallbackEvent::Served {
                fallback: "replica".into(),
                source: Source::Backup,
                reason: Reason::Error
            },
            FallbackEvent::Unanswered {
                fallback: "replica".into(),
                reason: Reason::Error
            },
        ]
    );
}

/// A metric's name, labels and value.
#[cfg(feature = "metrics")]
type Recorded = (
    String,
    Vec<(String, String)>,
    metrics_util::debugging::DebugValue,
);

#[cfg(feature = "metrics")]
#[tokio::test(start_paused = true)]
async fn metrics_count_degraded_answers_by_source_and_reason() {
    use metrics_util::debugging::{DebugValue, DebuggingRecorder};

    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    let _guard = metrics::set_default_local_recorder(&recorder);
    let backend = Backend::new();
    let layer = FallbackLayer::builder()
        .name("catalogue")
        .last_good(Duration::from_secs(60), 10)
        .with_metrics()
        .build()
        .unwrap();
    let service = layer.layer(backend.service());
    call(&service, get("/a")).await.unwrap();
    backend.respond(200, &[("cache-control", "private")]);
    call(&service, get("/b")).await.unwrap();
    backend.respond(503, &[]);
    for _ in 0..3 {
        call(&service, get("/a")).await.unwrap();
    }
    call(&service, get("/b")).await.unwrap();

    let mut metrics: Vec<Recorded> = snapshotter
        .snapshot()
        .into_vec()
        .into_iter()
        .map(|(key, _, _, value)| {
            let labels = key
                .key()
                .labels()
                .map(|l| (l.key().to_string(), l.value().to_string()))
                .collect();
            (key.key().name().to_string(), labels, value)
        })
        .collect();
    metrics.sort_by(|a, b| a.0.cmp(&b.0));
    let labels = |pairs: &[(&str, &str)]| {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect::<Vec<_>>()
    };
    assert_eq!(
        metrics,
        [
            (
                "bulwark_fallback_not_stored_total".to_string(),
                labels(&[("fallback", "catalogue"), ("why", "private")]),
                DebugValue::Counter(1)
            ),
            (
                "bulwark_fallback_served_total".to_string(),
                labels(&[
                    ("fallback", "catalogue"),
                    ("source", "last_good"),
                    ("reason", "status")
                ]),
                DebugValue::Counter(3)
            ),
            (
                "bulwark_fallback_stored_total".to_string(),
                labels(&[("fallback", "catalogue")]),
                DebugValue::Counter(1)
            ),
            (
                "bulwark_fallback_unanswered_total".to_string(),
                labels(&[("fallback", "catalogue"), ("reason", "status")]),
                DebugValue::Counter(1)
            ),
        ]
    );
}
