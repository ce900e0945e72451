//! Model adapters: how each kind of model turns an audio task into model calls.
//!
//! Like symphonia's codec registry: [`ModelAdapter`] is what an adapter must provide, and
//! [`AdapterRegistry`] maps a [`ModelKind`] to the constructor that loads a model of that kind.
//! Adapters call [`TaskContext::check`] between chunks; that is where the orchestrator cancels a
//! task whose memory crosses the budget.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use masp_audio::{ChunkStream, StreamOptions};
use masp_model_registry::manifest::{GenericSpec, ModelKind, ModelSpec};
use ort::session::Session;
use ort::value::TensorRef;
use serde::Serialize;

use crate::embedder::{EMBEDDING_DIM, Embedding, SpeakerEmbedder};
use crate::npy::NpyWriter;
use crate::runtime::{Runtime, SessionOptions};
use crate::silero::SileroVad;
use crate::vad::{VadOutcome, VadParams, detect_speech_with};
use crate::{Error, Result};

/// What a task asks of its model.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[non_exhaustive]
pub enum TaskParams {
    /// Speech detection with these parameters.
    Vad(VadParams),
    /// Run a generic model and write its outputs as `.npy` files into `output_dir`.
    Generic {
        /// Where `<input stem>.<output>.npy` files go.
        output_dir: PathBuf,
    },
    /// Speaker embeddings. Without `windows`: of the whole file, one per 0.82 s window
    /// (written as `<stem>.embeddings.npy` when `output_dir` is set) and one for the file
    /// ([`TaskOutput::Embeddings`]). With `windows`: one utterance embedding per time range
    /// ([`TaskOutput::RangeEmbeddings`]; rows of `<stem>.embeddings.npy` in the given order when
    /// `output_dir` is set).
    Embed {
        /// Where the embeddings go, if anywhere.
        output_dir: Option<PathBuf>,
        /// Time ranges `(start_s, end_s)` of the file to embed, one embedding each, e.g. speech
        /// segments or diarization windows. `None`: the whole file. The audio from the earliest
        /// range not yet embedded onwards is buffered, so memory grows with the longest range
        /// (64 KiB per second), not with the file.
        windows: Option<Vec<(f64, f64)>>,
    },
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

/// Between-chunk control of a running task: the chunk size to use and the cancellation check.
pub struct TaskContext<'a> {
    chunk_samples: usize,
    check: &'a mut dyn FnMut(u64) -> Result<()>,
}

impl std::fmt::Debug for TaskContext<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TaskContext")
            .field("chunk_samples", &self.chunk_samples)
            .finish()
    }
}

impl<'a> TaskContext<'a> {
    /// A context with a chunk size (samples at the model's rate) and a check called between
    /// chunks with the samples done so far.
    pub fn new(chunk_samples: usize, check: &'a mut dyn FnMut(u64) -> Result<()>) -> Self {
        Self {
            chunk_samples: chunk_samples.max(1),
            check,
        }
    }

    /// Samples per chunk the orchestrator chose (from budget headroom and calibration).
    pub fn chunk_samples(&self) -> usize {
        self.chunk_samples
    }

    /// Call between chunks; an error means stop now (cancelled).
    ///
    /// # Errors
    /// Whatever the orchestrator's check returns, typically [`Error::Cancelled`].
    pub fn check(&mut self, samples_done: u64) -> Result<()> {
        (self.check)(samples_done)
    }
}

/// What every model adapter provides.
pub trait ModelAdapter: Send + std::fmt::Debug {
    /// Forget per-stream state (between files).
    fn reset(&mut self);
    /// Run one task on the file at `input`.
    ///
    /// # Errors
    /// Audio, inference or output errors, or the context's cancellation.
    fn run(
        &mut self,
        input: &Path,
        params: &TaskParams,
        ctx: &mut TaskContext<'_>,
    ) -> Result<TaskOutput>;

    /// The worker process running the model, when it runs in one (process isolation).
    fn worker(&self) -> Option<crate::worker::WorkerStatus> {
        None
    }

    /// Whether the model can no longer run (its worker died or was killed) and must be
    /// unloaded.
    fn is_dead(&self) -> bool {
        false
    }
}

/// Loads a model of one kind and wraps it in its adapter.
pub type AdapterConstructor =
    fn(&Runtime, &ModelSpec, &Path, SessionOptions) -> Result<Box<dyn ModelAdapter>>;

/// Maps model kinds to adapter constructors.
#[derive(Debug, Clone)]
pub struct AdapterRegistry {
    constructors: BTreeMap<ModelKind, AdapterConstructor>,
}

