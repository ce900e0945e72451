//! Errors of durable runs.

use std::path::PathBuf;

/// Result alias for this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What can go wrong while running, resuming or merging a run.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A parameter is out of range; found before any work was done.
    #[error("invalid parameter {name}: {reason}")]
    InvalidParameter {
        /// Parameter name as the user knows it.
        name: &'static str,
        /// Why it is invalid.
        reason: String,
    },
    /// A file's speech would be cut into more embedding windows than one file may have
    /// ([`crate::diarize::MAX_WINDOWS_PER_FILE`]).
    #[error(
        "{speech_s:.1} s of speech in windows of {window_s} s every {hop_s} s gives more than \
         {limit} windows, the most one file may have: use a larger --hop-s"
    )]
    TooManyWindows {
        /// Seconds of speech in the file.
        speech_s: f64,
        /// The window length.
        window_s: f64,
        /// The hop.
        hop_s: f64,
        /// [`crate::diarize::MAX_WINDOWS_PER_FILE`].
        limit: usize,
    },
    /// Memory for a step outside any model (e.g. clustering a file's windows) was refused by
    /// the budget.
    #[error(transparent)]
    Budget(#[from] masp_budget::Error),
    /// A result, record or journal line could not be written or read back.
    #[error("{}: {reason}", path.display())]
    Output {
        /// The file or directory.
        path: PathBuf,
        /// What went wrong.
        reason: String,
    },
    /// A file the run depends on (pipeline file, shard manifest, record) is malformed.
    #[error("{}: {reason}", path.display())]
    Malformed {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// Shards that cannot be merged, or results that would be lost by merging them.
    #[error("refusing to merge: {reason}")]
    Refused {
        /// Why.
        reason: String,
    },
    /// Another process holds the run directory's lock ([`crate::lock::RunLock`]).
    #[error(
        "run directory {} is in use by another masp ({}); wait for it to finish or use another --out",
        dir.display(),
        pid.map_or_else(|| "pid unknown".to_owned(), |p| format!("pid {p}"))
    )]
    InUse {
        /// The run directory.
        dir: PathBuf,
        /// The holder's process id, when it has written it.
        pid: Option<u32>,
    },
    /// Loading, planning or running a model failed.
    #[error(transparent)]
    Orchestrator(#[from] masp_orchestrator::Error),
}

impl Error {
    /// An [`Error::Output`] for an I/O error on `path`; [`Error::Malformed`] when the error is
    /// that `path` is not a regular file (`masp_model_registry::file`): that is no failed write
    /// a rerun resumes from, but a file in the way.
    pub fn io(path: impl Into<PathBuf>, e: &std::io::Error) -> Self {
        let path = path.into();
        match masp_model_registry::file::NotRegularFile::of(e) {
            Some(not_regular) => Error::Malformed {
                path,
                reason: not_regular.to_string(),
            },
            None => Error::Output {
                path,
                reason: e.to_string(),
            },
        }
    }
}
