//! Finding and initialising the ONNX Runtime library, once per process.
//!
//! `ort` loads the library dynamically (`load-dynamic`): nothing is linked at build time, and a
//! missing library would make `ort` panic on first use. [`Runtime::get`] looks for the file first
//! and returns [`Error::RuntimeMissing`] with the fix instead.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, OnceLock};

use masp_budget::{Bytes, Reservation, trim};

use masp_model_registry::assets;
use ort::environment::Environment;
use ort::session::Session;

use crate::{Error, Result};

/// The initialised ONNX Runtime: the library file it came from and the shared environment.
///
/// Initialising it also pins the allocator's mmap threshold for the whole process
/// ([`masp_budget::trim::pin_mmap_threshold`]), so that loads cost the same in every process.
#[derive(Debug)]
pub struct Runtime {
    environment: Environment,
    dylib_path: PathBuf,
    mmap_threshold: trim::MmapThreshold,
}

static RUNTIME: OnceLock<Runtime> = OnceLock::new();
static INIT: Mutex<()> = Mutex::new(());
/// Whether a session has been created in this process yet.
static SESSION_CREATED: AtomicBool = AtomicBool::new(false);

/// What the first session of a process costs on top of the model itself: ONNX Runtime's
/// one-time globals (code pages touched, thread pools, allocator arenas). Measured here at
/// 10.8 MiB (silero: first load 23.6 MiB, later loads at most 12.8 MiB, ONNX Runtime 1.23);
/// rounded up. Paid once, then part of the process's baseline.
pub const FIRST_SESSION_ALLOWANCE: Bytes = Bytes::from_mib(16);

/// The most intra-op threads a session is given: 64. Each thread costs resident memory no
/// estimate counts (measured: `--threads 20000` took a 256 MiB run to 1.4 GiB, ~70 KiB a
/// thread, and spinning threads starved the rest until it seemed hung), and no audio model here
/// gains past a few. Larger requests are clamped where sessions are made, so no path (a flag,
/// a configuration file, a worker's request) passes more; the CLI refuses them as a usage error.
pub const MAX_INTRA_OP_THREADS: usize = 64;

/// How a session is created; fields default to what masp's workloads want on a small machine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionOptions {
    /// Threads ONNX Runtime may use inside one operator. Default 1: audio models here are small
    /// and sequential, and one thread per model leaves the other core for decoding. Raise it for
    /// large models; at most [`MAX_INTRA_OP_THREADS`] are used.
    pub intra_op_threads: usize,
    /// Whether ONNX Runtime may pre-pack weights into kernel-friendly layouts. Default true
    /// (faster inference). Pre-packing keeps a second copy of some weights; turn it off for
    /// large models whose weights live in an external-data file, so they are memory-mapped
    /// rather than copied.
    pub prepacking: bool,
}

impl Default for SessionOptions {
    fn default() -> Self {
        Self {
            intra_op_threads: 1,
            prepacking: true,
        }
    }
}

