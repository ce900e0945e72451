//! The memory budget: effective limit, ledger of reservations, and admission control.

use std::ffi::OsString;
use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use serde::{Deserialize, Serialize};

use crate::Bytes;
use crate::error::{ConfigError, Error, Result};
use crate::probe::{self, SystemMemory};

/// The limit used when none is configured: 16 GiB.
pub const DEFAULT_LIMIT: Bytes = Bytes::from_gib(16);

/// The default [`BudgetConfig::safety_margin`]: 256 MiB.
pub const DEFAULT_SAFETY_MARGIN: Bytes = Bytes::from_mib(256);

/// The environment variable [`BudgetConfig::from_env`] reads the limit from, e.g.
/// `MASP_BUDGET=8GiB`.
pub const BUDGET_ENV: &str = "MASP_BUDGET";

/// Where a budget learns how much memory the machine has.
///
/// The default, [`HostMemory`], asks the OS through [`probe`]. Tests and simulations can pass
/// their own source to make the system check deterministic; any
/// `Fn() -> SystemMemory + Send + Sync` closure is a source with no cgroup limit.
pub trait MemorySource: Send + Sync {
    /// Total and currently available memory. Called on every growing admission.
    fn system_memory(&self) -> SystemMemory;
    /// The cgroup memory limit, if any. Called once, by [`Budget::new`].
    fn cgroup_limit(&self) -> Option<Bytes>;
}

/// The real machine: [`probe::system_memory`] and [`probe::cgroup_memory_limit`].
#[derive(Debug, Clone, Copy, Default)]
pub struct HostMemory;

impl MemorySource for HostMemory {
    fn system_memory(&self) -> SystemMemory {
        probe::system_memory()
    }

    fn cgroup_limit(&self) -> Option<Bytes> {
        probe::cgroup_memory_limit()
    }
}

impl<F> MemorySource for F
where
    F: Fn() -> SystemMemory + Send + Sync,
{
    fn system_memory(&self) -> SystemMemory {
        self()
    }

    fn cgroup_limit(&self) -> Option<Bytes> {
        None
    }
}

/// How to build a [`Budget`].
///
/// # Examples
///
/// ```
/// use masp_budget::{Budget, BudgetConfig, Bytes};
///
/// let budget = Budget::new(BudgetConfig::default().with_limit(Bytes::from_gib(4)));
/// assert!(budget.effective_limit() <= Bytes::from_gib(4));
/// ```
#[derive(Clone)]
pub struct BudgetConfig {
    /// The hard limit for this process, in bytes. `None` means [`DEFAULT_LIMIT`] (16 GiB).
    ///
    /// The effective limit is the smallest of this, the machine's physical memory and the
    /// cgroup limit. Set it to what you can afford to lose to this process; everything else on
    /// the machine has to live in the rest.
    pub limit: Option<Bytes>,
    /// Memory that must stay available to the rest of the system after an admission.
    /// Default [`DEFAULT_SAFETY_MARGIN`] (256 MiB).
    ///
    /// A request is refused if it exceeds the system's currently available memory minus this
    /// margin, even when the ledger has room: another process may have taken the memory. A
    /// larger margin makes swapping and the OOM killer less likely but refuses more loads on a
    /// busy machine; 256 MiB covers the kernel's own reserves and small allocations made while
    /// a model loads on a desktop. Servers with large page caches can use less.
    pub safety_margin: Bytes,
    /// Where the system figures come from. Default [`HostMemory`].
    pub memory_source: Arc<dyn MemorySource>,
}

impl Default for BudgetConfig {
    fn default() -> Self {
        BudgetConfig {
            limit: None,
            safety_margin: DEFAULT_SAFETY_MARGIN,
            memory_source: Arc::new(HostMemory),
        }
    }
}

impl fmt::Debug for BudgetConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BudgetConfig")
            .field("limit", &self.limit)
            .field("safety_margin", &self.safety_margin)
            .finish_non_exhaustive()
    }
}

