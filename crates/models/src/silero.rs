//! The silero VAD adapter: 512-sample frames at 16 kHz in, speech probabilities out.
//!
//! The model takes `input [1, 576]` — the last 64 samples of the previous frame followed by 512
//! new samples — plus a recurrent `state [2, 1, 128]` and the sample rate `sr` (int64 scalar).
//! Without the 64-sample context the probabilities are all near zero, so the adapter keeps it, as
//! the official package's `OnnxWrapper` does.
//!
//! The package also ships a *sequence* export (`silero_vad_16k_sequence.onnx`): `input [n, 576]`
//! — n such rows at once — with LSTM state `h`, `c [1, 1, 128]`. It gives the same probabilities
//! with one call per block of frames instead of one per frame. [`SileroVad::load`] recognises
//! either interface, and [`SileroVad::process_block`] uses whichever was loaded.

use std::path::Path;

use std::sync::Arc;

use ort::session::{RunOptions, Session};
use ort::value::TensorRef;

use masp_orchestrator::runtime::{Admitted, SessionOptions};
use masp_orchestrator::{Error, Result};

/// Samples per frame at 16 kHz (32 ms).
pub const FRAME_SAMPLES: usize = 512;
/// Samples of the previous frame the model sees before each frame.
pub const CONTEXT_SAMPLES: usize = 64;
/// The sample rate the adapter feeds the model.
pub const SAMPLE_RATE_HZ: u32 = 16_000;
const STATE_LEN: usize = 2 * 128;

/// A loaded silero VAD model with its per-stream state.
#[derive(Debug)]
pub struct SileroVad {
    name: String,
    session: Session,
    /// Passed to every call ([`SileroVad::set_run_options`]).
    run_options: crate::call::CallOptions,
    /// Context followed by the current frame; reused for every call.
    input: Vec<f32>,
    state: Vec<f32>,
    sr: [i64; 1],
    /// Sequence interface: LSTM `h` and `c`, and the rows of the current block.
    sequence: Option<SequenceState>,
}

/// State of the sequence interface.
#[derive(Debug)]
struct SequenceState {
    h: Vec<f32>,
    c: Vec<f32>,
    rows: Vec<f32>,
}

/// Fills `rows` with the sequence export's input for `block`: one row of
/// [`CONTEXT_SAMPLES`] + [`FRAME_SAMPLES`] per frame — the 64 samples before the frame (from
/// `context` for the first row), then the frame, zero-padded at the end of the stream — and
/// leaves in `context` the last 64 samples of the last row, for the next block. Returns the
/// number of frames.
pub fn fill_sequence_rows(
    context: &mut [f32; CONTEXT_SAMPLES],
    block: &[f32],
    rows: &mut Vec<f32>,
) -> usize {
    let n_frames = block.len().div_ceil(FRAME_SAMPLES);
    let row = CONTEXT_SAMPLES + FRAME_SAMPLES;
    rows.clear();
    rows.resize(n_frames * row, 0.0);
    for (i, r) in rows.chunks_exact_mut(row).enumerate() {
        let start = i * FRAME_SAMPLES;
        if i == 0 {
            r[..CONTEXT_SAMPLES].copy_from_slice(context);
        } else {
            r[..CONTEXT_SAMPLES].copy_from_slice(&block[start - CONTEXT_SAMPLES..start]);
        }
        let end = (start + FRAME_SAMPLES).min(block.len());
        r[CONTEXT_SAMPLES..CONTEXT_SAMPLES + end - start].copy_from_slice(&block[start..end]);
    }
    if n_frames > 0 {
        context.copy_from_slice(&rows[n_frames * row - CONTEXT_SAMPLES..]);
    }
    n_frames
}

/// Frames per call with the sequence interface: ~16 s of audio, 1.2 MiB of input rows.
pub const MAX_BLOCK_FRAMES: usize = 512;

