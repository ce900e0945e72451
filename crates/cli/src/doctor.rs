//! `masp doctor` and the text of `masp --version`: is this machine ready to run masp, and if not,
//! what to do about it.
//!
//! Each check prints one `ok` or `problem` line; a problem is followed by a `fix:` line. The
//! command reports [`Outcome::SomeFailed`] (exit 2) when any check found a problem.

use std::path::Path;

use clap::Args;
use masp_budget::{Bytes, probe};
use masp_model_registry::assets::{self, Asset, AssetKind};
use masp_orchestrator::runtime::Runtime;

use crate::Outcome;
use crate::context;
use crate::flags::Common;
use crate::version::RuntimeLocation;

/// Below this much free disk in the current directory, outputs and `masp models optimize`
/// copies may not fit (a lean copy of a large model needs as much space as the model).
const MIN_FREE_DISK: Bytes = Bytes::from_mib(512);

/// Flags of `masp doctor`.
#[derive(Debug, Args)]
#[command(after_help = "Exit status: 0 when every check is ok, 2 when any found a problem.")]
pub struct DoctorArgs {
    /// Check this budget instead of MASP_BUDGET / the default, e.g. `4GiB`.
    #[arg(long, value_name = "SIZE")]
    budget: Option<Bytes>,
}

/// The result of one check.
enum Check {
    Ok(String),
    Problem { what: String, fix: String },
}

struct Report {
    n_problems: usize,
}

impl Report {
    fn print(&mut self, topic: &str, check: Check) {
        match check {
            Check::Ok(what) => println!("ok       {topic:<20} {what}"),
            Check::Problem { what, fix } => {
                self.n_problems += 1;
                println!("problem  {topic:<20} {what}");
                println!("         {:<20} fix: {fix}", "");
            }
        }
    }
}

pub fn run(args: &DoctorArgs) -> anyhow::Result<Outcome> {
    let mut report = Report { n_problems: 0 };
    report.print("onnx runtime", check_runtime());
    let runtime_from_env = RuntimeLocation::find().is_ok_and(|loc| loc.is_from_env());
    match assets::masp_home() {
        Ok(home) => {
            for asset in assets::ALL {
                let check = check_asset(asset, &home, runtime_from_env);
                report.print(asset.id, check);
            }
        }
        Err(e) => report.print(
            "asset cache",
            Check::Problem {
                what: format!("{e}"),
                fix: "set MASP_HOME to a writable directory, then run `cargo xtask setup`".into(),
            },
        ),
    }
    report.print("budget", check_budget(args));
    report.print("cgroup", check_cgroup());
    report.print("hard limit", check_hard_limit());
    report.print("trim", check_trim());
    report.print("mmap threshold", check_mmap_threshold());
    report.print("disk", check_disk(Path::new(".")));
    if report.n_problems == 0 {
        println!("all checks ok");
    } else {
        println!("{} problem(s)", report.n_problems);
    }
    Ok(Outcome::from_failures(report.n_problems))
}

fn check_runtime() -> Check {
    let loc = match RuntimeLocation::find() {
        Ok(loc) => loc,
        Err(e) => {
            return Check::Problem {
                what: format!("no asset cache: {e:#}"),
                fix: "set MASP_HOME, then run `cargo xtask setup`; or set ORT_DYLIB_PATH".into(),
            };
        }
    };
    if !loc.path.is_file() {
        return Check::Problem {
            what: format!("not found at {} ({})", loc.path.display(), loc.origin()),
            fix: loc.fix().into(),
        };
    }
    match Runtime::get() {
        Ok(runtime) => {
            // ort exposes no version query; it refuses a library older than 1.31 at load. The
            // cache's file is the pinned, sha256-verified one.
            let version = loc.known_version().map_or_else(
                || ">= 1.31, exact version not checked".to_string(),
                |v| format!("{v} pinned"),
            );
            Check::Ok(format!(
                "loads ({version}) from {} ({})",
                runtime.dylib_path().display(),
                loc.origin()
            ))
        }
        Err(e) => Check::Problem {
            what: crate::one_line(&e),
            fix: "point ORT_DYLIB_PATH at a libonnxruntime.so of version >= 1.31 for this \
                  platform, or unset it and run `cargo xtask setup`"
                .into(),
        },
    }
}

fn check_asset(asset: &Asset, home: &Path, runtime_from_env: bool) -> Check {
    let path = asset.path_in(home);
    if !path.is_file() {
        if asset.kind == AssetKind::Runtime && runtime_from_env {
            return Check::Ok(format!(
                "not in the cache ({}), not needed: ORT_DYLIB_PATH is set",
                path.display()
            ));
        }
        return Check::Problem {
            what: format!(
                "{} {} missing at {}",
                asset.package,
                asset.version,
                path.display()
            ),
            fix: "run `cargo xtask setup` (or set MASP_HOME to a cache that has it)".into(),
        };
    }
    match assets::verify_sha256(&path, asset.sha256) {
        Ok(()) => Check::Ok(format!("sha256 ok, {}", path.display())),
        Err(e) => Check::Problem {
            what: crate::one_line(&e),
            fix: format!(
                "delete {} and run `cargo xtask setup` to fetch it again",
                path.display()
            ),
        },
    }
}

