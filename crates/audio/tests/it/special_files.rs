//! Issue #20 class 3: an input that is not a regular file is refused at once, never waited on.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::Duration;

use masp_audio::{Error, read_mono};

use crate::common::{Enc, sine, wav_bytes, write_file};

/// How long an open may take before the test calls it a hang: far above any refusal (a few
/// microseconds), far below a test runner's patience.
const HANG_S: u64 = 20;

/// `read_mono(path)` on a thread; a result that does not come within [`HANG_S`] fails the test
/// instead of hanging it.
fn decode_or_hang(path: &Path) -> Result<usize, Error> {
    let (tx, rx) = mpsc::channel();
    let path = path.to_path_buf();
    std::thread::spawn(move || {
        let _ = tx.send(read_mono(&path, 16_000).map(|(_, s)| s.len()));
    });
    rx.recv_timeout(Duration::from_secs(HANG_S))
        .unwrap_or_else(|_| panic!("decoding blocked for {HANG_S} s"))
}

fn mkfifo(path: &Path) -> PathBuf {
    let status = std::process::Command::new("mkfifo")
        .arg(path)
        .status()
        .unwrap();
    assert!(status.success(), "mkfifo {}", path.display());
    path.to_path_buf()
}

fn assert_refused(path: &Path, kind: &str) {
    match decode_or_hang(path) {
        Err(Error::Io { path: p, error }) => {
            assert_eq!(p, path);
            assert_eq!(error.to_string(), format!("not a regular file (a {kind})"));
        }
        other => panic!("{}: {other:?}", path.display()),
    }
}

#[test]
fn special_files_are_refused_without_blocking() {
    let dir = tempfile::tempdir().unwrap();
    // A FIFO nobody writes: a blocking open would wait forever.
    let fifo = mkfifo(&dir.path().join("pipe.wav"));
    assert_refused(&fifo, "FIFO");
    // A link to it is followed and refused the same way.
    let link = dir.path().join("link-to-pipe.wav");
    std::os::unix::fs::symlink(&fifo, &link).unwrap();
    assert_refused(&link, "FIFO");
    // A socket.
    let socket = dir.path().join("sock.wav");
    let _listener = std::os::unix::net::UnixListener::bind(&socket).unwrap();
    assert_refused(&socket, "socket");
    // A character device: reading /dev/zero would never end.
    assert_refused(Path::new("/dev/zero"), "character device");
    assert_refused(Path::new("/dev/null"), "character device");
}

#[test]
fn a_link_to_a_regular_file_still_decodes_and_a_dangling_one_is_not_found() {
    let dir = tempfile::tempdir().unwrap();
    let wav = write_file(
        dir.path(),
        "a.wav",
        &wav_bytes(1, 16_000, Enc::I16, &sine(440.0, 0.5, 16_000, 1600)),
    );
    let link = dir.path().join("link.wav");
    std::os::unix::fs::symlink(&wav, &link).unwrap();
    assert_eq!(decode_or_hang(&link).unwrap(), 1600);
    let dangling = dir.path().join("dangling.wav");
    std::os::unix::fs::symlink(dir.path().join("absent.wav"), &dangling).unwrap();
    match decode_or_hang(&dangling) {
        Err(Error::Io { error, .. }) => assert_eq!(error.kind(), io::ErrorKind::NotFound),
        other => panic!("{other:?}"),
    }
}
