//! The silero VAD adapter: 512-sample frames at 16 kHz in, speech probabilities out.
//!
//! The model takes `input [1, 576]` — the last 64 samples of the previous frame followed by 512
//! new samples — plus a recurrent `state [2, 1, 128]` and the sample rate `sr` (int64 scalar).
//! Without the 64-sample context the probabilities are all near zero, so the adapter keeps it, as
//! the official package's `OnnxWrapper` does.

use std::path::Path;

use ort::session::Session;
use ort::value::TensorRef;

use crate::runtime::{Runtime, SessionOptions};
use crate::{Error, Result};

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
    /// Context followed by the current frame; reused for every call.
    input: Vec<f32>,
    state: Vec<f32>,
    sr: [i64; 1],
}

impl SileroVad {
    /// Load the model at `path` (named `name` in errors and reports) and check its interface.
    ///
    /// # Errors
    /// [`Error::Load`] if ONNX Runtime refuses the file, [`Error::ModelInterface`] if it lacks the
    /// inputs `input`, `state`, `sr` or the outputs `output`, `stateN`.
    pub fn load(
        runtime: &Runtime,
        name: &str,
        path: &Path,
        options: SessionOptions,
    ) -> Result<Self> {
        let session = runtime.session(name, path, options)?;
        let has = |names: &[&str], list: Vec<&str>| names.iter().all(|n| list.contains(n));
        let inputs: Vec<&str> = session.inputs().iter().map(|o| o.name()).collect();
        let outputs: Vec<&str> = session.outputs().iter().map(|o| o.name()).collect();
        if !has(&["input", "state", "sr"], inputs.clone())
            || !has(&["output", "stateN"], outputs.clone())
        {
            return Err(Error::ModelInterface {
                model: name.to_string(),
                reason: format!(
                    "expected inputs [input, state, sr] and outputs [output, stateN], found \
                     inputs {inputs:?} and outputs {outputs:?}"
                ),
            });
        }
        Ok(Self {
            name: name.to_string(),
            session,
            input: vec![0.0; CONTEXT_SAMPLES + FRAME_SAMPLES],
            state: vec![0.0; STATE_LEN],
            sr: [i64::from(SAMPLE_RATE_HZ)],
        })
    }

    /// Forget the stream: zero the recurrent state and the context. Call between files.
    pub fn reset(&mut self) {
        self.input.fill(0.0);
        self.state.fill(0.0);
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
        let outputs = self
            .session
            .run(ort::inputs!["input" => input, "state" => state, "sr" => sr])
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
