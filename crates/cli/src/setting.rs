//! One setting: its value and where it came from (`masp config show` prints both), and the
//! checks a value passes whichever source it came from.

use std::path::PathBuf;

use anyhow::bail;
use masp_orchestrator::runtime::MAX_INTRA_OP_THREADS;

/// Where a value came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// masp's default.
    Default,
    /// The `[defaults]` table of this file.
    File(PathBuf),
    /// This pipeline file.
    Pipeline(PathBuf),
    /// This environment variable.
    Env(&'static str),
    /// A command-line flag.
    Flag(&'static str),
}

impl std::fmt::Display for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Source::Default => f.write_str("default"),
            Source::File(p) => write!(f, "{} [defaults]", p.display()),
            Source::Pipeline(p) => write!(f, "pipeline {}", p.display()),
            Source::Env(v) => write!(f, "environment {v}"),
            Source::Flag(flag) => write!(f, "flag {flag}"),
        }
    }
}

/// A value and its source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Setting<T> {
    pub value: T,
    pub source: Source,
}

impl<T> Setting<T> {
    pub fn default(value: T) -> Self {
        Self {
            value,
            source: Source::Default,
        }
    }

    /// Replace the value when `next` has one.
    pub fn over(&mut self, next: Option<T>, source: Source) {
        if let Some(value) = next {
            *self = Setting { value, source };
        }
    }
}

pub fn positive(name: &str, n: usize) -> anyhow::Result<usize> {
    if n == 0 {
        bail!("{name} must be at least 1");
    }
    Ok(n)
}

/// How a count from any source is checked: its source's name and the value.
pub type CountCheck = fn(&str, usize) -> anyhow::Result<usize>;

/// A thread count from any source: 1 to [`MAX_INTRA_OP_THREADS`] (each thread costs memory no
/// estimate counts; see there).
pub fn threads(name: &str, n: usize) -> anyhow::Result<usize> {
    let n = positive(name, n)?;
    if n > MAX_INTRA_OP_THREADS {
        bail!(
            "{name} {n} is over the limit of {MAX_INTRA_OP_THREADS} threads per model (this \
             machine has {} cores)",
            std::thread::available_parallelism().map_or(1, std::num::NonZero::get)
        );
    }
    Ok(n)
}

pub fn env_var(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}
