//! Model manifests: which models exist, where their files are, and how masp should run them.
//!
//! The built-in models come from the pinned assets ([`crate::assets`]). Users add their own in a
//! TOML manifest (`masp.toml` or `--manifest FILE`):
//!
//! ```toml
//! [[model]]
//! name = "my-denoiser"
//! kind = "generic"              # vad | speaker-embedding | generic
//! path = "models/denoiser.onnx" # relative to this file's directory, and must stay inside it
//! sha256 = "…"                  # optional; verified before every load
//! sample_rate_hz = 16000
//! memory = "1.5GiB"             # optional: overrides the estimated load peak
//! isolation = "process"         # optional: in-process | process (its own worker process)
//!
//! [model.generic]               # how the generic adapter feeds the model
//! input = "audio"               # name of the waveform input, shaped [1, samples]
//! window_ms = 1000              # optional; absent = whole chunks of dynamic length
//! hop_ms = 1000                 # optional; default = window_ms
//! outputs = ["mask"]            # outputs written as .npy; default: all
//! ```
//!
//! A manifest may come from someone else, so its paths are confined: a model path must be
//! relative and, after resolving `..` and symbolic links, lie inside the manifest's directory.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use masp_budget::Bytes;
use serde::Deserialize;

use crate::assets::{self, Asset};
use crate::path::confine;

/// Largest manifest file read: 1 MiB. A manifest lists a few models in a few KiB; a path
/// that names something huge (a disk image, a log) is refused before it is read whole.
pub const MAX_MANIFEST_BYTES: u64 = 1 << 20;

/// What a model is for; decides which adapter runs it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ModelKind {
    /// Voice activity detection with silero's interface (`input`, `state`, `sr`).
    Vad,
    /// Speaker embeddings from log-mel windows (`mel_window [batch, 80, 40]`).
    SpeakerEmbedding,
    /// Any ONNX audio model: waveform windows in, output tensors out (`.npy`).
    Generic,
}

impl ModelKind {
    /// The name used in manifests and messages.
    pub fn as_str(self) -> &'static str {
        match self {
            ModelKind::Vad => "vad",
            ModelKind::SpeakerEmbedding => "speaker-embedding",
            ModelKind::Generic => "generic",
        }
    }
}

impl std::fmt::Display for ModelKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where a model's file comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ModelSource {
    /// A pinned asset fetched by `cargo xtask setup`.
    Asset(&'static Asset),
    /// A user's file (already resolved and confined to its manifest's directory).
    File(PathBuf),
}

/// The longest window the generic adapter feeds, in samples at the model's rate: 4 Mi samples,
/// 16 MiB of `f32` (262 s at 16 kHz, 10.9 s at 384 kHz). The adapter holds a window and a hop
/// at once (at most 32 MiB), a cost no estimate of the model's own includes, so it is capped
/// here rather than left to `window_ms` (a `u32`: up to 4 294 967 295 ms, 256 GiB at 16 kHz).
pub const MAX_WINDOW_SAMPLES: u64 = 1 << 22;

/// How the generic adapter feeds a model.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GenericSpec {
    /// Name of the waveform input, shaped `[1, samples]`.
    pub input: String,
    /// Window length in ms at the model's rate; `None` = whole chunks of dynamic length.
    pub window_ms: Option<u32>,
    /// Hop between windows in ms; default = `window_ms` (no overlap).
    pub hop_ms: Option<u32>,
    /// Outputs to keep; empty = all.
    #[serde(default)]
    pub outputs: Vec<String>,
}

impl GenericSpec {
    /// Window and hop in samples at `sample_rate_hz` (each at least 1; the hop defaults to the
    /// window), or `None` when whole chunks of dynamic length are fed (`window_ms` unset).
    pub fn window_and_hop(&self, sample_rate_hz: u32) -> Option<(usize, usize)> {
        let samples = |ms: u32| (u64::from(ms) * u64::from(sample_rate_hz) / 1000).max(1) as usize;
        let window = samples(self.window_ms?);
        Some((window, self.hop_ms.map_or(window, samples)))
    }
}

