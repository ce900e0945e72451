//! Returning freed heap memory to the OS: the workspace's one call of the allocator trim.
//!
//! glibc keeps freed memory in its arenas, so after a model is dropped RSS often stays high
//! although nothing uses it. `malloc_trim(0)` releases the free pages of every arena. Other
//! allocators and platforms have no equivalent here, and the call is a no-op.

use serde::{Deserialize, Serialize};

use crate::{Bytes, probe};

/// What [`release_freed_memory`] achieved.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct TrimOutcome {
    /// RSS just before trimming, if the platform reports RSS.
    pub rss_before: Option<Bytes>,
    /// RSS just after trimming.
    pub rss_after: Option<Bytes>,
    /// `rss_before - rss_after` (zero if unknown or if RSS grew meanwhile, e.g. another
    /// thread allocated).
    pub returned: Bytes,
    /// Whether a trim is implemented on this platform (glibc on Linux).
    pub supported: bool,
}

/// Asks the allocator to return freed memory to the OS and reports the RSS change.
///
/// Call it after dropping something large (a model session, big buffers). It takes a few
/// milliseconds per GiB of heap on glibc because it walks every arena.
///
/// # Examples
///
/// ```
/// let big = vec![1u8; 64 << 20];
/// drop(big);
/// let outcome = masp_budget::trim::release_freed_memory();
/// println!("returned {} to the OS", outcome.returned);
/// ```
pub fn release_freed_memory() -> TrimOutcome {
    let rss_before = probe::process_rss();
    let supported = malloc_trim();
    let rss_after = probe::process_rss();
    let returned = match (rss_before, rss_after) {
        (Some(before), Some(after)) => before.saturating_sub(after),
        _ => Bytes::ZERO,
    };
    TrimOutcome {
        rss_before,
        rss_after,
        returned,
        supported,
    }
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn malloc_trim() -> bool {
    // SAFETY: malloc_trim only touches the allocator's own free lists; it is thread-safe and
    // has no preconditions. Its return value (whether anything was released) is not needed
    // because RSS is measured around it.
    unsafe {
        libc::malloc_trim(0);
    }
    true
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn malloc_trim() -> bool {
    false
}

/// The mmap threshold masp pins at start-up: allocations of at least this size get pages of
/// their own, which go back to the OS the moment they are freed.
///
/// glibc starts at 128 KiB and, each time a mapped block is freed, raises the threshold to that
/// block's size (up to 32 MiB). After that, blocks of a few MiB come from the heap, and whether
/// their pages return on free depends on what else was allocated around them: the same model
/// then loads with peaks that differ by the size of its temporary buffers from one process to
/// the next (the 12 MiB int8 speaker embedder: 15.3 or 23.9 MiB, bimodal, over 24 processes).
/// Pinning the threshold turns the adjustment off. Measured with masp's calibration check
/// (calibrated estimate against the largest of three fresh loads, six runs each): at 1 MiB the
/// embedder still missed by up to 16%, at 256 KiB or 128 KiB by at most 0.8% and silero by at
/// most 1.7%. The cost is more `mmap` calls for blocks of 256 KiB–32 MiB: 23% more minor page
/// faults for `masp diarize` and no time difference above the run-to-run noise.
pub const PINNED_MMAP_THRESHOLD: Bytes = Bytes::from_kib(256);

/// The environment variable with which glibc users set the threshold themselves.
pub const MMAP_THRESHOLD_ENV: &str = "MALLOC_MMAP_THRESHOLD_";

/// What [`pin_mmap_threshold`] did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum MmapThreshold {
    /// The threshold is now fixed at this size.
    Pinned(Bytes),
    /// [`MMAP_THRESHOLD_ENV`] is set: glibc already applied it (which also fixes the threshold),
    /// and the user's value is left alone. Holds the variable's value.
    FromEnvironment(String),
    /// The allocator has no such setting (not glibc), or the value was refused (more than
    /// `c_int` holds, or more than the allocator accepts).
    Unsupported,
}

/// Fixes the allocator's mmap threshold at `threshold`, so that large freed blocks return to the
/// OS at once and a given sequence of allocations costs the same resident memory in every
/// process. See [`PINNED_MMAP_THRESHOLD`] for why and [`MmapThreshold`] for the outcomes.
///
/// Process-wide: call it once at start-up, before the allocations it should govern. Calling it
/// again replaces the value.
///
/// # Examples
///
/// ```
/// use masp_budget::trim::{self, MmapThreshold};
///
/// match trim::pin_mmap_threshold(trim::PINNED_MMAP_THRESHOLD) {
///     MmapThreshold::Pinned(size) => println!("blocks of {size} and more are mapped"),
///     MmapThreshold::FromEnvironment(value) => println!("kept the user's {value}"),
///     MmapThreshold::Unsupported => println!("not glibc"),
/// }
/// ```
pub fn pin_mmap_threshold(threshold: Bytes) -> MmapThreshold {
    if let Some(value) = std::env::var_os(MMAP_THRESHOLD_ENV) {
        return MmapThreshold::FromEnvironment(value.to_string_lossy().into_owned());
    }
    if set_mmap_threshold(threshold) {
        MmapThreshold::Pinned(threshold)
    } else {
        MmapThreshold::Unsupported
    }
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn set_mmap_threshold(threshold: Bytes) -> bool {
    let Ok(value) = libc::c_int::try_from(threshold.get()) else {
        return false;
    };
    // SAFETY: mallopt only changes a tuning parameter of the allocator; it is thread-safe (it
    // takes the arena locks) and returns 0 for a value it refuses.
    unsafe { libc::mallopt(libc::M_MMAP_THRESHOLD, value) == 1 }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn set_mmap_threshold(_threshold: Bytes) -> bool {
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_threshold_mallopt_cannot_take_is_reported_unsupported() {
        if std::env::var_os(MMAP_THRESHOLD_ENV).is_some() {
            return;
        }
        // mallopt takes an int.
        assert_eq!(
            pin_mmap_threshold(Bytes::from_gib(4)),
            MmapThreshold::Unsupported
        );
        let pinned = pin_mmap_threshold(PINNED_MMAP_THRESHOLD);
        if cfg!(all(target_os = "linux", target_env = "gnu")) {
            assert_eq!(pinned, MmapThreshold::Pinned(PINNED_MMAP_THRESHOLD));
        } else {
            assert_eq!(pinned, MmapThreshold::Unsupported);
        }
    }
}
