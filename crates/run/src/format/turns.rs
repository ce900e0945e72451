//! Speaker turns as RTTM, JSON or an Audacity label track, one file at a time.

use std::io::{self, Write};
use std::path::Path;

use crate::diarize::{self, Turn};

use super::{audacity_label, ms, rttm_id};

/// Output formats of `masp diarize`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
pub enum TurnFormat {
    /// NIST RTTM: one `SPEAKER <file-id> 1 <start> <dur> <NA> <NA> <speaker> <NA> <NA>` line per
    /// turn; the file id is the file name without extension.
    Rttm,
    /// A JSON array with one object per file (path, duration, speakers, turns).
    Json,
    /// An Audacity label track (`start<TAB>end<TAB>SPEAKER_00`): File → Import → Labels over
    /// the audio to listen to who spoke when. One input per run.
    Audacity,
}

/// How a speaker is named in every format: `SPEAKER_00`, `SPEAKER_01`, …
pub fn speaker_name(index: usize) -> String {
    format!("SPEAKER_{index:02}")
}

/// Streams per-file speaker turns in one [`TurnFormat`].
///
/// # Examples
///
/// ```
/// use masp_run::diarize::Turn;
/// use masp_run::format::{TurnFormat, TurnWriter};
///
/// let mut out = Vec::new();
/// let mut writer = TurnWriter::new(&mut out, TurnFormat::Rttm);
/// writer.begin()?;
/// let turn = Turn { start_s: 0.5, end_s: 2.0, speaker: 1 };
/// writer.file("calls/a b.wav".as_ref(), 3.0, &[turn])?;
/// writer.end()?;
/// assert_eq!(
///     String::from_utf8_lossy(&out),
///     "SPEAKER a_b 1 0.500 1.500 <NA> <NA> SPEAKER_01 <NA> <NA>\n"
/// );
/// # Ok::<(), std::io::Error>(())
/// ```
#[derive(Debug)]
pub struct TurnWriter<W: Write> {
    out: W,
    format: TurnFormat,
    n_files: usize,
}

impl<W: Write> TurnWriter<W> {
    /// A writer of `format` into `out`.
    pub fn new(out: W, format: TurnFormat) -> Self {
        Self {
            out,
            format,
            n_files: 0,
        }
    }

    /// What comes before the first file (JSON's `[`).
    ///
    /// # Errors
    /// The writer's.
    pub fn begin(&mut self) -> io::Result<()> {
        if self.format == TurnFormat::Json {
            writeln!(self.out, "[")?;
        }
        Ok(())
    }

    /// One file's turns (`duration_s`: the analysed audio), flushed.
    ///
    /// # Errors
    /// The writer's.
    pub fn file(&mut self, path: &Path, duration_s: f64, turns: &[Turn]) -> io::Result<()> {
        match self.format {
            TurnFormat::Rttm => {
                let id = rttm_id(path);
                for t in turns {
                    writeln!(
                        self.out,
                        "SPEAKER {id} 1 {:.3} {:.3} <NA> <NA> {} <NA> <NA>",
                        ms(t.start_s),
                        ms(t.end_s - t.start_s),
                        speaker_name(t.speaker)
                    )?;
                }
            }
            TurnFormat::Audacity => {
                for t in turns {
                    audacity_label(&mut self.out, t.start_s, t.end_s, &speaker_name(t.speaker))?;
                }
            }
            TurnFormat::Json => {
                let doc = serde_json::json!({
                    "path": path,
                    "duration_s": ms(duration_s),
                    "n_speakers": diarize::n_speakers(turns),
                    "turns": turns.iter().map(|t| serde_json::json!({
                        "start_s": ms(t.start_s),
                        "end_s": ms(t.end_s),
                        "speaker": speaker_name(t.speaker),
                    })).collect::<Vec<_>>(),
                });
                let sep = if self.n_files == 0 { "" } else { ",\n" };
                let text = serde_json::to_string_pretty(&doc).map_err(io::Error::other)?;
                write!(self.out, "{sep}{text}")?;
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
        if self.format == TurnFormat::Json {
            writeln!(self.out, "{}]", if self.n_files == 0 { "" } else { "\n" })?;
        }
        self.out.flush()
    }
}
