//! How far a plan has got: which tasks are done, which are ready, and the "run everything the
//! resident models can run" closure that every plan applies after each load or eviction.

use std::cmp::Reverse;
use std::collections::BinaryHeap;

use super::instance::Instance;

/// A fixed-size set of small integers (tasks or models), hashable so it can key search states.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(super) struct BitSet {
    words: Vec<u64>,
}

impl BitSet {
    pub(super) fn new(n: usize) -> Self {
        Self {
            words: vec![0; n.div_ceil(64)],
        }
    }

    pub(super) fn contains(&self, i: usize) -> bool {
        self.words
            .get(i / 64)
            .is_some_and(|w| w & (1 << (i % 64)) != 0)
    }

    pub(super) fn insert(&mut self, i: usize) {
        if let Some(w) = self.words.get_mut(i / 64) {
            *w |= 1 << (i % 64);
        }
    }

    pub(super) fn remove(&mut self, i: usize) {
        if let Some(w) = self.words.get_mut(i / 64) {
            *w &= !(1 << (i % 64));
        }
    }

    pub(super) fn len(&self) -> usize {
        self.words.iter().map(|w| w.count_ones() as usize).sum()
    }

    /// A fast hash of the members (FxHash-style), for the search's state table.
    pub(super) fn fingerprint(&self) -> u64 {
        self.words.iter().fold(0u64, |h, &w| {
            (h.rotate_left(5) ^ w).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95)
        })
    }

    pub(super) fn n_words(&self) -> usize {
        self.words.len()
    }

    /// Members in ascending order.
    pub(super) fn iter(&self) -> impl Iterator<Item = usize> + '_ {
        self.words.iter().enumerate().flat_map(|(k, &w)| {
            let mut w = w;
            std::iter::from_fn(move || {
                if w == 0 {
                    return None;
                }
                let bit = w.trailing_zeros() as usize;
                w &= w - 1;
                Some(k * 64 + bit)
            })
        })
    }
}

/// The state of a partial plan, apart from which models are resident.
///
/// A task is *ready* when it is not done, its dependencies are done and it is in the current
/// level, the first level with tasks left (`level_tasks.len()` when all are done). Tasks of
/// later levels are never ready: a level starts only when the one before it is finished, which
/// is the priority rule. Cloning is a few flat copies: the search clones one per move.
#[derive(Clone, Debug)]
pub(super) struct Progress {
    pub(super) done: BitSet,
    n_done: usize,
    /// Dependencies not yet done, per task.
    unmet: Vec<u32>,
    level_left: Vec<usize>,
    level: usize,
    /// Ready tasks, per model.
    ready_count: Vec<usize>,
    /// Tasks not yet done, per model.
    left_of_model: Vec<usize>,
}

impl Progress {
    /// The progress after exactly the tasks in `done` (which must be closed under
    /// dependencies and the level order).
    pub(super) fn new(inst: &Instance, done: BitSet) -> Self {
        let mut unmet = vec![0u32; inst.n_tasks];
        let mut level_left = vec![0; inst.level_tasks.len()];
        let mut left_of_model = vec![0; inst.n_models];
        let mut n_done = 0;
        for t in 0..inst.n_tasks {
            if done.contains(t) {
                n_done += 1;
                continue;
            }
            // Fewer than 2^32 dependencies per task is implied by the memory it would take.
            unmet[t] = inst.deps[t].iter().filter(|&&d| !done.contains(d)).count() as u32;
            level_left[inst.level[t]] += 1;
            left_of_model[inst.model_of[t]] += 1;
        }
        let level = level_left
            .iter()
            .position(|&n| n > 0)
            .unwrap_or(level_left.len());
        let mut p = Self {
            done,
            n_done,
            unmet,
            level_left,
            level,
            ready_count: vec![0; inst.n_models],
            left_of_model,
        };
        p.enter_level(inst, &mut Vec::new());
        p
    }

