//! Degradation switches for [tower] services: when the service is under pressure, switch
//! off what matters least, automatically and in order, and switch it back on as the
//! pressure falls, while the core features keep working.
//!
//! - [`Switches`]: named switches (on/off, or levels), each read by handlers with one
//!   atomic load through a [`Switch`] handle (or the axum extractor `Feature`, feature
//!   `axum`), flipped by [`Tiers`] of triggers, overridden by operators
//!   ([`Switch::force_off`], [`Switch::force_on`], [`Switch::automatic`]).
//! - [`Signal`]s the tiers watch, from what the suite already measures: a circuit
//!   breaker's state (feature `breaker`), a bulkhead's or shedding layer's refusals per
//!   second (features `bulkhead`, `shed`), a latency percentile or an error rate over a
//!   window ([`Recorder`], fed by [`RecordLayer`]), the health of a check
//!   (`tower-bulwark-health`'s `Health::status_signal`), or a closure.
//! - Hysteresis: each tier degrades at one [`Threshold`] and restores at a lower one, and a
//!   switch's automatic level changes at most once per minimum dwell.
//! - Evaluation by a background task on tokio time (paused-time friendly), or explicitly
//!   with [`Switches::evaluate`].
//! - An event for every flip with its reason ([`DegradeEvent`]), and metrics (feature
//!   `metrics`): `bulwark_degrade_flips_total` (labels `switches`, `switch`, `cause`,
//!   `direction`) and the gauge `bulwark_degrade_level` (labels `switches`, `switch`).
//!
//! ```
//! use std::time::Duration;
//! use tower_bulwark_degrade::{Signal, Switches, Threshold, Tiers};
//! use tokio::time::Instant;
//!
//! let load = std::sync::Arc::new(std::sync::Mutex::new(0.0));
//! let reading = load.clone();
//! let switches = Switches::builder()
//!     .tiers(
//!         Tiers::new(Signal::new("load", move || *reading.lock().unwrap()))
//!             .tier("reviews", Threshold::new(0.7, 0.5))
//!             .tier("recommendations", Threshold::new(0.9, 0.6)),
//!     )
//!     .min_dwell(Duration::ZERO)
//!     .manual_evaluation()
//!     .build()
//!     .unwrap();
//! let (reviews, recommendations) =
//!     (switches.switch("reviews").unwrap(), switches.switch("recommendations").unwrap());
//!
//! *load.lock().unwrap() = 0.95;
//! switches.evaluate(Instant::now());
//! assert!(!reviews.is_on() && recommendations.is_on(), "one tier per evaluation");
//! switches.evaluate(Instant::now());
//! assert!(!recommendations.is_on());
//!
//! *load.lock().unwrap() = 0.4;
//! switches.evaluate(Instant::now());
//! assert!(recommendations.is_on() && !reviews.is_on(), "back in reverse order");
//! switches.evaluate(Instant::now());
//! assert!(reviews.is_on());
//! ```
//!
//! # Features
//!
//! - `breaker`, `bulkhead`, `shed`: signals from those crates' handles.
//! - `metrics`: flips recorded through the `metrics` facade.
//! - `axum`: the `Feature` extractor.
//!
//! [tower]: https://docs.rs/tower
#![forbid(unsafe_code)]
#![cfg_attr(docsrs, feature(doc_cfg))]

#[cfg(feature = "axum")]
mod axum;
mod buckets;
mod config;
mod engine;
mod events;
mod layer;
mod recorder;
mod signal;
mod switch;
mod switches;
mod tiers;

#[cfg(feature = "axum")]
pub use self::axum::{Feature, SwitchName, UnknownSwitch};
pub use self::events::{Cause, DegradeEvent};
pub use self::layer::{Record, RecordFuture, RecordLayer};
pub use self::recorder::{Recorder, RecorderBuilder};
pub use self::signal::Signal;
pub use self::switch::{Mode, Switch, SwitchStatus, WeakSwitch};
pub use self::switches::{Builder, Switches};
pub use self::tiers::{Threshold, Tiers};
