//! [`ChunkStream`]: a file as fixed-size chunks of mono samples at the target rate.

use std::path::Path;

use crate::decode::Source;
use crate::error::{Error, Result};
use crate::info::AudioInfo;
use crate::options::StreamOptions;
use crate::resample::StreamResampler;

/// Mono `f32` samples at the target rate, in chunks of exactly `chunk_samples` (the last may be
/// shorter, never empty).
///
/// Memory is bounded independently of file length: one decoded packet, one resampler call and
/// at most about two chunks of output are held at a time, so a 10-hour file streams in a few
/// MiB (see [`StreamOptions::chunk_samples`]).
///
/// Errors found while decoding ([`Error::NonFiniteSample`], [`Error::Truncated`] for FLAC and
/// AIFF, [`Error::NoSamples`], [`Error::Decode`], ...) are returned by the [`next_chunk`] call
/// that reaches them; chunks returned before stay valid. After an error the stream is finished
/// and later calls return `Ok(None)`.
///
/// [`next_chunk`]: ChunkStream::next_chunk
#[derive(Debug)]
pub struct ChunkStream {
    info: AudioInfo,
    options: StreamOptions,
    source: Source,
    /// `None` when source and target rates match (bit-exact passthrough).
    resampler: Option<StreamResampler>,
    /// Decoded mono samples at the source rate (one packet); reused.
    mono: Vec<f32>,
    /// Samples at the target rate not yet emitted start at `out_pos`.
    out: Vec<f32>,
    out_pos: usize,
    /// Length of the chunk handed out by the last `next_chunk`, consumed on the next call.
    lent: usize,
    n_emitted: u64,
    source_done: bool,
    failed: bool,
}

impl ChunkStream {
    /// Opens `path` and reads its header; no audio is decoded yet.
    ///
    /// # Errors
    ///
    /// [`Error::Options`] for invalid `options`; [`Error::Io`] if the file is missing or
    /// unreadable; [`Error::EmptyFile`]; [`Error::NotAudio`]; [`Error::MalformedHeader`];
    /// [`Error::NoAudioTrack`]; [`Error::UnsupportedCodec`]; [`Error::MissingSampleRate`],
    /// [`Error::InvalidSampleRate`], [`Error::InvalidChannelCount`] for absurd header values;
    /// [`Error::NoSamples`] if the header declares zero frames; [`Error::Truncated`] if a WAV
    /// data chunk extends past the end of the file.
    ///
    /// # Examples
    ///
    /// ```
    /// use masp_audio::{ChunkStream, StreamOptions, write_wav_f32};
    ///
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let dir = tempfile::tempdir()?;
    /// let path = dir.path().join("tone.wav");
    /// // One second of a 440 Hz tone at 44.1 kHz.
    /// let tone: Vec<f32> =
    ///     (0..44_100).map(|i| (i as f32 * 440.0 * std::f32::consts::TAU / 44_100.0).sin()).collect();
    /// write_wav_f32(&path, 44_100, &tone)?;
    ///
    /// let mut stream = ChunkStream::open(&path, StreamOptions::new(16_000, 4_000))?;
    /// assert_eq!(stream.info().source_sample_rate_hz, 44_100);
    /// let mut n_chunks = 0;
    /// while let Some(chunk) = stream.next_chunk()? {
    ///     assert_eq!(chunk.len(), 4_000);
    ///     n_chunks += 1;
    /// }
    /// assert_eq!(n_chunks, 4);
    /// assert_eq!(stream.n_samples_emitted(), 16_000);
    /// # Ok(())
    /// # }
    /// ```
    pub fn open(path: &Path, options: StreamOptions) -> Result<Self> {
        options.validate()?;
        let (source, info) = Source::open(path)?;
        let resampler = if info.source_sample_rate_hz == options.target_sample_rate_hz {
            None
        } else {
            Some(StreamResampler::new(
                info.source_sample_rate_hz,
                options.target_sample_rate_hz,
            )?)
        };
        Ok(Self {
            info,
            options,
            source,
            resampler,
            mono: Vec::new(),
            out: Vec::new(),
            out_pos: 0,
            lent: 0,
            n_emitted: 0,
            source_done: false,
            failed: false,
        })
    }

    /// What the header says about the file.
    pub fn info(&self) -> &AudioInfo {
        &self.info
    }

    /// The options the stream was opened with.
    pub fn options(&self) -> StreamOptions {
        self.options
    }

