//! Integration tests of masp-profiler: one binary, one module per topic.

// clippy.toml allows these in `#[test]` functions only; the shared helpers are test code too.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod buffer;
mod leaks;
mod outputs;
mod watch;

use std::sync::{Mutex, MutexGuard, PoisonError};

/// Tests that measure this process's RSS run one at a time: the harness runs tests on
/// parallel threads of one process, and their allocations would blur each other's figures.
static MEMORY: Mutex<()> = Mutex::new(());

fn exclusive_memory() -> MutexGuard<'static, ()> {
    MEMORY.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A buffer of `n` bytes, every page written so it is resident.
fn touched(n: usize) -> Vec<u8> {
    std::hint::black_box(vec![0xA5u8; n])
}
