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

#[test]
fn the_slow_endpoint_section_turns_the_rule_on_and_is_checked() {
    let config: OutlierConfig = serde_json::from_str(
        r#"{ "slow_endpoint": { "minimum_hosts": 4, "request_volume": 20, "factor": 3.0,
                                "minimum_excess_ms": 10 } }"#,
    )
    .unwrap();
    let rule = config.slow_endpoint.clone().unwrap();
    assert_eq!(
        (
            rule.enabled,
            rule.minimum_hosts,
            rule.request_volume,
            rule.factor,
            rule.minimum_excess_ms
        ),
        (None, Some(4), Some(20), Some(3.0), Some(10))
    );
    config.into_detector().unwrap();
    let off: OutlierConfig =
        serde_json::from_str(r#"{ "slow_endpoint": { "enabled": false, "factor": 0.5 } }"#)
            .unwrap();
    off.into_detector()
        .expect("a rule turned off is not checked");
    let unknown =
        serde_json::from_str::<OutlierConfig>(r#"{ "slow_endpoint": { "minimum_excess": 10 } }"#);
    assert!(unknown.unwrap_err().to_string().contains("unknown field"));
    for (json, field) in [
        (
            r#"{ "slow_endpoint": { "factor": 1.0 } }"#,
            "slow_endpoint_factor",
        ),
        (
            r#"{ "slow_endpoint": { "minimum_hosts": 0 } }"#,
            "slow_endpoint_minimum_hosts",
        ),
        (
            r#"{ "slow_endpoint": { "request_volume": 0 } }"#,
            "slow_endpoint_request_volume",
        ),
    ] {
        let config: OutlierConfig = serde_json::from_str(json).unwrap();
        assert_eq!(config.into_detector().unwrap_err().field(), field, "{json}");
    }
}
