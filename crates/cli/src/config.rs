//! The effective configuration: defaults, then `masp.toml` (`[defaults]`), then the
//! environment (`MASP_*`), then flags — each later one wins — and `masp config show`, which
//! prints every value with where it came from.
//!
//! ```toml
//! [defaults]
//! budget = "4GiB"          # MASP_BUDGET, --budget
//! isolation = "process"    # MASP_ISOLATION, --isolation
//! threads = 2              # MASP_THREADS, --threads
//! max_resident = 1         # MASP_MAX_RESIDENT, --max-resident
//! format = "rttm"          # MASP_FORMAT, --format (masp vad and masp diarize)
//!
//! [[model]]                # the models, see the manifest format
//! ```

use std::path::{Path, PathBuf};

use anyhow::Context;
use masp_budget::Bytes;
use masp_model_registry::manifest::Isolation;
use serde::Deserialize;

use crate::flags::Common;
use crate::setting::{CountCheck, env_var, positive, threads};
use crate::setting::{Setting, Source};

/// The `[defaults]` table.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileDefaults {
    budget: Option<String>,
    isolation: Option<String>,
    threads: Option<usize>,
    max_resident: Option<usize>,
    format: Option<String>,
}

/// The effective settings of a command.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The configuration file, if any (`--config`/`--manifest`, else `./masp.toml`).
    pub file: Option<PathBuf>,
    /// The file's tables other than `[defaults]` — its `[[model]]` entries, for the model
    /// registry (`context::registry`): the file is read once, here.
    pub models: Option<toml::Table>,
    /// `None`: the budget crate's default (16 GiB), still capped by the machine.
    pub budget: Setting<Option<Bytes>>,
    pub isolation: Setting<Isolation>,
    pub threads: Setting<usize>,
    pub max_resident: Setting<usize>,
    /// The default output format's name, when configured (each command checks it).
    pub format: Setting<Option<String>>,
}

impl Settings {
    /// Resolve from `common`'s flags, the environment and the configuration file.
    ///
    /// # Errors
    /// An unreadable or invalid file, an invalid environment value (each names its source).
    pub fn resolve(common: &Common) -> anyhow::Result<Self> {
        Self::resolve_with(common, None, &env_var)
    }

    /// [`Settings::resolve`] for `masp run`/`plan`, whose pipeline file may set the isolation
    /// (above masp.toml, below the environment and flags).
    ///
    /// # Errors
    /// As [`Settings::resolve`].
    pub fn resolve_for_pipeline(
        common: &Common,
        isolation: Option<Isolation>,
        pipeline: &Path,
    ) -> anyhow::Result<Self> {
        let layer = isolation.map(|i| (i, pipeline.to_path_buf()));
        Self::resolve_with(common, layer, &env_var)
    }

