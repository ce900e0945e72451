//! Helpers: synthetic models registered through a manifest, an orchestrator over them.

use std::path::{Path, PathBuf};

use masp_budget::{Budget, BudgetConfig, Bytes};
use masp_model_registry::manifest::Registry;
use masp_orchestrator::{OrchestratorConfig, SequentialOrchestrator};
use masp_testkit::synthetic::{self, ActivationModel, Layout, WeightsModel};

pub const GIB: u64 = 1 << 30;
pub const MIB: u64 = 1 << 20;

/// A directory holding a manifest and links to the generated models.
pub struct Models {
    pub dir: tempfile::TempDir,
    manifest: String,
}

impl Models {
    pub fn new() -> Self {
        Self {
            dir: tempfile::tempdir().unwrap(),
            manifest: String::new(),
        }
    }

    /// Hard-link (or copy) a generated model, and its external data, into the manifest's
    /// directory: manifests refuse symbolic links that leave their directory.
    fn link(&self, generated: &Path, name: &str) -> String {
        let place = |from: &Path, to: &Path| {
            if std::fs::hard_link(from, to).is_err() {
                std::fs::copy(from, to).unwrap();
            }
        };
        let file = format!("{name}.onnx");
        place(generated, &self.dir.path().join(&file));
        let meta = masp_model_registry::onnx::OnnxMetadata::read(generated).unwrap();
        for external in &meta.external_data {
            let target = self.dir.path().join(&external.location);
            if !target.exists() {
                place(&external.path, &target);
            }
        }
        file
    }

    /// A weights model fed 1024-sample windows (64 ms at 16 kHz) by the generic adapter.
    pub fn weights(&mut self, name: &str, weight_bytes: u64, layout: Layout) -> PathBuf {
        self.weights_with(name, weight_bytes, layout, "")
    }

    /// [`Self::weights`] with extra manifest lines for the model (e.g. `lean = true`).
    pub fn weights_with(
        &mut self,
        name: &str,
        weight_bytes: u64,
        layout: Layout,
        extra: &str,
    ) -> PathBuf {
        let generated = synthetic::weights_model(
            &synthetic::cache_dir(),
            WeightsModel {
                weight_bytes,
                layout,
                name: name.into(),
            },
        )
        .unwrap();
        let file = self.link(&generated, name);
        release(&generated);
        self.manifest.push_str(&format!(
            "[[model]]\nname = \"{name}\"\nkind = \"generic\"\npath = \"{file}\"\n{extra}\
             [model.generic]\ninput = \"x\"\nwindow_ms = 64\n\n"
        ));
        self.dir.path().join(file)
    }

    /// A model whose activations grow with its input: whole chunks in, no fixed window.
    pub fn activation(&mut self, name: &str, bytes_per_input_sample: u64) -> PathBuf {
        let generated = synthetic::activation_model(
            &synthetic::cache_dir(),
            ActivationModel {
                bytes_per_input_sample,
                name: name.into(),
            },
        )
        .unwrap();
        let file = self.link(&generated, name);
        self.manifest.push_str(&format!(
            "[[model]]\nname = \"{name}\"\nkind = \"generic\"\npath = \"{file}\"\n\
             [model.generic]\ninput = \"x\"\n\n"
        ));
        generated
    }

    pub fn registry(&self) -> Registry {
        let path = self.dir.path().join("masp.toml");
        std::fs::write(&path, &self.manifest).unwrap();
        let mut registry = Registry::builtin();
        registry.add_manifest(&path).unwrap();
        registry
    }
}

/// With `MASP_TEST_FREE_DISK=1` (CI sets it), a generated model's cache entry is removed once
/// it is linked into a test's directory: this suite's models add up to ~8 GiB of disk, and the
/// links keep each one only for its test. Elsewhere the cache keeps them for the next run.
fn release(generated: &Path) {
    if std::env::var("MASP_TEST_FREE_DISK").is_ok_and(|v| v == "1")
        && let Some(entry) = generated
            .parent()
            .filter(|p| p.starts_with(synthetic::cache_dir()))
    {
        // A failure only costs disk.
        let _ = std::fs::remove_dir_all(entry);
    }
}

pub fn orchestrator(
    registry: Registry,
    limit: Bytes,
    config: OrchestratorConfig,
) -> SequentialOrchestrator {
    SequentialOrchestrator::builder(
        Budget::new(BudgetConfig::default().with_limit(limit)),
        registry,
        masp_models::registry(),
    )
    .with_config(config)
    .build()
    .unwrap_or_else(|e| panic!("{e}"))
}

/// A short 16 kHz tone: enough windows to run a model, few enough to be quick.
pub fn tone(dir: &Path, name: &str, seconds: f32) -> PathBuf {
    let path = dir.join(name);
    let n = (16_000.0 * seconds) as usize;
    let samples: Vec<f32> = (0..n).map(|i| (i as f32 * 0.07).sin() * 0.3).collect();
    masp_audio::write_wav_f32(&path, 16_000, &samples).unwrap();
    path
}
