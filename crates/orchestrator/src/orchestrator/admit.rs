//! Admission: what a load reserves against the budget, the refusal of a model that cannot fit
//! even alone, and the reservation itself (evicting, or waiting for the system, as needed).

use std::time::{Duration, Instant};

use masp_budget::{Bytes, Reservation};
use masp_model_registry::manifest::Isolation;

use super::SequentialOrchestrator;
use super::config::WORKER_BASE_RSS;
use super::events::RunEvent;
use super::model::Prepared;
use crate::runtime::FIRST_SESSION_ALLOWANCE;
use crate::{Error, Result};

impl SequentialOrchestrator {
    /// What loading `prepared` reserves: its estimated load peak, plus what comes with it.
    /// In-process, the first session of the process also pays the runtime's one-time globals.
    /// In a worker, every load pays for a whole process: its base and the runtime's globals.
    pub(super) fn load_reservation(&self, prepared: &Prepared) -> Bytes {
        // A peak measured as a first session already holds the runtime's globals.
        let globals = |allowance: Bytes| {
            if prepared.estimate.includes_runtime_globals {
                Bytes::ZERO
            } else {
                allowance
            }
        };
        let extra = match self.isolation_for(&prepared.spec) {
            Isolation::InProcess => globals(self.runtime.first_session_allowance()),
            Isolation::Process => WORKER_BASE_RSS.saturating_add(globals(FIRST_SESSION_ALLOWANCE)),
        };
        prepared.estimate.load_peak.saturating_add(extra)
    }

    /// Refuse `prepared` before anything is evicted or reserved when its estimated load peak
    /// cannot fit above the baseline even with nothing else loaded.
    ///
    /// # Errors
    /// [`Error::ModelTooLarge`] (recorded as a refused load).
    pub(super) fn refuse_if_too_large(&mut self, name: &str, prepared: &Prepared) -> Result<()> {
        let limit = self.budget.effective_limit();
        let baseline = self.budget.snapshot().baseline;
        if prepared.estimate.load_peak.saturating_add(baseline) > limit {
            let err = Error::ModelTooLarge {
                model: name.to_string(),
                estimate: prepared.estimate.load_peak,
                estimate_source: prepared.estimate.source,
                baseline,
                limit,
            };
            self.record(RunEvent::LoadRefused {
                model: name.into(),
                reason: err.to_string(),
            });
            return Err(err);
        }
        Ok(())
    }

    /// Reserve `bytes` for loading `name`: evict while the ledger is full, and when the system
    /// is short of memory evict everything and wait a bounded time.
    /// Reserve what `copies` loads of `name` take, estimated as for the orchestrator's own
    /// loads, for a caller that creates sessions itself through
    /// [`Admitted::by`](crate::runtime::Admitted::by) (a calibration, a comparison, a
    /// measurement). Hold the reservation while the sessions live.
    ///
    /// # Errors
    /// [`Error::UnknownModel`], verification errors, and the budget's refusal.
    pub fn reserve_loads(&mut self, name: &str, copies: u64) -> Result<Reservation> {
        let prepared = self.prepare(name)?;
        let one = self.load_reservation(&prepared);
        let needed = Bytes::new(one.get().saturating_mul(copies.max(1)));
        self.admit(name, needed)
    }

    pub(super) fn admit(&mut self, name: &str, bytes: Bytes) -> Result<Reservation> {
        let purpose = format!("load {name}");
        let started = Instant::now();
        loop {
            match self.budget.try_reserve(bytes, &purpose) {
                Ok(reservation) => return Ok(reservation),
                Err(masp_budget::Error::OverBudget { .. }) if !self.resident.is_empty() => {
                    self.evict_one("evict");
                }
                Err(masp_budget::Error::SystemMemoryLow {
                    available, margin, ..
                }) => {
                    while !self.resident.is_empty() {
                        self.evict_one("evict");
                    }
                    if started.elapsed() >= self.config.system_wait {
                        let err = Error::SystemMemoryLow {
                            model: name.to_string(),
                            requested: bytes,
                            available,
                            margin,
                            waited: started.elapsed(),
                        };
                        self.record(RunEvent::LoadRefused {
                            model: name.into(),
                            reason: err.to_string(),
                        });
                        return Err(err);
                    }
                    // Another process holds the memory: give it a moment to finish.
                    std::thread::sleep(Duration::from_millis(100));
                }
                Err(e) => {
                    self.record(RunEvent::LoadRefused {
                        model: name.into(),
                        reason: e.to_string(),
                    });
                    return Err(e.into());
                }
            }
        }
    }
}
