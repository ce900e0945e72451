//! Streaming memory does not grow with file length (counting allocator, per test thread).

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::path::Path;

use masp_audio::{ChunkStream, StreamOptions, WavSampleFormat, WavWriter};

use crate::common::sine;

/// Counts live heap bytes per thread, so tests running in parallel do not disturb each other
/// (libtest runs each test on its own thread and `ChunkStream` spawns none).
struct Counting;

thread_local! {
    static LIVE: Cell<isize> = const { Cell::new(0) };
    static PEAK: Cell<isize> = const { Cell::new(0) };
}

fn add(delta: isize) {
    // `try_with` fails only during thread teardown, when nothing is measured.
    let _ = LIVE.try_with(|live| {
        let now = live.get() + delta;
        live.set(now);
        let _ = PEAK.try_with(|peak| peak.set(peak.get().max(now)));
    });
}

// SAFETY: defers all allocation to `System`; the bookkeeping allocates nothing.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        add(layout.size() as isize);
        // SAFETY: same contract as ours.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        add(-(layout.size() as isize));
        // SAFETY: same contract as ours.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        add(layout.size() as isize);
        // SAFETY: same contract as ours.
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        add(new_size as isize - layout.size() as isize);
        // SAFETY: same contract as ours.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

/// Peak extra heap bytes on this thread while streaming `path` to the end.
fn peak_streaming_bytes(path: &Path, options: StreamOptions) -> (usize, u64) {
    let base = LIVE.with(Cell::get);
    PEAK.with(|p| p.set(base));
    let mut stream = ChunkStream::open(path, options).unwrap();
    let mut n = 0u64;
    while let Some(chunk) = stream.next_chunk().unwrap() {
        n += chunk.len() as u64;
    }
    drop(stream);
    let peak = PEAK.with(Cell::get) - base;
    (peak.max(0) as usize, n)
}

/// Writes `minutes` of a tone in one-second blocks, never holding the file in memory.
fn write_long_wav(path: &Path, rate: u32, minutes: u32, format: WavSampleFormat) {
    let second = sine(440.0, 0.3, rate, rate as usize);
    let mut w = WavWriter::create(path, rate, format).unwrap();
    for _ in 0..minutes * 60 {
        w.write(&second).unwrap();
    }
    w.finish().unwrap();
}

const MIB: usize = 1 << 20;

#[test]
fn thirty_minutes_stream_in_the_memory_of_one() {
    let dir = tempfile::tempdir().unwrap();
    let short = dir.path().join("1min.wav");
    let long = dir.path().join("30min.wav");
    write_long_wav(&short, 16_000, 1, WavSampleFormat::I16);
    write_long_wav(&long, 16_000, 30, WavSampleFormat::I16);
    let options = StreamOptions::default();
    let (peak_short, n_short) = peak_streaming_bytes(&short, options);
    let (peak_long, n_long) = peak_streaming_bytes(&long, options);
    eprintln!("passthrough peak heap: 1 min {peak_short} B, 30 min {peak_long} B");
    assert_eq!(n_short, 60 * 16_000);
    assert_eq!(n_long, 30 * 60 * 16_000);
    assert!(peak_long < MIB, "30 min peaked at {peak_long} bytes");
    // Same buffers whatever the length: allow only allocator rounding noise.
    assert!(
        peak_long <= peak_short + 64 * 1024,
        "1 min: {peak_short} B, 30 min: {peak_long} B"
    );
}

#[test]
fn resampling_stream_memory_does_not_grow() {
    let dir = tempfile::tempdir().unwrap();
    let short = dir.path().join("1min.wav");
    let long = dir.path().join("10min.wav");
    write_long_wav(&short, 44_100, 1, WavSampleFormat::F32);
    write_long_wav(&long, 44_100, 10, WavSampleFormat::F32);
    let options = StreamOptions::default();
    let (peak_short, _) = peak_streaming_bytes(&short, options);
    let (peak_long, n_long) = peak_streaming_bytes(&long, options);
    eprintln!("resampling peak heap: 1 min {peak_short} B, 10 min {peak_long} B");
    assert_eq!(n_long, 10 * 60 * 16_000);
    assert!(peak_long < MIB, "10 min peaked at {peak_long} bytes");
    assert!(
        peak_long <= peak_short + 64 * 1024,
        "1 min: {peak_short} B, 10 min: {peak_long} B"
    );
}