/// Everything masp knows about one model before loading it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelSpec {
    /// Unique name (`silero-vad`, or the manifest's `name`).
    pub name: String,
    /// Which adapter runs it.
    pub kind: ModelKind,
    /// Where its file is.
    pub source: ModelSource,
    /// Expected sha256 of the file, lowercase hex; verified before every load when present.
    pub sha256: Option<String>,
    /// Sample rate the model expects, in Hz.
    pub sample_rate_hz: u32,
    /// A user's override of the estimated load peak.
    pub memory_override: Option<Bytes>,
    /// Generic-adapter settings (required for `kind = "generic"`).
    pub generic: Option<GenericSpec>,
    /// Where the model runs, when the manifest says; `None` follows the run's setting.
    pub isolation: Option<Isolation>,
    /// Load from a lean copy (weights in a 4096-aligned external-data file, memory-mapped),
    /// written into the cache before the first load and again when the file changes
    /// ([`crate::lean`]). Manifest: `lean = true`. Default false.
    pub lean: bool,
}

/// Where a model runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Isolation {
    /// In the orchestrator's own process (fast; memory comes back as far as the runtime and
    /// the allocator give it back).
    #[default]
    InProcess,
    /// In a worker process of its own, ended on unload (memory comes back with certainty,
    /// a hard memory cap, crashes survived).
    Process,
}

impl std::str::FromStr for Isolation {
    type Err = String;

    /// `in-process` or `process`, as manifests, pipelines, flags and the environment say it.
    fn from_str(text: &str) -> Result<Self, String> {
        match text {
            "in-process" => Ok(Isolation::InProcess),
            "process" => Ok(Isolation::Process),
            other => Err(format!(
                "unknown isolation {other:?}: use in-process or process"
            )),
        }
    }
}

impl Isolation {
    /// The name used in manifests, pipelines and flags.
    pub fn as_str(self) -> &'static str {
        match self {
            Isolation::InProcess => "in-process",
            Isolation::Process => "process",
        }
    }
}

impl std::fmt::Display for Isolation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl ModelSpec {
    /// The model file's path (for an asset: where the cache keeps it).
    ///
    /// # Errors
    /// [`crate::Error::NoHome`] when the asset cache cannot be located.
    pub fn path(&self) -> crate::Result<PathBuf> {
        match &self.source {
            ModelSource::Asset(asset) => asset.path(),
            ModelSource::File(path) => Ok(path.clone()),
        }
    }

    /// The file, checked present and (when a hash is known) verified: hashed the first time in
    /// this process, and again only when the file changed since it last passed
    /// ([`assets::verify_sha256_unchanged`]).
    ///
    /// # Errors
    /// [`crate::Error::AssetMissing`], [`crate::Error::ChecksumMismatch`], [`crate::Error::Io`].
    pub fn verified_path(&self) -> crate::Result<PathBuf> {
        let path = match &self.source {
            ModelSource::Asset(asset) => asset.locate()?,
            ModelSource::File(path) => {
                if !path.is_file() {
                    return Err(crate::Error::AssetMissing {
                        what: format!("model {}", self.name),
                        path: path.clone(),
                        hint: "the manifest's `path`",
                    });
                }
                path.clone()
            }
        };
        if let Some(expected) = &self.sha256 {
            assets::verify_sha256_unchanged(&path, expected)?;
        }
        Ok(path)
    }

