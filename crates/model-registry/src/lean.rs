//! Lean copies made on demand: a model whose manifest entry says `lean = true` is loaded from a
//! copy with its initializers in a 4096-aligned external-data file, which ONNX Runtime maps
//! instead of copying (what `masp models optimize` writes by hand).
//!
//! Copies live in `<cache>/<model>-<id>/model.onnx` (+ `model.onnx.data`), where `<id>` is a
//! digest of what identifies the source file's content without reading it: its real path,
//! size, modification and status-change times, device and inode, and the manifest's sha256.
//! A changed source gets a new directory, and writing it removes the model's older ones. The
//! data file is written before the model file, each durably ([`crate::atomic`]: sync, rename,
//! directory sync), so a copy whose `model.onnx` exists is whole, after a power loss too.
//!
//! Several processes share the cache (shards, parallel runs), so two locks per copy directory:
//! - `.writing`, exclusive while a copy is written: a second writer waits, then finds it done;
//! - `.in-use`, held shared by every process that has used the copy, until it exits (ONNX
//!   Runtime maps the data file for as long as a session lives, and a process may open the
//!   copy again later). Removing an older copy needs this lock exclusively and skips the copy
//!   when it cannot get it at once: nothing is deleted that another process may map.

use std::collections::HashMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, PoisonError};
use std::time::Instant;

use sha2::{Digest, Sha256};

use crate::onnx::{ExternalizeOptions, ExternalizeReport, externalize};
use crate::{Error, Result};

/// The model file's name inside a copy's directory.
const MODEL_FILE: &str = "model.onnx";
/// Hex digits of the identity digest in a directory name.
const ID_LEN: usize = 16;
/// Lock file held exclusively while a copy is written.
const WRITING_LOCK: &str = ".writing";
/// Lock file held shared by each process that uses a copy, until it exits.
const IN_USE_LOCK: &str = ".in-use";

/// A lean copy that [`ensure`] wrote.
#[derive(Debug, Clone, PartialEq)]
pub struct Written {
    /// What was moved where.
    pub report: ExternalizeReport,
    /// How long writing took, in milliseconds.
    pub ms: f64,
    /// Older copies of the same model that were removed.
    pub removed: Vec<PathBuf>,
}

/// Where model `name`'s lean copy of `source` lives under `cache`, whether or not it exists.
///
/// # Errors
/// [`Error::Io`] when `source` cannot be inspected.
pub fn copy_path(name: &str, source: &Path, sha256: Option<&str>, cache: &Path) -> Result<PathBuf> {
    let io = |source_err| Error::Io {
        path: source.to_path_buf(),
        source: source_err,
    };
    let real = source.canonicalize().map_err(io)?;
    let meta = std::fs::metadata(&real).map_err(io)?;
    let mut digest = Sha256::new();
    digest.update(real.as_os_str().as_encoded_bytes());
    digest.update([0]);
    match crate::assets::file_stamp(&real) {
        // Device, inode, size, modification and status-change times.
        Some(stamp) => stamp
            .iter()
            .for_each(|part| digest.update(part.to_le_bytes())),
        // Elsewhere: size and modification time.
        None => {
            digest.update(meta.len().to_le_bytes());
            if let Ok(since) = meta.modified().and_then(|m| {
                m.duration_since(std::time::UNIX_EPOCH)
                    .map_err(std::io::Error::other)
            }) {
                digest.update(since.as_nanos().to_le_bytes());
            }
        }
    }
    digest.update(sha256.unwrap_or("").as_bytes());
    let id = hex::encode(digest.finalize());
    Ok(cache
        .join(format!("{name}-{}", &id[..ID_LEN]))
        .join(MODEL_FILE))
}

/// The current lean copy, if one has been written.
///
/// # Errors
/// As [`copy_path`].
pub fn existing(
    name: &str,
    source: &Path,
    sha256: Option<&str>,
    cache: &Path,
) -> Result<Option<PathBuf>> {
    let path = copy_path(name, source, sha256, cache)?;
    Ok(hold_in_use(&path).then_some(path))
}

/// The `.in-use` lock files this process keeps open, by copy directory; closing one would
/// release its lock.
fn held_locks() -> std::sync::MutexGuard<'static, Option<HashMap<PathBuf, File>>> {
    static HELD: Mutex<Option<HashMap<PathBuf, File>>> = Mutex::new(None);
    HELD.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Whether the copy at `path` exists, taking (once per process) the shared `.in-use` lock of
