//! Memory estimates for models, and the calibration store that makes them accurate.
//!
//! Before a model's first load masp estimates its memory from the file's metadata alone
//! ([`from_metadata`]). Measured here with ONNX Runtime 1.31 on CPU: weights embedded in the
//! `.onnx` peak at about twice their size while the session is created (the protobuf is parsed,
//! then the tensors are copied out of it) and settle at about once; weights in an external-data
//! file are mapped, so the peak is about once their size. After every load and task the
//! orchestrator records what it measured ([`CalibrationStore::record_load`],
//! [`CalibrationStore::record_task`]); from then on the calibrated figures are used. Every
//! estimate says where it came from ([`EstimateSource`]), and [`CalibrationStore::error_table`]
//! reports how far the metadata estimates were from what was measured.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use masp_budget::Bytes;
use serde::{Deserialize, Serialize};

use crate::onnx::OnnxMetadata;
use crate::{Error, Result};

/// Fixed overhead of a session beyond its weights (graph, kernels, arenas), by metadata only.
pub const SESSION_OVERHEAD: Bytes = Bytes::from_mib(12);
/// Working memory assumed for a task before any measurement.
pub const DEFAULT_WORKING: Bytes = Bytes::from_mib(16);
/// Observations kept per model; the estimate is the largest of them (a safe upper bound that
/// still follows the model when it changes).
const KEEP: usize = 8;
/// Largest calibration store read: 16 MiB. A record is at most a few hundred bytes (its lists
/// hold the last 8 values each), so this is tens of thousands of models; a larger file is not
/// ours and is set aside like a corrupt one.
pub const MAX_CALIBRATION_BYTES: u64 = 16 << 20;

/// Where an estimate came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EstimateSource {
    /// The user's `memory` override in the manifest.
    Override,
    /// Measured in earlier runs (the calibration store).
    Calibrated,
    /// Computed from the file's metadata, never measured.
    Metadata,
}

impl std::fmt::Display for EstimateSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            EstimateSource::Override => "override",
            EstimateSource::Calibrated => "calibrated",
            EstimateSource::Metadata => "metadata",
        })
    }
}

/// What a model is expected to cost.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct MemoryEstimate {
    /// RSS growth at the peak of session creation.
    pub load_peak: Bytes,
    /// RSS growth once loaded (held while the model stays resident).
    pub resident: Bytes,
    /// Extra RSS while a task runs, independent of chunk size.
    pub working_fixed: Bytes,
    /// Extra RSS per input sample of a chunk (models whose activations scale with input).
    pub working_per_sample: f64,
    /// Where the figures came from.
    pub source: EstimateSource,
    /// The load peak was measured as the first ONNX Runtime session of its process, so it
    /// already holds the runtime's one-time globals (thread pools, arenas: ~7–9 MiB here) and
    /// no allowance for them belongs on top.
    #[serde(default)]
    pub includes_runtime_globals: bool,
}

impl MemoryEstimate {
    /// Working memory of a task fed chunks of `chunk_samples` samples.
    pub fn working_for(&self, chunk_samples: u64) -> Bytes {
        let scaled = (self.working_per_sample * chunk_samples as f64).ceil();
        self.working_fixed
            .saturating_add(Bytes::new(scaled.max(0.0) as u64))
    }
}

/// Estimate from metadata. `prepacking`: whether ONNX Runtime may pre-pack weights.
///
/// Measured with ONNX Runtime 1.31.1 on CPU, 500 MiB of float32 MatMul weights (RSS growth):
///
/// | layout   | pre-packing | load peak | after load | after first run |
/// |----------|-------------|-----------|------------|-----------------|
/// | embedded | on or off   | 2×        | 1×         | 1×              |
/// | external | on          | 2×        | 1×         | 1×              |
/// | external | off         | 0         | 0          | 1× (mapped file pages) |
///
/// Mapped weights are reserved up front all the same: the first run faults them in.
pub fn from_metadata(meta: &OnnxMetadata, prepacking: bool) -> MemoryEstimate {
    let embedded = meta.embedded_weight_bytes.get();
    let external = meta.external_weight_bytes.get();
    let weights = embedded + external;
    // Embedded weights exist twice at the peak: in the parsed protobuf and in the tensors;
    // external ones too when pre-packing copies them out of the map.
    let copied_external = if prepacking { 2 * external } else { external };
    MemoryEstimate {
        load_peak: Bytes::new(SESSION_OVERHEAD.get() + 2 * embedded + copied_external),
        resident: Bytes::new(SESSION_OVERHEAD.get() + weights),
        working_fixed: DEFAULT_WORKING,
        working_per_sample: 0.0,
        source: EstimateSource::Metadata,
        includes_runtime_globals: false,
    }
}

