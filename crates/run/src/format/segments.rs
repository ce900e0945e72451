//! Speech segments as JSON, RTTM, CSV, text or an Audacity label track.
//!
//! Each file's result is written as soon as it is known, so a long batch shows progress and an
//! interruption keeps what was finished. JSON is still one valid document: an array opened
//! before the first file and closed after the last.

use std::io::{self, Write};
use std::path::Path;

use masp_orchestrator::task::{SEGMENT_RATE_HZ, VadOutcome};
use serde::Serialize;

use super::{audacity_label, ms, rttm_id};

/// Output formats of segment-producing commands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
pub enum SegmentFormat {
    /// A JSON array with one object per file (path, duration, sample rate, segments).
    Json,
    /// NIST RTTM: one `SPEAKER` line per segment, as pyannote writes.
    Rttm,
    /// CSV with a header: path,start_s,end_s.
    Csv,
    /// Human-readable lines.
    Text,
    /// An Audacity label track (`start<TAB>end<TAB>speech`, seconds): File → Import → Labels
    /// over the audio for a listening check. One input per run: a track belongs to one file.
    Audacity,
}

/// One file's VAD result as JSON: the shape of every VAD result masp shows or keeps for a user
/// (`masp vad --format json` prints an array of these; `masp run` writes one per file).
#[derive(Debug, Serialize)]
pub struct FileSegments<'a> {
    /// The input as given.
    pub path: &'a str,
    /// Analysed duration, seconds (to the millisecond).
    pub duration_s: f64,
    /// The rate segments are counted at (16 kHz).
    pub sample_rate_hz: u32,
    /// The file's own sample rate.
    pub source_sample_rate_hz: u32,
    /// The file's channels (downmixed to mono for the model).
    pub n_channels: usize,
    /// Speech segments, seconds (to the millisecond).
    pub segments: Vec<SegmentSeconds>,
}

/// A speech segment in seconds.
#[derive(Debug, Serialize)]
pub struct SegmentSeconds {
    /// Start, seconds.
    pub start_s: f64,
    /// End, seconds.
    pub end_s: f64,
}

/// `outcome` of the file at `path` as [`FileSegments`].
pub fn file_json<'a>(path: &'a str, outcome: &VadOutcome) -> FileSegments<'a> {
    FileSegments {
        path,
        duration_s: ms(outcome.duration_s()),
        sample_rate_hz: SEGMENT_RATE_HZ,
        source_sample_rate_hz: outcome.info.source_sample_rate_hz,
        n_channels: outcome.info.n_channels,
        segments: outcome
            .segments
            .iter()
            .map(|s| SegmentSeconds {
                start_s: ms(s.start_s()),
                end_s: ms(s.end_s()),
            })
            .collect(),
    }
}

/// Streams per-file results in one [`SegmentFormat`].
///
/// # Examples
///
/// ```
/// use masp_run::format::{SegmentFormat, SegmentWriter};
///
/// let mut out = Vec::new();
/// let mut writer = SegmentWriter::new(&mut out, SegmentFormat::Csv);
/// writer.begin()?;
/// writer.end()?;
/// assert_eq!(String::from_utf8_lossy(&out), "path,start_s,end_s\n");
/// # Ok::<(), std::io::Error>(())
/// ```
#[derive(Debug)]
pub struct SegmentWriter<W: Write> {
    out: W,
    format: SegmentFormat,
    n_files: usize,
}

impl<W: Write> SegmentWriter<W> {
    /// A writer of `format` into `out`.
    pub fn new(out: W, format: SegmentFormat) -> Self {
        Self {
            out,
            format,
            n_files: 0,
        }
    }

    /// What comes before the first file (JSON's `[`, CSV's header).
    ///
    /// # Errors
    /// The writer's.
    pub fn begin(&mut self) -> io::Result<()> {
        match self.format {
            SegmentFormat::Json => writeln!(self.out, "["),
            SegmentFormat::Csv => writeln!(self.out, "path,start_s,end_s"),
            SegmentFormat::Rttm | SegmentFormat::Text | SegmentFormat::Audacity => Ok(()),
        }
    }

    /// One file's result, flushed.
    ///
    /// # Errors
    /// The writer's.
    pub fn file(&mut self, path: &Path, outcome: &VadOutcome) -> io::Result<()> {
        let shown = path.to_string_lossy();
        match self.format {
            SegmentFormat::Json => {
                let text = serde_json::to_string_pretty(&file_json(&shown, outcome))
                    .map_err(io::Error::other)?;
                let sep = if self.n_files == 0 { "" } else { ",\n" };
                write!(self.out, "{sep}{text}")?;
            }
            SegmentFormat::Rttm => {
                let id = rttm_id(path);
                for s in &outcome.segments {
                    writeln!(
                        self.out,
                        "SPEAKER {id} 1 {:.3} {:.3} <NA> <NA> speech <NA> <NA>",
                        ms(s.start_s()),
                        ms(s.end_s() - s.start_s())
                    )?;
                }
            }
            SegmentFormat::Csv => {
                let quoted = csv_field(&shown);
                for s in &outcome.segments {
                    writeln!(
                        self.out,
                        "{quoted},{:.3},{:.3}",
                        ms(s.start_s()),
                        ms(s.end_s())
                    )?;
                }
            }
            SegmentFormat::Audacity => {
                for s in &outcome.segments {
                    audacity_label(&mut self.out, s.start_s(), s.end_s(), "speech")?;
                }
            }
            SegmentFormat::Text => {
                writeln!(
                    self.out,
                    "{shown}: {:.2} s, {} speech segment(s)",
                    outcome.duration_s(),
                    outcome.segments.len()
                )?;
                for s in &outcome.segments {
                    writeln!(self.out, "  {:>9.3} – {:>9.3} s", s.start_s(), s.end_s())?;
                }
            }
        }
        self.n_files += 1;
        self.out.flush()
    }

    /// What comes after the last file (JSON's `]`), flushed.
    ///
    /// # Errors
    /// The writer's.
    pub fn end(&mut self) -> io::Result<()> {
        if self.format == SegmentFormat::Json {
            writeln!(self.out, "{}]", if self.n_files == 0 { "" } else { "\n" })?;
        }
        self.out.flush()
    }
}

/// A CSV field, quoted when it contains a separator, quote or line break (RFC 4180).
fn csv_field(text: &str) -> String {
    if text.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", text.replace('"', "\"\""))
    } else {
        text.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_fields_are_quoted_when_needed() {
        assert_eq!(csv_field("a.wav"), "a.wav");
        assert_eq!(csv_field("a,b.wav"), "\"a,b.wav\"");
        assert_eq!(csv_field("say \"hi\".wav"), "\"say \"\"hi\"\".wav\"");
    }
}
