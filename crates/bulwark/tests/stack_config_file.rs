//! StackConfig against its file: every key, given a bad value, is reported at the file's
//! key (CONTRIBUTING.md, rule 6); huge values build or fail cleanly; empty sections are
//! the presets' own settings.
#![cfg(feature = "serde")]

use tower_bulwark::retry::GrpcRetry;
use tower_bulwark::StackConfig;

/// The path of the error for `json`, or `None` if it builds (HTTP server, then the client
/// `x`); checks that gRPC agrees.
fn path(json: &str) -> Option<String> {
    let config: StackConfig = serde_json::from_str(json).expect("parses");
    let http = config
        .http_server()
        .and_then(|_| config.http_client("x").map(|_| ()))
        .err()
        .map(|e| (e.path().map(str::to_string), e.to_string()));
    let grpc = config
        .grpc_server()
        .and_then(|_| config.grpc_client("x", GrpcRetry::new()).map(|_| ()))
        .err()
        .map(|e| (e.path().map(str::to_string), e.to_string()));
    assert_eq!(http, grpc, "{json}");
    http.map(|(path, message)| {
        eprintln!("{json}\n  -> {message}");
        path.expect("placed")
    })
}

fn server(section: &str) -> String {
    format!(r#"{{"server":{{{section}}}}}"#)
}

fn client(section: &str) -> String {
    format!(r#"{{"clients":{{"x":{{{section}}}}}}}"#)
}

#[test]
fn every_bad_value_is_placed_at_its_key() {
    let cases: Vec<(String, &str)> = vec![
        // Breaker.
        (
            client(r#""breaker":{"half_open_max_wait_ms":0}"#),
            "clients.x.breaker.half_open_max_wait_ms",
        ),
        (
            client(r#""breaker":{"recovery_ramp_ms":0}"#),
            "clients.x.breaker.recovery_ramp_ms",
        ),
        (
            client(r#""breaker":{"open":{"kind":"fixed","ms":0}}"#),
            "clients.x.breaker.open.ms",
        ),
        (
            client(r#""breaker":{"slow_call":{"threshold_ms":0,"rate":0.5}}"#),
            "clients.x.breaker.slow_call.threshold_ms",
        ),
        (
            client(r#""breaker":{"slow_call":{"threshold_ms":10,"rate":2}}"#),
            "clients.x.breaker.slow_call.rate",
        ),
        (
            client(r#""breaker":{"window":{"kind":"time","length_ms":1000,"buckets":0}}"#),
            "clients.x.breaker.window.buckets",
        ),
        (
            client(r#""breaker":{"failure_rate":2}"#),
            "clients.x.breaker.failure_rate",
        ),
        // Bulkhead.
        (
            client(r#""bulkhead":{"max_queue":5,"max_wait_ms":0}"#),
            "clients.x.bulkhead.max_wait_ms",
        ),
        // Shed.
        (
            server(r#""shed":{"algorithm":{"kind":"fixed","limit":0}}"#),
            "server.shed.algorithm.limit",
        ),
        (
            server(r#""shed":{"algorithm":{"kind":"aimd","min":50,"max":10}}"#),
            "server.shed.algorithm.max",
        ),
        (
            server(r#""shed":{"algorithm":{"kind":"aimd","timeout_ms":0}}"#),
            "server.shed.algorithm.timeout_ms",
        ),
        (
            server(r#""shed":{"algorithm":{"kind":"min_rtt","buffer":0}}"#),
            "server.shed.algorithm.buffer",
        ),
        (
            server(r#""shed":{"window_min_calls":0}"#),
            "server.shed.window_min_calls",
        ),
        (
            server(r#""shed":{"window_min_ms":600000}"#),
            "server.shed.window_min_ms",
        ),
        (
            server(
                r#""shed":{"tiers":{"sheddable":0,"sheddable_plus":1,"critical":1,"critical_plus":1}}"#,
            ),
            "server.shed.tiers.sheddable",
        ),
    ];
    let mut wrong = Vec::new();
    for (json, want) in &cases {
        let got = path(json);
        if got.as_deref() != Some(*want) {
            wrong.push(format!("{json}: want {want}, got {got:?}"));
        }
    }
    assert!(
        wrong.is_empty(),
        "{} wrong:\n{}",
        wrong.len(),
        wrong.join("\n")
    );
}

/// Values at the edge of their type: an error or a stack, never a panic.
#[tokio::test(start_paused = true)]
async fn huge_values_build_or_fail_cleanly() {
    let max = u64::MAX;
    for json in [
        server(&format!(
            r#""deadline":{{"max_ms":{max},"default_ms":{max},"headroom_ms":{max}}}"#
        )),
        client(&format!(
            r#""deadline":{{"margin_ms":{max},"min_budget_ms":{max},"default_ms":{max}}}"#
        )),
        client(&format!(
            r#""retry":{{"initial_backoff_ms":{max},"max_backoff_ms":{max},"max_attempts":4294967295,"budget_min_per_sec":4294967295,"budget_ratio":1000}}"#
        )),
        client(&format!(r#""attempt_timeout_ms":{max}"#)),
        client(&format!(
            r#""bulkhead":{{"max_queue":18446744073709551615,"max_wait_ms":{max}}}"#
        )),
        client(&format!(
            r#""breaker":{{"open":{{"kind":"fixed","ms":{max}}},"half_open_max_wait_ms":{max},"recovery_ramp_ms":{max}}}"#
        )),
    ] {
        let _ = path(&json);
    }
}

/// A preset built directly and through empty sections: the same settings (Debug output,
/// with seeds and start times blanked).
#[tokio::test(start_paused = true)]
async fn empty_sections_are_the_preset() {
    use tower_bulwark::presets::{ClientPreset, ServerPreset};
    let blank = |s: String| {
        // Random seeds differ from one build to the next.
        let s = s
            .split("SeededRng(")
            .enumerate()
            .map(|(i, part)| match i {
                0 => part.to_string(),
                _ => format!(
                    "SeededRng(_{}",
                    part.trim_start_matches(|c: char| c.is_ascii_digit())
                ),
            })
            .collect::<String>();
        let mut out = String::new();
        for part in s.split(", ") {
            let hidden = ["seed", "start", "seeds", "rng", "state", "s0", "s1"]
                .iter()
                .any(|k| part.trim_start().starts_with(&format!("{k}:")));
            out.push_str(if hidden { "_" } else { part });
            out.push_str(", ");
        }
        out
    };
    let config: StackConfig = serde_json::from_str(
        r#"{"server":{"deadline":{},"shed":{}},
            "clients":{"x":{"retry":{},"deadline":{},"breaker":{},"bulkhead":{}}}}"#,
    )
    .unwrap();
    let direct = blank(format!("{:?}", ClientPreset::http("x").unwrap()));
    let via = blank(format!("{:?}", config.http_client("x").unwrap()));
    // Only the mark that a StackConfig built it may differ.
    let via = via.replace("configured: true", "configured: false");
    assert_eq!(direct, via, "the client preset and its empty sections");
    let direct = blank(format!("{:?}", ServerPreset::http().unwrap()));
    let via = blank(format!("{:?}", config.http_server().unwrap()));
    let via = via.replace("configured: true", "configured: false");
    assert_eq!(direct, via, "the server preset and its empty sections");
}
