//! Memory probes: process RSS and peak, system memory, cgroup limit.
//!
//! On Linux everything is read from `/proc` and cgroup files with small stack buffers, so
//! [`process_rss`] does not allocate and costs one `open`/`read`/`close`; a sampler that calls
//! it every few milliseconds should hold an [`RssReader`], which keeps the file open and costs
//! one `pread`. Elsewhere the portable `memory-stats` and `sysinfo` crates are used and the
//! figures Linux alone provides (peak, its reset, cgroups) are `None`/`false`.
//!
//! RSS is read from `/proc/<pid>/statm` rather than `VmRSS` in `/proc/<pid>/status`: the kernel
//! computes both from the same counters (file + anon + shmem pages), but `statm` is 7 numbers
//! instead of ~55 formatted lines, so reading it costs about half as much.

use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::Bytes;

/// Total and currently available memory of the machine.
///
/// `available` is the kernel's estimate of how much can be allocated without swapping
/// (`MemAvailable`: free memory plus reclaimable caches), not merely free memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct SystemMemory {
    /// Physical memory installed (`MemTotal`).
    pub total: Bytes,
    /// Memory available to new allocations right now (`MemAvailable`).
    pub available: Bytes,
}

impl SystemMemory {
    /// What [`system_memory`] returns when the figures cannot be read: both [`Bytes::MAX`],
    /// i.e. "unknown, do not limit", so a budget falls back to its configured limit.
    pub const UNKNOWN: SystemMemory = SystemMemory {
        total: Bytes::MAX,
        available: Bytes::MAX,
    };
}

/// Resident set size of this process (Linux: the `VmRSS` figure, read from
/// `/proc/self/statm`).
///
/// Returns `None` if the platform does not report it. Does not allocate on Linux. For
/// repeated sampling prefer [`RssReader`].
///
/// # Examples
///
/// ```
/// let rss = masp_budget::probe::process_rss().expect("supported on this platform");
/// assert!(rss.get() > 0);
/// ```
#[must_use]
pub fn process_rss() -> Option<Bytes> {
    imp::process_rss()
}

/// A reusable reader of this process's RSS for samplers: keeps `/proc/self/statm` open and
/// re-reads it from offset 0 each time, saving the `open`/`close` (and path lookup) of
/// [`process_rss`]. Elsewhere it calls the same portable probe as [`process_rss`].
///
/// The file belongs to the process that opened it: a reader kept across `fork` keeps
/// reporting the parent.
///
/// # Examples
///
/// ```
/// use masp_budget::probe::RssReader;
/// let reader = RssReader::new().expect("supported on this platform");
/// assert!(reader.read().unwrap().get() > 0);
/// ```
#[derive(Debug)]
pub struct RssReader {
    inner: imp::Reader,
}

impl RssReader {
    /// Opens the reader; `None` if this platform does not report RSS.
    ///
    /// # Examples
    ///
    /// ```
    /// assert!(masp_budget::probe::RssReader::new().is_some());
    /// ```
    #[must_use]
    pub fn new() -> Option<Self> {
        imp::Reader::new().map(|inner| RssReader { inner })
    }

    /// The current RSS, or `None` if it could not be read.
    ///
    /// # Examples
    ///
    /// ```
    /// let reader = masp_budget::probe::RssReader::new().unwrap();
    /// let (a, b) = (reader.read().unwrap(), masp_budget::probe::process_rss().unwrap());
    /// assert!(a.get().abs_diff(b.get()) < 64 << 20);
    /// ```
    #[must_use]
    pub fn read(&self) -> Option<Bytes> {
        self.inner.read()
    }
}

/// Peak resident set size of this process since start or the last [`reset_peak_rss`]
/// (Linux: `VmHWM`). `None` on other platforms.
///
/// # Examples
///
/// ```
/// use masp_budget::probe;
/// if let (Some(peak), Some(rss)) = (probe::process_peak_rss(), probe::process_rss()) {
///     assert!(peak >= rss || rss.get() - peak.get() < 1 << 20); // modulo sampling skew
/// }
/// ```
#[must_use]
pub fn process_peak_rss() -> Option<Bytes> {
    imp::process_peak_rss()
}

/// The anonymous part of this process's resident set (Linux: `RssAnon`): heap, arenas and
/// stacks — memory the process holds — without the file-backed pages of its binary and
/// libraries, which the kernel pages in as code runs and may drop at any time. `None` on
/// other platforms.
///
/// # Examples
///
/// ```
/// use masp_budget::probe;
/// if let (Some(anon), Some(rss)) = (probe::process_anon_rss(), probe::process_rss()) {
///     assert!(anon.get() <= rss.get() + (1 << 20)); // read a moment apart
/// }
/// ```
#[must_use]
pub fn process_anon_rss() -> Option<Bytes> {
    imp::process_anon_rss()
}

