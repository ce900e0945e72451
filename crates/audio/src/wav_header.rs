//! A pre-check of RIFF/WAVE headers, run before symphonia sees the file.
//!
//! Symphonia reports bad WAV headers as untyped strings and silently stops at the end of a
//! truncated data chunk. Reading the few header fields ourselves gives typed errors for absurd
//! rates and channel counts, and detects truncation at open time by comparing the data chunk's
//! declared size with the file length, before any work is done on the audio.

use std::io::{self, Read, Seek, SeekFrom};

use crate::error::{Error, Result};
use crate::options::{MAX_CHANNELS, MAX_SAMPLE_RATE_HZ};

/// Format tags whose frames have a fixed size of `block_align` bytes.
const FIXED_FRAME_FORMATS: [u16; 5] = [
    0x0001, // PCM
    0x0003, // IEEE float
    0x0006, // A-law
    0x0007, // mu-law
    0xFFFE, // extensible (PCM or float sub-format)
];

/// The `fmt ` chunk fields this check needs.
#[derive(Debug, Clone, Copy)]
struct Fmt {
    format_tag: u16,
    n_channels: u16,
    block_align: u16,
    bits_per_sample: u16,
}

/// Checks a file that starts like RIFF/WAVE; does nothing for any other file.
///
/// The reader's position afterwards is unspecified; the caller rewinds.
///
/// # Errors
///
/// [`Error::InvalidChannelCount`], [`Error::InvalidSampleRate`], [`Error::MalformedHeader`]
/// (`fmt ` chunk too short), [`Error::NoSamples`] (empty data chunk), [`Error::Truncated`]
/// (data chunk extends past the end of the file), or an `io::Error` from reading.
pub(crate) fn check<R: Read + Seek>(reader: &mut R, file_len: u64) -> Result<(), CheckError> {
    let Some(base) = find_riff_wave(reader, file_len)? else {
        return Ok(());
    };
    let mut pos: u64 = base + 12;
    let mut fmt: Option<Fmt> = None;
    while pos.saturating_add(8) <= file_len {
        reader.seek(SeekFrom::Start(pos))?;
        let mut header = [0u8; 8];
        if !read_full(reader, &mut header)? {
            break;
        }
        let size = u32::from_le_bytes([header[4], header[5], header[6], header[7]]);
        let body_start = pos + 8;
        match &header[0..4] {
            b"fmt " => {
                if size < 16 {
                    return Err(Error::MalformedHeader {
                        reason: format!("wav fmt chunk is {size} bytes, needs at least 16"),
                    }
                    .into());
                }
                let mut body = [0u8; 16];
                if !read_full(reader, &mut body)? {
                    // Symphonia reports the short header.
                    return Ok(());
                }
                let format_tag = u16::from_le_bytes([body[0], body[1]]);
                let n_channels = u16::from_le_bytes([body[2], body[3]]);
                let sample_rate_hz = u32::from_le_bytes([body[4], body[5], body[6], body[7]]);
                let block_align = u16::from_le_bytes([body[12], body[13]]);
                let bits_per_sample = u16::from_le_bytes([body[14], body[15]]);
                if n_channels == 0 || usize::from(n_channels) > MAX_CHANNELS {
                    return Err(Error::InvalidChannelCount {
                        n_channels: u64::from(n_channels),
                    }
                    .into());
                }
                if sample_rate_hz == 0 || sample_rate_hz > MAX_SAMPLE_RATE_HZ {
                    return Err(Error::InvalidSampleRate {
                        sample_rate_hz: u64::from(sample_rate_hz),
                    }
                    .into());
                }
                fmt = Some(Fmt {
                    format_tag,
                    n_channels,
                    block_align,
                    bits_per_sample,
                });
            }
            b"data" => {
                // Without a preceding fmt chunk symphonia reports the malformed header; a size of
                // u32::MAX marks a streamed file of unknown length.
                let Some(fmt) = fmt else { return Ok(()) };
                if size == u32::MAX {
                    return Ok(());
                }
                let declared_bytes = u64::from(size);
                if declared_bytes == 0 {
                    return Err(Error::NoSamples.into());
                }
                let present_bytes = file_len.saturating_sub(body_start).min(declared_bytes);
                if !FIXED_FRAME_FORMATS.contains(&fmt.format_tag) {
                    // ADPCM and friends: frames per block vary; the end-of-stream check applies.
                    return Ok(());
                }
                // Trust block_align unless it is 0, as symphonia does.
                let frame_bytes = match fmt.block_align {
                    0 => u64::from(fmt.n_channels) * u64::from(fmt.bits_per_sample.div_ceil(8)),
                    n => u64::from(n),
                }
                .max(1);
                let declared_frames = declared_bytes / frame_bytes;
                if declared_frames == 0 {
                    return Err(Error::NoSamples.into());
                }
                if present_bytes < declared_bytes {
                    return Err(Error::Truncated {
                        declared_frames,
                        found_frames: present_bytes / frame_bytes,
                    }
                    .into());
                }
                return Ok(());
            }
            _ => {}
        }
        // Chunks are padded to an even length.
        pos = body_start + u64::from(size) + u64::from(size & 1);
    }
    Ok(())
}

/// Either a typed header problem or an I/O failure (to which the caller adds the path).
#[derive(Debug)]
pub(crate) enum CheckError {
    /// The header is unusable.
    Header(Error),
    /// Reading failed.
    Io(io::Error),
}

impl From<Error> for CheckError {
    fn from(e: Error) -> Self {
        CheckError::Header(e)
    }
}

impl From<io::Error> for CheckError {
    fn from(e: io::Error) -> Self {
        CheckError::Io(e)
    }
}

