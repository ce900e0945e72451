//! Finding the plan: a heuristic plan first, then an A* search that proves it optimal or finds
//! a better one, within a cap.
//!
//! # Why only loads and evictions are decisions
//!
//! *Closure.* Say models `R` are resident and task `t` is ready (its dependencies are done,
//! it is in the current priority level), its model is in `R` and it fits next to `R`. Take any
//! valid plan that continues from here and runs `t` later. Moving `t` to right now keeps it
//! valid: `t`'s dependencies are done, the tasks that depend on `t` still come after it, the
//! priority order holds because `t` is in the current level, and every other step keeps the
//! same resident set, hence the same memory. Loads and evictions are untouched, so the cost is
//! the same. So every plan can be rewritten to run such tasks at once, and the planner always
//! does ([`Progress::closure`]). With one resident model this is the rule "run every ready task
//! of the loaded model before switching", and the only decision is which model to load next.
//! (The same argument in terms of sequences: removing a task from between two others never adds
//! a model change, `change(a, b) ≤ change(a, t) + change(t, b)` also when weighted by the bytes
//! of the model switched to, and inserting it next to a task of the same model adds none.)
//!
//! *Loads.* With one resident model, loading a model with no ready task is wasted: it must go
//! again before anything runs. With several, it can pay to load a model early, while its
//! transient `load_peak` still fits, so the search also tries loading any model with work left.
//!
//! *Evictions.* Evicting more than a step needs never helps: a model evicted early could as
//! well be evicted at the next step that needs the room. So the search only tries
//! inclusion-minimal eviction sets: those that make a load fit (memory and `max_resident`) or
//! let a ready task of a resident model fit.
//!
//! # Search
//!
//! States are (tasks done, models resident) after the closure; a move is a load (cost: one
//! load and its `load_bytes`) or an eviction (free). A* with the lower bound "every model with
//! work left that is not resident needs one more load" (with one resident model, the resident
//! one counts too: none of its tasks is ready, so it must be unloaded and loaded again). The
//! bound drops by at most the cost of a move, so it is consistent and the first complete state
//! taken from the queue is optimal. Costs compare as (loads, bytes loaded).
//!
//! Before searching, a heuristic plan gives an upper bound: repeatedly load the model whose
//! closure runs the most tasks, then replay that task order with evictions by reload-weighted
//! farthest next use ([`simulate`]). On typical pipelines it meets the lower bound and no
//! search is needed. Past the caps the search stops, the best few open states are completed
//! heuristically, and the best plan found is returned, optimal only if it meets the best open
//! bound.

use std::cmp::{Ordering, Reverse};
use std::collections::{BTreeSet, BinaryHeap, HashMap};

use super::instance::Instance;
use super::progress::{BitSet, Progress};

/// Stop the search after this many task and dependency visits (each state costs one pass).
const SEARCH_WORK_LIMIT: u64 = 20_000_000;
/// Stop the search when stored states would take more than this many 64-bit words (16 MiB).
const SEARCH_MEMORY_WORDS: usize = 2 << 20;
/// Above this many resident models, eviction sets are too many to enumerate: stop searching.
const MAX_EXACT_RESIDENT: usize = 12;
/// Open states completed heuristically when the search is capped.
const FRONTIER_COMPLETIONS: usize = 4;

/// One step of a plan, densely indexed (see [`Instance`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Event {
    Load(usize),
    Unload(usize),
    Run(usize),
}

/// The chosen plan and whether it is proved optimal.
#[derive(Debug)]
pub(super) struct Outcome {
    pub(super) events: Vec<Event>,
    pub(super) optimal: bool,
}

/// What a plan costs: compared by loads, then bytes loaded.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
struct Cost {
    loads: u64,
    bytes: u128,
}

impl Cost {
    fn load(inst: &Instance, m: usize) -> Self {
        Self {
            loads: 1,
            bytes: u128::from(inst.load_bytes[m]),
        }
    }