/// Resident set size of another process, e.g. a worker (`VmRSS`, from `/proc/<pid>/statm`).
///
/// Returns `None` if the process does not exist, is not readable, or is a zombie.
///
/// # Examples
///
/// ```
/// let me = std::process::id();
/// assert!(masp_budget::probe::process_rss_of(me).is_some());
/// ```
#[must_use]
pub fn process_rss_of(pid: u32) -> Option<Bytes> {
    imp::process_rss_of(pid)
}

/// Peak resident set size of another process since its start or its last reset of it
/// (Linux: `VmHWM` of `/proc/<pid>/status`). `None` if the process is gone or elsewhere.
///
/// # Examples
///
/// ```
/// let me = std::process::id();
/// if let Some(peak) = masp_budget::probe::process_peak_rss_of(me) {
///     assert!(peak.get() > 0);
/// }
/// ```
#[must_use]
pub fn process_peak_rss_of(pid: u32) -> Option<Bytes> {
    imp::process_peak_rss_of(pid)
}

/// Resets this process's peak RSS ([`process_peak_rss`]) to its current RSS, so the peak of
/// one phase can be measured. Linux: writes `5` to `/proc/self/clear_refs`.
///
/// Returns whether the reset happened (`false` on other platforms or if the file is not
/// writable, e.g. under some sandboxes).
///
/// # Examples
///
/// ```
/// use masp_budget::probe;
/// if probe::reset_peak_rss() {
///     let (peak, rss) = (probe::process_peak_rss().unwrap(), probe::process_rss().unwrap());
///     assert!(peak.get() <= rss.get() + (16 << 20));
/// }
/// ```
pub fn reset_peak_rss() -> bool {
    imp::reset_peak_rss()
}

/// Memory of the process around one phase (e.g. creating a session), from `/proc/self/status`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct PhaseMemory {
    /// Resident memory (`VmRSS`) just before the phase.
    pub rss_before: Bytes,
    /// Resident memory just after the phase.
    pub rss_after: Bytes,
    /// Highest resident memory (`VmHWM`) seen up to the end of the phase: during the phase
    /// alone when [`Self::peak_is_phase_local`], else since the process started.
    pub peak: Bytes,
    /// Whether the peak was reset before the phase (needs a writable `/proc/self/clear_refs`).
    pub peak_is_phase_local: bool,
    /// Wall-clock duration of the phase. For reports only: tests must not assert on it.
    #[serde(serialize_with = "as_millis")]
    pub elapsed: Duration,
}

impl PhaseMemory {
    /// How much resident memory the phase left behind (zero if it shrank).
    #[must_use]
    pub fn growth(&self) -> Bytes {
        self.rss_after.saturating_sub(self.rss_before)
    }

    /// How far above its starting point resident memory went during the phase.
    #[must_use]
    pub fn peak_growth(&self) -> Bytes {
        self.peak.saturating_sub(self.rss_before)
    }
}

fn as_millis<S: serde::Serializer>(elapsed: &Duration, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_f64(elapsed.as_secs_f64() * 1000.0)
}

/// Runs `phase` and measures its memory. Figures are [`Bytes::ZERO`] where the platform does
/// not report them (only Linux reports the peak).
///
/// The process's whole memory is measured, so other threads allocating at the same time
/// distort the figures: measure in a process (or test) of its own.
///
/// # Examples
///
/// ```
/// let (buffer, memory) = masp_budget::probe::measure(|| vec![1u8; 64 << 20]);
/// assert_eq!(buffer.len(), 64 << 20);
/// if cfg!(target_os = "linux") {
///     assert!(memory.growth().get() >= 60 << 20);
/// }
/// ```
pub fn measure<T>(phase: impl FnOnce() -> T) -> (T, PhaseMemory) {
    let peak_is_phase_local = reset_peak_rss();
    let rss_before = process_rss().unwrap_or(Bytes::ZERO);
    let start = Instant::now();
    let value = phase();
    let elapsed = start.elapsed();
    let rss_after = process_rss().unwrap_or(Bytes::ZERO);
    let peak = process_peak_rss().unwrap_or(Bytes::ZERO).max(rss_after);
    (
        value,
        PhaseMemory {
            rss_before,
            rss_after,
            peak,
            peak_is_phase_local,
            elapsed,
        },
    )
}

/// Total and available memory of the machine.
///
/// On Linux this parses `MemTotal`/`MemAvailable` from `/proc/meminfo` directly: it is what
/// `sysinfo` reads too, without building a `System` and refreshing unrelated figures, and it
/// does not allocate. Elsewhere `sysinfo` is used. If nothing can be read, returns
/// [`SystemMemory::UNKNOWN`].
///
/// # Examples
///
/// ```
/// let mem = masp_budget::probe::system_memory();
/// assert!(mem.available <= mem.total);
/// ```
#[must_use]
pub fn system_memory() -> SystemMemory {
    imp::system_memory().unwrap_or(SystemMemory::UNKNOWN)
}

