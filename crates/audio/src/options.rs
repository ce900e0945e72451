//! [`StreamOptions`]: the target rate and chunk size of a [`crate::ChunkStream`].

/// Highest sample rate accepted, for targets and for file headers (1 MHz).
pub const MAX_SAMPLE_RATE_HZ: u32 = 1_000_000;

/// Highest channel count accepted in a file header.
pub const MAX_CHANNELS: usize = 64;

/// Largest `chunk_samples` accepted (2^24 samples, 64 MiB of `f32`).
pub const MAX_CHUNK_SAMPLES: usize = 1 << 24;

/// Options for opening a [`crate::ChunkStream`].
///
/// Plain data: [`StreamOptions::validate`] (called by [`crate::ChunkStream::open`]) checks it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StreamOptions {
    /// Sample rate of the emitted samples, in Hz.
    ///
    /// Default 16 000 (what silero VAD and most speech models expect). Allowed
    /// 1..=[`MAX_SAMPLE_RATE_HZ`]. When it equals the file's rate the decoded samples pass
    /// through untouched; otherwise an FFT resampler (or, for rate pairs with no small common
    /// ratio, a sinc resampler) converts them, which costs CPU roughly in proportion to the
    /// source rate.
    pub target_sample_rate_hz: u32,
    /// Number of mono samples per emitted chunk (at the target rate).
    ///
    /// Default 16 384: about 1.02 s at 16 kHz, a multiple of silero VAD's 512-sample window (and
    /// of its 256-sample window at 8 kHz), and 64 KiB of `f32`. Allowed
    /// 1..=[`MAX_CHUNK_SAMPLES`]. Memory held by a stream is a few times this plus a fixed
    /// overhead of a few hundred KiB (decoder packet and resampler state); larger chunks mean
    /// fewer calls and less per-call overhead, smaller chunks mean less memory and lower latency.
    pub chunk_samples: usize,
}

impl Default for StreamOptions {
    fn default() -> Self {
        Self {
            target_sample_rate_hz: 16_000,
            chunk_samples: 16_384,
        }
    }
}

impl StreamOptions {
    /// Options with the given target rate (Hz) and chunk size (samples).
    ///
    /// Values are checked when the stream is opened, or by [`StreamOptions::validate`].
    ///
    /// # Examples
    ///
    /// ```
    /// let options = masp_audio::StreamOptions::new(16_000, 512);
    /// assert_eq!(options.chunk_samples, 512);
    /// assert!(options.validate().is_ok());
    /// ```
    pub fn new(target_sample_rate_hz: u32, chunk_samples: usize) -> Self {
        Self {
            target_sample_rate_hz,
            chunk_samples,
        }
    }

    /// Checks that both fields are in range.
    ///
    /// # Errors
    ///
    /// [`OptionsError::TargetSampleRate`] if the rate is 0 or above [`MAX_SAMPLE_RATE_HZ`],
    /// [`OptionsError::ChunkSamples`] if the chunk size is 0 or above [`MAX_CHUNK_SAMPLES`].
    ///
    /// # Examples
    ///
    /// ```
    /// use masp_audio::{OptionsError, StreamOptions};
    /// assert_eq!(
    ///     StreamOptions::new(16_000, 0).validate(),
    ///     Err(OptionsError::ChunkSamples { chunk_samples: 0 })
    /// );
    /// ```
    pub fn validate(&self) -> Result<(), OptionsError> {
        if self.target_sample_rate_hz == 0 || self.target_sample_rate_hz > MAX_SAMPLE_RATE_HZ {
            return Err(OptionsError::TargetSampleRate {
                target_sample_rate_hz: self.target_sample_rate_hz,
            });
        }
        if self.chunk_samples == 0 || self.chunk_samples > MAX_CHUNK_SAMPLES {
            return Err(OptionsError::ChunkSamples {
                chunk_samples: self.chunk_samples,
            });
        }
        Ok(())
    }
}

/// A [`StreamOptions`] value that cannot be used; detected before any file is touched.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum OptionsError {
    /// The target sample rate is 0 Hz or above [`MAX_SAMPLE_RATE_HZ`].
    #[error(
        "target sample rate {target_sample_rate_hz} hz is out of range (1..={max_hz} hz)",
        max_hz = MAX_SAMPLE_RATE_HZ
    )]
    TargetSampleRate {
        /// The rejected rate.
        target_sample_rate_hz: u32,
    },
    /// The chunk size is 0 or above [`crate::MAX_CHUNK_SAMPLES`].
    #[error(
        "chunk size {chunk_samples} samples is out of range (1..={max} samples)",
        max = crate::MAX_CHUNK_SAMPLES
    )]
    ChunkSamples {
        /// The rejected chunk size.
        chunk_samples: usize,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_is_valid_16k() {
        let o = StreamOptions::default();
        assert_eq!(o.target_sample_rate_hz, 16_000);
        assert_eq!(o.chunk_samples % 512, 0);
        assert_eq!(o.validate(), Ok(()));
    }

    #[test]
    fn rejects_out_of_range_values() {
        assert!(matches!(
            StreamOptions::new(0, 1).validate(),
            Err(OptionsError::TargetSampleRate {
                target_sample_rate_hz: 0
            })
        ));
        assert!(
            StreamOptions::new(MAX_SAMPLE_RATE_HZ + 1, 1)
                .validate()
                .is_err()
        );
        assert!(StreamOptions::new(MAX_SAMPLE_RATE_HZ, 1).validate().is_ok());
        assert!(
            StreamOptions::new(16_000, MAX_CHUNK_SAMPLES + 1)
                .validate()
                .is_err()
        );
        assert!(
            StreamOptions::new(16_000, MAX_CHUNK_SAMPLES)
                .validate()
                .is_ok()
        );
    }
}
