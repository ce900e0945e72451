//! The wire protocol between the orchestrator and a `masp worker` process.
//!
//! One frame per message, over the worker's stdin (orchestrator → worker) and a private copy
//! of its stdout (worker → orchestrator):
//!
//! ```text
//! u32 LE  length of what follows (2 ..= MAX_FRAME)
//! u8      protocol version (PROTOCOL_VERSION)
//! u8      message tag
//! …       the message body: little-endian integers and floats, f32 arrays as raw LE bytes,
//!         strings and paths as u32 length + bytes, options as a 0/1 byte + value
//! ```
//!
//! Both sides decode defensively: a length is checked against [`MAX_FRAME`] before anything is
//! read, bytes are buffered only as they arrive (a lying length costs nothing), every count is
//! checked against the bytes left before allocating, enums and booleans must hold known values,
//! and a frame must be consumed exactly. Any violation is a [`ProtocolError`], never a panic.

use std::io::{self, Read, Write};
use std::path::PathBuf;

use masp_audio::AudioInfo;
use masp_budget::Bytes;
use masp_model_registry::manifest::{GenericSpec, ModelKind};

use crate::task::{
    EMBEDDING_DIM, Embedding, RangeEmbedding, ResultFiles, SpeechSegment, TaskOutput, TaskParams,
    VadOutcome, VadParams, WrittenTensor,
};

/// The protocol version both sides must speak; bumped on any change to the layout.
pub const PROTOCOL_VERSION: u8 = 2;

/// The largest frame either side accepts: 256 MiB (a 10-hour file's per-window embeddings are
/// ~45 MiB).
pub const MAX_FRAME: usize = 256 << 20;

/// A frame that cannot be read or understood.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ProtocolError {
    /// The pipe failed.
    #[error("pipe error: {0}")]
    Io(#[from] io::Error),
    /// The stream ended inside a frame.
    #[error("truncated frame: expected {expected} bytes, got {got}")]
    Truncated {
        /// Bytes the length prefix announced.
        expected: usize,
        /// Bytes that arrived.
        got: usize,
    },
    /// The length prefix is out of range.
    #[error("frame length {len} outside 2..={max}")]
    BadLength {
        /// The announced length.
        len: u64,
        /// [`MAX_FRAME`].
        max: usize,
    },
    /// The peer speaks another protocol version.
    #[error("protocol version {got}, expected {PROTOCOL_VERSION}")]
    Version {
        /// The version byte received.
        got: u8,
    },
    /// The body does not decode.
    #[error("malformed {message} message: {reason}")]
    Malformed {
        /// The message being decoded.
        message: &'static str,
        /// What is wrong.
        reason: String,
    },
    /// An unknown message tag.
    #[error("unknown message tag {0}")]
    UnknownTag(u8),
}

/// What a worker must load.
#[derive(Debug, Clone, PartialEq)]
pub struct LoadRequest {
    /// Model name (for messages).
    pub name: String,
    /// Which adapter loads it.
    pub kind: ModelKind,
    /// The model file, already verified by the orchestrator.
    pub path: PathBuf,
    /// The rate the model expects.
    pub sample_rate_hz: u32,
    /// The generic adapter's settings.
    pub generic: Option<GenericSpec>,
    /// Intra-op threads.
    pub intra_op_threads: u32,
    /// Weight pre-packing.
    pub prepacking: bool,
}

/// One task for the loaded model.
#[derive(Debug, Clone, PartialEq)]
pub struct RunRequest {
    /// The input file.
    pub input: PathBuf,
    /// Samples per chunk, chosen by the orchestrator.
    pub chunk_samples: u64,
    /// What to do.
    pub params: TaskParams,
}

/// Orchestrator → worker.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum ToWorker {
    /// Load the model (once, first).
    Load(LoadRequest),
    /// Run a task.
    Run(RunRequest),
    /// Exit now, cleanly.
    Exit,
}

/// How a failure reported by the worker is to be understood.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum FailureClass {
    /// The input (audio) is bad; the model is fine.
    Input,
    /// The model could not be loaded.
    Load,
    /// The model ran out of memory: the worker's cap (an allocation failed).
    OutOfMemory,
    /// Anything else (inference, output, parameters).
    Task,
    /// The worker could not understand the orchestrator.
    Protocol,
}

impl FailureClass {
    fn code(self) -> u8 {
        match self {
            FailureClass::Input => 0,
            FailureClass::Load => 1,
            FailureClass::OutOfMemory => 2,
            FailureClass::Task => 3,
            FailureClass::Protocol => 4,
        }
    }

