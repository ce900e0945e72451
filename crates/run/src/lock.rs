//! The run-directory lock: one masp at a time writes a run directory.
//!
//! Two runs on one `--out` would interleave journal lines, truncate each other's torn tails and
//! remove each other's temporary files. So opening a run directory takes an advisory `flock` on
//! its [`LOCK_FILE`], without waiting, and holds it until the run ends (the lock is released
//! when the holder's file is closed, so by the kernel too when a run is killed). The holder
//! writes its process id into the file so the second run's error can name it, and removes the
//! file when it is done, so a finished run directory holds only results.
//!
//! Removing a lock file is safe only with a check: a process may have opened the file just
//! before the holder removed it, and then lock the removed file while a third process creates
//! and locks a new one. So the holder removes the file while still holding the lock, and every
//! process that gets the lock checks that the file it locked is still the one under the name
//! (same device and inode), opening again when it is not.

use std::fs::{File, TryLockError};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use crate::{Error, Result};

/// The lock file's name inside a run directory.
pub const LOCK_FILE: &str = ".masp-lock";

/// Times [`RunLock::acquire`] opens the lock file again after finding the one it locked
/// replaced (its holder removed it meanwhile). Each retry follows a finished run, so more than
/// a few in a row means processes keep racing for the directory; refusing then is clearer than
/// spinning.
const MAX_LOCK_ATTEMPTS: usize = 16;

/// Longest process id text read back from a lock file: a pid has at most 10 digits; anything
/// longer is not one of ours and is ignored.
const MAX_PID_BYTES: u64 = 16;

/// An exclusive hold on a run directory, released on `Drop`. Holding one is the proof that no
/// other masp writes the directory.
#[derive(Debug)]
pub struct RunLock {
    path: PathBuf,
    /// Open for as long as the lock is held: closing it releases the lock.
    file: File,
}

impl Drop for RunLock {
    fn drop(&mut self) {
        // Removed while still locked (see the module docs); a failure only leaves the file,
        // which the next run locks as usual.
        let _ = std::fs::remove_file(&self.path);
        let _ = self.file.unlock();
    }
}

impl RunLock {
    /// Lock the run directory `dir` (which must exist), failing at once when another process
    /// holds it.
    ///
    /// # Errors
    /// [`Error::InUse`] naming the directory and the holder's pid when it is locked;
    /// [`Error::Output`] when the lock file cannot be opened (a FIFO, a symlink, no permission).
    ///
    /// # Examples
    ///
    /// ```
    /// use masp_run::lock::RunLock;
    ///
    /// let dir = tempfile::tempdir()?;
    /// let held = RunLock::acquire(dir.path())?;
    /// let refused = RunLock::acquire(dir.path()).unwrap_err();
    /// assert!(refused.to_string().contains(&format!("pid {}", std::process::id())));
    /// drop(held);
    /// assert!(RunLock::acquire(dir.path()).is_ok());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn acquire(dir: &Path) -> Result<Self> {
        let path = dir.join(LOCK_FILE);
        let io = |e: std::io::Error| Error::io(&path, &e);
        for _ in 0..MAX_LOCK_ATTEMPTS {
            let mut file = masp_model_registry::file::open_lock_file(&path).map_err(io)?;
            match file.try_lock() {
                Ok(()) => {}
                Err(TryLockError::WouldBlock) => {
                    return Err(Error::InUse {
                        dir: dir.to_path_buf(),
                        pid: read_pid(&mut file),
                    });
                }
                Err(TryLockError::Error(e)) => return Err(io(e)),
            }
            if !is_still_named(&file, &path) {
                continue;
            }
            // Only the holder writes the pid, so a reader sees either none or the holder's.
            file.set_len(0).map_err(io)?;
            file.seek(SeekFrom::Start(0)).map_err(io)?;
            file.write_all(format!("{}\n", std::process::id()).as_bytes())
                .map_err(io)?;
            return Ok(Self { path, file });
        }
        Err(Error::Output {
            path,
            reason: format!(
                "the lock file was replaced {MAX_LOCK_ATTEMPTS} times while locking it; \
                 other processes keep taking this run directory"
            ),
        })
    }

    /// Lock `dir` unless this process holds its lock already: `Ok(Some(lock))` when it took
    /// the lock now, `Ok(None)` when this process is the holder (its pid is in the lock file),
    /// for a short write beside a run that may or may not have started (a shard manifest).
    ///
    /// # Errors
    /// As [`RunLock::acquire`], when another process holds it.
    pub fn acquire_unless_held_here(dir: &Path) -> Result<Option<Self>> {
        match Self::acquire(dir) {
            Ok(lock) => Ok(Some(lock)),
            Err(Error::InUse { pid: Some(pid), .. }) if pid == std::process::id() => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// The lock file.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// Whether `file` (locked) is still the file named `path`, not one its holder removed.
fn is_still_named(file: &File, path: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    match (file.metadata(), std::fs::symlink_metadata(path)) {
        (Ok(open), Ok(named)) => open.dev() == named.dev() && open.ino() == named.ino(),
        _ => false,
    }
}

/// The pid the holder wrote, if it has written one yet.
fn read_pid(file: &mut File) -> Option<u32> {
    let mut text = String::new();
    file.take(MAX_PID_BYTES).read_to_string(&mut text).ok()?;
    text.trim().parse().ok()
}
