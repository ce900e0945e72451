//! Durable file writes: a file either does not exist under its name or is complete.
//!
//! Every result, cache entry and record masp writes goes through [`write_atomic`]: a temporary
//! file beside the target ([`temporary_path`]), written and synced, renamed over the target,
//! and the directory synced, so neither a crash nor a power loss leaves a torn file under the
//! final name. A leftover temporary file ends in [`TEMP_SUFFIX`].

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};

/// Suffix of temporary files; anything ending so in a run directory is a leftover.
pub const TEMP_SUFFIX: &str = ".masp-tmp";

/// Write `bytes` to `path` so that `path` either does not exist or is complete: a temporary
/// file next to it, synced, renamed over it, and the directory synced.
///
/// # Errors
/// The I/O error; the temporary file is removed.
///
/// # Examples
///
/// ```
/// use masp_model_registry::atomic::write_atomic;
///
/// let dir = tempfile::tempdir()?;
/// write_atomic(&dir.path().join("a.json"), b"{}")?;
/// assert_eq!(std::fs::read(dir.path().join("a.json"))?, b"{}");
/// # Ok::<(), std::io::Error>(())
/// ```
pub fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let tmp = temporary_path(path);
    let attempt = (|| {
        let mut file = File::create(&tmp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        std::fs::rename(&tmp, path)?;
        if let Some(dir) = path.parent() {
            File::open(dir)?.sync_all()?;
        }
        Ok::<(), std::io::Error>(())
    })();
    attempt.inspect_err(|_| {
        let _ = std::fs::remove_file(&tmp);
    })
}

/// The temporary name used while `path` is being written.
pub fn temporary_path(path: &Path) -> PathBuf {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    path.with_file_name(format!(".{name}{TEMP_SUFFIX}"))
}

/// Rename the complete file `from` over `to` and sync `to`'s directory, so the rename survives
/// a power loss (`from` must already be synced, as [`write_atomic`] leaves its files).
///
/// # Errors
/// The I/O error.
pub fn persist(from: &Path, to: &Path) -> std::io::Result<()> {
    std::fs::rename(from, to)?;
    match to.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => File::open(dir)?.sync_all(),
        _ => File::open(".")?.sync_all(),
    }
}