impl BudgetConfig {
    /// The default configuration with the limit taken from `MASP_BUDGET` if it is set and
    /// non-empty (see [`Bytes`] for the accepted forms, e.g. `8GiB`).
    ///
    /// # Errors
    ///
    /// [`ConfigError::InvalidEnv`] naming the value if `MASP_BUDGET` is not a size.
    ///
    /// # Examples
    ///
    /// ```
    /// let config = masp_budget::BudgetConfig::from_env()?;
    /// # Ok::<(), masp_budget::ConfigError>(())
    /// ```
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::default().with_env()
    }

    /// `self` with the limit overridden by `MASP_BUDGET` if it is set and non-empty.
    ///
    /// # Errors
    ///
    /// [`ConfigError::InvalidEnv`] naming the value if `MASP_BUDGET` is not a size.
    ///
    /// # Examples
    ///
    /// ```
    /// use masp_budget::{BudgetConfig, Bytes};
    /// let config = BudgetConfig::default().with_limit(Bytes::from_gib(2)).with_env()?;
    /// # Ok::<(), masp_budget::ConfigError>(())
    /// ```
    pub fn with_env(self) -> Result<Self, ConfigError> {
        match limit_from_env_value(std::env::var_os(BUDGET_ENV))? {
            Some(limit) => Ok(self.with_limit(limit)),
            None => Ok(self),
        }
    }

    /// `self` with the given limit.
    ///
    /// # Examples
    ///
    /// ```
    /// use masp_budget::{BudgetConfig, Bytes};
    /// let config = BudgetConfig::default().with_limit(Bytes::from_gib(1));
    /// assert_eq!(config.limit, Some(Bytes::from_gib(1)));
    /// ```
    #[must_use]
    pub fn with_limit(mut self, limit: Bytes) -> Self {
        self.limit = Some(limit);
        self
    }

    /// `self` with the given safety margin.
    ///
    /// # Examples
    ///
    /// ```
    /// use masp_budget::{BudgetConfig, Bytes};
    /// let config = BudgetConfig::default().with_safety_margin(Bytes::ZERO);
    /// assert_eq!(config.safety_margin, Bytes::ZERO);
    /// ```
    #[must_use]
    pub fn with_safety_margin(mut self, margin: Bytes) -> Self {
        self.safety_margin = margin;
        self
    }

    /// `self` with another source of system figures (e.g. a fake in tests).
    ///
    /// # Examples
    ///
    /// ```
    /// use masp_budget::{Budget, BudgetConfig, Bytes, probe::SystemMemory};
    ///
    /// let fake = || SystemMemory { total: Bytes::from_gib(8), available: Bytes::from_gib(1) };
    /// let budget = Budget::new(BudgetConfig::default().with_memory_source(fake));
    /// assert_eq!(budget.effective_limit(), Bytes::from_gib(8));
    /// assert!(budget.try_reserve(Bytes::from_gib(2), "big model").is_err());
    /// ```
    #[must_use]
    pub fn with_memory_source(mut self, source: impl MemorySource + 'static) -> Self {
        self.memory_source = Arc::new(source);
        self
    }
}

fn limit_from_env_value(value: Option<OsString>) -> Result<Option<Bytes>, ConfigError> {
    let Some(value) = value else {
        return Ok(None);
    };
    let text = value.to_string_lossy();
    if text.trim().is_empty() {
        return Ok(None);
    }
    let invalid = |reason| ConfigError::InvalidEnv {
        var: BUDGET_ENV,
        value: text.clone().into_owned(),
        reason,
    };
    let Some(utf8) = value.to_str() else {
        return Err(invalid("not valid UTF-8"));
    };
    utf8.parse::<Bytes>()
        .map(Some)
        .map_err(|e| invalid(e.reason))
}

/// A hard memory budget shared by everything that loads models in this process.
///
/// Cloning is cheap (an `Arc`); clones share one ledger. See the crate docs for the admission
/// rules.
///
/// # Examples
///
/// ```
/// use masp_budget::{Budget, BudgetConfig, Bytes};
///
/// let budget = Budget::new(BudgetConfig::default().with_limit(Bytes::from_gib(1)));
/// budget.set_baseline(Bytes::from_mib(100));
/// let permit = budget.try_reserve(Bytes::from_mib(300), "model a")?;
/// assert_eq!(budget.reserved(), Bytes::from_mib(300));
/// drop(permit);
/// assert_eq!(budget.reserved(), Bytes::ZERO);
/// # Ok::<(), masp_budget::Error>(())
/// ```
#[derive(Clone)]
pub struct Budget {
    inner: Arc<Inner>,
}