    fn resolve_with(
        common: &Common,
        pipeline: Option<(Isolation, PathBuf)>,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> anyhow::Result<Self> {
        let file = match &common.manifest {
            Some(path) => Some(path.clone()),
            None => Some(PathBuf::from("masp.toml")).filter(|p| p.is_file()),
        };
        let (defaults, models) = match &file {
            Some(path) => {
                let (defaults, models) = read_config(path)?;
                (defaults, Some(models))
            }
            None => (FileDefaults::default(), None),
        };
        let from_file = || Source::File(file.clone().unwrap_or_default());
        let mut s = Settings {
            file: file.clone(),
            models,
            budget: Setting::default(None),
            isolation: Setting::default(Isolation::InProcess),
            threads: Setting::default(1),
            max_resident: Setting::default(1),
            format: Setting::default(None),
        };
        let bad_file = |key: &str, e: &dyn std::fmt::Display| {
            anyhow::anyhow!(
                "{}: defaults.{key}: {e}",
                file.as_deref().unwrap_or(Path::new("masp.toml")).display()
            )
        };
        // The file.
        if let Some(text) = &defaults.budget {
            let b = text.parse::<Bytes>().map_err(|e| bad_file("budget", &e))?;
            s.budget.over(Some(Some(b)), from_file());
        }
        if let Some(text) = &defaults.isolation {
            let i = text
                .parse::<Isolation>()
                .map_err(|e| bad_file("isolation", &e))?;
            s.isolation.over(Some(i), from_file());
        }
        if let Some(n) = defaults.threads {
            s.threads.over(
                Some(threads("threads", n).map_err(|e| bad_file("threads", &e))?),
                from_file(),
            );
        }
        if let Some(n) = defaults.max_resident {
            s.max_resident.over(
                Some(positive("max_resident", n).map_err(|e| bad_file("max_resident", &e))?),
                from_file(),
            );
        }
        s.format.over(defaults.format.map(Some), from_file());
        // The pipeline file.
        if let Some((isolation, path)) = pipeline {
            s.isolation.over(Some(isolation), Source::Pipeline(path));
        }
        // The environment.
        let bad_env =
            |name: &str, v: &str, e: &dyn std::fmt::Display| anyhow::anyhow!("{name}={v:?}: {e}");
        if let Some(v) = env("MASP_BUDGET") {
            let b = v
                .parse::<Bytes>()
                .map_err(|e| bad_env("MASP_BUDGET", &v, &e))?;
            s.budget.over(Some(Some(b)), Source::Env("MASP_BUDGET"));
        }
        if let Some(v) = env("MASP_ISOLATION") {
            let i = v
                .parse::<Isolation>()
                .map_err(|e| bad_env("MASP_ISOLATION", &v, &e))?;
            s.isolation.over(Some(i), Source::Env("MASP_ISOLATION"));
        }
        let checks: [(&str, &mut Setting<usize>, CountCheck); 2] = [
            ("MASP_THREADS", &mut s.threads, threads),
            ("MASP_MAX_RESIDENT", &mut s.max_resident, positive),
        ];
        for (name, setting, check) in checks {
            if let Some(v) = env(name) {
                let n = v
                    .trim()
                    .parse::<usize>()
                    .map_err(|e| bad_env(name, &v, &e))
                    .and_then(|n| check(name, n).map_err(|e| bad_env(name, &v, &e)))?;
                setting.over(Some(n), Source::Env(name));
            }
        }
        if let Some(v) = env("MASP_FORMAT") {
            s.format.over(Some(Some(v)), Source::Env("MASP_FORMAT"));
        }
        // The flags.
        s.budget
            .over(common.budget.map(Some), Source::Flag("--budget"));
        s.isolation
            .over(common.isolation, Source::Flag("--isolation"));
        if let Some(n) = common.threads {
            s.threads
                .over(Some(threads("--threads", n)?), Source::Flag("--threads"));
        }
        if let Some(n) = common.max_resident {
            s.max_resident.over(
                Some(positive("--max-resident", n)?),
                Source::Flag("--max-resident"),
            );
        }
        Ok(s)
    }

    /// The output format for a command: its flag, else the configured one (which must be one
    /// of the command's), else its default.
    ///
    /// # Errors
    /// A configured format the command does not have.
    pub fn format<F: clap::ValueEnum + Clone>(
        &self,
        command: &str,
        flag: Option<F>,
        default: F,
    ) -> anyhow::Result<F> {
        if let Some(f) = flag {
            return Ok(f);
        }
        match &self.format.value {
            None => Ok(default),
            Some(name) => F::from_str(name, true).map_err(|_| {
                anyhow::anyhow!(
                    "{}: format {name:?} is not a format of masp {command} (see masp {command} \
                     --help)",
                    self.format.source
                )
            }),
        }
    }
}

#[cfg(test)]
impl Settings {
    fn resolve_with_env(
        common: &Common,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> anyhow::Result<Self> {
        Self::resolve_with(common, None, env)
    }
}

/// The configuration file's `[defaults]`, and the rest of it (the models) for the registry.
fn read_config(path: &Path) -> anyhow::Result<(FileDefaults, toml::Table)> {
    // Through the one open of files from outside: a FIFO or a device named as the config is
    // refused at once instead of blocking, and a huge file is not read whole.
    let bytes = masp_model_registry::file::read_regular(
        path,
        masp_model_registry::file::Links::Follow,
        masp_model_registry::manifest::MAX_MANIFEST_BYTES,
    )
    .with_context(|| format!("reading {}", path.display()))?;
    let text = String::from_utf8(bytes)
        .map_err(|_| anyhow::anyhow!("reading {}: not UTF-8 text", path.display()))?;
    let mut table: toml::Table =
        toml::from_str(&text).with_context(|| format!("invalid {}", path.display()))?;
    let defaults = match table.remove("defaults") {
        Some(value) => value
            .try_into()
            .with_context(|| format!("invalid {}: [defaults]", path.display()))?,
        None => FileDefaults::default(),
    };
    Ok((defaults, table))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use clap::Parser;

    use super::*;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        common: Common,
    }

