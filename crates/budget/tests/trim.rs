//! The allocator trim really returns freed heap memory to the OS (glibc on Linux).

use masp_budget::{Bytes, probe, trim};

#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[test]
fn trim_returns_memory_after_freeing_many_small_boxes() {
    const TOTAL: usize = 200 << 20;
    const CHUNK: usize = 4096;
    let before_alloc = probe::process_rss().unwrap();

    // Small boxes live in malloc's arenas (not separate mmaps), which is where freed memory
    // lingers. Writing every byte makes the pages resident.
    let boxes: Vec<Box<[u8]>> = (0..TOTAL / CHUNK)
        .map(|i| vec![(i % 251) as u8 | 1; CHUNK].into_boxed_slice())
        .collect();
    // Allocated last, so it sits above the boxes and keeps free() from shrinking the heap top
    // by itself: the freed memory is then only returned by the trim, as after a real workload.
    let pin = vec![1u8; 64].into_boxed_slice();
    let allocated = probe::process_rss().unwrap();
    assert!(
        allocated.saturating_sub(before_alloc) >= Bytes::from_mib(150),
        "allocation did not show in RSS: {before_alloc} -> {allocated}"
    );
    drop(std::hint::black_box(boxes));

    let outcome = trim::release_freed_memory();
    assert!(outcome.supported);
    let (before, after) = (outcome.rss_before.unwrap(), outcome.rss_after.unwrap());
    assert!(
        before.saturating_sub(after) >= Bytes::from_mib(100),
        "trim returned too little: {before} -> {after} ({} returned)",
        outcome.returned
    );
    assert_eq!(outcome.returned, before.saturating_sub(after));
    drop(pin);
}

#[test]
fn trim_reports_consistently_everywhere() {
    let outcome = trim::release_freed_memory();
    if let (Some(before), Some(after)) = (outcome.rss_before, outcome.rss_after) {
        assert_eq!(outcome.returned, before.saturating_sub(after));
    } else {
        assert_eq!(outcome.returned, Bytes::ZERO);
    }
}
