//! Errors of the testkit.

use std::path::PathBuf;

/// Result alias for this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What can go wrong when generating a synthetic model.
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
}
