//! What metrics-exporter-prometheus (the examples' exporter) renders for the layers'
//! metrics, and that the Grafana dashboard queries those names: a counter keeps the name
//! the crate gives it (already ending in `_total`, so no second `_total`), and a
//! histogram is a summary with quantiles unless buckets are configured.

use std::path::Path;
use std::time::Duration;

use metrics_exporter_prometheus::PrometheusBuilder;
use tower::{service_fn, Layer, ServiceExt};
use tower_bulwark::breaker::CircuitBreakerLayer;
use tower_bulwark::bulkhead::BulkheadLayer;
use tower_bulwark::BoxError;

/// The family names and types of `# TYPE` lines.
fn families(rendered: &str) -> Vec<(&str, &str)> {
    rendered
        .lines()
        .filter_map(|line| line.strip_prefix("# TYPE "))
        .filter_map(|rest| rest.split_once(' '))
        .collect()
}

#[tokio::test(start_paused = true)]
async fn the_exporter_keeps_the_names_the_dashboard_queries() {
    // The only test of this binary: the recorder is global.
    let prometheus = PrometheusBuilder::new()
        .install_recorder()
        .expect("no other recorder");

    // A breaker: a call recorded, then forced open (a transition), then a refusal.
    let breaker = CircuitBreakerLayer::builder()
        .name("payments")
        .with_metrics()
        .build()
        .expect("valid breaker");
    let ok = service_fn(|_: ()| async { Ok::<_, BoxError>(()) });
    breaker
        .layer(ok)
        .oneshot(())
        .await
        .expect("a closed breaker");
    breaker.handle().force_open();
    assert!(breaker.layer(ok).oneshot(()).await.is_err());

    // A bulkhead of one with a queue: the second call waits (a histogram sample).
    let bulkhead = BulkheadLayer::builder()
        .name("db")
        .max_concurrent(1)
        .max_queue(1)
        .max_wait(Duration::from_secs(1))
        .with_metrics()
        .build()
        .expect("valid bulkhead");
    let slow = service_fn(|_: ()| async {
        tokio::time::sleep(Duration::from_millis(10)).await;
        Ok::<_, BoxError>(())
    });
    let (first, second) = tokio::join!(
        bulkhead.layer(slow).oneshot(()),
        bulkhead.layer(slow).oneshot(())
    );
    first.expect("the first call runs");
    second.expect("the second call waits, then runs");

    let rendered = prometheus.render();
    let types = families(&rendered);
    let type_of = |name: &str| types.iter().find(|(n, _)| *n == name).map(|(_, t)| *t);
    assert_eq!(type_of("bulwark_breaker_rejections_total"), Some("counter"));
    assert!(
        rendered.contains("bulwark_breaker_rejections_total{breaker=\"payments\"} 1"),
        "{rendered}"
    );
    assert_eq!(type_of("bulwark_breaker_state"), Some("gauge"));
    assert_eq!(type_of("bulwark_breaker_calls_total"), Some("counter"));
    assert_eq!(
        type_of("bulwark_breaker_transitions_total"),
        Some("counter")
    );
    assert_eq!(type_of("bulwark_bulkhead_wait_seconds"), Some("summary"));
    assert!(
        rendered.contains("bulwark_bulkhead_wait_seconds{bulkhead=\"db\",quantile=\"0.99\"}"),
        "{rendered}"
    );
    assert!(rendered.contains("bulwark_bulkhead_wait_seconds_count{bulkhead=\"db\"} 1"));
    assert!(!rendered.contains("_total_total"), "{rendered}");

    // The dashboard queries each family under the name rendered, in the shape its type
    // needs.
    let dashboard =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("grafana/bulwark.json"))
            .expect("the Grafana dashboard");
    for (name, kind) in &types {
        let query = match *kind {
            "counter" => format!("rate({name}{{"),
            "summary" => format!("{name}{{bulkhead=~\\\"$bulkhead\\\", quantile="),
            _ => format!("({name}{{"),
        };
        assert!(
            dashboard.contains(&query),
            "no `{query}` in the dashboard for the {kind} {name}"
        );
    }
    assert!(types.len() >= 5, "{types:?}");
}
