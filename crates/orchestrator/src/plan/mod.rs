//! The batch planner: in which order to load models and run tasks so that memory stays under the
//! budget by estimate and models are loaded as few times as possible.
//!
//! Pure logic over estimates: nothing here touches ONNX Runtime, the filesystem or the
//! [`Budget`](masp_budget::Budget). The executor follows a [`Plan`] and the budget still admits
//! every load for real; the plan only makes sure the estimates say it will be admitted.
//!
//! # Model
//!
//! A batch is a list of [`PlanTask`]s, each running one model ([`ModelCost`]) on one input, with
//! dependencies (`embed a.wav` after `vad a.wav`) and priorities. A plan is a list of
//! [`Step`]s: load a model, run a task, unload a model.
//!
//! # Memory rule
//!
//! At every step, by estimate (all figures in bytes, `R` the models resident before the step):
//!
//! - loading `m`: `baseline + Σ resident(R) + max(load_peak(m), resident(m)) ≤ limit`;
//! - running `t`: `baseline + Σ resident(R) + working_peak(t) ≤ limit` (its model is in `R`).
//!
//! A task that cannot run even with its model alone — `baseline + max(load_peak, resident +
//! working_peak) > limit` — is rejected ([`RejectReason::ModelTooLarge`]), and so is every task
//! that depends on it, transitively ([`RejectReason::BlockedBy`]). Everything else is planned.
//!
//! # Priorities
//!
//! Tasks run in priority levels, highest first: no task starts while a task of a higher
//! *effective* priority is still to run. A task's effective priority is the maximum of its own
//! and that of every planned task that depends on it, directly or not, so a high-priority task
//! lifts its dependencies with it and is never starved by them. Dependencies are always
//! respected. Within these rules the plan minimises the number of loads, then the bytes loaded
//! ([`ModelCost::load_bytes`]).
//!
//! # Policies
//!
//! [`Policy::OneResident`] (the default) keeps at most one model in memory: loading one unloads
//! the previous one. [`Policy::Budgeted`] keeps several resident while they fit and evicts when
//! they do not.
//!
//! # Algorithm
//!
//! Once a model is loaded, running every task it can run right now never costs an extra load
//! (the exchange argument is in `search.rs`), so the only decisions are which model to load
//! next and, with several resident, which to evict. The planner first builds a heuristic plan
//! (the model with the most runnable work next; evictions by reload-weighted farthest next
//! use), then proves it optimal against a lower bound or improves on it with an A* search over
//! (tasks done, models resident). The search is capped ([`PlanOptions::max_search_states`]);
//! past the cap the best plan found is returned with [`Plan::optimal`] `false`.

mod instance;
mod progress;
mod search;

use std::collections::HashMap;
use std::fmt;

use masp_budget::Bytes;

/// Identifies a task within a batch. Chosen by the caller; must be unique in the batch.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TaskId(pub usize);

impl fmt::Display for TaskId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// Identifies a model: its index in the `models` slice given to [`plan`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ModelId(pub usize);

impl fmt::Display for ModelId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// What a model costs, by estimate.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ModelCost {
    /// Name shown in plans and messages, e.g. `"silero-vad"`.
    pub name: String,
    /// Transient peak while the session is being created (the graph and its weights are often
    /// both in memory for a moment). If smaller than [`resident`](Self::resident), the resident
    /// size is used for the load step.
    pub load_peak: Bytes,
    /// Memory held while the model is loaded, once loading is over.
    pub resident: Bytes,
    /// Bytes read to load the model: the weight of a (re)load when two plans have the same
    /// number of loads.
    pub load_bytes: Bytes,
}

impl ModelCost {
    /// A model's costs.
    ///
    /// # Examples
    ///
    /// ```
    /// use masp_budget::Bytes;
    /// use masp_orchestrator::plan::ModelCost;
    ///
    /// let vad = ModelCost::new("silero-vad", Bytes::from_mib(40), Bytes::from_mib(25), Bytes::from_mib(2));
    /// assert_eq!(vad.resident.to_string(), "25 MiB");
    /// ```
    #[must_use]
    pub fn new(
        name: impl Into<String>,
        load_peak: Bytes,
        resident: Bytes,
        load_bytes: Bytes,
    ) -> Self {
        Self {
            name: name.into(),
            load_peak,
            resident,
            load_bytes,
        }
    }
}

