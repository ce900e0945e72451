//! masp-audio: decode audio files to mono `f32` at a target rate, streamed in bounded memory.
//!
//! [`ChunkStream`] opens a file (WAV, FLAC, MP3, Ogg/Vorbis, AIFF through symphonia), averages
//! its channels to mono, resamples with rubato when the file's rate differs from the target,
//! and hands out fixed-size chunks. Memory does not grow with file length. The output is
//! aligned with the input (resampler delay removed) and has `round(n_frames * target /
//! source)` samples, so `sample_index / target_rate` is the time in the file.
//!
//! [`read_mono`] decodes a whole short file; [`write_wav_f32`], [`write_wav_i16`] and
//! [`WavWriter`] write mono WAV files.
//!
//! [`features`] computes log-mel frames in bounded memory and cuts them into model windows.
//!
//! ```
//! use masp_audio::features::{LogMel, LogMelConfig};
//! use masp_audio::{ChunkStream, StreamOptions, write_wav_f32};
//!
//! // Three seconds of a 440 Hz tone at 48 kHz.
//! let dir = tempfile::tempdir()?;
//! let path = dir.path().join("tone.wav");
//! let tone: Vec<f32> = (0..3 * 48_000)
//!     .map(|i| 0.5 * (i as f32 * 440.0 * std::f32::consts::TAU / 48_000.0).sin())
//!     .collect();
//! write_wav_f32(&path, 48_000, &tone)?;
//!
//! // Streamed at 16 kHz in one-second chunks, log-mel frames computed as the chunks arrive.
//! let mut stream = ChunkStream::open(&path, StreamOptions::new(16_000, 16_000))?;
//! let config = LogMelConfig::default();
//! let mut logmel = LogMel::new(config.clone())?;
//! let mut frames = Vec::new();
//! while let Some(chunk) = stream.next_chunk()? {
//!     logmel.push(chunk, &mut frames);
//! }
//! assert_eq!(stream.n_samples_emitted(), 3 * 16_000);
//! assert_eq!(frames.len(), config.n_frames(3 * 16_000) * config.n_mels);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! Architecture invariant: this crate depends on no other masp crate and does no I/O besides
//! reading the file it is given and writing the WAV files it is asked to write.
#![warn(missing_docs)]

mod decode;
mod error;
pub mod features;
mod info;
mod options;
mod resample;
mod stream;
mod wav_header;
mod wav_writer;

pub use error::{Error, OptionsError, Result};
pub use info::AudioInfo;
pub use options::{MAX_CHANNELS, MAX_CHUNK_SAMPLES, MAX_SAMPLE_RATE_HZ, StreamOptions};
pub use stream::{ChunkStream, read_mono};
pub use wav_writer::{WavSampleFormat, WavWriter, write_wav_f32, write_wav_i16};