/// Reads exactly `buf.len()` bytes; `Ok(false)` if the input ends first.
/// How far symphonia's probe looks for a format marker past leading junk (its
/// `max_probe_depth`).
const PROBE_DEPTH: u64 = 1 << 20;

/// Offset of the first RIFF/WAVE header within the probe's reach, if any. Not only offset 0:
/// symphonia skips leading junk to find a marker, so a header behind two junk bytes must be
/// checked too (found by fuzzing: such a header declared 65534 channels, which overflowed
/// symphonia's block-align arithmetic).
fn find_riff_wave<R: Read + Seek>(reader: &mut R, file_len: u64) -> io::Result<Option<u64>> {
    const BLOCK: usize = 64 << 10;
    const OVERLAP: usize = 11; // a 12-byte marker may straddle two blocks
    reader.seek(SeekFrom::Start(0))?;
    let limit = file_len.min(PROBE_DEPTH + 12);
    let mut buf = vec![0u8; BLOCK + OVERLAP];
    let (mut kept, mut start) = (0usize, 0u64); // bytes carried over; file offset of buf[0]
    loop {
        let want = (BLOCK as u64).min(limit.saturating_sub(start + kept as u64)) as usize;
        let mut filled = kept;
        while filled < kept + want {
            match reader.read(&mut buf[filled..kept + want])? {
                0 => break,
                n => filled += n,
            }
        }
        if let Some(i) = buf[..filled]
            .windows(12)
            .position(|w| &w[0..4] == b"RIFF" && &w[8..12] == b"WAVE")
        {
            return Ok(Some(start + i as u64));
        }
        if filled < kept + want || filled == kept || start + (filled as u64) >= limit {
            return Ok(None);
        }
        let carry = filled.min(OVERLAP);
        buf.copy_within(filled - carry..filled, 0);
        start += (filled - carry) as u64;
        kept = carry;
    }
}

fn read_full<R: Read>(reader: &mut R, buf: &mut [u8]) -> io::Result<bool> {
    match reader.read_exact(buf) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => Ok(false),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Cursor;

    /// A canonical 44-byte PCM header followed by `data_bytes` bytes of zeros.
    fn wav(n_channels: u16, rate: u32, bits: u16, declared: u32, data_bytes: usize) -> Vec<u8> {
        let block_align = n_channels.wrapping_mul(bits) / 8;
        let mut v = Vec::new();
        v.extend_from_slice(b"RIFF");
        v.extend_from_slice(&36u32.wrapping_add(declared).to_le_bytes());
        v.extend_from_slice(b"WAVEfmt ");
        v.extend_from_slice(&16u32.to_le_bytes());
        v.extend_from_slice(&1u16.to_le_bytes());
        v.extend_from_slice(&n_channels.to_le_bytes());
        v.extend_from_slice(&rate.to_le_bytes());
        v.extend_from_slice(&(rate * u32::from(block_align)).to_le_bytes());
        v.extend_from_slice(&block_align.to_le_bytes());
        v.extend_from_slice(&bits.to_le_bytes());
        v.extend_from_slice(b"data");
        v.extend_from_slice(&declared.to_le_bytes());
        v.resize(v.len() + data_bytes, 0);
        v
    }

    fn run(bytes: &[u8]) -> Result<(), CheckError> {
        check(&mut Cursor::new(bytes), bytes.len() as u64)
    }

    #[test]
    fn a_header_behind_leading_junk_is_checked_too() {
        let mut bytes = vec![0xff, 0xf2];
        bytes.extend(wav(65_534, 16_000, 16, 64, 64));
        assert!(matches!(
            run(&bytes),
            Err(CheckError::Header(Error::InvalidChannelCount { .. }))
        ));
        let mut fine = vec![0xff, 0xf2];
        fine.extend(wav(1, 16_000, 16, 64, 64));
        assert!(run(&fine).is_ok());
    }

    #[test]
    fn accepts_good_header_and_ignores_other_files() {
        assert!(run(&wav(2, 44_100, 16, 400, 400)).is_ok());
        assert!(run(b"hello, this is text").is_ok());
        assert!(run(b"").is_ok());
        assert!(run(b"RIFF").is_ok());
    }

    #[test]
    fn detects_truncation_in_frames() {
        match run(&wav(2, 44_100, 16, 400, 202)) {
            Err(CheckError::Header(Error::Truncated {
                declared_frames,
                found_frames,
            })) => {
                assert_eq!((declared_frames, found_frames), (100, 50));
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn rejects_absurd_values() {
        assert!(matches!(
            run(&wav(0, 44_100, 16, 4, 4)),
            Err(CheckError::Header(Error::InvalidChannelCount {
                n_channels: 0
            }))
        ));
        assert!(matches!(
            run(&wav(65, 44_100, 8, 65, 65)),
            Err(CheckError::Header(Error::InvalidChannelCount {
                n_channels: 65
            }))
        ));
        assert!(matches!(
            run(&wav(1, 0, 16, 4, 4)),
            Err(CheckError::Header(Error::InvalidSampleRate {
                sample_rate_hz: 0
            }))
        ));
        assert!(matches!(
            run(&wav(1, 1_000_001, 16, 4, 4)),
            Err(CheckError::Header(Error::InvalidSampleRate {
                sample_rate_hz: 1_000_001
            }))
        ));
        assert!(matches!(
            run(&wav(1, 8_000, 16, 0, 0)),
            Err(CheckError::Header(Error::NoSamples))
        ));
    }

    #[test]
    fn streamed_size_is_not_truncation() {
        assert!(run(&wav(1, 8_000, 16, u32::MAX, 10)).is_ok());
    }
}
