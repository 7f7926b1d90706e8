//! [`Replayable`]: whether a request can be sent again, read by the layers that resend it.

use std::fmt;
use std::sync::Arc;

/// In a request's extensions: whether the request's body can still be sent again in full.
///
/// A streaming body can be read only once. A layer that records it for replay (the retry
/// crate's `ReplayLayer`) puts a `Replayable` in the request's extensions, and a layer that
/// sends a copy of the request after the original went out (the fallback crate's
/// `BackupLayer`) asks it first. The answer can change while the original is sent (it turns
/// false once the body outgrows what is recorded, or reading it fails). A request without
/// one is taken as replayable: its body is `Clone`.
#[derive(Clone)]
pub struct Replayable(Arc<dyn CanReplay>);

/// What a [`Replayable`] asks: the shared state of a body recorded for replay.
pub trait CanReplay: Send + Sync + 'static {
    /// Whether a copy of the body made now can send the whole body.
    fn can_replay(&self) -> bool;
}

impl Replayable {
    /// A `Replayable` that asks `state`.
    pub fn new(state: Arc<dyn CanReplay>) -> Self {
        Replayable(state)
    }

    /// Whether a copy of the request made now can send its whole body.
    pub fn can_replay(&self) -> bool {
        self.0.can_replay()
    }

    /// Whether `request` can be sent again: false only when it carries a `Replayable`
    /// that says it cannot.
    #[cfg(feature = "http")]
    pub fn check<B>(request: &http::Request<B>) -> bool {
        request
            .extensions()
            .get::<Replayable>()
            .is_none_or(Replayable::can_replay)
    }
}

impl fmt::Debug for Replayable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Replayable")
            .field("can_replay", &self.can_replay())
            .finish()
    }
}