    /// The next chunk of `chunk_samples` samples (fewer only for the last); `Ok(None)` at the
    /// end. The slice borrows an internal buffer that the next call reuses.
    ///
    /// # Errors
    ///
    /// Problems found in the audio data: [`Error::NonFiniteSample`], [`Error::Truncated`]
    /// (formats whose header frame count is checked at the end), [`Error::NoSamples`],
    /// [`Error::SampleRateChanged`], [`Error::Decode`], [`Error::Io`], [`Error::Resampler`].
    /// The stream is finished after an error.
    pub fn next_chunk(&mut self) -> Result<Option<&[f32]>> {
        self.out_pos += std::mem::take(&mut self.lent);
        if self.failed {
            return Ok(None);
        }
        if let Err(e) = self.fill() {
            self.failed = true;
            self.out.clear();
            self.out_pos = 0;
            return Err(e);
        }
        let available = self.out.len() - self.out_pos;
        let n = available.min(self.options.chunk_samples);
        if n == 0 {
            return Ok(None);
        }
        self.lent = n;
        self.n_emitted += n as u64;
        Ok(Some(&self.out[self.out_pos..self.out_pos + n]))
    }

    /// Samples emitted so far, at the target rate; the start index of the next chunk.
    pub fn n_samples_emitted(&self) -> u64 {
        self.n_emitted
    }

    /// Decodes until a full chunk is buffered or the source is exhausted.
    fn fill(&mut self) -> Result<()> {
        // Drop what was emitted; the remainder is less than one chunk plus one packet.
        if self.out_pos > 0 {
            self.out.drain(..self.out_pos);
            self.out_pos = 0;
        }
        while !self.source_done && self.out.len() < self.options.chunk_samples {
            self.mono.clear();
            let more = self.source.decode_next(&mut self.mono)?;
            match &mut self.resampler {
                None => self.out.extend_from_slice(&self.mono),
                Some(r) => r.push(&self.mono, &mut self.out)?,
            }
            if !more {
                self.source_done = true;
                if let Some(r) = &mut self.resampler {
                    r.finish(&mut self.out)?;
                }
            }
        }
        Ok(())
    }

    /// Frames per channel decoded from the file so far (at the source rate).
    pub fn n_source_frames_decoded(&self) -> u64 {
        self.source.n_frames_decoded()
    }
}

/// Yields owned chunks; a convenience over [`ChunkStream::next_chunk`], which avoids the copy.
impl Iterator for ChunkStream {
    type Item = Result<Vec<f32>, Error>;

    fn next(&mut self) -> Option<Self::Item> {
        self.next_chunk()
            .map(|c| c.map(<[f32]>::to_vec))
            .transpose()
    }
}

/// Decodes a whole file to mono at `target_sample_rate_hz`; for short files and tests.
///
/// Memory grows with the file length; use [`ChunkStream`] for long files.
///
/// # Errors
///
/// Everything [`ChunkStream::open`] and [`ChunkStream::next_chunk`] return.
///
/// # Examples
///
/// ```
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let dir = tempfile::tempdir()?;
/// let path = dir.path().join("a.wav");
/// masp_audio::write_wav_i16(&path, 8_000, &[0.0, 0.5, -0.5, 0.25])?;
/// let (info, samples) = masp_audio::read_mono(&path, 8_000)?;
/// assert_eq!(info.codec, "pcm_s16le");
/// assert_eq!(samples, vec![0.0, 0.5, -0.5, 0.25]);
/// # Ok(())
/// # }
/// ```
pub fn read_mono(path: &Path, target_sample_rate_hz: u32) -> Result<(AudioInfo, Vec<f32>)> {
    let mut stream = ChunkStream::open(path, StreamOptions::new(target_sample_rate_hz, 1 << 16))?;
    let mut samples = Vec::new();
    if let Some(n) = stream.info().n_source_frames {
        // Capacity hint only, capped so a lying header cannot force a huge allocation.
        let expected = crate::resample::expected_output_len(
            n,
            stream.info().source_sample_rate_hz,
            target_sample_rate_hz,
        );
        samples.reserve(usize::try_from(expected.min(1 << 22)).unwrap_or(0));
    }
    while let Some(chunk) = stream.next_chunk()? {
        samples.extend_from_slice(chunk);
    }
    Ok((stream.info().clone(), samples))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stream_can_move_to_another_thread() {
        fn assert_send<T: Send>() {}
        assert_send::<ChunkStream>();
    }
}