/// The memory limit of the cgroup this process runs in, if any.
///
/// Reads cgroup v2 `memory.max` and cgroup v1 `memory.limit_in_bytes` for the process's own
/// cgroup (from `/proc/self/cgroup`, located through `/proc/self/mountinfo`) and each of its
/// ancestors up to the mount point, since a parent's limit binds too; returns the smallest.
/// `"max"` and absurd values (≥ 1 EiB, such as v1's "unlimited" 9223372036854771712) mean no
/// limit. `None` on other platforms.
///
/// # Examples
///
/// ```
/// if let Some(limit) = masp_budget::probe::cgroup_memory_limit() {
///     println!("running in a cgroup limited to {limit}");
/// }
/// ```
#[must_use]
pub fn cgroup_memory_limit() -> Option<Bytes> {
    imp::cgroup_memory_limit()
}

/// Values at or above this are "no limit" (v1 writes `PAGE_COUNTER_MAX` pages as bytes).
const ABSURD_LIMIT: u64 = 1 << 60;

/// Parses the contents of a cgroup memory limit file (`memory.max` or
/// `memory.limit_in_bytes`): `None` for `max`, absurdly large or unparsable values.
pub(crate) fn parse_cgroup_limit(contents: &str) -> Option<Bytes> {
    let value: u64 = contents.trim().parse().ok()?;
    (value < ABSURD_LIMIT).then_some(Bytes::new(value))
}

/// Finds `key` (e.g. `b"VmRSS:"`) at the start of a line of a `/proc` "key: value kB" file and
/// returns the value in bytes. Allocation-free.
pub(crate) fn parse_kib_field(contents: &[u8], key: &[u8]) -> Option<Bytes> {
    contents
        .split(|&b| b == b'\n')
        .find_map(|line| line.strip_prefix(key))
        .and_then(|rest| {
            let rest = rest.trim_ascii_start();
            let digits = rest.iter().take_while(|b| b.is_ascii_digit()).count();
            if digits == 0 {
                return None;
            }
            let kib = rest[..digits].iter().try_fold(0u64, |n, &d| {
                n.checked_mul(10)?.checked_add(u64::from(d - b'0'))
            })?;
            // Every such field in /proc/*/status and /proc/meminfo is in kB (= KiB).
            (rest[digits..].trim_ascii() == b"kB").then_some(Bytes::from_kib(kib))
        })
}

/// The resident figure (second field, in pages) of `/proc/<pid>/statm` contents, in bytes.
pub(crate) fn parse_statm_resident(contents: &[u8], page_size: u64) -> Option<Bytes> {
    let field = contents.split(|b| b.is_ascii_whitespace()).nth(1)?;
    if field.is_empty() || !field.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let pages = field.iter().try_fold(0u64, |n, &d| {
        n.checked_mul(10)?.checked_add(u64::from(d - b'0'))
    })?;
    pages.checked_mul(page_size).map(Bytes::new)
}

/// The memory-controller cgroup paths of a process, from `/proc/<pid>/cgroup` contents.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct CgroupPaths<'a> {
    /// The unified (v2) hierarchy's path, from the `0::<path>` line.
    pub v2: Option<&'a str>,
    /// The v1 `memory` controller's path.
    pub v1_memory: Option<&'a str>,
}

pub(crate) fn parse_proc_cgroup(contents: &str) -> CgroupPaths<'_> {
    let mut paths = CgroupPaths::default();
    for line in contents.lines() {
        let mut fields = line.splitn(3, ':');
        let (Some(id), Some(controllers), Some(path)) =
            (fields.next(), fields.next(), fields.next())
        else {
            continue;
        };
        if id == "0" && controllers.is_empty() {
            paths.v2 = Some(path);
        } else if controllers.split(',').any(|c| c == "memory") {
            paths.v1_memory = Some(path);
        }
    }
    paths
}

/// Where a cgroup hierarchy is mounted: `root` is the cgroup path shown at `mount_point`.
#[derive(Debug, PartialEq, Eq, Clone, Copy)]
pub(crate) struct CgroupMount<'a> {
    pub root: &'a str,
    pub mount_point: &'a str,
}

