//! [`RedisStore`]: keys in Redis, shared by every replica behind a load balancer.

use std::sync::{Arc, LazyLock};
use std::time::Duration;

use redis::{Client, FromRedisValue, IntoConnectionInfo, Script, ScriptInvocation};
use tower_bulwark_core::redis::{RedisConnection, RedisFailure};

use crate::record::running_tag;
use crate::store::{Claimed, Store, StoreError, StoreFuture};
use crate::{Fingerprint, Record, RecordState, StoreKey, Token};

/// The prefix of every key a [`RedisStore`] writes, unless another is chosen.
const DEFAULT_PREFIX: &str = "bulwark:idempotency:";

/// How long one operation may take, unless another limit is chosen.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(1);

/// The longest expiry sent to Redis, in milliseconds: Redis refuses an expiry time that
/// overflows a signed 64-bit count of milliseconds, so longer durations are capped here
/// (about 146 million years).
const MAX_PX: u64 = 1 << 62;

/// Returns what is recorded under the key, or records the running claim and returns nil.
const CLAIM: &str = r"
local current = redis.call('GET', KEYS[1])
if current then
    return current
end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return false
";

/// Writes the record if the key still holds the claim whose encoding starts with ARGV[1],
/// or holds nothing (the claim's lease ended and nobody took the key over).
const COMPLETE: &str = r"
local current = redis.call('GET', KEYS[1])
if not current or string.sub(current, 1, #ARGV[1]) == ARGV[1] then
    redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
    return 1
end
return 0
";

/// Deletes the record if it is still the claim whose encoding starts with ARGV[1].
const RELEASE: &str = r"
local current = redis.call('GET', KEYS[1])
if current and string.sub(current, 1, #ARGV[1]) == ARGV[1] then
    redis.call('DEL', KEYS[1])
    return 1
end
return 0
";

// Hashed once per process; sent with `EVALSHA`, and loaded again by the `redis` crate when
// the server answers `NOSCRIPT` (after a restart).
static CLAIM_SCRIPT: LazyLock<Script> = LazyLock::new(|| Script::new(CLAIM));
static COMPLETE_SCRIPT: LazyLock<Script> = LazyLock::new(|| Script::new(COMPLETE));
static RELEASE_SCRIPT: LazyLock<Script> = LazyLock::new(|| Script::new(RELEASE));

/// Keys kept in Redis (feature `redis`), so that every replica behind a load balancer sees
/// the same claims and answers.
///
/// - **Atomic.** Each operation is one Lua script, run by Redis as one step: a claim reads
///   the key and, if it is free, writes the running claim; a completion or release first
///   checks that the claim is still the caller's (its [`Token`]), so a first execution
///   whose lease ran out cannot overwrite the execution that took the key over.
/// - **Expiry is Redis's clock.** Leases and TTLs are set with `PX` (milliseconds, rounded
///   up, at least one), and Redis expires the key.
/// - **Redis down or slow.** Every operation answers within the
///   [`timeout`](RedisStoreBuilder::timeout) (default 1 s): an error if Redis did not
///   answer, and the layer's [`OnStoreError`](crate::OnStoreError) decides. An operation
///   that timed out may still have happened: a claim that did holds its key until the
///   lease ends. While Redis refuses connections, operations fail at once. The
///   connection (core's [`RedisConnection`]) reconnects by itself when an operation finds
///   it lost (that operation fails), so a restarted Redis is used again without building a
///   new store.
/// - **Persistence is Redis's.** A Redis without persistence forgets every key when it
///   restarts: a request repeated after that runs again.
///
/// Keys are the [prefix](RedisStoreBuilder::prefix) (default `"bulwark:idempotency:"`)
/// followed by [`StoreKey::to_hex`]; values are [`Record::encode`] bytes, and a value
/// that does not decode is answered with an error.
///
/// Cloning is cheap and shares the connection.
///
/// ```no_run
/// use std::time::Duration;
/// use tower_bulwark_idempotency::RedisStore;
///
/// # async fn run() -> Result<(), tower_bulwark_idempotency::StoreError> {
/// // Defaults: prefix "bulwark:idempotency:", one second per operation.
/// let store = RedisStore::connect("redis://127.0.0.1:6379").await?;
///
/// // Or chosen:
/// let client = redis::Client::open("redis://127.0.0.1:6379").map_err(
///     tower_bulwark_idempotency::StoreError::new,
/// )?;
/// let store = RedisStore::builder(client)
///     .prefix("payments:idempotency:")
///     .timeout(Duration::from_millis(250))
///     .connect()
///     .await?;
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct RedisStore {
    connection: RedisConnection,
    prefix: Arc<str>,
}

/// Chooses a [`RedisStore`]'s options, then connects; made by [`RedisStore::builder`].
#[derive(Debug)]
pub struct RedisStoreBuilder {
    client: Client,
    prefix: String,
    timeout: Duration,
}

impl RedisStore {
    /// Connects to the Redis at `url` (e.g. `"redis://127.0.0.1:6379"`) with the default
    /// options. Fails if the URL is invalid or Redis does not answer within the default
    /// timeout.
    pub async fn connect(url: impl IntoConnectionInfo) -> Result<RedisStore, StoreError> {
        let client = Client::open(url).map_err(StoreError::new)?;
        RedisStore::builder(client).connect().await
    }

    /// A builder connecting through `client`, with the default options.
    pub fn builder(client: Client) -> RedisStoreBuilder {
        RedisStoreBuilder {
            client,
            prefix: DEFAULT_PREFIX.to_owned(),
            timeout: DEFAULT_TIMEOUT,
        }
    }

    /// The Redis key where `key` is kept.
    fn redis_key(&self, key: StoreKey) -> String {
        let mut out = String::with_capacity(self.prefix.len() + 64);
        out.push_str(&self.prefix);
        out.push_str(&key.to_hex());
        out
    }

    /// Runs a script, bounded by the timeout.
    async fn run<T: FromRedisValue>(
        &self,
        invocation: ScriptInvocation<'static>,
    ) -> Result<T, StoreError> {
        self.connection.invoke(&invocation).await.map_err(failed)
    }
}

impl RedisStoreBuilder {
    /// The text put before every key (default `"bulwark:idempotency:"`), to keep the
    /// store's keys apart from others in the same Redis database. May be empty.
    pub fn prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }

    /// How long one operation may take (default 1 s), connecting included: past it the
    /// operation answers an error. Must be more than zero.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Connects. Fails if an option is invalid (the error's
    /// [`source`](std::error::Error::source) is a
    /// [`ConfigError`](tower_bulwark_core::ConfigError) naming it) or Redis does not answer
    /// within the timeout.
    pub async fn connect(self) -> Result<RedisStore, StoreError> {
        let connection = RedisConnection::connect(self.client, self.timeout)
            .await
            .map_err(failed)?;
        Ok(RedisStore {
            connection,
            prefix: self.prefix.into(),
        })
    }
}

/// A Redis failure as a store error; a bad option as the [`ConfigError`] itself, so the
/// store error's `source()` names the field.
///
/// [`ConfigError`]: tower_bulwark_core::ConfigError
fn failed(failure: RedisFailure) -> StoreError {
    match failure {
        RedisFailure::Config(e) => StoreError::new(e),
        other => StoreError::new(other),
    }
}

/// Milliseconds for `PX`: rounded up, since Redis refuses zero, and capped at [`MAX_PX`].
fn px(duration: Duration) -> u64 {
    let millis = duration.as_nanos().div_ceil(1_000_000);
    u64::try_from(millis).unwrap_or(MAX_PX).clamp(1, MAX_PX)
}

impl Store for RedisStore {
    fn claim(
        &self,
        key: StoreKey,
        fingerprint: Fingerprint,
        token: Token,
        lease: Duration,
    ) -> StoreFuture<'_, Claimed> {
        let running = Record {
            fingerprint,
            state: RecordState::Running(token),
        };
        let mut invocation = CLAIM_SCRIPT.prepare_invoke();
        invocation
            .key(self.redis_key(key))
            .arg(&running.encode()[..])
            .arg(px(lease));
        Box::pin(async move {
            match self.run::<Option<Vec<u8>>>(invocation).await? {
                None => Ok(Claimed::New),
                Some(bytes) => Record::decode(&bytes)
                    .map(Claimed::Existing)
                    .map_err(StoreError::new),
            }
        })
    }

    fn complete(
        &self,
        key: StoreKey,
        token: Token,
        record: Record,
        ttl: Duration,
    ) -> StoreFuture<'_, bool> {
        let mut invocation = COMPLETE_SCRIPT.prepare_invoke();
        invocation
            .key(self.redis_key(key))
            .arg(&running_tag(token)[..])
            .arg(&record.encode()[..])
            .arg(px(ttl));
        Box::pin(self.run(invocation))
    }

    fn release(&self, key: StoreKey, token: Token) -> StoreFuture<'_, bool> {
        let mut invocation = RELEASE_SCRIPT.prepare_invoke();
        invocation
            .key(self.redis_key(key))
            .arg(&running_tag(token)[..]);
        Box::pin(self.run(invocation))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expiry_is_whole_milliseconds_rounded_up_at_least_one_and_capped() {
        assert_eq!(px(Duration::ZERO), 1);
        assert_eq!(px(Duration::from_nanos(1)), 1);
        assert_eq!(px(Duration::from_millis(1)), 1);
        assert_eq!(px(Duration::from_micros(1_001)), 2);
        assert_eq!(px(Duration::from_millis(250)), 250);
        assert_eq!(px(Duration::from_secs(86_400)), 86_400_000);
        assert_eq!(px(Duration::MAX), MAX_PX);
    }
}
