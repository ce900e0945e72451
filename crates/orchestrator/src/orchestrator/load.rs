//! Loading: make a model resident — prepared, admitted, then created in this process or spawned
//! in a worker process of its own — and from then on hold what it really costs.

use masp_budget::{Bytes, Reservation, probe, trim};
use masp_model_registry::manifest::Isolation;
use masp_profiler::Event;

use super::SequentialOrchestrator;
use super::events::RunEvent;
use super::model::{Prepared, Resident};
use crate::Result;
use crate::adapter::ModelAdapter;
use crate::runtime::{Admitted, SessionOptions};
use crate::worker::protocol::LoadRequest;
use crate::worker::{WorkerAdapter, WorkerStatus};

/// What a load that succeeded measured, and what it needs to become resident.
struct Loaded {
    adapter: Box<dyn ModelAdapter>,
    /// The worker process running it, under process isolation (read once, after the load).
    worker: Option<WorkerStatus>,
    threads: usize,
    /// This process's RSS before the load: what the unload is checked against.
    rss_before: Bytes,
    /// The RSS of this process at the load's peak, plus the worker's peak when it ran in one.
    process_peak: Bytes,
    load_ms: f64,
    /// Whether the session was the first of its process (for calibration).
    first_in_process: bool,
    /// The model's load peak (RSS growth).
    measured_peak: Bytes,
    /// The model's RSS growth once loaded.
    resident: Bytes,
    /// What it holds: its growth in-process, the whole process in a worker.
    whole: Bytes,
}

impl SequentialOrchestrator {
    fn threads_for(&self, name: &str) -> usize {
        self.thread_override
            .iter()
            .find(|(n, _)| n == name)
            .map_or(self.config.session.intra_op_threads, |(_, t)| *t)
    }

    /// Make `name` resident, unloading or evicting others as the policy requires.
    ///
    /// # Errors
    /// [`Error::ModelTooLarge`] (refused before loading), [`Error::SystemMemoryLow`] (the machine
    /// has no room even after evicting and waiting), [`Error::Budget`], load errors.
    ///
    /// [`Error::ModelTooLarge`]: crate::Error::ModelTooLarge
    /// [`Error::SystemMemoryLow`]: crate::Error::SystemMemoryLow
    /// [`Error::Budget`]: crate::Error::Budget
    pub fn load_model(&mut self, name: &str) -> Result<()> {
        self.tick += 1;
        if let Some(r) = self.resident.iter_mut().find(|r| r.name == name) {
            r.last_used = self.tick;
            return Ok(());
        }
        let prepared = match self.prepare(name).and_then(|p| {
            if p.lean_pending {
                self.write_lean_copy(p)
            } else {
                Ok(p)
            }
        }) {
            Ok(p) => p,
            Err(e) => {
                self.record(RunEvent::LoadRefused {
                    model: name.into(),
                    reason: e.to_string(),
                });
                return Err(e);
            }
        };
        self.refuse_if_too_large(name, &prepared)?;
        while self.resident.len() >= self.config.max_resident.max(1) {
            self.evict_one("switch");
        }
        let needed = self.load_reservation(&prepared);
        let reservation = self.admit(name, needed)?;
        self.load_admitted(prepared, reservation)
    }

