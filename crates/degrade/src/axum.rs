//! The axum extractor (feature `axum`).

use std::fmt;
use std::marker::PhantomData;

use axum::extract::{FromRef, FromRequestParts};
use axum::http::request::Parts;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

use crate::Switches;

/// Names a switch for the [`Feature`] extractor.
pub trait SwitchName {
    /// The switch's name, as given to the [`Switches`] builder.
    const NAME: &'static str;
}

/// An axum extractor: the level of the switch `N` names, read once when the request is
/// extracted. The router's state must provide the [`Switches`] (`FromRef`).
///
/// Extracting allocates nothing: the state's `FromRef` (a reference count, as with
/// axum's `State`), a lookup by name that costs the same however many switches there
/// are, and one atomic load. A handler that wants the load alone keeps the [`Switch`]
/// itself in its state (`switches.switch("reviews")` at startup, a field read through
/// `State`) and calls [`Switch::is_on`].
///
/// [`Switch`]: crate::Switch
/// [`Switch::is_on`]: crate::Switch::is_on
///
/// ```
/// use axum::{routing::get, Router};
/// use tower_bulwark_degrade::{Feature, SwitchName, Switches};
///
/// struct Reviews;
/// impl SwitchName for Reviews {
///     const NAME: &'static str = "reviews";
/// }
///
/// async fn product(reviews: Feature<Reviews>) -> &'static str {
///     if reviews.is_on() { "product, with reviews" } else { "product" }
/// }
///
/// let switches = Switches::builder().switch("reviews").manual_evaluation().build().unwrap();
/// let app: Router = Router::new().route("/product", get(product)).with_state(switches);
/// ```
///
/// A switch the [`Switches`] do not have is a server error ([`UnknownSwitch`], 500): a
/// misspelt name is a bug to see, not a feature to serve silently.
pub struct Feature<N> {
    level: u8,
    name: PhantomData<fn() -> N>,
}

impl<N> Feature<N> {
    /// Whether the feature is served in full (level 0).
    pub fn is_on(&self) -> bool {
        self.level == 0
    }

    /// The switch's level when the request was extracted (0 on).
    pub fn level(&self) -> u8 {
        self.level
    }
}

impl<N: SwitchName> fmt::Debug for Feature<N> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Feature")
            .field("name", &N::NAME)
            .field("level", &self.level)
            .finish()
    }
}

impl<S, N> FromRequestParts<S> for Feature<N>
where
    N: SwitchName,
    Switches: FromRef<S>,
    S: Send + Sync,
{
    type Rejection = UnknownSwitch;

    async fn from_request_parts(_parts: &mut Parts, state: &S) -> Result<Self, UnknownSwitch> {
        let level = Switches::from_ref(state)
            .level(N::NAME)
            .ok_or(UnknownSwitch { name: N::NAME })?;
        Ok(Feature {
            level,
            name: PhantomData,
        })
    }
}

/// The [`Feature`] extractor's rejection: no switch has that name. A `500` naming it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnknownSwitch {
    name: &'static str,
}

impl UnknownSwitch {
    /// The name no switch has.
    pub fn name(&self) -> &'static str {
        self.name
    }
}

impl fmt::Display for UnknownSwitch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "no degradation switch named `{}`", self.name)
    }
}

impl std::error::Error for UnknownSwitch {}

impl IntoResponse for UnknownSwitch {
    fn into_response(self) -> Response {
        (StatusCode::INTERNAL_SERVER_ERROR, self.to_string()).into_response()
    }
}
