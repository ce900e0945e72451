//! Unloading: drop a model's session (or reap its worker), trim the allocator, and check that
//! resident memory came back — a shortfall beyond the tolerance is recorded as a suspected leak.

use masp_budget::{Bytes, probe, trim};
use masp_profiler::Event;

use super::SequentialOrchestrator;
use super::events::RunEvent;
use super::measure::rss;

impl SequentialOrchestrator {
    /// Unload `name` if it is resident; returns whether it was.
    pub fn unload_model(&mut self, name: &str) -> bool {
        match self.resident.iter().position(|r| r.name == name) {
            Some(i) => {
                self.unload_at(i, "explicit");
                true
            }
            None => false,
        }
    }

    /// Unload every resident model.
    pub fn unload_all(&mut self) {
        while !self.resident.is_empty() {
            self.unload_at(self.resident.len() - 1, "end");
        }
    }

    pub(super) fn evict_one(&mut self, reason: &str) {
        if let Some((i, _)) = self
            .resident
            .iter()
            .enumerate()
            .min_by_key(|(_, r)| r.last_used)
        {
            self.unload_at(i, reason);
        }
    }

    pub(super) fn unload_at(&mut self, index: usize, reason: &str) {
        let model = self.resident.remove(index);
        self.profiler.mark(Event::unload(&model.name));
        let rss_loaded = rss();
        // Models loaded after this one are still resident and still count.
        let later: Bytes = self
            .resident
            .iter()
            .filter(|r| r.rss_before_load >= model.rss_before_load)
            .fold(Bytes::new(0), |acc, r| acc.saturating_add(r.in_process));
        // A worker's memory comes back whole when it is reaped: what it held at the end.
        let worker_rss = model.worker_pid.and_then(probe::process_rss_of);
        if let Some(pid) = model.worker_pid {
            self.profiler.unfollow(pid);
        }
        drop(model.adapter);
        drop(model._reservation);
        let worker_returned = match (model.worker_pid, worker_rss) {
            // Dropping the adapter reaped the process: if /proc still shows it, it is not gone.
            (Some(pid), Some(rss)) if probe::process_rss_of(pid).is_none() => rss,
            _ => Bytes::ZERO,
        };
        let mut trimmed = self.cleanup();
        let mut rss_after = rss();
        let expected = model.rss_before_load.saturating_add(later);
        if rss_after.saturating_sub(expected) > self.config.cleanup_tolerance {
            // Freed memory sometimes reaches the OS only at a later trim (measured with the
            // speaker embedder: ~20 MiB high after the first trim, back at the next one). Trim
            // once more before suspecting a leak.
            trimmed = trimmed.saturating_add(trim::release_freed_memory().returned);
            rss_after = rss();
        }
        let shortfall = rss_after.saturating_sub(expected);
        let leak_suspected = shortfall > self.config.cleanup_tolerance;
        if leak_suspected {
            self.profiler.note(&format!(
                "{}: RSS {} above its pre-load level after cleanup",
                model.name, shortfall
            ));
        }
        self.record(RunEvent::Unloaded {
            model: model.name,
            reason: reason.to_string(),
            trimmed,
            freed: rss_loaded.saturating_sub(rss_after),
            shortfall,
            leak_suspected,
            worker_returned,
        });
        self.refresh_baseline();
    }

    /// Return freed heap to the OS and mark it; the forced cleanup between models and tasks.
    pub(super) fn cleanup(&self) -> Bytes {
        let outcome = trim::release_freed_memory();
        self.profiler.mark(Event::Cleanup {
            returned: outcome.returned,
        });
        outcome.returned
    }
}

impl Drop for SequentialOrchestrator {
    fn drop(&mut self) {
        self.unload_all();
    }
}
