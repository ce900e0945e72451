//! Errors of masp-audio: [`OptionsError`] for bad configuration, [`Error`] for everything else.
//!
//! Every message is one self-contained, lowercase line without the file path, so a caller can
//! print `FILE: {error}`. For that reason underlying causes (an `io::Error`, a decoder message)
//! are folded into the message and kept as plain fields rather than exposed through
//! [`std::error::Error::source`], which would print them twice in an error chain.

use std::io;
use std::path::PathBuf;

/// Result alias of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

pub use crate::options::OptionsError;

/// Why a file could not be opened, decoded or written.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The options were invalid; nothing was opened.
    #[error(transparent)]
    Options(OptionsError),

    /// The file could not be opened or read (missing, permission denied, I/O failure).
    #[error("cannot read file: {error}")]
    Io {
        /// The file concerned.
        path: PathBuf,
        /// The underlying error.
        error: io::Error,
    },

    /// The file could not be created or written.
    #[error("cannot write file: {error}")]
    Write {
        /// The file concerned.
        path: PathBuf,
        /// The underlying error.
        error: io::Error,
    },

    /// The file has 0 bytes.
    #[error("empty file (0 bytes)")]
    EmptyFile,

    /// No supported container format was recognised (e.g. a text file named `.wav`).
    #[error("not a recognised audio format")]
    NotAudio,

    /// The container was recognised but its header is malformed.
    #[error("malformed audio header: {reason}")]
    MalformedHeader {
        /// What the demuxer objected to.
        reason: String,
    },

    /// The container holds no audio track.
    #[error("no audio track")]
    NoAudioTrack,

    /// The audio track's codec is not supported.
    #[error("unsupported codec: {reason}")]
    UnsupportedCodec {
        /// What the decoder registry reported.
        reason: String,
    },

    /// The header gives no sample rate.
    #[error("header gives no sample rate")]
    MissingSampleRate,

    /// The header's sample rate is 0 or above [`crate::MAX_SAMPLE_RATE_HZ`].
    #[error(
        "invalid sample rate {sample_rate_hz} hz in header (allowed 1..={max_hz} hz)",
        max_hz = crate::MAX_SAMPLE_RATE_HZ
    )]
    InvalidSampleRate {
        /// The rate found in the header.
        sample_rate_hz: u64,
    },

    /// The header's channel count is 0 or above [`crate::MAX_CHANNELS`].
    #[error(
        "invalid channel count {n_channels} in header (allowed 1..={max})",
        max = crate::MAX_CHANNELS
    )]
    InvalidChannelCount {
        /// The count found in the header.
        n_channels: u64,
    },

    /// The file holds fewer frames than its header declares.
    ///
    /// For WAV this is detected when the stream is opened (data chunk size against file length);
    /// for other lossless formats with an exact frame count (FLAC, AIFF) when the decoder reaches
    /// the end of the data.
    #[error(
        "truncated file: header declares {declared_frames} frames but only {found_frames} are present"
    )]
    Truncated {
        /// Frames per channel the header declares.
        declared_frames: u64,
        /// Frames per channel actually present (at open) or decoded (at end of stream).
        found_frames: u64,
    },

    /// The audio track holds no samples.
    #[error("no samples: the audio track is empty")]
    NoSamples,

    /// A decoded sample is NaN or infinite (only possible in floating-point formats).
    #[error("non-finite sample (nan or infinity) at {at_s:.6} s in channel {channel}")]
    NonFiniteSample {
        /// Position of the sample in seconds from the start of the file.
        at_s: f64,
        /// Zero-based channel index.
        channel: usize,
    },

    /// The stream's sample rate changed part-way through (e.g. a chained Ogg stream).
    #[error("sample rate changed mid-stream from {from_hz} hz to {to_hz} hz at {at_s:.3} s")]
    SampleRateChanged {
        /// Rate at the start of the stream.
        from_hz: u32,
        /// New rate.
        to_hz: u32,
        /// Position of the change in seconds.
        at_s: f64,
    },

    /// The audio data could not be decoded.
    #[error("cannot decode audio at {at_s:.3} s: {reason}")]
    Decode {
        /// Position of the failure in seconds from the start of the file.
        at_s: f64,
        /// What the decoder reported.
        reason: String,
    },

    /// The resampler failed; this indicates a bug in masp-audio rather than bad input.
    #[error("resampler failed: {reason}")]
    Resampler {
        /// What rubato reported.
        reason: String,
    },
}

impl From<OptionsError> for Error {
    fn from(e: OptionsError) -> Self {
        Error::Options(e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_are_lowercase_one_line_without_trailing_period() {
        let errors: Vec<Error> = vec![
            OptionsError::ChunkSamples { chunk_samples: 0 }.into(),
            OptionsError::TargetSampleRate {
                target_sample_rate_hz: 0,
            }
            .into(),
            Error::Io {
                path: "x.wav".into(),
                error: io::Error::other("boom"),
            },
            Error::EmptyFile,
            Error::NotAudio,
            Error::NoAudioTrack,
            Error::MissingSampleRate,
            Error::InvalidSampleRate { sample_rate_hz: 0 },
            Error::InvalidChannelCount { n_channels: 65 },
            Error::Truncated {
                declared_frames: 10,
                found_frames: 5,
            },
            Error::NoSamples,
            Error::NonFiniteSample {
                at_s: 1.5,
                channel: 0,
            },
            Error::SampleRateChanged {
                from_hz: 1,
                to_hz: 2,
                at_s: 0.0,
            },
            Error::Decode {
                at_s: 0.0,
                reason: "bad".into(),
            },
        ];
        for e in errors {
            let msg = e.to_string();
            let first = msg.chars().next().unwrap();
            assert!(!first.is_uppercase(), "{msg}");
            assert!(!msg.ends_with('.'), "{msg}");
            assert!(!msg.contains('\n'), "{msg}");
            assert!(
                !msg.contains("x.wav"),
                "path must not be in the message: {msg}"
            );
        }
    }

    #[test]
    fn options_error_is_transparent() {
        let e: Error = OptionsError::ChunkSamples { chunk_samples: 0 }.into();
        assert_eq!(
            e.to_string(),
            "chunk size 0 samples is out of range (1..=16777216 samples)"
        );
    }
}