fn check_budget(args: &DoctorArgs) -> Check {
    let common = Common {
        budget: args.budget,
        manifest: None,
        report: None,
        threads: None,
        max_resident: None,
        stats: false,
        isolation: None,
        shard: crate::shard::ShardArgs::default(),
        quiet: true,
        verbose: 0,
    };
    match context::budget(&common) {
        Ok(budget) => Check::Ok(budget.describe()),
        Err(e) => Check::Problem {
            what: format!("{e:#}"),
            fix: "set MASP_BUDGET to a size such as 4GiB or 512MiB, or unset it".into(),
        },
    }
}

fn check_cgroup() -> Check {
    Check::Ok(match probe::cgroup_memory_limit() {
        Some(limit) => format!("memory limit {limit} (the budget never exceeds it)"),
        None => "no memory limit".into(),
    })
}

/// What holds the budget's limit, in process and in workers, and why no cgroup does.
fn check_hard_limit() -> Check {
    let interval = masp_orchestrator::watchdog::DEFAULT_INTERVAL.as_millis();
    let cgroup = probe::cgroup_v2_memory();
    let workers = match &cgroup {
        probe::CgroupV2Memory::Delegated { .. } => format!(
            "workers: an RLIMIT_AS cap plus their own watchdog ({cgroup}, but masp does not use \
             cgroups for workers yet)"
        ),
        _ => format!(
            "workers: an RLIMIT_AS cap plus their own watchdog, no cgroup memory.max: {cgroup}"
        ),
    };
    Check::Ok(format!(
        "in process: the watchdog reads RSS every {interval} ms and stops a model call at the \
         limit; {workers}"
    ))
}

fn check_trim() -> Check {
    if masp_budget::trim::release_freed_memory().supported {
        Check::Ok("allocator trim available: freed model memory goes back to the OS".into())
    } else {
        Check::Problem {
            what: "allocator trim unavailable on this platform: memory freed by an unloaded \
                   model may stay in the process"
                .into(),
            fix: "use a glibc Linux build of masp, or keep --max-resident 1 and a budget with \
                  room for the largest model twice"
                .into(),
        }
    }
}

/// What masp does to the allocator when it initialises ONNX Runtime, done here the same way.
fn check_mmap_threshold() -> Check {
    use masp_budget::trim::{self, MmapThreshold};
    match trim::pin_mmap_threshold(trim::PINNED_MMAP_THRESHOLD) {
        MmapThreshold::Pinned(size) => Check::Ok(format!(
            "pinned at {size}: larger blocks go back to the OS when freed, and a model's load \
             costs the same memory in every run"
        )),
        MmapThreshold::FromEnvironment(value) => Check::Ok(format!(
            "{}={value} is set and kept (masp would pin {})",
            trim::MMAP_THRESHOLD_ENV,
            trim::PINNED_MMAP_THRESHOLD
        )),
        MmapThreshold::Unsupported => Check::Problem {
            what: "the allocator's mmap threshold cannot be pinned on this platform: a model's \
                   load peak may differ by several MiB from run to run"
                .into(),
            fix: "use a glibc Linux build of masp, and calibrate with several cycles \
                  (`masp models calibrate --cycles 3`) so the estimate is the largest"
                .into(),
        },
    }
}

fn check_disk(dir: &Path) -> Check {
    let shown = std::fs::canonicalize(dir).unwrap_or_else(|_| dir.to_path_buf());
    match free_disk(dir) {
        Ok(free) if free >= MIN_FREE_DISK => {
            Check::Ok(format!("{free} free in {}", shown.display()))
        }
        Ok(free) => Check::Problem {
            what: format!(
                "only {free} free in {} (want at least {MIN_FREE_DISK})",
                shown.display()
            ),
            fix: "free some space, or run from (or write --out/--report into) another filesystem"
                .into(),
        },
        Err(e) => Check::Problem {
            what: format!("cannot read free space of {}: {e}", shown.display()),
            fix: "run masp from a directory you can read".into(),
        },
    }
}

/// Space available to this (unprivileged) user on the filesystem holding `dir`.
#[cfg(unix)]
fn free_disk(dir: &Path) -> std::io::Result<Bytes> {
    use std::os::unix::ffi::OsStrExt;
    let c_path = std::ffi::CString::new(dir.as_os_str().as_bytes())?;
    let mut stat = std::mem::MaybeUninit::<libc::statvfs>::uninit();
    // SAFETY: `c_path` is a valid NUL-terminated string and `stat` points to writable memory
    // of the right type; statvfs only writes into it.
    let rc = unsafe { libc::statvfs(c_path.as_ptr(), stat.as_mut_ptr()) };
    if rc != 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: statvfs returned 0, so it initialised `stat`.
    let stat = unsafe { stat.assume_init() };
    // The field types differ between platforms (u32/u64): widen both.
    #[allow(clippy::useless_conversion)]
    let (blocks, block_size) = (u64::from(stat.f_bavail), u64::from(stat.f_frsize));
    Ok(Bytes::new(blocks.saturating_mul(block_size)))
}

#[cfg(not(unix))]
fn free_disk(_dir: &Path) -> std::io::Result<Bytes> {
    Err(std::io::Error::new(
        std::io::ErrorKind::Unsupported,
        "free-space check is implemented for Unix only",
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn free_disk_of_the_current_directory_is_known() {
        assert!(free_disk(Path::new(".")).is_ok());
    }

    #[test]
    fn free_disk_of_a_missing_directory_is_an_error() {
        assert!(free_disk(Path::new("/definitely/not/here")).is_err());
    }
}