impl Default for AdapterRegistry {
    /// The adapters masp ships: `vad`, `speaker-embedding` and `generic`.
    fn default() -> Self {
        let mut registry = Self {
            constructors: BTreeMap::new(),
        };
        registry.register(ModelKind::Vad, VadAdapter::load);
        registry.register(ModelKind::Generic, GenericAdapter::load);
        registry.register(ModelKind::SpeakerEmbedding, EmbedAdapter::load);
        registry
    }
}

impl AdapterRegistry {
    /// Add or replace the constructor for `kind`.
    pub fn register(&mut self, kind: ModelKind, constructor: AdapterConstructor) {
        self.constructors.insert(kind, constructor);
    }

    /// The kinds that can be loaded.
    pub fn supported(&self) -> Vec<ModelKind> {
        self.constructors.keys().copied().collect()
    }

    /// Load `spec` from `path` with the adapter for its kind.
    ///
    /// # Errors
    /// [`Error::ModelInterface`] when no adapter handles the kind; the constructor's errors.
    pub fn load(
        &self,
        runtime: &Runtime,
        spec: &ModelSpec,
        path: &Path,
        options: SessionOptions,
    ) -> Result<Box<dyn ModelAdapter>> {
        let constructor =
            self.constructors
                .get(&spec.kind)
                .ok_or_else(|| Error::ModelInterface {
                    model: spec.name.clone(),
                    reason: format!(
                        "no adapter for kind {} (supported: {:?})",
                        spec.kind,
                        self.supported()
                            .iter()
                            .map(|k| k.as_str())
                            .collect::<Vec<_>>()
                    ),
                })?;
        constructor(runtime, spec, path, options)
    }
}

/// Silero VAD as an adapter.
#[derive(Debug)]
pub struct VadAdapter {
    vad: SileroVad,
}

impl VadAdapter {
    fn load(
        runtime: &Runtime,
        spec: &ModelSpec,
        path: &Path,
        options: SessionOptions,
    ) -> Result<Box<dyn ModelAdapter>> {
        Ok(Box::new(Self {
            vad: SileroVad::load(runtime, &spec.name, path, options)?,
        }))
    }
}

impl ModelAdapter for VadAdapter {
    fn reset(&mut self) {
        self.vad.reset();
    }

    fn run(
        &mut self,
        input: &Path,
        params: &TaskParams,
        ctx: &mut TaskContext<'_>,
    ) -> Result<TaskOutput> {
        let TaskParams::Vad(params) = params else {
            return Err(Error::InvalidParameter {
                name: "stage",
                reason: "a vad model needs vad parameters".into(),
            });
        };
        // 2 s chunks: measured on an hour of speech, 16 s blocks ran ~15% slower and took
        // 16 MiB more (the runtime's arena grows with the block).
        let chunk = ctx.chunk_samples();
        let outcome = detect_speech_with(&mut self.vad, input, params, chunk, &mut |done| {
            ctx.check(done)
        })?;
        Ok(TaskOutput::Segments(outcome))
    }
}

/// Any ONNX audio model: waveform windows `[1, window]` in, every (or the chosen) float output
/// written as one `.npy` per output, rows = windows.
#[derive(Debug)]
pub struct GenericAdapter {
    name: String,
    session: Session,
    spec: GenericSpec,
    sample_rate_hz: u32,
}

impl GenericAdapter {
    fn load(
        runtime: &Runtime,
        spec: &ModelSpec,
        path: &Path,
        options: SessionOptions,
    ) -> Result<Box<dyn ModelAdapter>> {
        let generic = spec.generic.clone().ok_or_else(|| Error::ModelInterface {
            model: spec.name.clone(),
            reason: "a generic model needs a [model.generic] table".into(),
        })?;
        let session = runtime.session(&spec.name, path, options)?;
        let inputs: Vec<&str> = session.inputs().iter().map(|o| o.name()).collect();
        if !inputs.contains(&generic.input.as_str()) {
            return Err(Error::ModelInterface {
                model: spec.name.clone(),
                reason: format!(
                    "no input named {:?}; the model's inputs are {inputs:?}",
                    generic.input
                ),
            });
        }
        let outputs: Vec<&str> = session.outputs().iter().map(|o| o.name()).collect();
        if let Some(missing) = generic
            .outputs
            .iter()
            .find(|o| !outputs.contains(&o.as_str()))
        {
            return Err(Error::ModelInterface {
                model: spec.name.clone(),
                reason: format!("no output named {missing:?}; the model's outputs are {outputs:?}"),
            });
        }
        Ok(Box::new(Self {
            name: spec.name.clone(),
            session,
            spec: generic,
            sample_rate_hz: spec.sample_rate_hz,
        }))
    }

