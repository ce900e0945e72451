//! Opening files that come from outside masp: only regular files, without ever blocking.
//!
//! Every file masp reads from a user, a manifest, a model, a run directory or the asset cache
//! is opened through [`open_regular`] (or [`open_regular_with`] when it is also written): the
//! open is non-blocking (`O_NONBLOCK`, so a FIFO with no writer cannot hang the batch, and a
//! FIFO opened for writing with no reader fails instead of waiting), the file type is checked
//! on the open descriptor (`fstat`, so nothing can swap the file between a check and the open),
//! and anything that is not a regular file — a FIFO, a socket, a device, a directory — is
//! refused with [`NotRegularFile`]. [`Links::Refuse`] adds `O_NOFOLLOW` for files that live
//! inside a directory masp owns (a run directory, the asset cache), where a symlink could only
//! point somewhere masp must not read or write.
//!
//! Why here: model-registry is the lowest layer that reads files from outside (manifests and
//! models); masp-budget reads only `/proc` and cgroup files. masp-audio imports none of our
//! crates, so it keeps a small copy of [`open_regular`] in `crates/audio/src/decode.rs`
//! (docs/ARCHITECTURE.md).

use std::fs::{File, OpenOptions};
use std::io::{self, Read};
use std::path::Path;

/// Whether the last component of a path may be a symlink.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Links {
    /// Follow a symlink to a regular file: inputs the user names (an audio file, a manifest,
    /// a model file) may be links.
    Follow,
    /// Refuse a symlink (`O_NOFOLLOW`): files masp keeps in its own directories (journals,
    /// records, shard manifests, lean copies, the calibration store).
    Refuse,
}

/// What a path that is not a regular file turned out to be.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("not a regular file (a {kind})")]
pub struct NotRegularFile {
    /// `directory`, `FIFO`, `socket`, `character device`, `block device` or `symlink`.
    pub kind: &'static str,
}

impl NotRegularFile {
    /// The error as an [`io::Error`] of kind `InvalidInput`, so every caller's existing
    /// "path: reason" mapping reports it; [`NotRegularFile::of`] gets it back.
    pub fn into_io(self) -> io::Error {
        io::Error::new(io::ErrorKind::InvalidInput, self)
    }

    /// The [`NotRegularFile`] inside `error`, if that is what it is.
    pub fn of(error: &io::Error) -> Option<Self> {
        error.get_ref()?.downcast_ref::<Self>().copied()
    }
}

/// Open `path` read-only as a regular file, never blocking.
///
/// # Errors
/// The open's I/O error (`ENOENT`, `EACCES`; `ELOOP` for a symlink under [`Links::Refuse`]),
/// or [`NotRegularFile`] (as an `InvalidInput` I/O error) for anything else than a regular
/// file.
///
/// # Examples
///
/// ```
/// use masp_model_registry::file::{Links, NotRegularFile, open_regular};
///
/// let dir = tempfile::tempdir()?;
/// std::fs::write(dir.path().join("a.txt"), b"hi")?;
/// assert!(open_regular(&dir.path().join("a.txt"), Links::Follow).is_ok());
/// let refused = open_regular(dir.path(), Links::Follow).unwrap_err();
/// assert_eq!(NotRegularFile::of(&refused).map(|e| e.kind), Some("directory"));
/// # Ok::<(), std::io::Error>(())
/// ```
pub fn open_regular(path: &Path, links: Links) -> io::Result<File> {
    open_regular_with(path, links, OpenOptions::new().read(true))
}

/// Open `path` with `options` (say, read and append) as [`open_regular`] does: non-blocking
/// and close-on-exec, refused unless a regular file. The descriptor is blocking again once it
/// is known to be a regular file, so later reads and writes behave as usual.
///
/// # Errors
/// As [`open_regular`].
pub fn open_regular_with(path: &Path, links: Links, options: &OpenOptions) -> io::Result<File> {
    let mut options = options.clone();
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        let nofollow = match links {
            Links::Follow => 0,
            Links::Refuse => libc::O_NOFOLLOW,
        };
        // Rust opens with O_CLOEXEC already; O_NONBLOCK makes a FIFO open return at once.
        options.custom_flags(libc::O_NONBLOCK | nofollow);
    }
    let file = options.open(path).map_err(|e| explain(e, path, links))?;
    let kind = file.metadata()?.file_type();
    if !kind.is_file() {
        return Err(NotRegularFile {
            kind: kind_name(&kind),
        }
        .into_io());
    }
    #[cfg(unix)]
    set_blocking(&file)?;
    Ok(file)
}

