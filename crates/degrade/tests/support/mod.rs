//! What the tests share: a scripted signal and a log of flips.
#![allow(dead_code, unreachable_pub)]

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;
use tower_bulwark_degrade::{Cause, DegradeEvent, Signal};

/// A signal the test sets by hand.
#[derive(Clone, Default)]
pub struct Pressure(Arc<Mutex<f64>>);

impl Pressure {
    pub fn set(&self, value: f64) {
        *self.0.lock().unwrap() = value;
    }

    pub fn signal(&self) -> Signal {
        let value = self.0.clone();
        Signal::new("load", move || *value.lock().unwrap())
    }
}

/// One flip as a listener saw it.
#[derive(Debug, Clone, PartialEq)]
pub struct Flip {
    /// Since the log was made.
    pub at: Duration,
    pub switch: String,
    pub from: u8,
    pub to: u8,
    pub cause: Cause,
    pub reason: String,
}

/// Every flip, with its time.
#[derive(Clone)]
pub struct Flips {
    start: Instant,
    seen: Arc<Mutex<Vec<Flip>>>,
}

impl Flips {
    pub fn new() -> Self {
        Flips {
            start: Instant::now(),
            seen: Arc::default(),
        }
    }

    pub fn listener(&self) -> impl Fn(&DegradeEvent) + Send + Sync + 'static {
        let (start, seen) = (self.start, self.seen.clone());
        move |event: &DegradeEvent| match event {
            DegradeEvent::Flipped {
                switch,
                from,
                to,
                cause,
                reason,
                ..
            } => seen.lock().unwrap().push(Flip {
                at: start.elapsed(),
                switch: switch.to_string(),
                from: *from,
                to: *to,
                cause: *cause,
                reason: reason.to_string(),
            }),
            _ => unreachable!("only flips exist"),
        }
    }

    pub fn all(&self) -> Vec<Flip> {
        self.seen.lock().unwrap().clone()
    }

    /// `(seconds, switch, to)` of every flip.
    pub fn timeline(&self) -> Vec<(u64, String, u8)> {
        self.all()
            .into_iter()
            .map(|f| (f.at.as_secs(), f.switch, f.to))
            .collect()
    }
}

pub fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}