/// The cgroup v2 mount and the v1 `memory` controller mount from `/proc/self/mountinfo`.
pub(crate) fn parse_mountinfo(
    contents: &str,
) -> (Option<CgroupMount<'_>>, Option<CgroupMount<'_>>) {
    let (mut v2, mut v1) = (None, None);
    for line in contents.lines() {
        // "<id> <parent> <maj:min> <root> <mount point> <opts> [optional...] - <fs> <src> <super>"
        let Some((left, right)) = line.split_once(" - ") else {
            continue;
        };
        let mut left = left.split(' ');
        let (Some(root), Some(mount_point)) = (left.nth(3), left.next()) else {
            continue;
        };
        let mut right = right.split(' ');
        let (Some(fs), Some(super_opts)) = (right.next(), right.nth(1)) else {
            continue;
        };
        let mount = CgroupMount { root, mount_point };
        if fs == "cgroup2" {
            v2.get_or_insert(mount);
        } else if fs == "cgroup" && super_opts.split(',').any(|o| o == "memory") {
            v1.get_or_insert(mount);
        }
    }
    (v2, v1)
}

/// The limit files to read for a process in cgroup `path` of a hierarchy mounted at `mount`:
/// the process's own directory, then each ancestor up to the mount point.
pub(crate) fn limit_file_candidates(
    mount: CgroupMount<'_>,
    path: &str,
    file: &str,
) -> Vec<std::path::PathBuf> {
    // Inside a container the mount often shows a subtree: strip its root from our path. If our
    // path is outside what is mounted (cgroup namespaces), only the mount point is meaningful.
    let relative = if mount.root == "/" {
        path
    } else {
        path.strip_prefix(mount.root)
            .filter(|rest| rest.is_empty() || rest.starts_with('/'))
            .unwrap_or("")
    };
    let top = std::path::Path::new(mount.mount_point);
    let mut dir = top.join(relative.trim_start_matches('/'));
    let mut files = Vec::new();
    loop {
        files.push(dir.join(file));
        if dir == top || !dir.starts_with(top) || !dir.pop() {
            break;
        }
    }
    files
}

/// Resolves the effective cgroup memory limit given the two `/proc/self` files and a reader
/// for cgroup files (injected so tests can feed sample contents).
pub(crate) fn resolve_cgroup_limit(
    proc_cgroup: &str,
    mountinfo: &str,
    read: &dyn Fn(&std::path::Path) -> Option<String>,
) -> Option<Bytes> {
    let paths = parse_proc_cgroup(proc_cgroup);
    let (v2_mount, v1_mount) = parse_mountinfo(mountinfo);
    let v2_mount = v2_mount.unwrap_or(CgroupMount {
        root: "/",
        mount_point: "/sys/fs/cgroup",
    });
    let v1_mount = v1_mount.unwrap_or(CgroupMount {
        root: "/",
        mount_point: "/sys/fs/cgroup/memory",
    });
    let mut candidates = Vec::new();
    if let Some(path) = paths.v2 {
        candidates.extend(limit_file_candidates(v2_mount, path, "memory.max"));
    }
    if let Some(path) = paths.v1_memory {
        candidates.extend(limit_file_candidates(
            v1_mount,
            path,
            "memory.limit_in_bytes",
        ));
    }
    candidates
        .iter()
        .filter_map(|file| read(file).as_deref().and_then(parse_cgroup_limit))
        .min()
}

/// Whether this process could give a child process a kernel-enforced memory cap of its own
/// through cgroup v2 (`memory.max` in a child cgroup): what `masp doctor` reports about the
/// hard limit of worker processes.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum CgroupV2Memory {
    /// No cgroup v2 hierarchy is mounted (or the platform has none).
    NotMounted,
    /// cgroup v2 is mounted and this process's cgroup is `dir`, but the memory controller is
    /// not available there (on hybrid systems it is bound to the v1 hierarchy).
    NoMemoryController {
        /// This process's cgroup v2 directory.
        dir: std::path::PathBuf,
    },
    /// The memory controller is available in `dir`, but this process may not create cgroups
    /// there (not delegated to it).
    NotWritable {
        /// This process's cgroup v2 directory.
        dir: std::path::PathBuf,
    },
    /// `dir` has the memory controller and this process may create child cgroups in it.
    Delegated {
        /// This process's cgroup v2 directory.
        dir: std::path::PathBuf,
    },
}

impl std::fmt::Display for CgroupV2Memory {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CgroupV2Memory::NotMounted => f.write_str("no cgroup v2 hierarchy is mounted"),
            CgroupV2Memory::NoMemoryController { dir } => write!(
                f,
                "cgroup v2 at {} has no memory controller; on this system it belongs to cgroup \
                 v1",
                dir.display()
            ),
            CgroupV2Memory::NotWritable { dir } => write!(
                f,
                "cgroup v2 at {} has the memory controller but is not delegated to this user",
                dir.display()
            ),
            CgroupV2Memory::Delegated { dir } => write!(
                f,
                "cgroup v2 at {} has the memory controller and is writable",
                dir.display()
            ),
        }
    }
}

