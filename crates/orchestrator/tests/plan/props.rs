//! Property tests: on small random batches the planner is optimal (equal to brute force), says
//! so, and every plan keeps every promise (dependencies, priorities, memory, rejections).

use masp_budget::Bytes;
use masp_orchestrator::plan::{
    ModelCost, ModelId, PlanOptions, PlanTask, Policy, TaskId, plan_with_options,
};
use proptest::collection::vec;
use proptest::prelude::*;

use crate::common::{Case, brute_budgeted, brute_one_resident, check_plan};

/// Up to `max_tasks` tasks over up to `max_models` models: random DAG (each task may depend on
/// any earlier one), priorities in -1..=1, sizes and working peaks under a random limit, listed
/// in a random order with non-contiguous ids.
fn case(max_tasks: usize, max_models: usize) -> impl Strategy<Value = Case> {
    (1..=max_models, 1..=max_tasks)
        .prop_flat_map(|(n_models, n_tasks)| {
            let models = vec((1u64..=60, 1u64..=50, 1u64..=20), n_models);
            let tasks = vec(
                (
                    0..n_models,
                    -1i32..=1,
                    prop_oneof![Just(0u64), 1u64..=30],
                    vec(proptest::bool::weighted(0.3), n_tasks),
                ),
                n_tasks,
            );
            let order = Just((0..n_tasks).collect::<Vec<_>>()).prop_shuffle();
            (models, tasks, order, 20u64..=150, 0u64..=20)
        })
        .prop_map(|(models, tasks, order, limit, baseline)| {
            let models = models
                .into_iter()
                .enumerate()
                .map(|(i, (peak, resident, load))| {
                    ModelCost::new(
                        format!("m{i}"),
                        Bytes::new(peak),
                        Bytes::new(resident),
                        Bytes::new(load),
                    )
                })
                .collect();
            let id = |i: usize| TaskId(7 * i + 3);
            let built: Vec<PlanTask> = tasks
                .into_iter()
                .enumerate()
                .map(|(i, (model, priority, working_peak, deps))| {
                    PlanTask::new(id(i), ModelId(model), format!("task{i}"))
                        .with_depends_on((0..i).filter(|&j| deps[j]).map(id))
                        .with_priority(priority)
                        .with_working_peak(Bytes::new(working_peak))
                })
                .collect();
            Case {
                models,
                tasks: order.iter().map(|&i| built[i].clone()).collect(),
                limit: Bytes::new(limit),
                baseline: Bytes::new(baseline),
            }
        })
}

fn plan(case: &Case, policy: Policy) -> masp_orchestrator::plan::Plan {
    let opts = PlanOptions::new(case.limit, case.baseline).with_policy(policy);
    plan_with_options(&case.models, &case.tasks, &opts).unwrap()
}

proptest! {
    #[test]
    fn one_resident_is_optimal_on_small_batches(case in case(8, 3)) {
        let p = plan(&case, Policy::OneResident);
        check_plan(&case, &p, 1);
        prop_assert!(p.optimal);
        let n_planned = p.run_order().count();
        let brute = if n_planned == 0 { (0, 0) } else { brute_one_resident(&case) };
        prop_assert_eq!((p.n_loads, p.bytes_loaded.get()), brute, "{:#}", p);
        // The same optimum from the general brute force with one resident model.
        if n_planned > 0 {
            prop_assert_eq!(brute_budgeted(&case, 1), brute);
        }
    }

    #[test]
    fn budgeted_is_optimal_on_small_batches(case in case(7, 3), cap in prop_oneof![Just(None), (1usize..=3).prop_map(Some)]) {
        let p = plan(&case, Policy::Budgeted { max_resident: cap });
        check_plan(&case, &p, cap.unwrap_or(usize::MAX));
        prop_assert!(p.optimal);
        let brute = if p.run_order().count() == 0 {
            (0, 0)
        } else {
            brute_budgeted(&case, cap.unwrap_or(usize::MAX))
        };
        prop_assert_eq!((p.n_loads, p.bytes_loaded.get()), brute, "{:#}", p);
    }

    #[test]
    fn capped_search_still_gives_valid_plans(case in case(12, 4), budgeted in any::<bool>()) {
        let policy = if budgeted { Policy::Budgeted { max_resident: None } } else { Policy::OneResident };
        let opts = PlanOptions::new(case.limit, case.baseline)
            .with_policy(policy)
            .with_max_search_states(3);
        let capped = plan_with_options(&case.models, &case.tasks, &opts).unwrap();
        check_plan(&case, &capped, if budgeted { usize::MAX } else { 1 });
        let full = plan(&case, policy);
        check_plan(&case, &full, if budgeted { usize::MAX } else { 1 });
        // The search only improves on the heuristic; a capped plan claims optimality only when
        // it is.
        prop_assert!((full.n_loads, full.bytes_loaded) <= (capped.n_loads, capped.bytes_loaded));
        if capped.optimal && full.optimal {
            prop_assert_eq!((full.n_loads, full.bytes_loaded), (capped.n_loads, capped.bytes_loaded));
        }
    }
}