/// One unit of work: a model run over one input.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PlanTask {
    /// Unique id within the batch.
    pub id: TaskId,
    /// The model it runs: an index into the `models` slice.
    pub model: ModelId,
    /// Tasks that must have run before this one (ids in the same batch; duplicates are fine).
    pub depends_on: Vec<TaskId>,
    /// Higher runs earlier; see the module docs for how priorities propagate. Default 0.
    pub priority: i32,
    /// Extra memory while the task runs, on top of its resident model (audio buffers, tensors).
    /// Default zero.
    pub working_peak: Bytes,
    /// Shown in plans, e.g. `"vad a.wav"`.
    pub label: String,
}

impl PlanTask {
    /// A task with no dependencies, priority 0 and no working memory.
    ///
    /// # Examples
    ///
    /// ```
    /// use masp_budget::Bytes;
    /// use masp_orchestrator::plan::{ModelId, PlanTask, TaskId};
    ///
    /// let embed = PlanTask::new(TaskId(2), ModelId(1), "embed a.wav")
    ///     .with_depends_on([TaskId(1)])
    ///     .with_priority(5)
    ///     .with_working_peak(Bytes::from_mib(64));
    /// assert_eq!(embed.depends_on, [TaskId(1)]);
    /// ```
    #[must_use]
    pub fn new(id: TaskId, model: ModelId, label: impl Into<String>) -> Self {
        Self {
            id,
            model,
            depends_on: Vec::new(),
            priority: 0,
            working_peak: Bytes::ZERO,
            label: label.into(),
        }
    }

    /// Adds dependencies.
    #[must_use]
    pub fn with_depends_on(mut self, deps: impl IntoIterator<Item = TaskId>) -> Self {
        self.depends_on.extend(deps);
        self
    }

    /// Sets the priority (higher runs earlier).
    #[must_use]
    pub fn with_priority(mut self, priority: i32) -> Self {
        self.priority = priority;
        self
    }

    /// Sets the working memory on top of the resident model.
    #[must_use]
    pub fn with_working_peak(mut self, working_peak: Bytes) -> Self {
        self.working_peak = working_peak;
        self
    }
}

/// How many models may be resident at once.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum Policy {
    /// At most one model in memory: loading a model unloads the current one first. The
    /// smallest footprint; costs a reload whenever work alternates between models.
    #[default]
    OneResident,
    /// Several models stay resident while they fit in the budget (and, if set, while there are
    /// at most `max_resident` of them). When one must go, the planner evicts the one whose next
    /// use is farthest away relative to its reload cost (Belady's rule weighted by
    /// [`ModelCost::load_bytes`]), or whatever the exact search finds cheaper.
    Budgeted {
        /// Cap on the number of resident models; `None` means only memory limits it.
        /// `Some(0)` is an error.
        max_resident: Option<usize>,
    },
}

impl fmt::Display for Policy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Policy::OneResident => f.write_str("one resident model"),
            Policy::Budgeted { max_resident: None } => f.write_str("resident models by budget"),
            Policy::Budgeted {
                max_resident: Some(n),
            } => write!(f, "resident models by budget, at most {n}"),
        }
    }
}

/// The default cap on states the exact search may store; see
/// [`PlanOptions::max_search_states`].
pub const DEFAULT_MAX_SEARCH_STATES: usize = 100_000;

/// Everything [`plan_with_options`] needs besides the batch itself.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PlanOptions {
    /// The memory limit every step must stay under, by estimate.
    pub limit: Bytes,
    /// Memory in use outside any model (the process itself, audio buffers shared by all tasks).
    pub baseline: Bytes,
    /// How many models may stay resident. Default [`Policy::OneResident`].
    pub policy: Policy,
    /// How many search states the exact search may store before it gives up proving
    /// optimality and returns its best plan so far. Default [`DEFAULT_MAX_SEARCH_STATES`]
    /// (100 000). Larger proves more batches optimal at the cost of time and memory; `0`
    /// skips the search (the heuristic plan is still proved optimal when it meets the lower
    /// bound, as on typical pipelines). Independently of this cap, the search stops after
    /// 2·10⁷ task and dependency visits (roughly 0.1 s) or 16 MiB of stored states, so
    /// planning a large irregular batch stays fast; the plan is then still valid, only not
    /// proved optimal.
    pub max_search_states: usize,
}

