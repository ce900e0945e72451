//! Running a task: load its model, run it in chunks under the budget's watch (between chunks,
//! and within each call by the watchdog), and when it crosses the budget retry it down the
//! degradation ladder (smaller chunks, then one intra-op
//! thread); a worker that crashed or hit its cap is retried in a new worker.

use std::sync::Arc;
use std::time::Instant;

use ort::session::RunOptions;

use masp_budget::{Bytes, probe};
use masp_model_registry::estimate::MemoryEstimate;
use masp_profiler::Event;

use super::SequentialOrchestrator;
use super::config::AudioTask;
use super::events::RunEvent;
use super::measure::rss;
use super::model::Resident;
use crate::adapter::TaskContext;
use crate::task::TaskOutput;
use crate::watchdog::WatchGuard;
use crate::worker::WorkerFailure;
use crate::{Error, Result};

impl SequentialOrchestrator {
    /// Run `task`: load its model if needed (switching per the policy), run, clean up. A task
    /// that crosses the budget is cancelled between chunks and retried down the degradation
    /// ladder; if it still cannot fit it is skipped with [`Error::TaskSkipped`].
    ///
    /// # Errors
    /// Load errors, the adapter's errors (audio, inference, output), [`Error::TaskSkipped`].
    pub fn process_task(&mut self, task: &AudioTask) -> Result<TaskOutput> {
        let result = self.process_task_inner(task);
        if let Err(e) = &result {
            self.record(RunEvent::TaskFailed {
                task: task.label.clone(),
                model: task.model.clone(),
                reason: e.to_string(),
            });
        }
        result
    }

    fn process_task_inner(&mut self, task: &AudioTask) -> Result<TaskOutput> {
        let sample_rate_hz = self
            .registry
            .get(&task.model)
            .map_or(16_000, |spec| spec.sample_rate_hz);
        let mut chunk: Option<usize> = None;
        let mut halvings = 0;
        let mut steps: Vec<String> = Vec::new();
        let (mut crash_retries, mut cap_retries) = (0, 0);
        loop {
            if let Err(e) = self.load_model(&task.model) {
                match self.retry_after_worker_failure(
                    task,
                    &e,
                    &mut crash_retries,
                    &mut cap_retries,
                ) {
                    true => continue,
                    false => return Err(e),
                }
            }
            let index = self
                .resident
                .iter()
                .position(|r| r.name == task.model)
                .ok_or_else(|| Error::ModelInterface {
                    model: task.model.clone(),
                    reason: "not resident after load".into(),
                })?;
            let chunk_samples =
                *chunk.get_or_insert_with(|| self.chunk_for(&self.resident[index], sample_rate_hz));
            match self.run_once(index, task, chunk_samples) {
                Ok(output) => return Ok(output),
                Err(e @ (Error::Cancelled { .. } | Error::Terminated { .. })) => {
                    let cancelled = match e {
                        Error::Terminated {
                            rss, peak, limit, ..
                        } => format!(
                            "the watchdog stopped the call at RSS {rss} (peak {peak}), over the \
                             {limit} limit"
                        ),
                        Error::Cancelled { rss, limit, .. } => {
                            format!("RSS {rss} crossed the {limit} budget")
                        }
                        _ => e.to_string(),
                    };
                    let threads = self.resident.get(index).map_or(1, |r| r.threads);
                    // Unload before anything else: the runtime's arenas keep what the task took.
                    self.unload_at(index, "cancel");
                    if !self.config.degrade {
                        return Err(Error::TaskSkipped {
                            task: task.label.clone(),
                            reason: cancelled,
                            steps,
                        });
                    }
                    let min_chunk = (sample_rate_hz / 4).max(512) as usize;
                    // What the cancelled run measured says how large a chunk fits; halving is
                    // the fallback when it says nothing.
                    let next = self.fitting_chunk(&task.model, chunk_samples / 2);
                    if halvings < 3 && next >= min_chunk {
                        halvings += 1;
                        chunk = Some(next);
                        let step = format!("smaller chunks: {chunk_samples} → {next} samples");
                        self.degraded(task, "smaller chunks", &format!("{cancelled}; {step}"));
                        steps.push(step);
                    } else if threads > 1 {
                        self.thread_override.retain(|(n, _)| n != &task.model);
                        self.thread_override.push((task.model.clone(), 1));
                        let step = format!("one intra-op thread instead of {threads}");
                        self.degraded(task, "one thread", &format!("{cancelled}; {step}"));
                        steps.push(step);
                    } else {
                        return Err(Error::TaskSkipped {
                            task: task.label.clone(),
                            reason: cancelled,
                            steps,
                        });
                    }
                }
                Err(e) => {
                    // A dead worker cannot run the next task: unload it now (it is reaped).
                    if self
                        .resident
                        .get(index)
                        .is_some_and(|r| r.adapter.is_dead())
                    {
                        self.unload_at(index, "worker failed");
                    }
                    if self.retry_after_worker_failure(
                        task,
                        &e,
                        &mut crash_retries,
                        &mut cap_retries,
                    ) {
                        continue;
                    }
                    return Err(e);
                }
            }
        }
    }

