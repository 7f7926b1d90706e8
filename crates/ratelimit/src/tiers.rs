//! Criticality tiers: which quotas a request must pass, by how important it is.
//!
//! Every request counts against the base quota. A tier may have a quota of its own, a
//! smaller one, which caps that tier and every less important tier together: a request
//! must pass the quota of its own tier and of each more important tier that has one,
//! then the base quota. As a key's rate rises, its less important requests are refused
//! first, while the base quota keeps the key's total where it was, whatever tiers its
//! requests claim.
//!
//! [`RateLimitLayer::local`] gives `sheddable-plus` half the base quota and `sheddable` a
//! quarter: a key's `sheddable` traffic never takes more than a quarter of its budget,
//! its `sheddable` and `sheddable-plus` traffic together never more than half, and so its
//! `critical` traffic always keeps at least half.
//!
//! The quotas are asked from the request's tier up, the base last: a request a quota
//! refuses takes nothing from the quotas after it, and keeps the permits it took before
//! (low tiers pay for trying when a quota above them is spent).
//!
//! [`RateLimitLayer::local`]: crate::RateLimitLayer::local

use http::request::Parts;
use tower_bulwark_core::{ConfigError, Criticality, Name};

use crate::Quota;

/// The share of the base quota each tier gets by default with
/// [`RateLimitLayer::local`](crate::RateLimitLayer::local), in percent: `sheddable` 25,
/// `sheddable-plus` 50 (with `sheddable`'s traffic in it); `critical` and
/// `critical-plus` have no quota of their own.
pub const DEFAULT_TIER_SHARES: [(Criticality, u32); 2] = [
    (Criticality::Sheddable, 25),
    (Criticality::SheddablePlus, 50),
];

/// A request's tier, by the rule the shed layer applies too
/// ([`Criticality::of_request`]), trusting no sender: a `Criticality` in the request's
/// extensions (put there by server code) as it is; else the `x-request-criticality` header,
/// which any client can write and so may lower a request below `critical` but never raise
/// it above; else, or if the header is malformed, `critical`.
///
/// ```
/// use tower_bulwark_core::Criticality;
/// use tower_bulwark_ratelimit::criticality_of;
///
/// let head = |value: &str| {
///     let request = http::Request::get("/").header("x-request-criticality", value);
///     request.body(()).unwrap().into_parts().0
/// };
/// assert_eq!(criticality_of(&head("sheddable")), Criticality::Sheddable);
/// assert_eq!(criticality_of(&head("critical-plus")), Criticality::Critical);
/// assert_eq!(criticality_of(&head("nonsense")), Criticality::Critical);
/// let mut set_by_server = head("sheddable");
/// set_by_server.extensions.insert(Criticality::CriticalPlus);
/// assert_eq!(criticality_of(&set_by_server), Criticality::CriticalPlus);
/// ```
pub fn criticality_of(parts: &Parts) -> Criticality {
    Criticality::of_request(parts, Criticality::Critical, |_| false)
}

/// `share` percent of `base`, named `<base name>-<tier>`.
pub(crate) fn tier_quota(
    base: &Quota,
    tier: Criticality,
    share: u32,
) -> Result<Quota, ConfigError> {
    let name = Name::from(format!("{}-{tier}", base.policy_name()));
    Ok(base.share(share)?.name(name))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tier_quotas_are_shares_named_after_their_tier() {
        let base = Quota::per_minute(100)
            .unwrap()
            .burst(20)
            .unwrap()
            .name("api");
        let quarter = tier_quota(&base, Criticality::Sheddable, 25).unwrap();
        assert_eq!(quarter.policy_name(), "api-sheddable");
        assert_eq!((quarter.limit(), quarter.burst_size()), (100, 5));
        assert_eq!(quarter.interval(), base.interval() * 4);
    }
}
