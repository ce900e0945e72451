//! Errors: [`ConfigError`] for a bad [`ProfilerConfig`](crate::ProfilerConfig), [`Error`] for
//! failures while profiling or writing reports.

use std::path::PathBuf;

/// `Result` with this crate's [`Error`] as the default error type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// A [`ProfilerConfig`](crate::ProfilerConfig) that cannot work.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The sampling interval must be at least one microsecond.
    #[error("sampling interval must be positive, got {interval_ns} ns")]
    InvalidInterval {
        /// The interval given.
        interval_ns: u128,
    },
    /// The timeline needs room for at least two buckets (it merges pairs when full).
    #[error("max_buckets must be an even number of at least 2, got {max_buckets}")]
    InvalidMaxBuckets {
        /// The capacity given.
        max_buckets: usize,
    },
}

/// Profiling or reporting failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The configuration was rejected.
    #[error(transparent)]
    Config(ConfigError),
    /// This platform does not report the process's RSS, so there is nothing to sample.
    #[error("this platform does not report the process's resident memory")]
    RssUnavailable,
    /// The sampler thread could not be started.
    #[error("cannot start the memory sampler thread")]
    SpawnSampler {
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// A report file could not be written.
    #[error("cannot write {}", path.display())]
    WriteReport {
        /// The file (or directory) that failed.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// The report could not be encoded as JSON.
    #[error("cannot encode the report as JSON")]
    Json {
        /// The encoder's error.
        #[source]
        source: serde_json::Error,
    },
}
