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