struct Inner {
    limit: Bytes,
    bounds: LimitBounds,
    safety_margin: Bytes,
    source: Arc<dyn MemorySource>,
    ledger: Mutex<Ledger>,
}

/// The candidates for the effective limit, kept for [`Budget::describe`].
#[derive(Debug, Clone, Copy)]
struct LimitBounds {
    configured: Bytes,
    configured_is_default: bool,
    /// `Bytes::MAX` if unknown.
    physical: Bytes,
    cgroup: Option<Bytes>,
}

#[derive(Debug, Default)]
struct Ledger {
    reserved: Bytes,
    baseline: Bytes,
    n_reservations: usize,
}

impl Ledger {
    /// The ledger check: `reserved + baseline + requested ≤ limit`.
    fn check(&self, requested: Bytes, limit: Bytes, purpose: &str) -> Result<()> {
        let total = self
            .reserved
            .saturating_add(self.baseline)
            .saturating_add(requested);
        if total > limit {
            return Err(Error::OverBudget {
                purpose: purpose.to_owned(),
                requested,
                reserved: self.reserved,
                baseline: self.baseline,
                limit,
            });
        }
        Ok(())
    }
}

/// The ledger at one instant.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct BudgetSnapshot {
    /// The effective limit.
    pub limit: Bytes,
    /// Sum of live reservations.
    pub reserved: Bytes,
    /// The process's unreserved baseline.
    pub baseline: Bytes,
    /// Number of live reservations.
    pub n_reservations: usize,
}

impl BudgetSnapshot {
    /// What a new reservation could get from the ledger: `limit - reserved - baseline`
    /// (zero if over). The system check may still refuse less.
    ///
    /// # Examples
    ///
    /// ```
    /// use masp_budget::{Budget, BudgetConfig, Bytes};
    /// let budget = Budget::new(BudgetConfig::default().with_limit(Bytes::from_gib(1)));
    /// budget.set_baseline(Bytes::from_mib(24));
    /// assert_eq!(budget.snapshot().headroom(), Bytes::from_mib(1000));
    /// ```
    #[must_use]
    pub fn headroom(&self) -> Bytes {
        self.limit
            .saturating_sub(self.reserved.saturating_add(self.baseline))
    }
}

impl fmt::Display for BudgetSnapshot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} reserved in {} reservation{} + {} baseline of {} ({} free)",
            self.reserved,
            self.n_reservations,
            if self.n_reservations == 1 { "" } else { "s" },
            self.baseline,
            self.limit,
            self.headroom()
        )
    }
}

impl Budget {
    /// Creates a budget. Reads physical memory and the cgroup limit once, from
    /// `config.memory_source`.
    ///
    /// # Examples
    ///
    /// ```
    /// use masp_budget::{Budget, BudgetConfig};
    /// let budget = Budget::new(BudgetConfig::default());
    /// println!("budget: {}", budget.describe());
    /// ```
    #[must_use]
    pub fn new(config: BudgetConfig) -> Self {
        let system = config.memory_source.system_memory();
        let bounds = LimitBounds {
            configured: config.limit.unwrap_or(DEFAULT_LIMIT),
            configured_is_default: config.limit.is_none(),
            physical: system.total,
            cgroup: config.memory_source.cgroup_limit(),
        };
        let limit = bounds
            .configured
            .min(bounds.physical)
            .min(bounds.cgroup.unwrap_or(Bytes::MAX));
        Budget {
            inner: Arc::new(Inner {
                limit,
                bounds,
                safety_margin: config.safety_margin,
                source: config.memory_source,
                ledger: Mutex::new(Ledger::default()),
            }),
        }
    }

    /// The limit admissions are checked against: min(configured, physical, cgroup).
    ///
    /// # Examples
    ///
    /// ```
    /// use masp_budget::{Budget, BudgetConfig, Bytes};
    /// let budget = Budget::new(BudgetConfig::default().with_limit(Bytes::from_mib(64)));
    /// assert_eq!(budget.effective_limit(), Bytes::from_mib(64));
    /// ```
    #[must_use]
    pub fn effective_limit(&self) -> Bytes {
        self.inner.limit
    }

