//! The sampler thread and the mark/watch handle; [`MemoryProfiler::stop`] hands back a `Profile`.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender, TrySendError};
use masp_budget::{Bytes, probe};
use serde::{Deserialize, Serialize};

use crate::buffer::SampleBuffer;
use crate::error::{ConfigError, Error, Result};
use crate::event::{Event, Mark};
use crate::profile::{PeakSample, Profile};

/// How to profile. All fields have working defaults.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use masp_budget::Bytes;
/// use masp_profiler::ProfilerConfig;
///
/// let config = ProfilerConfig::default()
///     .with_interval(Duration::from_millis(5))
///     .with_budget_limit(Bytes::from_gib(1));
/// assert_eq!(config.max_buckets, 4096);
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProfilerConfig {
    /// Time between RSS samples. Default 10 ms.
    ///
    /// Also the worst-case delay of a [`ProfilerHandle::watch`] alert. Each sample costs one
    /// thread wake-up plus one read of `/proc/self/statm` (tens of microseconds of CPU on a
    /// VM, less on bare metal), so 10 ms stays under 1% of a core; 1 ms catches shorter
    /// spikes at ten times the cost.
    pub interval: Duration,
    /// Capacity of the timeline in buckets (even, ≥ 2). Default 4096.
    ///
    /// Memory use is constant (48 bytes per bucket); when full, resolution halves. 4096 keeps
    /// 10 ms resolution for the first ~40 s and ~10 s resolution after 10 hours.
    pub max_buckets: usize,
    /// The budget limit, drawn as a line on the timeline and compared with the peak.
    /// Default none.
    pub budget_limit: Option<Bytes>,
    /// Window of the "recent" RSS trend, over which the trend verdict is judged. Default 60 s.
    pub trend_window: Duration,
    /// How far RSS must move over the trend window before the trend is called growing or
    /// shrinking, and within how much it must stay to be flat. Default 4 MiB: the allocator's
    /// and the runtime's churn between tasks stays well under it.
    #[serde(default = "default_trend_tolerance")]
    pub trend_tolerance: Bytes,
    /// Growth per load/unload cycle below which no leak is reported. Default 1 MiB.
    ///
    /// Allocators and runtimes keep some memory after a cycle; below this it is noise. Lower
    /// it to hunt small leaks in long runs, raise it if a runtime legitimately caches per load.
    pub leak_tolerance: Bytes,
    /// Reset the kernel's peak-RSS counter at start so the reported high-water mark covers
    /// only the profiled run (Linux; affects the whole process). Default true.
    pub reset_kernel_peak: bool,
}

fn default_trend_tolerance() -> Bytes {
    Bytes::from_mib(4)
}

impl Default for ProfilerConfig {
    fn default() -> Self {
        ProfilerConfig {
            interval: Duration::from_millis(10),
            max_buckets: 4096,
            budget_limit: None,
            trend_window: Duration::from_secs(60),
            trend_tolerance: default_trend_tolerance(),
            leak_tolerance: Bytes::from_mib(1),
            reset_kernel_peak: true,
        }
    }
}

impl ProfilerConfig {
    /// `self` with another sampling interval.
    ///
    /// # Examples
    ///
    /// ```
    /// # use std::time::Duration;
    /// let c = masp_profiler::ProfilerConfig::default().with_interval(Duration::from_millis(1));
    /// assert_eq!(c.interval, Duration::from_millis(1));
    /// ```
    #[must_use]
    pub fn with_interval(mut self, interval: Duration) -> Self {
        self.interval = interval;
        self
    }

    /// `self` with a budget line.
    ///
    /// # Examples
    ///
    /// ```
    /// # use masp_budget::Bytes;
    /// let c = masp_profiler::ProfilerConfig::default().with_budget_limit(Bytes::from_gib(2));
    /// assert_eq!(c.budget_limit, Some(Bytes::from_gib(2)));
    /// ```
    #[must_use]
    pub fn with_budget_limit(mut self, limit: Bytes) -> Self {
        self.budget_limit = Some(limit);
        self
    }

    /// `self` with another timeline capacity.
    ///
    /// # Examples
    ///
    /// ```
    /// let c = masp_profiler::ProfilerConfig::default().with_max_buckets(512);
    /// assert_eq!(c.max_buckets, 512);
    /// ```
    #[must_use]
    pub fn with_max_buckets(mut self, max_buckets: usize) -> Self {
        self.max_buckets = max_buckets;
        self
    }

