//! Audio fixtures: the committed speech sample, generated signals, and a corpus of bad inputs.
//!
//! Generated files are written in one-second blocks through [`masp_audio::WavWriter`], so an
//! hour-long file costs no more memory to produce than a one-second one.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use masp_audio::{WavSampleFormat, WavWriter};
use serde::Serialize;

use crate::{Error, Result};

/// The committed two-speaker recording (16 kHz mono, ~10 s) under `assets/samples/`.
pub const SPEECH_SAMPLE: &str = "two_voices.wav";

/// The workspace's `assets/samples/` directory, found by walking up from this crate's manifest
/// directory (so it works from any crate or test binary of the workspace, and from a vendored
/// copy that keeps the layout). `MASP_SAMPLES_DIR`, when set, wins.
///
/// # Errors
/// [`Error::FixtureMissing`] naming the places searched.
///
/// # Examples
///
/// ```
/// let dir = masp_testkit::fixtures::samples_dir()?;
/// assert!(dir.join("two_voices.wav").is_file());
/// # Ok::<(), masp_testkit::Error>(())
/// ```
pub fn samples_dir() -> Result<PathBuf> {
    let mut searched = Vec::new();
    if let Some(dir) = std::env::var_os("MASP_SAMPLES_DIR").map(PathBuf::from) {
        if dir.join(SPEECH_SAMPLE).is_file() {
            return Ok(dir);
        }
        searched.push(dir);
    }
    for ancestor in Path::new(env!("CARGO_MANIFEST_DIR")).ancestors() {
        let dir = ancestor.join("assets").join("samples");
        if dir.join(SPEECH_SAMPLE).is_file() {
            return Ok(dir);
        }
        searched.push(dir);
    }
    Err(Error::FixtureMissing {
        name: SPEECH_SAMPLE.into(),
        searched,
    })
}

/// The committed speech sample, `assets/samples/two_voices.wav`: two speakers, six speech
/// segments by silero VAD.
///
/// # Errors
/// [`Error::FixtureMissing`] when the workspace's samples cannot be found.
///
/// # Examples
///
/// ```
/// let speech = masp_testkit::fixtures::speech_sample()?;
/// let (info, _) = masp_audio::read_mono(&speech, 16_000)?;
/// assert!(info.duration_s().unwrap_or(0.0) > 5.0);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn speech_sample() -> Result<PathBuf> {
    Ok(samples_dir()?.join(SPEECH_SAMPLE))
}

/// What a generated file contains.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[non_exhaustive]
pub enum Signal {
    /// A sine at `frequency_hz` with peak `amplitude` (0..1).
    Tone {
        /// Frequency, Hz.
        frequency_hz: f32,
        /// Peak amplitude, 0..1.
        amplitude: f32,
    },
    /// Uniform white noise in `[-amplitude, amplitude]`, from a fixed seed (reproducible).
    Noise {
        /// Peak amplitude, 0..1.
        amplitude: f32,
        /// Seed of the generator; the same seed gives the same file.
        seed: u64,
    },
    /// Digital silence.
    Silence,
    /// Every sample NaN (only meaningful with [`WavSampleFormat::F32`]).
    NaN,
}

/// A file to generate: its signal, length, rate and encoding.
///
/// # Examples
///
/// ```
/// use masp_testkit::fixtures::AudioSpec;
/// let spec = AudioSpec::tone(440.0, 2.0);
/// assert_eq!(spec.n_samples(), 32_000);
/// ```
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AudioSpec {
    /// The content.
    pub signal: Signal,
    /// Length, seconds.
    pub seconds: f64,
    /// Sample rate, Hz. Default 16 000 (what masp's models use; other rates are resampled).
    pub sample_rate_hz: u32,
    /// Encoding. Default 16-bit PCM.
    pub format: WavSampleFormat,
}

impl AudioSpec {
    /// A 0.5-amplitude sine of `frequency_hz`, `seconds` long, 16 kHz 16-bit.
    #[must_use]
    pub fn tone(frequency_hz: f32, seconds: f64) -> Self {
        Self::new(
            Signal::Tone {
                frequency_hz,
                amplitude: 0.5,
            },
            seconds,
        )
    }