    fn from_code(code: u8) -> Option<Self> {
        Some(match code {
            0 => FailureClass::Input,
            1 => FailureClass::Load,
            2 => FailureClass::OutOfMemory,
            3 => FailureClass::Task,
            4 => FailureClass::Protocol,
            _ => return None,
        })
    }
}

/// The worker's memory at the end of a load, from its own `/proc/self/status`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LoadReport {
    /// Session creation time, ms.
    pub load_ms: f64,
    /// Worker RSS before the session was created.
    pub rss_before: Bytes,
    /// Worker RSS high-water mark during the load.
    pub peak: Bytes,
    /// Worker RSS after the load.
    pub rss_after: Bytes,
}

/// Worker → orchestrator.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum FromWorker {
    /// First message of every worker: it is up and speaks this version.
    Hello {
        /// Its process id.
        pid: u32,
    },
    /// The model is loaded.
    Loaded(LoadReport),
    /// Between chunks of a task: how far, and the worker's RSS now.
    Progress {
        /// Samples done at the model's rate.
        samples_done: u64,
        /// Worker RSS.
        rss: Bytes,
    },
    /// The task finished.
    Done {
        /// What it produced.
        output: TaskOutput,
        /// Worker RSS high-water mark during the task, above its RSS at the start.
        working_peak: Bytes,
    },
    /// The load or task failed; the worker lives on (unless the class says otherwise).
    Failed {
        /// How to understand it.
        class: FailureClass,
        /// The error as the worker would have printed it (names the file and the reason).
        message: String,
    },
}

const TAG_LOAD: u8 = 1;
const TAG_RUN: u8 = 2;
const TAG_EXIT: u8 = 3;
const TAG_HELLO: u8 = 64;
const TAG_LOADED: u8 = 65;
const TAG_PROGRESS: u8 = 66;
const TAG_DONE: u8 = 67;
const TAG_FAILED: u8 = 68;

// ---- framing -------------------------------------------------------------------------------

/// Write one frame: `tag` and `body` behind the length and version.
///
/// # Errors
/// The pipe's error; [`ProtocolError::BadLength`] for a body over [`MAX_FRAME`].
pub fn write_frame(w: &mut impl Write, tag: u8, body: &[u8]) -> Result<(), ProtocolError> {
    let len = body.len() + 2;
    if len > MAX_FRAME {
        return Err(ProtocolError::BadLength {
            len: len as u64,
            max: MAX_FRAME,
        });
    }
    let mut head = [0u8; 6];
    head[..4].copy_from_slice(&(len as u32).to_le_bytes());
    head[4] = PROTOCOL_VERSION;
    head[5] = tag;
    w.write_all(&head)?;
    w.write_all(body)?;
    w.flush()?;
    Ok(())
}

/// Read one frame: `(tag, body)`, or `None` at a clean end of stream (between frames).
///
/// # Errors
/// [`ProtocolError::Truncated`] when the stream ends inside a frame, [`ProtocolError::BadLength`],
/// [`ProtocolError::Version`], the pipe's error.
pub fn read_frame(r: &mut impl Read) -> Result<Option<(u8, Vec<u8>)>, ProtocolError> {
    let mut len_bytes = [0u8; 4];
    let mut got = 0;
    while got < 4 {
        match r.read(&mut len_bytes[got..]) {
            Ok(0) if got == 0 => return Ok(None),
            Ok(0) => {
                return Err(ProtocolError::Truncated { expected: 4, got });
            }
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e.into()),
        }
    }
    let len = u32::from_le_bytes(len_bytes) as usize;
    if !(2..=MAX_FRAME).contains(&len) {
        return Err(ProtocolError::BadLength {
            len: len as u64,
            max: MAX_FRAME,
        });
    }
    // Grow with what arrives, not with what the length claims.
    let mut frame = Vec::with_capacity(len.min(64 << 10));
    r.take(len as u64).read_to_end(&mut frame)?;
    if frame.len() < len {
        return Err(ProtocolError::Truncated {
            expected: len,
            got: frame.len(),
        });
    }
    if frame[0] != PROTOCOL_VERSION {
        return Err(ProtocolError::Version { got: frame[0] });
    }
    let tag = frame[1];
    frame.drain(..2);
    Ok(Some((tag, frame)))
}

// ---- messages ------------------------------------------------------------------------------