    fn plus(self, other: Self) -> Self {
        Self {
            loads: self.loads.saturating_add(other.loads),
            bytes: self.bytes.saturating_add(other.bytes),
        }
    }
}

/// Plans `inst`: see the module docs.
pub(super) fn solve(inst: &Instance, max_states: usize) -> Outcome {
    let start = Progress::new(inst, BitSet::new(inst.n_tasks));
    let nothing = BitSet::new(inst.n_models);
    let (mut best_events, mut best_cost) = complete(inst, &start, &nothing, Vec::new());
    if best_cost <= lower_bound(inst, &start, &nothing) {
        return Outcome {
            events: best_events,
            optimal: true,
        };
    }
    let mut search = Search::new(inst, max_states, start, nothing);
    match search.run(best_cost) {
        Verdict::NoBetter => Outcome {
            events: best_events,
            optimal: true,
        },
        Verdict::Found(goal) => {
            let (events, _, resident) = search.replay(goal);
            Outcome {
                events: with_final_unloads(events, &resident),
                optimal: true,
            }
        }
        Verdict::Capped { lower, frontier } => {
            for node in frontier {
                let (prefix, progress, resident) = search.replay(node);
                let (events, cost) = complete(inst, &progress, &resident, prefix);
                let cost = cost.plus(search.nodes[node].g);
                if cost < best_cost {
                    best_cost = cost;
                    best_events = events;
                }
            }
            Outcome {
                events: best_events,
                optimal: best_cost <= lower,
            }
        }
    }
}

/// Loads every state from (`progress`, `resident`) still needs at least: one per model with
/// work left that is not resident (or, with one resident model, that has work left at all).
fn lower_bound(inst: &Instance, progress: &Progress, resident: &BitSet) -> Cost {
    (0..inst.n_models)
        .filter(|&m| progress.has_left(m) && (inst.max_resident == 1 || !resident.contains(m)))
        .fold(Cost::default(), |c, m| c.plus(Cost::load(inst, m)))
}

/// A move of the search.
#[derive(Clone, Debug)]
enum Action {
    /// Unload `evict`, then load `model`.
    Load { model: usize, evict: Vec<usize> },
    /// Unload these to make room for a ready task.
    Evict(Vec<usize>),
}

#[derive(Debug)]
struct Node {
    done: BitSet,
    resident: BitSet,
    /// Cost so far.
    g: Cost,
    parent: Option<usize>,
    /// The move from the parent.
    action: Option<Action>,
    /// False once a cheaper node for the same state exists (its heap entry is then stale).
    live: bool,
}

enum Verdict {
    /// The queue ran dry below the upper bound: the heuristic plan is optimal.
    NoBetter,
    /// This node is a complete plan, optimal.
    Found(usize),
    /// A cap was hit; `lower` bounds every plan, `frontier` are the most promising open nodes.
    Capped { lower: Cost, frontier: Vec<usize> },
}

/// Heap entry: least `f` first, then most progress (`g`), then oldest.
type Entry = Reverse<(Cost, Reverse<Cost>, usize)>;

struct Search<'a> {
    inst: &'a Instance,
    nodes: Vec<Node>,
    /// The best node of each state, by fingerprint (collisions are compared in full).
    best: HashMap<u64, Vec<usize>>,
    heap: BinaryHeap<Entry>,
    max_nodes: usize,
    work: u64,
}

impl<'a> Search<'a> {
    fn new(inst: &'a Instance, max_states: usize, start: Progress, resident: BitSet) -> Self {
        // A state's bitsets, plus the node, map and heap overhead.
        let words = start.done.n_words() + resident.n_words() + 24;
        let mut search = Self {
            inst,
            nodes: Vec::new(),
            best: HashMap::new(),
            heap: BinaryHeap::new(),
            max_nodes: max_states.min(SEARCH_MEMORY_WORDS / words),
            work: 0,
        };
        let f = lower_bound(inst, &start, &resident);
        search.push(start.done, resident, Cost::default(), f, None, None);
        search
    }

