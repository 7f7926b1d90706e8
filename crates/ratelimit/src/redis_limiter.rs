//! [`RedisLimiter`]: the same GCRA as the local limiter, kept in Redis so that every
//! replica draws from one limit (feature `redis`).

use std::fmt;
use std::future::Future;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::{Arc, LazyLock};
use std::time::Duration;

use redis::Script;
use tower_bulwark_core::redis::RedisConnection;
use tower_bulwark_core::ConfigError;

use crate::{Decision, LimitError, Limiter, Quota};

/// The longest a key's state may run ahead of now (one interval per permit of the burst),
/// in nanoseconds: about 104 days. Up to it every number the script computes is an
/// integer that Lua's numbers (doubles) hold exactly.
const MAX_AHEAD_NANOS: u64 = 1 << 53;

/// One permit, GCRA as in governor, on Redis's clock (`TIME`, microseconds since the
/// Unix epoch). KEYS[1] holds the theoretical arrival time (TAT) in nanoseconds since the
/// epoch, as digits; ARGV[1] is the emission interval T and ARGV[2] the burst tolerance
/// tau = T * (burst - 1), in nanoseconds. A request may go when TAT - tau <= now; it
/// moves TAT to max(TAT, now) + T. The arithmetic is on `ahead` = TAT - now, which a
/// valid state keeps within T + tau < 2^53: exact in doubles, where absolute times in
/// nanoseconds would not be. Answers {allowed, remaining, reset ms, retry-after ms},
/// both rounded up so that waiting that long is always enough. The key expires when its
/// TAT passes: from then on it would mean the whole burst is free, as no key does.
const GCRA: &str = r"
local interval = tonumber(ARGV[1])
local tolerance = tonumber(ARGV[2])
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000000 + tonumber(time[2])
local ahead = 0
local stored = redis.call('GET', KEYS[1])
if stored then
    if not string.match(stored, '^%d+$') then
        return redis.error_reply('ERR bulwark rate limit: the value under the key is not a time')
    end
    local micros = tonumber(string.sub(stored, 1, -4)) or 0
    local nanos = tonumber(string.sub(stored, -3))
    -- Further ahead than this quota allows (a larger quota wrote it): the whole burst
    -- is used. Compared in microseconds first, where a value far off still compares.
    if micros - now > (interval + tolerance) / 1000 then
        ahead = interval + tolerance
    elseif micros >= now then
        ahead = math.min((micros - now) * 1000 + nanos, interval + tolerance)
    end
end
if ahead > tolerance then
    return {0, 0, math.ceil(ahead / 1000000), math.ceil((ahead - tolerance) / 1000000)}
end
ahead = ahead + interval
local reset = math.ceil(ahead / 1000000)
local tat = string.format('%d%03d', now + math.floor(ahead / 1000), ahead % 1000)
redis.call('SET', KEYS[1], tat, 'PX', string.format('%d', reset))
return {1, math.floor((interval + tolerance - ahead) / interval), reset, 0}
";

// Hashed once per process; sent with `EVALSHA`, and loaded again when Redis answers
// `NOSCRIPT` (after a restart).
static GCRA_SCRIPT: LazyLock<Script> = LazyLock::new(|| Script::new(GCRA));

/// A key's byte form: what [`RedisLimiter`] puts after its prefix to name the key in
/// Redis. Two keys that should share a limit write the same bytes; keys that should not,
/// different ones.
///
/// ```
/// use tower_bulwark_ratelimit::RedisKey;
///
/// struct Tenant(u32);
///
/// impl RedisKey for Tenant {
///     fn write_bytes(&self, out: &mut Vec<u8>) {
///         out.extend_from_slice(&self.0.to_be_bytes());
///     }
/// }
/// ```
pub trait RedisKey {
    /// Appends the key's bytes to `out`.
    fn write_bytes(&self, out: &mut Vec<u8>);
}

impl RedisKey for str {
    fn write_bytes(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(self.as_bytes());
    }
}

impl RedisKey for String {
    fn write_bytes(&self, out: &mut Vec<u8>) {
        self.as_str().write_bytes(out);
    }
}

impl<T: RedisKey + ?Sized> RedisKey for &T {
    fn write_bytes(&self, out: &mut Vec<u8>) {
        (**self).write_bytes(out);
    }
}

impl RedisKey for Vec<u8> {
    fn write_bytes(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(self);
    }
}

