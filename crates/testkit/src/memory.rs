//! Measuring the resident memory of one phase: before, after and peak.

use std::time::{Duration, Instant};

use masp_budget::{Bytes, probe};
use serde::Serialize;

/// Memory of the process around one phase (e.g. creating a session), from `/proc/self/status`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct PhaseMemory {
    /// Resident memory (`VmRSS`) just before the phase.
    pub rss_before: Bytes,
    /// Resident memory just after the phase.
    pub rss_after: Bytes,
    /// Highest resident memory (`VmHWM`) seen up to the end of the phase: during the phase
    /// alone when [`Self::peak_is_phase_local`], else since the process started.
    pub peak: Bytes,
    /// Whether the peak was reset before the phase (needs a writable `/proc/self/clear_refs`).
    pub peak_is_phase_local: bool,
    /// Wall-clock duration of the phase. For reports only: tests must not assert on it.
    #[serde(serialize_with = "as_millis")]
    pub elapsed: Duration,
}

impl PhaseMemory {
    /// How much resident memory the phase left behind (zero if it shrank).
    #[must_use]
    pub fn growth(&self) -> Bytes {
        self.rss_after.saturating_sub(self.rss_before)
    }

    /// How far above its starting point resident memory went during the phase.
    #[must_use]
    pub fn peak_growth(&self) -> Bytes {
        self.peak.saturating_sub(self.rss_before)
    }
}

fn as_millis<S: serde::Serializer>(elapsed: &Duration, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_f64(elapsed.as_secs_f64() * 1000.0)
}

/// Runs `phase` and measures its memory. Figures are [`Bytes::ZERO`] where the platform does
/// not report them (only Linux reports the peak).
///
/// The process's whole memory is measured, so other threads allocating at the same time
/// distort the figures: measure in a process (or test) of its own.
///
/// # Examples
///
/// ```
/// let (buffer, memory) = masp_testkit::memory::measure(|| vec![1u8; 64 << 20]);
/// assert_eq!(buffer.len(), 64 << 20);
/// if cfg!(target_os = "linux") {
///     assert!(memory.growth().get() >= 60 << 20);
/// }
/// ```
pub fn measure<T>(phase: impl FnOnce() -> T) -> (T, PhaseMemory) {
    let peak_is_phase_local = probe::reset_peak_rss();
    let rss_before = probe::process_rss().unwrap_or(Bytes::ZERO);
    let start = Instant::now();
    let value = phase();
    let elapsed = start.elapsed();
    let rss_after = probe::process_rss().unwrap_or(Bytes::ZERO);
    let peak = probe::process_peak_rss()
        .unwrap_or(Bytes::ZERO)
        .max(rss_after);
    (
        value,
        PhaseMemory {
            rss_before,
            rss_after,
            peak,
            peak_is_phase_local,
            elapsed,
        },
    )
}

/// A reservation of `bytes` against a budget of its own (capped by the machine), for a test or
/// a probe that creates sessions itself: `Admitted::by(runtime, &reservation)`. Hold it while
/// the sessions live.
///
/// # Panics
/// When the machine cannot admit `bytes` (the test could not run honestly).
pub fn reservation(bytes: masp_budget::Bytes) -> masp_budget::Reservation {
    let budget = masp_budget::Budget::new(masp_budget::BudgetConfig::default().with_limit(bytes));
    budget
        .try_reserve(bytes.min(budget.effective_limit()), "test sessions")
        .unwrap_or_else(|e| panic!("cannot reserve memory for the test's sessions: {e}"))
}

/// The admission of the sessions a test, a probe or a benchmark creates itself (not through the
/// orchestrator): one reservation for the whole process, held until it exits, as large as the
/// largest load these programs make (a 1 GiB synthetic model peaks at ~2 GiB) with room.
///
/// # Panics
/// When ONNX Runtime is missing (run `cargo xtask setup`) or the machine cannot admit it.
pub fn admitted() -> masp_orchestrator::runtime::Admitted<'static> {
    static RESERVATION: std::sync::OnceLock<masp_budget::Reservation> = std::sync::OnceLock::new();
    let runtime = masp_orchestrator::runtime::Runtime::get().unwrap_or_else(|e| panic!("{e}"));
    let reservation = RESERVATION.get_or_init(|| reservation(masp_budget::Bytes::from_gib(4)));
    masp_orchestrator::runtime::Admitted::by(runtime, reservation)
}
