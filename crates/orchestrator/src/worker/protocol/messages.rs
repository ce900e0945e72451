//! The messages: [`ToWorker`] (orchestrator → worker) and [`FromWorker`] (worker →
//! orchestrator), their tags, and how each is encoded into and decoded from a frame's body.

use std::io::Write;
use std::path::PathBuf;

use masp_budget::Bytes;
use masp_model_registry::manifest::{GenericSpec, ModelKind};

use super::ProtocolError;
use super::codec::{Decoder, Encoder};
use super::framing::write_frame;
use super::payload::{
    MAX_TENSORS, decode_output, decode_params, encode_output, encode_params, kind_code,
    kind_from_code,
};
use crate::task::{TaskOutput, TaskParams};
use crate::worker::status::{FailureClass, LoadReport};

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
    /// The RSS the worker may reach during the task (its share of the budget): its watchdog
    /// stops a model call that crosses it. `None`: not watched.
    pub rss_limit: Option<Bytes>,
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
    /// The worker's watchdog stopped a model call of the task: its RSS crossed the
    /// [`RunRequest::rss_limit`]. The worker lives on; its runtime's arena still holds what the
    /// call took, so it should be ended before the task is retried.
    Terminated {
        /// The worker's first RSS sample over the limit.
        rss: Bytes,
        /// Its highest RSS sampled before the call ended.
        peak: Bytes,
        /// The limit it was given.
        limit: Bytes,
    },
    /// The load or task failed; the worker lives on (unless the class says otherwise).
    Failed {
        /// How to understand it.
        class: FailureClass,
        /// The error as the worker would have printed it (names the file and the reason).
        message: String,
    },
}

pub(super) const TAG_LOAD: u8 = 1;
pub(super) const TAG_RUN: u8 = 2;
pub(super) const TAG_EXIT: u8 = 3;
pub(super) const TAG_HELLO: u8 = 64;
pub(super) const TAG_LOADED: u8 = 65;
pub(super) const TAG_PROGRESS: u8 = 66;
pub(super) const TAG_DONE: u8 = 67;
pub(super) const TAG_FAILED: u8 = 68;
pub(super) const TAG_TERMINATED: u8 = 69;

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
                e.opt(run.rss_limit.as_ref(), |e, l| e.u64(l.get()));
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
    ///
    /// [`read_frame`]: super::read_frame
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
                    let n = d.count_at_most(4, MAX_TENSORS)?;
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
                let rss_limit = d.opt(|d| d.u64().map(Bytes::new))?;
                let params = decode_params(&mut d)?;
                ToWorker::Run(RunRequest {
                    input,
                    chunk_samples,
                    rss_limit,
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
    /// The message's name, for errors: never its contents, which a peer controls and which can
    /// be a whole frame long.
    pub fn name(&self) -> &'static str {
        match self {
            FromWorker::Hello { .. } => "hello",
            FromWorker::Loaded(_) => "loaded",
            FromWorker::Progress { .. } => "progress",
            FromWorker::Done { .. } => "done",
            FromWorker::Failed { .. } => "failed",
            FromWorker::Terminated { .. } => "terminated",
        }
    }

    /// Encode and write this message as one frame.
    ///
    /// # Errors
    /// The pipe's error; [`ProtocolError::BadLength`] for an output over [`MAX_FRAME`].
    ///
    /// [`MAX_FRAME`]: super::MAX_FRAME
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
            FromWorker::Terminated { rss, peak, limit } => {
                e.u64(rss.get());
                e.u64(peak.get());
                e.u64(limit.get());
                TAG_TERMINATED
            }
        };
        write_frame(w, tag, &e.buf)
    }

    /// Decode a frame read by [`read_frame`].
    ///
    /// # Errors
    /// [`ProtocolError::UnknownTag`], [`ProtocolError::Malformed`].
    ///
    /// [`read_frame`]: super::read_frame
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
            TAG_TERMINATED => {
                d.message = "terminated";
                FromWorker::Terminated {
                    rss: Bytes::new(d.u64()?),
                    peak: Bytes::new(d.u64()?),
                    limit: Bytes::new(d.u64()?),
                }
            }
            other => return Err(ProtocolError::UnknownTag(other)),
        };
        d.end()?;
        Ok(message)
    }
}
