//! One request's walk through its quotas: its own tier's, then those of the more
//! important tiers (each tier's quota caps that tier and every less important one
//! together), then the base quota every request counts against. The same walk for answers
//! given at once and for answers that come from a future.

use tower_bulwark_core::Criticality;

use crate::{Decision, LimitError, Limiter};

/// Where the base quota is in the walk: after the four tiers.
pub(crate) const BASE: usize = 4;

/// The base limiter, and one per tier that has its own quota (indexed by
/// `Criticality as usize`: the least important first).
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

    /// The limiter at `step` of a walk: a tier's, or the base's ([`BASE`]).
    pub(crate) fn at(&self, step: usize) -> &L {
        self.tiers
            .get(step)
            .and_then(Option::as_ref)
            .unwrap_or(&self.base)
    }

    /// The steps of a walk that starts at `criticality`, in order: the tiers with a quota
    /// from it up to the most important, then [`BASE`].
    pub(crate) fn walk(&self, criticality: Criticality) -> impl Iterator<Item = usize> + '_ {
        (criticality as usize..BASE)
            .filter(|&tier| self.tiers[tier].is_some())
            .chain([BASE])
    }

    /// The first step of a walk from tier `first` up: a tier with a quota, or [`BASE`].
    fn from(&self, first: usize) -> usize {
        (first..BASE)
            .find(|&tier| self.tiers[tier].is_some())
            .unwrap_or(BASE)
    }
}

/// How a request's walk ended.
#[derive(Debug)]
pub(crate) enum Verdict {
    /// Every quota asked had a permit: the tiers' answers (where asked) and the base's.
    Admitted {
        tiers: [Option<Decision>; 4],
        base: Decision,
    },
    /// The quota at `step` refused (a tier's, or [`BASE`]).
    Limited { step: usize, decision: Decision },
    /// A limiter could not answer.
    Failed(LimitError),
}

/// A request's walk: its key, its tier, and how far it got.
#[derive(Debug)]
pub(crate) struct Check<K> {
    pub(crate) key: K,
    pub(crate) criticality: Criticality,
    /// The quota to ask next: a tier's, or [`BASE`].
    step: usize,
    /// The tiers' answers so far.
    tiers: [Option<Decision>; 4],
}

impl<K> Check<K> {
    pub(crate) fn new<L>(key: K, criticality: Criticality, quotas: &Quotas<L>) -> Self {
        let mut check = Check {
            key,
            criticality,
            step: BASE,
            tiers: [None; 4],
        };
        check.restart(quotas);
        check
    }

    /// The limiter to ask next.
    pub(crate) fn limiter<'q, L>(&self, quotas: &'q Quotas<L>) -> &'q L {
        quotas.at(self.step)
    }

    /// Takes the answer of the limiter just asked: the verdict, or `None` when the next
    /// quota is to be asked. Permits taken before a quota refuses stay taken, so refused
    /// requests of a low tier still count against the tiers that admitted them.
    pub(crate) fn answer<L>(
        &mut self,
        answer: Result<Decision, LimitError>,
        quotas: &Quotas<L>,
    ) -> Option<Verdict> {
        match answer {
            Err(error) => Some(Verdict::Failed(error)),
            Ok(decision) if !decision.allowed => Some(Verdict::Limited {
                step: self.step,
                decision,
            }),
            Ok(base) if self.step == BASE => Some(Verdict::Admitted {
                tiers: self.tiers,
                base,
            }),
            Ok(decision) => {
                self.tiers[self.step] = Some(decision);
                self.step = quotas.from(self.step + 1);
                None
            }
        }
    }

    /// Asks the limiters that answer at once ([`Limiter::acquire_now`]); `None` when the
    /// next one must be asked through its future.
    #[inline]
    pub(crate) fn run_now<L: Limiter<K>>(&mut self, quotas: &Quotas<L>) -> Option<Verdict> {
        loop {
            let answer = self.limiter(quotas).acquire_now(&self.key)?;
            if let Some(verdict) = self.answer(answer, quotas) {
                return Some(verdict);
            }
        }
    }

    /// Starts the walk again (a client that waited asks again).
    pub(crate) fn restart<L>(&mut self, quotas: &Quotas<L>) {
        self.tiers = [None; 4];
        self.step = quotas.from(self.criticality as usize);
    }
}