impl RedisKey for u64 {
    fn write_bytes(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.to_be_bytes());
    }
}

impl RedisKey for IpAddr {
    /// The address's octets: 4 for IPv4, 16 for IPv6.
    fn write_bytes(&self, out: &mut Vec<u8>) {
        match self {
            IpAddr::V4(ip) => out.extend_from_slice(&ip.octets()),
            IpAddr::V6(ip) => out.extend_from_slice(&ip.octets()),
        }
    }
}

/// One global key: every request shares the limit.
impl RedisKey for () {
    fn write_bytes(&self, _: &mut Vec<u8>) {}
}

/// A rate limit kept in Redis (feature `redis`): every replica that uses the same Redis,
/// prefix and key draws from one limit.
///
/// - **The same GCRA as [`LocalLimiter`](crate::LocalLimiter)** (governor's): each key
///   has a theoretical arrival time; a permit comes back every
///   [`interval`](Quota::interval), at most [`burst`](Quota::burst_size) at once.
/// - **Atomic, on Redis's clock.** Each [`acquire`](Limiter::acquire) is one Lua script,
///   which reads the time with Redis's `TIME`: replicas whose clocks disagree still
///   agree on the limit. Its clock counts microseconds; the state is kept in nanoseconds,
///   like governor's, so the interval is exact.
/// - **Idle keys vanish.** A key expires (`PX`) when its burst is whole again, which is
///   what a missing key means.
/// - **Redis down or slow.** Each acquire answers within the connection's
///   [timeout](RedisConnection::timeout): a [`LimitError`] if Redis did not answer (the
///   permit may still have been taken) or answered an error, as it does for a value
///   under the key that is not a time. The layer's failure policy decides what the
///   request gets. A restarted Redis is used again by itself.
/// - **Changing the quota.** A state written by a larger quota counts as the whole burst
///   used, so a smaller quota takes effect at once.
///
/// Keys in Redis are the prefix (default `bulwark:ratelimit:<length>:<policy name>:`,
/// such as `bulwark:ratelimit:3:api:`: the name's length in bytes keeps quotas with
/// different names apart whatever their names and keys hold, `:` included) followed by
/// the key's [`RedisKey`] bytes; the value is the theoretical arrival time in nanoseconds
/// since the Unix epoch, as decimal digits.
///
/// One limiter answers for any key type that has a byte form; clones share the
/// connection, and so do limiters (and idempotency stores) built on clones of one
/// [`RedisConnection`]. Each acquire is one round trip to Redis and allocates (the
/// command, its future).
///
/// ```no_run
/// use std::time::Duration;
/// use tower_bulwark_core::redis::RedisConnection;
/// use tower_bulwark_ratelimit::{Limiter, Quota, RedisLimiter};
///
/// # async fn run() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
/// let redis = RedisConnection::open("redis://127.0.0.1:6379", Duration::from_millis(100)).await?;
/// let limiter = RedisLimiter::new(redis, Quota::per_second(100)?.burst(20)?)?;
/// let decision = limiter.acquire(&"tenant-42").await?;
/// if !decision.allowed {
///     println!("retry in {:?}", decision.retry_after);
/// }
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct RedisLimiter {
    connection: RedisConnection,
    quota: Quota,
    prefix: Arc<[u8]>,
    /// The emission interval T in nanoseconds.
    interval: u64,
    /// The burst tolerance tau = T * (burst - 1) in nanoseconds.
    tolerance: u64,
}

impl RedisLimiter {
    /// A limiter of `quota` through `connection`. Fails, naming `quota`, if its burst is
    /// worth more than about 104 days (`interval * burst` over 2^53 nanoseconds), which
    /// the script's numbers cannot hold exactly.
    pub fn new(connection: RedisConnection, quota: Quota) -> Result<RedisLimiter, ConfigError> {
        let interval = quota.interval().as_nanos();
        let ahead = interval * u128::from(quota.burst_size());
        match (u64::try_from(interval), u64::try_from(ahead)) {
            (Ok(interval), Ok(ahead)) if ahead <= MAX_AHEAD_NANOS => Ok(RedisLimiter {
                connection,
                prefix: default_prefix(&quota).into_bytes().into(),
                interval,
                tolerance: ahead - interval,
                quota,
            }),
            _ => Err(ConfigError::new(
                "quota",
                format!(
                    "a burst of {} every {:?} is worth more than 2^53 ns (about 104 days)",
                    quota.burst_size(),
                    quota.interval()
                ),
            )),
        }
    }

