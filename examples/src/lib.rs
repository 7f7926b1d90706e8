//! Runnable examples of tower-bulwark: `cargo run --example <name>` from the workspace root.
//!
//! - `criticality_shedding`: an axum server that sheds `sheddable` requests with a
//!   `Retry-After`, turning the rejection into a response with `HandleRejectionsLayer`.
#![forbid(unsafe_code)]