/// its directory first, so no other process removes it from then on.
fn hold_in_use(path: &Path) -> bool {
    let Some(dir) = path.parent() else {
        return false;
    };
    let mut held = held_locks();
    let held = held.get_or_insert_with(HashMap::new);
    if held.contains_key(dir) {
        return path.is_file();
    }
    // No directory, no copy; a lock that cannot be taken (a read-only cache) only loses the
    // protection, not the copy.
    if !dir.is_dir() {
        return false;
    }
    let lock = crate::file::open_lock_file(&dir.join(IN_USE_LOCK))
        .and_then(|file| file.lock_shared().map(|()| file));
    let exists = path.is_file();
    if let (true, Ok(lock)) = (exists, lock) {
        held.insert(dir.to_path_buf(), lock);
    }
    exists
}

/// The lean copy of `source`, written now if there is none: `Ok((path, None))` when it already
/// existed, `Ok((path, Some(written)))` when it was written.
///
/// # Errors
/// [`Error::Write`] when the cache directory or the copy cannot be written (naming the path),
/// and [`externalize`]'s errors for a source that cannot be read as ONNX.
pub fn ensure(
    name: &str,
    source: &Path,
    sha256: Option<&str>,
    cache: &Path,
) -> Result<(PathBuf, Option<Written>)> {
    let path = copy_path(name, source, sha256, cache)?;
    if path.is_file() {
        return Ok((path, None));
    }
    let dir = path.parent().unwrap_or(cache);
    let write_err = |at: &Path| {
        let at = at.to_path_buf();
        move |source| Error::Write { path: at, source }
    };
    std::fs::create_dir_all(dir).map_err(write_err(dir))?;
    let lock_path = dir.join(WRITING_LOCK);
    let writing = crate::file::lock_exclusive(&lock_path).map_err(write_err(&lock_path))?;
    // Another process may have written it while this one waited.
    if path.is_file() {
        return Ok((path, None));
    }
    let started = Instant::now();
    let report = externalize(source, &path, ExternalizeOptions::default())?;
    let ms = started.elapsed().as_secs_f64() * 1e3;
    drop(writing);
    let removed = remove_older(name, cache, dir);
    Ok((
        path,
        Some(Written {
            report,
            ms,
            removed,
        }),
    ))
}

