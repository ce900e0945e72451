//! Budget admission: what one `try_reserve` + release costs, with an empty ledger and with 64
//! live reservations, against a bare mutex lock/unlock measured in the same run (the floor of
//! any shared ledger).
//!
//! `cargo bench -p masp-budget --bench admission`

// A bench's setup is known valid; a failure should stop it.
#![allow(clippy::expect_used)]

use std::hint::black_box;
use std::sync::Mutex;

use criterion::{Criterion, criterion_group, criterion_main};
use masp_budget::{Budget, BudgetConfig, Bytes};

fn admission(c: &mut Criterion) {
    let mut group = c.benchmark_group("admission");
    let floor = Mutex::new(0u64);
    group.bench_function("mutex lock+unlock (floor)", |b| {
        b.iter(|| {
            let mut g = floor.lock().expect("not poisoned");
            *g = g.wrapping_add(black_box(1));
        });
    });
    let budget = Budget::new(BudgetConfig::default().with_limit(Bytes::from_gib(8)));
    group.bench_function("try_reserve + drop, empty ledger", |b| {
        b.iter(|| {
            let r = budget
                .try_reserve(black_box(Bytes::from_mib(1)), "bench")
                .expect("fits");
            black_box(&r);
        });
    });
    let held: Vec<_> = (0..64)
        .map(|i| {
            budget
                .try_reserve(Bytes::from_mib(1), &format!("held {i}"))
                .expect("fits")
        })
        .collect();
    group.bench_function("try_reserve + drop, 64 live reservations", |b| {
        b.iter(|| {
            let r = budget
                .try_reserve(black_box(Bytes::from_mib(1)), "bench")
                .expect("fits");
            black_box(&r);
        });
    });
    group.bench_function("refusal (over the limit)", |b| {
        b.iter(|| {
            black_box(
                budget
                    .try_reserve(black_box(Bytes::from_gib(64)), "too big")
                    .is_err(),
            )
        });
    });
    drop(held);
    group.finish();
}

criterion_group!(benches, admission);
criterion_main!(benches);