/// What cgroup v2 offers this process for capping a child's memory ([`CgroupV2Memory`]).
///
/// # Examples
///
/// ```
/// println!("{}", masp_budget::probe::cgroup_v2_memory());
/// ```
#[must_use]
pub fn cgroup_v2_memory() -> CgroupV2Memory {
    imp::cgroup_v2_memory()
}

/// [`cgroup_v2_memory`] from the contents of `/proc/self/cgroup` and `/proc/self/mountinfo`,
/// with `read` for files and `writable` for directories.
pub(crate) fn resolve_cgroup_v2(
    proc_cgroup: &str,
    mountinfo: &str,
    read: &dyn Fn(&std::path::Path) -> Option<String>,
    writable: &dyn Fn(&std::path::Path) -> bool,
) -> CgroupV2Memory {
    let (Some(path), (Some(mount), _)) = (
        parse_proc_cgroup(proc_cgroup).v2,
        parse_mountinfo(mountinfo),
    ) else {
        return CgroupV2Memory::NotMounted;
    };
    let Some(dir) = limit_file_candidates(mount, path, "cgroup.controllers")
        .first()
        .and_then(|f| f.parent())
        .map(std::path::Path::to_path_buf)
    else {
        return CgroupV2Memory::NotMounted;
    };
    let has_memory = read(&dir.join("cgroup.controllers"))
        .is_some_and(|c| c.split_whitespace().any(|c| c == "memory"));
    if !has_memory {
        CgroupV2Memory::NoMemoryController { dir }
    } else if writable(&dir) {
        CgroupV2Memory::Delegated { dir }
    } else {
        CgroupV2Memory::NotWritable { dir }
    }
}

#[cfg(target_os = "linux")]
mod imp {
    use std::fs::File;
    use std::io::{Read, Write};
    use std::os::unix::fs::FileExt;
    use std::sync::OnceLock;

    use super::{SystemMemory, parse_kib_field, parse_statm_resident};
    use crate::Bytes;

    /// Big enough for `/proc/self/status` (~1.5 KiB) and the head of `/proc/meminfo`.
    const BUF_LEN: usize = 4096;

    /// Reads `path` into `buf` (as much as fits); returns the filled prefix.
    fn read_into<'b>(path: &str, buf: &'b mut [u8]) -> Option<&'b [u8]> {
        // `File::open` converts short paths on the stack: no allocation.
        let mut file = File::open(path).ok()?;
        let mut len = 0;
        while len < buf.len() {
            match file.read(&mut buf[len..]) {
                Ok(0) => break,
                Ok(n) => len += n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(_) => return None,
            }
        }
        Some(&buf[..len])
    }

    /// A `kB` field of a `/proc` file, falling back to reading the whole file if the field is
    /// beyond the stack buffer (never seen in practice, but the file has no size bound).
    fn kib_field(path: &str, key: &[u8]) -> Option<Bytes> {
        let mut buf = [0u8; BUF_LEN];
        let head = read_into(path, &mut buf)?;
        if let Some(v) = parse_kib_field(head, key) {
            return Some(v);
        }
        if head.len() < BUF_LEN {
            return None;
        }
        let all = std::fs::read(path).ok()?;
        parse_kib_field(&all, key)
    }

    /// The page size, asked once: statm counts pages.
    fn page_size() -> u64 {
        static PAGE_SIZE: OnceLock<u64> = OnceLock::new();
        *PAGE_SIZE.get_or_init(|| {
            // SAFETY: sysconf has no preconditions and only reads configuration.
            let size = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
            u64::try_from(size).ok().filter(|&s| s > 0).unwrap_or(4096)
        })
    }

    fn statm_rss(path: &str) -> Option<Bytes> {
        let mut buf = [0u8; 128];
        let contents = read_into(path, &mut buf)?;
        parse_statm_resident(contents, page_size())
    }

    pub(super) fn process_rss() -> Option<Bytes> {
        statm_rss("/proc/self/statm")
    }

    #[derive(Debug)]
    pub(crate) struct Reader {
        file: File,
    }

    impl Reader {
        pub(crate) fn new() -> Option<Self> {
            let reader = Reader {
                file: File::open("/proc/self/statm").ok()?,
            };
            reader.read().map(|_| reader)
        }

        pub(crate) fn read(&self) -> Option<Bytes> {
            // procfs regenerates the file on a read at offset 0.
            let mut buf = [0u8; 128];
            let n = self.file.read_at(&mut buf, 0).ok()?;
            parse_statm_resident(&buf[..n], page_size())
        }
    }

    pub(super) fn process_peak_rss() -> Option<Bytes> {
        kib_field("/proc/self/status", b"VmHWM:")
    }

    pub(super) fn process_anon_rss() -> Option<Bytes> {
        kib_field("/proc/self/status", b"RssAnon:")
    }

    pub(super) fn process_rss_of(pid: u32) -> Option<Bytes> {
        // Format the path on the stack to stay allocation-free.
        let mut buf = [0u8; 32];
        let mut cursor = &mut buf[..];
        write!(cursor, "/proc/{pid}/statm").ok()?;
        let len = 32 - cursor.len();
        let path = std::str::from_utf8(&buf[..len]).ok()?;
        statm_rss(path)
    }

    pub(super) fn process_peak_rss_of(pid: u32) -> Option<Bytes> {
        let mut buf = [0u8; 32];
        let mut cursor = &mut buf[..];
        write!(cursor, "/proc/{pid}/status").ok()?;
        let len = 32 - cursor.len();
        let path = std::str::from_utf8(&buf[..len]).ok()?;
        kib_field(path, b"VmHWM:")
    }

    pub(super) fn reset_peak_rss() -> bool {
        std::fs::write("/proc/self/clear_refs", b"5").is_ok()
    }

    pub(super) fn system_memory() -> Option<SystemMemory> {
        let mut buf = [0u8; BUF_LEN];
        let head = read_into("/proc/meminfo", &mut buf)?;
        let total = parse_kib_field(head, b"MemTotal:")?;
        // MemAvailable exists since Linux 3.14; before that MemFree is the conservative figure.
        let available = parse_kib_field(head, b"MemAvailable:")
            .or_else(|| parse_kib_field(head, b"MemFree:"))?;
        Some(SystemMemory { total, available })
    }

    pub(super) fn cgroup_v2_memory() -> super::CgroupV2Memory {
        let proc_cgroup = std::fs::read_to_string("/proc/self/cgroup").unwrap_or_default();
        let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
        super::resolve_cgroup_v2(
            &proc_cgroup,
            &mountinfo,
            &|path| std::fs::read_to_string(path).ok(),
            &|dir| {
                use std::os::unix::ffi::OsStrExt;
                let Ok(c) = std::ffi::CString::new(dir.as_os_str().as_bytes()) else {
                    return false;
                };
                // SAFETY: access(2) reads a NUL-terminated path and has no other preconditions.
                unsafe { libc::access(c.as_ptr(), libc::W_OK) == 0 }
            },
        )
    }

    pub(super) fn cgroup_memory_limit() -> Option<Bytes> {
        let proc_cgroup = std::fs::read_to_string("/proc/self/cgroup").ok()?;
        let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
        super::resolve_cgroup_limit(&proc_cgroup, &mountinfo, &|path| {
            std::fs::read_to_string(path).ok()
        })
    }
}