impl Runtime {
    /// The process-wide runtime, initialised on first call from `ORT_DYLIB_PATH` or the asset
    /// cache. Later calls return the same runtime.
    ///
    /// # Errors
    /// [`Error::RuntimeMissing`] when the library file does not exist (the message says how to
    /// get it), [`Error::RuntimeInit`] when it exists but cannot be loaded.
    pub fn get() -> Result<&'static Runtime> {
        if let Some(runtime) = RUNTIME.get() {
            return Ok(runtime);
        }
        // Serialise initialisation: ort may load the library only once per process.
        let _guard = INIT.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(runtime) = RUNTIME.get() {
            return Ok(runtime);
        }
        // Before ONNX Runtime allocates anything: with glibc's sliding threshold, the same
        // model's load peak differed by its temporary buffers from process to process, and
        // calibrated estimates could not be trusted (see `trim::PINNED_MMAP_THRESHOLD`).
        let mmap_threshold = trim::pin_mmap_threshold(trim::PINNED_MMAP_THRESHOLD);
        let (dylib_path, origin) = locate_library()?;
        if !dylib_path.is_file() {
            return Err(Error::RuntimeMissing {
                path: dylib_path,
                origin,
            });
        }
        let init_err = |reason: String| Error::RuntimeInit {
            path: dylib_path.clone(),
            reason,
        };
        let environment = ort::init_from(&dylib_path)
            .map_err(|e| init_err(e.to_string()))?
            .with_name("masp")
            .with_telemetry(false)
            .build()
            .map_err(|e| init_err(e.to_string()))?;
        Ok(RUNTIME.get_or_init(|| Runtime {
            environment,
            dylib_path,
            mmap_threshold,
        }))
    }

    /// What the next session costs beyond its model: [`FIRST_SESSION_ALLOWANCE`] until one
    /// session has been created in this process, then nothing.
    pub fn first_session_allowance(&self) -> Bytes {
        if SESSION_CREATED.load(Ordering::Relaxed) {
            Bytes::new(0)
        } else {
            FIRST_SESSION_ALLOWANCE
        }
    }

    /// What initialisation did to the allocator's mmap threshold: pinned at
    /// [`trim::PINNED_MMAP_THRESHOLD`] unless `MALLOC_MMAP_THRESHOLD_` was set or the allocator
    /// is not glibc.
    pub fn mmap_threshold(&self) -> &trim::MmapThreshold {
        &self.mmap_threshold
    }

    /// The library file this runtime was loaded from.
    pub fn dylib_path(&self) -> &Path {
        &self.dylib_path
    }

    /// Create a session for the model file at `path`, named `model` in errors. Crate-private:
    /// outside the orchestrator a session is created through [`Admitted`], which proves the
    /// load was admitted by a budget.
    ///
    /// # Errors
    /// [`Error::Load`] with ONNX Runtime's reason.
    pub(crate) fn session(
        &self,
        model: &str,
        path: &Path,
        options: SessionOptions,
    ) -> Result<Session> {
        let load_err = |reason: String| Error::Load {
            model: model.to_string(),
            path: path.to_path_buf(),
            reason,
        };
        Session::builder(&self.environment)
            .map_err(|e| load_err(e.to_string()))?
            .with_intra_threads(options.intra_op_threads.clamp(1, MAX_INTRA_OP_THREADS))
            .map_err(|e| load_err(e.to_string()))?
            .with_inter_threads(1)
            .map_err(|e| load_err(e.to_string()))?
            .with_prepacking(options.prepacking)
            .map_err(|e| load_err(e.to_string()))?
            .commit_from_file(path)
            .map_err(|e| load_err(e.to_string()))
            .inspect(|_| SESSION_CREATED.store(true, Ordering::Relaxed))
    }
}

/// The proof that a load was admitted by a budget, and the only way to create an ONNX Runtime
/// session outside the orchestrator.
///
/// The orchestrator hands one to an adapter's constructor while it holds the load's
/// [`Reservation`]; a tool that loads a model itself (a calibration, a comparison) makes one
/// with [`Admitted::by`] from a reservation of its own, held as long as the sessions live. So
/// no session exists whose memory a budget did not admit first.
#[derive(Debug, Clone, Copy)]
pub struct Admitted<'a> {
    runtime: &'a Runtime,
}

impl<'a> Admitted<'a> {
    /// Sessions admitted by `reservation`: hold it while they live.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// use masp_budget::{Budget, BudgetConfig, Bytes};
    /// use masp_orchestrator::runtime::{Admitted, Runtime, SessionOptions};
    ///
    /// let budget = Budget::new(BudgetConfig::default().with_limit(Bytes::from_gib(1)));
    /// let reservation = budget.try_reserve(Bytes::from_mib(64), "my model")?;
    /// let admitted = Admitted::by(Runtime::get()?, &reservation);
    /// let session = admitted.session("my model", "model.onnx".as_ref(), SessionOptions::default())?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn by(runtime: &'a Runtime, reservation: &'a Reservation) -> Self {
        let _proof = reservation;
        Self { runtime }
    }

    /// In a worker process: the orchestrator that started it holds the reservation.
    pub(crate) fn in_worker(runtime: &'a Runtime) -> Self {
        Self { runtime }
    }

    /// The runtime.
    pub fn runtime(&self) -> &'a Runtime {
        self.runtime
    }

    /// Create a session for the model file at `path`, named `model` in errors.
    ///
    /// # Errors
    /// [`Error::Load`] with ONNX Runtime's reason.
    pub fn session(&self, model: &str, path: &Path, options: SessionOptions) -> Result<Session> {
        self.runtime.session(model, path, options)
    }
}

/// Where the runtime library is looked for — `ORT_DYLIB_PATH` when set, else the asset cache —
/// and which of the two said so (for messages). Looks only; loads nothing.
///
/// # Errors
/// [`Error::Registry`] when the asset cache cannot be located.
pub fn library_location() -> Result<(PathBuf, &'static str)> {
    locate_library()
}

/// Where the runtime library should be, and which setting said so.
fn locate_library() -> Result<(PathBuf, &'static str)> {
    match std::env::var_os("ORT_DYLIB_PATH") {
        Some(path) if !path.is_empty() => Ok((PathBuf::from(path), "from ORT_DYLIB_PATH")),
        _ => Ok((assets::ONNXRUNTIME.path()?, "the asset cache")),
    }
}