    /// The configured safety margin (see [`BudgetConfig::safety_margin`]).
    ///
    /// # Examples
    ///
    /// ```
    /// use masp_budget::{Budget, BudgetConfig, DEFAULT_SAFETY_MARGIN};
    /// assert_eq!(Budget::new(BudgetConfig::default()).safety_margin(), DEFAULT_SAFETY_MARGIN);
    /// ```
    #[must_use]
    pub fn safety_margin(&self) -> Bytes {
        self.inner.safety_margin
    }

    /// The effective limit and what bound it, with the other candidates, e.g.
    /// `"1 GiB (configured; physical 23.5 GiB, no cgroup limit)"`.
    ///
    /// # Examples
    ///
    /// ```
    /// use masp_budget::{Budget, BudgetConfig, Bytes, probe::SystemMemory};
    /// let fake = || SystemMemory { total: Bytes::from_gib(8), available: Bytes::from_gib(6) };
    /// let budget = Budget::new(BudgetConfig::default().with_memory_source(fake));
    /// assert_eq!(budget.describe(), "8 GiB (physical memory; default 16 GiB, no cgroup limit)");
    /// ```
    #[must_use]
    pub fn describe(&self) -> String {
        let b = &self.inner.bounds;
        let configured_name = if b.configured_is_default {
            "default"
        } else {
            "configured"
        };
        let physical = if b.physical == Bytes::MAX {
            "physical memory unknown".to_owned()
        } else {
            format!("physical {}", b.physical)
        };
        let cgroup = b
            .cgroup
            .map_or_else(|| "no cgroup limit".to_owned(), |c| format!("cgroup {c}"));
        let limit = self.inner.limit;
        // Ties go to the configured value: it is the one the user chose.
        if limit == b.configured {
            format!("{limit} ({configured_name}; {physical}, {cgroup})")
        } else if Some(limit) == b.cgroup {
            format!(
                "{limit} (cgroup limit; {configured_name} {}, {physical})",
                b.configured
            )
        } else {
            format!(
                "{limit} (physical memory; {configured_name} {}, {cgroup})",
                b.configured
            )
        }
    }

    /// Asks for `bytes` for `purpose` (e.g. `"model whisper-tiny"`). On success the memory is
    /// accounted until the returned [`Reservation`] is dropped.
    ///
    /// Admitted if both hold at this moment:
    /// - ledger: `reserved + baseline + bytes ≤ effective_limit`;
    /// - system: `bytes ≤ available - safety_margin`.
    ///
    /// The system check does not subtract other reservations that are not allocated yet: it
    /// catches other processes, the ledger catches ourselves.
    ///
    /// # Errors
    ///
    /// [`Error::OverBudget`] if the ledger check fails (checked first), else
    /// [`Error::SystemMemoryLow`] if the system check fails.
    ///
    /// # Examples
    ///
    /// ```
    /// use masp_budget::{Budget, BudgetConfig, Bytes, Error};
    /// let budget = Budget::new(BudgetConfig::default().with_limit(Bytes::from_mib(512)));
    /// let a = budget.try_reserve(Bytes::from_mib(400), "model a")?;
    /// let refused = budget.try_reserve(Bytes::from_mib(200), "model b");
    /// assert!(matches!(refused, Err(Error::OverBudget { .. })));
    /// # Ok::<(), masp_budget::Error>(())
    /// ```
    pub fn try_reserve(&self, bytes: Bytes, purpose: &str) -> Result<Reservation> {
        self.admit(bytes, purpose, |ledger| ledger.n_reservations += 1)?;
        Ok(Reservation {
            budget: self.clone(),
            bytes,
            purpose: purpose.to_owned(),
        })
    }