impl SileroVad {
    /// Load the model at `path` (named `name` in errors and reports) and check its interface.
    ///
    /// # Errors
    /// [`Error::Load`] if ONNX Runtime refuses the file, [`Error::ModelInterface`] if it lacks the
    /// inputs `input`, `state`, `sr` or the outputs `output`, `stateN`.
    pub fn load(
        admitted: &Admitted<'_>,
        name: &str,
        path: &Path,
        options: SessionOptions,
    ) -> Result<Self> {
        let session = admitted.session(name, path, options)?;
        let has = |names: &[&str], list: &[&str]| names.iter().all(|n| list.contains(n));
        let inputs: Vec<&str> = session.inputs().iter().map(|o| o.name()).collect();
        let outputs: Vec<&str> = session.outputs().iter().map(|o| o.name()).collect();
        let sequence = if has(&["input", "h", "c"], &inputs)
            && has(&["speech_probs", "hn", "cn"], &outputs)
        {
            Some(SequenceState {
                h: vec![0.0; 128],
                c: vec![0.0; 128],
                rows: Vec::new(),
            })
        } else if has(&["input", "state", "sr"], &inputs) && has(&["output", "stateN"], &outputs) {
            None
        } else {
            return Err(Error::ModelInterface {
                model: name.to_string(),
                reason: format!(
                    "expected silero's inputs [input, state, sr] and outputs [output, stateN], or \
                     the sequence export's [input, h, c] → [speech_probs, hn, cn]; found inputs \
                     {inputs:?} and outputs {outputs:?}"
                ),
            });
        };
        Ok(Self {
            name: name.to_string(),
            session,
            run_options: crate::call::CallOptions::default(),
            input: vec![0.0; CONTEXT_SAMPLES + FRAME_SAMPLES],
            state: vec![0.0; STATE_LEN],
            sr: [i64::from(SAMPLE_RATE_HZ)],
            sequence,
        })
    }

    /// Pass `options` to every model call from now on (`None`: no options), so whoever holds
    /// them can terminate a call in flight (the orchestrator's watchdog does).
    pub fn set_run_options(&mut self, options: Option<Arc<RunOptions>>) {
        self.run_options = crate::call::CallOptions::new(options);
    }

    /// Whether the sequence interface (many frames per call) was loaded.
    pub fn is_sequence(&self) -> bool {
        self.sequence.is_some()
    }

    /// Speech probabilities of the next frames of the stream: `samples` holds whole frames of
    /// [`FRAME_SAMPLES`], except that the stream's final block may end with a partial frame
    /// (zero-padded). Appends one probability per frame to `out`.
    ///
    /// # Errors
    /// [`Error::Inference`] when ONNX Runtime fails.
    pub fn process_block(&mut self, samples: &[f32], out: &mut Vec<f32>) -> Result<()> {
        if self.sequence.is_none() {
            for frame in samples.chunks(FRAME_SAMPLES) {
                out.push(self.process_frame(frame)?);
            }
            return Ok(());
        }
        for block in samples.chunks(MAX_BLOCK_FRAMES * FRAME_SAMPLES) {
            self.run_sequence(block, out)?;
        }
        Ok(())
    }

