//! The task vocabulary: what a task asks of its model and what it produced.
//!
//! These are plain data, shared by every adapter, the planner, the worker protocol and the
//! callers above the orchestrator. The models themselves (and the algorithms that turn their
//! outputs into these values) live in `masp-models`; the orchestrator only moves these values
//! between a caller, an adapter and, under process isolation, a worker.

use std::path::{Path, PathBuf};

use masp_audio::AudioInfo;
use serde::Serialize;

use crate::{Error, Result};

/// The rate speech segments are counted in, in Hz (silero-vad's 16 kHz).
pub const SEGMENT_RATE_HZ: u32 = 16_000;

/// Dimensions of one speaker embedding.
pub const EMBEDDING_DIM: usize = 256;

/// One speaker embedding (d-vector).
pub type Embedding = [f32; EMBEDDING_DIM];

/// What a task asks of its model.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[non_exhaustive]
pub enum TaskParams {
    /// Speech detection with these parameters.
    Vad(VadParams),
    /// Run a generic model and write each output as `<name>.<output>.npy` in the result
    /// directory.
    Generic {
        /// Where the `.npy` files go and the name they share.
        output: ResultFiles,
    },
    /// Speaker embeddings. Without `windows`: of the whole file, one per 0.82 s window
    /// (written as `<name>.embeddings.npy` when `output` is set) and one for the file
    /// ([`TaskOutput::Embeddings`]). With `windows`: one utterance embedding per time range
    /// ([`TaskOutput::RangeEmbeddings`]; rows of `<name>.embeddings.npy` in the given order when
    /// `output` is set).
    Embed {
        /// Where the embeddings go, if anywhere.
        output: Option<ResultFiles>,
        /// Time ranges `(start_s, end_s)` of the file to embed, one embedding each, e.g. speech
        /// segments or diarization windows. `None`: the whole file. The audio from the earliest
        /// range not yet embedded onwards is buffered, so memory grows with the longest range
        /// (64 KiB per second), not with the file.
        windows: Option<Vec<(f64, f64)>>,
    },
}

/// Where a task writes its result files, and the name they share: `<dir>/<name>.<suffix>`.
///
/// The caller chooses the name (`masp-run` derives it from the input's identity, so two inputs
/// never share one); it is checked to be one plain file-name component when made, here and when
/// a worker decodes it, so a result can never be written outside `dir`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ResultFiles {
    dir: PathBuf,
    name: String,
}

/// The longest result name, in bytes: leaves room for suffixes under the usual 255-byte limit
/// (the one limit on names that become path components).
pub const MAX_RESULT_NAME_BYTES: usize = masp_model_registry::path::MAX_COMPONENT_BYTES;

impl ResultFiles {
    /// Results named `name` in `dir`.
    ///
    /// # Errors
    /// [`Error::InvalidParameter`] unless `name` is a plain file name: not empty, at most
    /// [`MAX_RESULT_NAME_BYTES`], no `/`, NUL or control character, not starting with `.`.
    ///
    /// # Examples
    ///
    /// ```
    /// use masp_orchestrator::task::ResultFiles;
    ///
    /// let files = ResultFiles::new("out", "talk-1a2b3c4d")?;
    /// assert_eq!(files.file("embeddings.npy"), std::path::Path::new("out/talk-1a2b3c4d.embeddings.npy"));
    /// assert!(ResultFiles::new("out", "../escape").is_err());
    /// # Ok::<(), masp_orchestrator::Error>(())
    /// ```
    pub fn new(dir: impl Into<PathBuf>, name: &str) -> Result<Self> {
        // The one rule for names that become paths (models, stages and results alike).
        masp_model_registry::path::check_component(name).map_err(|e| Error::InvalidParameter {
            name: "result name",
            reason: format!("{name:?} {e}"),
        })?;
        Ok(Self {
            dir: dir.into(),
            name: name.to_owned(),
        })
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The name the files share.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// `<dir>/<name>.<suffix>`.
    pub fn file(&self, suffix: &str) -> PathBuf {
        self.dir.join(format!("{}.{suffix}", self.name))
    }
}

/// What a task produced.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum TaskOutput {
    /// Speech segments.
    Segments(VadOutcome),
    /// Tensors written to disk.
    Tensors(Vec<WrittenTensor>),
    /// Speaker embeddings.
    Embeddings {
        /// The file's embedding: the normalised mean of its window embeddings (boxed: 1 KiB).
        utterance: Box<Embedding>,
        /// Windows embedded.
        n_windows: usize,
        /// The per-window embeddings, when written.
        windows: Option<WrittenTensor>,
    },
    /// One speaker embedding per requested time range ([`TaskParams::Embed`] with `windows`).
    RangeEmbeddings {
        /// One per range, in the order the ranges were given.
        embeddings: Vec<RangeEmbedding>,
        /// The embeddings as `.npy` rows, when an output directory was given.
        written: Option<WrittenTensor>,
    },
}

