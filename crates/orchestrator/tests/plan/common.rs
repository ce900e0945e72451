//! Independent checkers and brute-force optima for planner tests: none of this uses the
//! planner's own code, so agreement means something.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, HashSet};

use masp_budget::Bytes;
use masp_orchestrator::plan::{ModelCost, ModelId, Plan, PlanTask, RejectReason, Step, TaskId};

/// A batch and the memory it is planned under.
#[derive(Clone, Debug)]
pub struct Case {
    pub models: Vec<ModelCost>,
    pub tasks: Vec<PlanTask>,
    pub limit: Bytes,
    pub baseline: Bytes,
}

/// A model with equal load peak and resident size.
pub fn model(name: &str, size: u64, load_bytes: u64) -> ModelCost {
    ModelCost::new(
        name,
        Bytes::new(size),
        Bytes::new(size),
        Bytes::new(load_bytes),
    )
}

pub fn task(id: usize, model: usize, deps: &[usize]) -> PlanTask {
    PlanTask::new(TaskId(id), ModelId(model), format!("t{id}"))
        .with_depends_on(deps.iter().map(|&d| TaskId(d)))
}

/// What a task needs with its model alone: baseline + max(load peak, resident + working peak).
pub fn alone(case: &Case, t: &PlanTask) -> u64 {
    let m = &case.models[t.model.0];
    case.baseline.get()
        + m.load_peak
            .get()
            .max(m.resident.get())
            .max(m.resident.get() + t.working_peak.get())
}

fn by_id(case: &Case) -> HashMap<TaskId, &PlanTask> {
    case.tasks.iter().map(|t| (t.id, t)).collect()
}

/// Tasks that cannot fit, and every task depending on one of them, transitively.
pub fn expected_rejected(case: &Case) -> HashSet<TaskId> {
    let mut rejected: HashSet<TaskId> = case
        .tasks
        .iter()
        .filter(|t| alone(case, t) > case.limit.get())
        .map(|t| t.id)
        .collect();
    loop {
        let before = rejected.len();
        for t in &case.tasks {
            if t.depends_on.iter().any(|d| rejected.contains(d)) {
                rejected.insert(t.id);
            }
        }
        if rejected.len() == before {
            return rejected;
        }
    }
}

/// Own priority raised to that of every planned dependent (fixpoint), for planned tasks.
pub fn effective_priorities(case: &Case, rejected: &HashSet<TaskId>) -> HashMap<TaskId, i32> {
    let mut eff: HashMap<TaskId, i32> = case
        .tasks
        .iter()
        .filter(|t| !rejected.contains(&t.id))
        .map(|t| (t.id, t.priority))
        .collect();
    loop {
        let mut changed = false;
        for t in &case.tasks {
            let Some(&p) = eff.get(&t.id) else { continue };
            for d in &t.depends_on {
                if let Some(q) = eff.get_mut(d)
                    && *q < p
                {
                    *q = p;
                    changed = true;
                }
            }
        }
        if !changed {
            return eff;
        }
    }
}

