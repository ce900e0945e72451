//! Preparing a load: find the model, verify its file, lay out its lean copy, and estimate what
//! loading it will cost — before any memory is reserved.

use std::path::PathBuf;

use masp_budget::Bytes;
use masp_model_registry::estimate::{self, CalibrationStore, EstimateSource, MemoryEstimate};
use masp_model_registry::manifest::{Isolation, ModelSpec};
use masp_model_registry::onnx::OnnxMetadata;

use super::SequentialOrchestrator;
use super::events::RunEvent;
use super::model::Prepared;
use crate::{Error, Result};

impl SequentialOrchestrator {
    /// Find, verify (sha256 before every load) and estimate a model without loading it.
    ///
    /// # Errors
    /// [`Error::UnknownModel`], registry errors (missing file, checksum mismatch, not ONNX),
    /// [`Error::ModelInterface`] when the file's inputs or outputs do not fit the manifest.
    pub fn prepare(&self, name: &str) -> Result<Prepared> {
        let spec = self
            .registry
            .get(name)
            .cloned()
            .ok_or_else(|| Error::UnknownModel {
                name: name.to_string(),
                known: self.registry.names().join(", "),
            })?;
        let original = spec.verified_path()?;
        let (path, meta, lean_pending) = self.lean_layout(&spec, original)?;
        // A model whose file does not fit its manifest entry fails here, before any memory is
        // reserved for it.
        spec.check_interface(&meta)
            .map_err(|reason| Error::ModelInterface {
                model: spec.name.clone(),
                reason,
            })?;
        let prepacking = self.prepacking_for(&meta);
        let metadata_estimate = estimate::from_metadata(&meta, prepacking);
        let mut key = CalibrationStore::key(name, spec.sha256.as_deref(), meta.file_bytes);
        if spec.lean {
            // The same file loads very differently in each layout: calibrate them apart.
            key.push_str("+lean");
        }
        let first = self.is_first_session(&spec);
        let estimate = match (
            spec.memory_override,
            self.calibration.estimate_for(&key, first),
        ) {
            // A measurement above the user's figure wins: the override may leave room, never
            // take it away from what the model was seen to need.
            (Some(peak), Some(calibrated)) if calibrated.load_peak > peak => calibrated,
            (Some(peak), calibrated) => MemoryEstimate {
                load_peak: peak,
                resident: calibrated.map_or(peak, |c| c.resident.min(peak)),
                source: EstimateSource::Override,
                includes_runtime_globals: false,
                ..calibrated.unwrap_or(metadata_estimate)
            },
            (None, Some(calibrated)) => calibrated,
            (None, None) => metadata_estimate,
        };
        Ok(Prepared {
            spec,
            path,
            estimate,
            metadata_estimate,
            key,
            external_weight_bytes: meta.external_weight_bytes,
            lean_pending,
        })
    }

    /// The file a model loads from and its metadata. For a model marked `lean`: its lean copy
    /// if written; else, while there are embedded weights to move, the original with the
    /// metadata the copy will have (weights external) and `lean_pending`.
    fn lean_layout(
        &self,
        spec: &ModelSpec,
        original: PathBuf,
    ) -> Result<(PathBuf, OnnxMetadata, bool)> {
        if spec.lean {
            let dir = self.lean_dir()?;
            if let Some(copy) = masp_model_registry::lean::existing(
                &spec.name,
                &original,
                spec.sha256.as_deref(),
                &dir,
            )? {
                let meta = OnnxMetadata::read(&copy)?;
                return Ok((copy, meta, false));
            }
        }
        let mut meta = OnnxMetadata::read(&original)?;
        if spec.lean && meta.embedded_weight_bytes > Bytes::ZERO {
            meta.external_weight_bytes = meta
                .external_weight_bytes
                .saturating_add(meta.embedded_weight_bytes);
            meta.embedded_weight_bytes = Bytes::ZERO;
            return Ok((original, meta, true));
        }
        Ok((original, meta, false))
    }

    /// Whether loading `spec` now creates the first ONNX Runtime session of its process: in
    /// this process until one session exists, and always in a worker (a new process per load).
    pub(super) fn is_first_session(&self, spec: &ModelSpec) -> bool {
        match self.isolation_for(spec) {
            Isolation::InProcess => self.runtime.first_session_allowance() > Bytes::ZERO,
            Isolation::Process => true,
        }
    }

    fn lean_dir(&self) -> Result<PathBuf> {
        match &self.config.lean_dir {
            Some(dir) => Ok(dir.clone()),
            None => Ok(masp_model_registry::assets::masp_home()?.join("lean")),
        }
    }

    /// Write the lean copy `prepared` is waiting for, then prepare again from it.
    pub(super) fn write_lean_copy(&mut self, prepared: Prepared) -> Result<Prepared> {
        let dir = self.lean_dir()?;
        let (path, written) = masp_model_registry::lean::ensure(
            &prepared.spec.name,
            &prepared.path,
            prepared.spec.sha256.as_deref(),
            &dir,
        )?;
        if let Some(written) = written {
            self.record(RunEvent::LeanCopyWritten {
                model: prepared.spec.name.clone(),
                path,
                bytes_moved: written.report.bytes_moved,
                ms: written.ms,
            });
        }
        self.prepare(&prepared.spec.name)
    }

    /// Pre-packing copies weights into new buffers; for weights in an external-data file that
    /// defeats the memory map (measured: a 500 MiB model then loads in ~1 s with a 2× peak
    /// instead of ~1 ms and no peak). So it is off for such models whatever the config says.
    fn prepacking_for(&self, meta: &OnnxMetadata) -> bool {
        self.config.session.prepacking && meta.external_weight_bytes == Bytes::new(0)
    }

    /// Where `spec` runs: its manifest's choice, else the run's.
    pub fn isolation_for(&self, spec: &ModelSpec) -> Isolation {
        spec.isolation.unwrap_or(self.config.isolation)
    }
}
