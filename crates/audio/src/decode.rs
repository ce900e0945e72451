//! The source side: symphonia demux + decode, one packet at a time, downmixed to mono `f32`.

use std::fs::File;
use std::io::{self, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use symphonia::core::audio::GenericAudioBufferRef;
use symphonia::core::codecs::audio::{AudioDecoder, AudioDecoderOptions};
use symphonia::core::errors::Error as SymError;
use symphonia::core::formats::probe::Hint;
use symphonia::core::formats::well_known::{FORMAT_ID_AIFF, FORMAT_ID_FLAC, FORMAT_ID_WAVE};
use symphonia::core::formats::{FormatOptions, FormatReader, TrackType};
use symphonia::core::io::MediaSourceStream;
use symphonia::core::meta::MetadataOptions;

use crate::error::{Error, Result};
use crate::info::AudioInfo;
use crate::options::{MAX_CHANNELS, MAX_SAMPLE_RATE_HZ};
use crate::wav_header::{self, CheckError};

/// Undecodable packets tolerated in a row before giving up. Lossy streams occasionally carry a
/// corrupt frame (skipping it loses a few ms); a long run means the data is garbage.
const MAX_CONSECUTIVE_DECODE_ERRORS: u32 = 16;

/// Open an input read-only as a regular file, never blocking: `O_NONBLOCK` so a FIFO without
/// a writer cannot hang the batch, the type checked on the open descriptor (no window between
/// a check and the open), and blocking again once it is known to be a regular file.
///
/// A copy of `masp_model_registry::file::open_regular` (with `Links::Follow`: a user's input
/// may be a link): masp-audio imports none of our crates (docs/ARCHITECTURE.md), and this is
/// its only open of a file from outside.
fn open_regular(path: &Path) -> io::Result<File> {
    use std::os::fd::AsRawFd;
    use std::os::unix::fs::OpenOptionsExt;
    let opened = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path);
    let file = match opened {
        Ok(file) => Some(file),
        // A socket fails with ENXIO ("no such device or address"); its kind says why.
        Err(e) if e.raw_os_error() == Some(libc::ENXIO) => None,
        Err(e) => return Err(e),
    };
    let kind = match &file {
        Some(file) => file.metadata()?.file_type(),
        None => std::fs::metadata(path)?.file_type(),
    };
    let file = match file {
        Some(file) if kind.is_file() => file,
        _ => return Err(not_regular(&kind)),
    };
    let fd = file.as_raw_fd();
    // SAFETY: `fd` is owned by `file`, open for both calls; F_GETFL/F_SETFL touch only its
    // status flags.
    let flags = unsafe { libc::fcntl(fd, libc::F_GETFL) };
    // SAFETY: as above.
    if flags < 0 || unsafe { libc::fcntl(fd, libc::F_SETFL, flags & !libc::O_NONBLOCK) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(file)
}

/// The error for an input of `kind`, which is not a regular file.
fn not_regular(kind: &std::fs::FileType) -> io::Error {
    use std::os::unix::fs::FileTypeExt;
    let what = if kind.is_dir() {
        "directory"
    } else if kind.is_fifo() {
        "FIFO"
    } else if kind.is_socket() {
        "socket"
    } else if kind.is_char_device() {
        "character device"
    } else if kind.is_block_device() {
        "block device"
    } else {
        "special file"
    };
    // A directory keeps its own kind: callers tell "a folder" from "a special file".
    let error_kind = if kind.is_dir() {
        io::ErrorKind::IsADirectory
    } else {
        io::ErrorKind::InvalidInput
    };
    io::Error::new(error_kind, format!("not a regular file (a {what})"))
}

/// An open file that yields mono `f32` samples at the source rate.
pub(crate) struct Source {
    path: PathBuf,
    format: Box<dyn FormatReader>,
    decoder: Box<dyn AudioDecoder>,
    track_id: u32,
    sample_rate_hz: u32,
    /// Declared frame count when the format makes it exact (WAV, AIFF, FLAC).
    exact_n_frames: Option<u64>,
    /// Per-channel scratch, reused across packets.
    planes: Vec<Vec<f32>>,
    n_frames_decoded: u64,
    n_consecutive_errors: u32,
    finished: bool,
}

impl std::fmt::Debug for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Source")
            .field("path", &self.path)
            .field("sample_rate_hz", &self.sample_rate_hz)
            .field("n_frames_decoded", &self.n_frames_decoded)
            .field("finished", &self.finished)
            .finish_non_exhaustive()
    }
}

