//! Every format masp writes results in: speech segments, speaker turns and embeddings, on
//! stdout or in files. One module per kind of result, one shape per kind.
//!
//! - [`segments`]: a VAD result as JSON, RTTM, CSV, text or an Audacity label track, streamed
//!   one file at a time ([`SegmentWriter`]); the JSON object of one file
//!   ([`segments::file_json`]) is also what `masp run` writes for a VAD stage.
//! - [`turns`]: speaker turns as RTTM, JSON or Audacity labels ([`TurnWriter`]).
//! - [`embeddings`]: range embeddings as JSON documents and float32 `.npy` files.

pub mod embeddings;
pub mod segments;
pub mod turns;

use std::io::{self, Write};

pub use segments::{SegmentFormat, SegmentWriter};
pub use turns::{TurnFormat, TurnWriter};

/// Rounds seconds to the millisecond for output (results are sample-exact internally).
pub fn ms(seconds: f64) -> f64 {
    (seconds * 1000.0).round() / 1000.0
}

/// An Audacity label line: start and end in seconds (6 decimals, as Audacity exports), label.
///
/// # Errors
/// The writer's.
pub fn audacity_label(
    out: &mut dyn Write,
    start_s: f64,
    end_s: f64,
    label: &str,
) -> io::Result<()> {
    writeln!(out, "{start_s:.6}\t{end_s:.6}\t{label}")
}

/// The RTTM file id of an input: its file name without extension, white space replaced by `_`
/// (RTTM fields are separated by spaces).
pub fn rttm_id(path: &std::path::Path) -> String {
    path.file_stem()
        .map(|s| s.to_string_lossy())
        .unwrap_or_default()
        .replace(char::is_whitespace, "_")
}