    /// `self` with another leak tolerance.
    ///
    /// # Examples
    ///
    /// ```
    /// # use masp_budget::Bytes;
    /// let c = masp_profiler::ProfilerConfig::default().with_leak_tolerance(Bytes::from_kib(256));
    /// assert_eq!(c.leak_tolerance, Bytes::from_kib(256));
    /// ```
    #[must_use]
    pub fn with_leak_tolerance(mut self, tolerance: Bytes) -> Self {
        self.leak_tolerance = tolerance;
        self
    }

    /// `self` with another trend window.
    ///
    /// # Examples
    ///
    /// ```
    /// # use std::time::Duration;
    /// let c = masp_profiler::ProfilerConfig::default().with_trend_window(Duration::from_secs(5));
    /// assert_eq!(c.trend_window, Duration::from_secs(5));
    /// ```
    #[must_use]
    pub fn with_trend_window(mut self, window: Duration) -> Self {
        self.trend_window = window;
        self
    }

    /// `self` with another trend tolerance (see [`ProfilerConfig::trend_tolerance`]).
    ///
    /// # Examples
    ///
    /// ```
    /// use masp_budget::Bytes;
    /// let c = masp_profiler::ProfilerConfig::default().with_trend_tolerance(Bytes::from_mib(1));
    /// assert_eq!(c.trend_tolerance, Bytes::from_mib(1));
    /// ```
    #[must_use]
    pub fn with_trend_tolerance(mut self, tolerance: Bytes) -> Self {
        self.trend_tolerance = tolerance;
        self
    }

    fn validate(&self) -> Result<(), ConfigError> {
        if self.interval < Duration::from_micros(1) {
            return Err(ConfigError::InvalidInterval {
                interval_ns: self.interval.as_nanos(),
            });
        }
        SampleBuffer::new(self.max_buckets).map(drop)
    }
}

/// Sent by a [`ProfilerHandle::watch`] when sampled RSS reaches its threshold.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct WatchAlert {
    /// The watch's threshold.
    pub threshold: Bytes,
    /// The RSS sampled at or above it.
    pub rss: Bytes,
    /// Seconds since the profiler started.
    pub t_s: f64,
}

struct Watch {
    threshold: Bytes,
    /// Fires once per upward crossing; re-armed when RSS falls below the threshold.
    armed: bool,
    tx: Sender<WatchAlert>,
}

struct SampleState {
    buffer: SampleBuffer,
    peak: Option<PeakSample>,
}

/// State shared by the profiler, its sampler thread and all handles.
struct Shared {
    start: Instant,
    samples: Mutex<SampleState>,
    marks: Mutex<Vec<Mark>>,
    /// Highest RSS since the last mark (see `Mark::peak_since_previous`).
    segment_peak: AtomicU64,
    last_rss: AtomicU64,
    watches: Mutex<Vec<Watch>>,
    /// Set by `stop`: later marks are dropped instead of piling up unread.
    stopped: AtomicBool,
    /// Other processes whose RSS counts with ours (worker processes running models).
    followed: Mutex<Vec<u32>>,
    /// Highest RSS of this process alone, and of the followed processes together, in one
    /// sample.
    own_peak: AtomicU64,
    workers_peak: AtomicU64,
}

/// Locks ignoring poison: every critical section here leaves the data consistent.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Shared {
    fn elapsed_s(&self) -> f64 {
        self.start.elapsed().as_secs_f64()
    }

    /// Records one sample now (outside the sampler thread).
    fn sample(&self) {
        if let Some(rss) = probe::process_rss() {
            self.record(rss);
        }
    }

    /// Sum of the followed processes' RSS (0 when none).
    fn workers_rss(&self) -> Bytes {
        let followed = lock(&self.followed);
        followed
            .iter()
            .filter_map(|&pid| probe::process_rss_of(pid))
            .fold(Bytes::ZERO, Bytes::saturating_add)
    }

    /// Records this process's RSS `own` together with the followed processes'.
    fn record(&self, own: Bytes) {
        let workers = self.workers_rss();
        self.own_peak.fetch_max(own.get(), Ordering::Relaxed);
        self.workers_peak
            .fetch_max(workers.get(), Ordering::Relaxed);
        self.record_total(own.saturating_add(workers));
    }

    fn record_total(&self, rss: Bytes) {
        self.last_rss.store(rss.get(), Ordering::Relaxed);
        self.segment_peak.fetch_max(rss.get(), Ordering::Relaxed);
        let t_s = {
            let mut state = lock(&self.samples);
            // Timestamp under the lock so the timeline stays in time order.
            let t_s = self.elapsed_s();
            state.buffer.push(t_s, rss);
            if state.peak.is_none_or(|p| rss > p.rss) {
                state.peak = Some(PeakSample { t_s, rss });
            }
            t_s
        };
        let mut watches = lock(&self.watches);
        if watches.is_empty() {
            return;
        }
        watches.retain_mut(|w| {
            if rss < w.threshold {
                w.armed = true;
                return true;
            }
            if !w.armed {
                return true;
            }
            w.armed = false;
            let alert = WatchAlert {
                threshold: w.threshold,
                rss,
                t_s,
            };
            // A full channel means the receiver has not caught up; it already knows.
            !matches!(w.tx.try_send(alert), Err(TrySendError::Disconnected(_)))
        });
    }

    fn mark(&self, event: Event) {
        if self.stopped.load(Ordering::Relaxed) {
            return;
        }
        let rss = probe::process_rss().map_or_else(
            || Bytes::new(self.last_rss.load(Ordering::Relaxed)),
            |own| own.saturating_add(self.workers_rss()),
        );
        let mut marks = lock(&self.marks);
        if self.stopped.load(Ordering::Relaxed) {
            return;
        }
        let previous_peak = self.segment_peak.swap(rss.get(), Ordering::Relaxed);
        marks.push(Mark {
            t_s: self.elapsed_s(),
            rss,
            peak_since_previous: rss.max(Bytes::new(previous_peak)),
            event,
        });
    }
}

