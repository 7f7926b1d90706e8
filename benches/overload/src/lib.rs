//! The parts of the real-socket overload harness (`benches/overload.rs`, which says what it
//! measures and how to run it): one responsibility per module.
//!
//! - [`shape`]: the backends (workers x service time, IO-bound or CPU-bound);
//! - [`guard`]: what stands in front of them (nothing, tower's static limit, ours);
//! - [`server`], [`grpc`]: serving them on loopback (axum over HTTP/1.1 and HTTP/2, tonic);
//! - [`client`], [`load`]: the clients and the open-loop generator;
//! - [`cell`]: one guard at one load, on fresh runtimes;
//! - [`stats`], [`report`]: the numbers, the goal, the markdown tables;
//! - [`args`]: the command line.

#![forbid(unsafe_code)]

pub mod args;
pub mod cell;
pub mod client;
pub mod grpc;
pub mod guard;
pub mod load;
pub mod report;
pub mod server;
pub mod shape;
pub mod stats;
