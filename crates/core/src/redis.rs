//! [`RedisConnection`]: how the suite's Redis-backed parts (the idempotency store, the
//! fleet-wide rate limiter) reach Redis (feature `redis`).
//!
//! One setup for all of them, so they fail and recover alike: every operation answers
//! within one timeout, a down Redis fails operations at once (no retries, no backoff), and
//! a restarted Redis is used again without building anything new.

use std::fmt;
use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{Client, FromRedisValue, IntoConnectionInfo, RedisError, ScriptInvocation};

use crate::config::non_zero_duration;
use crate::ConfigError;

/// A connection to Redis whose operations each answer within a timeout.
///
/// - **Bounded.** [`invoke`](Self::invoke) answers within the timeout, round trips to load
///   a script included; past it, [`RedisFailure::TimedOut`]. An operation that timed out
///   may still have happened.
/// - **Fail fast, recover by itself.** A lost connection is replaced by one attempt
///   (bounded by the timeout), made when an operation finds it lost and shared by the
///   operations meanwhile: while Redis refuses connections each operation fails at once,
///   rather than after a backoff, and the first attempt after a restart reaches it. The
///   operation that finds the connection lost fails.
///
/// Cloning is cheap and shares the connection (a [`ConnectionManager`], multiplexed).
///
/// ```no_run
/// use std::time::Duration;
/// use redis::Script;
/// use tower_bulwark_core::redis::{RedisConnection, RedisFailure};
///
/// # async fn run() -> Result<(), RedisFailure> {
/// let redis = RedisConnection::open("redis://127.0.0.1:6379", Duration::from_millis(250)).await?;
/// let script = Script::new("return redis.call('INCR', KEYS[1])");
/// let visits: i64 = redis.invoke(&script.key("visits")).await?;
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct RedisConnection {
    manager: ConnectionManager,
    timeout: Duration,
}

impl RedisConnection {
    /// Connects to the Redis at `url` (e.g. `"redis://127.0.0.1:6379"`); see
    /// [`connect`](Self::connect).
    pub async fn open(
        url: impl IntoConnectionInfo,
        timeout: Duration,
    ) -> Result<RedisConnection, RedisFailure> {
        let client = Client::open(url).map_err(RedisFailure::Redis)?;
        RedisConnection::connect(client, timeout).await
    }

    /// Connects through `client`; every operation will answer within `timeout`. Fails if
    /// `timeout` is zero ([`RedisFailure::Config`] naming `timeout`) or Redis does not
    /// answer within it.
    pub async fn connect(
        client: Client,
        timeout: Duration,
    ) -> Result<RedisConnection, RedisFailure> {
        let timeout = non_zero_duration("timeout", timeout).map_err(RedisFailure::Config)?;
        // No response timeout of its own: `invoke` bounds every operation. No retries: a
        // lost connection is replaced by one attempt, when an operation finds it lost.
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(timeout))
            .set_response_timeout(None)
            .set_number_of_retries(0);
        let connect = ConnectionManager::new_with_config(client, config);
        let manager = match tokio::time::timeout(timeout, connect).await {
            Ok(manager) => manager.map_err(|e| RedisFailure::from_redis(e, timeout))?,
            Err(_) => return Err(RedisFailure::TimedOut(timeout)),
        };
        Ok(RedisConnection { manager, timeout })
    }

    /// How long one operation may take.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// Runs a script (`EVALSHA`; if Redis answers `NOSCRIPT`, as after a restart, loads it
    /// and runs it again), all within the timeout.
    pub async fn invoke<T: FromRedisValue>(
        &self,
        invocation: &ScriptInvocation<'_>,
    ) -> Result<T, RedisFailure> {
        let mut manager = self.manager.clone();
        let call = invocation.invoke_async(&mut manager);
        match tokio::time::timeout(self.timeout, call).await {
            Ok(answer) => answer.map_err(|e| RedisFailure::from_redis(e, self.timeout)),
            Err(_) => Err(RedisFailure::TimedOut(self.timeout)),
        }
    }
}

/// Why a [`RedisConnection`] could not answer.
#[derive(Debug)]
#[non_exhaustive]
pub enum RedisFailure {
    /// An option was invalid (the error names it).
    Config(ConfigError),
    /// Redis did not answer within the timeout: the operation may still have happened.
    TimedOut(Duration),
    /// Redis could not be reached or answered an error (a script's error included).
    Redis(RedisError),
}

impl RedisFailure {
    /// Redis's own timeout (of a connection attempt, which is ours) reads like ours.
    fn from_redis(error: RedisError, timeout: Duration) -> RedisFailure {
        if error.is_timeout() {
            RedisFailure::TimedOut(timeout)
        } else {
            RedisFailure::Redis(error)
        }
    }
}

impl fmt::Display for RedisFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RedisFailure::Config(e) => write!(f, "{e}"),
            RedisFailure::TimedOut(after) => write!(f, "Redis did not answer within {after:?}"),
            RedisFailure::Redis(e) => write!(f, "Redis failed: {e}"),
        }
    }
}

impl std::error::Error for RedisFailure {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            RedisFailure::Config(e) => Some(e),
            RedisFailure::TimedOut(_) => None,
            RedisFailure::Redis(e) => Some(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::error::Error as _;

    #[tokio::test]
    async fn a_zero_timeout_is_refused_naming_the_field_before_connecting() {
        let failure = RedisConnection::open("redis://127.0.0.1:1", Duration::ZERO)
            .await
            .unwrap_err();
        let RedisFailure::Config(config) = &failure else {
            panic!("{failure:?}");
        };
        assert_eq!(config.field(), "timeout");
        assert!(failure.source().is_some());
    }

    #[tokio::test]
    async fn a_bad_url_is_a_redis_error() {
        let failure = RedisConnection::open("not a url", Duration::from_secs(1))
            .await
            .unwrap_err();
        assert!(matches!(failure, RedisFailure::Redis(_)), "{failure:?}");
    }

    #[test]
    fn a_timeout_says_how_long_was_waited() {
        let failure = RedisFailure::TimedOut(Duration::from_millis(300));
        assert_eq!(failure.to_string(), "Redis did not answer within 300ms");
        assert!(failure.source().is_none());
    }
}