#[cfg(not(target_os = "linux"))]
mod imp {
    use super::SystemMemory;
    use crate::Bytes;

    pub(super) fn process_rss() -> Option<Bytes> {
        memory_stats::memory_stats().map(|s| Bytes::new(s.physical_mem as u64))
    }

    #[derive(Debug)]
    pub(crate) struct Reader;

    impl Reader {
        pub(crate) fn new() -> Option<Self> {
            process_rss().map(|_| Reader)
        }

        pub(crate) fn read(&self) -> Option<Bytes> {
            process_rss()
        }
    }

    pub(super) fn process_peak_rss() -> Option<Bytes> {
        None
    }

    pub(super) fn process_anon_rss() -> Option<Bytes> {
        None
    }

    pub(super) fn process_rss_of(pid: u32) -> Option<Bytes> {
        use sysinfo::{Pid, ProcessRefreshKind, ProcessesToUpdate, System};
        let pid = Pid::from_u32(pid);
        let mut system = System::new().ok()?;
        system.refresh_processes_specifics(
            ProcessesToUpdate::Some(&[pid]),
            true,
            ProcessRefreshKind::nothing().with_memory(),
        );
        system.process(pid).map(|p| Bytes::new(p.memory()))
    }

    pub(super) fn process_peak_rss_of(_pid: u32) -> Option<Bytes> {
        None
    }

    pub(super) fn reset_peak_rss() -> bool {
        false
    }

    pub(super) fn system_memory() -> Option<SystemMemory> {
        let mut system = sysinfo::System::new().ok()?;
        system.refresh_memory();
        let total = system.total_memory();
        (total > 0).then(|| SystemMemory {
            total: Bytes::new(total),
            available: Bytes::new(system.available_memory()),
        })
    }

    pub(super) fn cgroup_memory_limit() -> Option<Bytes> {
        None
    }

