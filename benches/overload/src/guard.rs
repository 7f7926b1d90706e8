//! The guards measured side by side: nothing, tower's static limit told the capacity, our
//! shedding layer with each algorithm, and the server preset as shipped.

use axum::error_handling::HandleErrorLayer;
use axum::Router;
use http::StatusCode;
use tower::ServiceBuilder;
use tower_bulwark::presets::ServerPreset;
use tower_bulwark::shed::{Aimd, Builder, Gradient2, MinRtt, ShedHandle, ShedLayer, Vegas};
use tower_bulwark::{BoxError, BulwarkExt, ConfigError, HttpClassifier};

/// How one of our algorithms is set on a [`ShedLayer`] builder.
pub type Configure = fn(Builder) -> Builder;

/// Our algorithms, each measured as `ShedLayer::builder().algorithm(..)` with the HTTP
/// classifier under `handle_rejections()`. One line adds another.
pub const ALGORITHMS: &[(&str, Configure)] = &[
    ("vegas", |b| b.algorithm(Vegas::default())),
    ("aimd", |b| b.algorithm(Aimd::default())),
    ("gradient2", |b| b.algorithm(Gradient2::default())),
    ("minrtt", |b| b.algorithm(MinRtt::default())),
];

/// What stands between the clients and the handler.
#[derive(Debug, Clone, Copy)]
pub enum Guard {
    /// The bare handler.
    Unprotected,
    /// tower's `LoadShed` over `ConcurrencyLimit(workers)`: the best static limit, told the
    /// true capacity; `Overloaded` answered 503 by axum's `HandleErrorLayer`.
    TowerStatic,
    /// Our shedding layer with one of [`ALGORITHMS`].
    Ours(&'static str, Configure),
    /// `ServerPreset::http()?.layer()` (or `grpc()`), untouched.
    Preset,
}

/// A guarded app, and the shedding layer's handle if it has one.
#[derive(Debug)]
pub struct Guarded<A> {
    /// The app to serve.
    pub app: A,
    /// Reads the shed limit.
    pub shed: Option<ShedHandle>,
}

impl Guard {
    /// Every guard, in table order.
    pub fn all() -> Vec<Guard> {
        let mut guards = vec![Guard::Unprotected, Guard::TowerStatic];
        guards.extend(ALGORITHMS.iter().map(|&(name, set)| Guard::Ours(name, set)));
        guards.push(Guard::Preset);
        guards
    }

    /// The name the `--guard` filter matches.
    pub fn name(&self) -> &'static str {
        match self {
            Guard::Unprotected => "unprotected",
            Guard::TowerStatic => "tower-static",
            Guard::Ours(name, _) => name,
            Guard::Preset => "preset",
        }
    }

    /// The label in the table.
    pub fn label(&self, workers: usize) -> String {
        match self {
            Guard::Unprotected => "unprotected".into(),
            Guard::TowerStatic => format!("tower static ({workers})"),
            Guard::Ours(name, _) => format!("shed {name}"),
            Guard::Preset => "preset default".into(),
        }
    }

    /// Whether a bare 503 is this guard's refusal (tower's `LoadShed` carries no marker).
    pub fn refuses_with_bare_503(&self) -> bool {
        matches!(self, Guard::TowerStatic)
    }

    /// `app` behind this guard, for a backend of `workers` workers.
    pub fn apply(&self, app: Router, workers: usize) -> Result<Guarded<Router>, ConfigError> {
        Ok(match *self {
            Guard::Unprotected => Guarded { app, shed: None },
            Guard::TowerStatic => Guarded {
                app: app.layer(
                    ServiceBuilder::new()
                        .layer(HandleErrorLayer::new(|_: BoxError| async {
                            StatusCode::SERVICE_UNAVAILABLE
                        }))
                        .load_shed()
                        .concurrency_limit(workers),
                ),
                shed: None,
            },
            Guard::Ours(name, configure) => {
                let shed = configure(ShedLayer::builder().name(name))
                    .classify(HttpClassifier)
                    .build()?;
                let handle = shed.handle();
                Guarded {
                    app: app.layer(ServiceBuilder::new().handle_rejections().shed(shed)),
                    shed: Some(handle),
                }
            }
            Guard::Preset => {
                let preset = ServerPreset::http()?;
                Guarded {
                    app: app.layer(preset.layer()),
                    shed: Some(preset.shed.handle()),
                }
            }
        })
    }
}