    fn push(
        &mut self,
        done: BitSet,
        resident: BitSet,
        g: Cost,
        f: Cost,
        parent: Option<usize>,
        action: Option<Action>,
    ) {
        let hash = done.fingerprint() ^ resident.fingerprint().rotate_left(17);
        let bucket = self.best.entry(hash).or_default();
        let same = bucket.iter().position(|&k| {
            let n = &self.nodes[k];
            n.done == done && n.resident == resident
        });
        let idx = self.nodes.len();
        match same {
            Some(pos) => {
                let old = bucket[pos];
                if self.nodes[old].g <= g {
                    return;
                }
                bucket[pos] = idx;
                self.nodes[old].live = false;
            }
            None => bucket.push(idx),
        }
        self.nodes.push(Node {
            done,
            resident,
            g,
            parent,
            action,
            live: true,
        });
        self.heap.push(Reverse((f, Reverse(g), idx)));
    }

    fn is_live(&self, idx: usize) -> bool {
        self.nodes[idx].live
    }

    fn run(&mut self, upper: Cost) -> Verdict {
        let pass = (self.inst.n_tasks + self.inst.n_edges + 1) as u64;
        while let Some(Reverse((f, g, idx))) = self.heap.pop() {
            if !self.is_live(idx) {
                continue;
            }
            if f >= upper {
                return Verdict::NoBetter;
            }
            let progress = Progress::new(self.inst, self.nodes[idx].done.clone());
            if progress.is_complete(self.inst) {
                return Verdict::Found(idx);
            }
            let resident = self.nodes[idx].resident.clone();
            let moves = match transitions(self.inst, &progress, &resident) {
                Some(moves)
                    if self.nodes.len() < self.max_nodes && self.work < SEARCH_WORK_LIMIT =>
                {
                    moves
                }
                _ => {
                    self.heap.push(Reverse((f, g, idx)));
                    return self.capped();
                }
            };
            self.work += pass;
            let g = g.0;
            for (action, child_resident, cost) in moves {
                let mut child = progress.clone();
                child.closure(self.inst, &child_resident, |_| {});
                self.work += pass;
                let child_g = g.plus(cost);
                let child_f = child_g.plus(lower_bound(self.inst, &child, &child_resident));
                if child_f < upper {
                    self.push(
                        child.done,
                        child_resident,
                        child_g,
                        child_f,
                        Some(idx),
                        Some(action),
                    );
                }
            }
        }
        Verdict::NoBetter
    }

    fn capped(&mut self) -> Verdict {
        let mut live: Vec<(Cost, Reverse<Cost>, usize)> = self
            .heap
            .iter()
            .map(|Reverse(e)| *e)
            .filter(|&(_, _, idx)| self.is_live(idx))
            .collect();
        live.sort_unstable();
        // The heap is never empty here: the node that hit the cap was pushed back.
        let lower = live.first().map_or(Cost::default(), |e| e.0);
        Verdict::Capped {
            lower,
            frontier: live
                .iter()
                .take(FRONTIER_COMPLETIONS)
                .map(|e| e.2)
                .collect(),
        }
    }

    /// The events from the start to node `idx`, and the state there.
    fn replay(&self, idx: usize) -> (Vec<Event>, Progress, BitSet) {
        let mut path = Vec::new();
        let mut at = Some(idx);
        while let Some(k) = at {
            path.push(k);
            at = self.nodes[k].parent;
        }
        let mut progress = Progress::new(self.inst, BitSet::new(self.inst.n_tasks));
        let mut resident = BitSet::new(self.inst.n_models);
        let mut events = Vec::new();
        for &k in path.iter().rev() {
            let Some(action) = &self.nodes[k].action else {
                continue;
            };
            let evict = match action {
                Action::Load { evict, .. } | Action::Evict(evict) => evict,
            };
            for &e in evict {
                resident.remove(e);
                events.push(Event::Unload(e));
            }
            if let Action::Load { model, .. } = action {
                resident.insert(*model);
                events.push(Event::Load(*model));
            }
            progress.closure(self.inst, &resident, |t| events.push(Event::Run(t)));
        }
        debug_assert!(progress.done == self.nodes[idx].done);
        (events, progress, resident)
    }
}

