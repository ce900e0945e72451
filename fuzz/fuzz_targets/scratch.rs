//! A scratch directory per fuzzing process: inputs are written to files because masp's entry
//! points take paths, as users give them.

use std::path::PathBuf;
use std::sync::OnceLock;

pub fn dir() -> PathBuf {
    static DIR: OnceLock<tempfile::TempDir> = OnceLock::new();
    DIR.get_or_init(|| tempfile::tempdir().expect("a temporary directory")).path().to_path_buf()
}