/// Checks everything a plan promises, from scratch. `max_resident` is 1 for `OneResident`.
pub fn check_plan(case: &Case, plan: &Plan, max_resident: usize) {
    let tasks = by_id(case);
    let rejected = expected_rejected(case);
    let got: HashSet<TaskId> = plan.rejected.iter().map(|r| r.task).collect();
    assert_eq!(got, rejected, "rejected set");
    for r in &plan.rejected {
        let t = tasks[&r.task];
        match &r.reason {
            RejectReason::ModelTooLarge {
                model,
                estimate,
                limit,
            } => {
                assert_eq!(*model, t.model);
                assert_eq!(estimate.get(), alone(case, t));
                assert_eq!(*limit, case.limit);
                assert!(estimate > limit);
            }
            RejectReason::BlockedBy(root) => {
                assert!(
                    alone(case, t) <= case.limit.get(),
                    "blocked task fits alone"
                );
                assert!(
                    alone(case, tasks[root]) > case.limit.get(),
                    "root is too large"
                );
                assert!(
                    depends_transitively(case, t.id, *root),
                    "{root} is upstream of {}",
                    t.id
                );
            }
            other => panic!("unexpected reason {other:?}"),
        }
    }

    // Every planned task runs once, after its dependencies, in priority levels.
    let eff = effective_priorities(case, &rejected);
    let order: Vec<TaskId> = plan.run_order().collect();
    let mut seen = HashSet::new();
    for (i, id) in order.iter().enumerate() {
        assert!(seen.insert(*id), "{id} runs twice");
        assert!(!rejected.contains(id), "rejected {id} runs");
        for d in &tasks[id].depends_on {
            assert!(seen.contains(d), "{id} runs before its dependency {d}");
        }
        if i > 0 {
            assert!(
                eff[&order[i - 1]] >= eff[id],
                "priority order broken at {id}"
            );
        }
    }
    assert_eq!(
        seen.len(),
        case.tasks.len() - rejected.len(),
        "every planned task runs"
    );

    // The memory rule at every step, and the totals.
    let base = case.baseline.get();
    let mut resident: Vec<ModelId> = Vec::new();
    let sum = |r: &[ModelId]| {
        r.iter()
            .map(|m| case.models[m.0].resident.get())
            .sum::<u64>()
    };
    let mut peak = base;
    let (mut loads, mut bytes) = (0, 0);
    assert_eq!(plan.step_peaks.len(), plan.steps.len());
    for (step, &step_peak) in plan.steps.iter().zip(&plan.step_peaks) {
        let now = match *step {
            Step::Load(m) => {
                assert!(!resident.contains(&m), "{m} loaded twice");
                let c = &case.models[m.0];
                let now = base + sum(&resident) + c.load_peak.get().max(c.resident.get());
                resident.push(m);
                assert!(resident.len() <= max_resident, "too many resident");
                loads += 1;
                bytes += c.load_bytes.get();
                now
            }
            Step::Run(t) => {
                let t = tasks[&t];
                assert!(
                    resident.contains(&t.model),
                    "{} runs without its model",
                    t.id
                );
                base + sum(&resident) + t.working_peak.get()
            }
            Step::Unload(m) => {
                let now = base + sum(&resident);
                let at = resident.iter().position(|&r| r == m);
                resident.remove(at.expect("unloading a model that is not loaded"));
                now
            }
        };
        assert!(
            now <= case.limit.get(),
            "{step:?} needs {now} > {}",
            case.limit
        );
        assert_eq!(step_peak.get(), now, "step peak of {step:?}");
        peak = peak.max(now);
    }
    assert!(resident.is_empty(), "models left loaded at the end");
    assert_eq!(plan.n_loads, loads);
    assert_eq!(plan.bytes_loaded.get(), bytes);
    assert_eq!(plan.expected_peak.get(), peak);
}

fn depends_transitively(case: &Case, from: TaskId, to: TaskId) -> bool {
    let tasks = by_id(case);
    let mut stack = vec![from];
    let mut seen = HashSet::new();
    while let Some(t) = stack.pop() {
        for &d in &tasks[&t].depends_on {
            if d == to {
                return true;
            }
            if seen.insert(d) {
                stack.push(d);
            }
        }
    }
    false
}

/// The planned tasks with their dependency indices and effective priorities, for brute force.
struct Flat {
    model: Vec<usize>,
    working_peak: Vec<u64>,
    deps: Vec<Vec<usize>>,
    eff: Vec<i32>,
}

fn flatten(case: &Case) -> Flat {
    let rejected = expected_rejected(case);
    let eff = effective_priorities(case, &rejected);
    let planned: Vec<&PlanTask> = case
        .tasks
        .iter()
        .filter(|t| !rejected.contains(&t.id))
        .collect();
    let index: HashMap<TaskId, usize> =
        planned.iter().enumerate().map(|(i, t)| (t.id, i)).collect();
    Flat {
        model: planned.iter().map(|t| t.model.0).collect(),
        working_peak: planned.iter().map(|t| t.working_peak.get()).collect(),
        deps: planned
            .iter()
            .map(|t| t.depends_on.iter().map(|d| index[d]).collect())
            .collect(),
        eff: planned.iter().map(|t| eff[&t.id]).collect(),
    }
}