    /// 0.3-amplitude white noise from `seed`, `seconds` long, 16 kHz 16-bit.
    #[must_use]
    pub fn noise(seconds: f64, seed: u64) -> Self {
        Self::new(
            Signal::Noise {
                amplitude: 0.3,
                seed,
            },
            seconds,
        )
    }

    /// `seconds` of silence, 16 kHz 16-bit.
    #[must_use]
    pub fn silence(seconds: f64) -> Self {
        Self::new(Signal::Silence, seconds)
    }

    /// `signal` for `seconds` at 16 kHz, 16-bit.
    #[must_use]
    pub fn new(signal: Signal, seconds: f64) -> Self {
        Self {
            signal,
            seconds,
            sample_rate_hz: 16_000,
            format: WavSampleFormat::I16,
        }
    }

    /// `self` at another sample rate.
    #[must_use]
    pub fn with_sample_rate(mut self, sample_rate_hz: u32) -> Self {
        self.sample_rate_hz = sample_rate_hz;
        self
    }

    /// `self` in another encoding.
    #[must_use]
    pub fn with_format(mut self, format: WavSampleFormat) -> Self {
        self.format = format;
        self
    }

    /// Samples in the file: `round(seconds · rate)`.
    #[must_use]
    pub fn n_samples(&self) -> u64 {
        (self.seconds.max(0.0) * f64::from(self.sample_rate_hz)).round() as u64
    }
}

/// Writes `spec` as `dir/name` (a mono WAV file), one second at a time: memory does not grow
/// with the length, so hour-long files are fine (up to the WAV format's 4 GiB).
///
/// # Errors
/// [`Error::Audio`] when the file cannot be written or the spec is unusable (rate 0).
///
/// # Examples
///
/// ```
/// use masp_testkit::fixtures::{AudioSpec, write_audio};
/// let dir = tempfile::tempdir()?;
/// let path = write_audio(dir.path(), "noise.wav", &AudioSpec::noise(1.5, 7))?;
/// let (_, samples) = masp_audio::read_mono(&path, 16_000)?;
/// assert_eq!(samples.len(), 24_000);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn write_audio(dir: &Path, name: &str, spec: &AudioSpec) -> Result<PathBuf> {
    let path = dir.join(name);
    let audio_err = |source| Error::Audio {
        path: path.clone(),
        source,
    };
    let mut writer =
        WavWriter::create(&path, spec.sample_rate_hz, spec.format).map_err(audio_err)?;
    let rate = spec.sample_rate_hz.max(1) as usize;
    let mut block = vec![0.0f32; rate];
    let mut rng = match spec.signal {
        Signal::Noise { seed, .. } => seed ^ 0x9e37_79b9_7f4a_7c15,
        _ => 0,
    };
    let mut written = 0u64;
    let total = spec.n_samples();
    while written < total {
        let n = (total - written).min(rate as u64) as usize;
        for (i, sample) in block[..n].iter_mut().enumerate() {
            let t = (written + i as u64) as f64 / f64::from(spec.sample_rate_hz);
            *sample = match spec.signal {
                Signal::Tone {
                    frequency_hz,
                    amplitude,
                } => amplitude * (std::f64::consts::TAU * f64::from(frequency_hz) * t).sin() as f32,
                Signal::Noise { amplitude, .. } => {
                    // xorshift64*: cheap, reproducible, good enough for test noise.
                    rng ^= rng >> 12;
                    rng ^= rng << 25;
                    rng ^= rng >> 27;
                    let bits = rng.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 40;
                    amplitude * ((bits as f32 / 16_777_216.0) * 2.0 - 1.0)
                }
                Signal::Silence => 0.0,
                Signal::NaN => f32::NAN,
            };
        }
        writer.write(&block[..n]).map_err(audio_err)?;
        written += n as u64;
    }
    writer.finish().map_err(audio_err)?;
    Ok(path)
}

/// Writes a tone, noise and silence (each `seconds` long) and returns their paths in that
/// order: a small varied batch for pipeline tests.
///
/// # Errors
/// As [`write_audio`].
///
/// # Examples
///
/// ```
/// let dir = tempfile::tempdir()?;
/// let files = masp_testkit::fixtures::generated_batch(dir.path(), 1.0)?;
/// assert_eq!(files.len(), 3);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn generated_batch(dir: &Path, seconds: f64) -> Result<Vec<PathBuf>> {
    Ok(vec![
        write_audio(dir, "tone.wav", &AudioSpec::tone(220.0, seconds))?,
        write_audio(dir, "noise.wav", &AudioSpec::noise(seconds, 1))?,
        write_audio(dir, "silence.wav", &AudioSpec::silence(seconds))?,
    ])
}

