//! Names that become paths, and paths that must stay inside a directory: the one place both
//! are checked.
//!
//! A model's name, a pipeline stage's name and an input's result name all end up as one
//! component of a path masp writes (`<out>/<stage>/<result>.json`). [`check_component`] is the
//! rule for all of them. Files a manifest or a model points at (model files, ONNX external
//! data) are checked with [`confine`] and [`is_inside`], which compare real paths, so a
//! symbolic link cannot lead out of the directory either.

use std::path::{Component, Path, PathBuf};

/// The longest name, in bytes, that may become one path component: file systems allow 255,
/// and masp appends suffixes such as `.embeddings.npy` or `.tmp-<pid>-<n>`.
pub const MAX_COMPONENT_BYTES: usize = 200;

/// Why a name cannot be one path component.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum NameError {
    /// The empty string.
    #[error("is empty")]
    Empty,
    /// Longer than [`MAX_COMPONENT_BYTES`].
    #[error("is {bytes} bytes long (at most {limit_bytes})")]
    TooLong {
        /// Its length.
        bytes: usize,
        /// The limit.
        limit_bytes: usize,
    },
    /// Starts with `.`: covers `.`, `..` and hidden files, which directory walks skip.
    #[error("starts with a dot")]
    LeadingDot,
    /// Holds `/`, `\`, NUL or another control character.
    #[error("holds a path separator or a control character")]
    Separator,
}

/// Checks that `name` can be one component of a path: not empty, at most
/// [`MAX_COMPONENT_BYTES`], no leading dot, no separator or control character. Unicode is kept.
///
/// # Errors
/// The [`NameError`] that says which rule it breaks.
///
/// # Examples
///
/// ```
/// use masp_model_registry::path::{NameError, check_component};
///
/// assert!(check_component("silero-vad").is_ok());
/// assert!(check_component("Grüße, Welt").is_ok());
/// assert_eq!(check_component(".."), Err(NameError::LeadingDot));
/// assert_eq!(check_component("a/b"), Err(NameError::Separator));
/// ```
pub fn check_component(name: &str) -> Result<(), NameError> {
    if name.is_empty() {
        return Err(NameError::Empty);
    }
    if name.len() > MAX_COMPONENT_BYTES {
        return Err(NameError::TooLong {
            bytes: name.len(),
            limit_bytes: MAX_COMPONENT_BYTES,
        });
    }
    if name.starts_with('.') {
        return Err(NameError::LeadingDot);
    }
    if name
        .chars()
        .any(|c| c == '/' || c == '\\' || c.is_control())
    {
        return Err(NameError::Separator);
    }
    Ok(())
}