/// Whether task `t` may run next given `done` (a bitmask): dependencies done, and no task left
/// with a higher effective priority.
fn may_run(f: &Flat, done: u32, t: usize) -> bool {
    let top = (0..f.model.len())
        .filter(|&u| done & (1 << u) == 0)
        .map(|u| f.eff[u])
        .max();
    done & (1 << t) == 0 && f.deps[t].iter().all(|&d| done & (1 << d) != 0) && Some(f.eff[t]) == top
}

/// One-resident optimum by enumerating every valid task order: loads = 1 + model changes,
/// bytes = the load bytes of each model switched to.
pub fn brute_one_resident(case: &Case) -> (usize, u64) {
    fn go(
        case: &Case,
        f: &Flat,
        done: u32,
        last: Option<usize>,
        cost: (usize, u64),
        best: &mut (usize, u64),
    ) {
        if done.count_ones() as usize == f.model.len() {
            *best = (*best).min(cost);
            return;
        }
        for t in 0..f.model.len() {
            if !may_run(f, done, t) {
                continue;
            }
            let m = f.model[t];
            let cost = if last == Some(m) {
                cost
            } else {
                (cost.0 + 1, cost.1 + case.models[m].load_bytes.get())
            };
            go(case, f, done | 1 << t, Some(m), cost, best);
        }
    }
    let f = flatten(case);
    let mut best = (usize::MAX, u64::MAX);
    go(case, &f, 0, None, (0, 0), &mut best);
    best
}

/// Optimum with several resident models by Dijkstra over (tasks done, models resident), with
/// every elementary move at every state: load any model that fits, evict any model, run any task
/// that may run and fits. No closure, no minimal evictions: an independent check of both.
pub fn brute_budgeted(case: &Case, max_resident: usize) -> (usize, u64) {
    let f = flatten(case);
    let n = f.model.len();
    let all = if n == 32 { u32::MAX } else { (1u32 << n) - 1 };
    let nm = case.models.len();
    let res = |r: u32| -> u64 {
        (0..nm)
            .filter(|&m| r & (1 << m) != 0)
            .map(|m| case.models[m].resident.get())
            .sum()
    };
    let (base, limit) = (case.baseline.get(), case.limit.get());
    let mut dist: HashMap<(u32, u32), (usize, u64)> = HashMap::new();
    let mut heap = BinaryHeap::new();
    heap.push(Reverse(((0usize, 0u64), 0u32, 0u32)));
    dist.insert((0, 0), (0, 0));
    while let Some(Reverse((cost, done, r))) = heap.pop() {
        if dist.get(&(done, r)) != Some(&cost) {
            continue;
        }
        if done == all {
            return cost;
        }
        let mut relax = |state: (u32, u32), c: (usize, u64)| {
            if dist.get(&state).is_none_or(|&old| c < old) {
                dist.insert(state, c);
                heap.push(Reverse((c, state.0, state.1)));
            }
        };
        for m in 0..nm {
            let c = &case.models[m];
            if r & (1 << m) != 0 {
                relax((done, r & !(1 << m)), cost);
            } else if (r.count_ones() as usize) < max_resident
                && base + res(r) + c.load_peak.get().max(c.resident.get()) <= limit
            {
                relax(
                    (done, r | 1 << m),
                    (cost.0 + 1, cost.1 + c.load_bytes.get()),
                );
            }
        }
        for t in 0..n {
            if may_run(&f, done, t)
                && r & (1 << f.model[t]) != 0
                && base + res(r) + f.working_peak[t] <= limit
            {
                relax((done | 1 << t, r), cost);
            }
        }
    }
    panic!("no plan exists, but every planned task fits alone")
}