    pub(super) fn cgroup_v2_memory() -> super::CgroupV2Memory {
        super::CgroupV2Memory::NotMounted
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::path::{Path, PathBuf};

    use super::*;

    const STATUS: &str = "Name:\tcat\nUmask:\t0022\nState:\tR (running)\nVmPeak:\t    8692 kB\n\
        VmSize:\t    8692 kB\nVmHWM:\t    1908 kB\nVmRSS:\t    1908 kB\nRssAnon:\t     100 kB\n\
        Threads:\t1\n";

    #[test]
    fn parses_proc_status_fields() {
        let status = STATUS.as_bytes();
        assert_eq!(
            parse_kib_field(status, b"VmRSS:"),
            Some(Bytes::from_kib(1908))
        );
        assert_eq!(
            parse_kib_field(status, b"VmHWM:"),
            Some(Bytes::from_kib(1908))
        );
        assert_eq!(parse_kib_field(status, b"VmSwap:"), None);
        // Not a kB field.
        assert_eq!(parse_kib_field(status, b"Threads:"), None);
        // A key must match at a line start, not inside another key.
        assert_eq!(parse_kib_field(b"XVmRSS: 5 kB\n", b"VmRSS:"), None);
        // Truncated buffer: a number without its unit is rejected rather than misread.
        assert_eq!(parse_kib_field(b"VmRSS:\t  19", b"VmRSS:"), None);
        assert_eq!(
            parse_kib_field(b"VmRSS: 99999999999999999999999 kB", b"VmRSS:"),
            None
        );
    }

    #[test]
    fn parses_statm() {
        let statm = b"2172 477 392 202 0 133 0\n";
        assert_eq!(
            parse_statm_resident(statm, 4096),
            Some(Bytes::new(477 * 4096))
        );
        assert_eq!(parse_statm_resident(b"2172", 4096), None);
        assert_eq!(parse_statm_resident(b"2172 4x7 1", 4096), None);
        assert_eq!(
            parse_statm_resident(b"1 99999999999999999999 1", 4096),
            None
        );
    }

    #[test]
    fn parses_meminfo_fields() {
        let meminfo = b"MemTotal:       24684096 kB\nMemFree:        20000000 kB\n\
            MemAvailable:   24030324 kB\n";
        assert_eq!(
            parse_kib_field(meminfo, b"MemTotal:"),
            Some(Bytes::from_kib(24_684_096))
        );
        assert_eq!(
            parse_kib_field(meminfo, b"MemAvailable:"),
            Some(Bytes::from_kib(24_030_324))
        );
    }

    #[test]
    fn parses_cgroup_limit_files() {
        assert_eq!(parse_cgroup_limit("max\n"), None);
        assert_eq!(parse_cgroup_limit("1073741824\n"), Some(Bytes::from_gib(1)));
        assert_eq!(parse_cgroup_limit("9223372036854771712\n"), None);
        assert_eq!(parse_cgroup_limit(""), None);
        assert_eq!(parse_cgroup_limit("garbage"), None);
    }

    #[test]
    fn parses_proc_self_cgroup() {
        let hybrid = "9:name=systemd:/\n4:memory:/process_api/6eb9\n1:cpu,cpuacct:/\n0::/\n";
        assert_eq!(
            parse_proc_cgroup(hybrid),
            CgroupPaths {
                v2: Some("/"),
                v1_memory: Some("/process_api/6eb9")
            }
        );
        let v2 = "0::/user.slice/user-1000.slice/session-2.scope\n";
        assert_eq!(
            parse_proc_cgroup(v2),
            CgroupPaths {
                v2: Some("/user.slice/user-1000.slice/session-2.scope"),
                v1_memory: None
            }
        );
        let v1_joined = "5:cpuacct,memory,cpu:/docker/abc\n";
        assert_eq!(parse_proc_cgroup(v1_joined).v1_memory, Some("/docker/abc"));
    }

    const MOUNTINFO: &str = "\
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
35 31 0:32 /docker/abc /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime shared:9 - cgroup2 cgroup2 rw
";

    #[test]
    fn parses_mountinfo() {
        let (v2, v1) = parse_mountinfo(MOUNTINFO);
        assert_eq!(
            v2,
            Some(CgroupMount {
                root: "/",
                mount_point: "/sys/fs/cgroup/unified"
            })
        );
        assert_eq!(
            v1,
            Some(CgroupMount {
                root: "/docker/abc",
                mount_point: "/sys/fs/cgroup/memory"
            })
        );
    }

    #[test]
    fn candidate_files_walk_up_to_the_mount_point() {
        let mount = CgroupMount {
            root: "/",
            mount_point: "/sys/fs/cgroup",
        };
        let files = limit_file_candidates(mount, "/a/b", "memory.max");
        let expected: Vec<PathBuf> = ["/sys/fs/cgroup/a/b", "/sys/fs/cgroup/a", "/sys/fs/cgroup"]
            .iter()
            .map(|d| Path::new(d).join("memory.max"))
            .collect();
        assert_eq!(files, expected);
        // Container: the mount shows our own subtree.
        let mount = CgroupMount {
            root: "/docker/abc",
            mount_point: "/sys/fs/cgroup/memory",
        };
        let files = limit_file_candidates(mount, "/docker/abc", "memory.limit_in_bytes");
        assert_eq!(
            files,
            vec![PathBuf::from("/sys/fs/cgroup/memory/memory.limit_in_bytes")]
        );
    }

    fn fake_fs(files: &[(&str, &str)]) -> impl Fn(&Path) -> Option<String> {
        let map: HashMap<PathBuf, String> = files
            .iter()
            .map(|(p, c)| (PathBuf::from(p), (*c).to_owned()))
            .collect();
        move |p: &Path| map.get(p).cloned()
    }

    #[test]
    fn resolves_the_smallest_limit_of_the_cgroup_and_its_ancestors() {
        let read = fake_fs(&[
            ("/sys/fs/cgroup/app/job/memory.max", "max\n"),
            ("/sys/fs/cgroup/app/memory.max", "2147483648\n"),
        ]);
        let limit = resolve_cgroup_limit("0::/app/job\n", "", &read);
        assert_eq!(limit, Some(Bytes::from_gib(2)));
    }

    #[test]
    fn resolves_v1_limits_and_ignores_unlimited() {
        let read = fake_fs(&[(
            "/sys/fs/cgroup/memory/memory.limit_in_bytes",
            "9223372036854771712\n",
        )]);
        let limit = resolve_cgroup_limit("4:memory:/docker/abc\n0::/\n", MOUNTINFO, &read);
        assert_eq!(limit, None);
        let read = fake_fs(&[(
            "/sys/fs/cgroup/memory/memory.limit_in_bytes",
            "1073741824\n",
        )]);
        let limit = resolve_cgroup_limit("4:memory:/docker/abc\n0::/\n", MOUNTINFO, &read);
        assert_eq!(limit, Some(Bytes::from_gib(1)));
    }

    #[test]
    fn cgroup_v2_says_whether_a_child_could_get_a_memory_cap() {
        // This machine's kind: v2 mounted beside v1, the memory controller on v1.
        let hybrid = "30 25 0:26 / /sys/fs/cgroup/unified rw - cgroup2 cgroup2 rw\n";
        let none = fake_fs(&[("/sys/fs/cgroup/unified/cgroup.controllers", "\n")]);
        assert_eq!(
            resolve_cgroup_v2("0::/\n", hybrid, &none, &|_| true),
            CgroupV2Memory::NoMemoryController {
                dir: "/sys/fs/cgroup/unified".into()
            }
        );
        // A delegated user slice, and the same slice when not ours.
        let unified = "30 25 0:26 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw\n";
        let slice = "/sys/fs/cgroup/user.slice/user-1000.slice/user@1000.service/app.slice";
        let files = fake_fs(&[(
            "/sys/fs/cgroup/user.slice/user-1000.slice/user@1000.service/app.slice/cgroup.controllers",
            "cpu io memory pids\n",
        )]);
        let ours = "0::/user.slice/user-1000.slice/user@1000.service/app.slice\n";
        assert_eq!(
            resolve_cgroup_v2(ours, unified, &files, &|_| true),
            CgroupV2Memory::Delegated { dir: slice.into() }
        );
        assert_eq!(
            resolve_cgroup_v2(ours, unified, &files, &|_| false),
            CgroupV2Memory::NotWritable { dir: slice.into() }
        );
        assert_eq!(
            resolve_cgroup_v2("4:memory:/x\n", "", &files, &|_| true),
            CgroupV2Memory::NotMounted
        );
        assert!(cgroup_v2_memory().to_string().contains("cgroup v2"));
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn live_probes_answer_on_linux() {
        let rss = process_rss().unwrap();
        assert!(rss > Bytes::ZERO);
        // statm and VmRSS are the same kernel counters.
        let status = std::fs::read("/proc/self/status").unwrap();
        let vm_rss = parse_kib_field(&status, b"VmRSS:").unwrap();
        assert!(
            rss.get().abs_diff(vm_rss.get()) < 16 << 20,
            "{rss} vs VmRSS {vm_rss}"
        );
        assert!(RssReader::new().unwrap().read().is_some());
        assert!(process_peak_rss().unwrap() > Bytes::ZERO);
        assert!(process_rss_of(std::process::id()).is_some());
        assert!(process_rss_of(u32::MAX).is_none());
        let mem = system_memory();
        assert!(mem.total > Bytes::ZERO && mem.total != Bytes::MAX);
        assert!(mem.available <= mem.total);
        // Whatever the machine, this must not panic and must be a plausible figure.
        if let Some(limit) = cgroup_memory_limit() {
            assert!(limit.get() < ABSURD_LIMIT);
        }
    }
}