/// The directory holding `file`: its parent, or `.` for a bare file name (whose parent is the
/// empty path, which cannot be resolved).
///
/// # Examples
///
/// ```
/// use std::path::Path;
/// use masp_model_registry::path::dir_of;
///
/// assert_eq!(dir_of(Path::new("masp.toml")), Path::new("."));
/// assert_eq!(dir_of(Path::new("models/m.onnx")), Path::new("models"));
/// ```
pub fn dir_of(file: &Path) -> &Path {
    match file.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

/// `relative` joined to `base`, or `None` when it leaves `base`: an absolute path, `..` past
/// the top, or (for a path that exists) a symbolic link whose target is outside `base`.
///
/// # Examples
///
/// ```
/// use std::path::Path;
/// use masp_model_registry::path::confine;
///
/// assert!(confine(Path::new("."), Path::new("models/m.onnx")).is_some());
/// assert!(confine(Path::new("."), Path::new("../m.onnx")).is_none());
/// assert!(confine(Path::new("."), Path::new("/etc/passwd")).is_none());
/// ```
pub fn confine(base: &Path, relative: &Path) -> Option<PathBuf> {
    let mut depth = 0usize;
    for component in relative.components() {
        match component {
            Component::Normal(_) => depth += 1,
            Component::CurDir => {}
            Component::ParentDir => depth = depth.checked_sub(1)?,
            Component::RootDir | Component::Prefix(_) => return None,
        }
    }
    let joined = base.join(relative);
    is_inside(base, &joined).then_some(joined)
}

/// Whether `path`, with every symbolic link resolved, is inside `base` (resolved too). A path
/// that does not exist yet is judged by its nearest existing ancestor, so a missing file is
/// reported later, where it is opened, naming the path.
pub fn is_inside(base: &Path, path: &Path) -> bool {
    let Ok(real_base) = base.canonicalize() else {
        // A base that does not exist holds nothing: nothing under it can be opened either.
        return true;
    };
    let mut probe = path;
    let mut rest = Vec::new();
    loop {
        match probe.canonicalize() {
            Ok(real) => {
                // Below the existing ancestor nothing can be a link yet: what is left must not
                // climb above it (judged conservatively), and the ancestor decides.
                let mut depth = 0usize;
                let stays = rest.iter().rev().all(|c: &&std::ffi::OsStr| {
                    if *c == ".." {
                        depth.checked_sub(1).map(|d| depth = d).is_some()
                    } else {
                        depth += usize::from(*c != ".");
                        true
                    }
                });
                return stays && real.starts_with(&real_base);
            }
            Err(_) => {
                let last = probe.components().next_back();
                match (probe.parent(), last) {
                    (Some(_), Some(Component::Normal(name))) => rest.push(name),
                    (Some(_), Some(Component::ParentDir)) => rest.push(std::ffi::OsStr::new("..")),
                    (Some(_), Some(Component::CurDir)) => {}
                    _ => return false,
                }
                probe = match probe.parent() {
                    Some(parent) if !parent.as_os_str().is_empty() => parent,
                    Some(_) => Path::new("."),
                    None => return false,
                };
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn components_follow_every_rule() {
        for good in ["a", "silero-vad", "x y", "日本語", "a.b.c", "-"] {
            assert_eq!(check_component(good), Ok(()), "{good}");
        }
        let long = "a".repeat(MAX_COMPONENT_BYTES + 1);
        for (bad, err) in [
            ("", NameError::Empty),
            (".", NameError::LeadingDot),
            ("..", NameError::LeadingDot),
            (".hidden", NameError::LeadingDot),
            ("a/b", NameError::Separator),
            ("../x", NameError::LeadingDot),
            ("a\\b", NameError::Separator),
            ("a\0b", NameError::Separator),
            ("a\nb", NameError::Separator),
        ] {
            assert_eq!(check_component(bad), Err(err), "{bad:?}");
        }
        assert!(matches!(
            check_component(&long),
            Err(NameError::TooLong { .. })
        ));
        assert_eq!(check_component(&"ü".repeat(100)), Ok(()));
    }

    #[test]
    fn symlinks_out_of_the_base_are_not_inside() {
        let outer = tempfile::tempdir().unwrap();
        let base = outer.path().join("base");
        std::fs::create_dir(&base).unwrap();
        std::fs::write(outer.path().join("secret"), b"x").unwrap();
        std::fs::write(base.join("real"), b"x").unwrap();
        std::os::unix::fs::symlink("../secret", base.join("out")).unwrap();
        std::os::unix::fs::symlink("real", base.join("in")).unwrap();
        std::os::unix::fs::symlink("..", base.join("up")).unwrap();
        assert!(confine(&base, Path::new("real")).is_some());
        assert!(confine(&base, Path::new("in")).is_some());
        assert!(confine(&base, Path::new("not-yet")).is_some());
        assert!(confine(&base, Path::new("out")).is_none());
        assert!(confine(&base, Path::new("up/secret")).is_none());
        assert!(confine(&base, Path::new("up/not-yet")).is_none());
        assert!(confine(&base, Path::new("a/../../secret")).is_none());
    }
}
