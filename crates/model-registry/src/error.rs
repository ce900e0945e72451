//! Errors of the model registry.

use std::path::PathBuf;

/// Result alias for this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What can go wrong when locating or verifying a model or asset.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Neither `MASP_HOME` nor a per-user cache directory is available.
    #[error("no asset cache directory: set MASP_HOME to a writable directory")]
    NoHome,
    /// An asset file is not where it should be.
    #[error(
        "{what} not found at {path}: run `cargo xtask setup` (or `masp setup`), \
         or point {hint} at a copy you obtained yourself"
    )]
    AssetMissing {
        /// Human name of the asset.
        what: String,
        /// Where it was looked for.
        path: PathBuf,
        /// The environment variable that can point elsewhere.
        hint: &'static str,
    },
    /// A file's content does not match its pinned or declared sha256.
    #[error("checksum mismatch for {path}: expected sha256 {expected}, found {actual}")]
    ChecksumMismatch {
        /// The file checked.
        path: PathBuf,
        /// The pinned or declared hash.
        expected: String,
        /// The hash of the file's content.
        actual: String,
    },
    /// Reading a file failed.
    #[error("cannot read {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
}
