//! Writing mono WAV files (16-bit PCM or 32-bit float), whole or streamed.

use std::fs::File;
use std::io::{self, BufWriter, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::options::MAX_SAMPLE_RATE_HZ;

/// Sample encoding of a written WAV file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WavSampleFormat {
    /// 16-bit signed PCM; samples are scaled by 32 768, rounded and clamped (NaN becomes 0).
    I16,
    /// 32-bit IEEE float, written bit-exactly (NaN and infinities included).
    F32,
}

impl WavSampleFormat {
    fn bytes_per_sample(self) -> u16 {
        match self {
            WavSampleFormat::I16 => 2,
            WavSampleFormat::F32 => 4,
        }
    }
}

/// Writes a mono WAV file incrementally, so arbitrarily long files need no sample buffer.
///
/// The header is written with placeholder sizes and patched by [`WavWriter::finish`]; a writer
/// dropped without `finish` leaves a file whose header declares zero samples.
///
/// # Examples
///
/// ```
/// use masp_audio::{WavSampleFormat, WavWriter};
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let dir = tempfile::tempdir()?;
/// let path = dir.path().join("long.wav");
/// let mut w = WavWriter::create(&path, 16_000, WavSampleFormat::I16)?;
/// for _ in 0..10 {
///     w.write(&[0.0; 1_600])?;
/// }
/// w.finish()?;
/// let (info, _) = masp_audio::read_mono(&path, 16_000)?;
/// assert_eq!(info.n_source_frames, Some(16_000));
/// # Ok(())
/// # }
/// ```
#[derive(Debug)]
pub struct WavWriter {
    path: PathBuf,
    file: BufWriter<File>,
    format: WavSampleFormat,
    header_len: u64,
    n_samples: u64,
    bytes: Vec<u8>,
}

impl WavWriter {
    /// Creates (or truncates) `path` and writes the header.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidSampleRate`] if the rate is 0 or above [`MAX_SAMPLE_RATE_HZ`];
    /// [`Error::Write`] if the file cannot be created or written.
    pub fn create(path: &Path, sample_rate_hz: u32, format: WavSampleFormat) -> Result<Self> {
        if sample_rate_hz == 0 || sample_rate_hz > MAX_SAMPLE_RATE_HZ {
            return Err(Error::InvalidSampleRate {
                sample_rate_hz: u64::from(sample_rate_hz),
            });
        }
        let write_err = |error| Error::Write {
            path: path.to_path_buf(),
            error,
        };
        let file = File::create(path).map_err(write_err)?;
        let header = header(sample_rate_hz, format, 0);
        let mut file = BufWriter::with_capacity(1 << 16, file);
        file.write_all(&header).map_err(write_err)?;
        Ok(Self {
            path: path.to_path_buf(),
            file,
            format,
            header_len: header.len() as u64,
            n_samples: 0,
            bytes: Vec::new(),
        })
    }

    /// Appends samples.
    ///
    /// # Errors
    ///
    /// [`Error::Write`] on I/O failure or if the data would exceed the 4 GiB WAV limit.
    pub fn write(&mut self, samples: &[f32]) -> Result<()> {
        let bps = u64::from(self.format.bytes_per_sample());
        let total_bytes = (self.n_samples + samples.len() as u64) * bps;
        if self.header_len + total_bytes > u64::from(u32::MAX) {
            return Err(self.err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "wav data would exceed the 4 GiB format limit",
            )));
        }
        self.bytes.clear();
        match self.format {
            WavSampleFormat::I16 => {
                for &x in samples {
                    // `as` saturates and maps NaN to 0.
                    let v = (x * 32_768.0).round() as i16;
                    self.bytes.extend_from_slice(&v.to_le_bytes());
                }
            }
            WavSampleFormat::F32 => {
                for &x in samples {
                    self.bytes.extend_from_slice(&x.to_le_bytes());
                }
            }
        }
        if let Err(e) = self.file.write_all(&self.bytes) {
            return Err(self.err(e));
        }
        self.n_samples += samples.len() as u64;
        Ok(())
    }

    /// Patches the header with the final sizes and flushes.
    ///
    /// # Errors
    ///
    /// [`Error::Write`] on I/O failure.
    pub fn finish(mut self) -> Result<()> {
        let r = self.patch_sizes();
        r.map_err(|e| self.err(e))
    }

    fn patch_sizes(&mut self) -> io::Result<()> {
        let data_bytes = self.n_samples * u64::from(self.format.bytes_per_sample());
        let data_len = u32::try_from(data_bytes).map_err(io::Error::other)?;
        let riff_len = u32::try_from(self.header_len - 8 + data_bytes).map_err(io::Error::other)?;
        self.file.flush()?;
        let file = self.file.get_mut();
        file.seek(SeekFrom::Start(4))?;
        file.write_all(&riff_len.to_le_bytes())?;
        if self.format == WavSampleFormat::F32 {
            // The fact chunk's sample count sits just before the data chunk header.
            file.seek(SeekFrom::Start(self.header_len - 12))?;
            file.write_all(&(data_len / 4).to_le_bytes())?;
        }
        file.seek(SeekFrom::Start(self.header_len - 4))?;
        file.write_all(&data_len.to_le_bytes())?;
        file.flush()
    }

    fn err(&self, error: io::Error) -> Error {
        Error::Write {
            path: self.path.clone(),
            error,
        }
    }
}

