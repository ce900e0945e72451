//! Measuring the resident memory of one phase (before, after and peak), and the admission of
//! the sessions tests create themselves.

// Measuring a phase is masp-budget's (one probe measures a load, in the orchestrator, its
// workers, the CLI and tests alike); re-exported here for the test framework's users.
pub use masp_budget::probe::{PhaseMemory, measure};

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
