//! Runnable examples of tower-bulwark: `cargo run --example <name>` from the workspace root.
//!
//! - `criticality_shedding`: an axum server that sheds `sheddable` requests with a
//!   `Retry-After`, turning the rejection into a response with `HandleRejectionsLayer`.
//! - `breaker_http_client`: an HTTP client with a circuit breaker against a local server
//!   that breaks for two seconds, printing the state changes.
#![forbid(unsafe_code)]
