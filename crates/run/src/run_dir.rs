//! A run directory: a run's intermediate results, and the journal saying which are complete.
//!
//! Every record is named after its input's result name ([`Job::name`]) and written atomically;
//! its journal line is appended only after that, so a record that the journal names is whole.
//! One shape per kind of record:
//! - `<name>.vad.json` ([`VadRecord`]): a VAD result, sample-exact, with what the decoder said
//!   about the file (so a resumed result prints exactly as a fresh one);
//! - `<name>.embeddings.json` ([`EmbeddingsRecord`]): range embeddings.

use std::path::{Path, PathBuf};

use masp_audio::AudioInfo;
use masp_orchestrator::task::{Embedding, RangeEmbedding, SpeechSegment, VadOutcome};
use serde::{Deserialize, Serialize};

use crate::job::Job;
use crate::journal::{self, Entry, Journal};
use crate::{Error, Result};

/// A run directory and its journal.
#[derive(Debug)]
pub struct RunDir {
    path: PathBuf,
    journal: Journal,
    leftovers: usize,
    /// Results taken from the journal instead of redone, per stage.
    pub resumed: Resumed,
}

/// How many results a run took from its run directory instead of redoing them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Resumed {
    /// VAD results.
    pub vad: usize,
    /// Embedding results.
    pub embed: usize,
}