/// A kind of broken input in [`bad_inputs`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum BadInputKind {
    /// A file of 0 bytes.
    Empty,
    /// A WAV file whose data stops before what its header declares.
    TruncatedWav,
    /// Text in a file named `.wav`.
    NotAudio,
    /// A valid WAV header with no samples.
    ZeroSamples,
    /// A 32-bit float WAV whose samples are NaN.
    NanSamples,
}

impl std::fmt::Display for BadInputKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            BadInputKind::Empty => "empty",
            BadInputKind::TruncatedWav => "truncated wav",
            BadInputKind::NotAudio => "not audio",
            BadInputKind::ZeroSamples => "zero samples",
            BadInputKind::NanSamples => "nan samples",
        })
    }
}

/// One file of the bad-input corpus and what masp must say about it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BadInput {
    /// What is wrong with it.
    pub kind: BadInputKind,
    /// The file.
    pub path: PathBuf,
    /// A fragment that masp's error message for this file must contain.
    pub expected_message: &'static str,
}

/// Writes the bad-input corpus into `dir`: empty, truncated WAV, non-audio named `.wav`,
/// zero-sample WAV, NaN-sample float WAV. Each comes with the fragment masp's error must
/// contain, so a test can check that every one fails with the right message (and that the next
/// good input still runs).
///
/// # Errors
/// [`Error::Io`] or [`Error::Audio`] when a file cannot be written.
///
/// # Examples
///
/// ```
/// let dir = tempfile::tempdir()?;
/// for bad in masp_testkit::fixtures::bad_inputs(dir.path())? {
///     let err = masp_audio::read_mono(&bad.path, 16_000).unwrap_err();
///     assert!(err.to_string().contains(bad.expected_message), "{}: {err}", bad.kind);
/// }
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn bad_inputs(dir: &Path) -> Result<Vec<BadInput>> {
    let io_err = |path: &Path| {
        let path = path.to_path_buf();
        move |source| Error::Io { path, source }
    };
    let empty = dir.join("empty.wav");
    File::create(&empty).map_err(io_err(&empty))?;

    // One second declared, 0.1 s present.
    let truncated = write_audio(dir, "truncated.wav", &AudioSpec::tone(440.0, 1.0))?;
    let file = OpenOptions::new()
        .write(true)
        .open(&truncated)
        .map_err(io_err(&truncated))?;
    file.set_len(44 + 3_200).map_err(io_err(&truncated))?;

    let not_audio = dir.join("not_audio.wav");
    File::create(&not_audio)
        .and_then(|mut f| f.write_all(b"this is a text file, not a RIFF/WAVE file\n"))
        .map_err(io_err(&not_audio))?;

    let zero = write_audio(dir, "zero_samples.wav", &AudioSpec::silence(0.0))?;
    let nan = write_audio(
        dir,
        "nan_samples.wav",
        &AudioSpec::new(Signal::NaN, 0.5).with_format(WavSampleFormat::F32),
    )?;
    Ok(vec![
        BadInput {
            kind: BadInputKind::Empty,
            path: empty,
            expected_message: "empty file (0 bytes)",
        },
        BadInput {
            kind: BadInputKind::TruncatedWav,
            path: truncated,
            expected_message: "truncated file",
        },
        BadInput {
            kind: BadInputKind::NotAudio,
            path: not_audio,
            expected_message: "not a recognised audio format",
        },
        BadInput {
            kind: BadInputKind::ZeroSamples,
            path: zero,
            expected_message: "no samples",
        },
        BadInput {
            kind: BadInputKind::NanSamples,
            path: nan,
            expected_message: "non-finite sample",
        },
    ])
}

