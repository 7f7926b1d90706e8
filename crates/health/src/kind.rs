//! What a registered component is, so that views richer than a status (the dashboard) can
//! read its own numbers.
#![cfg_attr(not(feature = "dashboard"), allow(dead_code))]

#[cfg(feature = "breaker")]
use tower_bulwark_breaker::BreakerHandle;

/// A component's kind, with the handle to read it by.
pub(crate) enum Kind {
    /// A probe or a cached check: a status and a detail only.
    Check,
    #[cfg(feature = "breaker")]
    Breaker(BreakerHandle),
    #[cfg(feature = "breaker")]
    KeyedBreaker(Box<dyn Keyed>),
    #[cfg(feature = "bulkhead")]
    Bulkhead(tower_bulwark_bulkhead::BulkheadHandle),
    #[cfg(feature = "shed")]
    Shed(tower_bulwark_shed::ShedHandle),
    #[cfg(feature = "retry")]
    Budget(std::sync::Arc<tower_bulwark_retry::RatioBudget>),
    #[cfg(feature = "degrade")]
    Switch {
        /// The set's name.
        switches: String,
        /// The switch's name in it.
        switch: String,
        /// Does not keep the switches alive.
        handle: tower_bulwark_degrade::WeakSwitch,
    },
}

impl Kind {
    /// The `kind` of the dashboard's state document.
    pub(crate) fn as_str(&self) -> &'static str {
        match self {
            Kind::Check => "check",
            #[cfg(feature = "breaker")]
            Kind::Breaker(_) => "breaker",
            #[cfg(feature = "breaker")]
            Kind::KeyedBreaker(_) => "keyed_breaker",
            #[cfg(feature = "bulkhead")]
            Kind::Bulkhead(_) => "bulkhead",
            #[cfg(feature = "shed")]
            Kind::Shed(_) => "shed",
            #[cfg(feature = "retry")]
            Kind::Budget(_) => "budget",
            #[cfg(feature = "degrade")]
            Kind::Switch { .. } => "switch",
        }
    }
}

/// The breakers of a keyed breaker, whatever its key type, keys shown by `Display`.
#[cfg(feature = "breaker")]
pub(crate) trait Keyed: Send + Sync {
    /// Every key alive and its breaker.
    fn breakers(&self) -> Vec<(String, BreakerHandle)>;
}

#[cfg(feature = "breaker")]
impl<K> Keyed for tower_bulwark_breaker::KeyedHandle<K>
where
    K: std::fmt::Display + std::hash::Hash + Eq + Clone + Send + Sync + 'static,
{
    fn breakers(&self) -> Vec<(String, BreakerHandle)> {
        self.keys()
            .into_iter()
            .filter_map(|key| self.get(&key).map(|handle| (key.to_string(), handle)))
            .collect()
    }
}
