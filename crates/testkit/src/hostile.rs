//! Building blocks of hostile-input tests: a guard that turns a hang into a failure, special
//! files, and the protobuf wire format for crafting model files by hand.

use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::Duration;

/// Longer than any refusal takes (microseconds), shorter than a runner's patience: a call that
/// has not returned by then is a hang, and fails the test instead of stalling it.
pub const HANG_S: u64 = 60;

/// `f()`, run on a thread of its own; panics naming `what` if it has not returned within
/// [`HANG_S`] seconds (the thread is left behind: it is blocked, which is the finding).
///
/// # Panics
/// When `f` takes longer than [`HANG_S`], or panics itself.
pub fn or_hang<T: Send + 'static>(what: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    rx.recv_timeout(Duration::from_secs(HANG_S))
        .unwrap_or_else(|_| panic!("{what} blocked for {HANG_S} s"))
}

/// A FIFO at `path`, made with `mkfifo(1)`.
///
/// # Panics
/// When it cannot be made.
pub fn mkfifo(path: &Path) -> PathBuf {
    let status = std::process::Command::new("mkfifo")
        .arg(path)
        .status()
        .unwrap_or_else(|e| panic!("running mkfifo: {e}"));
    assert!(status.success(), "mkfifo {} failed", path.display());
    path.to_path_buf()
}

/// Appends `v` as a protobuf varint.
pub fn varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// Appends field `number` holding `payload`, length-delimited.
pub fn len_field(out: &mut Vec<u8>, number: u32, payload: &[u8]) {
    varint(out, (u64::from(number) << 3) | 2);
    varint(out, payload.len() as u64);
    out.extend_from_slice(payload);
}