/// A cheap, cloneable handle for marking events and watching memory from any thread.
///
/// Obtain one from [`MemoryProfiler::handle`], or [`ProfilerHandle::disabled`] for code that
/// runs without a profiler (its marks go nowhere).
///
/// # Examples
///
/// ```
/// use masp_profiler::{Event, MemoryProfiler, ProfilerConfig};
///
/// let profiler = MemoryProfiler::start(ProfilerConfig::default())?;
/// let handle = profiler.handle();
/// handle.mark(Event::load_start("demo"));
/// let weights = vec![1u8; 8 << 20];
/// handle.mark(Event::load_end("demo"));
/// handle.note("loaded");
/// drop(weights);
/// let profile = profiler.stop();
/// assert_eq!(profile.marks.len(), 3);
/// # Ok::<(), masp_profiler::Error>(())
/// ```
#[derive(Clone, Default)]
pub struct ProfilerHandle {
    shared: Option<Arc<Shared>>,
}

impl std::fmt::Debug for ProfilerHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProfilerHandle")
            .field("enabled", &self.shared.is_some())
            .finish()
    }
}

impl ProfilerHandle {
    /// A handle that records nothing and whose watches never fire.
    ///
    /// # Examples
    ///
    /// ```
    /// let handle = masp_profiler::ProfilerHandle::disabled();
    /// handle.note("goes nowhere");
    /// ```
    #[must_use]
    pub fn disabled() -> Self {
        ProfilerHandle { shared: None }
    }

    /// Records `event` with the current time and RSS (one read of `/proc/self/status`).
    ///
    /// # Examples
    ///
    /// ```
    /// # let profiler = masp_profiler::MemoryProfiler::start(Default::default())?;
    /// profiler.handle().mark(masp_profiler::Event::task_start("file-1.wav"));
    /// # Ok::<(), masp_profiler::Error>(())
    /// ```
    pub fn mark(&self, event: Event) {
        if let Some(shared) = &self.shared {
            shared.mark(event);
        }
    }

    /// Records a free-text [`Event::Note`].
    ///
    /// # Examples
    ///
    /// ```
    /// # let profiler = masp_profiler::MemoryProfiler::start(Default::default())?;
    /// profiler.handle().note("switching to batch mode");
    /// # Ok::<(), masp_profiler::Error>(())
    /// ```
    pub fn note(&self, text: &str) {
        self.mark(Event::Note {
            text: text.to_owned(),
        });
    }

    /// Returns a channel that receives an alert each time sampled RSS rises to `threshold` or
    /// above (once per crossing; re-armed when it falls below), within one sampling interval.
    /// If RSS is already above the threshold, the next sample alerts. Drop the receiver to
    /// stop watching.
    ///
    /// # Examples
    ///
    /// ```
    /// use masp_budget::Bytes;
    /// # let profiler = masp_profiler::MemoryProfiler::start(Default::default())?;
    /// let alerts = profiler.handle().watch(Bytes::new(1)); // any RSS crosses this
    /// let alert = alerts.recv().unwrap();
    /// assert!(alert.rss >= alert.threshold);
    /// # Ok::<(), masp_profiler::Error>(())
    /// ```
    #[must_use]
    pub fn watch(&self, threshold: Bytes) -> Receiver<WatchAlert> {
        // Small bound: an alert nobody reads must not grow memory in a memory profiler.
        let (tx, rx) = crossbeam_channel::bounded(16);
        if let Some(shared) = &self.shared {
            lock(&shared.watches).push(Watch {
                threshold,
                armed: true,
                tx,
            });
        }
        rx
    }