/// One model's measurements.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct CalibrationRecord {
    /// Measured load peaks (RSS growth) of loads that were not their process's first ONNX
    /// Runtime session, newest last.
    pub load_peaks: Vec<Bytes>,
    /// Measured load peaks of loads that were their process's first session (every load in a
    /// worker process), newest last. They include the runtime's one-time globals, so they are
    /// kept apart: mixed in, whichever model a process loads first would look ~8 MiB larger.
    #[serde(default)]
    pub first_load_peaks: Vec<Bytes>,
    /// Measured resident sizes after load, newest last.
    pub residents: Vec<Bytes>,
    /// Measured task working peaks with the chunk size used: (chunk_samples, bytes).
    pub tasks: Vec<(u64, Bytes)>,
    /// The metadata estimate of the load peak at the time of the first measurement.
    pub predicted_load_peak: Option<Bytes>,
    /// Loads measured in total.
    pub n_loads: u64,
}

fn push_capped<T>(list: &mut Vec<T>, value: T) {
    list.push(value);
    if list.len() > KEEP {
        list.remove(0);
    }
}

impl CalibrationRecord {
    /// The load peaks measured as first sessions of their process, or the others.
    pub fn peaks(&self, first_in_process: bool) -> &[Bytes] {
        if first_in_process {
            &self.first_load_peaks
        } else {
            &self.load_peaks
        }
    }

    /// The calibrated estimate for a load that is not its process's first session, if a load
    /// was ever measured ([`Self::estimate_for`] with `false`).
    pub fn estimate(&self) -> Option<MemoryEstimate> {
        self.estimate_for(false)
    }

    /// The calibrated estimate for a load that will (`first_in_process`) or will not be the
    /// first ONNX Runtime session of its process: the largest peak measured in the same
    /// situation, else the largest of the other kind (a first load's peak is then an upper
    /// bound; a later load's peak then needs the runtime's allowance on top, which
    /// `includes_runtime_globals = false` says).
    pub fn estimate_for(&self, first_in_process: bool) -> Option<MemoryEstimate> {
        let max = |first: bool| self.peaks(first).iter().copied().max();
        let (load_peak, from_first) = match (max(first_in_process), max(!first_in_process)) {
            (Some(peak), _) => (peak, first_in_process),
            (None, Some(peak)) => (peak, !first_in_process),
            (None, None) => return None,
        };
        let resident = self.residents.iter().copied().max().unwrap_or(load_peak);
        // Per-sample working memory: the largest bytes-per-sample seen (an upper bound that
        // attributes the fixed part to the samples too — conservative for smaller chunks).
        let per_sample = self
            .tasks
            .iter()
            .filter(|(n, _)| *n > 0)
            .map(|(n, b)| b.get() as f64 / *n as f64)
            .fold(0.0, f64::max);
        let (working_fixed, working_per_sample) = if per_sample * 16_000.0 > 8.0 * 1024.0 * 1024.0 {
            // Scales with input (more than 8 MiB per second of audio): model it per sample.
            (Bytes::new(0), per_sample)
        } else {
            let fixed = self
                .tasks
                .iter()
                .map(|(_, b)| *b)
                .max()
                .unwrap_or(DEFAULT_WORKING);
            (fixed, 0.0)
        };
        Some(MemoryEstimate {
            load_peak,
            resident,
            working_fixed,
            working_per_sample,
            source: EstimateSource::Calibrated,
            includes_runtime_globals: from_first,
        })
    }
}

/// Below this measured load peak the error table gives no percentage: a model whose weights
/// are mapped peaks at a few KiB while loading, where the RSS reading's own noise is larger
/// than the figure and "+200%" would mean 8 KiB.
pub const PERCENT_FLOOR: Bytes = Bytes::from_mib(1);

/// A row of the estimate-error table.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EstimateError {
    /// Model key.
    pub model: String,
    /// Whether the row is about loads that were their process's first ONNX Runtime session
    /// (their peaks include the runtime's one-time globals); a model can have a row of each.
    pub first_in_process: bool,
    /// The metadata estimate of the load peak.
    pub predicted: Option<Bytes>,
    /// The current calibrated estimate (largest recent measurement).
    pub calibrated: Bytes,
    /// The latest measurement.
    pub latest: Bytes,
    /// (predicted − latest) / latest, in percent; `None` without a prediction or when the
    /// latest measurement is under [`PERCENT_FLOOR`].
    pub metadata_error_pct: Option<f64>,
    /// (calibrated − latest) / latest, in percent; `None` when the latest measurement is under
    /// [`PERCENT_FLOOR`].
    pub calibrated_error_pct: Option<f64>,
    /// Loads measured in this situation among the ones kept (at most 8).
    pub n_loads: u64,
}

