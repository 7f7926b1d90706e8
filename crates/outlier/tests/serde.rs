//! `OutlierConfig`: settings from a file, the builder's defaults for what is missing, and
//! the same checks as the builder.
#![cfg(feature = "serde")]

use tower_bulwark_outlier::OutlierConfig;

#[test]
fn missing_fields_take_the_defaults_and_rules_can_be_turned_off() {
    let config: OutlierConfig = serde_json::from_str("{}").unwrap();
    let detector = config.into_detector().unwrap();
    assert_eq!(detector.name(), "outlier");
    let off: OutlierConfig = serde_json::from_str(
        r#"{ "success_rate": { "enabled": false }, "failure_percentage": { "enabled": false },
             "consecutive_failures": 0 }"#,
    )
    .unwrap();
    off.into_detector().unwrap();
}

#[test]
fn bad_values_and_unknown_fields_are_errors() {
    let unknown = serde_json::from_str::<OutlierConfig>(r#"{ "max_ejection_pct": 10 }"#);
    assert!(unknown.unwrap_err().to_string().contains("unknown field"));
    let cases = [
        (r#"{ "max_ejection_percent": 101 }"#, "max_ejection_percent"),
        (r#"{ "interval_ms": 0 }"#, "interval"),
        (r#"{ "base_ejection_time_ms": 0 }"#, "base_ejection_time"),
        (
            r#"{ "base_ejection_time_ms": 10, "max_ejection_time_ms": 5 }"#,
            "max_ejection_time",
        ),
        (
            r#"{ "success_rate": { "stdev_factor": -1.0 } }"#,
            "success_rate_stdev_factor",
        ),
        (
            r#"{ "success_rate": { "minimum_hosts": 0 } }"#,
            "success_rate_minimum_hosts",
        ),
        (
            r#"{ "failure_percentage": { "threshold": 85 } }"#,
            "failure_percentage_threshold",
        ),
        (
            r#"{ "failure_percentage": { "request_volume": 0 } }"#,
            "failure_percentage_request_volume",
        ),
    ];
    for (json, field) in cases {
        let config: OutlierConfig = serde_json::from_str(json).unwrap();
        assert_eq!(config.into_detector().unwrap_err().field(), field, "{json}");
    }
}