/// The moves from a state, or `None` when too many models are resident to enumerate them.
fn transitions(
    inst: &Instance,
    progress: &Progress,
    resident: &BitSet,
) -> Option<Vec<(Action, BitSet, Cost)>> {
    let members: Vec<usize> = resident.iter().collect();
    if members.len() > MAX_EXACT_RESIDENT {
        return None;
    }
    let mut moves = Vec::new();
    for m in 0..inst.n_models {
        if resident.contains(m) {
            continue;
        }
        let useful = if inst.max_resident == 1 {
            progress.has_ready(m)
        } else {
            progress.has_left(m)
        };
        if !useful {
            continue;
        }
        let fits = |kept: usize, kept_bytes: u128| {
            kept < inst.max_resident && inst.load_fits(kept_bytes, m)
        };
        for evict in minimal_evictions(inst, &members, fits) {
            let mut child = resident.clone();
            for &e in &evict {
                child.remove(e);
            }
            child.insert(m);
            moves.push((Action::Load { model: m, evict }, child, Cost::load(inst, m)));
        }
    }
    if inst.max_resident > 1 {
        let mut evictions = BTreeSet::new();
        for &m in &members {
            let Some(wp) = progress.min_ready_working_peak(inst, m) else {
                continue;
            };
            let others: Vec<usize> = members.iter().copied().filter(|&o| o != m).collect();
            let fits = |_: usize, kept_bytes: u128| {
                inst.baseline + kept_bytes + inst.resident[m] + wp <= inst.limit
            };
            evictions.extend(
                minimal_evictions(inst, &others, fits)
                    .into_iter()
                    .filter(|e| !e.is_empty()),
            );
        }
        for evict in evictions {
            let mut child = resident.clone();
            for &e in &evict {
                child.remove(e);
            }
            moves.push((Action::Evict(evict), child, Cost::default()));
        }
    }
    Some(moves)
}

/// The inclusion-minimal subsets of `members` whose eviction makes `fits(kept_count,
/// kept_resident_bytes)` true (`fits` must be monotone: evicting more never hurts).
fn minimal_evictions(
    inst: &Instance,
    members: &[usize],
    fits: impl Fn(usize, u128) -> bool,
) -> Vec<Vec<usize>> {
    let k = members.len();
    let total = inst.resident_sum(members.iter().copied());
    let mut masks: Vec<u32> = (0..1u32 << k).collect();
    masks.sort_by_key(|m| m.count_ones());
    let mut minimal: Vec<u32> = Vec::new();
    for e in masks {
        // Supersets of a minimal set are not minimal.
        if minimal.iter().any(|&s| s & !e == 0) {
            continue;
        }
        let evicted = (0..k).filter(|&i| e & (1 << i) != 0);
        let freed: u128 = evicted.clone().map(|i| inst.resident[members[i]]).sum();
        if fits(k - evicted.count(), total - freed) {
            minimal.push(e);
        }
    }
    minimal
        .into_iter()
        .map(|e| {
            (0..k)
                .filter(|&i| e & (1 << i) != 0)
                .map(|i| members[i])
                .collect()
        })
        .collect()
}

/// Completes a plan from (`progress`, `resident`) heuristically; returns `prefix` followed by
/// the new events (ending with unloads) and the cost of the new events.
fn complete(
    inst: &Instance,
    progress: &Progress,
    resident: &BitSet,
    prefix: Vec<Event>,
) -> (Vec<Event>, Cost) {
    let order = greedy_order(inst, progress, resident);
    let (mut events, cost, resident) = simulate(inst, &order, resident.clone(), prefix);
    events = with_final_unloads(events, &resident);
    (events, cost)
}

fn with_final_unloads(mut events: Vec<Event>, resident: &BitSet) -> Vec<Event> {
    events.extend(resident.iter().map(Event::Unload));
    events
}

