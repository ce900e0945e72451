//! Process isolation: each model in a worker process of its own.
//!
//! With `--isolation process` the orchestrator starts `masp worker` (the same binary) for each
//! model it loads ([`WorkerAdapter::spawn`]) and ends it on unload. The memory is then back with
//! certainty — the process is reaped — whatever the runtime or allocator would have kept. The
//! worker runs under a hard cap derived from its reservation ([`CapRule`]); a worker that
//! crashes, hits its cap, hangs or writes garbage fails its task with [`crate::Error::Worker`]
//! naming the model, the cause and the memory figures, and the batch goes on.
//!
//! [`protocol`] is the wire format; [`serve`] is the worker's side.

mod client;
mod groups;
pub mod protocol;
mod server;
pub(crate) mod status;

pub use client::{CapRule, WorkerAdapter, WorkerConfig};
pub use groups::{MAX_TRACKED_WORKERS, kill_all_workers};
pub use server::{ServeOutcome, serve};
pub use status::{FailureClass, LoadReport, WorkerFailure, WorkerStatus};

/// The environment variable through which a worker learns the process id of the orchestrator
/// that started it: [`serve`] exits at once when its parent is another (the orchestrator died
/// before the worker could arm its parent-death signal).
pub const PARENT_PID_ENV: &str = "MASP_WORKER_PARENT_PID";

/// The worker program when none is configured: `MASP_WORKER_PROGRAM` if set, else this
/// executable when it is `masp`, else `masp` from `PATH`.
pub fn default_program() -> std::path::PathBuf {
    if let Some(program) = std::env::var_os("MASP_WORKER_PROGRAM").filter(|p| !p.is_empty()) {
        return program.into();
    }
    match std::env::current_exe() {
        Ok(exe) if exe.file_stem().is_some_and(|s| s == "masp") => exe,
        _ => "masp".into(),
    }
}