    fn run_sequence(&mut self, block: &[f32], out: &mut Vec<f32>) -> Result<()> {
        let Some(seq) = self.sequence.as_mut() else {
            return Ok(());
        };
        let n_frames = block.len().div_ceil(FRAME_SAMPLES);
        if n_frames == 0 {
            return Ok(());
        }
        let row = CONTEXT_SAMPLES + FRAME_SAMPLES;
        let mut context = [0.0f32; CONTEXT_SAMPLES];
        context.copy_from_slice(&self.input[..CONTEXT_SAMPLES]);
        fill_sequence_rows(&mut context, block, &mut seq.rows);
        self.input[..CONTEXT_SAMPLES].copy_from_slice(&context);
        let name = &self.name;
        let infer = |e: ort::Error| Error::Inference {
            model: name.clone(),
            reason: e.to_string(),
        };
        let input = TensorRef::from_array_view(([n_frames, row], &seq.rows[..])).map_err(infer)?;
        let h = TensorRef::from_array_view(([1usize, 1, 128], &seq.h[..])).map_err(infer)?;
        let c = TensorRef::from_array_view(([1usize, 1, 128], &seq.c[..])).map_err(infer)?;
        let outputs = crate::call::run(
            &mut self.session,
            ort::inputs!["input" => input, "h" => h, "c" => c],
            &self.run_options,
        )
        .map_err(|e| Error::Inference {
            model: name.clone(),
            reason: e.to_string(),
        })?;
        let bad = |what: String| Error::Inference {
            model: name.clone(),
            reason: format!("unexpected output: {what}"),
        };
        let (_, probs) = outputs["speech_probs"]
            .try_extract_tensor::<f32>()
            .map_err(|e| bad(e.to_string()))?;
        if probs.len() != n_frames {
            return Err(bad(format!(
                "{} probabilities for {n_frames} frames",
                probs.len()
            )));
        }
        out.extend_from_slice(probs);
        let (_, hn) = outputs["hn"]
            .try_extract_tensor::<f32>()
            .map_err(|e| bad(e.to_string()))?;
        let (_, cn) = outputs["cn"]
            .try_extract_tensor::<f32>()
            .map_err(|e| bad(e.to_string()))?;
        if hn.len() != 128 || cn.len() != 128 {
            return Err(bad("state of the wrong size".into()));
        }
        seq.h.copy_from_slice(hn);
        seq.c.copy_from_slice(cn);
        Ok(())
    }

    /// Forget the stream: zero the recurrent state and the context. Call between files.
    pub fn reset(&mut self) {
        self.input.fill(0.0);
        self.state.fill(0.0);
        if let Some(seq) = self.sequence.as_mut() {
            seq.h.fill(0.0);
            seq.c.fill(0.0);
        }
    }

    /// The speech probability of the next frame of the stream.
    ///
    /// `frame` holds at most [`FRAME_SAMPLES`] samples; a shorter (final) frame is zero-padded,
    /// as the official package pads its last chunk.
    ///
    /// # Errors
    /// [`Error::Inference`] when ONNX Runtime fails.
    pub fn process_frame(&mut self, frame: &[f32]) -> Result<f32> {
        let n = frame.len().min(FRAME_SAMPLES);
        self.input[CONTEXT_SAMPLES..CONTEXT_SAMPLES + n].copy_from_slice(&frame[..n]);
        self.input[CONTEXT_SAMPLES + n..].fill(0.0);
        let infer = |e: ort::Error| Error::Inference {
            model: self.name.clone(),
            reason: e.to_string(),
        };
        let input = TensorRef::from_array_view((
            [1usize, CONTEXT_SAMPLES + FRAME_SAMPLES],
            &self.input[..],
        ))
        .map_err(infer)?;
        let state =
            TensorRef::from_array_view(([2usize, 1, 128], &self.state[..])).map_err(infer)?;
        let sr = TensorRef::from_array_view(((), &self.sr[..])).map_err(infer)?;
        let outputs = crate::call::run(
            &mut self.session,
            ort::inputs!["input" => input, "state" => state, "sr" => sr],
            &self.run_options,
        )
        .map_err(|e| Error::Inference {
            model: self.name.clone(),
            reason: e.to_string(),
        })?;
        let bad = |what: &str| Error::Inference {
            model: self.name.clone(),
            reason: format!("unexpected output: {what}"),
        };
        let (_, probability) = outputs["output"]
            .try_extract_tensor::<f32>()
            .map_err(|e| bad(&e.to_string()))?;
        let probability = *probability.first().ok_or_else(|| bad("empty `output`"))?;
        let (_, new_state) = outputs["stateN"]
            .try_extract_tensor::<f32>()
            .map_err(|e| bad(&e.to_string()))?;
        if new_state.len() != STATE_LEN {
            return Err(bad(&format!(
                "`stateN` has {} values, expected {STATE_LEN}",
                new_state.len()
            )));
        }
        self.state.copy_from_slice(new_state);
        drop(outputs);
        // The next call sees the last 64 samples of what this call saw.
        self.input.copy_within(FRAME_SAMPLES.., 0);
        Ok(probability)
    }
}