    /// Runs both checks for `requested` and, if they pass, adds it to the ledger and calls
    /// `on_admit` under the lock.
    fn admit(
        &self,
        requested: Bytes,
        purpose: &str,
        on_admit: impl FnOnce(&mut Ledger),
    ) -> Result<()> {
        // Probe outside the lock: it reads /proc/meminfo, and a zero-byte request cannot fail it.
        let system = (requested > Bytes::ZERO).then(|| self.inner.source.system_memory());
        let mut ledger = self.lock();
        ledger.check(requested, self.inner.limit, purpose)?;
        if let Some(system) = system {
            let usable = system.available.saturating_sub(self.inner.safety_margin);
            if requested > usable {
                return Err(Error::SystemMemoryLow {
                    purpose: purpose.to_owned(),
                    requested,
                    available: system.available,
                    margin: self.inner.safety_margin,
                });
            }
        }
        ledger.reserved = ledger.reserved.saturating_add(requested);
        on_admit(&mut ledger);
        Ok(())
    }

    /// Sets the process's unreserved baseline: memory in use that no reservation accounts for
    /// (runtime, buffers, the program itself). Admissions check it against the limit.
    ///
    /// # Examples
    ///
    /// ```
    /// use masp_budget::{Budget, BudgetConfig, Bytes};
    /// let budget = Budget::new(BudgetConfig::default().with_limit(Bytes::from_gib(1)));
    /// budget.set_baseline(Bytes::from_gib(1));
    /// assert!(budget.try_reserve(Bytes::new(1), "anything").is_err());
    /// ```
    pub fn set_baseline(&self, baseline: Bytes) {
        self.lock().baseline = baseline;
    }

    /// Measures the baseline as current RSS minus what is reserved (at least zero), stores it
    /// and returns it. `None` (and no change) if RSS cannot be read on this platform.
    ///
    /// Reservations are estimates; if they over-estimate what is resident, the baseline reads
    /// low. Measure it while nothing large is reserved for the most accurate figure.
    ///
    /// # Examples
    ///
    /// ```
    /// use masp_budget::{Budget, BudgetConfig};
    /// let budget = Budget::new(BudgetConfig::default());
    /// if let Some(baseline) = budget.measure_baseline() {
    ///     assert_eq!(budget.snapshot().baseline, baseline);
    /// }
    /// ```
    pub fn measure_baseline(&self) -> Option<Bytes> {
        self.measure_baseline_with(Bytes::ZERO)
    }

    /// Like [`Budget::measure_baseline`], when some reservations cover memory held outside
    /// this process: `outside` is the RSS of those processes (e.g. worker processes running
    /// models), counted with this process's RSS before the reservations are taken off.
    ///
    /// # Examples
    ///
    /// ```
    /// use masp_budget::{Budget, BudgetConfig, Bytes};
    /// let budget = Budget::new(BudgetConfig::default().with_limit(Bytes::from_gib(4)));
    /// // A worker holds 100 MiB under a 100 MiB reservation: the baseline is ours alone.
    /// let _worker = budget.try_reserve(Bytes::from_mib(100), "worker")?;
    /// let with = budget.measure_baseline_with(Bytes::from_mib(100)).unwrap();
    /// let rss = masp_budget::probe::process_rss().unwrap();
    /// assert!(with.get().abs_diff(rss.get()) < 8 << 20);
    /// # Ok::<(), masp_budget::Error>(())
    /// ```
    pub fn measure_baseline_with(&self, outside: Bytes) -> Option<Bytes> {
        let rss = probe::process_rss()?.saturating_add(outside);
        let mut ledger = self.lock();
        ledger.baseline = rss.saturating_sub(ledger.reserved);
        Some(ledger.baseline)
    }

    /// Sum of live reservations.
    ///
    /// # Examples
    ///
    /// ```
    /// use masp_budget::{Budget, BudgetConfig, Bytes};
    /// assert_eq!(Budget::new(BudgetConfig::default()).reserved(), Bytes::ZERO);
    /// ```
    #[must_use]
    pub fn reserved(&self) -> Bytes {
        self.lock().reserved
    }

    /// The ledger at this instant (consistent: taken under one lock).
    ///
    /// # Examples
    ///
    /// ```
    /// use masp_budget::{Budget, BudgetConfig, Bytes};
    /// let budget = Budget::new(BudgetConfig::default().with_limit(Bytes::from_gib(1)));
    /// let _r = budget.try_reserve(Bytes::from_mib(10), "x")?;
    /// let snap = budget.snapshot();
    /// assert_eq!((snap.reserved, snap.n_reservations), (Bytes::from_mib(10), 1));
    /// # Ok::<(), masp_budget::Error>(())
    /// ```
    #[must_use]
    pub fn snapshot(&self) -> BudgetSnapshot {
        let ledger = self.lock();
        BudgetSnapshot {
            limit: self.inner.limit,
            reserved: ledger.reserved,
            baseline: ledger.baseline,
            n_reservations: ledger.n_reservations,
        }
    }

