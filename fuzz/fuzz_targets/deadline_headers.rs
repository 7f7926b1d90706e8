//! Every deadline header parser on arbitrary bytes: never a panic, and a parsed
//! `grpc-timeout` re-encodes to a value that parses to at most the same duration.
#![no_main]

use std::time::Duration;

use http::{HeaderMap, HeaderValue};
use libfuzzer_sys::fuzz_target;
use tower_bulwark_deadline::{encode_grpc_timeout, parse_grpc_timeout, DeadlineHeader};

fuzz_target!(|data: &[u8]| {
    if let Ok(timeout) = parse_grpc_timeout(data) {
        let encoded = encode_grpc_timeout(timeout);
        let again = parse_grpc_timeout(encoded.as_bytes()).expect("our encoding parses");
        assert!(again <= timeout);
    }
    let Ok(value) = HeaderValue::from_bytes(data) else {
        return;
    };
    let sources = [
        DeadlineHeader::GrpcTimeout,
        DeadlineHeader::timeout_ms(),
        DeadlineHeader::absolute_ms(Duration::from_secs(1)),
        DeadlineHeader::EnvoyExpectedTimeout,
    ];
    let mut headers = HeaderMap::new();
    for source in &sources {
        headers.insert(
            http::HeaderName::from_bytes(source.name().as_bytes()).expect("valid name"),
            value.clone(),
        );
    }
    for source in &sources {
        let _ = source.read(&headers);
    }
});