impl PlanOptions {
    /// Options with the default policy and search cap.
    ///
    /// # Examples
    ///
    /// ```
    /// use masp_budget::Bytes;
    /// use masp_orchestrator::plan::{PlanOptions, Policy};
    ///
    /// let opts = PlanOptions::new(Bytes::from_gib(2), Bytes::from_mib(100))
    ///     .with_policy(Policy::Budgeted { max_resident: Some(2) });
    /// assert_eq!(opts.policy, Policy::Budgeted { max_resident: Some(2) });
    /// ```
    #[must_use]
    pub fn new(limit: Bytes, baseline: Bytes) -> Self {
        Self {
            limit,
            baseline,
            policy: Policy::OneResident,
            max_search_states: DEFAULT_MAX_SEARCH_STATES,
        }
    }

    /// Sets the residency policy.
    #[must_use]
    pub fn with_policy(mut self, policy: Policy) -> Self {
        self.policy = policy;
        self
    }

    /// Sets the cap on stored search states.
    #[must_use]
    pub fn with_max_search_states(mut self, max_search_states: usize) -> Self {
        self.max_search_states = max_search_states;
        self
    }
}

/// One step of a plan.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Step {
    /// Create the model's session.
    Load(ModelId),
    /// Run the task; its model is loaded.
    Run(TaskId),
    /// Drop the model's session.
    Unload(ModelId),
}

/// Why a task is not in the plan.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum RejectReason {
    /// The task cannot run under the limit even with its model alone in memory.
    ModelTooLarge {
        /// The task's model.
        model: ModelId,
        /// What it needs: `baseline + max(load_peak, resident + working_peak)`.
        estimate: Bytes,
        /// The limit it exceeds.
        limit: Bytes,
    },
    /// The task depends (possibly through others) on this rejected task, which is
    /// [`ModelTooLarge`](Self::ModelTooLarge).
    BlockedBy(TaskId),
}

impl fmt::Display for RejectReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RejectReason::ModelTooLarge {
                model,
                estimate,
                limit,
            } => write!(
                f,
                "model {model} needs {estimate} (baseline included), over the {limit} limit"
            ),
            RejectReason::BlockedBy(task) => write!(f, "depends on rejected task {task}"),
        }
    }
}

/// A task left out of the plan, and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rejected {
    /// The task.
    pub task: TaskId,
    /// Why.
    pub reason: RejectReason,
}

/// Why a batch cannot be planned at all.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PlanError {
    /// Two tasks share an id.
    #[error("task id {task} is used by more than one task")]
    DuplicateTask {
        /// The repeated id.
        task: TaskId,
    },
    /// A task names a model that is not in the `models` slice.
    #[error("task {task} uses model {model}, but only {n_models} models were given")]
    UnknownModel {
        /// The task.
        task: TaskId,
        /// Its model index.
        model: ModelId,
        /// How many models there are.
        n_models: usize,
    },
    /// A task depends on an id that is not in the batch.
    #[error("task {task} depends on task {dependency}, which is not in the batch")]
    UnknownDependency {
        /// The task.
        task: TaskId,
        /// The missing dependency.
        dependency: TaskId,
    },
    /// The dependencies form a cycle.
    #[error("dependency cycle: {}", cycle_text(tasks))]
    Cycle {
        /// The tasks on the cycle: each depends on the next, and the last on the first.
        tasks: Vec<TaskId>,
    },
    /// `Policy::Budgeted { max_resident: Some(0) }` can never load anything.
    #[error("max_resident must be at least 1")]
    ZeroResident,
}

fn cycle_text(tasks: &[TaskId]) -> String {
    let mut s = String::from("task");
    for t in tasks.iter().chain(tasks.first()) {
        s.push_str(&format!(" {t} →"));
    }
    s.pop();
    s.push_str("(each waits for the next)");
    s
}

/// An ordered list of steps that stays under the limit by estimate.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Plan {
    /// What to do, in order. Every planned task is run exactly once, after its dependencies and
    /// with its model loaded; every loaded model is unloaded by the end.
    pub steps: Vec<Step>,
    /// Expected memory (baseline included) during each step, parallel to `steps`.
    pub step_peaks: Vec<Bytes>,
    /// Number of [`Step::Load`]s.
    pub n_loads: usize,
    /// Sum of [`ModelCost::load_bytes`] over the loads.
    pub bytes_loaded: Bytes,
    /// The largest of `step_peaks`, or the baseline for an empty plan.
    pub expected_peak: Bytes,
    /// Tasks left out, in input order.
    pub rejected: Vec<Rejected>,
    /// `true` when no plan under the same rules has fewer loads, or as many loads and fewer
    /// bytes loaded (proved by the exact search or by meeting its lower bound); `false` when the
    /// search hit its cap and the best plan found is returned.
    pub optimal: bool,
    /// The limit the plan was made for.
    pub limit: Bytes,
    /// The baseline the plan was made for.
    pub baseline: Bytes,
    /// The policy the plan was made for.
    pub policy: Policy,
    /// Model names by [`ModelId`], for `Display`.
    model_names: Vec<String>,
    /// Task labels, for `Display`.
    labels: HashMap<TaskId, String>,
}