/// The content of the regular file at `path`, refused when over `max_bytes`: judged from the
/// open file's size before anything is read, and the read stops one byte past the limit, so a
/// huge or growing file costs no more than the limit.
///
/// # Errors
/// As [`open_regular`], and `InvalidData` when the file is larger than `max_bytes`.
pub fn read_regular(path: &Path, links: Links, max_bytes: u64) -> io::Result<Vec<u8>> {
    let file = open_regular(path, links)?;
    if file.metadata()?.len() > max_bytes {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("larger than {max_bytes} bytes"),
        ));
    }
    let mut bytes = Vec::new();
    file.take(max_bytes.saturating_add(1))
        .read_to_end(&mut bytes)?;
    if bytes.len() as u64 > max_bytes {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("larger than {max_bytes} bytes"),
        ));
    }
    Ok(bytes)
}

/// Two failed opens whose system messages hide the reason, said plainly: `O_NOFOLLOW` on a
/// symlink fails with `ELOOP` ("too many levels of symbolic links"), and opening a socket or a
/// FIFO without a reader for writing fails with `ENXIO` ("no such device or address").
fn explain(e: io::Error, path: &Path, links: Links) -> io::Error {
    #[cfg(unix)]
    match e.raw_os_error() {
        Some(libc::ELOOP) if links == Links::Refuse => {
            return NotRegularFile { kind: "symlink" }.into_io();
        }
        // Opening a directory for writing.
        Some(libc::EISDIR) => return NotRegularFile { kind: "directory" }.into_io(),
        Some(libc::ENXIO) => {
            // Only to name the kind in the message: the open has failed already.
            if let Ok(meta) = std::fs::metadata(path)
                && !meta.is_file()
            {
                return NotRegularFile {
                    kind: kind_name(&meta.file_type()),
                }
                .into_io();
            }
        }
        _ => {}
    }
    let _ = (path, links);
    e
}

fn kind_name(kind: &std::fs::FileType) -> &'static str {
    #[cfg(unix)]
    {
        use std::os::unix::fs::FileTypeExt;
        if kind.is_fifo() {
            return "FIFO";
        }
        if kind.is_socket() {
            return "socket";
        }
        if kind.is_char_device() {
            return "character device";
        }
        if kind.is_block_device() {
            return "block device";
        }
    }
    if kind.is_dir() {
        "directory"
    } else if kind.is_symlink() {
        "symlink"
    } else {
        "special file"
    }
}

#[cfg(unix)]
fn set_blocking(file: &File) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    let fd = file.as_raw_fd();
    // SAFETY: `fd` is an open descriptor owned by `file` for the duration of both calls;
    // F_GETFL/F_SETFL read and change only its status flags.
    let flags = unsafe { libc::fcntl(fd, libc::F_GETFL) };
    if flags < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: as above.
    if unsafe { libc::fcntl(fd, libc::F_SETFL, flags & !libc::O_NONBLOCK) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Open (creating it) the lock file at `path` and wait for an exclusive advisory lock on it
/// (`flock`), released when the returned file is dropped. For shared caches (the calibration
/// store, lean copies) whose updates are short; a run directory is locked without waiting
/// (masp-run's `RunLock`).
///
/// # Errors
/// The I/O error of opening or locking; [`NotRegularFile`] when `path` is not a regular file
/// (or is a symlink).
pub fn lock_exclusive(path: &Path) -> io::Result<File> {
    let file = open_lock_file(path)?;
    file.lock()?;
    Ok(file)
}

/// Open (creating it) the lock file at `path`, read-write, without locking it yet; symlinks
/// and special files are refused as by [`open_regular`].
///
/// # Errors
/// As [`open_regular`].
pub fn open_lock_file(path: &Path) -> io::Result<File> {
    open_regular_with(
        path,
        Links::Refuse,
        OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false),
    )
}
