//! The process groups of the live workers, kept where a signal handler can kill them: fixed
//! atomic slots, no lock and no allocation, so killing them is async-signal-safe.

use std::sync::atomic::{AtomicI32, Ordering};

/// Live workers tracked for [`kill_all_workers`]: 64. The sequential orchestrator runs one
/// worker at a time (a few with a resident policy); a worker started beyond this is still
/// ended with its orchestrator by its parent-death signal, only its own children are not.
pub const MAX_TRACKED_WORKERS: usize = 64;

/// Process-group ids of live workers; 0 is a free slot.
static GROUPS: [AtomicI32; MAX_TRACKED_WORKERS] =
    [const { AtomicI32::new(0) }; MAX_TRACKED_WORKERS];

/// Track the worker leading process group `pgid`; `false` when every slot is taken.
pub(crate) fn track(pgid: i32) -> bool {
    GROUPS.iter().any(|slot| {
        slot.compare_exchange(0, pgid, Ordering::SeqCst, Ordering::SeqCst)
            .is_ok()
    })
}

/// Stop tracking `pgid`: called before the worker is reaped, so a handler never signals a
/// process id that may have been reused.
pub(crate) fn untrack(pgid: i32) {
    for slot in &GROUPS {
        let _ = slot.compare_exchange(pgid, 0, Ordering::SeqCst, Ordering::SeqCst);
    }
}

/// Kill every live worker's process group (the worker and anything it started) with SIGKILL.
///
/// Async-signal-safe — atomics and `kill(2)` only — so a binary's SIGINT/SIGTERM handler may
/// call it before it exits: `masp` does. Workers end with their orchestrator anyway (their
/// parent-death signal); this also ends what they started.
pub fn kill_all_workers() {
    for slot in &GROUPS {
        let pgid = slot.swap(0, Ordering::SeqCst);
        if pgid > 0 {
            // SAFETY: kill(2) is async-signal-safe; `pgid` leads a group a worker started and
            // was untracked before being reaped, so the id is still that group's.
            unsafe { libc::kill(-pgid, libc::SIGKILL) };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_are_taken_and_freed() {
        // Ids no process can have (above the kernel's pid_max), so nothing is ever signalled.
        let ids: Vec<i32> = (0..8).map(|i| i32::MAX - i).collect();
        for &id in &ids {
            assert!(track(id));
        }
        for &id in &ids {
            untrack(id);
        }
        assert!(
            GROUPS
                .iter()
                .all(|s| !ids.contains(&s.load(Ordering::SeqCst)))
        );
    }
}
