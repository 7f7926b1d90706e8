//! Test kit (feature `testing`): inner services that check and drive the layers above them.
//!
//! - [`ReadinessProbe`] wraps any service and panics when `call` comes without a successful
//!   `poll_ready`: the tower contract, checked.
//! - [`controlled`] returns an inner service and a [`Controller`] that decides, while the
//!   test runs, whether calls succeed, fail, reject, take time or hang, and whether the
//!   service is ready; it counts calls, completions and cancellations.
//! - [`Noop`] answers at once, the baseline of benches and allocation tests.
//! - [`mock`] re-exports `tower-test`'s mock service for tests that script every request by
//!   hand.
//! - `RedisServer` (with feature `redis`) runs a real `redis-server` on a free loopback port
//!   for the tests of Redis-backed stores.

mod controlled;
mod noop;
mod probe;
#[cfg(feature = "redis")]
mod redis_server;

pub use self::controlled::{
    controlled, Behavior, Controlled, ControlledFuture, Controller, TestError,
};
pub use self::noop::Noop;
pub use self::probe::ReadinessProbe;
#[cfg(feature = "redis")]
pub use self::redis_server::RedisServer;
pub use tower_test::mock;
