//! Errors: [`Error`] for refused admissions at run time, [`ConfigError`] for bad configuration.

use crate::Bytes;

/// `Result` with this crate's run-time [`Error`] as the default error type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// A reservation was refused.
///
/// Every variant carries the figures that decided the refusal, and its message prints them in
/// human units, so a log line alone explains what did not fit.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The ledger would exceed the limit: `reserved + baseline + requested > limit`.
    #[error(
        "cannot reserve {requested} for {purpose}: {reserved} reserved + {baseline} baseline + \
         {requested} requested exceeds the {limit} limit"
    )]
    OverBudget {
        /// What the memory was for, as given to `try_reserve`.
        purpose: String,
        /// The amount asked for (for a resize: the growth).
        requested: Bytes,
        /// Sum of the other live reservations at that moment.
        reserved: Bytes,
        /// The process's unreserved baseline at that moment.
        baseline: Bytes,
        /// The budget's effective limit.
        limit: Bytes,
    },
    /// The system does not have the memory right now, whatever the budget says.
    #[error(
        "cannot reserve {requested} for {purpose}: the system has only {available} available \
         and {margin} is kept free as a safety margin"
    )]
    SystemMemoryLow {
        /// What the memory was for, as given to `try_reserve`.
        purpose: String,
        /// The amount asked for (for a resize: the growth).
        requested: Bytes,
        /// The system's available memory when the request was checked.
        available: Bytes,
        /// The configured safety margin.
        margin: Bytes,
    },
}

/// Configuration could not be understood.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// A size string did not parse (see [`Bytes`] for the accepted forms).
    #[error("invalid size {input:?}: {reason}")]
    InvalidSize {
        /// The text as given.
        input: String,
        /// Why it was rejected.
        reason: &'static str,
    },
    /// An environment variable holds something that is not a size.
    #[error("{var}={value:?} is not a valid size: {reason}")]
    InvalidEnv {
        /// The variable's name, e.g. `MASP_BUDGET`.
        var: &'static str,
        /// Its value (lossily converted if it was not UTF-8).
        value: String,
        /// Why it was rejected.
        reason: &'static str,
    },
}

impl From<crate::bytes::ParseBytesError> for ConfigError {
    fn from(e: crate::bytes::ParseBytesError) -> Self {
        ConfigError::InvalidSize {
            input: e.input,
            reason: e.reason,
        }
    }
}