    /// Count process `pid`'s RSS with this process's from now on (a worker process running a
    /// model): samples, marks, peaks and watches then see the sum.
    ///
    /// # Examples
    ///
    /// ```
    /// # let profiler = masp_profiler::MemoryProfiler::start(Default::default())?;
    /// let mut child = std::process::Command::new("sleep").arg("5").spawn()?;
    /// profiler.handle().follow(child.id());
    /// profiler.handle().unfollow(child.id());
    /// # child.kill()?; child.wait()?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn follow(&self, pid: u32) {
        if let Some(shared) = &self.shared {
            let mut followed = lock(&shared.followed);
            if !followed.contains(&pid) {
                followed.push(pid);
            }
        }
    }

    /// Stop counting process `pid` (before it is ended).
    pub fn unfollow(&self, pid: u32) {
        if let Some(shared) = &self.shared {
            lock(&shared.followed).retain(|&p| p != pid);
        }
    }

    /// The process's RSS right now (a fresh read, a few microseconds), falling back to the
    /// last sampled value if the platform cannot report it.
    ///
    /// # Examples
    ///
    /// ```
    /// # let profiler = masp_profiler::MemoryProfiler::start(Default::default())?;
    /// assert!(profiler.handle().current_rss().is_some());
    /// # Ok::<(), masp_profiler::Error>(())
    /// ```
    #[must_use]
    pub fn current_rss(&self) -> Option<Bytes> {
        probe::process_rss().or_else(|| {
            let shared = self.shared.as_ref()?;
            Some(Bytes::new(shared.last_rss.load(Ordering::Relaxed)))
        })
    }
}

/// Samples this process's RSS on a background thread until stopped.
///
/// # Examples
///
/// ```
/// use masp_profiler::{MemoryProfiler, ProfilerConfig, generate_report};
///
/// let profiler = MemoryProfiler::start(ProfilerConfig::default())?;
/// let data = vec![7u8; 16 << 20];
/// std::thread::sleep(std::time::Duration::from_millis(30));
/// drop(data);
/// let profile = profiler.stop();
/// let report = generate_report(&profile);
/// println!("{report}");
/// # Ok::<(), masp_profiler::Error>(())
/// ```
pub struct MemoryProfiler {
    shared: Arc<Shared>,
    config: ProfilerConfig,
    rss_start: Bytes,
    kernel_peak_reset: bool,
    stop_tx: Option<Sender<()>>,
    thread: Option<JoinHandle<Option<Duration>>>,
}

impl std::fmt::Debug for MemoryProfiler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryProfiler")
            .field("config", &self.config)
            .field("rss_start", &self.rss_start)
            .finish_non_exhaustive()
    }
}

impl MemoryProfiler {
    /// Takes a first sample and starts the sampler thread.
    ///
    /// # Errors
    ///
    /// [`Error::Config`] for an invalid config, [`Error::RssUnavailable`] if this platform
    /// does not report RSS, [`Error::SpawnSampler`] if the thread cannot be started.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use masp_profiler::{Error, MemoryProfiler, ProfilerConfig};
    ///
    /// let bad = ProfilerConfig::default().with_interval(Duration::ZERO);
    /// assert!(matches!(MemoryProfiler::start(bad), Err(Error::Config(_))));
    /// ```
    pub fn start(config: ProfilerConfig) -> Result<Self> {
        config.validate().map_err(Error::Config)?;
        let buffer = SampleBuffer::new(config.max_buckets).map_err(Error::Config)?;
        let kernel_peak_reset = config.reset_kernel_peak && probe::reset_peak_rss();
        let rss_start = probe::process_rss().ok_or(Error::RssUnavailable)?;
        let shared = Arc::new(Shared {
            start: Instant::now(),
            samples: Mutex::new(SampleState { buffer, peak: None }),
            marks: Mutex::new(Vec::new()),
            segment_peak: AtomicU64::new(0),
            last_rss: AtomicU64::new(0),
            watches: Mutex::new(Vec::new()),
            stopped: AtomicBool::new(false),
            followed: Mutex::new(Vec::new()),
            own_peak: AtomicU64::new(0),
            workers_peak: AtomicU64::new(0),
        });
        shared.record(rss_start);

        let (stop_tx, stop_rx) = crossbeam_channel::bounded::<()>(1);
        let sampler_shared = Arc::clone(&shared);
        let interval = config.interval;
        let thread = std::thread::Builder::new()
            .name("masp-rss-sampler".into())
            .spawn(move || run_sampler(&sampler_shared, interval, &stop_rx))
            .map_err(|source| Error::SpawnSampler { source })?;
        Ok(MemoryProfiler {
            shared,
            config,
            rss_start,
            kernel_peak_reset,
            stop_tx: Some(stop_tx),
            thread: Some(thread),
        })
    }

