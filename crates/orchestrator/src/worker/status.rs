//! What the orchestrator learns about a worker: its figures, how it failed, how a failure it
//! reports is to be read. Plain data, shared by the client, the protocol and the crate's errors,
//! so none of them needs another.

use std::path::PathBuf;
use std::time::Duration;

use masp_budget::Bytes;

/// How a failure reported by the worker is to be understood.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum FailureClass {
    /// The input (audio) is bad; the model is fine.
    Input,
    /// The model could not be loaded.
    Load,
    /// The model ran out of memory: the worker's cap (an allocation failed).
    OutOfMemory,
    /// Anything else (inference, output, parameters).
    Task,
    /// The worker could not understand the orchestrator.
    Protocol,
}

impl FailureClass {
    pub(crate) fn code(self) -> u8 {
        match self {
            FailureClass::Input => 0,
            FailureClass::Load => 1,
            FailureClass::OutOfMemory => 2,
            FailureClass::Task => 3,
            FailureClass::Protocol => 4,
        }
    }

    pub(crate) fn from_code(code: u8) -> Option<Self> {
        Some(match code {
            0 => FailureClass::Input,
            1 => FailureClass::Load,
            2 => FailureClass::OutOfMemory,
            3 => FailureClass::Task,
            4 => FailureClass::Protocol,
            _ => return None,
        })
    }
}

/// The worker's memory at the end of a load, from its own `/proc/self/status`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LoadReport {
    /// Session creation time, ms.
    pub load_ms: f64,
    /// Worker RSS before the session was created.
    pub rss_before: Bytes,
    /// Worker RSS high-water mark during the load.
    pub peak: Bytes,
    /// Worker RSS after the load.
    pub rss_after: Bytes,
}

/// What happened to a worker that failed.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum WorkerFailure {
    /// It died without being asked to.
    Crashed {
        /// How: `killed by signal 9 (SIGKILL)`, `exited with code 3`.
        status: String,
        /// Its RSS at the last report.
        rss: Bytes,
        /// The last line it wrote to stderr, if any.
        stderr: String,
    },
    /// It needed more memory than its cap.
    CapExceeded {
        /// The cap (address space).
        cap: Bytes,
        /// Its RSS at the last report.
        rss: Bytes,
        /// What failed.
        detail: String,
    },
    /// It went silent past the deadline and was killed.
    Hung {
        /// How long it was silent.
        waited: Duration,
        /// Its RSS when killed.
        rss: Bytes,
    },
    /// It kept reporting, but its progress did not advance for the idle deadline, and was
    /// killed: a worker is not trusted to say it is busy, only to show it.
    Stalled {
        /// How long its progress stood still.
        waited: Duration,
        /// The furthest sample it had reported.
        samples_done: u64,
        /// Its RSS when killed.
        rss: Bytes,
    },
    /// It wrote something that is not the protocol and was killed.
    Protocol {
        /// What was wrong.
        reason: String,
    },
    /// Its watchdog stopped a model call at its share of the budget; it was then ended (its
    /// runtime's arena held what the call took). Not retried as a crash: the task degrades.
    Terminated {
        /// Its first RSS sample over its limit.
        rss: Bytes,
        /// Its highest RSS sampled before the call ended.
        peak: Bytes,
        /// The limit it was given (the budget less the orchestrator's own RSS).
        limit: Bytes,
    },
    /// It could not be started.
    Spawn {
        /// The program.
        program: PathBuf,
        /// Why.
        reason: String,
    },
}

impl WorkerFailure {
    /// Whether the orchestrator's retry policy counts this as a cap kill (else a crash).
    pub fn is_cap(&self) -> bool {
        matches!(self, WorkerFailure::CapExceeded { .. })
    }
}

impl std::fmt::Display for WorkerFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            WorkerFailure::Crashed {
                status,
                rss,
                stderr,
            } => {
                write!(f, "crashed: {status}; its RSS was {rss}")?;
                if !stderr.is_empty() {
                    write!(f, "; it said: {stderr}")?;
                }
                Ok(())
            }
            WorkerFailure::CapExceeded { cap, rss, detail } => write!(
                f,
                "hit its memory cap ({cap} of address space; RSS {rss} at the last report): \
                 {detail}"
            ),
            WorkerFailure::Hung { waited, rss } => write!(
                f,
                "hung: silent for {:.1} s, killed (RSS {rss})",
                waited.as_secs_f64()
            ),
            WorkerFailure::Stalled {
                waited,
                samples_done,
                rss,
            } => write!(
                f,
                "made no progress for {:.1} s (still at sample {samples_done}), killed (RSS {rss})",
                waited.as_secs_f64()
            ),
            WorkerFailure::Protocol { reason } => {
                write!(f, "broke the protocol ({reason}), killed")
            }
            WorkerFailure::Terminated { rss, peak, limit } => write!(
                f,
                "watchdog stopped a model call at RSS {rss} (peak {peak}), over its {limit} share \
                 of the budget; ended"
            ),
            WorkerFailure::Spawn { program, reason } => write!(
                f,
                "could not be started from {}: {reason}",
                program.display()
            ),
        }
    }
}

/// A live worker's figures, for the orchestrator's accounting and the profiler.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct WorkerStatus {
    /// Its process id.
    pub pid: u32,
    /// Its hard cap (address space).
    pub cap: Bytes,
    /// What it measured of its load.
    pub load: LoadReport,
    /// Its RSS high-water mark during the last task, above its RSS at the task's start.
    pub last_task_peak: Bytes,
}
