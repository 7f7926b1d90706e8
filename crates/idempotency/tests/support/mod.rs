//! Shared helpers of the idempotency crate's integration tests.
#![allow(dead_code, unreachable_pub)]

pub mod redis;
