//! Checks a batch, rejects the tasks that cannot fit, and turns the rest into dense indices,
//! priority levels and memory figures for the search.

use std::collections::HashMap;

use masp_budget::Bytes;

use super::{
    ModelCost, ModelId, PlanError, PlanOptions, PlanTask, Policy, RejectReason, Rejected, TaskId,
};

/// The planned part of a batch, densely indexed. Tasks are numbered `0..n_tasks` in input
/// order (rejected tasks left out), models `0..n_models` in `ModelId` order (unused models left
/// out). Memory figures are bytes as `u128`, so sums never overflow.
#[derive(Debug)]
pub(super) struct Instance {
    pub(super) n_tasks: usize,
    /// Dense task → caller's id.
    pub(super) task_ids: Vec<TaskId>,
    /// Dense task → dense model.
    pub(super) model_of: Vec<usize>,
    pub(super) working_peak: Vec<u128>,
    /// Dense dependencies (deduplicated).
    pub(super) deps: Vec<Vec<usize>>,
    /// Inverse of `deps`.
    pub(super) dependents: Vec<Vec<usize>>,
    pub(super) n_edges: usize,
    /// Priority level of each task: 0 runs first (highest effective priority).
    pub(super) level: Vec<usize>,
    /// Tasks of each level, ascending.
    pub(super) level_tasks: Vec<Vec<usize>>,
    pub(super) n_models: usize,
    /// Dense model → caller's id.
    pub(super) model_ids: Vec<ModelId>,
    /// `max(load_peak, resident)`: what a load needs on top of what is already resident.
    pub(super) load_need: Vec<u128>,
    pub(super) resident: Vec<u128>,
    pub(super) load_bytes: Vec<u64>,
    pub(super) limit: u128,
    pub(super) baseline: u128,
    /// 1 for [`Policy::OneResident`]; `usize::MAX` when only memory limits residency.
    pub(super) max_resident: usize,
}

impl Instance {
    /// Sum of resident sizes of `models`.
    pub(super) fn resident_sum(&self, models: impl IntoIterator<Item = usize>) -> u128 {
        models.into_iter().map(|m| self.resident[m]).sum()
    }

    /// Whether `m` can be loaded while `resident_bytes` of models are resident.
    pub(super) fn load_fits(&self, resident_bytes: u128, m: usize) -> bool {
        self.baseline + resident_bytes + self.load_need[m] <= self.limit
    }

    /// Whether task `t` can run while `resident_bytes` of models (its own included) are
    /// resident.
    pub(super) fn run_fits(&self, resident_bytes: u128, t: usize) -> bool {
        self.baseline + resident_bytes + self.working_peak[t] <= self.limit
    }
}