impl RunDir {
    /// Open (or create) `path` and its journal, and remove the temporary files an interrupted
    /// run left ([`RunDir::leftovers`] says how many).
    ///
    /// # Errors
    /// [`Error::Output`] when the directory or its journal cannot be created or read.
    pub fn open(path: &Path) -> Result<Self> {
        let journal = Journal::open(path)?;
        let leftovers = journal::remove_temporaries(path);
        Ok(Self {
            path: path.to_path_buf(),
            journal,
            leftovers,
            resumed: Resumed::default(),
        })
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Partial files of an interrupted run removed when it was opened.
    pub fn leftovers(&self) -> usize {
        self.leftovers
    }

    /// Whether `task` of `job` is journaled for this input and `config`, and its `output`
    /// exists.
    pub fn done(&self, task: &str, job: &Job, config: &str, output: &Path) -> bool {
        !job.input_sha256.is_empty()
            && self.journal.is_done(task, &job.input_sha256, config)
            && output.is_file()
    }

    /// Journal `task` of `job` as done with `config`, its result in `output` (already written).
    ///
    /// # Errors
    /// [`Error::Output`] when the journal cannot be written.
    pub fn record(&mut self, task: String, job: &Job, config: &str, output: &Path) -> Result<()> {
        let relative = output
            .strip_prefix(&self.path)
            .unwrap_or(output)
            .to_path_buf();
        self.journal.record(Entry {
            task,
            input_sha256: job.input_sha256.clone(),
            config_sha256: config.to_owned(),
            outputs: vec![relative],
        })
    }

    /// Where `job`'s VAD record goes.
    pub fn vad_path(&self, job: &Job) -> PathBuf {
        self.path.join(format!("{}.vad.json", job.name))
    }

    /// Where `job`'s embeddings record goes.
    pub fn embeddings_path(&self, job: &Job) -> PathBuf {
        self.path.join(format!("{}.embeddings.json", job.name))
    }

    /// Write `job`'s VAD result and journal it under `task` with `config`.
    ///
    /// # Errors
    /// [`Error::Output`] naming the file.
    pub fn save_vad(
        &mut self,
        task: String,
        job: &Job,
        config: &str,
        outcome: &VadOutcome,
    ) -> Result<()> {
        let path = self.vad_path(job);
        write_json(&path, &VadRecord::from(outcome))?;
        self.record(task, job, config, &path)
    }

    /// `job`'s VAD result as the run directory holds it.
    ///
    /// # Errors
    /// [`Error::Output`] when it cannot be read, [`Error::Malformed`] when it is not a record.
    pub fn read_vad(&self, job: &Job) -> Result<VadOutcome> {
        let path = self.vad_path(job);
        let record: VadRecord = read_json(&path)?;
        record.into_outcome(&job.path, &path)
    }

    /// Write `job`'s embeddings and journal them under `task` with `config`.
    ///
    /// # Errors
    /// [`Error::Output`] naming the file.
    pub fn save_embeddings(
        &mut self,
        task: String,
        job: &Job,
        config: &str,
        embeddings: &[RangeEmbedding],
    ) -> Result<()> {
        let path = self.embeddings_path(job);
        let record = EmbeddingsRecord {
            path: job.path.clone(),
            windows: embeddings.iter().map(|e| (e.start_s, e.end_s)).collect(),
            embeddings: embeddings.iter().map(|e| e.embedding.to_vec()).collect(),
        };
        write_json(&path, &record)?;
        self.record(task, job, config, &path)
    }

    /// `job`'s embeddings as the run directory holds them.
    ///
    /// # Errors
    /// [`Error::Output`] when they cannot be read, [`Error::Malformed`] when they are not a
    /// record (counts that differ, an embedding that is not 256 values).
    pub fn read_embeddings(&self, job: &Job) -> Result<Vec<RangeEmbedding>> {
        let path = self.embeddings_path(job);
        let record: EmbeddingsRecord = read_json(&path)?;
        let malformed = |reason: String| Error::Malformed {
            path: path.clone(),
            reason,
        };
        if record.windows.len() != record.embeddings.len() {
            return Err(malformed(format!(
                "{} windows but {} embeddings",
                record.windows.len(),
                record.embeddings.len()
            )));
        }
        record
            .windows
            .iter()
            .zip(&record.embeddings)
            .map(|(&(start_s, end_s), e)| {
                Ok(RangeEmbedding {
                    start_s,
                    end_s,
                    embedding: Embedding::try_from(e.as_slice())
                        .map_err(|_| malformed("an embedding is not 256 values".into()))?,
                })
            })
            .collect()
    }
}

/// A VAD result as a run directory keeps it.
#[derive(Debug, Serialize, Deserialize)]
pub struct VadRecord {
    /// The decoder's name for the file's codec.
    pub codec: String,
    /// The file's own sample rate.
    pub source_sample_rate_hz: u32,
    /// The file's channels.
    pub n_channels: usize,
    /// Frames the file declares, if it does.
    pub n_source_frames: Option<u64>,
    /// Samples analysed at 16 kHz.
    pub n_samples: u64,
    /// `[start_sample, end_sample)` at 16 kHz.
    pub segments: Vec<(u64, u64)>,
}

impl From<&VadOutcome> for VadRecord {
    fn from(o: &VadOutcome) -> Self {
        Self {
            codec: o.info.codec.clone(),
            source_sample_rate_hz: o.info.source_sample_rate_hz,
            n_channels: o.info.n_channels,
            n_source_frames: o.info.n_source_frames,
            n_samples: o.n_samples,
            segments: o
                .segments
                .iter()
                .map(|s| (s.start_sample, s.end_sample))
                .collect(),
        }
    }
}

impl VadRecord {
    /// The result of the input at `input`; `record` names the record file in errors.
    ///
    /// # Errors
    /// [`Error::Malformed`] when a segment is empty, reversed, out of order or past the end.
    pub fn into_outcome(self, input: &Path, record: &Path) -> Result<VadOutcome> {
        let mut previous_end = 0;
        for &(start, end) in &self.segments {
            if !(previous_end <= start && start < end && end <= self.n_samples) {
                return Err(Error::Malformed {
                    path: record.to_path_buf(),
                    reason: format!(
                        "segment [{start}, {end}) is not ordered inside 0..{} samples",
                        self.n_samples
                    ),
                });
            }
            previous_end = end;
        }
        Ok(VadOutcome {
            info: AudioInfo {
                path: input.to_path_buf(),
                codec: self.codec,
                source_sample_rate_hz: self.source_sample_rate_hz,
                n_channels: self.n_channels,
                n_source_frames: self.n_source_frames,
            },
            n_samples: self.n_samples,
            segments: self
                .segments
                .into_iter()
                .map(|(start_sample, end_sample)| SpeechSegment {
                    start_sample,
                    end_sample,
                })
                .collect(),
        })
    }
}

/// Range embeddings as a run directory keeps them.
#[derive(Debug, Serialize, Deserialize)]
pub struct EmbeddingsRecord {
    /// The input.
    pub path: PathBuf,
    /// `(start_s, end_s)` of each range.
    pub windows: Vec<(f64, f64)>,
    /// One embedding per range.
    pub embeddings: Vec<Vec<f32>>,
}

fn write_json(path: &Path, value: &impl Serialize) -> Result<()> {
    let bytes = serde_json::to_vec(value).map_err(|e| Error::Output {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })?;
    crate::write_file(path, &bytes)
}

/// The largest record read back from a run directory, in bytes: 128 MiB. The largest masp
/// writes is a file's embeddings (at [`crate::diarize::MAX_WINDOWS_PER_FILE`] windows, ~60 MB
/// of JSON); a larger file was not written by masp, and is refused before it is read.
pub const MAX_RECORD_BYTES: u64 = 128 << 20;

fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T> {
    // The record is masp's own file in masp's own directory: never a link or a special file.
    let text = read_limited(
        path,
        masp_model_registry::file::Links::Refuse,
        MAX_RECORD_BYTES,
    )?;
    serde_json::from_str(&text).map_err(|e| Error::Malformed {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })
}

/// The text of the file at `path` (a symlink is followed), refused when over `max_bytes`
/// (never reading more than that) or not a regular file (checked on the open file, which is
/// opened without blocking: a FIFO is refused, not waited on).
///
/// # Errors
/// [`Error::Output`] when it cannot be read, [`Error::Malformed`] when too large, not a regular
/// file or not UTF-8.
pub fn read_bounded(path: &Path, max_bytes: u64) -> Result<String> {
    read_limited(path, masp_model_registry::file::Links::Follow, max_bytes)
}

/// [`read_bounded`], with `links` saying whether the path may be a symbolic link.
fn read_limited(
    path: &Path,
    links: masp_model_registry::file::Links,
    max_bytes: u64,
) -> Result<String> {
    let malformed = |reason: String| Error::Malformed {
        path: path.to_path_buf(),
        reason,
    };
    let bytes = masp_model_registry::file::read_regular(path, links, max_bytes).map_err(|e| {
        // `read_regular`'s one `InvalidData`: the file is over the limit.
        if e.kind() == std::io::ErrorKind::InvalidData {
            malformed(e.to_string())
        } else {
            Error::io(path, &e)
        }
    })?;
    String::from_utf8(bytes).map_err(|_| malformed("not UTF-8 text".into()))
}