impl Plan {
    /// The tasks in the order they run.
    ///
    /// # Examples
    ///
    /// ```
    /// use masp_budget::Bytes;
    /// use masp_orchestrator::plan::{plan, ModelCost, ModelId, PlanTask, Policy, TaskId};
    ///
    /// let models = [ModelCost::new("m", Bytes::new(10), Bytes::new(10), Bytes::new(10))];
    /// let tasks = [
    ///     PlanTask::new(TaskId(1), ModelId(0), "second").with_depends_on([TaskId(2)]),
    ///     PlanTask::new(TaskId(2), ModelId(0), "first"),
    /// ];
    /// let p = plan(&models, &tasks, Bytes::new(100), Bytes::ZERO, Policy::OneResident)?;
    /// assert_eq!(p.run_order().collect::<Vec<_>>(), [TaskId(2), TaskId(1)]);
    /// # Ok::<(), masp_orchestrator::plan::PlanError>(())
    /// ```
    pub fn run_order(&self) -> impl Iterator<Item = TaskId> + '_ {
        self.steps.iter().filter_map(|s| match s {
            Step::Run(t) => Some(*t),
            Step::Load(_) | Step::Unload(_) => None,
        })
    }

    /// Why `rejected` is not in the plan, with model names and task labels (the
    /// [`RejectReason`] alone can only give ids).
    ///
    /// # Examples
    ///
    /// ```
    /// use masp_budget::Bytes;
    /// use masp_orchestrator::plan::{plan, ModelCost, ModelId, PlanTask, Policy, TaskId};
    ///
    /// let models = [
    ///     ModelCost::new("big", Bytes::from_gib(3), Bytes::from_gib(2), Bytes::from_gib(2)),
    ///     ModelCost::new("small", Bytes::from_mib(9), Bytes::from_mib(8), Bytes::from_mib(8)),
    /// ];
    /// let tasks = [
    ///     PlanTask::new(TaskId(0), ModelId(0), "embed a.wav"),
    ///     PlanTask::new(TaskId(1), ModelId(1), "cluster a.wav").with_depends_on([TaskId(0)]),
    /// ];
    /// let p = plan(&models, &tasks, Bytes::from_gib(1), Bytes::ZERO, Policy::OneResident)?;
    /// assert_eq!(
    ///     p.explain(&p.rejected[0]),
    ///     "model big needs 3 GiB (baseline included), over the 1 GiB limit"
    /// );
    /// assert_eq!(p.explain(&p.rejected[1]), "depends on rejected embed a.wav");
    /// # Ok::<(), masp_orchestrator::plan::PlanError>(())
    /// ```
    #[must_use]
    pub fn explain(&self, rejected: &Rejected) -> String {
        match &rejected.reason {
            RejectReason::ModelTooLarge {
                model,
                estimate,
                limit,
            } => format!(
                "model {} needs {estimate} (baseline included), over the {limit} limit",
                self.model_name(*model)
            ),
            RejectReason::BlockedBy(t) => format!("depends on rejected {}", self.label(*t)),
        }
    }

    fn model_name(&self, m: ModelId) -> &str {
        self.model_names.get(m.0).map_or("?", String::as_str)
    }

    fn label(&self, t: TaskId) -> &str {
        self.labels.get(&t).map_or("?", String::as_str)
    }
}

/// Runs shown by name in a group of consecutive runs before "… (N more)".
const RUNS_SHOWN: usize = 3;

