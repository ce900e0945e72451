//! masp-budget: a hard memory budget for this process, admission control, and memory probes.
//!
//! masp runs models one at a time under a memory limit. This crate decides whether something
//! may be loaded ([`Budget::try_reserve`]), proves that it was admitted ([`Reservation`], a
//! permit released on drop), and measures memory ([`probe`]) and gives freed memory back to
//! the OS ([`trim`]).
//!
//! # The budget
//!
//! The **effective limit** is the smallest of the configured limit (default 16 GiB, or
//! `MASP_BUDGET` via [`BudgetConfig::from_env`]), the machine's physical memory and the
//! process's cgroup limit; [`Budget::describe`] says which one bound it.
//!
//! A request is **admitted** when, at that moment,
//! 1. the ledger has room: `reserved + baseline + requested ≤ limit`, where `reserved` is the
//!    sum of live reservations and `baseline` is memory the process uses outside any
//!    reservation ([`Budget::set_baseline`] or [`Budget::measure_baseline`]); and
//! 2. the system has room: `requested ≤ available - safety_margin`, so memory taken by other
//!    processes is noticed.
//!
//! Refusals are typed ([`Error::OverBudget`], [`Error::SystemMemoryLow`]) and their messages
//! carry every figure in human units.
//!
//! ```
//! use masp_budget::{Budget, BudgetConfig, Bytes};
//!
//! let budget = Budget::new(BudgetConfig::default().with_limit(Bytes::from_gib(1)));
//! budget.set_baseline(Bytes::from_mib(120));
//! let err = budget.try_reserve(Bytes::from_gib(2), "model x").unwrap_err();
//! assert_eq!(
//!     err.to_string(),
//!     "cannot reserve 2 GiB for model x: 0 B reserved + 120 MiB baseline + 2 GiB requested \
//!      exceeds the 1 GiB limit"
//! );
//! ```
//!
//! # Architecture invariants
//!
//! - No I/O beyond `/proc` and cgroup files; no dependency on other masp crates.
//! - [`trim::release_freed_memory`] is the only call of the allocator trim in the workspace.
//! - The ledger is only changed by admitting, resizing and dropping a [`Reservation`], so
//!   releasing every reservation always returns `reserved` to zero.

#![warn(missing_docs)]

mod budget;
mod bytes;
mod error;
pub mod probe;
pub mod trim;

pub use budget::{
    BUDGET_ENV, Budget, BudgetConfig, BudgetSnapshot, DEFAULT_LIMIT, DEFAULT_SAFETY_MARGIN,
    HostMemory, MemorySource, Reservation,
};
pub use bytes::{Bytes, ParseBytesError};
pub use error::{ConfigError, Error, Result};
pub use probe::SystemMemory;
pub use trim::TrimOutcome;