    fn lock(&self) -> MutexGuard<'_, Ledger> {
        // Nothing panics while the lock is held (plain saturating arithmetic), so a poisoned
        // ledger is still consistent.
        self.inner
            .ledger
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }
}

impl fmt::Debug for Budget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Budget")
            .field("limit", &self.describe())
            .field("safety_margin", &self.inner.safety_margin)
            .field("ledger", &self.snapshot())
            .finish()
    }
}

/// Proof that memory was admitted by a [`Budget`]; the memory is released when this is dropped.
///
/// Hold it for as long as the memory it stands for is in use (e.g. store it next to the loaded
/// model) and pass it by value.
///
/// # Examples
///
/// ```
/// use masp_budget::{Budget, BudgetConfig, Bytes};
/// let budget = Budget::new(BudgetConfig::default().with_limit(Bytes::from_gib(1)));
/// let mut permit = budget.try_reserve(Bytes::from_mib(100), "decoder")?;
/// permit.resize(Bytes::from_mib(300))?;
/// assert_eq!(budget.reserved(), Bytes::from_mib(300));
/// permit.resize(Bytes::from_mib(50))?;
/// assert_eq!(permit.bytes(), Bytes::from_mib(50));
/// # Ok::<(), masp_budget::Error>(())
/// ```
#[must_use = "the reservation is released as soon as it is dropped"]
pub struct Reservation {
    budget: Budget,
    bytes: Bytes,
    purpose: String,
}

impl Reservation {
    /// The reserved amount.
    ///
    /// # Examples
    ///
    /// ```
    /// # use masp_budget::{Budget, BudgetConfig, Bytes};
    /// # let budget = Budget::new(BudgetConfig::default().with_limit(Bytes::from_gib(1)));
    /// let r = budget.try_reserve(Bytes::from_mib(1), "x")?;
    /// assert_eq!(r.bytes(), Bytes::from_mib(1));
    /// # Ok::<(), masp_budget::Error>(())
    /// ```
    #[must_use]
    pub fn bytes(&self) -> Bytes {
        self.bytes
    }

    /// What the memory is for, as given to [`Budget::try_reserve`].
    ///
    /// # Examples
    ///
    /// ```
    /// # use masp_budget::{Budget, BudgetConfig, Bytes};
    /// # let budget = Budget::new(BudgetConfig::default().with_limit(Bytes::from_gib(1)));
    /// let r = budget.try_reserve(Bytes::from_mib(1), "model x")?;
    /// assert_eq!(r.purpose(), "model x");
    /// # Ok::<(), masp_budget::Error>(())
    /// ```
    #[must_use]
    pub fn purpose(&self) -> &str {
        &self.purpose
    }

    /// Changes the reserved amount to `new`. Shrinking always succeeds; growing is admitted
    /// like a new request for the difference (see [`Budget::try_reserve`]).
    ///
    /// # Errors
    ///
    /// As [`Budget::try_reserve`], with `requested` = the growth and `reserved` including this
    /// reservation's current size. On error the reservation keeps its current size.
    ///
    /// # Examples
    ///
    /// ```
    /// # use masp_budget::{Budget, BudgetConfig, Bytes};
    /// let budget = Budget::new(BudgetConfig::default().with_limit(Bytes::from_mib(100)));
    /// let mut r = budget.try_reserve(Bytes::from_mib(60), "buffers")?;
    /// assert!(r.resize(Bytes::from_mib(120)).is_err());
    /// assert_eq!(r.bytes(), Bytes::from_mib(60));
    /// # Ok::<(), masp_budget::Error>(())
    /// ```
    pub fn resize(&mut self, new: Bytes) -> Result<()> {
        if new <= self.bytes {
            let mut ledger = self.budget.lock();
            ledger.reserved = ledger
                .reserved
                .saturating_sub(self.bytes.saturating_sub(new));
        } else {
            self.budget
                .admit(new.saturating_sub(self.bytes), &self.purpose, |_| {})?;
        }
        self.bytes = new;
        Ok(())
    }

