//! Errors of the orchestrator.

use std::path::PathBuf;

/// Result alias for this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What can go wrong while loading a model or processing audio with it.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The ONNX Runtime library is not where masp looked.
    #[error(
        "ONNX Runtime library not found at {path} ({origin}): run `cargo xtask setup`, \
         or set ORT_DYLIB_PATH to a libonnxruntime.so of version >= 1.31"
    )]
    RuntimeMissing {
        /// Where it was looked for.
        path: PathBuf,
        /// Which setting named that path.
        origin: &'static str,
    },
    /// The library exists but could not be loaded or initialised.
    #[error("cannot initialise ONNX Runtime from {path}: {reason}")]
    RuntimeInit {
        /// The library file.
        path: PathBuf,
        /// What the loader said.
        reason: String,
    },
    /// ONNX Runtime refused to create a session for a model.
    #[error("cannot load model {model} from {path}: {reason}")]
    Load {
        /// Model name.
        model: String,
        /// Model file.
        path: PathBuf,
        /// What ONNX Runtime said.
        reason: String,
    },
    /// The model's inputs or outputs are not what its adapter needs.
    #[error("model {model} does not fit its adapter: {reason}")]
    ModelInterface {
        /// Model name.
        model: String,
        /// What is missing or different.
        reason: String,
    },
    /// A model call failed.
    #[error("inference with {model} failed: {reason}")]
    Inference {
        /// Model name.
        model: String,
        /// What ONNX Runtime said.
        reason: String,
    },
    /// Invalid parameters, e.g. a threshold outside 0..1.
    #[error("invalid parameter {name}: {reason}")]
    InvalidParameter {
        /// Parameter name as the user knows it.
        name: &'static str,
        /// Why it is invalid.
        reason: String,
    },
    /// Reading or decoding audio failed.
    #[error(transparent)]
    Audio(#[from] masp_audio::Error),
    /// Locating or verifying a model or asset failed.
    #[error(transparent)]
    Registry(#[from] masp_model_registry::Error),
}
