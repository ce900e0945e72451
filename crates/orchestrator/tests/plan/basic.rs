//! The one-resident planner on realistic batches, rejections, priorities, errors and output.

use masp_budget::Bytes;
use masp_orchestrator::plan::{
    ModelCost, ModelId, PlanError, PlanOptions, PlanTask, Policy, RejectReason, Step, TaskId, plan,
    plan_with_options,
};

use crate::common::{Case, check_plan, model, task};

fn run(case: &Case, policy: Policy) -> masp_orchestrator::plan::Plan {
    plan(&case.models, &case.tasks, case.limit, case.baseline, policy).unwrap()
}

/// `n_files` files through `n_stages` models, each stage after the same file's previous one.
/// Tasks are listed file by file, the worst order for a naive runner.
fn pipeline(n_files: usize, n_stages: usize) -> Case {
    let models = (0..n_stages)
        .map(|s| {
            ModelCost::new(
                format!("stage{s}"),
                Bytes::from_mib(300 + 50 * s as u64),
                Bytes::from_mib(200 + 50 * s as u64),
                Bytes::from_mib(100 + 10 * s as u64),
            )
        })
        .collect();
    let mut tasks = Vec::new();
    for f in 0..n_files {
        for s in 0..n_stages {
            let id = f * n_stages + s;
            let deps = if s == 0 { vec![] } else { vec![TaskId(id - 1)] };
            tasks.push(
                PlanTask::new(TaskId(id), ModelId(s), format!("stage{s} file{f}.wav"))
                    .with_depends_on(deps)
                    .with_working_peak(Bytes::from_mib(20)),
            );
        }
    }
    Case {
        models,
        tasks,
        limit: Bytes::from_gib(1),
        baseline: Bytes::from_mib(100),
    }
}

#[test]
fn twenty_files_vad_then_embedding_load_each_model_once() {
    let case = pipeline(20, 2);
    let p = run(&case, Policy::OneResident);
    check_plan(&case, &p, 1);
    assert_eq!(p.n_loads, 2, "{p}");
    assert!(p.optimal);
    assert_eq!(p.bytes_loaded, Bytes::from_mib(100 + 110));
    assert!(p.rejected.is_empty());
    // All VAD first, then all embeddings, one unload between.
    assert_eq!(p.steps.len(), 2 + 40 + 2);
    assert_eq!(p.steps[0], Step::Load(ModelId(0)));
    assert_eq!(p.steps[21], Step::Unload(ModelId(0)));
    assert_eq!(p.steps[22], Step::Load(ModelId(1)));
    assert_eq!(p.steps[43], Step::Unload(ModelId(1)));
    let order: Vec<TaskId> = p.run_order().collect();
    assert!(order[..20].iter().all(|t| t.0 % 2 == 0));
    assert!(order[20..].iter().all(|t| t.0 % 2 == 1));
}

#[test]
fn thousand_files_three_stages_take_three_loads() {
    let case = pipeline(1000, 3);
    for policy in [Policy::OneResident, Policy::Budgeted { max_resident: None }] {
        let p = run(&case, policy);
        check_plan(&case, &p, if policy == Policy::OneResident { 1 } else { 3 });
        assert_eq!(p.n_loads, 3, "{policy}");
        assert!(p.optimal);
        assert_eq!(p.run_order().count(), 3000);
    }
}