    /// A handle for marks, watches and RSS reads; clone it freely, send it to other threads.
    ///
    /// # Examples
    ///
    /// ```
    /// # let profiler = masp_profiler::MemoryProfiler::start(Default::default())?;
    /// let handle = profiler.handle();
    /// std::thread::spawn(move || handle.note("from another thread")).join().unwrap();
    /// # Ok::<(), masp_profiler::Error>(())
    /// ```
    #[must_use]
    pub fn handle(&self) -> ProfilerHandle {
        ProfilerHandle {
            shared: Some(Arc::clone(&self.shared)),
        }
    }

    /// Stops sampling and returns everything recorded. Marks made through handles after this
    /// are discarded.
    ///
    /// # Examples
    ///
    /// ```
    /// # let profiler = masp_profiler::MemoryProfiler::start(Default::default())?;
    /// let profile = profiler.stop();
    /// assert!(profile.n_samples >= 2); // the first sample and the last
    /// # Ok::<(), masp_profiler::Error>(())
    /// ```
    #[must_use]
    pub fn stop(mut self) -> Profile {
        let sampler_cpu = self.stop_sampler();
        // A last sample so the timeline reaches the end of the run.
        self.shared.sample();
        let duration_s = self.shared.elapsed_s();
        let rss_end = probe::process_rss();
        let kernel_peak = probe::process_peak_rss();
        let marks = {
            let mut marks = lock(&self.shared.marks);
            // Under the marks lock, so no mark lands after the take.
            self.shared.stopped.store(true, Ordering::Relaxed);
            std::mem::take(&mut *marks)
        };
        let tail_peak = Bytes::new(self.shared.segment_peak.load(Ordering::Relaxed));
        let state = lock(&self.shared.samples);
        let config = &self.config;
        Profile {
            interval_ms: config.interval.as_secs_f64() * 1e3,
            duration_s,
            budget_limit: config.budget_limit,
            trend_window_s: config.trend_window.as_secs_f64(),
            trend_tolerance: config.trend_tolerance,
            leak_tolerance: config.leak_tolerance,
            rss_start: Some(self.rss_start),
            rss_end,
            timeline: state.buffer.buckets().to_vec(),
            samples_per_bucket: state.buffer.samples_per_bucket(),
            n_samples: state.buffer.n_samples(),
            marks,
            tail_peak,
            sampled_peak: state.peak,
            kernel_peak,
            kernel_peak_since_start: self.kernel_peak_reset,
            sampler_cpu_s: sampler_cpu.map(|d| d.as_secs_f64()),
            own_peak: Some(Bytes::new(self.shared.own_peak.load(Ordering::Relaxed))),
            workers_peak: Some(Bytes::new(self.shared.workers_peak.load(Ordering::Relaxed)))
                .filter(|b| b.get() > 0),
        }
    }

    fn stop_sampler(&mut self) -> Option<Duration> {
        // Dropping the sender wakes the sampler's `select!` too; sending is just explicit.
        if let Some(tx) = self.stop_tx.take() {
            let _ = tx.try_send(());
        }
        self.thread.take().and_then(|t| t.join().ok().flatten())
    }
}

impl Drop for MemoryProfiler {
    fn drop(&mut self) {
        self.stop_sampler();
    }
}

fn run_sampler(shared: &Shared, interval: Duration, stop: &Receiver<()>) -> Option<Duration> {
    // A kept-open reader halves the cost of a sample (no open/close per read).
    let reader = probe::RssReader::new();
    let ticker = crossbeam_channel::tick(interval);
    loop {
        crossbeam_channel::select! {
            recv(stop) -> _ => break,
            recv(ticker) -> _ => {
                if let Some(rss) = reader.as_ref().and_then(probe::RssReader::read) {
                    shared.record(rss);
                }
            }
        }
    }
    thread_cpu_time()
}

/// CPU time consumed by the calling thread.
#[cfg(unix)]
fn thread_cpu_time() -> Option<Duration> {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec for the duration of the call.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &raw mut ts) };
    if rc != 0 {
        return None;
    }
    Some(Duration::new(
        u64::try_from(ts.tv_sec).ok()?,
        u32::try_from(ts.tv_nsec).ok()?,
    ))
}

#[cfg(not(unix))]
fn thread_cpu_time() -> Option<Duration> {
    None
}
