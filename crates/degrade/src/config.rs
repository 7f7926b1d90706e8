//! What the builders share in checking their fields.

use std::time::Duration;

use tower_bulwark_core::ConfigError;

/// The longest window and evaluation interval accepted: longer ones make no sense for
/// switches that react to pressure, and would overflow instants and nanosecond counts.
pub(crate) const MAX_SPAN: Duration = Duration::from_secs(24 * 60 * 60);

/// Accepts `value` when it is at most [`MAX_SPAN`].
pub(crate) fn at_most_a_day(field: &'static str, value: Duration) -> Result<(), ConfigError> {
    if value > MAX_SPAN {
        return Err(ConfigError::new(
            field,
            format!("must be at most 24 hours, got {value:?}"),
        ));
    }
    Ok(())
}