    /// Load an admitted model (in-process or in a worker), measure the load, and keep it.
    fn load_admitted(&mut self, prepared: Prepared, reservation: Reservation) -> Result<()> {
        let name = prepared.spec.name.clone();
        let threads = self.threads_for(&name);
        let options = SessionOptions {
            intra_op_threads: threads,
            prepacking: self.config.session.prepacking
                && prepared.external_weight_bytes == Bytes::new(0),
        };
        // Give back what verifying and reading the file left on the heap, so the pre-load
        // baseline that the unload is checked against is honest.
        trim::release_freed_memory();
        self.profiler.mark(Event::load_start(&name));
        self.peak_rss = self.peak_rss();
        let isolation = self.isolation_for(&prepared.spec);
        let first_in_process = self.is_first_session(&prepared.spec);
        let (loaded, memory) = probe::measure(|| match isolation {
            Isolation::InProcess => self.load_in_process(&prepared, options, &reservation),
            Isolation::Process => self.spawn_worker(&prepared, options, reservation.bytes()),
        });
        let load_ms = memory.elapsed.as_secs_f64() * 1e3;
        let (rss_before, rss_after, peak) = (memory.rss_before, memory.rss_after, memory.peak);
        self.profiler.mark(Event::load_end(&name));
        let adapter = match loaded {
            Ok(adapter) => adapter,
            Err(e) => {
                drop(reservation);
                self.cleanup();
                self.record(RunEvent::LoadRefused {
                    model: name,
                    reason: e.to_string(),
                });
                return Err(e);
            }
        };
        let worker = adapter.worker();
        // In a worker the model's growth is measured by the worker itself; what it holds is
        // the whole process.
        let (measured_peak, resident, whole) = match worker {
            Some(w) => (
                w.load.peak.saturating_sub(w.load.rss_before),
                w.load.rss_after.saturating_sub(w.load.rss_before),
                w.load.rss_after,
            ),
            None => {
                let resident = rss_after.saturating_sub(rss_before);
                (peak.saturating_sub(rss_before), resident, resident)
            }
        };
        let process_peak = match worker {
            Some(w) => rss_before.saturating_add(w.load.peak),
            None => peak,
        };
        let loaded = Loaded {
            adapter,
            worker,
            threads,
            rss_before,
            process_peak,
            load_ms,
            first_in_process,
            measured_peak,
            resident,
            whole,
        };
        self.keep_loaded(prepared, reservation, loaded)
    }

    /// In-process isolation: create the session here, with the adapter for the model's kind.
    fn load_in_process(
        &self,
        prepared: &Prepared,
        options: SessionOptions,
        reservation: &Reservation,
    ) -> Result<Box<dyn ModelAdapter>> {
        let admitted = Admitted::by(self.runtime, reservation);
        self.adapters
            .load(&admitted, &prepared.spec, &prepared.path, options)
    }

    /// Process isolation: spawn a worker that loads the model, capped from `reserved` (the
    /// load's reservation).
    fn spawn_worker(
        &self,
        prepared: &Prepared,
        options: SessionOptions,
        reserved: Bytes,
    ) -> Result<Box<dyn ModelAdapter>> {
        let threads = options.intra_op_threads;
        let request = LoadRequest {
            name: prepared.spec.name.clone(),
            kind: prepared.spec.kind,
            path: prepared.path.clone(),
            sample_rate_hz: prepared.spec.sample_rate_hz,
            generic: prepared.spec.generic.clone(),
            intra_op_threads: u32::try_from(threads).unwrap_or(u32::MAX),
            prepacking: options.prepacking,
        };
        // The cap covers the load, the task that follows it, and weights mapped from
        // an external-data file (address space the reservation does not count).
        let working = prepared
            .estimate
            .working_for((self.config.chunk_s * f64::from(prepared.spec.sample_rate_hz)) as u64);
        let cap = self
            .config
            .worker
            .cap
            .cap_for(reserved.saturating_add(working), threads)
            .saturating_add(prepared.external_weight_bytes);
        WorkerAdapter::spawn(&self.config.worker, request, cap)
            .map(|w| Box::new(w) as Box<dyn ModelAdapter>)
    }

