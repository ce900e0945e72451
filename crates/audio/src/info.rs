//! [`AudioInfo`]: what the file header says about the audio.

use std::path::PathBuf;

/// Facts about an opened audio file, taken from its header.
#[derive(Debug, Clone, PartialEq)]
pub struct AudioInfo {
    /// The file that was opened.
    pub path: PathBuf,
    /// Short codec name as symphonia reports it, e.g. `pcm_s16le`, `pcm_f32le`, `flac`, `mp3`,
    /// `vorbis`.
    pub codec: String,
    /// Sample rate of the file, in Hz (1..=[`crate::MAX_SAMPLE_RATE_HZ`]).
    pub source_sample_rate_hz: u32,
    /// Channels in the file (1..=[`crate::MAX_CHANNELS`]); output is always their average.
    pub n_channels: usize,
    /// Frames per channel the header declares, if it says. Exact for WAV and FLAC, an estimate
    /// for lossy formats, `None` for streamed files without a length.
    pub n_source_frames: Option<u64>,
}

impl AudioInfo {
    /// Duration from the header in seconds, if the header gives a frame count.
    ///
    /// # Examples
    ///
    /// ```
    /// let info = masp_audio::AudioInfo {
    ///     path: "a.wav".into(),
    ///     codec: "pcm_s16le".into(),
    ///     source_sample_rate_hz: 8_000,
    ///     n_channels: 1,
    ///     n_source_frames: Some(12_000),
    /// };
    /// assert_eq!(info.duration_s(), Some(1.5));
    /// ```
    pub fn duration_s(&self) -> Option<f64> {
        if self.source_sample_rate_hz == 0 {
            return None;
        }
        // u64 -> f64 is exact up to 2^53 frames, i.e. thousands of years of audio.
        self.n_source_frames
            .map(|n| n as f64 / f64::from(self.source_sample_rate_hz))
    }
}