    fn window_and_hop(&self, chunk_samples: usize) -> (usize, usize) {
        self.spec
            .window_and_hop(self.sample_rate_hz)
            .unwrap_or((chunk_samples, chunk_samples))
    }

    /// One window through the model; outputs appended to `writers` (created on first use).
    fn run_window(
        &mut self,
        window: &[f32],
        stem: &str,
        output_dir: &Path,
        writers: &mut Vec<(String, NpyWriter)>,
    ) -> Result<()> {
        let infer = |e: ort::Error| Error::Inference {
            model: self.name.clone(),
            reason: e.to_string(),
        };
        let input = TensorRef::from_array_view(([1usize, window.len()], window)).map_err(infer)?;
        let outputs = self
            .session
            .run(ort::inputs![self.spec.input.as_str() => input])
            .map_err(|e| Error::Inference {
                model: self.name.clone(),
                reason: e.to_string(),
            })?;
        for (name, value) in outputs.iter() {
            if !self.spec.outputs.is_empty() && !self.spec.outputs.iter().any(|o| o == name) {
                continue;
            }
            let (shape, data) =
                value
                    .try_extract_tensor::<f32>()
                    .map_err(|e| Error::ModelInterface {
                        model: self.name.clone(),
                        reason: format!("output {name:?} is not a float32 tensor: {e}"),
                    })?;
            let dims: Vec<usize> = shape.iter().map(|&d| d.max(0) as usize).collect();
            // A leading batch dimension of 1 is dropped: rows are windows.
            let row_shape: Vec<usize> = if dims.first() == Some(&1) {
                dims[1..].to_vec()
            } else {
                dims
            };
            let io = |e: std::io::Error, path: &Path| Error::Output {
                path: path.to_path_buf(),
                reason: e.to_string(),
            };
            let writer = match writers.iter_mut().position(|(n, _)| n == name) {
                Some(i) => &mut writers[i].1,
                None => {
                    let file = output_dir.join(format!("{stem}.{}.npy", sanitize(name)));
                    let w = NpyWriter::create(&file, &row_shape).map_err(|e| io(e, &file))?;
                    writers.push((name.to_string(), w));
                    let last = writers.len() - 1;
                    &mut writers[last].1
                }
            };
            if writer.row_shape() != row_shape.as_slice() {
                return Err(Error::ModelInterface {
                    model: self.name.clone(),
                    reason: format!(
                        "output {name:?} changed shape between windows ({:?} then {row_shape:?})",
                        writer.row_shape()
                    ),
                });
            }
            writer.push_row(data).map_err(|e| Error::Output {
                path: output_dir.to_path_buf(),
                reason: e.to_string(),
            })?;
        }
        Ok(())
    }
}

/// Close an embeddings `.npy` writer, if there is one, into its [`WrittenTensor`].
fn finish_embeddings(writer: Option<NpyWriter>, input: &Path) -> Result<Option<WrittenTensor>> {
    let Some(w) = writer else { return Ok(None) };
    let (path, shape) = w.finish().map_err(|e| Error::Output {
        path: input.to_path_buf(),
        reason: e.to_string(),
    })?;
    Ok(Some(WrittenTensor {
        output: "embedding".into(),
        path,
        shape,
    }))
}

/// A name safe to put in a file name.
/// A file's name without its extension, made safe for a file name (letters, digits, `-`,
/// `_`; anything else becomes `_`): how output files are named after their input.
///
/// # Examples
///
/// ```
/// use std::path::Path;
/// assert_eq!(masp_orchestrator::adapter::safe_stem(Path::new("a/My talk.v2.wav")), "My_talk_v2");
/// ```
pub fn safe_stem(path: &Path) -> String {
    sanitize(
        &path
            .file_stem()
            .map(|s| s.to_string_lossy())
            .unwrap_or_default(),
    )
}