/// Readable text for `masp plan`: a summary line, the steps, and the rejected tasks.
///
/// Each step shows its expected memory (baseline included). The default form collapses
/// consecutive runs into one line (`run 1000 tasks  125 MiB  vad a.wav, vad b.wav, vad c.wav, …
/// (997 more)`, with the largest of their peaks); the alternate form (`{:#}`) lists every step.
impl fmt::Display for Plan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n_runs = self.run_order().count();
        writeln!(
            f,
            "plan: {n_runs} task{} in {} load{} ({} read), expected peak {} of {} \
             (baseline {}); {}; {}",
            plural(n_runs),
            self.n_loads,
            plural(self.n_loads),
            self.bytes_loaded,
            self.expected_peak,
            self.limit,
            self.baseline,
            self.policy,
            if self.optimal {
                "optimal"
            } else {
                "best found (search capped)"
            },
        )?;
        let mut i = 0;
        while i < self.steps.len() {
            let peak = self.step_peaks.get(i).copied().unwrap_or(Bytes::ZERO);
            match self.steps[i] {
                Step::Load(m) => writeln!(f, "  load   {:<30} {peak:>10}", self.model_name(m))?,
                Step::Unload(m) => writeln!(f, "  unload {}", self.model_name(m))?,
                Step::Run(t) if f.alternate() => {
                    writeln!(f, "  run    {:<30} {peak:>10}", self.label(t))?;
                }
                Step::Run(_) => {
                    let end = self.steps[i..]
                        .iter()
                        .position(|s| !matches!(s, Step::Run(_)))
                        .map_or(self.steps.len(), |k| i + k);
                    let group_peak = self.step_peaks[i..end].iter().max().copied();
                    let labels: Vec<&str> = self.steps[i..end]
                        .iter()
                        .filter_map(|s| match s {
                            Step::Run(t) => Some(self.label(*t)),
                            Step::Load(_) | Step::Unload(_) => None,
                        })
                        .collect();
                    let count = format!("{} task{}", labels.len(), plural(labels.len()));
                    let peak = group_peak.unwrap_or(Bytes::ZERO);
                    write!(f, "  run    {count:<30} {peak:>10}  ")?;
                    for (k, label) in labels.iter().take(RUNS_SHOWN).enumerate() {
                        let sep = if k == 0 { "" } else { ", " };
                        write!(f, "{sep}{label}")?;
                    }
                    if labels.len() > RUNS_SHOWN {
                        write!(f, ", … ({} more)", labels.len() - RUNS_SHOWN)?;
                    }
                    writeln!(f)?;
                    i = end;
                    continue;
                }
            }
            i += 1;
        }
        if !self.rejected.is_empty() {
            writeln!(
                f,
                "rejected {} task{}:",
                self.rejected.len(),
                plural(self.rejected.len())
            )?;
            for r in &self.rejected {
                writeln!(f, "  {}: {}", self.label(r.task), self.explain(r))?;
            }
        }
        Ok(())
    }
}

fn plural(n: usize) -> &'static str {
    if n == 1 { "" } else { "s" }
}

/// Plans a batch: the order of loads, runs and unloads that respects dependencies and
/// priorities, stays under `limit` at every step by estimate, and loads models as few times as
/// possible (then reads as few bytes as possible). Shorthand for [`plan_with_options`] with the
/// default search cap.
///
/// `limit` and `baseline` are in bytes; see the [module docs](self) for the memory rule, the
/// priority semantics and what [`Plan::optimal`] promises.
///
/// # Errors
///
/// [`PlanError`] for an unusable batch: duplicate task ids, unknown models or dependencies, a
/// dependency cycle, or `max_resident: Some(0)`. Tasks that do not fit are not an error: they
/// are listed in [`Plan::rejected`] and the rest is planned.
///
/// # Examples
///
/// Twenty files through VAD then an embedding model: two loads, not forty.
///
/// ```
/// use masp_budget::Bytes;
/// use masp_orchestrator::plan::{plan, ModelCost, ModelId, PlanTask, Policy, Step, TaskId};
///
/// let models = [
///     ModelCost::new("vad", Bytes::from_mib(40), Bytes::from_mib(25), Bytes::from_mib(2)),
///     ModelCost::new("embed", Bytes::from_mib(600), Bytes::from_mib(400), Bytes::from_mib(100)),
/// ];
/// let mut tasks = Vec::new();
/// for i in 0..20 {
///     let vad = TaskId(2 * i);
///     tasks.push(PlanTask::new(vad, ModelId(0), format!("vad {i}.wav")));
///     tasks.push(
///         PlanTask::new(TaskId(2 * i + 1), ModelId(1), format!("embed {i}.wav"))
///             .with_depends_on([vad])
///             .with_working_peak(Bytes::from_mib(50)),
///     );
/// }
/// let p = plan(&models, &tasks, Bytes::from_gib(1), Bytes::from_mib(100), Policy::OneResident)?;
/// assert_eq!(p.n_loads, 2);
/// assert_eq!(p.bytes_loaded, Bytes::from_mib(102));
/// assert!(p.optimal);
/// assert_eq!(p.steps[0], Step::Load(ModelId(0)));
/// assert_eq!(p.expected_peak, Bytes::from_mib(700)); // baseline + loading embed
/// println!("{p}");
/// # Ok::<(), masp_orchestrator::plan::PlanError>(())
/// ```
pub fn plan(
    models: &[ModelCost],
    tasks: &[PlanTask],
    limit: Bytes,
    baseline: Bytes,
    policy: Policy,
) -> Result<Plan, PlanError> {
    plan_with_options(
        models,
        tasks,
        &PlanOptions::new(limit, baseline).with_policy(policy),
    )
}