    /// Record what the load measured, shrink the reservation to what the model holds, and make
    /// it resident; a model that turns out not to fit is unloaded again and refused.
    fn keep_loaded(
        &mut self,
        prepared: Prepared,
        mut reservation: Reservation,
        loaded: Loaded,
    ) -> Result<()> {
        let Loaded {
            adapter,
            worker,
            threads,
            rss_before,
            process_peak,
            load_ms,
            first_in_process,
            measured_peak,
            resident,
            whole,
        } = loaded;
        let name = prepared.spec.name.clone();
        // Calibrated at once, so the next estimate knows, whatever happens below.
        self.calibration.record_load(
            &prepared.key,
            prepared.metadata_estimate.load_peak,
            measured_peak,
            resident,
            first_in_process,
        );
        if let Some(stated) = prepared.spec.memory_override
            && measured_peak > stated.saturating_add(stated)
        {
            self.record(RunEvent::OverrideExceeded {
                model: name.clone(),
                stated,
                measured: measured_peak,
            });
        }
        let limit = self.budget.effective_limit();
        if process_peak > limit {
            // The session exists, but creating it crossed the limit: it is not kept.
            if let Some(w) = worker {
                self.profiler.unfollow(w.pid);
            }
            drop(adapter);
            drop(reservation);
            self.cleanup();
            let error = crate::Error::LoadOvershoot {
                model: name.clone(),
                peak: process_peak,
                over: process_peak.saturating_sub(limit),
                limit,
                estimate: prepared.estimate.load_peak,
                estimate_source: prepared.estimate.source,
            };
            self.record(RunEvent::LoadRefused {
                model: name,
                reason: error.to_string(),
            });
            return Err(error);
        }
        if let Some(w) = worker {
            self.profiler.follow(w.pid);
            self.worker_peak = self.worker_peak.max(w.load.peak);
        }
        self.record(RunEvent::Loaded {
            model: name.clone(),
            source: prepared.estimate.source,
            estimated_peak: prepared.estimate.load_peak,
            measured_peak,
            resident,
            load_ms,
            threads,
            worker_pid: worker.map(|w| w.pid),
        });
        // Hold what the model really costs from now on (the load peak has passed). Mapped
        // external weights are not resident yet but will be after the first run: count them.
        let held = whole.max(prepared.external_weight_bytes);
        if let Err(e) = reservation.resize(held) {
            // The estimate was too low and the model does not fit: give the memory back now.
            // The calibration just recorded makes the next estimate right.
            if let Some(w) = worker {
                self.profiler.unfollow(w.pid);
            }
            drop(adapter);
            drop(reservation);
            self.cleanup();
            self.record(RunEvent::LoadRefused {
                model: name,
                reason: e.to_string(),
            });
            return Err(e.into());
        }
        let mut estimate = prepared.estimate;
        estimate.resident = held;
        self.resident.push(Resident {
            name,
            adapter,
            _reservation: reservation,
            rss_before_load: rss_before,
            estimate,
            key: prepared.key,
            last_used: self.tick,
            threads,
            worker_pid: worker.map(|w| w.pid),
            in_process: if worker.is_some() { Bytes::ZERO } else { held },
        });
        if worker.is_some() {
            self.refresh_baseline();
        }
        Ok(())
    }

    /// Load several models to be resident at the same time (the "load everything" strategy the
    /// sequential one is compared with). The whole set is admitted first — the sum of their
    /// resident estimates plus the largest extra load peak — so a set that cannot fit is refused
    /// before anything is loaded.
    ///
    /// # Errors
    /// [`Error::Budget`] naming the total when the set does not fit; load errors.
    ///
    /// [`Error::Budget`]: crate::Error::Budget
    pub fn load_together(&mut self, names: &[&str]) -> Result<()> {
        let mut prepared = Vec::new();
        for name in names {
            prepared.push(self.prepare(name)?);
        }
        let resident: Bytes = prepared.iter().map(|p| p.estimate.resident).sum();
        let extra = prepared
            .iter()
            .map(|p| p.estimate.load_peak.saturating_sub(p.estimate.resident))
            .max()
            .unwrap_or_default();
        let purpose = format!("load together {}", names.join(" + "));
        while !self.resident.is_empty() {
            self.evict_one("switch");
        }
        let whole = self
            .budget
            .try_reserve(resident.saturating_add(extra), &purpose)?;
        drop(whole);
        self.config.max_resident = self.config.max_resident.max(names.len());
        for p in prepared {
            let needed = self.load_reservation(&p);
            let reservation = self.admit(&p.spec.name.clone(), needed)?;
            self.load_admitted(p, reservation)?;
        }
        Ok(())
    }
}