impl Source {
    /// Opens and validates `path`, ready to decode from the first frame.
    pub(crate) fn open(path: &Path) -> Result<(Self, AudioInfo)> {
        let io_err = |error: io::Error| Error::Io {
            path: path.to_path_buf(),
            error,
        };
        let mut file = open_regular(path).map_err(io_err)?;
        let file_len = file.metadata().map_err(io_err)?.len();
        if file_len == 0 {
            return Err(Error::EmptyFile);
        }
        match wav_header::check(&mut file, file_len) {
            Ok(()) => {}
            Err(CheckError::Header(e)) => return Err(e),
            Err(CheckError::Io(e)) => return Err(io_err(e)),
        }
        file.seek(SeekFrom::Start(0)).map_err(io_err)?;

        let mss = MediaSourceStream::new(Box::new(file), Default::default());
        let mut hint = Hint::new();
        if let Some(ext) = path.extension().and_then(|e| e.to_str()) {
            hint.with_extension(ext);
        }
        let format = symphonia::default::get_probe()
            .probe(
                &hint,
                mss,
                FormatOptions::default(),
                MetadataOptions::default(),
            )
            .map_err(|e| open_error(path, e))?;

        let track = format
            .default_track(TrackType::Audio)
            .ok_or(Error::NoAudioTrack)?;
        let params = track
            .codec_params
            .as_ref()
            .and_then(|p| p.audio())
            .ok_or(Error::NoAudioTrack)?
            .clone();
        let track_id = track.id;
        let n_source_frames = track.num_frames;

        let sample_rate_hz = params.sample_rate.ok_or(Error::MissingSampleRate)?;
        if sample_rate_hz == 0 || sample_rate_hz > MAX_SAMPLE_RATE_HZ {
            return Err(Error::InvalidSampleRate {
                sample_rate_hz: u64::from(sample_rate_hz),
            });
        }
        let n_channels =
            params
                .channels
                .as_ref()
                .map(|c| c.count())
                .ok_or_else(|| Error::MalformedHeader {
                    reason: "header gives no channel count".to_owned(),
                })?;
        if n_channels == 0 || n_channels > MAX_CHANNELS {
            return Err(Error::InvalidChannelCount {
                n_channels: n_channels as u64,
            });
        }

        let decoder = symphonia::default::get_codecs()
            .make_audio_decoder(&params, &AudioDecoderOptions::default())
            .map_err(|e| match e {
                SymError::Unsupported(reason) => Error::UnsupportedCodec {
                    reason: reason.to_owned(),
                },
                other => Error::MalformedHeader {
                    reason: other.to_string(),
                },
            })?;

        let exact = matches!(
            format.format_info().format,
            FORMAT_ID_WAVE | FORMAT_ID_AIFF | FORMAT_ID_FLAC
        );
        let exact_n_frames = if exact { n_source_frames } else { None };
        if exact_n_frames == Some(0) {
            return Err(Error::NoSamples);
        }

        let info = AudioInfo {
            path: path.to_path_buf(),
            codec: decoder.codec_info().short_name.to_owned(),
            source_sample_rate_hz: sample_rate_hz,
            n_channels,
            n_source_frames,
        };
        let source = Source {
            path: path.to_path_buf(),
            format,
            decoder,
            track_id,
            sample_rate_hz,
            exact_n_frames,
            planes: Vec::new(),
            n_frames_decoded: 0,
            n_consecutive_errors: 0,
            finished: false,
        };
        Ok((source, info))
    }

    /// Frames per channel decoded so far.
    pub(crate) fn n_frames_decoded(&self) -> u64 {
        self.n_frames_decoded
    }