impl ToWorker {
    /// Encode and write this message as one frame.
    ///
    /// # Errors
    /// The pipe's error.
    pub fn write(&self, w: &mut impl Write) -> Result<(), ProtocolError> {
        let mut e = Encoder::default();
        let tag = match self {
            ToWorker::Load(load) => {
                e.str(&load.name);
                e.u8(kind_code(load.kind));
                e.path(&load.path);
                e.u32(load.sample_rate_hz);
                e.opt(load.generic.as_ref(), |e, g| {
                    e.str(&g.input);
                    e.opt(g.window_ms.as_ref(), |e, v| e.u32(*v));
                    e.opt(g.hop_ms.as_ref(), |e, v| e.u32(*v));
                    e.u32(g.outputs.len() as u32);
                    for o in &g.outputs {
                        e.str(o);
                    }
                });
                e.u32(load.intra_op_threads);
                e.bool(load.prepacking);
                TAG_LOAD
            }
            ToWorker::Run(run) => {
                e.path(&run.input);
                e.u64(run.chunk_samples);
                encode_params(&mut e, &run.params);
                TAG_RUN
            }
            ToWorker::Exit => TAG_EXIT,
        };
        write_frame(w, tag, &e.buf)
    }

    /// Decode a frame read by [`read_frame`].
    ///
    /// # Errors
    /// [`ProtocolError::UnknownTag`], [`ProtocolError::Malformed`].
    pub fn decode(tag: u8, body: &[u8]) -> Result<Self, ProtocolError> {
        let mut d = Decoder::new(body);
        let message = match tag {
            TAG_LOAD => {
                d.message = "load";
                let name = d.string()?;
                let kind = kind_from_code(d.u8()?).ok_or_else(|| d.malformed("unknown kind"))?;
                let path = d.path()?;
                let sample_rate_hz = d.u32()?;
                let generic = d.opt(|d| {
                    let input = d.string()?;
                    let window_ms = d.opt(Decoder::u32)?;
                    let hop_ms = d.opt(Decoder::u32)?;
                    let n = d.count(4)?;
                    let mut outputs = Vec::with_capacity(n);
                    for _ in 0..n {
                        outputs.push(d.string()?);
                    }
                    Ok(GenericSpec {
                        input,
                        window_ms,
                        hop_ms,
                        outputs,
                    })
                })?;
                let intra_op_threads = d.u32()?;
                let prepacking = d.bool()?;
                ToWorker::Load(LoadRequest {
                    name,
                    kind,
                    path,
                    sample_rate_hz,
                    generic,
                    intra_op_threads,
                    prepacking,
                })
            }
            TAG_RUN => {
                d.message = "run";
                let input = d.path()?;
                let chunk_samples = d.u64()?;
                let params = decode_params(&mut d)?;
                ToWorker::Run(RunRequest {
                    input,
                    chunk_samples,
                    params,
                })
            }
            TAG_EXIT => ToWorker::Exit,
            other => return Err(ProtocolError::UnknownTag(other)),
        };
        d.end()?;
        Ok(message)
    }
}

impl FromWorker {
    /// Encode and write this message as one frame.
    ///
    /// # Errors
    /// The pipe's error; [`ProtocolError::BadLength`] for an output over [`MAX_FRAME`].
    pub fn write(&self, w: &mut impl Write) -> Result<(), ProtocolError> {
        let mut e = Encoder::default();
        let tag = match self {
            FromWorker::Hello { pid } => {
                e.u32(*pid);
                TAG_HELLO
            }
            FromWorker::Loaded(r) => {
                e.f64(r.load_ms);
                e.u64(r.rss_before.get());
                e.u64(r.peak.get());
                e.u64(r.rss_after.get());
                TAG_LOADED
            }
            FromWorker::Progress { samples_done, rss } => {
                e.u64(*samples_done);
                e.u64(rss.get());
                TAG_PROGRESS
            }
            FromWorker::Done {
                output,
                working_peak,
            } => {
                encode_output(&mut e, output);
                e.u64(working_peak.get());
                TAG_DONE
            }
            FromWorker::Failed { class, message } => {
                e.u8(class.code());
                e.str(message);
                TAG_FAILED
            }
        };
        write_frame(w, tag, &e.buf)
    }

    /// Decode a frame read by [`read_frame`].
    ///
    /// # Errors
    /// [`ProtocolError::UnknownTag`], [`ProtocolError::Malformed`].
    pub fn decode(tag: u8, body: &[u8]) -> Result<Self, ProtocolError> {
        let mut d = Decoder::new(body);
        let message = match tag {
            TAG_HELLO => {
                d.message = "hello";
                FromWorker::Hello { pid: d.u32()? }
            }
            TAG_LOADED => {
                d.message = "loaded";
                FromWorker::Loaded(LoadReport {
                    load_ms: d.f64()?,
                    rss_before: Bytes::new(d.u64()?),
                    peak: Bytes::new(d.u64()?),
                    rss_after: Bytes::new(d.u64()?),
                })
            }
            TAG_PROGRESS => {
                d.message = "progress";
                FromWorker::Progress {
                    samples_done: d.u64()?,
                    rss: Bytes::new(d.u64()?),
                }
            }
            TAG_DONE => {
                d.message = "done";
                let output = decode_output(&mut d)?;
                FromWorker::Done {
                    output,
                    working_peak: Bytes::new(d.u64()?),
                }
            }
            TAG_FAILED => {
                d.message = "failed";
                let class = FailureClass::from_code(d.u8()?)
                    .ok_or_else(|| d.malformed("unknown failure class"))?;
                FromWorker::Failed {
                    class,
                    message: d.string()?,
                }
            }
            other => return Err(ProtocolError::UnknownTag(other)),
        };
        d.end()?;
        Ok(message)
    }
}