/// The embedding of one time range of a file.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RangeEmbedding {
    /// Start of the range, in seconds.
    pub start_s: f64,
    /// End of the range, in seconds (clipped to the end of the audio).
    pub end_s: f64,
    /// The range's utterance embedding: the L2-normalised mean of its 0.82 s windows'
    /// normalised embeddings (a range shorter than one window is zero-padded to one).
    #[serde(serialize_with = "serialize_embedding")]
    pub embedding: Embedding,
}

fn serialize_embedding<S: serde::Serializer>(e: &Embedding, s: S) -> Result<S::Ok, S::Error> {
    s.collect_seq(e.iter())
}

/// One `.npy` file written by the generic adapter.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct WrittenTensor {
    /// Output name in the model.
    pub output: String,
    /// The file.
    pub path: PathBuf,
    /// Its shape: `[n_windows, …per-window shape]`.
    pub shape: Vec<usize>,
}

/// Segmentation parameters; the defaults are `get_speech_timestamps`' defaults.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct VadParams {
    /// Probability at or above which a frame is speech. Default 0.5; lower finds quieter speech
    /// at the cost of more false alarms.
    pub threshold: f64,
    /// Probability below which speech may end. Default `max(threshold - 0.15, 0.01)`.
    pub neg_threshold: Option<f64>,
    /// Speech shorter than this is dropped, in ms. Default 250.
    pub min_speech_ms: u32,
    /// Silence must last this long to end a segment, in ms. Default 100.
    pub min_silence_ms: u32,
    /// Padding added on each side of a segment, in ms. Default 30.
    pub speech_pad_ms: u32,
    /// Longest segment in seconds before it is split. Default unlimited (`f64::INFINITY`).
    pub max_speech_s: f64,
    /// Silence at least this long (ms) is a candidate split point when a segment reaches
    /// `max_speech_s`. Default 98.
    pub min_silence_at_max_speech_ms: u32,
    /// Split an over-long segment at its longest candidate silence (true, default) or its last.
    pub use_max_poss_sil_at_max_speech: bool,
}

impl Default for VadParams {
    fn default() -> Self {
        Self {
            threshold: 0.5,
            neg_threshold: None,
            min_speech_ms: 250,
            min_silence_ms: 100,
            speech_pad_ms: 30,
            max_speech_s: f64::INFINITY,
            min_silence_at_max_speech_ms: 98,
            use_max_poss_sil_at_max_speech: true,
        }
    }
}

impl VadParams {
    /// Check ranges.
    ///
    /// # Errors
    /// [`Error::InvalidParameter`] naming the parameter.
    pub fn validate(&self) -> Result<()> {
        let invalid = |name, reason: &str| {
            Err(Error::InvalidParameter {
                name,
                reason: reason.into(),
            })
        };
        if !(self.threshold > 0.0 && self.threshold < 1.0) {
            return invalid("threshold", "must be between 0 and 1 (exclusive)");
        }
        if let Some(neg) = self.neg_threshold
            && !(neg > 0.0 && neg <= self.threshold)
        {
            return invalid("neg_threshold", "must be above 0 and at most the threshold");
        }
        if self.max_speech_s.is_nan() || self.max_speech_s <= 0.0 {
            return invalid("max_speech_s", "must be a positive number of seconds");
        }
        Ok(())
    }
}

/// A speech segment in samples at 16 kHz, end exclusive.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct SpeechSegment {
    /// First sample of speech.
    pub start_sample: u64,
    /// One past the last sample of speech.
    pub end_sample: u64,
}

impl SpeechSegment {
    /// Start in seconds.
    pub fn start_s(&self) -> f64 {
        self.start_sample as f64 / f64::from(SEGMENT_RATE_HZ)
    }
    /// End in seconds.
    pub fn end_s(&self) -> f64 {
        self.end_sample as f64 / f64::from(SEGMENT_RATE_HZ)
    }
}

/// What speech detection found in one file.
#[derive(Debug, Clone)]
pub struct VadOutcome {
    /// What the decoder reported about the file.
    pub info: AudioInfo,
    /// Samples analysed at 16 kHz.
    pub n_samples: u64,
    /// Speech segments in order.
    pub segments: Vec<SpeechSegment>,
}

impl VadOutcome {
    /// Analysed duration in seconds.
    pub fn duration_s(&self) -> f64 {
        self.n_samples as f64 / f64::from(SEGMENT_RATE_HZ)
    }
}