/// Measured footprints per model, persisted as JSON (`calibration.json` in the asset cache).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct CalibrationStore {
    #[serde(skip)]
    path: Option<PathBuf>,
    /// What this process recorded since it last saved, replayed onto the file's current
    /// content under its lock ([`CalibrationStore::save`]), so concurrent processes lose none
    /// of each other's measurements.
    #[serde(skip)]
    unsaved: Unsaved,
    /// Records by model key ([`CalibrationStore::key`]).
    pub models: BTreeMap<String, CalibrationRecord>,
}

/// One measurement, as [`CalibrationStore::save`] replays it onto the file.
#[derive(Debug, Clone)]
enum Measured {
    Load {
        key: String,
        predicted: Bytes,
        load_peak: Bytes,
        resident: Bytes,
        first_in_process: bool,
    },
    Task {
        key: String,
        chunk_samples: u64,
        working_peak: Bytes,
    },
}

/// Measurements not saved yet. Behind a mutex because [`CalibrationStore::save`] takes
/// `&self` (the orchestrator lends its store out read-only) and must clear them.
#[derive(Debug, Default)]
struct Unsaved(std::sync::Mutex<Vec<Measured>>);

impl Unsaved {
    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Measured>> {
        // A panic while holding it left a list of whole values: still usable.
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// A clone carries the unsaved measurements too, so either copy's save keeps them; save only
/// one of them, or they are counted twice.
impl Clone for Unsaved {
    fn clone(&self) -> Self {
        Self(std::sync::Mutex::new(self.lock().clone()))
    }
}

impl CalibrationStore {
    /// The store's default location in the asset cache.
    ///
    /// # Errors
    /// [`Error::NoHome`].
    pub fn default_path() -> Result<PathBuf> {
        Ok(crate::assets::masp_home()?.join("calibration.json"))
    }

    /// An empty store that is never saved (tests, `--no-calibration`).
    pub fn in_memory() -> Self {
        Self::default()
    }

    /// Open the store at `path`; a missing file is an empty store. A corrupt file is set aside
    /// (renamed `.corrupt`) rather than trusted or fatal: calibration is an optimisation.
    ///
    /// # Errors
    /// [`Error::Io`] when the file exists but cannot be read.
    pub fn open(path: &Path) -> Result<Self> {
        let mut store = Self::read(path)?;
        store.path = Some(path.to_path_buf());
        Ok(store)
    }

    /// The store in the file at `path` as it is now; a missing file is empty, a corrupt or
    /// oversized one (not [`MAX_CALIBRATION_BYTES`]) is set aside. Special files and symlinks
    /// are refused: the store lives in masp's own cache.
    fn read(path: &Path) -> Result<Self> {
        use crate::file::{Links, read_regular};
        match read_regular(path, Links::Refuse, MAX_CALIBRATION_BYTES) {
            Ok(bytes) => match serde_json::from_slice::<CalibrationStore>(&bytes) {
                Ok(store) => Ok(store),
                Err(_) => Ok(Self::set_aside(path)),
            },
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Self::default()),
            Err(e) if e.kind() == std::io::ErrorKind::InvalidData => Ok(Self::set_aside(path)),
            Err(source) => Err(Error::Io {
                path: path.to_path_buf(),
                source,
            }),
        }
    }

    /// Move an unreadable store out of the way; calibration is an optimisation, so failing to
    /// do so only means the next run tries again.
    fn set_aside(path: &Path) -> Self {
        let _ = crate::atomic::persist(path, &path.with_extension("json.corrupt"));
        Self::default()
    }

    /// Key of a model: its name and a content identity (sha256 prefix when known, else size), so
    /// a changed file is calibrated afresh.
    pub fn key(name: &str, sha256: Option<&str>, file_bytes: Bytes) -> String {
        match sha256 {
            Some(h) => format!("{name}@{}", &h[..h.len().min(16)]),
            None => format!("{name}@{}b", file_bytes.get()),
        }
    }

    /// The calibrated estimate for `key` for a load that is not its process's first session,
    /// if any.
    pub fn estimate(&self, key: &str) -> Option<MemoryEstimate> {
        self.estimate_for(key, false)
    }

    /// The calibrated estimate for `key` for a load that will or will not be its process's
    /// first session ([`CalibrationRecord::estimate_for`]).
    pub fn estimate_for(&self, key: &str, first_in_process: bool) -> Option<MemoryEstimate> {
        self.models
            .get(key)
            .and_then(|r| r.estimate_for(first_in_process))
    }

    /// Record a measured load; `first_in_process`: it was its process's first ONNX Runtime
    /// session.
    pub fn record_load(
        &mut self,
        key: &str,
        predicted: Bytes,
        load_peak: Bytes,
        resident: Bytes,
        first_in_process: bool,
    ) {
        self.remember(Measured::Load {
            key: key.to_string(),
            predicted,
            load_peak,
            resident,
            first_in_process,
        });
        self.apply_load(key, predicted, load_peak, resident, first_in_process);
    }

    fn apply_load(
        &mut self,
        key: &str,
        predicted: Bytes,
        load_peak: Bytes,
        resident: Bytes,
        first_in_process: bool,
    ) {
        let record = self.models.entry(key.to_string()).or_default();
        record.predicted_load_peak.get_or_insert(predicted);
        let peaks = if first_in_process {
            &mut record.first_load_peaks
        } else {
            &mut record.load_peaks
        };
        push_capped(peaks, load_peak);
        push_capped(&mut record.residents, resident);
        record.n_loads += 1;
    }

    /// Record a measured task: its working peak above the resident model, and the chunk size.
    pub fn record_task(&mut self, key: &str, chunk_samples: u64, working_peak: Bytes) {
        self.remember(Measured::Task {
            key: key.to_string(),
            chunk_samples,
            working_peak,
        });
        self.apply_task(key, chunk_samples, working_peak);
    }

    fn apply_task(&mut self, key: &str, chunk_samples: u64, working_peak: Bytes) {
        let record = self.models.entry(key.to_string()).or_default();
        push_capped(&mut record.tasks, (chunk_samples, working_peak));
    }

    /// Remember a measurement for [`CalibrationStore::save`]; a store that is never saved
    /// keeps nothing, so a long in-memory run does not grow.
    fn remember(&self, measured: Measured) {
        if self.path.is_some() {
            self.unsaved.lock().push(measured);
        }
    }

    /// Save what this process measured since the last save. Under an exclusive lock on
    /// `<store>.lock` the file is read again, this process's new measurements are replayed
    /// onto it and the result is written with [`crate::atomic::write_atomic`] (unique
    /// temporary file, sync, rename, directory sync): concurrent processes (shards) lose none
    /// of each other's measurements, and no reader sees a torn file. A store opened with
    /// [`CalibrationStore::in_memory`] is not saved.
    ///
    /// # Errors
    /// [`Error::Io`] naming the file (or its lock file); the measurements are kept for the
    /// next save.
    pub fn save(&self) -> Result<()> {
        let Some(path) = &self.path else {
            return Ok(());
        };
        let io = |at: &Path| {
            let at = at.to_path_buf();
            move |source| Error::Io { path: at, source }
        };
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(io(parent))?;
        }
        let lock_path = path.with_extension("json.lock");
        let lock = crate::file::lock_exclusive(&lock_path).map_err(io(&lock_path))?;
        let mut unsaved = self.unsaved.lock();
        let mut current = Self::read(path)?;
        for measured in unsaved.iter() {
            match measured {
                Measured::Load {
                    key,
                    predicted,
                    load_peak,
                    resident,
                    first_in_process,
                } => current.apply_load(key, *predicted, *load_peak, *resident, *first_in_process),
                Measured::Task {
                    key,
                    chunk_samples,
                    working_peak,
                } => current.apply_task(key, *chunk_samples, *working_peak),
            }
        }
        let text =
            serde_json::to_vec_pretty(&current).map_err(|e| io(path)(std::io::Error::other(e)))?;
        crate::atomic::write_atomic(path, &text).map_err(io(path))?;
        unsaved.clear();
        drop(lock);
        Ok(())
    }

