//! [`ConfigError`] and the checks every builder in the workspace shares.

use std::borrow::Cow;
use std::fmt;
use std::time::Duration;

/// A configuration value was rejected by a builder.
///
/// Every builder in tower-bulwark validates its input and returns this error instead of
/// panicking. It names the offending field so the message points at the line to fix.
///
/// ```
/// use tower_bulwark_core::ConfigError;
///
/// let err = ConfigError::new("failure_rate_threshold", "must be within 0..=1, got 1.5");
/// assert_eq!(err.field(), "failure_rate_threshold");
/// assert_eq!(
///     err.to_string(),
///     "invalid `failure_rate_threshold`: must be within 0..=1, got 1.5"
/// );
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    field: &'static str,
    problem: Cow<'static, str>,
    /// Where the value came from in a configuration file, when it did.
    path: Option<Cow<'static, str>>,
}

impl ConfigError {
    /// A new error about `field`, with a short description of the problem.
    pub fn new(field: &'static str, problem: impl Into<Cow<'static, str>>) -> Self {
        ConfigError {
            field,
            problem: problem.into(),
            path: None,
        }
    }

    /// The same error, placed at `path` in a configuration file (the key and the sections
    /// around it, `clients.inventory.retry.budget_ratio`): the message names the path
    /// instead of the builder's field, so it points at the line of the file to fix.
    ///
    /// ```
    /// use tower_bulwark_core::ConfigError;
    ///
    /// let err = ConfigError::new("retry_ratio", "must be within 0..=1, got 1.5")
    ///     .at("clients.inventory.retry.budget_ratio");
    /// assert_eq!(err.field(), "retry_ratio");
    /// assert_eq!(err.path(), Some("clients.inventory.retry.budget_ratio"));
    /// assert_eq!(
    ///     err.to_string(),
    ///     "invalid `clients.inventory.retry.budget_ratio`: must be within 0..=1, got 1.5"
    /// );
    /// ```
    pub fn at(mut self, path: impl Into<Cow<'static, str>>) -> Self {
        self.path = Some(path.into());
        self
    }

    /// The name of the rejected field, as spelled in the builder method.
    pub fn field(&self) -> &'static str {
        self.field
    }

    /// Where in a configuration file the rejected value is, if [`at`](Self::at) said.
    pub fn path(&self) -> Option<&str> {
        self.path.as_deref()
    }

    /// What is wrong with it.
    pub fn problem(&self) -> &str {
        &self.problem
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let place = self.path.as_deref().unwrap_or(self.field);
        write!(f, "invalid `{place}`: {}", self.problem)
    }
}

impl std::error::Error for ConfigError {}

/// Accepts a ratio within `0.0..=1.0`; NaN and anything outside is an error.
///
/// ```
/// use tower_bulwark_core::config::ratio;
///
/// assert_eq!(ratio("retry_ratio", 0.25), Ok(0.25));
/// assert!(ratio("retry_ratio", f64::NAN).is_err());
/// assert!(ratio("retry_ratio", -0.1).is_err());
/// ```
pub fn ratio(field: &'static str, value: f64) -> Result<f64, ConfigError> {
    if (0.0..=1.0).contains(&value) {
        Ok(value)
    } else {
        Err(ConfigError::new(
            field,
            format!("must be within 0..=1, got {value}"),
        ))
    }
}

/// Accepts a finite number that is zero or more; NaN, infinities and negatives are errors.
pub fn non_negative(field: &'static str, value: f64) -> Result<f64, ConfigError> {
    if value.is_finite() && value >= 0.0 {
        Ok(value)
    } else {
        Err(ConfigError::new(
            field,
            format!("must be a finite number >= 0, got {value}"),
        ))
    }
}

/// Accepts a count greater than zero (any unsigned integer type).
pub fn non_zero<T: Copy + PartialOrd + Default>(
    field: &'static str,
    value: T,
) -> Result<T, ConfigError> {
    if value > T::default() {
        Ok(value)
    } else {
        Err(ConfigError::new(field, "must be greater than 0"))
    }
}

/// Accepts a duration greater than zero.
pub fn non_zero_duration(field: &'static str, value: Duration) -> Result<Duration, ConfigError> {
    if value.is_zero() {
        Err(ConfigError::new(field, "must be longer than zero"))
    } else {
        Ok(value)
    }
}

/// Accepts `value` when it is at most `limit`, where `limit` is the value of `limit_field`.
///
/// ```
/// use tower_bulwark_core::config::at_most;
///
/// assert!(at_most("minimum_calls", 5, "window_size", 10).is_ok());
/// let err = at_most("minimum_calls", 50, "window_size", 10).unwrap_err();
/// assert_eq!(err.field(), "minimum_calls");
/// ```
pub fn at_most<T: PartialOrd + fmt::Display>(
    field: &'static str,
    value: T,
    limit_field: &'static str,
    limit: T,
) -> Result<T, ConfigError> {
    if value <= limit {
        Ok(value)
    } else {
        Err(ConfigError::new(
            field,
            format!("must be at most `{limit_field}` ({limit}), got {value}"),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ratio_bounds_are_inclusive_and_nan_is_rejected() {
        assert_eq!(ratio("r", 0.0), Ok(0.0));
        assert_eq!(ratio("r", 1.0), Ok(1.0));
        for bad in [f64::NAN, f64::INFINITY, f64::NEG_INFINITY, -0.0001, 1.0001] {
            let err = ratio("r", bad).unwrap_err();
            assert_eq!(err.field(), "r");
        }
    }

    #[test]
    fn non_negative_rejects_nan_infinity_and_negatives() {
        assert_eq!(non_negative("x", 0.0), Ok(0.0));
        assert_eq!(non_negative("x", 1e300), Ok(1e300));
        for bad in [f64::NAN, f64::INFINITY, -1.0] {
            assert_eq!(non_negative("x", bad).unwrap_err().field(), "x");
        }
    }

    #[test]
    fn zero_counts_and_durations_are_rejected() {
        assert_eq!(non_zero("n", 1), Ok(1));
        assert_eq!(non_zero("n", 0).unwrap_err().field(), "n");
        assert!(non_zero_duration("d", Duration::from_nanos(1)).is_ok());
        let err = non_zero_duration("d", Duration::ZERO).unwrap_err();
        assert_eq!(err.to_string(), "invalid `d`: must be longer than zero");
    }

    #[test]
    fn an_error_placed_in_a_file_keeps_its_field_problem_and_path() {
        let err = ConfigError::new("retry_ratio", "must be within 0..=1, got 1.5");
        assert_eq!(err.path(), None);
        assert_eq!(err.problem(), "must be within 0..=1, got 1.5");
        let err = err.at("clients.inventory.retry.budget_ratio");
        assert_eq!(err.field(), "retry_ratio");
        assert_eq!(err.path(), Some("clients.inventory.retry.budget_ratio"));
        assert_eq!(err.problem(), "must be within 0..=1, got 1.5");
    }

    #[test]
    fn at_most_names_both_fields() {
        let err = at_most("min", 11u32, "max", 10).unwrap_err();
        assert_eq!(
            err.to_string(),
            "invalid `min`: must be at most `max` (10), got 11"
        );
        assert_eq!(at_most("min", 10u32, "max", 10), Ok(10));
    }
}
