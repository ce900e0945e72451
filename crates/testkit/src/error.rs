//! Errors of the testkit.

use std::path::PathBuf;

/// Result alias for this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What can go wrong when generating a synthetic model or a fixture, or writing a report.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The parameters of a generator are unusable.
    #[error("invalid {generator} parameters: {reason}")]
    InvalidSpec {
        /// The generator, e.g. `weights_model`.
        generator: &'static str,
        /// What is wrong.
        reason: String,
    },
    /// Reading or writing a file failed.
    #[error("cannot write {path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// Writing or checking an ONNX file failed.
    #[error(transparent)]
    Model(#[from] masp_model_registry::Error),
    /// A committed fixture is not where the workspace keeps it.
    #[error(
        "fixture {name} not found (searched {searched:?}); run from a masp checkout or set MASP_SAMPLES_DIR"
    )]
    FixtureMissing {
        /// The file looked for.
        name: String,
        /// The directories searched.
        searched: Vec<PathBuf>,
    },
    /// Writing a generated audio file failed.
    #[error("cannot write audio {path}: {source}")]
    Audio {
        /// The file.
        path: PathBuf,
        /// What masp-audio said.
        source: masp_audio::Error,
    },
    /// Encoding a result as JSON failed.
    #[error("cannot encode JSON: {0}")]
    Json(String),
    /// Writing the profiler's report failed.
    #[error("cannot write the profiler report: {0}")]
    Report(String),
}