#[test]
fn model_too_large_is_rejected_with_its_numbers_and_blocks_its_dependents() {
    let case = Case {
        models: vec![
            model("small", 100, 10),
            ModelCost::new(
                "huge",
                Bytes::from_gib(3),
                Bytes::from_gib(2),
                Bytes::from_gib(2),
            ),
        ],
        tasks: vec![
            task(1, 0, &[]),
            task(2, 1, &[1]),
            task(3, 0, &[2]),
            task(4, 0, &[3]),
            task(5, 0, &[1]),
        ],
        limit: Bytes::from_gib(1),
        baseline: Bytes::from_mib(100),
    };
    let p = run(&case, Policy::OneResident);
    check_plan(&case, &p, 1);
    assert_eq!(p.rejected.len(), 3);
    assert_eq!(p.rejected[0].task, TaskId(2));
    assert_eq!(
        p.rejected[0].reason,
        RejectReason::ModelTooLarge {
            model: ModelId(1),
            estimate: Bytes::from_gib(3).saturating_add(Bytes::from_mib(100)),
            limit: Bytes::from_gib(1),
        }
    );
    assert_eq!(p.rejected[1].reason, RejectReason::BlockedBy(TaskId(2)));
    assert_eq!(p.rejected[2].reason, RejectReason::BlockedBy(TaskId(2)));
    assert_eq!(p.run_order().collect::<Vec<_>>(), [TaskId(1), TaskId(5)]);
    assert_eq!(p.n_loads, 1);
    let text = p.to_string();
    assert!(
        text.contains("t2: model huge needs 3.1 GiB (baseline included), over the 1 GiB limit"),
        "{text}"
    );
    assert!(text.contains("t3: depends on rejected t2"), "{text}");
}

#[test]
fn working_peak_counts_towards_rejection() {
    let case = Case {
        models: vec![model("m", 600, 1)],
        tasks: vec![
            task(1, 0, &[]).with_working_peak(Bytes::new(300)),
            task(2, 0, &[]).with_working_peak(Bytes::new(500)),
        ],
        limit: Bytes::new(1000),
        baseline: Bytes::new(100),
    };
    let p = run(&case, Policy::OneResident);
    check_plan(&case, &p, 1);
    assert_eq!(p.rejected.len(), 1);
    assert_eq!(p.rejected[0].task, TaskId(2));
    assert_eq!(p.expected_peak, Bytes::new(1000));
}

#[test]
fn everything_rejected_gives_an_empty_plan() {
    let case = Case {
        models: vec![model("m", 10, 1)],
        tasks: vec![task(1, 0, &[]), task(2, 0, &[1])],
        limit: Bytes::new(100),
        baseline: Bytes::new(95),
    };
    let p = run(&case, Policy::OneResident);
    check_plan(&case, &p, 1);
    assert!(p.steps.is_empty());
    assert_eq!(
        (p.n_loads, p.expected_peak, p.optimal),
        (0, Bytes::new(95), true)
    );
}

#[test]
fn priorities_run_highest_first_and_lift_dependencies() {
    // Model 0: a (prio 0). Model 1: b (prio 0) and urgent (prio 9) which needs c (model 0,
    // prio 0). `c` inherits 9, so it runs first though `a` shares its model and priority.
    let case = Case {
        models: vec![model("m0", 10, 5), model("m1", 10, 5)],
        tasks: vec![
            task(1, 0, &[]),                   // a
            task(2, 1, &[]),                   // b
            task(3, 1, &[4]).with_priority(9), // urgent
            task(4, 0, &[]),                   // c
        ],
        limit: Bytes::new(100),
        baseline: Bytes::ZERO,
    };
    let p = run(&case, Policy::OneResident);
    check_plan(&case, &p, 1);
    let order: Vec<usize> = p.run_order().map(|t| t.0).collect();
    assert_eq!(&order[..2], [4, 3]);
    // Then the level-0 tasks: model 1 is loaded, so b runs before switching back for a.
    assert_eq!(&order[2..], [2, 1]);
    assert_eq!(p.n_loads, 3);
    assert!(p.optimal);
}

#[test]
fn exact_search_beats_the_most_work_first_heuristic() {
    // Five `a` tasks are ready, one `b`; a6 needs b1. Most-work-first loads a, b, a (3);
    // b first needs only 2.
    let mut tasks: Vec<PlanTask> = (1..=5).map(|i| task(i, 0, &[])).collect();
    tasks.push(task(10, 1, &[]));
    tasks.push(task(6, 0, &[10]));
    let case = Case {
        models: vec![model("a", 10, 5), model("b", 10, 5)],
        tasks,
        limit: Bytes::new(100),
        baseline: Bytes::ZERO,
    };
    let heuristic = PlanOptions::new(case.limit, case.baseline).with_max_search_states(0);
    let p = plan_with_options(&case.models, &case.tasks, &heuristic).unwrap();
    check_plan(&case, &p, 1);
    assert_eq!((p.n_loads, p.optimal), (3, false));
    assert!(p.to_string().contains("best found (search capped)"));

    let p = run(&case, Policy::OneResident);
    check_plan(&case, &p, 1);
    assert_eq!((p.n_loads, p.optimal), (2, true));
    assert_eq!(p.steps[0], Step::Load(ModelId(1)));
}

