//! Planner speed on realistic and adversarial batches, against a naive baseline in the same run.
//!
//! `cargo bench -p masp-orchestrator --bench plan`. The baseline sorts the tasks by model — the
//! least any planner must do — so the ratio shows what the search costs on top. Each scenario
//! prints its loads and whether the plan was proved optimal once before timing.

// The scenarios are built here and valid; a failure should stop the bench.
#![allow(clippy::expect_used)]

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use masp_budget::Bytes;
use masp_orchestrator::plan::{
    ModelCost, ModelId, PlanOptions, PlanTask, Policy, TaskId, plan_with_options,
};

/// `n_files` files, each through `stages` (model indices) in order; `priority(f)` per file.
fn batch(
    n_files: usize,
    stages: impl Fn(usize) -> Vec<usize>,
    priority: impl Fn(usize) -> i32,
) -> Vec<PlanTask> {
    let mut tasks = Vec::new();
    for f in 0..n_files {
        let mut prev = None;
        for m in stages(f) {
            let id = TaskId(tasks.len());
            tasks.push(
                PlanTask::new(id, ModelId(m), format!("m{m} file{f}.wav"))
                    .with_depends_on(prev)
                    .with_priority(priority(f))
                    .with_working_peak(Bytes::from_mib(30)),
            );
            prev = Some(id);
        }
    }
    tasks
}

fn models(n: u64) -> Vec<ModelCost> {
    (0..n)
        .map(|i| {
            ModelCost::new(
                format!("model{i}"),
                Bytes::from_mib(400 + 100 * (i % 3)),
                Bytes::from_mib(300 + 100 * (i % 3)),
                Bytes::from_mib(200 + 50 * i),
            )
        })
        .collect()
}

/// A random DAG: `n` tasks over `n_models` models, each depending on up to two earlier tasks
/// (a fixed-seed LCG, so every run plans the same batch). Too irregular for the closure to
/// collapse: this is where the search hits its caps.
fn random_dag(n: usize, n_models: usize) -> Vec<PlanTask> {
    let mut state: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut next = move |below: usize| {
        state = state
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        (state >> 33) as usize % below.max(1)
    };
    (0..n)
        .map(|i| {
            let deps: Vec<TaskId> = (0..next(3))
                .filter(|_| i > 0)
                .map(|_| TaskId(next(i)))
                .collect();
            PlanTask::new(TaskId(i), ModelId(next(n_models)), format!("task{i}"))
                .with_depends_on(deps)
        })
        .collect()
}

fn bench_plans(c: &mut Criterion) {
    let models = models(6);
    let one = PlanOptions::new(Bytes::from_gib(1), Bytes::from_mib(100));
    // Room for two of the three models, not three.
    let two = PlanOptions::new(Bytes::from_mib(1200), Bytes::from_mib(100))
        .with_policy(Policy::Budgeted { max_resident: None });
    let scenarios: Vec<(&str, Vec<PlanTask>, PlanOptions)> = vec![
        (
            "1000x3 one-resident",
            batch(1000, |_| vec![0, 1, 2], |_| 0),
            one,
        ),
        (
            "1000x3 budgeted",
            batch(1000, |_| vec![0, 1, 2], |_| 0),
            two,
        ),
        (
            "1000x3 a distinct priority per file",
            batch(1000, |_| vec![0, 1, 2], |f| -(f as i32)),
            one,
        ),
        (
            "1000x3 a distinct priority per file, budgeted",
            batch(1000, |_| vec![0, 1, 2], |f| -(f as i32)),
            two,
        ),
        (
            "600 files, mixed pipelines",
            batch(
                600,
                |f| match f % 4 {
                    0 => vec![0, 1, 2],
                    1 => vec![1, 0],
                    2 => vec![2, 0, 1],
                    _ => vec![0, 2, 0],
                },
                |_| 0,
            ),
            two,
        ),
        ("random DAG, 400 tasks, 6 models", random_dag(400, 6), one),
        (
            "random DAG, 400 tasks, 6 models, budgeted",
            random_dag(400, 6),
            two,
        ),
    ];
    let mut group = c.benchmark_group("plan");
    for (name, tasks, opts) in &scenarios {
        let p = plan_with_options(&models, tasks, opts).expect("valid batch");
        println!(
            "{name}: {} tasks, {} loads, optimal {}",
            tasks.len(),
            p.n_loads,
            p.optimal
        );
        group.bench_function(format!("baseline: sort by model ({name})"), |b| {
            b.iter(|| {
                let mut order: Vec<(ModelId, TaskId)> =
                    tasks.iter().map(|t| (t.model, t.id)).collect();
                order.sort_unstable();
                black_box(order)
            });
        });
        group.bench_function(*name, |b| {
            b.iter(|| black_box(plan_with_options(&models, black_box(tasks), opts)));
        });
    }
    group.finish();
}

criterion_group!(benches, bench_plans);
criterion_main!(benches);