fn kind_code(kind: ModelKind) -> u8 {
    match kind {
        ModelKind::Vad => 0,
        ModelKind::SpeakerEmbedding => 1,
        ModelKind::Generic => 2,
    }
}

fn kind_from_code(code: u8) -> Option<ModelKind> {
    Some(match code {
        0 => ModelKind::Vad,
        1 => ModelKind::SpeakerEmbedding,
        2 => ModelKind::Generic,
        _ => return None,
    })
}

fn encode_params(e: &mut Encoder, params: &TaskParams) {
    match params {
        TaskParams::Vad(p) => {
            e.u8(0);
            e.f64(p.threshold);
            e.opt(p.neg_threshold.as_ref(), |e, v| e.f64(*v));
            e.u32(p.min_speech_ms);
            e.u32(p.min_silence_ms);
            e.u32(p.speech_pad_ms);
            e.f64(p.max_speech_s);
            e.u32(p.min_silence_at_max_speech_ms);
            e.bool(p.use_max_poss_sil_at_max_speech);
        }
        TaskParams::Generic { output } => {
            e.u8(1);
            encode_files(e, output);
        }
        TaskParams::Embed { output, windows } => {
            e.u8(2);
            e.opt(output.as_ref(), encode_files);
            e.opt(windows.as_ref(), |e, w| {
                e.u32(w.len() as u32);
                for (start, end) in w {
                    e.f64(*start);
                    e.f64(*end);
                }
            });
        }
    }
}

fn decode_params(d: &mut Decoder<'_>) -> Result<TaskParams, ProtocolError> {
    Ok(match d.u8()? {
        0 => TaskParams::Vad(VadParams {
            threshold: d.f64()?,
            neg_threshold: d.opt(Decoder::f64)?,
            min_speech_ms: d.u32()?,
            min_silence_ms: d.u32()?,
            speech_pad_ms: d.u32()?,
            max_speech_s: d.f64()?,
            min_silence_at_max_speech_ms: d.u32()?,
            use_max_poss_sil_at_max_speech: d.bool()?,
        }),
        1 => TaskParams::Generic {
            output: decode_files(d)?,
        },
        2 => TaskParams::Embed {
            output: d.opt(decode_files)?,
            windows: d.opt(|d| {
                let n = d.count(16)?;
                let mut w = Vec::with_capacity(n);
                for _ in 0..n {
                    let (start, end) = (d.f64()?, d.f64()?);
                    if !(start.is_finite() && end.is_finite() && 0.0 <= start && start <= end) {
                        return Err(d.malformed("a time range is not 0 <= start <= end"));
                    }
                    w.push((start, end));
                }
                Ok(w)
            })?,
        },
        _ => return Err(d.malformed("unknown task kind")),
    })
}

fn encode_files(e: &mut Encoder, files: &ResultFiles) {
    e.path(files.dir());
    e.str(files.name());
}

/// The name is checked as when it was made: a peer cannot name a file outside the directory.
fn decode_files(d: &mut Decoder<'_>) -> Result<ResultFiles, ProtocolError> {
    let dir = d.path()?;
    let name = d.string()?;
    ResultFiles::new(dir, &name).map_err(|e| d.malformed(&e.to_string()))
}

fn encode_tensor(e: &mut Encoder, t: &WrittenTensor) {
    e.str(&t.output);
    e.path(&t.path);
    e.u32(t.shape.len() as u32);
    for &s in &t.shape {
        e.u64(s as u64);
    }
}

fn decode_tensor(d: &mut Decoder<'_>) -> Result<WrittenTensor, ProtocolError> {
    let output = d.string()?;
    let path = d.path()?;
    let n = d.count(8)?;
    let mut shape = Vec::with_capacity(n);
    for _ in 0..n {
        shape.push(usize::try_from(d.u64()?).map_err(|_| d.malformed("shape too large"))?);
    }
    Ok(WrittenTensor {
        output,
        path,
        shape,
    })
}

