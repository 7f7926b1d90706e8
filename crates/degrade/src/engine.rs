//! The evaluation: signals read, tiers moved in order, switches published.

use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, PoisonError};
use std::time::Duration;

use tokio::time::Instant;

use crate::events::{Cause, DegradeEvent};
use crate::switches::Inner;
use crate::tiers::Threshold;
use crate::{Mode, Signal};

/// The state the evaluation moves, under one lock.
pub(crate) struct Engine {
    pub(crate) lists: Vec<List>,
    /// By switch.
    pub(crate) autos: Vec<Auto>,
}

/// One list of tiers and how many of them are degraded (always the first ones).
pub(crate) struct List {
    signal: Signal,
    tiers: Box<[Tier]>,
    degraded: usize,
    /// By tier: the reading that degraded it, while it is degraded.
    reasons: Box<[Option<Arc<str>>]>,
}

#[derive(Debug, Clone, Copy)]
pub(crate) struct Tier {
    pub(crate) switch: usize,
    pub(crate) level: u8,
    pub(crate) threshold: Threshold,
}

/// A switch's automatic state and its operator's mode.
pub(crate) struct Auto {
    /// The highest level its degraded tiers ask for.
    level: u8,
    /// When `level` last changed.
    since: Option<Instant>,
    /// Why it is at `level`: the reading that degraded a tier holding it there, or (at 0)
    /// the reading that restored it.
    reason: Arc<str>,
    mode: Mode,
}

impl List {
    pub(crate) fn new(signal: Signal, tiers: Vec<Tier>) -> Self {
        List {
            signal,
            reasons: tiers.iter().map(|_| None).collect(),
            tiers: tiers.into(),
            degraded: 0,
        }
    }
}

impl Auto {
    pub(crate) fn new(reason: Arc<str>) -> Self {
        Auto {
            level: 0,
            since: None,
            reason,
            mode: Mode::Automatic,
        }
    }

    /// Whether its level may change at `now`: never changed, or `min_dwell` ago.
    fn may_change(&self, now: Instant, min_dwell: Duration) -> bool {
        self.since
            .is_none_or(|since| now.saturating_duration_since(since) >= min_dwell)
    }

    /// The level handlers see.
    fn effective(&self) -> u8 {
        match self.mode {
            Mode::Automatic => self.level,
            Mode::Forced(level) => level,
        }
    }
}

impl Engine {
    /// The level switch `switch` gets from every degraded tier but tier `skip.1` of list
    /// `skip.0`.
    fn demand(&self, switch: usize, skip: (usize, usize)) -> u8 {
        let mut level = 0;
        for (l, list) in self.lists.iter().enumerate() {
            for (t, tier) in list.tiers[..list.degraded].iter().enumerate() {
                if tier.switch == switch && (l, t) != skip {
                    level = level.max(tier.level);
                }
            }
        }
        level
    }

    /// The reason of a degraded tier holding switch `switch` at `level`: `current` if it
    /// is one's (so a reason changes only when its tier lets go), else the first one's.
    fn holder(&self, switch: usize, level: u8, current: &Arc<str>) -> Option<Arc<str>> {
        let mut first = None;
        for list in &self.lists {
            let degraded = list.tiers[..list.degraded].iter().zip(&list.reasons[..]);
            for (tier, reason) in degraded {
                let Some(reason) = reason.as_ref() else {
                    continue;
                };
                if tier.switch != switch || tier.level != level {
                    continue;
                }
                if Arc::ptr_eq(reason, current) {
                    return Some(reason.clone());
                }
                first = first.or(Some(reason));
            }
        }
        first.cloned()
    }

