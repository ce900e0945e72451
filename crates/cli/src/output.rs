//! Writing speech segments as JSON, RTTM, CSV or text, one file at a time.
//!
//! Each file's result is written as soon as it is known, so a long batch shows progress on stdout
//! and an interruption keeps what was finished. JSON is still one valid document: an array opened
//! before the first file and closed after the last.

use std::io::{self, Write};
use std::path::Path;

use masp_models::vad::VadOutcome;
use serde::Serialize;

/// Output formats of segment-producing commands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
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

/// An Audacity label line: start and end in seconds (6 decimals, as Audacity exports), label.
pub fn audacity_label(
    out: &mut dyn Write,
    start_s: f64,
    end_s: f64,
    label: &str,
) -> io::Result<()> {
    writeln!(out, "{start_s:.6}\t{end_s:.6}\t{label}")
}

#[derive(Serialize)]
struct JsonFile<'a> {
    path: &'a str,
    duration_s: f64,
    sample_rate_hz: u32,
    source_sample_rate_hz: u32,
    n_channels: usize,
    segments: Vec<JsonSegment>,
}

#[derive(Serialize)]
struct JsonSegment {
    start_s: f64,
    end_s: f64,
}

/// Rounds seconds to the millisecond for output (segments are sample-exact internally).
fn ms(seconds: f64) -> f64 {
    (seconds * 1000.0).round() / 1000.0
}

/// Streams per-file results in one [`Format`].
pub struct SegmentWriter<W: Write> {
    out: W,
    format: Format,
    n_files: usize,
}

impl<W: Write> SegmentWriter<W> {
    pub fn new(out: W, format: Format) -> Self {
        Self {
            out,
            format,
            n_files: 0,
        }
    }

    pub fn begin(&mut self) -> io::Result<()> {
        match self.format {
            Format::Json => writeln!(self.out, "["),
            Format::Csv => writeln!(self.out, "path,start_s,end_s"),
            Format::Rttm | Format::Text | Format::Audacity => Ok(()),
        }
    }

    pub fn file(&mut self, path: &Path, outcome: &VadOutcome) -> io::Result<()> {
        let shown = path.to_string_lossy();
        match self.format {
            Format::Json => {
                let doc = JsonFile {
                    path: &shown,
                    duration_s: ms(outcome.duration_s()),
                    sample_rate_hz: 16_000,
                    source_sample_rate_hz: outcome.info.source_sample_rate_hz,
                    n_channels: outcome.info.n_channels,
                    segments: outcome
                        .segments
                        .iter()
                        .map(|s| JsonSegment {
                            start_s: ms(s.start_s()),
                            end_s: ms(s.end_s()),
                        })
                        .collect(),
                };
                let text = serde_json::to_string_pretty(&doc).map_err(io::Error::other)?;
                let sep = if self.n_files == 0 { "" } else { ",\n" };
                write!(self.out, "{sep}{text}")?;
            }
            Format::Rttm => {
                // RTTM names a recording by its file id: the file name without extension.
                let id = path
                    .file_stem()
                    .map(|s| s.to_string_lossy())
                    .unwrap_or_default();
                let id = id.replace(char::is_whitespace, "_");
                for s in &outcome.segments {
                    writeln!(
                        self.out,
                        "SPEAKER {id} 1 {:.3} {:.3} <NA> <NA> speech <NA> <NA>",
                        ms(s.start_s()),
                        ms(s.end_s() - s.start_s())
                    )?;
                }
            }
            Format::Csv => {
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
            Format::Audacity => {
                for s in &outcome.segments {
                    audacity_label(&mut self.out, s.start_s(), s.end_s(), "speech")?;
                }
            }
            Format::Text => {
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

    pub fn end(&mut self) -> io::Result<()> {
        if self.format == Format::Json {
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