    /// How far estimates were from measurements, per model.
    pub fn error_table(&self) -> Vec<EstimateError> {
        let pct = |estimate: Bytes, actual: Bytes| {
            (actual >= PERCENT_FLOOR).then(|| {
                (estimate.get() as f64 - actual.get() as f64) / (actual.get() as f64) * 100.0
            })
        };
        self.models
            .iter()
            .flat_map(|(model, record)| {
                [false, true].into_iter().filter_map(move |first| {
                    let list = record.peaks(first);
                    let latest = *list.last()?;
                    let calibrated = record.estimate_for(first)?.load_peak;
                    Some(EstimateError {
                        model: model.clone(),
                        first_in_process: first,
                        predicted: record.predicted_load_peak,
                        calibrated,
                        latest,
                        metadata_error_pct: record.predicted_load_peak.and_then(|p| pct(p, latest)),
                        calibrated_error_pct: pct(calibrated, latest),
                        n_loads: list.len() as u64,
                    })
                })
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn calibration_takes_over_and_round_trips() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("calibration.json");
        let mut store = CalibrationStore::open(&path).unwrap();
        let key = CalibrationStore::key("m", Some(&"ab".repeat(32)), Bytes::new(10));
        assert!(store.estimate(&key).is_none());
        store.record_load(
            &key,
            Bytes::from_mib(100),
            Bytes::from_mib(80),
            Bytes::from_mib(40),
            false,
        );
        store.record_load(
            &key,
            Bytes::from_mib(100),
            Bytes::from_mib(82),
            Bytes::from_mib(41),
            false,
        );
        store.record_task(&key, 32_000, Bytes::from_mib(2));
        store.save().unwrap();
        let again = CalibrationStore::open(&path).unwrap();
        let est = again.estimate(&key).unwrap();
        assert_eq!(est.source, EstimateSource::Calibrated);
        assert_eq!(est.load_peak, Bytes::from_mib(82));
        assert_eq!(est.resident, Bytes::from_mib(41));
        assert_eq!(est.working_for(16_000), Bytes::from_mib(2));
        let table = again.error_table();
        assert_eq!(table.len(), 1);
        assert!(
            (table[0].metadata_error_pct.unwrap() - (100.0 - 82.0) / 82.0 * 100.0).abs() < 1e-9
        );
        assert_eq!(table[0].calibrated_error_pct, Some(0.0));
    }

    #[test]
    fn the_error_table_gives_no_percentage_for_a_load_peak_of_a_few_kib() {
        let mut store = CalibrationStore::in_memory();
        for peak_kib in [8, 4] {
            let peak = Bytes::new(peak_kib << 10);
            store.record_load("mapped", Bytes::from_mib(268), peak, Bytes::ZERO, false);
        }
        let row = &store.error_table()[0];
        assert_eq!(
            (row.calibrated, row.latest),
            (Bytes::new(8 << 10), Bytes::new(4 << 10))
        );
        assert_eq!(
            (row.metadata_error_pct, row.calibrated_error_pct),
            (None, None)
        );
    }

    #[test]
    fn first_sessions_of_a_process_are_calibrated_apart() {
        let mut store = CalibrationStore::in_memory();
        let mib = Bytes::from_mib;
        // The embedder measured as a process's first session (with the runtime's globals),
        // then as a later one.
        store.record_load("e", mib(35), mib(23), mib(20), true);
        let first_only = store.estimate_for("e", false).unwrap();
        assert_eq!(first_only.load_peak, mib(23));
        assert!(
            first_only.includes_runtime_globals,
            "an upper bound, globals included"
        );
        store.record_load("e", mib(35), mib(16), mib(13), false);
        let later = store.estimate_for("e", false).unwrap();
        let first = store.estimate_for("e", true).unwrap();
        assert_eq!(
            (later.load_peak, later.includes_runtime_globals),
            (mib(16), false)
        );
        assert_eq!(
            (first.load_peak, first.includes_runtime_globals),
            (mib(23), true)
        );
        // A model only ever measured later: as a first session it needs the allowance on top.
        store.record_load("v", mib(16), mib(13), mib(10), false);
        let v = store.estimate_for("v", true).unwrap();
        assert_eq!((v.load_peak, v.includes_runtime_globals), (mib(13), false));
        // One error-table row per situation measured.
        let rows: Vec<_> = store
            .error_table()
            .into_iter()
            .map(|r| (r.model, r.first_in_process, r.latest))
            .collect();
        assert_eq!(
            rows,
            vec![
                ("e".to_string(), false, mib(16)),
                ("e".to_string(), true, mib(23)),
                ("v".to_string(), false, mib(13)),
            ]
        );
    }

    #[test]
    fn activation_heavy_tasks_scale_with_chunk_size() {
        let mut store = CalibrationStore::in_memory();
        store.record_load("m", Bytes::new(1), Bytes::new(1), Bytes::new(1), false);
        // 4 KiB per sample: 64 MiB per second of audio at 16 kHz.
        store.record_task("m", 16_000, Bytes::new(16_000 * 4096));
        let est = store.estimate("m").unwrap();
        assert_eq!(est.working_for(8_000), Bytes::new(8_000 * 4096));
    }

    #[test]
    fn a_corrupt_store_is_set_aside_not_fatal() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("calibration.json");
        std::fs::write(&path, b"{ not json").unwrap();
        let store = CalibrationStore::open(&path).unwrap();
        assert!(store.models.is_empty());
        assert!(path.with_extension("json.corrupt").exists());
    }
}