    /// Whether the model file's declared interface fits what the manifest says, read from its
    /// metadata without loading it, so a misconfigured model fails before any memory is
    /// reserved. For `generic` models: the waveform input exists, is float, is shaped
    /// `[1, samples]` (symbolic or unknown axes accepted), a fixed sample axis equals the
    /// window (`window_ms` at `sample_rate_hz`), and every listed output exists. Other kinds
    /// are checked by their adapters at load.
    ///
    /// # Errors
    /// The mismatch, as a sentence naming the model's actual interface.
    pub fn check_interface(&self, meta: &crate::onnx::OnnxMetadata) -> Result<(), String> {
        use crate::onnx::{DataType, Dim};
        let Some(generic) = &self.generic else {
            return Ok(());
        };
        let names = |list: &[crate::onnx::TensorInfo]| {
            list.iter().map(|t| t.name.clone()).collect::<Vec<_>>()
        };
        let Some(input) = meta.inputs.iter().find(|t| t.name == generic.input) else {
            return Err(format!(
                "no input named {:?}; the model's inputs are {:?}",
                generic.input,
                names(&meta.inputs)
            ));
        };
        if let Some(missing) = generic
            .outputs
            .iter()
            .find(|o| !meta.outputs.iter().any(|t| &t.name == *o))
        {
            return Err(format!(
                "no output named {missing:?}; the model's outputs are {:?}",
                names(&meta.outputs)
            ));
        }
        if let Some(kind) = input.elem_type
            && kind != DataType::Float
        {
            return Err(format!(
                "input {:?} holds {kind:?}, but the generic adapter feeds float32 samples",
                input.name
            ));
        }
        let Some(dims) = &input.dims else {
            return Ok(());
        };
        let shown = dims
            .iter()
            .map(|d| match d {
                Dim::Fixed(n) => n.to_string(),
                Dim::Symbolic(name) => name.clone(),
                Dim::Unknown => "?".into(),
            })
            .collect::<Vec<_>>()
            .join(", ");
        let [batch, samples] = dims.as_slice() else {
            return Err(format!(
                "input {:?} is shaped [{shown}], but the generic adapter feeds [1, samples]",
                input.name
            ));
        };
        if matches!(batch, Dim::Fixed(n) if *n != 1) {
            return Err(format!(
                "input {:?} is shaped [{shown}]: its first axis must be 1 (one window per call)",
                input.name
            ));
        }
        if let Dim::Fixed(n) = samples {
            let rate = self.sample_rate_hz;
            match (generic.window_ms, generic.window_and_hop(rate)) {
                (Some(ms), Some((window, _))) => {
                    if usize::try_from(*n).ok() != Some(window) {
                        return Err(format!(
                            "input {:?} takes [{shown}], but window_ms = {ms} at {rate} Hz gives \
                             {window} samples",
                            input.name
                        ));
                    }
                }
                _ => {
                    return Err(format!(
                        "input {:?} takes a fixed [{shown}]; set window_ms to its length \
                         ({:.1} ms at {rate} Hz) instead of feeding whole chunks",
                        input.name,
                        *n as f64 * 1000.0 / f64::from(rate.max(1))
                    ));
                }
            }
        }
        Ok(())
    }
}

