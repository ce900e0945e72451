//! Property tests of the ledger: limits hold, refusals are necessary, release restores state.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use masp_budget::{Budget, BudgetConfig, Bytes, Error, Reservation, SystemMemory};
use proptest::prelude::*;

const LIMIT_MIB: u64 = 1000;
const MARGIN_MIB: u64 = 64;

#[derive(Debug, Clone)]
enum Op {
    Reserve(u64),
    Resize(usize, u64),
    Release(usize),
    SetBaseline(u64),
    /// Another process changes how much memory the system has available.
    SetAvailable(u64),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (0..=600u64).prop_map(Op::Reserve),
        3 => (any::<usize>(), 0..=600u64).prop_map(|(i, n)| Op::Resize(i, n)),
        3 => any::<usize>().prop_map(Op::Release),
        1 => (0..=400u64).prop_map(Op::SetBaseline),
        1 => (0..=2000u64).prop_map(Op::SetAvailable),
    ]
}

/// A budget whose system figures come from `available` (in bytes).
fn budget_with(available: &Arc<AtomicU64>) -> Budget {
    let available = Arc::clone(available);
    Budget::new(
        BudgetConfig::default()
            .with_limit(Bytes::from_mib(LIMIT_MIB))
            .with_safety_margin(Bytes::from_mib(MARGIN_MIB))
            .with_memory_source(move || SystemMemory {
                total: Bytes::from_gib(64),
                available: Bytes::new(available.load(Ordering::SeqCst)),
            }),
    )
}

/// What the model says a request for `requested` MiB should get.
fn expected(
    requested: u64,
    reserved: u64,
    baseline: u64,
    available: u64,
    purpose: &str,
) -> Result<(), Error> {
    let mib = Bytes::from_mib;
    if reserved + baseline + requested > LIMIT_MIB {
        return Err(Error::OverBudget {
            purpose: purpose.to_owned(),
            requested: mib(requested),
            reserved: mib(reserved),
            baseline: mib(baseline),
            limit: mib(LIMIT_MIB),
        });
    }
    if requested > 0 && requested > available.saturating_sub(MARGIN_MIB) {
        return Err(Error::SystemMemoryLow {
            purpose: purpose.to_owned(),
            requested: mib(requested),
            available: mib(available),
            margin: mib(MARGIN_MIB),
        });
    }
    Ok(())
}