/// Preference of [`greedy_order`]: already resident (first pick only), tasks run, fewer bytes
/// to load, lower index.
type GreedyKey = (bool, usize, Reverse<u64>, Reverse<usize>);

/// A task order: repeatedly the model whose one-resident closure runs the most tasks, and that
/// closure. The first pick prefers a model already resident (it costs no load); ties go to
/// fewer bytes to load, then the lower index.
fn greedy_order(inst: &Instance, progress: &Progress, resident: &BitSet) -> Vec<usize> {
    let mut progress = progress.clone();
    let mut order = Vec::new();
    let mut first = true;
    while !progress.is_complete(inst) {
        let mut best: Option<(Progress, Vec<usize>, GreedyKey)> = None;
        for m in (0..inst.n_models).filter(|&m| progress.has_ready(m)) {
            let mut alone = BitSet::new(inst.n_models);
            alone.insert(m);
            let mut next = progress.clone();
            let mut ran = Vec::new();
            next.closure(inst, &alone, |t| ran.push(t));
            let key = (
                first && resident.contains(m),
                ran.len(),
                Reverse(inst.load_bytes[m]),
                Reverse(m),
            );
            if best.as_ref().is_none_or(|b| key > b.2) {
                best = Some((next, ran, key));
            }
        }
        // Some model always has a ready task while tasks are left (the lowest unfinished
        // level has a task whose dependencies are done); stop rather than loop if not.
        let Some((next, ran, _)) = best else { break };
        progress = next;
        order.extend(ran);
        first = false;
    }
    order
}

/// Runs `order` from `resident`, loading models as needed and evicting by reload-weighted
/// farthest next use; appends to `events`. Returns the events, the cost of the loads and the
/// resident set at the end.
fn simulate(
    inst: &Instance,
    order: &[usize],
    mut resident: BitSet,
    mut events: Vec<Event>,
) -> (Vec<Event>, Cost, BitSet) {
    let mut uses: Vec<Vec<usize>> = vec![Vec::new(); inst.n_models];
    for (i, &t) in order.iter().enumerate() {
        uses[inst.model_of[t]].push(i);
    }
    // `next[m]`: index into `uses[m]` of its first use not yet reached.
    let mut next = vec![0usize; inst.n_models];
    let mut cost = Cost::default();
    let mut resident_bytes = inst.resident_sum(resident.iter());
    let mut n_resident = resident.len();
    for (i, &t) in order.iter().enumerate() {
        let m = inst.model_of[t];
        next[m] += 1;
        if !resident.contains(m) {
            while !(n_resident < inst.max_resident && inst.load_fits(resident_bytes, m)) {
                let Some(v) = victim(inst, &resident, None, &uses, &next, i) else {
                    break;
                };
                resident.remove(v);
                resident_bytes -= inst.resident[v];
                n_resident -= 1;
                events.push(Event::Unload(v));
            }
            resident.insert(m);
            resident_bytes += inst.resident[m];
            n_resident += 1;
            events.push(Event::Load(m));
            cost = cost.plus(Cost::load(inst, m));
        }
        // Every planned task fits with its model alone, so this ends before running out.
        while !inst.run_fits(resident_bytes, t) {
            let Some(v) = victim(inst, &resident, Some(m), &uses, &next, i) else {
                break;
            };
            resident.remove(v);
            resident_bytes -= inst.resident[v];
            n_resident -= 1;
            events.push(Event::Unload(v));
        }
        events.push(Event::Run(t));
    }
    (events, cost, resident)
}

/// The resident model (other than `keep`) to evict at position `i` of the order.
fn victim(
    inst: &Instance,
    resident: &BitSet,
    keep: Option<usize>,
    uses: &[Vec<usize>],
    next: &[usize],
    i: usize,
) -> Option<usize> {
    let next_use = |v: usize| uses[v].get(next[v]).map(|&at| at - i);
    resident
        .iter()
        .filter(|&v| Some(v) != keep)
        .max_by(|&a, &b| eviction_order(inst, a, next_use(a), b, next_use(b)))
}