/// A manifest that cannot be used; names the file and the problem.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ManifestError {
    /// The file cannot be read.
    #[error("cannot read manifest {path}: {source}")]
    Read {
        /// The manifest.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// Not valid TOML, a missing field, an unknown kind…
    #[error("invalid manifest {path}: {reason}")]
    Invalid {
        /// The manifest.
        path: PathBuf,
        /// What the parser said.
        reason: String,
    },
    /// A model entry is inconsistent.
    #[error("manifest {path}: model {model}: {reason}")]
    Model {
        /// The manifest.
        path: PathBuf,
        /// The model's name.
        model: String,
        /// What is wrong.
        reason: String,
    },
    /// A path points outside the manifest's directory.
    #[error(
        "manifest {path}: model {model}: path {target} leaves the manifest's directory \
         (paths must be relative and stay inside it)"
    )]
    PathEscape {
        /// The manifest.
        path: PathBuf,
        /// The model's name.
        model: String,
        /// The offending path as written.
        target: String,
    },
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawManifest {
    #[serde(default, rename = "model")]
    models: Vec<RawModel>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawModel {
    name: String,
    kind: ModelKind,
    path: Option<String>,
    asset: Option<String>,
    sha256: Option<String>,
    sample_rate_hz: Option<u32>,
    memory: Option<String>,
    isolation: Option<Isolation>,
    generic: Option<GenericSpec>,
    lean: Option<bool>,
}

/// The models masp can run: the built-ins plus those of any manifests added.
#[derive(Debug, Clone)]
pub struct Registry {
    models: BTreeMap<String, ModelSpec>,
}

impl Registry {
    /// The built-in models (from pinned assets).
    pub fn builtin() -> Self {
        let mut models = BTreeMap::new();
        for (asset, kind) in [
            (&assets::SILERO_VAD, ModelKind::Vad),
            (&assets::SILERO_VAD_SEQUENCE, ModelKind::Vad),
            (&assets::SPEAKER_EMBEDDER, ModelKind::SpeakerEmbedding),
        ] {
            models.insert(
                asset.id.to_string(),
                ModelSpec {
                    name: asset.id.to_string(),
                    kind,
                    source: ModelSource::Asset(asset),
                    sha256: Some(asset.sha256.to_string()),
                    sample_rate_hz: 16_000,
                    memory_override: None,
                    generic: None,
                    isolation: None,
                    lean: false,
                },
            );
        }
        Self { models }
    }

    /// Add the models of the manifest file at `path`.
    ///
    /// # Errors
    /// [`ManifestError`] naming the file and the problem; the registry is unchanged then.
    pub fn add_manifest(&mut self, path: &Path) -> Result<(), ManifestError> {
        let read = |source| ManifestError::Read {
            path: path.to_path_buf(),
            source,
        };
        let bytes = crate::file::read_regular(path, crate::file::Links::Follow, MAX_MANIFEST_BYTES)
            .map_err(read)?;
        let text = String::from_utf8(bytes).map_err(|_| {
            read(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                "not UTF-8 text",
            ))
        })?;
        let table: toml::Table = toml::from_str(&text).map_err(|e| ManifestError::Invalid {
            path: path.to_path_buf(),
            reason: e.to_string(),
        })?;
        self.add_manifest_table(table, path)
    }

    /// Add the `[[model]]` entries of a manifest its caller has read and parsed already (a
    /// configuration file with tables of its own takes them out first): `path` is where it
    /// was read, for messages and as the directory relative model paths are confined to.
    ///
    /// # Errors
    /// As [`Registry::add_manifest`], but for reading; any table other than `[[model]]` is an
    /// unknown key.
    ///
    /// # Examples
    ///
    /// ```
    /// use masp_model_registry::manifest::Registry;
    ///
    /// let mut registry = Registry::builtin();
    /// let table: toml::Table = toml::from_str("[defaults]\nthreads = 2\n")?;
    /// assert!(registry.add_manifest_table(table, "masp.toml".as_ref()).is_err());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn add_manifest_table(
        &mut self,
        table: toml::Table,
        path: &Path,
    ) -> Result<(), ManifestError> {
        // `masp.toml` has the empty path as its parent, which cannot be resolved: the
        // symbolic-link check would be skipped.
        let base = crate::path::dir_of(path);
        let raw: RawManifest =
            table
                .try_into()
                .map_err(|e: toml::de::Error| ManifestError::Invalid {
                    path: path.to_path_buf(),
                    reason: e.to_string(),
                })?;
        let specs = specs_of(raw, path, base)?;
        for spec in &specs {
            if self.models.contains_key(&spec.name) {
                return Err(ManifestError::Model {
                    path: path.to_path_buf(),
                    model: spec.name.clone(),
                    reason: "a model with this name already exists".into(),
                });
            }
        }
        for spec in specs {
            self.models.insert(spec.name.clone(), spec);
        }
        Ok(())
    }

    /// The model called `name`.
    pub fn get(&self, name: &str) -> Option<&ModelSpec> {
        self.models.get(name)
    }

    /// Every model, by name.
    pub fn models(&self) -> impl Iterator<Item = &ModelSpec> {
        self.models.values()
    }

    /// The names of every model, sorted (for "unknown model; known: …" messages).
    pub fn names(&self) -> Vec<&str> {
        self.models.keys().map(String::as_str).collect()
    }
}

