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
