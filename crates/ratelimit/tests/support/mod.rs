//! Shared helpers of the rate limit crate's integration tests.
#![allow(dead_code, unreachable_pub)]

pub mod redis;
