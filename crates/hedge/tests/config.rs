//! Every setting is validated; the error names the field.

use std::time::Duration;

use tower_bulwark_hedge::{HedgeBuilder, HedgeLayer};

fn field(builder: HedgeBuilder) -> &'static str {
    builder.build().unwrap_err().field()
}

#[tokio::test(start_paused = true)]
async fn bad_settings_name_their_field() {
    let ms = Duration::from_millis;
    let b = HedgeLayer::builder;
    assert_eq!(field(b()), "delay", "a delay or a percentile is needed");
    assert_eq!(field(b().delay(Duration::ZERO)), "delay");
    for p in [0.0, 1.0, -0.5, 1.5, f64::NAN, f64::INFINITY] {
        assert_eq!(field(b().percentile(p)), "percentile", "{p}");
    }
    assert_eq!(
        field(b().percentile(0.9).min_delay(Duration::ZERO)),
        "min_delay"
    );
    assert_eq!(
        field(b().percentile(0.9).min_delay(ms(10)).max_delay(ms(9))),
        "max_delay"
    );
    assert_eq!(field(b().percentile(0.9).min_samples(0)), "min_samples");
    assert_eq!(field(b().percentile(0.9).window(ms(999))), "window");
    assert_eq!(
        field(b().percentile(0.9).window(Duration::from_secs(601))),
        "window"
    );
    assert_eq!(field(b().delay(ms(1)).max_hedges(0)), "max_hedges");
    assert_eq!(field(b().delay(ms(1)).max_hedges(9)), "max_hedges");
    for r in [-0.1, 1.1, f64::NAN] {
        assert_eq!(field(b().delay(ms(1)).budget_ratio(r)), "budget_ratio");
    }
    assert_eq!(
        field(b().delay(ms(1)).budget_window(ms(999))),
        "budget_window"
    );
    assert_eq!(
        field(b().delay(ms(1)).budget_window(Duration::from_secs(61))),
        "budget_window"
    );
    assert_eq!(field(b().delay(ms(1)).pause(Duration::ZERO)), "pause");
    assert_eq!(
        field(b().delay(ms(1)).pause(Duration::from_secs(61))),
        "pause"
    );
    let message = b()
        .delay(ms(1))
        .max_hedges(9)
        .build()
        .unwrap_err()
        .to_string();
    assert_eq!(message, "invalid `max_hedges`: must be within 1..=8, got 9");
    // The extremes that are allowed.
    let fine = b()
        .delay(Duration::from_secs(3600))
        .percentile(0.999)
        .min_delay(Duration::from_nanos(1))
        .max_delay(Duration::MAX)
        .min_samples(u64::MAX)
        .max_hedges(8)
        .budget_ratio(0.0)
        .min_per_sec(u32::MAX)
        .budget_window(Duration::from_secs(60))
        .pause(Duration::from_secs(60))
        .deadline_margin(Duration::MAX)
        .name(String::from("edge"))
        .build()
        .unwrap();
    assert_eq!(fine.handle().name(), "edge");
    assert_eq!(
        fine.handle().snapshot().delay,
        Duration::from_secs(3600),
        "the warm-up delay"
    );
    // A delay too long to add to the clock: never due, no panic.
    use tower::{Layer, ServiceExt};
    let forever = b().delay(Duration::MAX).build().unwrap();
    let service = forever.layer(tower::service_fn(|_: http::Request<()>| async {
        Ok::<_, std::io::Error>(http::Response::new(()))
    }));
    service.oneshot(http::Request::new(())).await.unwrap();
    assert_eq!(forever.handle().snapshot().sent, 0);
}

#[cfg(feature = "serde")]
#[tokio::test(start_paused = true)]
async fn config_files_name_their_keys() {
    use tower_bulwark_hedge::HedgeConfig;
    let parse = |json: &str| serde_json::from_str::<HedgeConfig>(json);
    let error = parse(r#"{"percentile": 0.9, "max_delay_ms": 0}"#)
        .unwrap()
        .into_layer()
        .unwrap_err();
    assert_eq!(error.path(), Some("max_delay_ms"));
    let error = parse(r#"{"delay_ms": 0}"#)
        .unwrap()
        .into_layer()
        .unwrap_err();
    assert_eq!(error.path(), Some("delay_ms"));
    assert_eq!(error.field(), "delay");
    assert!(
        parse(r#"{"delay": 5}"#).is_err(),
        "unknown keys are refused"
    );
    let layer = parse(r#"{"delay_ms": 5, "max_hedges": 2}"#)
        .unwrap()
        .into_layer()
        .unwrap();
    assert_eq!(layer.handle().snapshot().delay, Duration::from_millis(5));
}
