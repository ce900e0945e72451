//! Errors of the model registry.

use std::path::PathBuf;

use masp_budget::Bytes;

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
        "{what} not found at {path}: run `cargo xtask setup` in a masp source checkout \
         (it fetches the pinned assets into the cache), or point {hint} at a copy you obtained \
         yourself"
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
    /// A file is not an ONNX model: not protobuf at all, or protobuf without an ONNX graph.
    #[error("{path} is not an ONNX model: {reason}")]
    NotOnnx {
        /// The file.
        path: PathBuf,
        /// What is wrong, e.g. the protobuf decoder's message or "no graph".
        reason: String,
    },
    /// Decoding a model file's structure would take far more memory than its size justifies
    /// (see [`crate::onnx::cost`]): a file built to amplify, refused before decoding.
    #[error(
        "{path} is refused: decoding its graph structure would take {decoded_bytes} for a file of \
         {file_bytes}, over the limit of {limit_bytes} (not a model an exporter writes)"
    )]
    MetadataTooLarge {
        /// The file.
        path: PathBuf,
        /// Size of the file.
        file_bytes: Bytes,
        /// What decoding it would allocate.
        decoded_bytes: Bytes,
        /// The most allowed for a file of this size.
        limit_bytes: Bytes,
    },
    /// A model file ends before the data it declares: a partial download or copy.
    #[error(
        "{path} is truncated: its content runs to at least {needed_bytes} but the file has {file_bytes}"
    )]
    Truncated {
        /// The file.
        path: PathBuf,
        /// Size of the file.
        file_bytes: Bytes,
        /// How long the file must be for the field that was cut to be complete.
        needed_bytes: Bytes,
    },
    /// A tensor's external data file is missing or shorter than the tensor declares.
    #[error(
        "external data {location:?} of model {model} is incomplete: {path} must hold {needed_bytes} \
         but {}",
        describe_found(*.found_bytes)
    )]
    ExternalDataMissing {
        /// The model file that refers to the data.
        model: PathBuf,
        /// The `location` entry as written in the model.
        location: String,
        /// Where the data file was looked for (`location` relative to the model's directory).
        path: PathBuf,
        /// `offset + length` of the tensor that does not fit.
        needed_bytes: Bytes,
        /// Size of the data file, `None` when it does not exist.
        found_bytes: Option<Bytes>,
    },
    /// A tensor's external data location leaves the model's directory (absolute, or with `..`).
    /// Refused: a model file must not make masp read arbitrary files.
    #[error(
        "model {model} refers to external data at {location:?}, outside its directory: refused \
         (external data must be a relative path below the model's directory)"
    )]
    ExternalDataOutsideModelDir {
        /// The model file.
        model: PathBuf,
        /// The offending `location` entry.
        location: String,
    },
    /// A tensor's external data descriptor cannot be interpreted (bad number, no location).
    #[error("model {model}: tensor {tensor:?} has an invalid external data entry: {reason}")]
    InvalidExternalData {
        /// The model file.
        model: PathBuf,
        /// The tensor's name.
        tensor: String,
        /// What is wrong.
        reason: String,
    },
    /// [`crate::onnx::ExternalizeOptions::alignment`] is not a power of two.
    #[error("external data alignment must be a power of two, got {alignment}")]
    InvalidAlignment {
        /// The rejected alignment in bytes.
        alignment: u64,
    },
    /// Writing a file failed.
    #[error("cannot write {path}: {source}")]
    Write {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// A model cannot be quantised as asked: no convolution to quantise, a weight that is not
    /// a float constant, or no calibration range for a tensor.
    #[error("cannot quantise: {reason}")]
    CannotQuantize {
        /// What is missing or unsupported, naming the node or tensor.
        reason: String,
    },
}

/// The end of an [`Error::ExternalDataMissing`] message.
fn describe_found(found: Option<Bytes>) -> String {
    match found {
        None => "the file does not exist".to_string(),
        Some(bytes) => format!("the file has only {bytes}"),
    }
}
