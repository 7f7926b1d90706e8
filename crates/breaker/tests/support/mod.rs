//! Shared helpers of the breaker's integration tests.
#![allow(dead_code, unreachable_pub)]

use std::sync::{Arc, Mutex};

use tower::{Layer, Service, ServiceExt};
use tower_bulwark_breaker::{
    BreakerEvent, Builder, CircuitBreaker, CircuitBreakerLayer, CircuitOpen,
};
use tower_bulwark_core::testing::{controlled, Controlled, Controller};
use tower_bulwark_core::{BoxError, ErrorsAreFailures};

pub type Guarded = CircuitBreaker<Controlled<u32>, ErrorsAreFailures>;

/// A breaker from `builder` around a controllable inner service.
pub fn guarded(builder: Builder) -> (Guarded, Controller, CircuitBreakerLayer) {
    let layer = builder.build().expect("valid configuration");
    let (inner, control) = controlled::<u32>();
    (layer.layer(inner), control, layer)
}

/// One ready+call round trip.
pub async fn call<S>(service: &mut S) -> Result<u32, BoxError>
where
    S: Service<u32, Response = u32, Error = BoxError>,
{
    service.ready().await?.call(1).await
}

/// Whether the call was refused by the breaker (as opposed to failing in the inner service).
pub fn refused(result: &Result<u32, BoxError>) -> bool {
    matches!(result, Err(e) if e.is::<CircuitOpen>())
}

/// The refusal, if the call was refused.
pub fn refusal(result: &Result<u32, BoxError>) -> Option<&CircuitOpen> {
    result
        .as_ref()
        .err()
        .and_then(|e| e.downcast_ref::<CircuitOpen>())
}

/// Collects every event a breaker emits.
pub fn recorder() -> (
    impl Fn(&BreakerEvent) + Send + Sync + 'static,
    Arc<Mutex<Vec<BreakerEvent>>>,
) {
    let events = Arc::new(Mutex::new(Vec::new()));
    let sink = events.clone();
    (
        move |e: &BreakerEvent| sink.lock().unwrap().push(e.clone()),
        events,
    )
}