    /// The budget this reservation belongs to.
    ///
    /// # Examples
    ///
    /// ```
    /// # use masp_budget::{Budget, BudgetConfig, Bytes};
    /// # let budget = Budget::new(BudgetConfig::default().with_limit(Bytes::from_gib(1)));
    /// let r = budget.try_reserve(Bytes::from_mib(1), "x")?;
    /// assert_eq!(r.budget().reserved(), Bytes::from_mib(1));
    /// # Ok::<(), masp_budget::Error>(())
    /// ```
    #[must_use]
    pub fn budget(&self) -> &Budget {
        &self.budget
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        let mut ledger = self.budget.lock();
        ledger.reserved = ledger.reserved.saturating_sub(self.bytes);
        ledger.n_reservations = ledger.n_reservations.saturating_sub(1);
    }
}

impl fmt::Debug for Reservation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Reservation")
            .field("bytes", &self.bytes)
            .field("purpose", &self.purpose)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fake(total: Bytes, available: Bytes) -> impl Fn() -> SystemMemory + Send + Sync {
        move || SystemMemory { total, available }
    }

    fn budget(limit: Bytes) -> Budget {
        Budget::new(
            BudgetConfig::default()
                .with_limit(limit)
                .with_memory_source(fake(Bytes::from_gib(64), Bytes::from_gib(64))),
        )
    }

    #[test]
    fn one_gib_budget_refuses_two_gib_with_all_figures() {
        let budget = budget(Bytes::from_gib(1));
        budget.set_baseline(Bytes::from_mib(120));
        let _held = budget
            .try_reserve(Bytes::from_mib(100), "tokenizer")
            .unwrap();
        let err = budget
            .try_reserve(Bytes::from_gib(2), "model x")
            .unwrap_err();
        assert_eq!(
            err,
            Error::OverBudget {
                purpose: "model x".into(),
                requested: Bytes::from_gib(2),
                reserved: Bytes::from_mib(100),
                baseline: Bytes::from_mib(120),
                limit: Bytes::from_gib(1),
            }
        );
        let msg = err.to_string();
        for needle in ["2 GiB", "1 GiB", "100 MiB", "120 MiB", "model x"] {
            assert!(msg.contains(needle), "{needle:?} missing from {msg:?}");
        }
        assert_eq!(
            msg,
            "cannot reserve 2 GiB for model x: 100 MiB reserved + 120 MiB baseline + 2 GiB \
             requested exceeds the 1 GiB limit"
        );
    }

    #[test]
    fn system_check_notices_other_processes() {
        let available = Arc::new(std::sync::atomic::AtomicU64::new(Bytes::from_gib(4).get()));
        let seen = Arc::clone(&available);
        let source = move || SystemMemory {
            total: Bytes::from_gib(16),
            available: Bytes::new(seen.load(std::sync::atomic::Ordering::SeqCst)),
        };
        let budget = Budget::new(
            BudgetConfig::default()
                .with_limit(Bytes::from_gib(8))
                .with_safety_margin(Bytes::from_mib(256))
                .with_memory_source(source),
        );
        let r = budget.try_reserve(Bytes::from_gib(2), "a").unwrap();
        // Another process takes memory.
        available.store(
            Bytes::from_gib(1).get(),
            std::sync::atomic::Ordering::SeqCst,
        );
        let err = budget.try_reserve(Bytes::from_gib(1), "b").unwrap_err();
        assert!(matches!(err, Error::SystemMemoryLow { .. }));
        let msg = err.to_string();
        for needle in ["1 GiB", "256 MiB", " b:"] {
            assert!(msg.contains(needle), "{needle:?} missing from {msg:?}");
        }
        assert!(budget.try_reserve(Bytes::from_mib(768), "c").is_ok());
        drop(r);
        assert_eq!(budget.snapshot().n_reservations, 0);
    }

    #[test]
    fn effective_limit_is_the_smallest_bound_and_described() {
        struct Cgroup;
        impl MemorySource for Cgroup {
            fn system_memory(&self) -> SystemMemory {
                SystemMemory {
                    total: Bytes::from_gib(32),
                    available: Bytes::from_gib(30),
                }
            }
            fn cgroup_limit(&self) -> Option<Bytes> {
                Some(Bytes::from_gib(4))
            }
        }
        let b = Budget::new(BudgetConfig::default().with_memory_source(Cgroup));
        assert_eq!(b.effective_limit(), Bytes::from_gib(4));
        assert_eq!(
            b.describe(),
            "4 GiB (cgroup limit; default 16 GiB, physical 32 GiB)"
        );
        let b = Budget::new(
            BudgetConfig::default()
                .with_limit(Bytes::from_gib(1))
                .with_memory_source(fake(Bytes::from_mib(23_962), Bytes::ZERO)),
        );
        assert_eq!(
            b.describe(),
            "1 GiB (configured; physical 23.4 GiB, no cgroup limit)"
        );
        let b = Budget::new(BudgetConfig::default().with_memory_source(|| SystemMemory::UNKNOWN));
        assert_eq!(
            b.describe(),
            "16 GiB (default; physical memory unknown, no cgroup limit)"
        );
    }

    #[test]
    fn resize_grows_like_a_new_request_and_shrinks_always() {
        let budget = budget(Bytes::from_mib(100));
        let mut a = budget.try_reserve(Bytes::from_mib(40), "a").unwrap();
        let _b = budget.try_reserve(Bytes::from_mib(40), "b").unwrap();
        let err = a.resize(Bytes::from_mib(70)).unwrap_err();
        assert_eq!(
            err,
            Error::OverBudget {
                purpose: "a".into(),
                requested: Bytes::from_mib(30),
                reserved: Bytes::from_mib(80),
                baseline: Bytes::ZERO,
                limit: Bytes::from_mib(100),
            }
        );
        a.resize(Bytes::from_mib(60)).unwrap();
        assert_eq!(budget.reserved(), Bytes::from_mib(100));
        a.resize(Bytes::ZERO).unwrap();
        assert_eq!(budget.reserved(), Bytes::from_mib(40));
        assert_eq!(budget.snapshot().n_reservations, 2);
    }

    #[test]
    fn measured_baseline_excludes_reservations() {
        let budget = budget(Bytes::from_gib(64));
        let _r = budget
            .try_reserve(Bytes::from_gib(32), "more than we use")
            .unwrap();
        // RSS of a test binary is far below 32 GiB, so the floor applies.
        assert_eq!(budget.measure_baseline(), Some(Bytes::ZERO));
    }

    #[test]
    fn env_value_parsing() {
        assert_eq!(limit_from_env_value(None), Ok(None));
        assert_eq!(limit_from_env_value(Some("".into())), Ok(None));
        assert_eq!(
            limit_from_env_value(Some("8GiB".into())),
            Ok(Some(Bytes::from_gib(8)))
        );
        let err = limit_from_env_value(Some("abc".into())).unwrap_err();
        assert!(matches!(
            err,
            ConfigError::InvalidEnv {
                var: "MASP_BUDGET",
                ..
            }
        ));
        let msg = err.to_string();
        assert!(
            msg.contains("MASP_BUDGET") && msg.contains("\"abc\""),
            "{msg}"
        );
    }

    #[test]
    fn snapshot_displays() {
        let budget = budget(Bytes::from_gib(1));
        budget.set_baseline(Bytes::from_mib(24));
        let _r = budget.try_reserve(Bytes::from_mib(100), "x").unwrap();
        assert_eq!(
            budget.snapshot().to_string(),
            "100 MiB reserved in 1 reservation + 24 MiB baseline of 1 GiB (900 MiB free)"
        );
    }

    #[test]
    fn budget_is_send_sync_and_cheap_to_clone() {
        fn assert_send_sync<T: Send + Sync>() {}
        assert_send_sync::<Budget>();
        assert_send_sync::<Reservation>();
        let a = budget(Bytes::from_gib(1));
        let b = a.clone();
        let _r = b.try_reserve(Bytes::from_mib(1), "x").unwrap();
        assert_eq!(a.reserved(), Bytes::from_mib(1));
    }
}