    /// Moves list `l` at most one tier for the reading `value` (NaN, under no threshold
    /// and over none, holds); the switch whose automatic level or reason changed, if one
    /// did.
    fn step(&mut self, l: usize, value: f64, now: Instant, dwell: Duration) -> Option<usize> {
        let list = &self.lists[l];
        let next = list.tiers.get(list.degraded).copied();
        let last = list.degraded.checked_sub(1).map(|t| (t, list.tiers[t]));
        let (tier, level, degrade) = match (next, last) {
            (Some(tier), _) if value >= tier.threshold.degrade_at => {
                (tier, self.autos[tier.switch].level.max(tier.level), true)
            }
            (_, Some((t, tier))) if value <= tier.threshold.restore_at => {
                (tier, self.demand(tier.switch, (l, t)), false)
            }
            _ => return None,
        };
        let auto = &self.autos[tier.switch];
        if level != auto.level && !auto.may_change(now, dwell) {
            return None; // This tier waits, and the tiers after it with it.
        }
        // The list moves (rare): only now is its reading written out.
        let list = &mut self.lists[l];
        let reading: Arc<str> = if degrade {
            let reading: Arc<str> = list
                .signal
                .reason(value, ">=", tier.threshold.degrade_at)
                .into();
            list.reasons[list.degraded] = Some(reading.clone());
            list.degraded += 1;
            reading
        } else {
            list.degraded -= 1;
            list.reasons[list.degraded] = None;
            list.signal
                .reason(value, "<=", tier.threshold.restore_at)
                .into()
        };
        // Back on: the reading that restored it; else what holds it at its level.
        let reason = match level {
            0 => reading,
            _ => self
                .holder(tier.switch, level, &self.autos[tier.switch].reason)
                .unwrap_or(reading),
        };
        let auto = &mut self.autos[tier.switch];
        if level == auto.level && Arc::ptr_eq(&reason, &auto.reason) {
            return None; // The tier that holds the switch where it is still does.
        }
        if level != auto.level {
            auto.level = level;
            auto.since = Some(now);
        }
        auto.reason = reason;
        Some(tier.switch)
    }
}

impl Inner {
    /// Reads every list's signal once and moves each list at most one tier.
    pub(crate) fn evaluate(&self, now: Instant) {
        let mut engine = self.engine.lock().unwrap_or_else(PoisonError::into_inner);
        for l in 0..engine.lists.len() {
            let value = engine.lists[l].signal.read(now);
            if let Some(switch) = engine.step(l, value, now, self.min_dwell) {
                let reason = engine.autos[switch].reason.clone();
                self.publish(&engine, switch, now, Cause::Automatic, reason);
            }
        }
    }

    /// Sets switch `switch`'s mode (an operator's override, or automatic again).
    pub(crate) fn set_mode(&self, switch: usize, mode: Mode) {
        let mut engine = self.engine.lock().unwrap_or_else(PoisonError::into_inner);
        if engine.autos[switch].mode == mode {
            return;
        }
        engine.autos[switch].mode = mode;
        let reason: Arc<str> = match mode {
            Mode::Automatic => format!("automatic again: {}", engine.autos[switch].reason).into(),
            Mode::Forced(0) => "forced on by an operator".into(),
            Mode::Forced(level) if level == self.slots[switch].max_level => {
                "forced off by an operator".into()
            }
            Mode::Forced(level) => format!("forced to level {level} by an operator").into(),
        };
        self.publish(&engine, switch, Instant::now(), Cause::Manual, reason);
    }

    /// Shows switch `switch` as the engine has it to handlers and status readers, and
    /// announces a change of its level. Called under the engine's lock, so flips are
    /// announced in order.
    fn publish(
        &self,
        engine: &Engine,
        switch: usize,
        now: Instant,
        cause: Cause,
        reason: Arc<str>,
    ) {
        let auto = &engine.autos[switch];
        let slot = &self.slots[switch];
        let to = auto.effective();
        let from = {
            let mut status = slot.status.lock().unwrap_or_else(PoisonError::into_inner);
            let from = status.level;
            status.mode = auto.mode;
            status.automatic_level = auto.level;
            // While forced, the reason stays the operator's.
            if cause == Cause::Manual || auto.mode == Mode::Automatic {
                status.reason = reason.clone();
            }
            if from != to {
                status.level = to;
                status.changed_at = Some(now);
                slot.level.store(to, Relaxed);
            }
            from
        };
        if from != to {
            self.listeners.emit(|| DegradeEvent::Flipped {
                switches: self.name.clone(),
                switch: slot.name.clone(),
                from,
                to,
                cause,
                reason,
            });
        }
    }
}