/// A FLAC file of `seconds` of digital silence at 16 kHz mono 16-bit: STREAMINFO plus one
/// CONSTANT subframe per 4096-sample block, so ten hours take about 2 MiB on disk while a
/// decoder still produces every sample. For "absurdly long input" tests.
///
/// # Errors
/// [`Error::Io`] when the file cannot be written.
///
/// # Examples
///
/// ```
/// let dir = tempfile::tempdir()?;
/// let path = masp_testkit::fixtures::silent_flac(dir.path(), "quiet.flac", 3.0)?;
/// let (info, samples) = masp_audio::read_mono(&path, 16_000)?;
/// assert_eq!(info.n_source_frames, Some(48_000));
/// assert!(samples.len() == 48_000 && samples.iter().all(|&s| s == 0.0));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn silent_flac(dir: &Path, name: &str, seconds: f64) -> Result<PathBuf> {
    const RATE: u64 = 16_000;
    const BLOCK: u64 = 4096;
    let path = dir.join(name);
    let total = (seconds.max(0.0) * RATE as f64).round() as u64;
    let mut out = Vec::with_capacity(64 + (total / BLOCK + 1) as usize * 16);
    out.extend_from_slice(b"fLaC");
    // Last metadata block, type 0 (STREAMINFO), 34 bytes.
    out.extend_from_slice(&[0x80, 0, 0, 34]);
    out.extend_from_slice(&(BLOCK as u16).to_be_bytes()); // min block size
    out.extend_from_slice(&(BLOCK as u16).to_be_bytes()); // max block size
    out.extend_from_slice(&[0; 6]); // min/max frame size: unknown
    // 20 bits rate, 3 bits channels-1 (0), 5 bits bits-per-sample-1 (15), 36 bits total.
    let packed: u64 = (RATE << 44) | (15 << 36) | (total & 0xF_FFFF_FFFF);
    out.extend_from_slice(&packed.to_be_bytes());
    out.extend_from_slice(&[0; 16]); // MD5: not computed
    let mut frame_number: u64 = 0;
    let mut written = 0u64;
    while written < total {
        let n = BLOCK.min(total - written);
        let start = out.len();
        out.extend_from_slice(&[0xFF, 0xF8]); // sync, fixed block size
        // Block size code: 4096 (12), or 7 = 16-bit (n-1) after the frame number; 16 kHz (5).
        let size_code: u8 = if n == BLOCK { 12 } else { 7 };
        out.push((size_code << 4) | 5);
        out.push(0b0000_1000); // mono, 16 bits per sample
        utf8_number(&mut out, frame_number);
        if size_code == 7 {
            out.extend_from_slice(&((n - 1) as u16).to_be_bytes());
        }
        out.push(crc8(&out[start..]));
        out.extend_from_slice(&[0x00, 0x00, 0x00]); // CONSTANT subframe, value 0
        let crc = crc16(&out[start..]);
        out.extend_from_slice(&crc.to_be_bytes());
        written += n;
        frame_number += 1;
    }
    std::fs::write(&path, &out).map_err(|source| Error::Io {
        path: path.clone(),
        source,
    })?;
    Ok(path)
}

/// FLAC's UTF-8-like coding of a frame number.
fn utf8_number(out: &mut Vec<u8>, n: u64) {
    if n < 0x80 {
        out.push(n as u8);
        return;
    }
    let extra = match n {
        0..0x800 => 1,
        0x800..0x1_0000 => 2,
        0x1_0000..0x20_0000 => 3,
        0x20_0000..0x400_0000 => 4,
        _ => 5,
    };
    let lead_mask: u8 = !(0xFFu8 >> (extra + 1));
    out.push(lead_mask | (n >> (6 * extra)) as u8);
    for i in (0..extra).rev() {
        out.push(0x80 | ((n >> (6 * i)) & 0x3F) as u8);
    }
}

/// CRC-8, polynomial x^8 + x^2 + x + 1 (FLAC frame headers).
fn crc8(bytes: &[u8]) -> u8 {
    bytes.iter().fold(0u8, |mut crc, &b| {
        crc ^= b;
        for _ in 0..8 {
            crc = if crc & 0x80 != 0 {
                (crc << 1) ^ 0x07
            } else {
                crc << 1
            };
        }
        crc
    })
}

/// CRC-16, polynomial x^16 + x^15 + x^2 + 1 (FLAC frames).
fn crc16(bytes: &[u8]) -> u16 {
    bytes.iter().fold(0u16, |mut crc, &b| {
        crc ^= u16::from(b) << 8;
        for _ in 0..8 {
            crc = if crc & 0x8000 != 0 {
                (crc << 1) ^ 0x8005
            } else {
                crc << 1
            };
        }
        crc
    })
}