    /// Whether `error` is a worker failure the retry policy retries (counting the retry).
    fn retry_after_worker_failure(
        &mut self,
        task: &AudioTask,
        error: &Error,
        crash_retries: &mut u32,
        cap_retries: &mut u32,
    ) -> bool {
        let Error::Worker { failure, .. } = error else {
            return false;
        };
        if matches!(failure, WorkerFailure::Spawn { .. }) {
            return false;
        }
        let (used, allowed, what) = if failure.is_cap() {
            (cap_retries, self.config.worker.retries_after_cap, "cap")
        } else {
            (
                crash_retries,
                self.config.worker.retries_after_crash,
                "crash",
            )
        };
        if *used >= allowed {
            return false;
        }
        *used += 1;
        self.degraded(
            task,
            &format!("retry after worker {what}"),
            &format!("{error}; retry {used} of {allowed} in a new worker"),
        );
        true
    }

    fn degraded(&mut self, task: &AudioTask, step: &str, detail: &str) {
        self.profiler.note(&format!("{}: {step}", task.label));
        self.record(RunEvent::Degraded {
            task: task.label.clone(),
            model: task.model.clone(),
            step: step.to_string(),
            detail: detail.to_string(),
        });
    }

    fn run_once(
        &mut self,
        index: usize,
        task: &AudioTask,
        chunk_samples: usize,
    ) -> Result<TaskOutput> {
        let limit = self.budget.effective_limit();
        let working = self.resident[index]
            .estimate
            .working_for(chunk_samples as u64);
        // The task's working memory is admitted like a load. If even that does not fit, running
        // would cross the budget: treat it as a cancellation so the ladder makes it smaller.
        let reservation = match self.budget.try_reserve(working, &task.label) {
            Ok(r) => r,
            Err(masp_budget::Error::OverBudget { .. }) => {
                return Err(Error::Cancelled {
                    task: task.label.clone(),
                    rss: rss().saturating_add(working),
                    limit,
                });
            }
            Err(e) => return Err(e.into()),
        };
        // Every model call of the task runs with these: the watchdog terminates them when RSS
        // crosses the limit mid-call.
        let run_options = Arc::new(RunOptions::new().map_err(|e| Error::Inference {
            model: task.model.clone(),
            reason: e.to_string(),
        })?);
        self.profiler.mark(Event::task_start(&task.label));
        self.peak_rss = self.peak_rss();
        probe::reset_peak_rss();
        let rss_before = rss();
        let alerts = self.profiler.watch(limit);
        let label = task.label.clone();
        // Worker processes count with this one: read their RSS here, not from what they say.
        let pids: Vec<u32> = self.resident.iter().filter_map(|r| r.worker_pid).collect();
        let mut check = |_done: u64| -> Result<()> {
            let now = pids
                .iter()
                .filter_map(|&pid| probe::process_rss_of(pid))
                .fold(rss(), Bytes::saturating_add);
            if alerts.try_recv().is_ok() || now > limit {
                return Err(Error::Cancelled {
                    task: label.clone(),
                    rss: now,
                    limit,
                });
            }
            Ok(())
        };
        let started = Instant::now();
        let watching = self.watchdog.is_some();
        let model = &mut self.resident[index];
        // In process, the watchdog stops the call itself. A worker's call runs in another
        // process, which these run options do not reach: the worker's own watchdog stops it.
        let guard = match (&self.watchdog, model.adapter.worker()) {
            (Some(dog), None) => Some(dog.arm_calls(limit, &run_options)),
            _ => None,
        };
        model.adapter.reset();
        let mut ctx =
            TaskContext::new(chunk_samples, &mut check).with_run_options(Arc::clone(&run_options));
        if watching {
            // A worker adapter hands its worker its share, for the worker's own watchdog.
            ctx = ctx.with_memory_limit(limit);
        }
        let result = match model.adapter.run(&task.input, &task.params, &mut ctx) {
            // The runtime could not get memory: that is the budget's business, not a model bug.
            Err(Error::Inference { reason, .. })
                if reason.contains("Failed to allocate memory") =>
            {
                Err(Error::Cancelled {
                    task: task.label.clone(),
                    rss: rss(),
                    limit,
                })
            }
            other => other,
        };
        let watched = guard.map(WatchGuard::finish);
        // What the watchdog stopped: in process, the call whose run options it terminated; in a
        // worker, the call its own watchdog stopped (counted with this process's RSS).
        let stopped = match (&watched, &result) {
            (Some(w), _) => w.trip.map(|t| (t.rss, w.peak, w.over_for)),
            (
                None,
                Err(Error::Worker {
                    failure: WorkerFailure::Terminated { rss, peak, .. },
                    ..
                }),
            ) => {
                let own = super::measure::rss();
                Some((
                    own.saturating_add(*rss),
                    own.saturating_add(*peak),
                    std::time::Duration::ZERO,
                ))
            }
            _ => None,
        };
        // A call the watchdog stopped fails with the runtime's "terminate flag" error, or with
        // the check after it: either way, it is the watchdog's figures that say why.
        let result = match (stopped, result) {
            (Some((rss, peak, _)), Err(_)) => Err(Error::Terminated {
                task: task.label.clone(),
                model: task.model.clone(),
                rss,
                peak,
                limit,
                chunk_samples,
            }),
            (_, result) => result,
        };
        let ms = started.elapsed().as_secs_f64() * 1e3;
        if let Some(peak) = model
            .adapter
            .worker()
            .and_then(|w| probe::process_peak_rss_of(w.pid))
        {
            self.worker_peak = self.worker_peak.max(peak);
        }
        let model = &mut self.resident[index];
        let working_peak = match model.adapter.worker() {
            Some(w) if result.is_ok() => w.last_task_peak,
            _ => probe::process_peak_rss()
                .unwrap_or_default()
                .saturating_sub(rss_before),
        };
        model.last_used = self.tick;
        let (key, name) = (model.key.clone(), model.name.clone());
        // Cancelled runs are measured too: the next estimate then knows better.
        if result.is_ok() || matches!(result, Err(Error::Cancelled { .. })) {
            self.calibration
                .record_task(&key, chunk_samples as u64, working_peak);
        }
        self.profiler.mark(Event::task_end(&task.label));
        drop(reservation);
        self.cleanup();
        if let Some((rss, peak, over_for)) = stopped {
            self.profiler.note(&format!(
                "{}: watchdog stopped {} at {rss}",
                task.label, task.model
            ));
            self.record(RunEvent::WatchdogFired {
                task: task.label.clone(),
                model: task.model.clone(),
                rss,
                peak,
                limit,
                over_ms: over_for.as_secs_f64() * 1e3,
                chunk_samples,
            });
        }
        if result.is_ok() {
            self.record(RunEvent::TaskDone {
                task: task.label.clone(),
                model: name,
                ms,
                working_peak,
                chunk_samples,
            });
        }
        result
    }

