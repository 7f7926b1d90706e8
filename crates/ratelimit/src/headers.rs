//! The IETF draft's rate limit headers (draft-ietf-httpapi-ratelimit-headers-09):
//! `RateLimit-Policy: "name";q=100;w=60` and `RateLimit: "name";r=42;t=17`.

use std::fmt::{self, Write};
use std::time::Duration;

use http::{HeaderName, HeaderValue};
use tower_bulwark_core::ConfigError;

use crate::{Decision, Quota};

/// `RateLimit-Policy`: the quotas that apply to the request.
pub const RATELIMIT_POLICY: HeaderName = HeaderName::from_static("ratelimit-policy");

/// `RateLimit`: what is left of each quota.
pub const RATELIMIT: HeaderName = HeaderName::from_static("ratelimit");

/// The longest policy name accepted, in bytes; a tier's quota may have [`TIER_SUFFIX`]
/// more. Five items (four tiers and the base) always fit [`StackText`].
const MAX_NAME_LEN: usize = 64;

/// Room for the suffix [`RateLimitLayer::local`](crate::RateLimitLayer::local) gives its
/// tiers' names: `-sheddable-plus`.
pub(crate) const TIER_SUFFIX: usize = "-sheddable-plus".len();

/// Checks that `quota`'s name can be written as a structured-field string: 1 to 64
/// printable ASCII characters, a tier's (`tier`) up to [`TIER_SUFFIX`] more.
pub(crate) fn check_name(quota: &Quota, tier: bool) -> Result<(), ConfigError> {
    let name = quota.policy_name();
    let max = MAX_NAME_LEN + if tier { TIER_SUFFIX } else { 0 };
    if name.is_empty() || name.len() > max || !name.bytes().all(|b| (0x20..=0x7e).contains(&b)) {
        return Err(ConfigError::new(
            "quota",
            format!(
                "policy name {name:?}: 1 to {max} printable ASCII characters, for the RateLimit headers"
            ),
        ));
    }
    Ok(())
}

/// Whole seconds, rounded up so a client that waits them is never early.
pub(crate) fn seconds(duration: Duration) -> u64 {
    duration
        .as_secs()
        .saturating_add(u64::from(duration.subsec_nanos() > 0))
}

/// Writes `"name"` as a structured-field string (the name is checked printable ASCII).
fn write_name(out: &mut impl Write, quota: &Quota) -> fmt::Result {
    out.write_char('"')?;
    for c in quota.policy_name().chars() {
        if c == '"' || c == '\\' {
            out.write_char('\\')?;
        }
        out.write_char(c)?;
    }
    out.write_char('"')
}

/// `RateLimit-Policy` for `quotas`, in order (made once per layer, shared after). The
/// window is written in whole seconds, rounded up, and the limit scaled to it (rounded
/// down, so a client that trusts it stays within the quota): 10 per 100 ms is
/// `q=100;w=1`.
pub(crate) fn policy<'a>(quotas: impl IntoIterator<Item = &'a Quota>) -> HeaderValue {
    let mut text = String::new();
    for (i, quota) in quotas.into_iter().enumerate() {
        if i > 0 {
            text.push_str(", ");
        }
        let _ = write_name(&mut text, quota);
        let window = seconds(quota.window());
        let _ = write!(text, ";q={};w={window}", scaled_limit(quota, window));
    }
    HeaderValue::from_str(&text).unwrap_or(HeaderValue::from_static(""))
}

/// `quota`'s limit over `window` seconds (at least its window): at least the limit.
fn scaled_limit(quota: &Quota, window: u64) -> u64 {
    let scaled = u128::from(quota.limit()) * u128::from(window) * 1_000_000_000
        / quota.window().as_nanos().max(1);
    u64::try_from(scaled).unwrap_or(u64::MAX)
}

/// `RateLimit` for each quota asked and its answer, in order: one allocation (the value's
/// bytes).
pub(crate) fn state<'a>(items: impl IntoIterator<Item = (&'a Quota, &'a Decision)>) -> HeaderValue {
    let mut text = StackText::default();
    for (i, (quota, decision)) in items.into_iter().enumerate() {
        if i > 0 {
            let _ = text.write_str(", ");
        }
        let _ = write_name(&mut text, quota);
        let _ = write!(
            text,
            ";r={};t={}",
            decision.remaining,
            seconds(decision.reset)
        );
    }
    HeaderValue::from_bytes(text.as_bytes()).unwrap_or(HeaderValue::from_static(""))
}

