//! The memory assertions on hand-made cycles: steady growth is a leak; bouncing, a one-off step
//! and too few cycles are judged as they should be; failures name the model and the figures.

use masp_budget::Bytes;
use masp_profiler::{ByteDelta, Cycle, LeakVerdict};
use masp_testkit::assert::{assert_no_leak, leak_verdict};

const MIB: u64 = 1 << 20;

/// Back-to-back cycles whose RSS after cleanup is `levels[i]` MiB; each next load starts there.
fn cycles(levels: &[u64]) -> Vec<Cycle> {
    let mut baseline = Bytes::new(100 * MIB);
    levels
        .iter()
        .enumerate()
        .map(|(i, level)| {
            let after = Bytes::new(level * MIB);
            let loaded = baseline.saturating_add(Bytes::new(15 * MIB));
            let cycle = Cycle {
                model: "m".into(),
                index: i + 1,
                start_s: i as f64,
                end_s: i as f64 + 0.5,
                baseline,
                loaded,
                load_growth: ByteDelta::between(baseline, loaded),
                after_cleanup: after,
                residual: ByteDelta::between(baseline, after),
                returned: ByteDelta::between(after, loaded),
                trim_returned: None,
                effectiveness: None,
            };
            baseline = after;
            cycle
        })
        .collect()
}

#[test]
fn steady_growth_is_a_leak_named_with_its_model_and_size() {
    let levels: Vec<u64> = (0..20).map(|i| 100 + 4 * i).collect();
    let evidence = cycles(&levels);
    let (verdict, growth) = leak_verdict(&evidence, Bytes::from_mib(1));
    assert!(
        matches!(verdict, LeakVerdict::Suspected { cycles: 20, .. }),
        "{verdict:?}"
    );
    assert_eq!(growth.unwrap().get(), 4 * MIB as i64);
    let failure = assert_no_leak(&evidence, Bytes::from_mib(1)).unwrap_err();
    assert!(
        failure.message.contains("m leaks 4 MiB per cycle over 20"),
        "{failure}"
    );
    assert!(failure.to_string().contains("residual"), "{failure}");
}

#[test]
fn bouncing_and_a_one_off_step_are_not_leaks() {
    let bouncing: Vec<u64> = (0..20)
        .map(|i| if i % 2 == 0 { 100 } else { 108 })
        .collect();
    assert_no_leak(&cycles(&bouncing), Bytes::from_mib(1)).unwrap();
    let step: Vec<u64> = (0..20).map(|i| if i < 10 { 100 } else { 102 }).collect();
    assert_no_leak(&cycles(&step), Bytes::from_mib(1)).unwrap();
}

#[test]
fn a_bounce_that_the_next_load_gives_back_is_not_a_leak() {
    // RSS right after cleanup is 8 MiB high, but each next load starts from the level.
    let mut evidence = cycles(&[100; 20]);
    for c in &mut evidence {
        c.after_cleanup = Bytes::new(108 * MIB);
        c.residual = ByteDelta::between(c.baseline, c.after_cleanup);
    }
    assert_no_leak(&evidence, Bytes::from_mib(1)).unwrap();
}

#[test]
fn fewer_than_three_cycles_fail_rather_than_pass() {
    let failure = assert_no_leak(&cycles(&[100, 100]), Bytes::from_mib(1)).unwrap_err();
    assert!(failure.message.contains("not enough cycles"), "{failure}");
}

#[test]
#[should_panic(expected = "m leaks")]
fn the_macro_panics_with_the_failure() {
    let levels: Vec<u64> = (0..10).map(|i| 100 + 2 * i).collect();
    masp_testkit::assert_no_leak!(cycles(&levels), Bytes::from_mib(1));
}