/// Remove `name`'s copies other than `keep` that no process uses (their `.in-use` lock is free);
/// returns what was removed. Failures are ignored: a stale copy only costs disk space.
fn remove_older(name: &str, cache: &Path, keep: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(cache) else {
        return Vec::new();
    };
    let mut removed = Vec::new();
    for entry in entries.flatten() {
        let dir = entry.path();
        let Some(file_name) = dir.file_name().and_then(|n| n.to_str()) else {
            continue;
        };
        let is_copy_of_name = file_name.len() == name.len() + 1 + ID_LEN
            && file_name.starts_with(name)
            && file_name.as_bytes()[name.len()] == b'-'
            && file_name[name.len() + 1..]
                .bytes()
                .all(|b| b.is_ascii_hexdigit());
        if !is_copy_of_name || dir == keep {
            continue;
        }
        // This process moves on to `keep` (its source changed); its own hold on the older copy
        // ends here, other processes' holds still count.
        if let Some(own) = held_locks().as_mut() {
            own.remove(&dir);
        }
        // Held while removing, so nobody starts using the copy meanwhile.
        let Ok(lock) = crate::file::open_lock_file(&dir.join(IN_USE_LOCK)) else {
            continue;
        };
        if lock.try_lock().is_ok() && std::fs::remove_dir_all(&dir).is_ok() {
            removed.push(dir);
        }
    }
    removed
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::onnx::OnnxMetadata;

    /// A model with one 64 KiB float initializer embedded.
    fn embedded_model(path: &Path) {
        use crate::onnx::{GraphProto, ModelProto, OperatorSetIdProto, TensorProto, write_model};
        let weights = TensorProto {
            name: "w".into(),
            dims: vec![16 * 1024],
            data_type: 1,
            raw_data: vec![1u8; 64 * 1024].into(),
            ..Default::default()
        };
        let model = ModelProto {
            ir_version: 8,
            opset_import: vec![OperatorSetIdProto {
                domain: String::new(),
                version: 17,
            }],
            graph: Some(GraphProto {
                initializer: vec![weights],
                ..Default::default()
            }),
            ..Default::default()
        };
        write_model(path, &model).unwrap();
    }

    #[test]
    fn a_copy_is_written_once_reused_and_rewritten_when_the_source_changes() {
        let dir = tempfile::tempdir().unwrap();
        let cache = dir.path().join("lean");
        let src = dir.path().join("m.onnx");
        embedded_model(&src);

        assert_eq!(existing("m", &src, None, &cache).unwrap(), None);
        let (first, written) = ensure("m", &src, None, &cache).unwrap();
        let written = written.expect("first call writes");
        assert_eq!(written.report.bytes_moved.get(), 64 * 1024);
        assert!(written.removed.is_empty());
        let meta = OnnxMetadata::read(&first).unwrap();
        assert_eq!(meta.external_weight_bytes.get(), 64 * 1024);
        assert_eq!(meta.embedded_weight_bytes.get(), 0);
        assert_eq!(
            existing("m", &src, None, &cache).unwrap(),
            Some(first.clone())
        );

        let (again, written) = ensure("m", &src, None, &cache).unwrap();
        assert_eq!((again.as_path(), written), (first.as_path(), None));

        // A rewritten source (same size) gets a new copy; the old one goes. `write_model`
        // renames a new file into place, so the stamp changes by inode and ctime, whatever the
        // clock's resolution.
        embedded_model(&src);
        let (second, written) = ensure("m", &src, None, &cache).unwrap();
        assert_ne!(second, first);
        assert_eq!(
            written.unwrap().removed,
            vec![first.parent().unwrap().to_path_buf()]
        );
        assert!(!first.exists());

        // Another model's copies, and a model whose name extends this one's, are left alone.
        let (other, _) = ensure("m-x", &src, None, &cache).unwrap();
        let (_, written) = ensure("m", &src, Some(&"a".repeat(64)), &cache).unwrap();
        assert_eq!(
            written.unwrap().removed,
            vec![second.parent().unwrap().to_path_buf()]
        );
        assert!(other.is_file());
    }

    #[test]
    fn a_copy_another_process_uses_is_not_removed() {
        let dir = tempfile::tempdir().unwrap();
        let cache = dir.path().join("lean");
        let src = dir.path().join("m.onnx");
        embedded_model(&src);
        let (first, _) = ensure("m", &src, None, &cache).unwrap();
        // Another process's hold: a lock is per open file, so a second open behaves as one.
        let other = crate::file::open_lock_file(&first.with_file_name(IN_USE_LOCK)).unwrap();
        other.lock_shared().unwrap();
        embedded_model(&src);
        let (second, written) = ensure("m", &src, None, &cache).unwrap();
        assert!(
            written.unwrap().removed.is_empty(),
            "a used copy was removed"
        );
        assert!(first.is_file() && second.is_file());
        // Once it lets go, the next new copy removes both older ones.
        drop(other);
        embedded_model(&src);
        let (_, written) = ensure("m", &src, None, &cache).unwrap();
        assert_eq!(written.unwrap().removed.len(), 2);
        assert!(!first.exists() && !second.exists());
    }

    #[test]
    fn concurrent_writers_of_one_copy_write_it_once() {
        let dir = tempfile::tempdir().unwrap();
        let cache = dir.path().join("lean");
        let src = dir.path().join("m.onnx");
        embedded_model(&src);
        let results: Vec<_> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..4)
                .map(|_| s.spawn(|| ensure("m", &src, None, &cache).unwrap()))
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        let n_written = results.iter().filter(|(_, w)| w.is_some()).count();
        assert_eq!(n_written, 1, "the copy was written {n_written} times");
        assert!(results.iter().all(|(p, _)| p == &results[0].0));
        let meta = OnnxMetadata::read(&results[0].0).unwrap();
        assert_eq!(meta.external_weight_bytes.get(), 64 * 1024);
    }

    #[test]
    fn an_unwritable_cache_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("m.onnx");
        embedded_model(&src);
        let blocker = dir.path().join("file");
        std::fs::write(&blocker, b"not a directory").unwrap();
        let err = ensure("m", &src, None, &blocker.join("lean")).unwrap_err();
        assert!(
            err.to_string().contains(&blocker.display().to_string()),
            "{err}"
        );
    }

    #[test]
    fn a_missing_source_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("absent.onnx");
        let err = ensure("m", &src, None, dir.path()).unwrap_err();
        assert!(err.to_string().contains("absent.onnx"), "{err}");
    }
}
