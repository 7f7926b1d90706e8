//! Sampling the registry, and the state document (`…/ui/state`).

use tokio::time::Instant;

use super::action::actions_of;
use super::reading::Reading;
use super::samples::Observed;
use super::Shared;
use crate::json::Value;
use crate::Status;

impl Shared {
    /// Reads every component (with `top_keys` keyed breakers shown: 0 reads only their
    /// states). The probes run before any lock of the dashboard is taken.
    fn observe(&self, top_keys: usize) -> Vec<Observed> {
        self.health
            .components()
            .into_iter()
            .map(|component| Observed {
                report: component.report(),
                reading: Reading::of(&component.kind, top_keys),
                component,
            })
            .collect()
    }

    fn draining(&self) -> Option<bool> {
        self.health.drain().map(|drain| drain.is_draining())
    }

    /// One sample of every series, and the events since the last.
    pub(super) fn sample(&self) {
        let observed = self.observe(0);
        let draining = self.draining();
        self.lock().record(Instant::now(), &observed, draining);
    }

    /// The state document, for a reader the predicate did (`authorized`) or did not approve.
    pub(super) fn state(&self, authorized: bool) -> Value {
        let observed = self.observe(self.top_keys);
        let drain = self.health.drain();
        let draining = drain.as_ref().is_some_and(|d| d.is_draining());
        let ready = !draining
            && observed
                .iter()
                .all(|o| !o.component.required || o.report.status != Status::Down);
        let now = Instant::now();
        let samples = self.lock();
        let components = observed
            .iter()
            .enumerate()
            .map(|(index, o)| {
                let kind = o.component.kind.as_str();
                let actions = if self.actions_enabled() {
                    actions_of(&o.component.kind)
                } else {
                    &[]
                };
                let measures = o.reading.measures(o.report.status);
                let mut fields = vec![
                    ("name", o.component.name.as_str().into()),
                    ("kind", kind.into()),
                    ("required", o.component.required.into()),
                    ("status", o.report.status.as_str().into()),
                    ("detail", o.report.detail.as_str().into()),
                    (
                        "actions",
                        Value::Array(actions.iter().map(|&a| a.into()).collect()),
                    ),
                    ("series", samples.series(index, &measures)),
                ];
                if let Some(object) = o.reading.object() {
                    fields.push((kind, object));
                }
                Value::Object(fields)
            })
            .collect();
        let millis = |d: std::time::Duration| u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
        Value::Object(vec![
            ("version", 1u64.into()),
            ("title", self.title.as_str().into()),
            ("status", if ready { "ready" } else { "not_ready" }.into()),
            ("interval_ms", millis(self.interval).into()),
            (
                "uptime_ms",
                millis(now.saturating_duration_since(self.started)).into(),
            ),
            ("actions_enabled", self.actions_enabled().into()),
            ("actions", authorized.into()),
            (
                "drain",
                match drain {
                    Some(drain) => Value::Object(vec![
                        ("draining", draining.into()),
                        ("in_flight", drain.in_flight().into()),
                    ]),
                    None => Value::Null,
                },
            ),
            ("components", Value::Array(components)),
            ("events", samples.events(now)),
        ])
    }
}
