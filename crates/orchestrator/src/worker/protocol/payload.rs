//! The wire form of what a task carries: the model kind, the task's parameters and result
//! names, and its outputs (segments, written tensors, embeddings).

use masp_audio::AudioInfo;
use masp_model_registry::manifest::ModelKind;

use super::ProtocolError;
use super::codec::{Decoder, Encoder};
use crate::task::{
    EMBEDDING_DIM, RangeEmbedding, ResultFiles, SpeechSegment, TaskOutput, TaskParams, VadOutcome,
    VadParams, WrittenTensor,
};

/// The most tensors one task may report, and the most outputs a load may name: a generic model
/// has a handful. A tensor entry is 13 bytes on the wire and ~104 in memory (three headers and
/// an allocation), so without this cap a 64 MiB frame would decode to 500 MiB; with it, the
/// entries cost at most 104 KiB whatever the frame.
pub(super) const MAX_TENSORS: usize = 1024;

pub(super) fn kind_code(kind: ModelKind) -> u8 {
    match kind {
        ModelKind::Vad => 0,
        ModelKind::SpeakerEmbedding => 1,
        ModelKind::Generic => 2,
    }
}

pub(super) fn kind_from_code(code: u8) -> Option<ModelKind> {
    Some(match code {
        0 => ModelKind::Vad,
        1 => ModelKind::SpeakerEmbedding,
        2 => ModelKind::Generic,
        _ => return None,
    })
}

pub(super) fn encode_params(e: &mut Encoder, params: &TaskParams) {
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

pub(super) fn decode_params(d: &mut Decoder<'_>) -> Result<TaskParams, ProtocolError> {
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
    // Dimensions are 8 bytes on the wire and in memory: no amplification to cap.
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

pub(super) fn encode_output(e: &mut Encoder, output: &TaskOutput) {
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
            // Beyond MAX_TENSORS the peer refuses the frame; the server reports that as the
            // task's failure before writing (see `server::send`).
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

pub(super) fn decode_output(d: &mut Decoder<'_>) -> Result<TaskOutput, ProtocolError> {
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
            // Output name (4), path (4 + at least 1), shape count (4).
            let n = d.count_at_most(4 + 5 + 4, MAX_TENSORS)?;
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

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

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
}
