//! The parts of the real-socket overload harness (`benches/overload.rs`, which says what it
//! measures and how to run it) and of the end-to-end bench (`benches/e2e.rs`): one
//! responsibility per module.
//!
//! - [`shape`]: the backends (workers x service time, IO-bound or CPU-bound);
//! - [`guard`]: what stands in front of them (nothing, tower's static limit, ours);
//! - [`server`], [`grpc`]: serving them on loopback (axum over HTTP/1.1 and HTTP/2, tonic);
//! - [`client`], [`load`]: the clients and the open-loop generator;
//! - [`cell`]: one guard at one load, on fresh runtimes;
//! - [`stats`], [`report`]: the numbers, the goal, the markdown tables;
//! - [`args`]: the command line.
//!
//! The end-to-end bench adds:
//!
//! - [`variant`]: a hello-world handler bare, behind the presets and behind tower's peers;
//! - [`closed`]: the closed-loop load generator;
//! - [`pinned`], [`cores`]: one run, server and generator on threads pinned to different
//!   cores, and each thread's CPU time;
//! - [`compare`]: medians and spreads over the runs, costs against bare, the table.

#![forbid(unsafe_code)]

pub mod args;
pub mod cell;
pub mod client;
pub mod closed;
pub mod compare;
pub mod cores;
pub mod grpc;
pub mod guard;
pub mod load;
pub mod pinned;
pub mod report;
pub mod server;
pub mod shape;
pub mod stats;
pub mod variant;