    /// The bytes put before every key (default `bulwark:ratelimit:<length>:<policy
    /// name>:`), to keep the limiter's keys apart from others in the same Redis database.
    /// May be empty. Limiters that must not share states need prefixes of which neither
    /// starts the other, or one key could be another's under a longer prefix.
    pub fn prefix(mut self, prefix: impl AsRef<[u8]>) -> RedisLimiter {
        self.prefix = prefix.as_ref().into();
        self
    }
}

/// `bulwark:ratelimit:<length>:<name>:`: the length makes where the name ends plain, so
/// no name and key make the same bytes as another name and key.
fn default_prefix(quota: &Quota) -> String {
    let name = quota.policy_name();
    format!("bulwark:ratelimit:{}:{name}:", name.len())
}

impl fmt::Debug for RedisLimiter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisLimiter")
            .field("quota", &self.quota)
            .field("prefix", &String::from_utf8_lossy(&self.prefix))
            .field("timeout", &self.connection.timeout())
            .finish()
    }
}

/// The future of [`RedisLimiter::acquire`]: one round trip to Redis.
pub type RedisAcquire = Pin<Box<dyn Future<Output = Result<Decision, LimitError>> + Send>>;

impl<K: RedisKey> Limiter<K> for RedisLimiter {
    type Future = RedisAcquire;

    fn acquire(&self, key: &K) -> RedisAcquire {
        let mut redis_key = Vec::with_capacity(self.prefix.len() + 32);
        redis_key.extend_from_slice(&self.prefix);
        key.write_bytes(&mut redis_key);
        let mut invocation = GCRA_SCRIPT.prepare_invoke();
        invocation
            .key(redis_key)
            .arg(self.interval)
            .arg(self.tolerance);
        let connection = self.connection.clone();
        Box::pin(async move {
            let answer = connection
                .invoke(&invocation)
                .await
                .map_err(LimitError::new)?;
            decision(answer)
        })
    }

    fn quota(&self) -> &Quota {
        &self.quota
    }
}

/// The script's answer as a [`Decision`]; anything the script cannot answer is an error.
fn decision(
    (allowed, remaining, reset, retry_after): (i64, i64, i64, i64),
) -> Result<Decision, LimitError> {
    let millis = |ms: i64| u64::try_from(ms).ok().map(Duration::from_millis);
    match (
        allowed,
        u32::try_from(remaining),
        millis(reset),
        millis(retry_after),
    ) {
        (0 | 1, Ok(remaining), Some(reset), Some(retry_after)) => Ok(Decision {
            allowed: allowed == 1,
            remaining,
            reset,
            retry_after,
        }),
        _ => Err(LimitError::new(format!(
            "Redis answered {allowed}, {remaining}, {reset}, {retry_after}: not a rate limit decision"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_answers_the_script_can_give_are_decisions() {
        let allowed = decision((1, 4, 10, 0)).unwrap();
        assert_eq!(
            allowed,
            Decision {
                allowed: true,
                remaining: 4,
                reset: Duration::from_millis(10),
                retry_after: Duration::ZERO,
            }
        );
        assert!(!decision((0, 0, 20, 10)).unwrap().allowed);
        for bad in [
            (2, 0, 0, 0),
            (-1, 0, 0, 0),
            (1, -1, 0, 0),
            (1, i64::from(u32::MAX) + 1, 0, 0),
            (1, 0, -1, 0),
            (0, 0, 0, i64::MIN),
        ] {
            assert!(decision(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn default_prefixes_say_where_the_name_ends() {
        let named = |name: &'static str| default_prefix(&Quota::per_second(1).unwrap().name(name));
        assert_eq!(named("api"), "bulwark:ratelimit:3:api:");
        assert_eq!(named("api:orders"), "bulwark:ratelimit:10:api:orders:");
        // `api` + `orders:t1` and `api:orders` + `t1`: two keys.
        assert_ne!(named("api") + "orders:t1", named("api:orders") + "t1");
    }

    #[test]
    fn key_bytes() {
        let mut out = b"p:".to_vec();
        "a".write_bytes(&mut out);
        7u64.write_bytes(&mut out);
        IpAddr::from([10, 0, 0, 1]).write_bytes(&mut out);
        ().write_bytes(&mut out);
        assert_eq!(out, b"p:a\0\0\0\0\0\0\0\x07\x0a\0\0\x01");
    }
}
