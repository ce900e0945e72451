//! `Policy::Budgeted`: several resident models, evictions by weighted farthest next use, and
//! the exact search against brute force over eviction choices.

use masp_budget::Bytes;
use masp_orchestrator::plan::{
    ModelCost, ModelId, Plan, PlanOptions, Policy, Step, TaskId, plan_with_options,
};

use crate::common::{Case, brute_budgeted, check_plan, model, task};

const ANY: Policy = Policy::Budgeted { max_resident: None };

/// A chain of tasks running `models_in_order` in exactly that order.
fn chain(models: Vec<ModelCost>, models_in_order: &[usize], limit: u64) -> Case {
    let tasks = models_in_order
        .iter()
        .enumerate()
        .map(|(i, &m)| {
            let deps: &[usize] = if i == 0 { &[] } else { &[i - 1] };
            task(i, m, deps)
        })
        .collect();
    Case {
        models,
        tasks,
        limit: Bytes::new(limit),
        baseline: Bytes::ZERO,
    }
}

fn run(case: &Case, policy: Policy, max_search_states: Option<usize>) -> Plan {
    let mut opts = PlanOptions::new(case.limit, case.baseline).with_policy(policy);
    if let Some(n) = max_search_states {
        opts = opts.with_max_search_states(n);
    }
    plan_with_options(&case.models, &case.tasks, &opts).unwrap()
}

fn position(p: &Plan, step: Step) -> usize {
    p.steps.iter().position(|&s| s == step).unwrap()
}

#[test]
fn abcab_evicts_the_model_used_farthest_ahead() {
    // Room for two of the three equal models. At C, A is next used before B: evict B.
    let models = vec![model("A", 10, 10), model("B", 10, 10), model("C", 10, 10)];
    let case = chain(models, &[0, 1, 2, 0, 1, 2, 0], 20);
    let brute = brute_budgeted(&case, usize::MAX);
    assert_eq!(brute, (5, 50));

    // The heuristic alone (no search): Belady, which is optimal for equal sizes and weights.
    let p = run(&case, ANY, Some(0));
    check_plan(&case, &p, 3);
    assert_eq!((p.n_loads, p.bytes_loaded.get()), brute);
    let load_c = position(&p, Step::Load(ModelId(2)));
    assert_eq!(p.steps[load_c - 1], Step::Unload(ModelId(1)), "{p:#}");
    assert!(!p.steps[..load_c].contains(&Step::Unload(ModelId(0))));

    let p = run(&case, ANY, None);
    check_plan(&case, &p, 3);
    assert_eq!(
        (p.n_loads, p.bytes_loaded.get(), p.optimal),
        (brute.0, brute.1, true)
    );
}

#[test]
fn eviction_weighs_next_use_by_reload_cost() {
    // A B C B A with A expensive to reload. Plain Belady evicts A at C (next used later than
    // B) and reloads it; weighted, B goes (cheap) and is reloaded instead.
    let models = vec![model("A", 10, 100), model("B", 10, 1), model("C", 10, 1)];
    let case = chain(models, &[0, 1, 2, 1, 0], 20);
    let brute = brute_budgeted(&case, usize::MAX);
    assert_eq!(brute, (4, 103));
    for cap in [Some(0), None] {
        let p = run(&case, ANY, cap);
        check_plan(&case, &p, 3);
        assert_eq!((p.n_loads, p.bytes_loaded.get()), brute, "{p:#}");
        let load_c = position(&p, Step::Load(ModelId(2)));
        assert_eq!(p.steps[load_c - 1], Step::Unload(ModelId(1)), "{p:#}");
    }
}

#[test]
fn keeps_both_models_when_they_fit() {
    // Per file: a → b → a. One resident: a, b, a (3 loads). Room for both: 2.
    let mut tasks = Vec::new();
    for f in 0..50 {
        tasks.push(task(3 * f, 0, &[]));
        tasks.push(task(3 * f + 1, 1, &[3 * f]));
        tasks.push(task(3 * f + 2, 0, &[3 * f + 1]));
    }
    let case = Case {
        models: vec![model("a", 40, 4), model("b", 50, 5)],
        tasks,
        limit: Bytes::new(100),
        baseline: Bytes::new(10),
    };
    let one = run(&case, Policy::OneResident, None);
    check_plan(&case, &one, 1);
    assert_eq!((one.n_loads, one.optimal), (3, true));
    let both = run(&case, ANY, None);
    check_plan(&case, &both, 2);
    assert_eq!((both.n_loads, both.optimal), (2, true));
    let capped = run(
        &case,
        Policy::Budgeted {
            max_resident: Some(1),
        },
        None,
    );
    check_plan(&case, &capped, 1);
    assert_eq!(capped.n_loads, 3);
}

#[test]
fn loads_a_model_early_while_its_load_peak_still_fits() {
    // big: transient 8, resident 1. m: transient 5, resident 4. Limit 9. Chain m → big → m.
    // Loading m first leaves 4 resident and big's transient no longer fits (4 + 8 > 9), so
    // m would be loaded twice; loading big first (8, then 1) and m next (1 + 5) takes 2.
    let models = vec![
        ModelCost::new("big", Bytes::new(8), Bytes::new(1), Bytes::new(1)),
        ModelCost::new("m", Bytes::new(5), Bytes::new(4), Bytes::new(1)),
    ];
    let case = chain(models, &[1, 0, 1], 9);
    let brute = brute_budgeted(&case, usize::MAX);
    assert_eq!(brute.0, 2);
    let p = run(&case, ANY, None);
    check_plan(&case, &p, 2);
    assert_eq!(
        (p.n_loads, p.bytes_loaded.get(), p.optimal),
        (brute.0, brute.1, true)
    );
    assert_eq!(p.steps[0], Step::Load(ModelId(0)), "{p:#}");
}

#[test]
fn evicts_to_make_room_for_a_task_working_memory() {
    // a and b fit together, but b's second task needs so much working memory that a must go.
    let case = Case {
        models: vec![model("a", 30, 3), model("b", 30, 3)],
        tasks: vec![
            task(1, 0, &[]),
            task(2, 1, &[1]),
            task(3, 1, &[2]).with_working_peak(Bytes::new(60)),
            task(4, 0, &[3]),
        ],
        limit: Bytes::new(100),
        baseline: Bytes::ZERO,
    };
    let brute = brute_budgeted(&case, usize::MAX);
    let p = run(&case, ANY, None);
    check_plan(&case, &p, 2);
    assert_eq!((p.n_loads, p.bytes_loaded.get()), brute);
    assert_eq!(p.n_loads, 3);
    let run3 = position(&p, Step::Run(TaskId(3)));
    assert!(p.steps[..run3].contains(&Step::Unload(ModelId(0))), "{p:#}");
}

#[test]
fn max_resident_caps_the_resident_set() {
    let models = vec![model("A", 1, 1), model("B", 1, 1), model("C", 1, 1)];
    let case = chain(models, &[0, 1, 2, 0, 1, 2, 0, 1, 2], 1000);
    for (cap, loads) in [(1, 9), (2, 6), (3, 3)] {
        let p = run(
            &case,
            Policy::Budgeted {
                max_resident: Some(cap),
            },
            None,
        );
        check_plan(&case, &p, cap);
        assert_eq!(p.n_loads, brute_budgeted(&case, cap).0);
        assert_eq!((p.n_loads, p.optimal), (loads, true), "cap {cap}");
    }
}