/// Validates the batch and splits it into the planned instance and the rejected tasks.
pub(super) fn prepare(
    models: &[ModelCost],
    tasks: &[PlanTask],
    options: &PlanOptions,
) -> Result<(Instance, Vec<Rejected>), PlanError> {
    let max_resident = match options.policy {
        Policy::OneResident => 1,
        Policy::Budgeted { max_resident: None } => usize::MAX,
        Policy::Budgeted {
            max_resident: Some(0),
        } => return Err(PlanError::ZeroResident),
        Policy::Budgeted {
            max_resident: Some(n),
        } => n,
    };

    let mut index_of = HashMap::with_capacity(tasks.len());
    for (i, t) in tasks.iter().enumerate() {
        if index_of.insert(t.id, i).is_some() {
            return Err(PlanError::DuplicateTask { task: t.id });
        }
        if t.model.0 >= models.len() {
            return Err(PlanError::UnknownModel {
                task: t.id,
                model: t.model,
                n_models: models.len(),
            });
        }
    }
    let mut deps: Vec<Vec<usize>> = Vec::with_capacity(tasks.len());
    for t in tasks {
        let mut d = Vec::with_capacity(t.depends_on.len());
        for dep in &t.depends_on {
            let Some(&j) = index_of.get(dep) else {
                return Err(PlanError::UnknownDependency {
                    task: t.id,
                    dependency: *dep,
                });
            };
            d.push(j);
        }
        d.sort_unstable();
        d.dedup();
        deps.push(d);
    }
    let topo = topological_order(tasks, &deps)?;

    // Rejections, in dependency order so a task sees its dependencies' verdicts. `cause[i]` is
    // the too-large task that task i's rejection traces back to.
    let limit = options.limit;
    let mut cause: Vec<Option<TaskId>> = vec![None; tasks.len()];
    let mut reason: Vec<Option<RejectReason>> = vec![None; tasks.len()];
    for &i in &topo {
        let t = &tasks[i];
        let m = &models[t.model.0];
        let estimate = options
            .baseline
            .saturating_add(m.load_peak.max(m.resident.saturating_add(t.working_peak)));
        if estimate > limit {
            cause[i] = Some(t.id);
            reason[i] = Some(RejectReason::ModelTooLarge {
                model: t.model,
                estimate,
                limit,
            });
        } else if let Some(root) = deps[i].iter().find_map(|&d| cause[d]) {
            cause[i] = Some(root);
            reason[i] = Some(RejectReason::BlockedBy(root));
        }
    }
    let rejected: Vec<Rejected> = reason
        .iter()
        .zip(tasks)
        .filter_map(|(r, t)| r.clone().map(|reason| Rejected { task: t.id, reason }))
        .collect();

    // Dense numbering of what is planned.
    let mut dense: Vec<Option<usize>> = vec![None; tasks.len()];
    let mut planned = Vec::new();
    for (i, c) in cause.iter().enumerate() {
        if c.is_none() {
            dense[i] = Some(planned.len());
            planned.push(i);
        }
    }
    let n = planned.len();
    let mut model_dense: Vec<Option<usize>> = vec![None; models.len()];
    for &i in &planned {
        model_dense[tasks[i].model.0] = Some(0);
    }
    let mut model_ids = Vec::new();
    for (m, slot) in model_dense.iter_mut().enumerate() {
        if slot.is_some() {
            *slot = Some(model_ids.len());
            model_ids.push(ModelId(m));
        }
    }

    let mut task_ids = Vec::with_capacity(n);
    let mut model_of = Vec::with_capacity(n);
    let mut working_peak = Vec::with_capacity(n);
    let mut dense_deps = Vec::with_capacity(n);
    let mut dependents = vec![Vec::new(); n];
    let mut n_edges = 0;
    for (k, &i) in planned.iter().enumerate() {
        let t = &tasks[i];
        task_ids.push(t.id);
        // Every planned task's model was numbered above.
        model_of.push(model_dense[t.model.0].unwrap_or(0));
        working_peak.push(u128::from(t.working_peak.get()));
        // A planned task's dependencies are all planned (otherwise it would be blocked).
        let d: Vec<usize> = deps[i].iter().filter_map(|&j| dense[j]).collect();
        for &j in &d {
            dependents[j].push(k);
        }
        n_edges += d.len();
        dense_deps.push(d);
    }

    // Effective priority: own, raised to that of every planned dependent. Reverse topological
    // order visits dependents first.
    let mut effective: Vec<i32> = planned.iter().map(|&i| tasks[i].priority).collect();
    for &i in topo.iter().rev() {
        let Some(k) = dense[i] else { continue };
        let lifted = dependents[k]
            .iter()
            .map(|&d| effective[d])
            .fold(effective[k], i32::max);
        effective[k] = lifted;
    }
    let mut levels: Vec<i32> = effective.clone();
    levels.sort_unstable_by(|a, b| b.cmp(a));
    levels.dedup();
    let level: Vec<usize> = effective
        .iter()
        .map(|p| levels.partition_point(|q| q > p))
        .collect();
    let mut level_tasks = vec![Vec::new(); levels.len()];
    for (k, &l) in level.iter().enumerate() {
        level_tasks[l].push(k);
    }

    let model_costs = model_ids.iter().map(|id| &models[id.0]);
    let as_u128 = |b: Bytes| u128::from(b.get());
    let inst = Instance {
        n_tasks: n,
        task_ids,
        model_of,
        working_peak,
        deps: dense_deps,
        dependents,
        n_edges,
        level,
        level_tasks,
        n_models: model_ids.len(),
        load_need: model_costs
            .clone()
            .map(|m| as_u128(m.load_peak.max(m.resident)))
            .collect(),
        resident: model_costs.clone().map(|m| as_u128(m.resident)).collect(),
        load_bytes: model_costs.map(|m| m.load_bytes.get()).collect(),
        model_ids,
        limit: as_u128(options.limit),
        baseline: as_u128(options.baseline),
        max_resident,
    };
    Ok((inst, rejected))
}

/// Kahn's algorithm over all tasks (indices into `tasks`), or the cycle that prevents it.
fn topological_order(tasks: &[PlanTask], deps: &[Vec<usize>]) -> Result<Vec<usize>, PlanError> {
    let n = tasks.len();
    let mut unmet: Vec<usize> = deps.iter().map(Vec::len).collect();
    let mut dependents = vec![Vec::new(); n];
    for (i, d) in deps.iter().enumerate() {
        for &j in d {
            dependents[j].push(i);
        }
    }
    let mut order: Vec<usize> = (0..n).filter(|&i| unmet[i] == 0).collect();
    let mut next = 0;
    while next < order.len() {
        let i = order[next];
        next += 1;
        for &d in &dependents[i] {
            unmet[d] -= 1;
            if unmet[d] == 0 {
                order.push(d);
            }
        }
    }
    if order.len() == n {
        return Ok(order);
    }
    // Every task left has an unmet dependency that is also left: following those from any of
    // them must come back to a task already seen, and the loop from there is a cycle.
    let mut position: Vec<Option<usize>> = vec![None; n];
    let mut walk = Vec::new();
    let mut current = (0..n).find(|&i| unmet[i] > 0);
    while let Some(i) = current {
        if let Some(start) = position[i] {
            return Err(PlanError::Cycle {
                tasks: walk[start..].iter().map(|&k: &usize| tasks[k].id).collect(),
            });
        }
        position[i] = Some(walk.len());
        walk.push(i);
        current = deps[i].iter().copied().find(|&j| unmet[j] > 0);
    }
    // Unreachable for a left-over set (see above); an empty cycle is still an honest error.
    Err(PlanError::Cycle { tasks: Vec::new() })
}