/// Which of two resident models is the better one to evict (`Greater`: `a`). A model never used
/// again goes first (the larger first); otherwise the larger `distance / load_bytes` — Belady's
/// farthest next use, weighted so that a model cheap to reload goes before an expensive one —
/// then the farther, then the lower index.
fn eviction_order(
    inst: &Instance,
    a: usize,
    next_a: Option<usize>,
    b: usize,
    next_b: Option<usize>,
) -> Ordering {
    let by_index = b.cmp(&a);
    match (next_a, next_b) {
        (None, None) => inst.resident[a].cmp(&inst.resident[b]).then(by_index),
        (None, Some(_)) => Ordering::Greater,
        (Some(_), None) => Ordering::Less,
        (Some(da), Some(db)) => {
            let (da, db) = (da as u128, db as u128);
            let (wa, wb) = (
                u128::from(inst.load_bytes[a]),
                u128::from(inst.load_bytes[b]),
            );
            (da * wb).cmp(&(db * wa)).then(da.cmp(&db)).then(by_index)
        }
    }
}

#[cfg(test)]
mod tests {
    use masp_budget::Bytes;

    use super::*;
    use crate::plan::{ModelCost, ModelId, PlanOptions, PlanTask, Policy, TaskId, instance};

    /// Three resident-able models of sizes 10, 20, 30 (load bytes 1, 1, 10) under `limit`.
    fn three_models(limit: u64) -> Instance {
        let models: Vec<ModelCost> = [(10, 1), (20, 1), (30, 10)]
            .iter()
            .enumerate()
            .map(|(i, &(size, load))| {
                ModelCost::new(
                    format!("m{i}"),
                    Bytes::new(size),
                    Bytes::new(size),
                    Bytes::new(load),
                )
            })
            .collect();
        let tasks: Vec<PlanTask> = (0..3)
            .map(|i| PlanTask::new(TaskId(i), ModelId(i), format!("t{i}")))
            .collect();
        let opts = PlanOptions::new(Bytes::new(limit), Bytes::ZERO)
            .with_policy(Policy::Budgeted { max_resident: None });
        instance::prepare(&models, &tasks, &opts).unwrap().0
    }

    #[test]
    fn minimal_evictions_are_exactly_the_minimal_sets() {
        let inst = three_models(1000);
        // Free at least 30 of 60: {2} alone, or {0, 1}; not {0, 2} or anything bigger.
        let sets = minimal_evictions(&inst, &[0, 1, 2], |_, kept| kept <= 30);
        assert_eq!(sets, [vec![2], vec![0, 1]]);
        // Already fits: only the empty set.
        assert_eq!(
            minimal_evictions(&inst, &[0, 1], |_, _| true),
            [Vec::<usize>::new()]
        );
        // At most one kept.
        let sets = minimal_evictions(&inst, &[0, 1, 2], |n, _| n <= 1);
        assert_eq!(sets, [vec![0, 1], vec![0, 2], vec![1, 2]]);
    }

    #[test]
    fn eviction_prefers_unused_then_far_and_cheap() {
        let inst = three_models(1000);
        // Never used again beats any distance; among those, the larger goes.
        assert_eq!(
            eviction_order(&inst, 0, None, 1, Some(100)),
            Ordering::Greater
        );
        assert_eq!(eviction_order(&inst, 0, None, 1, None), Ordering::Less);
        // Equal reload cost: farther goes (Belady).
        assert_eq!(
            eviction_order(&inst, 0, Some(5), 1, Some(2)),
            Ordering::Greater
        );
        // Model 2 costs 10× to reload: at 5 steps it stays over model 0 at 2 steps.
        assert_eq!(
            eviction_order(&inst, 2, Some(5), 0, Some(2)),
            Ordering::Less
        );
        assert_eq!(
            eviction_order(&inst, 2, Some(50), 0, Some(2)),
            Ordering::Greater
        );
    }
}