proptest! {
    /// Single thread against a model: every admission and every refusal is exactly what the
    /// rules say (so every refusal was necessary), with the figures the model predicts.
    #[test]
    fn single_thread_matches_the_model(ops in prop::collection::vec(op(), 0..60)) {
        let available = Arc::new(AtomicU64::new(Bytes::from_gib(2).get()));
        let budget = budget_with(&available);
        let mut live: Vec<(Reservation, u64)> = Vec::new();
        let (mut baseline, mut available_mib) = (0u64, 2048u64);
        for op in ops {
            let reserved: u64 = live.iter().map(|(_, n)| n).sum();
            match op {
                Op::Reserve(n) => {
                    let want = expected(n, reserved, baseline, available_mib, "p");
                    match budget.try_reserve(Bytes::from_mib(n), "p") {
                        Ok(r) => {
                            prop_assert_eq!(want, Ok(()));
                            prop_assert!(reserved + n + baseline <= LIMIT_MIB);
                            live.push((r, n));
                        }
                        Err(e) => prop_assert_eq!(want, Err(e)),
                    }
                }
                Op::Resize(i, n) if !live.is_empty() => {
                    let i = i % live.len();
                    let old = live[i].1;
                    let want = if n <= old {
                        Ok(())
                    } else {
                        expected(n - old, reserved, baseline, available_mib, "p")
                    };
                    let got = live[i].0.resize(Bytes::from_mib(n));
                    prop_assert_eq!(&want, &got);
                    if got.is_ok() {
                        live[i].1 = n;
                    }
                    prop_assert_eq!(live[i].0.bytes(), Bytes::from_mib(live[i].1));
                }
                Op::Release(i) if !live.is_empty() => {
                    let i = i % live.len();
                    drop(live.swap_remove(i));
                }
                Op::SetBaseline(n) => {
                    baseline = n;
                    budget.set_baseline(Bytes::from_mib(n));
                }
                Op::SetAvailable(n) => {
                    available_mib = n;
                    available.store(Bytes::from_mib(n).get(), Ordering::SeqCst);
                }
                Op::Resize(..) | Op::Release(_) => {}
            }
            let snap = budget.snapshot();
            let reserved: u64 = live.iter().map(|(_, n)| n).sum();
            prop_assert_eq!(snap.reserved, Bytes::from_mib(reserved));
            prop_assert_eq!(snap.baseline, Bytes::from_mib(baseline));
            prop_assert_eq!(snap.n_reservations, live.len());
            prop_assert!(snap.reserved <= snap.limit);
        }
        drop(live);
        let snap = budget.snapshot();
        prop_assert_eq!((snap.reserved, snap.n_reservations), (Bytes::ZERO, 0));
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Several threads hammer one budget: the ledger never exceeds the limit, every refusal
    /// reports a state in which the request really did not fit, and releasing everything
    /// returns the ledger to zero.
    #[test]
    fn threads_never_exceed_the_limit(
        per_thread in prop::collection::vec(prop::collection::vec(op(), 1..80), 2..5),
    ) {
        const BASELINE_MIB: u64 = 100;
        let available = Arc::new(AtomicU64::new(u64::MAX));
        let budget = budget_with(&available);
        budget.set_baseline(Bytes::from_mib(BASELINE_MIB));
        let limit = budget.effective_limit();
        let baseline = Bytes::from_mib(BASELINE_MIB);

        let outcomes: Vec<Result<(), TestCaseError>> = std::thread::scope(|scope| {
            let handles: Vec<_> = per_thread
                .iter()
                .map(|ops| scope.spawn(|| run_thread(&budget, ops, limit, baseline)))
                .collect();
            handles.into_iter().map(|h| h.join().expect("worker panicked")).collect()
        });
        for outcome in outcomes {
            outcome?;
        }
        let snap = budget.snapshot();
        prop_assert_eq!((snap.reserved, snap.n_reservations), (Bytes::ZERO, 0));
    }
}

/// One thread's op sequence on the shared budget, checking the invariants after every op.
fn run_thread(
    budget: &Budget,
    ops: &[Op],
    limit: Bytes,
    baseline: Bytes,
) -> Result<(), TestCaseError> {
    let mut mine: Vec<Reservation> = Vec::new();
    for op in ops {
        let refusal = match *op {
            Op::Reserve(n) => match budget.try_reserve(Bytes::from_mib(n), "t") {
                Ok(r) => {
                    mine.push(r);
                    None
                }
                Err(e) => Some(e),
            },
            Op::Resize(i, n) if !mine.is_empty() => {
                let len = mine.len();
                mine[i % len].resize(Bytes::from_mib(n)).err()
            }
            Op::Release(i) if !mine.is_empty() => {
                let len = mine.len();
                drop(mine.swap_remove(i % len));
                None
            }
            _ => None,
        };
        match refusal {
            None => {}
            Some(Error::OverBudget {
                requested,
                reserved,
                baseline: b,
                limit: l,
                ..
            }) => {
                prop_assert_eq!(l, limit);
                prop_assert_eq!(b, baseline);
                // The state reported is the one the decision saw, under the lock.
                prop_assert!(
                    reserved.saturating_add(b).saturating_add(requested) > l,
                    "unnecessary refusal: {reserved} + {b} + {requested} <= {l}"
                );
            }
            Some(other) => prop_assert!(false, "unexpected refusal {}", other),
        }
        let snap = budget.snapshot();
        prop_assert!(snap.reserved.saturating_add(snap.baseline) <= snap.limit);
        // Our own live reservations are always part of the ledger.
        let held: Bytes = mine.iter().map(Reservation::bytes).sum();
        prop_assert!(held <= snap.reserved);
    }
    Ok(())
}