fn sanitize(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

impl ModelAdapter for GenericAdapter {
    fn reset(&mut self) {}

    fn run(
        &mut self,
        input: &Path,
        params: &TaskParams,
        ctx: &mut TaskContext<'_>,
    ) -> Result<TaskOutput> {
        let TaskParams::Generic { output_dir } = params else {
            return Err(Error::InvalidParameter {
                name: "stage",
                reason: "a generic model needs an output directory".into(),
            });
        };
        std::fs::create_dir_all(output_dir).map_err(|e| Error::Output {
            path: output_dir.clone(),
            reason: e.to_string(),
        })?;
        let stem = safe_stem(input);
        let (window, hop) = self.window_and_hop(ctx.chunk_samples());
        let mut stream =
            ChunkStream::open(input, StreamOptions::new(self.sample_rate_hz, hop.max(1)))?;
        let mut buffer: Vec<f32> = Vec::with_capacity(window + hop);
        let mut writers = Vec::new();
        let mut n_windows = 0u64;
        let mut covered = 0usize; // samples of `buffer` already inside some window
        while let Some(chunk) = stream.next_chunk()? {
            buffer.extend_from_slice(chunk);
            while buffer.len() >= window {
                self.run_window(&buffer[..window], &stem, output_dir, &mut writers)?;
                n_windows += 1;
                // hop ≤ window ≤ buffer.len() (the manifest forbids hop > window).
                buffer.drain(..hop);
                covered = window - hop;
            }
            ctx.check(stream.n_samples_emitted())?;
        }
        // Samples no window has seen yet: one last zero-padded window.
        if buffer.len() > covered || n_windows == 0 {
            buffer.resize(window, 0.0);
            self.run_window(&buffer, &stem, output_dir, &mut writers)?;
        }
        let mut written = Vec::new();
        for (output, writer) in writers {
            let (path, shape) = writer.finish().map_err(|e| Error::Output {
                path: output_dir.clone(),
                reason: e.to_string(),
            })?;
            written.push(WrittenTensor {
                output,
                path,
                shape,
            });
        }
        Ok(TaskOutput::Tensors(written))
    }
}

/// The speaker embedder as an adapter: streams the file through log-mel features and 80-frame
/// windows, embeds them in batches, and keeps a running mean for the file's embedding.
#[derive(Debug)]
pub struct EmbedAdapter {
    embedder: SpeakerEmbedder,
}

impl EmbedAdapter {
    fn load(
        runtime: &Runtime,
        spec: &ModelSpec,
        path: &Path,
        options: SessionOptions,
    ) -> Result<Box<dyn ModelAdapter>> {
        Ok(Box::new(Self {
            embedder: SpeakerEmbedder::load(runtime, &spec.name, path, options)?,
        }))
    }

    /// One embedding per range: the file is streamed once; samples are kept from the earliest
    /// range not yet embedded, and each range is embedded as soon as its end has been read.
    fn run_ranges(
        &mut self,
        input: &Path,
        ranges: &[(f64, f64)],
        mut writer: Option<NpyWriter>,
        ctx: &mut TaskContext<'_>,
    ) -> Result<TaskOutput> {
        let rate = f64::from(crate::embedder::SAMPLE_RATE_HZ);
        let mut bounds = Vec::with_capacity(ranges.len());
        for &(start_s, end_s) in ranges {
            if !(start_s.is_finite() && end_s.is_finite() && start_s >= 0.0 && end_s > start_s) {
                return Err(Error::InvalidParameter {
                    name: "windows",
                    reason: format!(
                        "range ({start_s}, {end_s}) s is not 0 <= start < end, both finite"
                    ),
                });
            }
            bounds.push((
                (start_s * rate).round() as u64,
                (end_s * rate).round() as u64,
            ));
        }
        // Indices of ranges not yet embedded, by start.
        let mut pending: Vec<usize> = (0..bounds.len()).collect();
        pending.sort_by_key(|&i| bounds[i]);
        let mut results: Vec<Option<RangeEmbedding>> = vec![None; bounds.len()];
        let mut stream = ChunkStream::open(
            input,
            StreamOptions::new(16_000, ctx.chunk_samples().max(512)),
        )?;
        let mut buffer: Vec<f32> = Vec::new();
        let mut buffer_start = 0u64; // sample index of buffer[0]
        let mut finished = false;
        loop {
            match stream.next_chunk()? {
                Some(chunk) => buffer.extend_from_slice(chunk),
                None => finished = true,
            }
            let read = buffer_start + buffer.len() as u64;
            let mut still = Vec::with_capacity(pending.len());
            for &i in &pending {
                let (start, end) = bounds[i];
                if end > read && !finished {
                    still.push(i);
                    continue;
                }
                if start >= read {
                    return Err(Error::InvalidParameter {
                        name: "windows",
                        reason: format!(
                            "range ({:.3}, {:.3}) s starts after the end of the audio ({:.3} s)",
                            ranges[i].0,
                            ranges[i].1,
                            read as f64 / rate
                        ),
                    });
                }
                let end = end.min(read);
                let from = (start - buffer_start) as usize;
                let to = (end - buffer_start) as usize;
                let mut samples = buffer[from..to].to_vec();
                if samples.len() < crate::embedder::MIN_SAMPLES {
                    samples.resize(crate::embedder::MIN_SAMPLES, 0.0);
                }
                let embedding = self.embedder.embed_utterance(&samples)?;
                results[i] = Some(RangeEmbedding {
                    start_s: ranges[i].0,
                    end_s: end as f64 / rate,
                    embedding,
                });
            }
            pending = still;
            // Keep only what a pending range still needs.
            let keep_from = pending
                .iter()
                .map(|&i| bounds[i].0)
                .min()
                .unwrap_or(read)
                .max(buffer_start);
            buffer.drain(..((keep_from - buffer_start) as usize).min(buffer.len()));
            buffer_start = keep_from.min(read);
            if finished {
                break;
            }
            ctx.check(stream.n_samples_emitted())?;
        }
        let embeddings: Vec<RangeEmbedding> = results.into_iter().flatten().collect();
        if let Some(w) = writer.as_mut() {
            for e in &embeddings {
                w.push_row(&e.embedding).map_err(|err| Error::Output {
                    path: PathBuf::from("embeddings.npy"),
                    reason: err.to_string(),
                })?;
            }
        }
        let written = finish_embeddings(writer, input)?;
        Ok(TaskOutput::RangeEmbeddings {
            embeddings,
            written,
        })
    }
}

impl ModelAdapter for EmbedAdapter {
    fn reset(&mut self) {
        self.embedder.begin();
    }

    fn run(
        &mut self,
        input: &Path,
        params: &TaskParams,
        ctx: &mut TaskContext<'_>,
    ) -> Result<TaskOutput> {
        let TaskParams::Embed {
            output_dir,
            windows: ranges,
        } = params
        else {
            return Err(Error::InvalidParameter {
                name: "stage",
                reason: "a speaker-embedding model needs embedding parameters".into(),
            });
        };
        let mut writer = match output_dir {
            Some(dir) => {
                std::fs::create_dir_all(dir).map_err(|e| Error::Output {
                    path: dir.clone(),
                    reason: e.to_string(),
                })?;
                let stem = safe_stem(input);
                let file = dir.join(format!("{stem}.embeddings.npy"));
                Some(
                    NpyWriter::create(&file, &[EMBEDDING_DIM]).map_err(|e| Error::Output {
                        path: file.clone(),
                        reason: e.to_string(),
                    })?,
                )
            }
            None => None,
        };
        if let Some(ranges) = ranges {
            return self.run_ranges(input, ranges, writer, ctx);
        }
        let mut stream = ChunkStream::open(
            input,
            StreamOptions::new(16_000, ctx.chunk_samples().max(512)),
        )?;
        self.embedder.begin();
        let mut sum = [0.0f64; EMBEDDING_DIM];
        let mut n_windows = 0usize;
        let mut batch: Vec<Embedding> = Vec::new();
        let mut fold = |batch: &mut Vec<Embedding>, writer: &mut Option<NpyWriter>| -> Result<()> {
            for e in batch.drain(..) {
                for (acc, v) in sum.iter_mut().zip(e.iter()) {
                    *acc += f64::from(*v);
                }
                n_windows += 1;
                if let Some(w) = writer.as_mut() {
                    w.push_row(&e).map_err(|err| Error::Output {
                        path: PathBuf::from("embeddings.npy"),
                        reason: err.to_string(),
                    })?;
                }
            }
            Ok(())
        };
        let mut n_samples = 0usize;
        while let Some(chunk) = stream.next_chunk()? {
            n_samples += chunk.len();
            self.embedder.push(chunk, &mut batch)?;
            fold(&mut batch, &mut writer)?;
            ctx.check(stream.n_samples_emitted())?;
        }
        if n_samples < crate::embedder::MIN_SAMPLES {
            return Err(Error::InvalidParameter {
                name: "input",
                reason: format!("{n_samples} samples at 16 kHz is too short to embed"),
            });
        }
        self.embedder.finish(&mut batch)?;
        fold(&mut batch, &mut writer)?;
        // The package's aggregation: the mean of the normalised windows, normalised.
        let norm = sum.iter().map(|v| v * v).sum::<f64>().sqrt() / n_windows.max(1) as f64;
        let mut utterance = [0.0f32; EMBEDDING_DIM];
        for (u, s) in utterance.iter_mut().zip(sum.iter()) {
            *u = (s / n_windows.max(1) as f64 / (norm + 1e-12)) as f32;
        }
        let windows = finish_embeddings(writer, input)?;
        Ok(TaskOutput::Embeddings {
            utterance: Box::new(utterance),
            n_windows,
            windows,
        })
    }
}
