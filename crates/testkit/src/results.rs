//! Finding a run's result files by their input's stem, whatever the hash in their names.
//!
//! Results are named `<stem>-<hash of the input's path>.<suffix>` (`masp_run::name`), so a
//! test that knows only the input's file name looks them up here, and a test that compares two
//! runs over copies of the same inputs in different folders compares names without the hash.

use std::path::{Path, PathBuf};

use masp_run::name::split_result_file_name;

/// The files in `dir` that are results of an input with stem `stem` and end in `.<suffix>`.
/// A missing directory has none.
pub fn results_of(dir: &Path, stem: &str, suffix: &str) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut found: Vec<PathBuf> = entries
        .flatten()
        .map(|e| e.path())
        .filter(|path| {
            let name = path.file_name().unwrap_or_default().to_string_lossy();
            split_result_file_name(&name)
                .is_some_and(|(s, _, rest)| s == stem && rest.strip_prefix('.') == Some(suffix))
        })
        .collect();
    found.sort();
    found
}

/// The one result file of the input with stem `stem` in `dir`.
///
/// # Panics
/// Unless there is exactly one (this is for tests: the panic is the failure, with the list).
pub fn result_file(dir: &Path, stem: &str, suffix: &str) -> PathBuf {
    let mut found = results_of(dir, stem, suffix);
    assert_eq!(
        found.len(),
        1,
        "{stem}-<hash>.{suffix} in {}: {found:?}",
        dir.display()
    );
    found.remove(0)
}

/// `path` with the hash taken out of every component named after a result
/// (`out/vad/x-<hash>.json` → `out/vad/x.json`).
pub fn without_hash(path: &Path) -> PathBuf {
    path.components()
        .map(|c| {
            let name = c.as_os_str().to_string_lossy();
            match split_result_file_name(&name) {
                Some((stem, _, rest)) => format!("{stem}{rest}"),
                None => name.into_owned(),
            }
        })
        .collect()
}

/// `text` with every result-name hash taken out (`"out/x-<16 hex>.npy"` → `"out/x.npy"`): for
/// comparing documents that name result files of inputs read from different folders.
pub fn without_hashes(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    while i < bytes.len() {
        let hash = bytes.get(i + 1..i + 17);
        let after = bytes.get(i + 17).copied();
        let is_hash = bytes[i] == b'-'
            && hash.is_some_and(|h| {
                h.iter()
                    .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(b))
            })
            && !after.is_some_and(|b| b.is_ascii_alphanumeric());
        if is_hash {
            i += 17;
            continue;
        }
        let ch = text[i..].chars().next().unwrap_or_default();
        out.push(ch);
        i += ch.len_utf8().max(1);
    }
    out
}