/// [`plan`] with every option, including the search cap.
///
/// # Errors
///
/// As [`plan`].
///
/// # Examples
///
/// ```
/// use masp_budget::Bytes;
/// use masp_orchestrator::plan::{plan_with_options, ModelCost, ModelId, PlanOptions, PlanTask, Policy, TaskId};
///
/// let models = [
///     ModelCost::new("a", Bytes::new(10), Bytes::new(10), Bytes::new(10)),
///     ModelCost::new("b", Bytes::new(10), Bytes::new(10), Bytes::new(10)),
/// ];
/// // a → b → a: with room for both, the first `a` stays resident.
/// let tasks = [
///     PlanTask::new(TaskId(0), ModelId(0), "a1"),
///     PlanTask::new(TaskId(1), ModelId(1), "b1").with_depends_on([TaskId(0)]),
///     PlanTask::new(TaskId(2), ModelId(0), "a2").with_depends_on([TaskId(1)]),
/// ];
/// let opts = PlanOptions::new(Bytes::new(25), Bytes::ZERO)
///     .with_policy(Policy::Budgeted { max_resident: None });
/// assert_eq!(plan_with_options(&models, &tasks, &opts)?.n_loads, 2);
/// let one = PlanOptions::new(Bytes::new(25), Bytes::ZERO);
/// assert_eq!(plan_with_options(&models, &tasks, &one)?.n_loads, 3);
/// # Ok::<(), masp_orchestrator::plan::PlanError>(())
/// ```
pub fn plan_with_options(
    models: &[ModelCost],
    tasks: &[PlanTask],
    options: &PlanOptions,
) -> Result<Plan, PlanError> {
    let (inst, rejected) = instance::prepare(models, tasks, options)?;
    let outcome = search::solve(&inst, options.max_search_states);

    let mut steps = Vec::with_capacity(outcome.events.len());
    let mut step_peaks = Vec::with_capacity(outcome.events.len());
    let mut resident_sum: u128 = 0;
    let mut n_loads = 0;
    let mut bytes_loaded = Bytes::ZERO;
    let mut expected_peak = options.baseline;
    for event in &outcome.events {
        let (step, peak) = match *event {
            search::Event::Load(m) => {
                let peak = inst.baseline + resident_sum + inst.load_need[m];
                resident_sum += inst.resident[m];
                n_loads += 1;
                bytes_loaded = bytes_loaded.saturating_add(Bytes::new(inst.load_bytes[m]));
                (Step::Load(inst.model_ids[m]), peak)
            }
            search::Event::Unload(m) => {
                let peak = inst.baseline + resident_sum;
                resident_sum -= inst.resident[m];
                (Step::Unload(inst.model_ids[m]), peak)
            }
            search::Event::Run(t) => (
                Step::Run(inst.task_ids[t]),
                inst.baseline + resident_sum + inst.working_peak[t],
            ),
        };
        let peak = Bytes::new(u64::try_from(peak).unwrap_or(u64::MAX));
        expected_peak = expected_peak.max(peak);
        steps.push(step);
        step_peaks.push(peak);
    }

    Ok(Plan {
        steps,
        step_peaks,
        n_loads,
        bytes_loaded,
        expected_peak,
        rejected,
        optimal: outcome.optimal,
        limit: options.limit,
        baseline: options.baseline,
        policy: options.policy,
        model_names: models.iter().map(|m| m.name.clone()).collect(),
        labels: tasks.iter().map(|t| (t.id, t.label.clone())).collect(),
    })
}