    /// Appends the mono samples of the next non-empty packet to `out`.
    ///
    /// Returns `Ok(false)` once the stream has ended (and on every later call). The end-of-stream
    /// checks run on the call that reaches the end: [`Error::NoSamples`] if nothing was decoded,
    /// [`Error::Truncated`] if fewer frames were decoded than an exact header declares.
    pub(crate) fn decode_next(&mut self, out: &mut Vec<f32>) -> Result<bool> {
        while !self.finished {
            let packet = match self.format.next_packet() {
                Ok(Some(packet)) => packet,
                // Symphonia demuxers report a short read at the end of the data as an I/O EOF;
                // whether that was premature is decided by `finish`.
                Ok(None) => return self.finish(),
                Err(SymError::IoError(e)) if e.kind() == io::ErrorKind::UnexpectedEof => {
                    return self.finish();
                }
                Err(e) => return Err(self.fail(e)),
            };
            if packet.track_id != self.track_id {
                continue;
            }
            let at_s = self.at_s(0);
            match self.decoder.decode(&packet) {
                Ok(buf) => {
                    self.n_consecutive_errors = 0;
                    let rate = buf.spec().rate();
                    if rate != self.sample_rate_hz {
                        self.finished = true;
                        return Err(Error::SampleRateChanged {
                            from_hz: self.sample_rate_hz,
                            to_hz: rate,
                            at_s,
                        });
                    }
                    let n_frames = match downmix(&buf, &mut self.planes, out) {
                        Ok(n) => n,
                        Err(NonFinite { frame, channel }) => {
                            self.finished = true;
                            return Err(Error::NonFiniteSample {
                                at_s: frame_s(self.n_frames_decoded, frame, self.sample_rate_hz),
                                channel,
                            });
                        }
                    };
                    self.n_frames_decoded += n_frames as u64;
                    if n_frames > 0 {
                        return Ok(true);
                    }
                }
                Err(SymError::DecodeError(_) | SymError::IoError(_))
                    if self.n_consecutive_errors < MAX_CONSECUTIVE_DECODE_ERRORS =>
                {
                    self.n_consecutive_errors += 1;
                }
                Err(e) => return Err(self.fail(e)),
            }
        }
        Ok(false)
    }

    /// Marks the end of data and runs the end-of-stream checks.
    fn finish(&mut self) -> Result<bool> {
        self.finished = true;
        if let Some(declared_frames) = self.exact_n_frames
            && self.n_frames_decoded < declared_frames
        {
            return Err(Error::Truncated {
                declared_frames,
                found_frames: self.n_frames_decoded,
            });
        }
        if self.n_frames_decoded == 0 {
            return Err(Error::NoSamples);
        }
        Ok(false)
    }

    /// Converts a mid-stream symphonia error and stops the stream.
    fn fail(&mut self, e: SymError) -> Error {
        self.finished = true;
        let at_s = self.at_s(0);
        match e {
            SymError::IoError(error) => Error::Io {
                path: self.path.clone(),
                error,
            },
            SymError::ResetRequired => Error::Decode {
                at_s,
                reason: "the stream changes its parameters mid-file (e.g. chained ogg), \
                         which is not supported"
                    .to_owned(),
            },
            other => Error::Decode {
                at_s,
                reason: other.to_string(),
            },
        }
    }

    fn at_s(&self, offset: usize) -> f64 {
        frame_s(self.n_frames_decoded, offset, self.sample_rate_hz)
    }
}

fn frame_s(base: u64, offset: usize, rate_hz: u32) -> f64 {
    (base + offset as u64) as f64 / f64::from(rate_hz)
}

/// Maps an error from probing or opening the container.
fn open_error(path: &Path, e: SymError) -> Error {
    match e {
        // The probe found no known marker within its scan depth.
        SymError::Unsupported(reason) if reason.contains("probe") => Error::NotAudio,
        SymError::Unsupported(reason) => Error::UnsupportedCodec {
            reason: reason.to_owned(),
        },
        SymError::IoError(e) if e.kind() == io::ErrorKind::UnexpectedEof => {
            Error::MalformedHeader {
                reason: "file ends inside the header".to_owned(),
            }
        }
        SymError::IoError(error) => Error::Io {
            path: path.to_path_buf(),
            error,
        },
        other => Error::MalformedHeader {
            reason: other.to_string(),
        },
    }
}

