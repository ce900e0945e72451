//! A job: one input through a run's stages, with the name its results are kept under.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use crate::Result;
use crate::name::{result_name, result_names};

/// One input through the stages: where its results go, and whether it failed.
#[derive(Debug, Clone)]
pub struct Job {
    /// The input as given.
    pub path: PathBuf,
    /// Its result name ([`result_name`]): every file of this input in a run directory starts
    /// with it.
    pub name: String,
    /// sha256 of the file's content; empty when it cannot be read (never "done", fails when it
    /// runs).
    pub input_sha256: String,
    /// The job failed in some stage; later stages skip it.
    pub failed: bool,
}

impl Job {
    /// The job of the input at `path` (reads it once, for its sha256).
    pub fn new(path: &Path) -> Self {
        Self::named(path, result_name(path))
    }

    fn named(path: &Path, name: String) -> Self {
        Self {
            path: path.to_path_buf(),
            name,
            input_sha256: masp_model_registry::assets::sha256_file(path).unwrap_or_default(),
            failed: false,
        }
    }

    /// The jobs of `inputs`, in order.
    ///
    /// # Errors
    /// [`crate::Error::InvalidParameter`] when two inputs would share a result name (the same
    /// file given twice, by any path): checked before anything is read or written.
    pub fn all(inputs: &[PathBuf]) -> Result<Vec<Self>> {
        let names = result_names(inputs)?;
        Ok(inputs
            .iter()
            .zip(names)
            .map(|(p, name)| Self::named(p, name))
            .collect())
    }
}

/// The inputs of `jobs` that failed.
pub fn failed_inputs(jobs: &[Job]) -> BTreeSet<PathBuf> {
    jobs.iter()
        .filter(|j| j.failed)
        .map(|j| j.path.clone())
        .collect()
}