    /// Samples per chunk for `task` on its (resident) model: the configured default, reduced so
    /// the calibrated working memory fits the budget's headroom.
    fn chunk_for(&self, model: &Resident, sample_rate_hz: u32) -> usize {
        self.chunk_fitting(
            &model.estimate,
            sample_rate_hz,
            self.budget.snapshot().headroom(),
        )
    }

    /// The largest chunk, from the configured default down to 512 samples, whose working memory
    /// by `estimate` fits in `room` (at 80% of it, for noise); 512 when none does, and the
    /// default when the estimate has no per-sample figure. The planner costs a task at this
    /// chunk too, so a model whose calibrated working memory at the default chunk would not
    /// fit is planned in smaller chunks, not skipped.
    pub(crate) fn chunk_fitting(
        &self,
        estimate: &MemoryEstimate,
        sample_rate_hz: u32,
        room: Bytes,
    ) -> usize {
        let default = (self.config.chunk_s * f64::from(sample_rate_hz)).max(512.0) as usize;
        let per_sample = estimate.working_per_sample;
        if per_sample <= 0.0 {
            return default;
        }
        let room = room.saturating_sub(estimate.working_fixed).get() as f64;
        let fits = (room / per_sample * 0.8) as usize;
        fits.clamp(512, default)
    }

    /// The largest chunk up to `at_most` samples whose calibrated working memory fits the
    /// budget's headroom with the model loaded (at 80% of it, for noise).
    fn fitting_chunk(&self, model: &str, at_most: usize) -> usize {
        let Ok(prepared) = self.prepare(model) else {
            return at_most;
        };
        let per_sample = prepared.estimate.working_per_sample;
        if per_sample <= 0.0 {
            return at_most;
        }
        let snapshot = self.budget.snapshot();
        let room = snapshot
            .limit
            .saturating_sub(snapshot.baseline)
            .saturating_sub(snapshot.reserved)
            .saturating_sub(prepared.estimate.resident)
            .saturating_sub(prepared.estimate.working_fixed);
        ((room.get() as f64 * 0.8 / per_sample) as usize).min(at_most)
    }
}
