//! Running a whole batch: plan it with the known future (fewest loads, never over the budget
//! by estimate), then execute the plan step by step.
//!
//! Each task's result is handed to the caller the moment it exists, so a caller that writes it
//! out loses nothing when a later task fails or the process is stopped. A failed task fails its
//! dependents (named in their errors); every other task still runs.

use masp_budget::Bytes;
use serde::Serialize;

use crate::orchestrator::{AudioTask, SequentialOrchestrator};
use crate::plan::{self, ModelCost, ModelId, Plan, PlanTask, Policy, RejectReason, Step, TaskId};
use crate::task::TaskOutput;
use crate::{Error, Result};

/// A task of a batch with its place in the batch's dependency graph.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BatchTask {
    /// The task.
    pub task: AudioTask,
    /// Indices (into the batch) of tasks that must succeed first.
    pub depends_on: Vec<usize>,
    /// Higher runs earlier (within what dependencies allow). Default 0.
    pub priority: i32,
}

/// A batch's plan and what could not be planned.
#[derive(Debug)]
pub struct BatchPlan {
    /// The plan over the tasks that could be planned.
    pub plan: Plan,
    /// Model names by the plan's `ModelId`.
    pub models: Vec<String>,
    /// Tasks whose model could not be prepared (index into the batch, and why).
    pub unplannable: Vec<(usize, Error)>,
    /// The samples per chunk each model's tasks are planned (and will start) with, by model
    /// name and in the order of `models`: the configured default, or smaller where the model's
    /// calibrated working memory at the default would not fit beside it.
    pub chunks: Vec<(String, usize)>,
}

/// How a batch went.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct BatchSummary {
    /// Tasks that succeeded.
    pub succeeded: usize,
    /// Tasks that failed, were skipped, or were rejected by the plan.
    pub failed: usize,
    /// Model loads performed.
    pub n_loads: usize,
    /// Loads the plan expected.
    pub planned_loads: usize,
    /// Whether the caller stopped the batch before its end.
    pub stopped: bool,
}

impl SequentialOrchestrator {
    /// Plan `tasks` against the budget with the current estimates, without running anything.
    /// Models that cannot be prepared (unknown, missing, checksum mismatch, not ONNX) are left
    /// out; their tasks are listed in [`BatchPlan::unplannable`] with the reason.
    ///
    /// # Errors
    /// [`Error::Plan`] for a malformed batch (unknown dependency, cycle).
    pub fn plan_batch(&self, tasks: &[BatchTask]) -> Result<BatchPlan> {
        let mut models: Vec<String> = Vec::new();
        let mut costs: Vec<ModelCost> = Vec::new();
        let mut unplannable: Vec<(usize, Error)> = Vec::new();
        let mut plan_tasks = Vec::new();
        let mut prepared_errors: Vec<(String, String)> = Vec::new();
        let mut chunks: Vec<(String, usize)> = Vec::new();
        // Per model (by `ModelId`): a task's working memory at its planned chunk.
        let mut working: Vec<Bytes> = Vec::new();
        for (i, bt) in tasks.iter().enumerate() {
            let name = &bt.task.model;
            if let Some((_, reason)) = prepared_errors.iter().find(|(n, _)| n == name) {
                unplannable.push((
                    i,
                    Error::ModelInterface {
                        model: name.clone(),
                        reason: reason.clone(),
                    },
                ));
                continue;
            }
            let model_id = match models.iter().position(|m| m == name) {
                Some(id) => id,
                None => match self.prepare(name) {
                    Ok(p) => {
                        costs.push(ModelCost::new(
                            name,
                            p.estimate.load_peak,
                            p.estimate.resident.max(p.external_weight_bytes),
                            p.estimate.resident,
                        ));
                        // Its tasks are costed at the chunk they will run with: the default, or
                        // smaller where the calibrated working memory at the default does not
                        // fit beside the model. Once per model, not per task.
                        let snapshot = self.budget().snapshot();
                        let room = snapshot
                            .limit
                            .saturating_sub(snapshot.baseline)
                            .saturating_sub(p.estimate.resident.max(p.external_weight_bytes));
                        let chunk = self.chunk_fitting(&p.estimate, p.spec.sample_rate_hz, room);
                        chunks.push((name.clone(), chunk));
                        working.push(p.estimate.working_for(chunk as u64));
                        models.push(name.clone());
                        models.len() - 1
                    }
                    Err(e) => {
                        prepared_errors.push((name.clone(), e.to_string()));
                        unplannable.push((i, e));
                        continue;
                    }
                },
            };
            let working = working[model_id];
            let depends_on: Vec<TaskId> = bt.depends_on.iter().map(|&d| TaskId(d)).collect();
            plan_tasks.push(
                PlanTask::new(TaskId(i), ModelId(model_id), &bt.task.label)
                    .with_depends_on(depends_on)
                    .with_priority(bt.priority)
                    .with_working_peak(working),
            );
        }
        // Tasks depending on unplannable ones cannot run either: drop their edges to those (they
        // fail at execution time through `failed`). Indices outside the batch stay, so the
        // planner reports them.
        let excluded: std::collections::BTreeSet<usize> =
            unplannable.iter().map(|(i, _)| *i).collect();
        for t in &mut plan_tasks {
            t.depends_on.retain(|d| !excluded.contains(&d.0));
        }
        let snapshot = self.budget().snapshot();
        let policy = match self.config().max_resident {
            0 | 1 => Policy::OneResident,
            n => Policy::Budgeted {
                max_resident: Some(n),
            },
        };
        let plan = plan::plan(
            &costs,
            &plan_tasks,
            snapshot.limit,
            snapshot.baseline,
            policy,
        )?;
        Ok(BatchPlan {
            plan,
            models,
            unplannable,
            chunks,
        })
    }