/// The header bytes for a mono file with `n_samples` samples.
fn header(sample_rate_hz: u32, format: WavSampleFormat, n_samples: u32) -> Vec<u8> {
    let bps = format.bytes_per_sample();
    let data_len = n_samples.saturating_mul(u32::from(bps));
    let mut h = Vec::with_capacity(58);
    h.extend_from_slice(b"RIFF");
    h.extend_from_slice(&0u32.to_le_bytes()); // patched by finish
    h.extend_from_slice(b"WAVE");
    h.extend_from_slice(b"fmt ");
    let (tag, fmt_len): (u16, u32) = match format {
        WavSampleFormat::I16 => (1, 16),
        // Non-PCM formats carry a cbSize field and a fact chunk (WAVE spec, 1994 update).
        WavSampleFormat::F32 => (3, 18),
    };
    h.extend_from_slice(&fmt_len.to_le_bytes());
    h.extend_from_slice(&tag.to_le_bytes());
    h.extend_from_slice(&1u16.to_le_bytes()); // channels
    h.extend_from_slice(&sample_rate_hz.to_le_bytes());
    h.extend_from_slice(&(sample_rate_hz.saturating_mul(u32::from(bps))).to_le_bytes());
    h.extend_from_slice(&bps.to_le_bytes()); // block align
    h.extend_from_slice(&(bps * 8).to_le_bytes());
    if format == WavSampleFormat::F32 {
        h.extend_from_slice(&0u16.to_le_bytes()); // cbSize
        h.extend_from_slice(b"fact");
        h.extend_from_slice(&4u32.to_le_bytes());
        h.extend_from_slice(&n_samples.to_le_bytes());
    }
    h.extend_from_slice(b"data");
    h.extend_from_slice(&data_len.to_le_bytes());
    h
}

/// Writes `samples` as a mono 32-bit float WAV (bit-exact, NaN and infinities included).
///
/// # Errors
///
/// As [`WavWriter::create`], [`WavWriter::write`] and [`WavWriter::finish`].
///
/// # Examples
///
/// ```
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let dir = tempfile::tempdir()?;
/// let path = dir.path().join("a.wav");
/// masp_audio::write_wav_f32(&path, 16_000, &[0.1, -0.2])?;
/// assert_eq!(masp_audio::read_mono(&path, 16_000)?.1, vec![0.1, -0.2]);
/// # Ok(())
/// # }
/// ```
pub fn write_wav_f32(path: &Path, sample_rate_hz: u32, samples: &[f32]) -> Result<()> {
    write_whole(path, sample_rate_hz, samples, WavSampleFormat::F32)
}

/// Writes `samples` as a mono 16-bit PCM WAV (scaled by 32 768, rounded, clamped).
///
/// # Errors
///
/// As [`WavWriter::create`], [`WavWriter::write`] and [`WavWriter::finish`].
pub fn write_wav_i16(path: &Path, sample_rate_hz: u32, samples: &[f32]) -> Result<()> {
    write_whole(path, sample_rate_hz, samples, WavSampleFormat::I16)
}

fn write_whole(path: &Path, rate: u32, samples: &[f32], format: WavSampleFormat) -> Result<()> {
    let mut w = WavWriter::create(path, rate, format)?;
    w.write(samples)?;
    w.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_lengths() {
        assert_eq!(header(16_000, WavSampleFormat::I16, 0).len(), 44);
        assert_eq!(header(16_000, WavSampleFormat::F32, 0).len(), 58);
    }

    #[test]
    fn i16_file_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.wav");
        write_wav_i16(&path, 8_000, &[0.5, -1.0, 2.0, f32::NAN]).unwrap();
        let bytes = std::fs::read(&path).unwrap();
        assert_eq!(bytes.len(), 44 + 8);
        assert_eq!(&bytes[4..8], &(36u32 + 8).to_le_bytes());
        assert_eq!(&bytes[40..44], &8u32.to_le_bytes());
        let samples: Vec<i16> = bytes[44..]
            .chunks(2)
            .map(|b| i16::from_le_bytes([b[0], b[1]]))
            .collect();
        assert_eq!(samples, vec![16_384, -32_768, 32_767, 0]);
    }

    #[test]
    fn rejects_bad_rate() {
        let dir = tempfile::tempdir().unwrap();
        assert!(matches!(
            write_wav_f32(&dir.path().join("a.wav"), 0, &[]),
            Err(Error::InvalidSampleRate { sample_rate_hz: 0 })
        ));
    }
}
