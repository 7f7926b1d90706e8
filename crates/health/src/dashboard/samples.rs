//! What the dashboard remembers between samples: each component's series (bounded rings)
//! and the most recent events.

use std::collections::VecDeque;
use std::sync::Arc;

use tokio::time::Instant;

use super::reading::{Measure, Reading};
use crate::json::Value;
use crate::registry::Component;
use crate::{Report, Status};

/// Events kept.
pub(super) const EVENTS: usize = 100;
/// Of them, status changes of components that have no transitions of their own (a check,
/// a bulkhead, a shed layer flapping at its limit): at most half, so a flapping one cannot
/// push a breaker's trip out of the list.
const STATUS_EVENTS: usize = EVENTS / 2;

/// The series and events of one dashboard.
pub(super) struct Samples {
    /// Points kept per series.
    capacity: usize,
    /// By component index (components are never removed, so an index names one for good).
    tracks: Vec<Track>,
    /// Oldest first, at most [`EVENTS`].
    events: VecDeque<Event>,
    /// Whether the drain had started at the last sample; `None` before one saw a drain.
    draining: Option<bool>,
}

/// One component's series and what its events are told from.
struct Track {
    series: Vec<Series>,
    sampled_at: Instant,
    status: Status,
    /// A breaker's last transition seen, by number.
    #[cfg_attr(not(feature = "breaker"), allow(dead_code))]
    seen: u64,
    /// A switch's last level seen, with its state's text.
    #[cfg_attr(not(feature = "degrade"), allow(dead_code))]
    level: Option<(u8, String)>,
}

struct Series {
    label: &'static str,
    points: VecDeque<f64>,
    /// A counter's value at the last sample, to draw its growth.
    last: Option<u64>,
}

/// A change worth showing. Every text in it is a registered name or a layer's own words.
#[derive(Debug, Clone)]
pub(super) struct Event {
    pub(super) at: Instant,
    pub(super) component: String,
    pub(super) kind: &'static str,
    pub(super) from: String,
    pub(super) to: String,
    pub(super) reason: String,
}

impl Event {
    /// A status change of a component with no transitions of its own.
    fn is_status_change(&self) -> bool {
        !matches!(self.kind, "breaker" | "switch" | "drain" | "action")
    }
}

/// A component as one sample saw it.
pub(super) struct Observed {
    pub(super) component: Arc<Component>,
    pub(super) report: Report,
    pub(super) reading: Reading,
}

impl Samples {
    pub(super) fn new(capacity: usize) -> Self {
        Samples {
            capacity,
            tracks: Vec::new(),
            events: VecDeque::with_capacity(EVENTS),
            draining: None,
        }
    }

    pub(super) fn capacity(&self) -> usize {
        self.capacity
    }

    /// Takes one point per series of each component `observed` (all of them, in
    /// registration order) and records what changed since the last sample.
    pub(super) fn record(&mut self, now: Instant, observed: &[Observed], draining: Option<bool>) {
        for (index, seen) in observed.iter().enumerate() {
            let measures = seen.reading.measures(seen.report.status);
            if index == self.tracks.len() {
                self.tracks.push(Track::new(&measures, now, seen));
            }
            let track = &mut self.tracks[index];
            track.push(&measures, now, self.capacity);
            for event in track.changes(now, seen) {
                self.push_event(event);
            }
        }
        if let (Some(before), Some(now_draining)) = (self.draining, draining) {
            if !before && now_draining {
                self.push_event(Event {
                    at: now,
                    component: "drain".into(),
                    kind: "drain",
                    from: "serving".into(),
                    to: "draining".into(),
                    reason: "drain started".into(),
                });
            }
        }
        if draining.is_some() {
            self.draining = draining;
        }
    }

    /// Keeps `event` in time order, the oldest status change beyond [`STATUS_EVENTS`] and
    /// the oldest event beyond [`EVENTS`] dropped.
    pub(super) fn push_event(&mut self, event: Event) {
        let at = self.events.partition_point(|e| e.at <= event.at);
        let status = event.is_status_change();
        self.events.insert(at, event);
        if status && self.events.iter().filter(|e| e.is_status_change()).count() > STATUS_EVENTS {
            if let Some(oldest) = self.events.iter().position(Event::is_status_change) {
                self.events.remove(oldest);
            }
        }
        if self.events.len() > EVENTS {
            self.events.pop_front();
        }
    }

