//! masp-run: durable runs over masp's orchestrator and models.
//!
//! Everything a Rust project needs to run "VAD, then speaker embeddings, under a budget,
//! resumable" without masp's command line:
//! - [`name`]: the one function that names an input's results;
//! - [`journal`]: the run journal, so a stopped run resumes without losing or redoing work;
//! - [`diarize`]: speech windows, clustering and speaker turns from segments and embeddings.
#![warn(missing_docs)]

pub mod diarize;
mod error;
pub mod journal;
pub mod name;

pub use error::{Error, Result};