/// A non-finite sample found by [`downmix`]: frame index within the packet and channel.
#[derive(Debug, PartialEq)]
struct NonFinite {
    frame: usize,
    channel: usize,
}

/// Appends the average of `buf`'s channels to `out`, returning the number of frames.
///
/// Samples are converted to `f32` by symphonia (e.g. `i16 / 32768`); a single channel is
/// copied bit-exactly. Rejects the packet if any sample is NaN or infinite.
fn downmix(
    buf: &GenericAudioBufferRef<'_>,
    planes: &mut Vec<Vec<f32>>,
    out: &mut Vec<f32>,
) -> Result<usize, NonFinite> {
    let n_frames = buf.frames();
    if n_frames == 0 || buf.num_planes() == 0 {
        return Ok(0);
    }
    buf.copy_to_vecs_planar::<f32>(planes);
    mix_planes(planes, out)?;
    Ok(n_frames)
}

/// The arithmetic half of [`downmix`], separate so it can be tested without a decoder.
fn mix_planes(planes: &[Vec<f32>], out: &mut Vec<f32>) -> Result<(), NonFinite> {
    let Some(n_frames) = planes.first().map(Vec::len) else {
        return Ok(());
    };
    // Earliest bad frame across channels, so `at_s` points at the first problem in time.
    let bad = planes
        .iter()
        .enumerate()
        .filter_map(|(channel, p)| {
            p.iter()
                .position(|x| !x.is_finite())
                .map(|frame| NonFinite { frame, channel })
        })
        .min_by_key(|nf| nf.frame);
    if let Some(nf) = bad {
        return Err(nf);
    }
    match planes {
        [mono] => out.extend_from_slice(mono),
        [left, right] => {
            // Halving is exact in binary floating point, so this is the rounded mean.
            out.extend(left.iter().zip(right).map(|(l, r)| l * 0.5 + r * 0.5));
        }
        _ => {
            let start = out.len();
            out.extend_from_slice(&planes[0][..n_frames]);
            for plane in &planes[1..] {
                for (acc, x) in out[start..].iter_mut().zip(plane) {
                    *acc += x;
                }
            }
            let scale = 1.0 / planes.len() as f32;
            for acc in &mut out[start..] {
                *acc *= scale;
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mono_is_copied_bit_exactly() {
        let plane = vec![0.1f32, -0.3, 1.0, f32::MIN_POSITIVE];
        let mut out = vec![];
        mix_planes(std::slice::from_ref(&plane), &mut out).unwrap();
        assert_eq!(out, plane);
    }

    #[test]
    fn averages_channels() {
        let mut out = vec![9.0];
        mix_planes(&[vec![1.0, 0.5], vec![0.0, -0.5]], &mut out).unwrap();
        assert_eq!(out, vec![9.0, 0.5, 0.0]);
        let mut out = vec![];
        mix_planes(&[vec![3.0], vec![0.0], vec![0.0]], &mut out).unwrap();
        assert_eq!(out, vec![1.0]);
    }

    #[test]
    fn stereo_of_large_values_does_not_overflow() {
        let mut out = vec![];
        mix_planes(&[vec![f32::MAX], vec![f32::MAX]], &mut out).unwrap();
        assert_eq!(out, vec![f32::MAX]);
    }

    #[test]
    fn reports_earliest_non_finite_sample() {
        let mut out = vec![];
        let r = mix_planes(
            &[vec![0.0, 0.0, f32::NAN], vec![0.0, f32::INFINITY, 0.0]],
            &mut out,
        );
        assert_eq!(
            r,
            Err(NonFinite {
                frame: 1,
                channel: 1
            })
        );
        assert!(out.is_empty());
    }
}