#[test]
fn ties_in_loads_are_broken_by_bytes_loaded() {
    // a2 needs b1 and b2 needs a1: either big, cheap, big or cheap, big, cheap — three loads
    // both ways, but the second reads 102 bytes instead of 201.
    let case = Case {
        models: vec![model("big", 10, 100), model("cheap", 10, 1)],
        tasks: vec![
            task(1, 0, &[]),
            task(2, 1, &[]),
            task(3, 0, &[2]),
            task(4, 1, &[1]),
        ],
        limit: Bytes::new(100),
        baseline: Bytes::ZERO,
    };
    let p = run(&case, Policy::OneResident);
    check_plan(&case, &p, 1);
    assert_eq!((p.n_loads, p.bytes_loaded.get(), p.optimal), (3, 102, true));
}

#[test]
fn unusable_batches_are_errors() {
    let models = [model("m", 1, 1)];
    let err = |tasks: &[PlanTask], policy| {
        plan(&models, tasks, Bytes::new(10), Bytes::ZERO, policy).unwrap_err()
    };
    let one = Policy::OneResident;
    assert_eq!(
        err(&[task(1, 0, &[]), task(1, 0, &[])], one),
        PlanError::DuplicateTask { task: TaskId(1) }
    );
    assert_eq!(
        err(&[task(1, 3, &[])], one),
        PlanError::UnknownModel {
            task: TaskId(1),
            model: ModelId(3),
            n_models: 1
        }
    );
    assert_eq!(
        err(&[task(1, 0, &[7])], one),
        PlanError::UnknownDependency {
            task: TaskId(1),
            dependency: TaskId(7)
        }
    );
    assert_eq!(
        err(
            &[task(1, 0, &[])],
            Policy::Budgeted {
                max_resident: Some(0)
            }
        ),
        PlanError::ZeroResident
    );
    assert_eq!(
        err(&[task(5, 0, &[5])], one),
        PlanError::Cycle {
            tasks: vec![TaskId(5)]
        }
    );
    // 1 → 2 → 3 → 1, plus 4 waiting on the cycle and 0 outside it.
    let e = err(
        &[
            task(0, 0, &[]),
            task(4, 0, &[1]),
            task(1, 0, &[2, 0]),
            task(2, 0, &[3]),
            task(3, 0, &[1]),
        ],
        one,
    );
    let PlanError::Cycle { tasks } = &e else {
        panic!("{e:?}")
    };
    let mut sorted = tasks.clone();
    sorted.sort();
    assert_eq!(sorted, [TaskId(1), TaskId(2), TaskId(3)]);
    let msg = e.to_string();
    assert!(msg.starts_with("dependency cycle: task "), "{msg}");
    assert!(msg.contains("(each waits for the next)"), "{msg}");
}

#[test]
fn display_summarises_and_alternate_lists_every_step() {
    let case = pipeline(20, 2);
    let p = run(&case, Policy::OneResident);
    let text = p.to_string();
    let first = text.lines().next().unwrap();
    assert_eq!(
        first,
        "plan: 40 tasks in 2 loads (210 MiB read), expected peak 450 MiB of 1 GiB \
         (baseline 100 MiB); one resident model; optimal"
    );
    assert!(
        text.contains(
            "\n  run    20 tasks                          370 MiB  stage1 file0.wav, \
             stage1 file1.wav, stage1 file2.wav, … (17 more)\n"
        ),
        "{text}"
    );
    assert!(text.contains("load   stage1"), "{text}");
    assert!(text.contains("unload stage0"), "{text}");
    assert_eq!(text.lines().count(), 1 + 6);

    let full = format!("{p:#}");
    assert_eq!(full.lines().count(), 1 + p.steps.len());
    assert!(full.contains("stage1 file19.wav"), "{full}");
}