fn encode_output(e: &mut Encoder, output: &TaskOutput) {
    match output {
        TaskOutput::Segments(o) => {
            e.u8(0);
            e.path(&o.info.path);
            e.str(&o.info.codec);
            e.u32(o.info.source_sample_rate_hz);
            e.u64(o.info.n_channels as u64);
            e.opt(o.info.n_source_frames.as_ref(), |e, v| e.u64(*v));
            e.u64(o.n_samples);
            e.u32(o.segments.len() as u32);
            for s in &o.segments {
                e.u64(s.start_sample);
                e.u64(s.end_sample);
            }
        }
        TaskOutput::Tensors(tensors) => {
            e.u8(1);
            e.u32(tensors.len() as u32);
            for t in tensors {
                encode_tensor(e, t);
            }
        }
        TaskOutput::Embeddings {
            utterance,
            n_windows,
            windows,
        } => {
            e.u8(2);
            e.f32s(&utterance[..]);
            e.u64(*n_windows as u64);
            e.opt(windows.as_ref(), encode_tensor);
        }
        TaskOutput::RangeEmbeddings {
            embeddings,
            written,
        } => {
            e.u8(3);
            e.u32(embeddings.len() as u32);
            for r in embeddings {
                e.f64(r.start_s);
                e.f64(r.end_s);
                e.f32s(&r.embedding);
            }
            e.opt(written.as_ref(), encode_tensor);
        }
    }
}

fn decode_output(d: &mut Decoder<'_>) -> Result<TaskOutput, ProtocolError> {
    Ok(match d.u8()? {
        0 => {
            let info = AudioInfo {
                path: d.path()?,
                codec: d.string()?,
                source_sample_rate_hz: d.u32()?,
                n_channels: usize::try_from(d.u64()?)
                    .map_err(|_| d.malformed("channel count too large"))?,
                n_source_frames: d.opt(Decoder::u64)?,
            };
            let n_samples = d.u64()?;
            let n = d.count(16)?;
            let mut segments = Vec::with_capacity(n);
            for _ in 0..n {
                let start_sample = d.u64()?;
                let end_sample = d.u64()?;
                if end_sample < start_sample {
                    return Err(d.malformed("segment ends before it starts"));
                }
                segments.push(SpeechSegment {
                    start_sample,
                    end_sample,
                });
            }
            TaskOutput::Segments(VadOutcome {
                info,
                n_samples,
                segments,
            })
        }
        1 => {
            let n = d.count(4 + 4 + 4)?;
            let mut tensors = Vec::with_capacity(n);
            for _ in 0..n {
                tensors.push(decode_tensor(d)?);
            }
            TaskOutput::Tensors(tensors)
        }
        2 => {
            let utterance = Box::new(d.embedding()?);
            let n_windows =
                usize::try_from(d.u64()?).map_err(|_| d.malformed("window count too large"))?;
            TaskOutput::Embeddings {
                utterance,
                n_windows,
                windows: d.opt(decode_tensor)?,
            }
        }
        3 => {
            let n = d.count(16 + 4 + 4 * EMBEDDING_DIM)?;
            let mut embeddings = Vec::with_capacity(n);
            for _ in 0..n {
                embeddings.push(RangeEmbedding {
                    start_s: d.f64()?,
                    end_s: d.f64()?,
                    embedding: d.embedding()?,
                });
            }
            TaskOutput::RangeEmbeddings {
                embeddings,
                written: d.opt(decode_tensor)?,
            }
        }
        _ => return Err(d.malformed("unknown output kind")),
    })
}

// ---- encoding primitives -------------------------------------------------------------------

#[derive(Default)]
struct Encoder {
    buf: Vec<u8>,
}

impl Encoder {
    fn u8(&mut self, v: u8) {
        self.buf.push(v);
    }
    fn bool(&mut self, v: bool) {
        self.buf.push(u8::from(v));
    }
    fn u32(&mut self, v: u32) {
        self.buf.extend_from_slice(&v.to_le_bytes());
    }
    fn u64(&mut self, v: u64) {
        self.buf.extend_from_slice(&v.to_le_bytes());
    }
    fn f64(&mut self, v: f64) {
        self.buf.extend_from_slice(&v.to_le_bytes());
    }
    fn bytes(&mut self, v: &[u8]) {
        self.u32(v.len() as u32);
        self.buf.extend_from_slice(v);
    }
    fn str(&mut self, v: &str) {
        self.bytes(v.as_bytes());
    }
    fn path(&mut self, v: &std::path::Path) {
        use std::os::unix::ffi::OsStrExt;
        self.bytes(v.as_os_str().as_bytes());
    }
    fn f32s(&mut self, v: &[f32]) {
        self.u32(v.len() as u32);
        for x in v {
            self.buf.extend_from_slice(&x.to_le_bytes());
        }
    }
    fn opt<T>(&mut self, v: Option<&T>, f: impl FnOnce(&mut Self, &T)) {
        match v {
            None => self.u8(0),
            Some(v) => {
                self.u8(1);
                f(self, v);
            }
        }
    }
}