    pub(super) fn is_complete(&self, inst: &Instance) -> bool {
        self.n_done == inst.n_tasks
    }

    /// Whether model `m` has ready tasks.
    pub(super) fn has_ready(&self, m: usize) -> bool {
        self.ready_count[m] > 0
    }

    /// Whether model `m` has tasks left to run.
    pub(super) fn has_left(&self, m: usize) -> bool {
        self.left_of_model[m] > 0
    }

    /// The ready tasks, ascending.
    fn ready_tasks<'a>(&'a self, inst: &'a Instance) -> impl Iterator<Item = usize> + 'a {
        inst.level_tasks
            .get(self.level)
            .into_iter()
            .flatten()
            .copied()
            .filter(|&t| self.unmet[t] == 0 && !self.done.contains(t))
    }

    /// The smallest working peak among `m`'s ready tasks.
    pub(super) fn min_ready_working_peak(&self, inst: &Instance, m: usize) -> Option<u128> {
        if !self.has_ready(m) {
            return None;
        }
        self.ready_tasks(inst)
            .filter(|&t| inst.model_of[t] == m)
            .map(|t| inst.working_peak[t])
            .min()
    }

    /// Counts the ready tasks of a level just entered, and pushes them onto `newly`.
    fn enter_level(&mut self, inst: &Instance, newly: &mut Vec<usize>) {
        let start = newly.len();
        newly.extend(self.ready_tasks(inst));
        for &t in &newly[start..] {
            self.ready_count[inst.model_of[t]] += 1;
        }
    }

    /// Marks ready task `t` done; pushes the tasks that became ready onto `newly`.
    fn run(&mut self, inst: &Instance, t: usize, newly: &mut Vec<usize>) {
        self.done.insert(t);
        self.n_done += 1;
        self.ready_count[inst.model_of[t]] -= 1;
        self.level_left[inst.level[t]] -= 1;
        self.left_of_model[inst.model_of[t]] -= 1;
        for &d in &inst.dependents[t] {
            self.unmet[d] -= 1;
            if self.unmet[d] == 0 && inst.level[d] == self.level {
                self.ready_count[inst.model_of[d]] += 1;
                newly.push(d);
            }
        }
        while self.level < self.level_left.len() && self.level_left[self.level] == 0 {
            self.level += 1;
            self.enter_level(inst, newly);
        }
    }

    /// Runs every task that can run with `resident` loaded and nothing else changing — ready,
    /// model resident, fits next to the resident models — until none is left, calling `emit`
    /// for each in the order run (lowest index first among those available).
    pub(super) fn closure(
        &mut self,
        inst: &Instance,
        resident: &BitSet,
        mut emit: impl FnMut(usize),
    ) {
        if !resident.iter().any(|m| self.has_ready(m)) {
            return;
        }
        let resident_bytes = inst.resident_sum(resident.iter());
        let runnable =
            |t: usize| resident.contains(inst.model_of[t]) && inst.run_fits(resident_bytes, t);
        let mut heap: BinaryHeap<Reverse<usize>> = self
            .ready_tasks(inst)
            .filter(|&t| runnable(t))
            .map(Reverse)
            .collect();
        let mut newly = Vec::new();
        while let Some(Reverse(t)) = heap.pop() {
            newly.clear();
            self.run(inst, t, &mut newly);
            emit(t);
            heap.extend(newly.iter().copied().filter(|&d| runnable(d)).map(Reverse));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bitset_across_words() {
        let mut s = BitSet::new(130);
        for i in [0, 63, 64, 129] {
            s.insert(i);
        }
        s.remove(63);
        assert_eq!(s.iter().collect::<Vec<_>>(), [0, 64, 129]);
        assert_eq!(s.len(), 3);
        assert!(s.contains(129) && !s.contains(63) && !s.contains(500));
        let mut t = BitSet::new(130);
        for i in [129, 64, 0] {
            t.insert(i);
        }
        assert_eq!(s, t);
        assert_eq!(s.fingerprint(), t.fingerprint());
    }
}