    /// Plan and run `tasks`. `on_done(index, result)` is called once per task, in execution
    /// order, as soon as its result is known (failures included).
    ///
    /// # Errors
    /// Only for a malformed batch ([`Error::Plan`]); task failures go to `on_done`.
    pub fn run_batch(
        &mut self,
        tasks: &[BatchTask],
        on_done: &mut dyn FnMut(usize, Result<TaskOutput>),
    ) -> Result<BatchSummary> {
        self.run_batch_until(tasks, &mut |i, result| {
            on_done(i, result);
            std::ops::ControlFlow::Continue(())
        })
    }

    /// [`SequentialOrchestrator::run_batch`] that stops when `on_done` says so — e.g. when the
    /// caller can no longer write results (disk full): models are unloaded, the tasks not run
    /// yet are left for a resumed run, and [`BatchSummary::stopped`] is set.
    ///
    /// # Errors
    /// As [`SequentialOrchestrator::run_batch`].
    pub fn run_batch_until(
        &mut self,
        tasks: &[BatchTask],
        on_done: &mut dyn FnMut(usize, Result<TaskOutput>) -> std::ops::ControlFlow<()>,
    ) -> Result<BatchSummary> {
        let BatchPlan {
            plan,
            models,
            unplannable,
            ..
        } = self.plan_batch(tasks)?;
        let mut summary = BatchSummary {
            planned_loads: plan.n_loads,
            ..BatchSummary::default()
        };
        let mut failed = vec![false; tasks.len()];
        for (i, err) in unplannable {
            failed[i] = true;
            summary.failed += 1;
            if on_done(i, Err(err)).is_break() {
                summary.stopped = true;
            }
        }
        for rejected in &plan.rejected {
            let i = rejected.task.0;
            failed[i] = true;
            summary.failed += 1;
            let reason = match &rejected.reason {
                RejectReason::BlockedBy(t) => {
                    format!("depends on {}, which cannot run", tasks[t.0].task.label)
                }
                // The plan names the model (the reason alone has only its index).
                RejectReason::ModelTooLarge { .. } => plan.explain(rejected),
            };
            let flow = on_done(
                i,
                Err(Error::TaskSkipped {
                    task: tasks[i].task.label.clone(),
                    reason,
                    steps: Vec::new(),
                }),
            );
            summary.stopped |= flow.is_break();
        }
        let loads_before: u64 = self.stats().values().map(|s| s.loads).sum();
        let mut overshoots: std::collections::BTreeMap<String, String> =
            std::collections::BTreeMap::new();
        for step in &plan.steps {
            if summary.stopped {
                break;
            }
            match *step {
                Step::Load(ModelId(m)) => {
                    // A failed load fails its tasks when they come up (process_task reloads).
                    // A load that crossed the limit is calibrated, so the reload is refused
                    // before loading: its tasks say what happened first.
                    if let Err(e @ Error::LoadOvershoot { .. }) = self.load_model(&models[m]) {
                        overshoots.insert(models[m].clone(), e.to_string());
                    }
                }
                Step::Unload(ModelId(m)) => {
                    self.unload_model(&models[m]);
                }
                Step::Run(TaskId(i)) => {
                    let blocked = tasks[i]
                        .depends_on
                        .iter()
                        .find(|&&d| failed.get(d).copied().unwrap_or(true));
                    let result = match blocked {
                        Some(&d) => Err(Error::TaskSkipped {
                            task: tasks[i].task.label.clone(),
                            reason: format!("depends on {}, which failed", tasks[d].task.label),
                            steps: Vec::new(),
                        }),
                        None => self.process_task(&tasks[i].task),
                    };
                    let result = match (result, overshoots.get(&tasks[i].task.model)) {
                        (Err(e), Some(first)) => Err(Error::TaskSkipped {
                            task: tasks[i].task.label.clone(),
                            reason: format!("{first}; then {e}"),
                            steps: Vec::new(),
                        }),
                        (result, _) => result,
                    };
                    if result.is_ok() {
                        summary.succeeded += 1;
                    } else {
                        failed[i] = true;
                        summary.failed += 1;
                    }
                    summary.stopped |= on_done(i, result).is_break();
                }
            }
        }
        self.unload_all();
        let loads_after: u64 = self.stats().values().map(|s| s.loads).sum();
        summary.n_loads = (loads_after - loads_before) as usize;
        Ok(summary)
    }
}
