//! Durable file writes: a file either does not exist under its name or is complete.
//!
//! Every result, cache entry and record masp writes goes through [`write_atomic`] (or
//! [`write_atomic_with`] to stream it): a temporary file beside the target with a name no
//! other writer uses ([`temporary_path`]), written and synced, renamed over the target, and
//! the directory synced, so neither a crash, a power loss nor a concurrent writer of the same
//! target leaves a torn file under the final name. A leftover temporary file ends in
//! [`TEMP_SUFFIX`]. The tidy test `durable_writes_only_through_atomic` (xtask) keeps raw
//! `fs::write` and `fs::rename` out of the library crates.

use std::fs::{File, OpenOptions};
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// Suffix of temporary files; anything ending so in a run directory is a leftover.
pub const TEMP_SUFFIX: &str = ".masp-tmp";

/// Buffer between a streaming writer and its temporary file: large enough that a model's
/// tensors go out in few system calls, small next to any budget.
const WRITE_BUFFER_BYTES: usize = 1 << 20;

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
pub fn write_atomic(path: &Path, bytes: &[u8]) -> io::Result<()> {
    write_atomic_with(path, |out| out.write_all(bytes)).map(|_| ())
}

/// Write `path` through `write`, which streams into a buffered temporary file beside it, then
/// sync the file, rename it over `path` and sync the directory. Returns what `write` returned.
///
/// # Errors
/// The I/O error of `write` or of the file system; the temporary file is removed and `path` is
/// left as it was.
pub fn write_atomic_with<T>(
    path: &Path,
    write: impl FnOnce(&mut BufWriter<&File>) -> io::Result<T>,
) -> io::Result<T> {
    let tmp = temporary_path(path);
    let attempt = (|| {
        // `create_new`: a name that exists is someone else's temporary file, never ours.
        let file = OpenOptions::new().write(true).create_new(true).open(&tmp)?;
        let value = {
            let mut out = BufWriter::with_capacity(WRITE_BUFFER_BYTES, &file);
            let value = write(&mut out)?;
            out.flush()?;
            value
        };
        file.sync_all()?;
        persist(&tmp, path)?;
        Ok::<T, io::Error>(value)
    })();
    attempt.inspect_err(|_| {
        let _ = std::fs::remove_file(&tmp);
    })
}

/// A fresh temporary name for writing `path`: hidden, beside it, unique to this process and
/// call (process id and a counter), ending in [`TEMP_SUFFIX`]. Two processes or threads
/// writing the same target never share a temporary file.
pub fn temporary_path(path: &Path) -> PathBuf {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    path.with_file_name(format!(".{name}.{}-{n}{TEMP_SUFFIX}", std::process::id()))
}

/// Rename the complete file `from` over `to` and sync `to`'s directory, so the rename survives
/// a power loss (`from` must already be synced, as [`write_atomic`] leaves its files).
///
/// # Errors
/// The I/O error.
pub fn persist(from: &Path, to: &Path) -> io::Result<()> {
    // The one rename of the library crates: everything durable ends here.
    std::fs::rename(from, to)?;
    sync_dir(to)
}

/// Sync the directory holding `path`, so a rename or creation in it survives a power loss.
///
/// # Errors
/// The I/O error.
pub fn sync_dir(path: &Path) -> io::Result<()> {
    match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => File::open(dir)?.sync_all(),
        _ => File::open(".")?.sync_all(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temporaries(dir: &Path) -> Vec<String> {
        std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.ends_with(TEMP_SUFFIX))
            .collect()
    }

    #[test]
    fn a_failed_write_leaves_the_old_file_and_no_temporary() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("r.json");
        write_atomic(&path, b"old").unwrap();
        let err = write_atomic_with(&path, |out| {
            out.write_all(b"half of the new")?;
            Err::<(), _>(io::Error::other("disk full"))
        })
        .unwrap_err();
        assert_eq!(err.to_string(), "disk full");
        assert_eq!(std::fs::read(&path).unwrap(), b"old");
        assert!(temporaries(dir.path()).is_empty());
        // A target in a directory that does not exist: nothing is left either.
        assert!(write_atomic(&dir.path().join("missing/r.json"), b"x").is_err());
        assert!(temporaries(dir.path()).is_empty());
    }

    #[test]
    fn temporary_names_are_unique_and_marked() {
        let path = Path::new("/d/x.npy");
        let a = temporary_path(path);
        let b = temporary_path(path);
        assert_ne!(a, b);
        for t in [a, b] {
            let name = t.file_name().unwrap().to_string_lossy().into_owned();
            assert!(
                name.starts_with(".x.npy.") && name.ends_with(TEMP_SUFFIX),
                "{name}"
            );
            assert_eq!(t.parent(), path.parent());
        }
    }

    #[test]
    fn concurrent_writers_of_one_target_leave_one_whole_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("shared.bin");
        // Each writer's content is one byte repeated: a mixture would be a torn file.
        let n_writers = 8u8;
        let len_bytes = 256 * 1024;
        std::thread::scope(|s| {
            for w in 0..n_writers {
                let path = &path;
                s.spawn(move || {
                    for _ in 0..5 {
                        write_atomic(path, &vec![w; len_bytes]).unwrap();
                    }
                });
            }
        });
        let bytes = std::fs::read(&path).unwrap();
        assert_eq!(bytes.len(), len_bytes);
        assert!(bytes.iter().all(|&b| b == bytes[0]), "torn file");
        assert!(temporaries(dir.path()).is_empty());
    }
}