/// Text built on the stack: room for five items of 79-byte names, each character
/// escaped, and 20-digit numbers.
struct StackText {
    bytes: [u8; 1024],
    len: usize,
}

impl Default for StackText {
    fn default() -> Self {
        StackText {
            bytes: [0; 1024],
            len: 0,
        }
    }
}

impl StackText {
    fn as_bytes(&self) -> &[u8] {
        &self.bytes[..self.len]
    }
}

impl Write for StackText {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let end = self.len + s.len();
        let room = self.bytes.get_mut(self.len..end).ok_or(fmt::Error)?;
        room.copy_from_slice(s.as_bytes());
        self.len = end;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn quota(name: &'static str) -> Quota {
        Quota::per_minute(100)
            .unwrap()
            .burst(10)
            .unwrap()
            .name(name)
    }

    #[test]
    fn policy_lists_each_quota_with_its_limit_scaled_to_whole_seconds() {
        let sheddable = Quota::per_window(25, Duration::from_millis(1500))
            .unwrap()
            .name("api-sheddable");
        assert_eq!(
            policy([&sheddable, &quota("api")]),
            r#""api-sheddable";q=33;w=2, "api";q=100;w=60"#
        );
        // 10 per 100 ms is 100 a second; 1 per 1.5 s at least 1 in 2 s.
        let fast = Quota::per_window(10, Duration::from_millis(100)).unwrap();
        let slow = Quota::per_window(1, Duration::from_millis(1500)).unwrap();
        assert_eq!(
            policy([&fast, &slow]),
            r#""default";q=100;w=1, "default";q=1;w=2"#
        );
        let longest = Quota::per_window(u32::MAX, Quota::MAX_WINDOW).unwrap();
        assert_eq!(
            policy([&longest]),
            format!(
                r#""default";q={};w={}"#,
                u32::MAX,
                Quota::MAX_WINDOW.as_secs()
            )
        );
    }

    #[test]
    fn state_rounds_the_reset_up_and_escapes_the_name() {
        let decision = Decision {
            allowed: true,
            remaining: 7,
            reset: Duration::from_millis(1001),
            retry_after: Duration::ZERO,
        };
        let odd = quota(r#"a "b" \c"#);
        assert_eq!(
            state([(&odd, &decision), (&quota("x"), &decision)]),
            r#""a \"b\" \\c";r=7;t=2, "x";r=7;t=2"#
        );
    }

    #[test]
    fn five_items_of_the_longest_names_and_numbers_fit_on_the_stack() {
        let long = quota("n").name("\"".repeat(MAX_NAME_LEN + TIER_SUFFIX));
        assert!(check_name(&long, true).is_ok());
        let huge = Decision {
            allowed: false,
            remaining: u32::MAX,
            reset: Duration::MAX,
            retry_after: Duration::MAX,
        };
        let value = state([(&long, &huge); 5]);
        assert!(value.len() > 10 * (MAX_NAME_LEN + TIER_SUFFIX), "{value:?}");
        assert_eq!(value.to_str().unwrap().matches(", ").count(), 4);
        assert!(value
            .to_str()
            .unwrap()
            .ends_with(&format!("t={}", u64::MAX)));
    }

    #[test]
    fn names_that_cannot_be_written_are_refused() {
        for bad in [
            String::new(),
            "x".repeat(65),
            "caf\u{e9}".into(),
            "a\nb".into(),
        ] {
            let err = check_name(&quota("x").name(bad.clone()), false).unwrap_err();
            assert_eq!(err.field(), "quota", "{bad:?}");
        }
        // A tier's name has room for a tier's suffix, and no more.
        assert!(check_name(&quota("x").name("x".repeat(79)), true).is_ok());
        assert!(check_name(&quota("x").name("x".repeat(80)), true).is_err());
        assert!(check_name(&quota("x").name("x".repeat(64)), false).is_ok());
    }

    #[test]
    fn seconds_round_up() {
        assert_eq!(seconds(Duration::ZERO), 0);
        assert_eq!(seconds(Duration::from_nanos(1)), 1);
        assert_eq!(seconds(Duration::from_secs(3)), 3);
        assert_eq!(seconds(Duration::MAX), u64::MAX);
    }
}
