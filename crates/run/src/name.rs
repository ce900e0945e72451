//! Result names: the one function that names what a run writes for an input.
//!
//! Every command names an input's results the same way: the input's file stem, then `-` and 16
//! hex digits of the sha256 of its absolute path (symbolic links resolved), e.g.
//! `talk-3f2a9c0d1e4b5a6c`. So two inputs with one stem in different folders never share a
//! result, a result's name does not depend on which other files are in the batch (shards and
//! resumes agree), and the name stays readable. Stems keep their Unicode; only what cannot be
//! in one file-name component (separators, control characters, a leading dot) is replaced.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use masp_orchestrator::task::ResultFiles;
use sha2::{Digest, Sha256};

use crate::{Error, Result};

/// The longest stem kept, in bytes (cut at a character boundary): with the hash and the
/// longest suffix masp adds, a name stays under the usual 255-byte limit.
pub const MAX_STEM_BYTES: usize = 120;

/// Hex digits of the path hash in a name (64 bits).
const HASH_HEX_DIGITS: usize = 16;

/// The name of `input`'s results.
///
/// # Examples
///
/// ```
/// use std::path::Path;
/// use masp_run::name::result_name;
///
/// let a = result_name(Path::new("a/x.wav"));
/// let b = result_name(Path::new("b/x.wav"));
/// assert!(a.starts_with("x-") && b.starts_with("x-"));
/// assert_ne!(a, b);
/// assert!(result_name(Path::new("d/Grüße, Welt.flac")).starts_with("Grüße, Welt-"));
/// ```
pub fn result_name(input: &Path) -> String {
    let identity = identity(input);
    let digest = Sha256::digest(identity.as_os_str().as_encoded_bytes());
    let hash = hex::encode(&digest[..HASH_HEX_DIGITS / 2]);
    format!("{}-{hash}", stem(input))
}

/// The stem, the hash and what follows of a file named after a result: `talk-<hash>.json`
/// gives `("talk", "<hash>", ".json")`. `None` when the name holds no result name.
///
/// # Examples
///
/// ```
/// use masp_run::name::split_result_file_name;
///
/// let (stem, hash, rest) = split_result_file_name("a-b-0123456789abcdef.embeddings.npy").unwrap();
/// assert_eq!((stem, hash, rest), ("a-b", "0123456789abcdef", ".embeddings.npy"));
/// assert!(split_result_file_name("journal.jsonl").is_none());
/// ```
pub fn split_result_file_name(file_name: &str) -> Option<(&str, &str, &str)> {
    let bytes = file_name.as_bytes();
    (0..bytes.len()).rev().find_map(|dash| {
        let hash = bytes.get(dash + 1..dash + 1 + HASH_HEX_DIGITS)?;
        let after = dash + 1 + HASH_HEX_DIGITS;
        let ends = after == bytes.len() || bytes[after] == b'.';
        (bytes[dash] == b'-'
            && dash > 0
            && ends
            && hash
                .iter()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(b)))
        .then(|| {
            (
                &file_name[..dash],
                &file_name[dash + 1..after],
                &file_name[after..],
            )
        })
    })
}

/// Where `input`'s result files go in `dir`: named [`result_name`]`(input)`.
///
/// # Errors
/// None in practice ([`result_name`] always makes a valid name); the check is
/// [`ResultFiles::new`]'s, kept so no path skips it.
pub fn result_files(dir: &Path, input: &Path) -> Result<ResultFiles> {
    Ok(ResultFiles::new(dir, &result_name(input))?)
}

/// The absolute path with symbolic links resolved, or as absolute as it can be made when the
/// file does not exist (it will fail when it is read, but its name stays stable).
fn identity(input: &Path) -> PathBuf {
    std::fs::canonicalize(input)
        .or_else(|_| std::path::absolute(input))
        .unwrap_or_else(|_| input.to_path_buf())
}

/// The file stem made one safe file-name component: separators and control characters become
/// `_`, a leading dot becomes `_`, an empty stem becomes `input`, and it is cut to
/// [`MAX_STEM_BYTES`].
fn stem(input: &Path) -> String {
    let raw = input
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    let mut out = String::with_capacity(raw.len().min(MAX_STEM_BYTES));
    for (i, c) in raw.chars().enumerate() {
        let c = if c == '/' || c == '\\' || c.is_control() || (i == 0 && c == '.') {
            '_'
        } else {
            c
        };
        if out.len() + c.len_utf8() > MAX_STEM_BYTES {
            break;
        }
        out.push(c);
    }
    if out.is_empty() {
        out.push_str("input");
    }
    out
}

/// The result names of a batch's inputs, in order; an input given twice (the same file by
/// two paths, too) is an error, as is any collision of names, before anything is written.
///
/// # Errors
/// [`Error::InvalidParameter`] naming both inputs.
///
/// # Examples
///
/// ```
/// use std::path::PathBuf;
/// use masp_run::name::result_names;
///
/// let names = result_names(&[PathBuf::from("a/x.wav"), PathBuf::from("b/x.wav")])?;
/// assert_ne!(names[0], names[1]);
/// assert!(result_names(&[PathBuf::from("a/x.wav"), PathBuf::from("a/./x.wav")]).is_err());
/// # Ok::<(), masp_run::Error>(())
/// ```
pub fn result_names(inputs: &[PathBuf]) -> Result<Vec<String>> {
    let mut seen: HashMap<String, &Path> = HashMap::with_capacity(inputs.len());
    let mut names = Vec::with_capacity(inputs.len());
    for input in inputs {
        let name = result_name(input);
        if let Some(first) = seen.insert(name.clone(), input) {
            return Err(Error::InvalidParameter {
                name: "inputs",
                reason: format!(
                    "{} and {} are the same file (both would be written as {name})",
                    first.display(),
                    input.display()
                ),
            });
        }
        names.push(name);
    }
    Ok(names)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stems_are_one_safe_component_and_bounded() {
        assert_eq!(stem(Path::new("a/.hidden.wav")), "_hidden");
        assert_eq!(stem(Path::new("a/b\nc.wav")), "b_c");
        assert_eq!(stem(Path::new("/")), "input");
        let long = "ü".repeat(200) + ".wav";
        let s = stem(Path::new(&long));
        assert!(s.len() <= MAX_STEM_BYTES && s.chars().all(|c| c == 'ü'));
    }

    #[test]
    fn names_are_valid_result_names() {
        for p in [
            "a/x.wav",
            "../../x",
            "Grüße.flac",
            ".x",
            "a b.c.d",
            "ß/\u{7f}.wav",
        ] {
            let name = result_name(Path::new(p));
            masp_orchestrator::task::ResultFiles::new("out", &name)
                .unwrap_or_else(|e| panic!("{p}: {e}"));
        }
    }
}
