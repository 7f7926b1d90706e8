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

/// The longest policy name accepted, in bytes: two items always fit [`StackText`].
const MAX_NAME_LEN: usize = 64;

/// Checks that `quota`'s name can be written as a structured-field string.
pub(crate) fn check_name(quota: &Quota) -> Result<(), ConfigError> {
    let name = quota.policy_name();
    if name.is_empty()
        || name.len() > MAX_NAME_LEN
        || !name.bytes().all(|b| (0x20..=0x7e).contains(&b))
    {
        return Err(ConfigError::new(
            "quota",
            format!(
                "policy name {name:?}: 1 to {MAX_NAME_LEN} printable ASCII characters, for the RateLimit headers"
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

/// `RateLimit-Policy` for `quotas`, in order (made once per layer, shared after).
pub(crate) fn policy(quotas: &[&Quota]) -> HeaderValue {
    let mut text = String::new();
    for (i, quota) in quotas.iter().enumerate() {
        if i > 0 {
            text.push_str(", ");
        }
        let _ = write_name(&mut text, quota);
        let _ = write!(text, ";q={};w={}", quota.limit(), seconds(quota.window()));
    }
    HeaderValue::from_str(&text).unwrap_or(HeaderValue::from_static(""))
}

/// `RateLimit` for each quota asked and its answer, in order: one allocation (the value's
/// bytes).
pub(crate) fn state(items: &[(&Quota, &Decision)]) -> HeaderValue {
    let mut text = StackText::default();
    for (i, (quota, decision)) in items.iter().enumerate() {
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

/// Text built on the stack: room for two items of 64-byte names, each character escaped,
/// and 20-digit numbers.
struct StackText {
    bytes: [u8; 512],
    len: usize,
}

impl Default for StackText {
    fn default() -> Self {
        StackText {
            bytes: [0; 512],
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
    fn policy_lists_each_quota() {
        let sheddable = Quota::per_window(25, Duration::from_millis(1500))
            .unwrap()
            .name("api-sheddable");
        assert_eq!(
            policy(&[&sheddable, &quota("api")]),
            r#""api-sheddable";q=25;w=2, "api";q=100;w=60"#
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
            state(&[(&odd, &decision), (&quota("x"), &decision)]),
            r#""a \"b\" \\c";r=7;t=2, "x";r=7;t=2"#
        );
    }

    #[test]
    fn the_longest_names_and_numbers_fit_on_the_stack() {
        let long = quota("n").name("\"".repeat(MAX_NAME_LEN));
        assert!(check_name(&long).is_ok());
        let huge = Decision {
            allowed: false,
            remaining: u32::MAX,
            reset: Duration::MAX,
            retry_after: Duration::MAX,
        };
        let value = state(&[(&long, &huge), (&long, &huge)]);
        assert!(value.len() > 4 * MAX_NAME_LEN, "{value:?}");
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
            let err = check_name(&quota("x").name(bad.clone())).unwrap_err();
            assert_eq!(err.field(), "quota", "{bad:?}");
        }
    }

    #[test]
    fn seconds_round_up() {
        assert_eq!(seconds(Duration::ZERO), 0);
        assert_eq!(seconds(Duration::from_nanos(1)), 1);
        assert_eq!(seconds(Duration::from_secs(3)), 3);
        assert_eq!(seconds(Duration::MAX), u64::MAX);
    }
}