/// The models of a parsed manifest; `base` is the directory relative paths are resolved against.
fn specs_of(raw: RawManifest, path: &Path, base: &Path) -> Result<Vec<ModelSpec>, ManifestError> {
    let mut seen = std::collections::BTreeSet::new();
    let mut specs = Vec::new();
    for model in raw.models {
        let bad = |reason: &str| ManifestError::Model {
            path: path.to_path_buf(),
            model: model.name.clone(),
            reason: reason.to_string(),
        };
        // A name becomes a path component (a stage's directory, a lean copy's name) and a
        // word on the command line.
        if let Err(e) = crate::path::check_component(&model.name) {
            return Err(bad(&format!("name {e}")));
        }
        if model.name.contains(char::is_whitespace) {
            return Err(bad("name holds whitespace"));
        }
        if !seen.insert(model.name.clone()) {
            return Err(bad("defined twice"));
        }
        let source = match (&model.path, &model.asset) {
            (Some(p), None) => ModelSource::File(confine(base, Path::new(p)).ok_or_else(|| {
                ManifestError::PathEscape {
                    path: path.to_path_buf(),
                    model: model.name.clone(),
                    target: p.clone(),
                }
            })?),
            (None, Some(id)) => ModelSource::Asset(
                assets::by_id(id).ok_or_else(|| bad(&format!("unknown asset {id:?}")))?,
            ),
            _ => return Err(bad("exactly one of `path` or `asset` is required")),
        };
        let sha256 = match model.sha256 {
            Some(h) if h.len() == 64 && h.chars().all(|c| c.is_ascii_hexdigit()) => {
                Some(h.to_ascii_lowercase())
            }
            Some(_) => return Err(bad("sha256 must be 64 hex digits")),
            None => None,
        };
        let memory_override = match model.memory {
            Some(text) => Some(
                text.parse::<Bytes>()
                    .map_err(|e| bad(&format!("memory {text:?}: {e}")))?,
            ),
            None => None,
        };
        let sample_rate_hz = model.sample_rate_hz.unwrap_or(16_000);
        if !(1_000..=384_000).contains(&sample_rate_hz) {
            return Err(bad("sample_rate_hz must be between 1000 and 384000"));
        }
        if model.kind == ModelKind::Generic && model.generic.is_none() {
            return Err(bad("kind \"generic\" needs a [model.generic] table"));
        }
        if let Some(g) = &model.generic {
            if g.input.is_empty() {
                return Err(bad("generic.input must name the waveform input"));
            }
            if g.window_ms == Some(0) || g.hop_ms == Some(0) {
                return Err(bad("window_ms and hop_ms must be positive"));
            }
            // Checked in samples, where the allocation is sized: the limit depends on the rate.
            for (name, ms) in [("window_ms", g.window_ms), ("hop_ms", g.hop_ms)] {
                if let Some(ms) = ms {
                    let samples = u64::from(ms) * u64::from(sample_rate_hz) / 1000;
                    if samples > MAX_WINDOW_SAMPLES {
                        return Err(bad(&format!(
                            "{name} = {ms} is {samples} samples at {sample_rate_hz} Hz, over the \
                             limit of {MAX_WINDOW_SAMPLES} ({} ms at this rate)",
                            MAX_WINDOW_SAMPLES * 1000 / u64::from(sample_rate_hz)
                        )));
                    }
                }
            }
            match (g.window_ms, g.hop_ms) {
                (None, Some(_)) => return Err(bad("hop_ms needs window_ms")),
                (Some(w), Some(h)) if h > w => {
                    return Err(bad(
                        "hop_ms must not exceed window_ms (no gaps between windows)",
                    ));
                }
                _ => {}
            }
        }
        specs.push(ModelSpec {
            name: model.name,
            kind: model.kind,
            source,
            sha256,
            sample_rate_hz,
            memory_override,
            generic: model.generic,
            isolation: model.isolation,
            lean: model.lean.unwrap_or(false),
        });
    }
    Ok(specs)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Vec<ModelSpec>, ManifestError> {
        let dir = std::env::temp_dir();
        let path = dir.join("masp.toml");
        let raw: RawManifest = toml::from_str(text).map_err(|e| ManifestError::Invalid {
            path: path.clone(),
            reason: e.to_string(),
        })?;
        specs_of(raw, &path, &dir)
    }

    /// Metadata of a model with one input `x` shaped `dims` and one output `y`.
    fn interface(
        x_type: Option<crate::onnx::DataType>,
        dims: Option<Vec<crate::onnx::Dim>>,
    ) -> crate::onnx::OnnxMetadata {
        use crate::onnx::{OnnxMetadata, TensorInfo};
        let tensor = |name: &str| TensorInfo {
            name: name.into(),
            elem_type: x_type,
            dims: dims.clone(),
        };
        OnnxMetadata {
            path: PathBuf::from("m.onnx"),
            file_bytes: Bytes::new(1),
            ir_version: 8,
            producer_name: String::new(),
            producer_version: String::new(),
            opsets: Vec::new(),
            inputs: vec![tensor("x")],
            outputs: vec![tensor("y")],
            initializer_count: 0,
            embedded_weight_bytes: Bytes::ZERO,
            external_data: Vec::new(),
            external_weight_bytes: Bytes::ZERO,
        }
    }

    fn generic(input: &str, window_ms: Option<u32>, outputs: &[&str]) -> ModelSpec {
        let text = format!(
            "[[model]]\nname = \"g\"\nkind = \"generic\"\npath = \"g.onnx\"\n[model.generic]\ninput = \"{input}\"\n{}outputs = {outputs:?}\n",
            window_ms.map_or(String::new(), |w| format!("window_ms = {w}\n"))
        );
        parse(&text).unwrap().remove(0)
    }

    #[test]
    fn a_generic_model_whose_file_does_not_fit_its_entry_is_named_before_loading() {
        use crate::onnx::{DataType, Dim};
        let float = Some(DataType::Float);
        let fixed = |n| Some(vec![Dim::Fixed(1), Dim::Fixed(n)]);
        // Fits: a fixed window that matches, or a dynamic length.
        assert_eq!(
            generic("x", Some(64), &["y"]).check_interface(&interface(float, fixed(1024))),
            Ok(())
        );
        let dynamic = Some(vec![Dim::Symbolic("batch".into()), Dim::Unknown]);
        assert_eq!(
            generic("x", None, &[]).check_interface(&interface(float, dynamic)),
            Ok(())
        );
        assert_eq!(
            generic("x", None, &[]).check_interface(&interface(None, None)),
            Ok(())
        );
        // Does not fit.
        let cases = [
            (
                generic("audio", Some(64), &[]),
                interface(float, fixed(1024)),
                "no input named \"audio\"; the model's inputs are [\"x\"]",
            ),
            (
                generic("x", Some(64), &["mask"]),
                interface(float, fixed(1024)),
                "no output named \"mask\"; the model's outputs are [\"y\"]",
            ),
            (
                generic("x", Some(64), &[]),
                interface(Some(DataType::Int64), fixed(1024)),
                "input \"x\" holds Int64, but the generic adapter feeds float32 samples",
            ),
            (
                generic("x", Some(64), &[]),
                interface(float, Some(vec![Dim::Fixed(1024)])),
                "input \"x\" is shaped [1024], but the generic adapter feeds [1, samples]",
            ),
            (
                generic("x", Some(64), &[]),
                interface(float, Some(vec![Dim::Fixed(4), Dim::Fixed(1024)])),
                "input \"x\" is shaped [4, 1024]: its first axis must be 1 (one window per call)",
            ),
            (
                generic("x", Some(500), &[]),
                interface(float, fixed(1024)),
                "input \"x\" takes [1, 1024], but window_ms = 500 at 16000 Hz gives 8000 samples",
            ),
            (
                generic("x", None, &[]),
                interface(float, fixed(1000)),
                "input \"x\" takes a fixed [1, 1000]; set window_ms to its length (62.5 ms at 16000 Hz) instead of feeding whole chunks",
            ),
        ];
        for (spec, meta, expected) in cases {
            assert_eq!(spec.check_interface(&meta), Err(expected.to_string()));
        }
    }

    #[test]
    fn a_generic_model_parses() {
        let specs = parse(
            r#"
            [[model]]
            name = "den"
            kind = "generic"
            path = "models/den.onnx"
            memory = "1.5GiB"
            [model.generic]
            input = "audio"
            window_ms = 1000
            "#,
        )
        .unwrap();
        assert_eq!(specs[0].kind, ModelKind::Generic);
        assert_eq!(specs[0].memory_override, Some("1.5GiB".parse().unwrap()));
        assert_eq!(specs[0].generic.as_ref().unwrap().window_ms, Some(1000));
    }

    #[test]
    fn escaping_paths_are_refused() {
        for p in ["../x.onnx", "/etc/passwd", "a/../../x.onnx"] {
            let text = format!("[[model]]\nname = \"m\"\nkind = \"vad\"\npath = \"{p}\"\n");
            let err = parse(&text).unwrap_err();
            assert!(
                matches!(err, ManifestError::PathEscape { .. }),
                "{p}: {err}"
            );
        }
        assert!(parse("[[model]]\nname = \"m\"\nkind = \"vad\"\npath = \"a/../x.onnx\"\n").is_ok());
    }

    #[test]
    fn symlinks_out_of_the_directory_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        std::fs::write(outside.path().join("secret.onnx"), b"x").unwrap();
        std::os::unix::fs::symlink(
            outside.path().join("secret.onnx"),
            dir.path().join("m.onnx"),
        )
        .unwrap();
        let manifest = dir.path().join("masp.toml");
        std::fs::write(
            &manifest,
            "[[model]]\nname = \"m\"\nkind = \"vad\"\npath = \"m.onnx\"\n",
        )
        .unwrap();
        let err = Registry::builtin().add_manifest(&manifest).unwrap_err();
        assert!(matches!(err, ManifestError::PathEscape { .. }), "{err}");
    }

    #[test]
    fn bad_entries_name_the_problem() {
        let cases = [
            (
                "[[model]]\nname = \"m\"\nkind = \"vad\"\n",
                "exactly one of",
            ),
            (
                "[[model]]\nname = \"m\"\nkind = \"telepathy\"\npath = \"m.onnx\"\n",
                "unknown variant",
            ),
            (
                "[[model]]\nkind = \"vad\"\npath = \"m.onnx\"\n",
                "missing field `name`",
            ),
            (
                "[[model]]\nname = \"m\"\nkind = \"generic\"\npath = \"m.onnx\"\n",
                "[model.generic]",
            ),
            (
                "[[model]]\nname = \"m\"\nkind = \"vad\"\npath = \"m.onnx\"\nsha256 = \"xyz\"\n",
                "64 hex",
            ),
            (
                "[[model]]\nname = \"m\"\nkind = \"vad\"\npath = \"m.onnx\"\nmemory = \"lots\"\n",
                "memory",
            ),
            (
                "[[model]]\nname = \"m\"\nkind = \"vad\"\nasset = \"nope\"\n",
                "unknown asset",
            ),
            (
                "[[model]]\nname = \"m\"\nkind = \"vad\"\npath = \"m.onnx\"\nextra = 1\n",
                "unknown field",
            ),
        ];
        for (text, needle) in cases {
            let err = parse(text).unwrap_err().to_string();
            assert!(err.contains(needle), "{needle:?} not in {err:?}");
        }
        // Names become path components: every rule of `path::check_component`, and no spaces.
        let long = "m".repeat(crate::path::MAX_COMPONENT_BYTES + 1);
        for (name, needle) in [
            ("..", "starts with a dot"),
            (".", "starts with a dot"),
            (".hidden", "starts with a dot"),
            ("a/b", "separator"),
            ("a\\\\b", "separator"),
            ("a\\u0001b", "separator"),
            ("", "is empty"),
            ("a b", "whitespace"),
            (long.as_str(), "bytes long"),
        ] {
            let text = format!("[[model]]\nname = \"{name}\"\nkind = \"vad\"\npath = \"m.onnx\"\n");
            let err = parse(&text).unwrap_err().to_string();
            assert!(err.contains(needle), "{name:?}: {needle:?} not in {err:?}");
        }
    }

    #[test]
    fn builtins_exist_and_names_cannot_be_reused() {
        let mut reg = Registry::builtin();
        assert_eq!(reg.get("silero-vad").unwrap().kind, ModelKind::Vad);
        let dir = tempfile::tempdir().unwrap();
        let manifest = dir.path().join("masp.toml");
        std::fs::write(
            &manifest,
            "[[model]]\nname = \"silero-vad\"\nkind = \"vad\"\npath = \"x.onnx\"\n",
        )
        .unwrap();
        assert!(
            reg.add_manifest(&manifest)
                .unwrap_err()
                .to_string()
                .contains("already exists")
        );
    }
}