struct Decoder<'a> {
    rest: &'a [u8],
    message: &'static str,
}

impl<'a> Decoder<'a> {
    fn new(body: &'a [u8]) -> Self {
        Self {
            rest: body,
            message: "frame",
        }
    }

    fn malformed(&self, reason: &str) -> ProtocolError {
        ProtocolError::Malformed {
            message: self.message,
            reason: reason.to_owned(),
        }
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], ProtocolError> {
        if n > self.rest.len() {
            return Err(self.malformed(&format!("needs {n} more bytes, {} left", self.rest.len())));
        }
        let (head, tail) = self.rest.split_at(n);
        self.rest = tail;
        Ok(head)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], ProtocolError> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N)?);
        Ok(out)
    }

    fn u8(&mut self) -> Result<u8, ProtocolError> {
        Ok(self.array::<1>()?[0])
    }
    fn bool(&mut self) -> Result<bool, ProtocolError> {
        match self.u8()? {
            0 => Ok(false),
            1 => Ok(true),
            _ => Err(self.malformed("boolean neither 0 nor 1")),
        }
    }
    fn u32(&mut self) -> Result<u32, ProtocolError> {
        Ok(u32::from_le_bytes(self.array()?))
    }
    fn u64(&mut self) -> Result<u64, ProtocolError> {
        Ok(u64::from_le_bytes(self.array()?))
    }
    fn f64(&mut self) -> Result<f64, ProtocolError> {
        Ok(f64::from_le_bytes(self.array()?))
    }

    /// A count of items at least `min_item_bytes` each: never more than the bytes left allow.
    fn count(&mut self, min_item_bytes: usize) -> Result<usize, ProtocolError> {
        let n = self.u32()? as usize;
        if n.saturating_mul(min_item_bytes.max(1)) > self.rest.len() {
            return Err(self.malformed(&format!(
                "{n} items cannot fit in the {} bytes left",
                self.rest.len()
            )));
        }
        Ok(n)
    }

    fn bytes(&mut self) -> Result<&'a [u8], ProtocolError> {
        let n = self.count(1)?;
        self.take(n)
    }
    fn string(&mut self) -> Result<String, ProtocolError> {
        let raw = self.bytes()?;
        String::from_utf8(raw.to_vec()).map_err(|_| self.malformed("string is not UTF-8"))
    }
    fn path(&mut self) -> Result<PathBuf, ProtocolError> {
        use std::os::unix::ffi::OsStrExt;
        let raw = self.bytes()?;
        if raw.is_empty() || raw.contains(&0) {
            return Err(self.malformed("empty path or NUL in path"));
        }
        Ok(PathBuf::from(std::ffi::OsStr::from_bytes(raw)))
    }
    fn embedding(&mut self) -> Result<Embedding, ProtocolError> {
        let n = self.count(4)?;
        if n != EMBEDDING_DIM {
            return Err(self.malformed(&format!(
                "embedding of {n} values, expected {EMBEDDING_DIM}"
            )));
        }
        let mut out = [0f32; EMBEDDING_DIM];
        for (o, raw) in out.iter_mut().zip(self.take(4 * n)?.chunks_exact(4)) {
            let mut b = [0u8; 4];
            b.copy_from_slice(raw);
            *o = f32::from_le_bytes(b);
        }
        Ok(out)
    }
    fn opt<T>(
        &mut self,
        f: impl FnOnce(&mut Self) -> Result<T, ProtocolError>,
    ) -> Result<Option<T>, ProtocolError> {
        match self.u8()? {
            0 => Ok(None),
            1 => f(self).map(Some),
            _ => Err(self.malformed("option tag neither 0 nor 1")),
        }
    }
    fn end(&self) -> Result<(), ProtocolError> {
        if self.rest.is_empty() {
            Ok(())
        } else {
            Err(self.malformed(&format!("{} bytes left over", self.rest.len())))
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    fn roundtrip_to(msg: &ToWorker) -> ToWorker {
        let mut buf = Vec::new();
        msg.write(&mut buf).unwrap();
        let (tag, body) = read_frame(&mut buf.as_slice()).unwrap().unwrap();
        ToWorker::decode(tag, &body).unwrap()
    }

    fn roundtrip_from(msg: &FromWorker) -> FromWorker {
        let mut buf = Vec::new();
        msg.write(&mut buf).unwrap();
        let (tag, body) = read_frame(&mut buf.as_slice()).unwrap().unwrap();
        FromWorker::decode(tag, &body).unwrap()
    }

    fn load() -> ToWorker {
        ToWorker::Load(LoadRequest {
            name: "generic-x".into(),
            kind: ModelKind::Generic,
            path: "/models/x y.onnx".into(),
            sample_rate_hz: 16_000,
            generic: Some(GenericSpec {
                input: "wav".into(),
                window_ms: Some(1000),
                hop_ms: None,
                outputs: vec!["a".into(), "b".into()],
            }),
            intra_op_threads: 2,
            prepacking: false,
        })
    }

    #[test]
    fn every_request_survives_the_wire() {
        for msg in [
            load(),
            ToWorker::Run(RunRequest {
                input: "/a/b.wav".into(),
                chunk_samples: 32_000,
                params: TaskParams::Vad(VadParams {
                    neg_threshold: Some(0.3),
                    max_speech_s: f64::INFINITY,
                    ..VadParams::default()
                }),
            }),
            ToWorker::Run(RunRequest {
                input: "/a/b.wav".into(),
                chunk_samples: 1,
                params: TaskParams::Embed {
                    output: Some(ResultFiles::new("/out", "b-0123abcd").unwrap()),
                    windows: Some(vec![(0.0, 1.5), (2.0, 3.25)]),
                },
            }),
            ToWorker::Run(RunRequest {
                input: "/a/b.wav".into(),
                chunk_samples: 7,
                params: TaskParams::Generic {
                    output: ResultFiles::new("/o", "b-0123abcd").unwrap(),
                },
            }),
            ToWorker::Exit,
        ] {
            assert_eq!(roundtrip_to(&msg), msg);
        }
    }

    #[test]
    fn outputs_survive_the_wire_bit_for_bit() {
        let mut e = [0f32; EMBEDDING_DIM];
        for (i, v) in e.iter_mut().enumerate() {
            *v = (i as f32 * 0.37).sin() / 3.0;
        }
        e[5] = -0.0;
        let segments = TaskOutput::Segments(VadOutcome {
            info: AudioInfo {
                path: "/a.wav".into(),
                codec: "pcm_s16le".into(),
                source_sample_rate_hz: 44_100,
                n_channels: 2,
                n_source_frames: Some(99),
            },
            n_samples: 36,
            segments: vec![SpeechSegment {
                start_sample: 3,
                end_sample: 30,
            }],
        });
        let FromWorker::Done {
            output: TaskOutput::Segments(back),
            working_peak,
        } = roundtrip_from(&FromWorker::Done {
            output: segments,
            working_peak: Bytes::from_mib(3),
        })
        else {
            panic!("not segments");
        };
        assert_eq!(working_peak, Bytes::from_mib(3));
        assert_eq!(back.info.n_source_frames, Some(99));
        assert_eq!(back.segments[0].end_sample, 30);

        let ranges = TaskOutput::RangeEmbeddings {
            embeddings: vec![RangeEmbedding {
                start_s: 0.5,
                end_s: 1.25,
                embedding: e,
            }],
            written: Some(WrittenTensor {
                output: "embedding".into(),
                path: "/o/a.embeddings.npy".into(),
                shape: vec![1, EMBEDDING_DIM],
            }),
        };
        let FromWorker::Done {
            output:
                TaskOutput::RangeEmbeddings {
                    embeddings,
                    written,
                },
            ..
        } = roundtrip_from(&FromWorker::Done {
            output: ranges,
            working_peak: Bytes::new(0),
        })
        else {
            panic!("not range embeddings");
        };
        let bits = |v: &Embedding| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
        assert_eq!(bits(&embeddings[0].embedding), bits(&e));
        assert_eq!(written.unwrap().shape, vec![1, EMBEDDING_DIM]);

        let FromWorker::Failed { class, message } = roundtrip_from(&FromWorker::Failed {
            class: FailureClass::Input,
            message: "a.wav: not a recognised audio format".into(),
        }) else {
            panic!("not failed");
        };
        assert_eq!(class, FailureClass::Input);
        assert!(message.starts_with("a.wav"));
    }

    #[test]
    fn a_clean_end_between_frames_is_not_an_error() {
        assert!(read_frame(&mut [].as_slice()).unwrap().is_none());
    }

    #[test]
    fn a_result_name_that_leaves_its_directory_is_refused() {
        for name in ["../x", "a/b", ".hidden", "", "nul\0"] {
            let mut e = Encoder { buf: Vec::new() };
            e.u8(1);
            e.path(std::path::Path::new("/out"));
            e.str(name);
            let mut d = Decoder::new(&e.buf);
            assert!(
                matches!(decode_params(&mut d), Err(ProtocolError::Malformed { .. })),
                "{name:?}"
            );
        }
    }

    #[test]
    fn malformed_frames_are_typed_errors() {
        let mut good = Vec::new();
        load().write(&mut good).unwrap();

        // Every truncation of a good frame.
        for cut in 1..good.len() {
            let r = read_frame(&mut &good[..cut]);
            assert!(
                matches!(r, Err(ProtocolError::Truncated { .. })),
                "cut at {cut}: {r:?}"
            );
        }
        // A length beyond the limit, and one too short to hold version and tag.
        for len in [u32::MAX, (MAX_FRAME + 1) as u32, 0, 1] {
            let mut f = len.to_le_bytes().to_vec();
            f.extend_from_slice(&[PROTOCOL_VERSION, TAG_EXIT]);
            assert!(matches!(
                read_frame(&mut f.as_slice()),
                Err(ProtocolError::BadLength { .. })
            ));
        }
        // Another version.
        let mut v = good.clone();
        v[4] = PROTOCOL_VERSION + 1;
        assert!(matches!(
            read_frame(&mut v.as_slice()),
            Err(ProtocolError::Version { .. })
        ));
        // An unknown tag.
        assert!(matches!(
            ToWorker::decode(200, &[]),
            Err(ProtocolError::UnknownTag(200))
        ));
        assert!(matches!(
            FromWorker::decode(TAG_LOAD, &[]),
            Err(ProtocolError::UnknownTag(TAG_LOAD))
        ));
        // Every truncation of a good body, and trailing bytes.
        let (tag, body) = read_frame(&mut good.as_slice()).unwrap().unwrap();
        for cut in 0..body.len() {
            assert!(matches!(
                ToWorker::decode(tag, &body[..cut]),
                Err(ProtocolError::Malformed { .. })
            ));
        }
        let mut long = body.clone();
        long.push(0);
        assert!(matches!(
            ToWorker::decode(tag, &long),
            Err(ProtocolError::Malformed { .. })
        ));
        // A count that claims more items than bytes left: refused before allocating.
        let mut e = Encoder::default();
        e.u8(3);
        e.u32(u32::MAX);
        assert!(matches!(
            FromWorker::decode(TAG_DONE, &e.buf),
            Err(ProtocolError::Malformed { .. })
        ));
        // A bad boolean and a bad enum code.
        let mut e = Encoder::default();
        e.u8(9);
        e.str("x");
        assert!(FromWorker::decode(TAG_FAILED, &e.buf).is_err());
        let mut e = Encoder::default();
        e.u8(2);
        assert!(ToWorker::decode(TAG_RUN, &e.buf).is_err());
        // Time ranges that are not ranges (found by fuzzing: NaN reached the embedder).
        for (start, end) in [
            (f64::NAN, 1.0),
            (0.0, f64::INFINITY),
            (2.0, 1.0),
            (-1.0, 0.0),
        ] {
            let msg = ToWorker::Run(RunRequest {
                input: "/a.wav".into(),
                chunk_samples: 1,
                params: TaskParams::Embed {
                    output: None,
                    windows: Some(vec![(start, end)]),
                },
            });
            let mut buf = Vec::new();
            msg.write(&mut buf).unwrap();
            let (tag, body) = read_frame(&mut buf.as_slice()).unwrap().unwrap();
            assert!(
                matches!(
                    ToWorker::decode(tag, &body),
                    Err(ProtocolError::Malformed { .. })
                ),
                "({start}, {end})"
            );
        }
    }

    #[test]
    fn a_lying_length_costs_only_the_bytes_that_arrive() {
        // Announces 200 MiB, sends 10 bytes: a truncation error, not a 200 MiB buffer.
        let mut f = (200u32 << 20).to_le_bytes().to_vec();
        f.extend_from_slice(&[PROTOCOL_VERSION, TAG_EXIT, 0, 0, 0, 0, 0, 0, 0, 0]);
        assert!(matches!(
            read_frame(&mut f.as_slice()),
            Err(ProtocolError::Truncated { got: 10, .. })
        ));
    }

    #[test]
    fn random_bytes_never_panic() {
        // A small deterministic generator: decoding arbitrary bodies must only ever error.
        let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
        for _ in 0..20_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let len = (x % 64) as usize;
            let body: Vec<u8> = (0..len)
                .map(|i| (x.rotate_left(i as u32 * 7) & 0xff) as u8)
                .collect();
            let tag = (x >> 56) as u8;
            let _ = ToWorker::decode(tag % 4, &body);
            let _ = FromWorker::decode(64 + tag % 6, &body);
        }
    }
}
