//! One request's walk through its quotas: its tier's, if its tier has one, then the base
//! quota every request counts against. The same walk for answers given at once and for
//! answers that come from a future.

use tower_bulwark_core::Criticality;

use crate::{Decision, LimitError, Limiter};

/// The base limiter, and one per tier that has its own quota (indexed by
/// `Criticality as usize`).
#[derive(Debug, Clone)]
pub(crate) struct Quotas<L> {
    pub(crate) base: L,
    pub(crate) tiers: [Option<L>; 4],
}

impl<L> Quotas<L> {
    /// Only the base limiter.
    pub(crate) fn base(base: L) -> Self {
        Quotas {
            base,
            tiers: [None, None, None, None],
        }
    }

    pub(crate) fn tier(&self, criticality: Criticality) -> Option<&L> {
        self.tiers[criticality as usize].as_ref()
    }
}

/// How a request's walk ended.
#[derive(Debug)]
pub(crate) enum Verdict {
    /// Every quota asked had a permit: the tier's (if asked) and the base's answers.
    Admitted {
        tier: Option<Decision>,
        base: Decision,
    },
    /// A quota refused: the tier's (`by_tier`) or the base's.
    Limited { by_tier: bool, decision: Decision },
    /// A limiter could not answer.
    Failed(LimitError),
}

/// A request's walk: its key, its tier, and how far it got.
#[derive(Debug)]
pub(crate) struct Check<K> {
    pub(crate) key: K,
    pub(crate) criticality: Criticality,
    /// The tier's answer, once it gave a permit.
    tier: Option<Decision>,
    at_base: bool,
}

impl<K> Check<K> {
    pub(crate) fn new<L>(key: K, criticality: Criticality, quotas: &Quotas<L>) -> Self {
        Check {
            key,
            criticality,
            tier: None,
            at_base: quotas.tier(criticality).is_none(),
        }
    }

    /// The limiter to ask next.
    pub(crate) fn limiter<'q, L>(&self, quotas: &'q Quotas<L>) -> &'q L {
        match quotas.tier(self.criticality) {
            Some(tier) if !self.at_base => tier,
            _ => &quotas.base,
        }
    }

    /// Takes the answer of the limiter just asked: the verdict, or `None` when the base
    /// is to be asked next. A tier's permit taken before the base refuses stays taken,
    /// so refused requests of a low tier still count against that tier.
    pub(crate) fn answer(&mut self, answer: Result<Decision, LimitError>) -> Option<Verdict> {
        match answer {
            Err(error) => Some(Verdict::Failed(error)),
            Ok(decision) if !decision.allowed => Some(Verdict::Limited {
                by_tier: !self.at_base,
                decision,
            }),
            Ok(decision) if !self.at_base => {
                self.tier = Some(decision);
                self.at_base = true;
                None
            }
            Ok(base) => Some(Verdict::Admitted {
                tier: self.tier,
                base,
            }),
        }
    }

    /// Asks the limiters that answer at once ([`Limiter::acquire_now`]); `None` when the
    /// next one must be asked through its future.
    #[inline]
    pub(crate) fn run_now<L: Limiter<K>>(&mut self, quotas: &Quotas<L>) -> Option<Verdict> {
        loop {
            let answer = self.limiter(quotas).acquire_now(&self.key)?;
            if let Some(verdict) = self.answer(answer) {
                return Some(verdict);
            }
        }
    }

    /// Starts the walk again (a client that waited asks again).
    pub(crate) fn restart<L>(&mut self, quotas: &Quotas<L>) {
        self.tier = None;
        self.at_base = quotas.tier(self.criticality).is_none();
    }
}