    fn common(args: &[&str]) -> Common {
        Cli::try_parse_from(std::iter::once("masp").chain(args.iter().copied()))
            .unwrap()
            .common
    }

    #[test]
    fn flags_beat_the_environment_which_beats_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("masp.toml");
        std::fs::write(
            &file,
            "[defaults]\nbudget = \"3GiB\"\nthreads = 3\nisolation = \"process\"\nformat = \"rttm\"\n",
        )
        .unwrap();
        let f = file.to_str().unwrap();
        let no_env = |_: &str| None;
        let s = Settings::resolve_with_env(&common(&["--config", f]), &no_env).unwrap();
        assert_eq!(s.budget.value, Some(Bytes::from_gib(3)));
        assert_eq!(s.budget.source, Source::File(file.clone()));
        assert_eq!(
            (s.threads.value, s.isolation.value),
            (3, Isolation::Process)
        );
        assert_eq!(s.max_resident.source, Source::Default);

        let env = |name: &str| (name == "MASP_THREADS").then(|| "5".to_owned());
        let s = Settings::resolve_with_env(&common(&["--config", f]), &env).unwrap();
        assert_eq!(
            (s.threads.value, s.threads.source),
            (5, Source::Env("MASP_THREADS"))
        );

        let s =
            Settings::resolve_with_env(&common(&["--config", f, "--threads", "7"]), &env).unwrap();
        assert_eq!(
            (s.threads.value, s.threads.source.clone()),
            (7, Source::Flag("--threads"))
        );

        let fmt: masp_run::format::SegmentFormat = s
            .format("vad", None, masp_run::format::SegmentFormat::Json)
            .unwrap();
        assert_eq!(fmt, masp_run::format::SegmentFormat::Rttm);
        std::fs::write(&file, "[defaults]\nformat = \"npy\"\n").unwrap();
        let s = Settings::resolve_with_env(&common(&["--config", f]), &no_env).unwrap();
        let err = s
            .format("vad", None, masp_run::format::SegmentFormat::Json)
            .unwrap_err()
            .to_string();
        assert!(err.contains("not a format of masp vad"), "{err}");
    }

    #[test]
    fn a_pipeline_file_sits_between_masp_toml_and_the_environment() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("masp.toml");
        std::fs::write(&file, "[defaults]\nisolation = \"in-process\"\n").unwrap();
        let c = common(&["--config", file.to_str().unwrap()]);
        let pipeline = dir.path().join("p.toml");
        let layer = Some((Isolation::Process, pipeline.clone()));
        let s = Settings::resolve_with(&c, layer.clone(), &|_| None).unwrap();
        assert_eq!(s.isolation.value, Isolation::Process);
        assert_eq!(s.isolation.source, Source::Pipeline(pipeline));
        let env = |name: &str| (name == "MASP_ISOLATION").then(|| "in-process".to_owned());
        let s = Settings::resolve_with(&c, layer, &env).unwrap();
        assert_eq!(
            (s.isolation.value, s.isolation.source),
            (Isolation::InProcess, Source::Env("MASP_ISOLATION"))
        );
    }

    #[test]
    fn bad_values_name_their_source() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("masp.toml");
        std::fs::write(&file, "[defaults]\nthreads = 0\n").unwrap();
        let err =
            Settings::resolve_with_env(&common(&["--config", file.to_str().unwrap()]), &|_| None)
                .unwrap_err()
                .to_string();
        assert!(err.contains("defaults.threads"), "{err}");
        std::fs::write(&file, "[defaults]\nbudgett = \"1GiB\"\n").unwrap();
        assert!(
            Settings::resolve_with_env(&common(&["--config", file.to_str().unwrap()]), &|_| None)
                .is_err()
        );
        let env = |name: &str| (name == "MASP_ISOLATION").then(|| "vm".to_owned());
        let err = Settings::resolve_with_env(&common(&[]), &env)
            .unwrap_err()
            .to_string();
        assert!(err.contains("MASP_ISOLATION"), "{err}");
    }
}