    /// The series of the component at `index`: its points, or none yet (registered since
    /// the last sample) under the labels of `measures`.
    pub(super) fn series(&self, index: usize, measures: &[(&'static str, Measure)]) -> Value {
        let series = match self.tracks.get(index) {
            Some(track) => track
                .series
                .iter()
                .map(|s| series(s.label, s.points.iter().copied()))
                .collect(),
            None => measures
                .iter()
                .map(|(label, _)| series(label, std::iter::empty()))
                .collect(),
        };
        Value::Array(series)
    }

    /// The events, newest first, aged at `now`.
    pub(super) fn events(&self, now: Instant) -> Value {
        Value::Array(
            self.events
                .iter()
                .rev()
                .map(|e| {
                    let age = now.saturating_duration_since(e.at).as_millis();
                    Value::Object(vec![
                        ("age_ms", u64::try_from(age).unwrap_or(u64::MAX).into()),
                        ("component", e.component.as_str().into()),
                        ("kind", e.kind.into()),
                        ("from", e.from.as_str().into()),
                        ("to", e.to.as_str().into()),
                        ("reason", e.reason.as_str().into()),
                    ])
                })
                .collect(),
        )
    }
}

fn series(label: &str, points: impl Iterator<Item = f64>) -> Value {
    Value::Object(vec![
        ("label", label.into()),
        ("points", Value::Array(points.map(Value::Num).collect())),
    ])
}

impl Track {
    /// A track that starts from `seen`: its counters, status and level are the baseline,
    /// so the first sample draws no growth and reports no change; a breaker's transitions
    /// already recorded are still to be shown.
    fn new(measures: &[(&'static str, Measure)], now: Instant, seen: &Observed) -> Track {
        let series = measures
            .iter()
            .map(|&(label, measure)| Series {
                label,
                points: VecDeque::new(),
                last: match measure {
                    Measure::Counter(n) => Some(n),
                    Measure::Gauge(_) => None,
                },
            })
            .collect();
        Track {
            series,
            sampled_at: now,
            status: seen.report.status,
            seen: 0,
            level: switch_level(&seen.reading),
        }
    }

    /// One point per series: a gauge as read, a counter as its growth per second since
    /// the last sample.
    fn push(&mut self, measures: &[(&'static str, Measure)], now: Instant, capacity: usize) {
        let elapsed = now.saturating_duration_since(self.sampled_at).as_secs_f64();
        self.sampled_at = now;
        for (series, &(_, measure)) in self.series.iter_mut().zip(measures) {
            let point = match measure {
                Measure::Gauge(value) => value,
                Measure::Counter(value) => {
                    let growth = series.last.map_or(0, |last| value.saturating_sub(last));
                    series.last = Some(value);
                    if elapsed > 0.0 {
                        growth as f64 / elapsed
                    } else {
                        0.0
                    }
                }
            };
            if series.points.len() >= capacity {
                series.points.pop_front();
            }
            series.points.push_back(round(point));
        }
    }

    /// What changed since the last sample: a breaker's transitions (from its own record,
    /// so none between samples is missed), a switch's level, another kind's status.
    fn changes(&mut self, now: Instant, seen: &Observed) -> Vec<Event> {
        let component = &seen.component;
        let event = |at, from: String, to: String, reason: String| Event {
            at,
            component: component.name.clone(),
            kind: component.kind.as_str(),
            from,
            to,
            reason,
        };
        let status = std::mem::replace(&mut self.status, seen.report.status);
        match &component.kind {
            #[cfg(feature = "breaker")]
            crate::kind::Kind::Breaker(handle) => {
                let mut events = Vec::new();
                for transition in handle.transitions() {
                    if transition.sequence > self.seen {
                        let mut reason = transition.reason.to_string();
                        // The breaker keeps its last 16: more came between two samples.
                        let missed = transition.sequence - self.seen - 1;
                        if missed > 0 {
                            reason.push_str(&format!(" ({missed} earlier transitions not shown)"));
                        }
                        self.seen = transition.sequence;
                        events.push(event(
                            transition.at.min(now),
                            transition.from.as_str().into(),
                            transition.to.as_str().into(),
                            reason,
                        ));
                    }
                }
                events
            }
            #[cfg(feature = "degrade")]
            crate::kind::Kind::Switch { .. } => {
                let level = switch_level(&seen.reading);
                let before = std::mem::replace(&mut self.level, level.clone());
                match (before, level, seen.reading.switch_status()) {
                    (Some((was, from)), Some((is, to)), Some(status)) if was != is => {
                        let at = status.changed_at.map_or(now, |at| at.min(now));
                        vec![event(at, from, to, status.reason.to_string())]
                    }
                    _ => Vec::new(),
                }
            }
            _ if status != seen.report.status => vec![event(
                now,
                status.as_str().into(),
                seen.report.status.as_str().into(),
                seen.report.detail.clone(),
            )],
            _ => Vec::new(),
        }
    }
}

/// A switch's level and the text of its state.
#[cfg_attr(not(feature = "degrade"), allow(unused_variables))]
fn switch_level(reading: &Reading) -> Option<(u8, String)> {
    #[cfg(feature = "degrade")]
    if let Some(status) = reading.switch_status() {
        return Some((status.level, status.state()));
    }
    None
}

/// Points to a thousandth, which keeps the document short; anything not finite is 0, so
/// points are always numbers.
fn round(value: f64) -> f64 {
    if value.is_finite() {
        (value * 1000.0).round() / 1000.0
    } else {
        0.0
    }
}
