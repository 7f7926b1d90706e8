//! `with_metrics` on a preset that StackConfig built: refused, and the file's own switch.
#![cfg(all(feature = "serde", feature = "metrics"))]

use tower_bulwark::StackConfig;

#[test]
fn with_metrics_after_stack_config_is_refused_and_the_file_switch_keeps_the_settings() {
    let config: StackConfig = serde_json::from_str(
        r#"{"server":{"shed":{"name":"edge","algorithm":{"kind":"fixed","limit":3}}},
            "clients":{"x":{"bulkhead":{"max_concurrent":7},"breaker":{"name":"inv"}}}}"#,
    )
    .unwrap();
    let client = config.http_client("x").unwrap();
    assert_eq!(client.bulkhead.handle().snapshot().max_concurrent, 7);
    // Rebuilding the configured parts would drop the file's settings: refused, pointing
    // at the file's own switch.
    let refused = client.with_metrics().unwrap_err();
    assert_eq!(refused.field(), "metrics");
    assert!(refused.problem().contains("\"metrics\": true"), "{refused}");
    let refused = config.http_server().unwrap().with_metrics().unwrap_err();
    assert_eq!(refused.field(), "metrics");

    // The file's own switch keeps every setting and records metrics.
    let metered: StackConfig = serde_json::from_str(
        r#"{"metrics": true,
            "server":{"shed":{"name":"edge","algorithm":{"kind":"fixed","limit":3}}},
            "clients":{"x":{"bulkhead":{"max_concurrent":7},"breaker":{"name":"inv"}}}}"#,
    )
    .unwrap();
    let client = metered.http_client("x").unwrap();
    let server = metered.http_server().unwrap();
    assert_eq!(client.bulkhead.handle().snapshot().max_concurrent, 7);
    assert_eq!(client.breaker.handle().name(), "inv");
    assert_eq!(server.shed.handle().name(), "edge");
    assert_eq!(server.shed.handle().snapshot().limit, 3);

    // A preset no section touched may still turn metrics on.
    assert!(config.http_client("other").unwrap().with_metrics().is_ok());
}
