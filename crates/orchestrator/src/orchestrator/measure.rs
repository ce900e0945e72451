//! Measuring memory: this process's RSS, and the worker processes' RSS folded into the
//! budget's baseline. Shared by loading, unloading and running tasks.

use masp_budget::{Bytes, probe};

use super::SequentialOrchestrator;

/// This process's RSS now (zero if it cannot be read).
pub(super) fn rss() -> Bytes {
    probe::process_rss().unwrap_or_default()
}

impl SequentialOrchestrator {
    /// Measure the budget's baseline again, counting the resident models' worker processes.
    pub(super) fn refresh_baseline(&self) {
        self.budget.measure_baseline_with(self.workers_rss());
    }

    /// RSS of the resident models' worker processes, together.
    fn workers_rss(&self) -> Bytes {
        self.resident
            .iter()
            .filter_map(|r| r.worker_pid.and_then(probe::process_rss_of))
            .fold(Bytes::ZERO, Bytes::saturating_add)
    }
}
